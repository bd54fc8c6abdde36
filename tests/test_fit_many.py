"""``model.fit_many``: many data sets of one shape in one compiled program
(issue 17). Each posterior must be the one a separate fit with the same seed
gives; data sets that do not bind alike are a located error."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import LINEAR_XY

import fglang
from fglang.errors import FgError

LINEAR = LINEAR_XY  # conftest's straight line with known noise

GROUPS = """\
model groups
data N: int
data G: int
data g[N]: int
data y[N]: real
var mu[G]: real ~ normal(0, 5)
factor lik[n in 0:N]: y[n] ~ normal(mu[g[n]], 1)
"""


def _sets(n: int, rows: int = 12) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        x = rng.normal(size=rows)
        out.append({"N": rows, "x": x.tolist(), "y": (k + 2.0 * x + 0.5 * rng.normal(size=rows)).tolist()})
    return out


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    p = tmp_path_factory.mktemp("many") / "linear.fg"
    p.write_text(LINEAR)
    return fglang.load(p)


def test_fit_many_gives_what_separate_fits_give(linear):
    sets = _sets(3)
    kw = dict(backend="vi", steps=200, draws=50, seed=3)
    many = linear.fit_many(sets, **kw)
    assert [p.attrs["fit_many"] for p in many] == [{"index": k, "of": 3} for k in range(3)]
    alone = linear.fit(sets[2], **kw)  # the last: a mix-up of the batch's order shows there
    for name in ("a", "b"):
        assert np.abs(alone.draws[name] - many[2].draws[name]).max() < 1e-8
    assert alone.attrs["steps"] == many[2].attrs["steps"] and alone.attrs["stop"] == many[2].attrs["stop"]
    # each posterior is its own data set's: intercepts 0, 1, 2 (sd ~0.15)
    assert [round(float(p.mean("a"))) for p in many] == [0, 1, 2]


def test_data_sets_of_other_sizes_are_a_located_error(linear):
    sets = _sets(2) + _sets(1, rows=5)
    with pytest.raises(FgError) as e:
        linear.fit_many(sets, backend="vi")
    text = str(e.value)
    assert "size 'N' is 5 in data set 2 but 12 in data set 0" in text
    assert "linear.fg:2:" in text and "data N: int" in text  # the declaration, with a caret under it
    assert "one call per shape" in text


def test_data_sets_with_other_index_data_are_a_located_error(tmp_path):
    p = tmp_path / "groups.fg"
    p.write_text(GROUPS)
    m = fglang.load(p)
    a = {"N": 4, "G": 2, "g": [0, 0, 1, 1], "y": [0.1, 0.2, 1.0, 1.1]}
    b = {**a, "y": [0.3, 0.1, 2.0, 1.9]}  # other values: fine
    c = {**a, "g": [0, 1, 0, 1]}
    with pytest.raises(FgError) as e:
        m.fit_many([a, b, c], backend="vi")
    text = str(e.value)
    assert "factor 'lik' reads other nodes in data set 2 than in data set 0" in text
    assert "data set 1" not in text and "groups.fg:7:" in text


def test_fit_many_refusals(linear):
    with pytest.raises(FgError, match="(?s)backend 'gbp' has no fit_many yet.*--backend vi"):
        linear.fit_many(_sets(2), backend="gbp")
    with pytest.raises(FgError, match="at least one data set"):
        linear.fit_many([], backend="vi")
    with pytest.raises(TypeError, match="list of data sets"):
        linear.fit_many(_sets(1)[0], backend="vi")
    with pytest.raises(FgError, match="init='map'"):
        linear.fit_many(_sets(2), backend="vi", init="map")
