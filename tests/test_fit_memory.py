"""Fit memory is estimated before anything is allocated (issue 16, "Limits before work").

Each case binds in well under the limit, then would allocate far past it in
the fit (draws, GBP messages, map's Hessian, predicted draws): on main it
ran out of memory (or for minutes); now it is a located FgError at the
declaration whose size is at fault, with the estimate and how to raise the
limit. ``FGLANG_MAX_BYTES`` is set small so every case is cheap.
"""

from __future__ import annotations

import pytest

import fglang
from fglang.compiler.limits import ENV, refuse_over_limit
from fglang.errors import FgError

WIDE = """
model wide
data N: int
var w[N]: real ~ normal(0, 1)
factor f[i in 0:N]: w[i] ~ normal(0, 1)
"""

DENSE = """
model dense
data N: int
data K: int
var w[N]: real[K] ~ normal(0, 1)
"""


@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setenv(ENV, "50e6")


@pytest.mark.parametrize(
    ("backend", "options", "part"),
    [
        ("mcmc", {}, "4,000 draws of var 'w' (100,000 values)"),
        ("vi", {}, "1,000 guide draws of 100,000 unconstrained parameters for PSIS"),
        ("gbp", {}, "200 draws of var 'w'"),
        ("map", {}, "200 draws of var 'w'"),
    ],
)
def test_draws_past_the_limit_are_refused_at_the_var(small_limit, backend, options, part):
    with pytest.raises(FgError) as e:
        fglang.compile(WIDE, "wide.fg").fit({"N": 100_000}, backend=backend, **options)
    text = str(e.value)
    assert text.startswith("wide.fg:4:1: this fit would need about"), text
    assert part in text and "over fglang's memory limit of 50 MB (FGLANG_MAX_BYTES=50e6)" in text
    assert "var w[N]: real ~ normal(0, 1)" in text and f"raise the limit with {ENV}=<bytes>" in text


def test_gbp_messages_past_the_limit_are_refused_at_the_factor(small_limit):
    with pytest.raises(FgError, match="the largest part: GBP's messages of factor") as e:
        fglang.compile(DENSE, "dense.fg").fit({"N": 40, "K": 300}, backend="gbp", draws=1)
    assert "dense.fg:5:" in str(e.value)


def test_map_hessian_past_the_limit_is_refused(small_limit):
    with pytest.raises(FgError, match="blocks of the sparse Hessian"):
        fglang.compile(DENSE, "dense.fg").fit({"N": 40, "K": 300}, backend="map", draws=1, marginals="none")


def test_the_limit_can_be_raised_and_small_fits_are_not_charged(monkeypatch):
    monkeypatch.setenv(ENV, "2e9")
    post = fglang.compile(WIDE, "wide.fg").fit({"N": 10}, backend="gbp")
    assert post.samples("w").shape[-1] == 10


def test_one_rule_sums_the_parts_and_names_the_largest():
    refuse_over_limit([(10.0, "a", None), (20.0, "b", None)], "fit", {}, "smaller", limit=(30.0, "test"))
    with pytest.raises(FgError, match=r"about 31 bytes, over fglang's memory limit of 30 bytes \(test\); the "
                                      r"largest part: b, about 20 bytes"):
        refuse_over_limit([(11.0, "a", None), (20.0, "b", None)], "fit", {}, "smaller", limit=(30.0, "test"))


REGRESSION = """
model reg
data N: int
data x[N]: real
data y[N]: real
var a: real ~ normal(0, 10)
factor obs[i in 0:N]: y[i] ~ normal(a * x[i], 1)
"""


def test_predicted_draws_past_the_limit_are_refused_at_the_family(monkeypatch):
    m = fglang.compile(REGRESSION, "reg.fg")
    post = m.fit({"N": 3, "x": [0.0, 1.0, 2.0], "y": [0.1, 1.1, 1.9]}, backend="vi", steps=20, draws=200)
    monkeypatch.setenv(ENV, "50e6")
    with pytest.raises(FgError, match="this prediction would need about .* 200 draws of the 100,000 members of 'obs'"):
        m.predict(post, {"N": 100_000, "x": [0.5] * 100_000})


def test_fit_many_charges_every_data_set_of_the_batch(monkeypatch):
    """One fit of N = 500 (mean-field guide) holds about 35 MB, within 50 MB; 16 data sets of it as one batch
    hold 16 times that, which main did not count (each bind was charged alone)."""
    monkeypatch.setenv(ENV, "50e6")
    m = fglang.compile(WIDE, "wide.fg")
    from fglang.compiler.bind import bind
    from fglang.runtime import backend as backends
    from fglang.runtime.fit_memory import check_fit_memory

    vi = backends.get("vi")
    check_fit_memory(vi, bind(m.ir, {"N": 500}, "<data>"), vi.Options.parse({"draws": 500, "guide": "normal"}))
    with pytest.raises(FgError) as e:
        m.fit_many([{"N": 500}] * 16, backend="vi", draws=500, guide="normal")
    text = str(e.value)
    assert text.startswith("wide.fg:4:1: this fit_many would need about"), text
    assert "for each of the 16 data sets" in text and "fit fewer data sets per call" in text
    assert f"raise the limit with {ENV}=<bytes>" in text
