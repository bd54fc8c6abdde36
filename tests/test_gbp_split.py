"""Unindexed factors in GBP (SPEC section 4): split into independent members
when their elements touch disjoint nodes, one factor otherwise, and a clear
error when that one factor would touch very many nodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fglang
from fglang.errors import FgError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _unindexed(src: str, line: str) -> str:
    """denoise_normal.fg with its indexed observation family replaced by ``line``."""
    old = "factor obs[i in 0:H, j in 0:W]:       img[i, j] ~ normal(x[i, j], s_obs)"
    assert old in src
    return src.replace(old, line)


def test_unindexed_observation_is_split_into_pixels_and_equals_the_indexed_family():
    src = (EXAMPLES / "denoise_normal.fg").read_text()
    indexed, unindexed = fglang.compile(src), fglang.compile(_unindexed(src, "factor obs: img ~ normal(x, s_obs)"))
    fam = unindexed.ir.families["obs"]
    assert fam.ranges == () and fam.members is not None and len(fam.members.ranges) == 2
    rng = np.random.default_rng(0)
    data = {"H": 9, "W": 7, "img": rng.normal(size=(9, 7)).tolist()}
    bm = unindexed.bind(data)
    assert bm.families["obs"].n_members == 1 and bm.families["obs"].members.n_members == 63
    a = indexed.fit(data, backend="gbp", dtype="float64", iters=500, tol=1e-12)
    b = unindexed.fit(data, backend="gbp", dtype="float64", iters=500, tol=1e-12)
    np.testing.assert_allclose(b.mean("x"), a.mean("x"), rtol=0, atol=1e-10)
    np.testing.assert_allclose(b.sd("x"), a.sd("x"), rtol=1e-10)
    assert b.attrs["iterations"] == a.attrs["iterations"]
    from fglang.compiler.show import show_ir

    assert "gbp: split into independent members [obs__i0 in 0:H, obs__i1 in 0:W] (63 members)" in show_ir(
        unindexed.ir, bm)


@pytest.mark.parametrize(
    "factor, split",
    [
        ("factor obs: img ~ normal(x, s_obs)", True),
        ("factor obs: img ~ huber(2 * tanh(x) + 1, s_obs, 1.5)", True),  # elementwise, nonlinear, robust
        ("factor obs: img ~ normal(x + shift, s_obs)", True),  # a data array of the grid's shape
        ("factor obs: img ~ normal(x + mu, s_obs)", False),  # every pixel touches mu: not disjoint
        ("factor obs: img[0] ~ normal(x[0], s_obs)", False),  # one row: rank 1, not the grid
        ("factor obs: img ~ normal(x + row, s_obs)", False),  # a [W] array: the sizes do not match [H, W]
        ("factor obs: img ~ mvnormal(x, cov=c)", False),  # a joint density
    ],
)
def test_which_unindexed_factors_split(factor, split):
    src = _unindexed((EXAMPLES / "denoise_normal.fg").read_text(), factor)
    src = src.replace("var x[H, W]: real", "var x[H, W]: real\nvar mu: real\ndata shift[H, W]: real = 0\n"
                      "data row[H]: real = 0\ndata c[W, W]: real = 0")
    fam = fglang.compile(src).ir.families["obs"]
    assert (fam.members is not None) is split


@pytest.mark.heavy
def test_a_factor_over_too_many_nodes_is_an_error_that_says_what_to_write():
    src = """model chain
data T: int
data y[T]: real
var x[T]: real
factor step: x[1:T] ~ normal(x[0:T-1], 1)
factor obs: y ~ normal(x, 0.5)
"""
    m = fglang.compile(src, "chain.fg")
    assert m.ir.families["obs"].members is not None and m.ir.families["step"].members is None
    with pytest.raises(FgError) as err:
        m.fit({"T": 100, "y": np.zeros(100)}, backend="gbp")
    text = str(err.value)
    assert "chain.fg:5:1: factor 'step' touches 100 nodes of x in one member" in text
    assert "indexed family" in text and "--backend vi" in text
    # small enough: one exact factor (a chain as one joint Gaussian), same means as the indexed chain
    y = np.random.default_rng(1).normal(size=12)
    one = m.fit({"T": 12, "y": y}, backend="gbp", dtype="float64", iters=200, tol=1e-12)
    fam = fglang.compile(src.replace("factor step: x[1:T] ~ normal(x[0:T-1], 1)",
                                     "factor step[t in 1:T]: x[t] ~ normal(x[t-1], 1)"))
    ref = fam.fit({"T": 12, "y": y}, backend="gbp", dtype="float64", iters=200, tol=1e-12)
    np.testing.assert_allclose(one.mean("x"), ref.mean("x"), atol=1e-8)


WALK = """model walk
data T: int
data y[T]: real
data w[T]: real = 1
data perm[T]: int = 0
var x[T]: real ~ normal(0, 10)
factor step[t in 1:T]: x[t] ~ normal(x[t-1], 0.3)
OBS
"""


def test_prediction_of_a_split_target_equals_the_indexed_family():
    y = np.random.default_rng(2).normal(size=40)
    indexed = fglang.compile(WALK.replace("OBS", "factor obs[t in 0:T]: y[t] ~ normal(x[t], 0.5)"))
    unindexed = fglang.compile(WALK.replace("OBS", "factor obs: y ~ normal(x, 0.5)"))
    preds = []
    for m in (indexed, unindexed):
        post = m.fit({"T": 40, "y": y}, backend="gbp", dtype="float64", iters=300, tol=1e-12)
        preds.append(m.predict(post, {"T": 40}, dtype="float64", iters=300, tol=1e-12))
    a, b = preds
    np.testing.assert_allclose(b.mean("obs"), a.mean("obs"), atol=1e-9)
    np.testing.assert_allclose(b.sd("obs"), a.sd("obs"), rtol=1e-9)
    assert b.mean("obs").shape == (40,)


@pytest.mark.parametrize("obs", ["y ~ normal(x * w[perm], 0.5)", "y[perm] ~ normal(x, 0.5)",
                                 "y ~ normal(x * [1, 2, 3], 0.5)"])
def test_gathers_and_literals_are_not_split_and_still_bind(obs):
    m = fglang.compile(WALK.replace("OBS", f"factor obs: {obs}"))
    assert m.ir.families["obs"].members is None
    m.bind({"T": 3, "y": [0.1, 0.2, 0.3], "w": [1, 2, 3], "perm": [2, 1, 0]})


def test_members_over_many_scalar_nodes_are_told_to_use_one_vector_node():
    src = """model wide
data N: int
data K: int
data X[N, K]: real
data y[N]: real
var w[K]: real ~ normal(0, 1)
factor obs[n in 0:N]: y[n] ~ normal(dot(X[n], w), 0.5)
"""
    m = fglang.compile(src, "wide.fg")
    with pytest.raises(FgError) as err:
        m.fit({"N": 5, "K": 70, "X": np.zeros((5, 70)), "y": np.zeros(5)}, backend="gbp")
    text = str(err.value)
    assert "wide.fg:7:1: factor 'obs' touches 70 nodes of w in one member" in text
    assert "var w: real[K] instead of var w[K]: real" in text
    # the advice works: one 70-vector node runs
    post = fglang.compile(src.replace("var w[K]: real", "var w: real[K]")).fit(
        {"N": 5, "K": 70, "X": np.ones((5, 70)), "y": np.ones(5)}, backend="gbp", iters=20)
    assert post.mean("w").shape == (70,)
