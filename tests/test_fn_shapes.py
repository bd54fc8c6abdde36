"""A fn's parameter and return shapes may name data ints (``real[NB]``):
fixed at bind, checked against each argument at the call, with a located
error where they disagree; any other name is refused where it is written."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import fglang
from fglang.errors import FgError

SRC = """model basis
data N: int
data NB: int
data X[N, NB]: real
data y[N]: real
fn predict(b: real[NB], row: real[NB]) -> real { return dot(b, row) }
fn scaled(b: real[NB], s: real) -> real[NB] { return s * b }
var beta[NB]: real ~ normal(0, 1)
factor obs[n in 0:N]: y[n] ~ normal(predict(scaled(beta, 2), X[n]), 0.5)
"""


def test_data_sized_parameters_evaluate_as_written():
    rng = np.random.default_rng(0)
    X, y, beta = rng.normal(size=(4, 3)), rng.normal(size=4), rng.normal(size=3)
    m = fglang.compile(SRC, "basis.fg")
    want = stats.norm.logpdf(beta).sum() + stats.norm.logpdf(y, X @ (2 * beta), 0.5).sum()
    got = m.log_density({"beta": beta.tolist()}, {"N": 4, "NB": 3, "X": X.tolist(), "y": y.tolist()})
    assert got == pytest.approx(want, rel=1e-9)


def test_map_fits_through_a_data_sized_fn():
    """Ridge regression's exact mode: beta = (4 X'X/s^2 + I)^-1 2 X'y/s^2."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.5 * rng.normal(size=30)
    post = fglang.compile(SRC).fit({"N": 30, "NB": 3, "X": X.tolist(), "y": y.tolist()}, "map")
    A = 4 * X.T @ X / 0.25 + np.eye(3)
    want = np.linalg.solve(A, 2 * X.T @ y / 0.25)
    np.testing.assert_allclose(post.mean("beta"), want, rtol=1e-4, atol=1e-6)


def test_an_argument_of_another_size_is_a_located_error_at_bind():
    m = fglang.compile(SRC.replace("data X[N, NB]: real", "data M: int\ndata X[N, M]: real"), "basis.fg")
    with pytest.raises(FgError) as err:
        m.log_density({"beta": [0.0, 0.0]}, {"N": 1, "NB": 2, "M": 3, "X": [[1.0, 2.0, 3.0]], "y": [0.0]})
    text = str(err.value)
    assert "basis.fg:10:" in text and "argument 'row' of fn 'predict' must have shape [2], got [3]" in text, text
    assert "^" in text


def test_a_result_of_another_size_is_a_located_error_at_bind():
    m = fglang.compile("model r\ndata N: int\ndata NB: int\nfn g(b: real[NB]) -> real[N] { return b }\n"
                       "var v[NB]: real ~ normal(0, 1)\nfactor f: potential sum(g(v))\n", "r.fg")
    with pytest.raises(FgError) as err:
        m.log_density({"v": [0.0, 1.0]}, {"NB": 2, "N": 3})
    assert "r.fg:4:39:" in str(err.value) and "fn 'g' returns [2] but is declared to return [3]" in str(err.value)
    assert m.log_density({"v": [0.0, 1.0]}, {"NB": 2, "N": 2}) == pytest.approx(stats.norm.logpdf([0, 1]).sum() + 1)


@pytest.mark.parametrize("fn, where, message", [
    ("fn g(b: real[mu]) -> real { return sum(b) }", "6:14", "'mu' is a var"),
    ("fn g(b: real[y]) -> real { return sum(b) }", "6:14", "'y' is real data"),
    ("fn g(b: real[2]) -> real[mu] { return b }", "6:26", "'mu' is a var"),
    ("fn g(b: real[Q]) -> real { return sum(b) }", "6:14", "unknown name 'Q'"),
])
def test_other_names_in_a_fn_shape_are_located_errors(fn, where, message):
    src = "model c\ndata NB: int\ndata N: int\ndata y: real\nvar mu: real\n" + fn + "\n"
    with pytest.raises(FgError) as err:
        fglang.compile(src, "c.fg")
    text = str(err.value)
    assert f"c.fg:{where}:" in text and message in text, text
    assert "unknown name 'b'" not in text  # no second error at the parameter's uses
