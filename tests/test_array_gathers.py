"""A node-indexed var read through an int data array (``x[idx]``, the
documented ``beta[group]`` gather; ``x[nbr[k]]`` inside a family) reads the
whole node axis as one slot and gathers in JAX (compiler/lower.py `_slot`).
Both forms crashed at bind with a NumPy broadcast error. The oracle is the
exact linear-Gaussian solve: prior N(0, 1) on every node, unit noise, so the
posterior precision is I + A^T A for the design matrix A the gathers make."""

from __future__ import annotations

import numpy as np
import pytest

import fglang


def _exact(A: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prec = np.eye(A.shape[1]) + A.T @ A
    cov = np.linalg.inv(prec)
    return cov @ A.T @ y, np.sqrt(np.diag(cov))


UNINDEXED = """model gather_whole
data K: int
data idx[K]: int
data y[K]: real
var x[5]: real ~ normal(0, 1)
let twice = 2 * x[idx]
factor obs: y ~ normal(x[idx], 1)
"""

FAMILY = """model gather_rows
data K: int
data nbr[K, 2]: int
data y[K]: real
var x[5]: real ~ normal(0, 1)
factor obs[k in 0:K]: y[k] ~ normal(sum(x[nbr[k]]), 1)
"""

TWO_AXES = """model gather_axis
data K: int
data idx[K]: int
data y[3]: real
var w[3, 5]: real ~ normal(0, 1)
factor obs[i in 0:3]: y[i] ~ normal(sum(w[i, idx]), 1)
"""


def test_a_whole_gather_in_an_unindexed_factor_and_a_let():
    idx, y = np.array([0, 2, 4, 2]), np.array([0.4, -0.3, 1.2, 0.5])
    A = np.zeros((4, 5))
    A[np.arange(4), idx] = 1.0
    mean, sd = _exact(A, y)
    m = fglang.compile(UNINDEXED)
    data = {"K": 4, "idx": idx.tolist(), "y": y.tolist()}
    for backend in ("map", "gbp"):
        post = m.fit(data, backend=backend)
        np.testing.assert_allclose(post.mean("x"), mean, atol=1e-6)
        np.testing.assert_allclose(post.sd("x"), sd, rtol=1e-5)
    np.testing.assert_allclose(m.fit(data, backend="map").mean("twice"), 2 * mean[idx], atol=1e-6)


@pytest.mark.parametrize("backend", ["map", "gbp"])
def test_a_gather_of_rows_in_a_family(backend):
    nbr = np.array([[0, 1], [2, 3], [4, 0], [1, 1]])
    y = np.array([0.1, 0.9, -0.4, 0.6])
    A = np.zeros((4, 5))
    for k, row in enumerate(nbr):
        for j in row:
            A[k, j] += 1.0
    mean, _ = _exact(A, y)
    post = fglang.compile(FAMILY).fit({"K": 4, "nbr": nbr.tolist(), "y": y.tolist()}, backend=backend)
    np.testing.assert_allclose(post.mean("x"), mean, atol=1e-5)


def test_a_gather_along_one_axis_of_a_two_axis_var():
    idx, y = np.array([4, 0, 0]), np.array([0.3, -1.0, 2.0])
    A = np.zeros((3, 15))
    for i in range(3):
        for j in idx:
            A[i, i * 5 + j] += 1.0
    mean, _ = _exact(A, y)
    post = fglang.compile(TWO_AXES).fit({"K": 3, "idx": idx.tolist(), "y": y.tolist()}, backend="map")
    np.testing.assert_allclose(np.asarray(post.mean("w")).ravel(), mean, atol=1e-6)


@pytest.mark.parametrize("source, where", [
    (UNINDEXED, "axis 0 of 'x' (size 5)"),
    (UNINDEXED.replace("factor obs: y ~ normal(x[idx], 1)", "factor obs: y ~ normal(x[0], 1)"),
     "axis 0 of 'x' (size 5)"),  # the let alone reads idx
    (UNINDEXED.replace("var x[5]: real", "var x: real[5]"), "axis 0 of 'x' (size 5)"),  # a value axis
    (TWO_AXES, "axis 1 of 'w' (size 5)"),
])
def test_an_out_of_range_gather_is_a_located_error(source, where):
    """JAX clamps an index past the end: without the check at bind, idx = 5
    read x[4], silently (a var's value axis, ``x: real[5]``, did so before
    gathers of nodes worked at all)."""
    m = fglang.compile(source)
    with pytest.raises(fglang.FgError) as e:
        m.bind({"K": 3, "idx": [0, 5, 1], "y": [0.0, 1.0, 2.0]})
    text = str(e.value)
    assert f"index 5 is out of range for {where}" in text and "^^^" in text and "0-based" in text


# an index into a value that is neither data nor a var (a product, a sum, a call,
# a let pushed into its expression): JAX clamps it as well, so bind checks it
# against the shape the checker gave the value, with the data's sizes
EXPR_INDEX = """model expr_index
data N: int
data K: int
data X[N, 3]: real
data c[N]: real
data idx[K]: int
data y[K]: real
var w[3]: real ~ normal(0, 1)
let mu = X @ w
factor lik[k in 0:K]: y[k] ~ normal(mu[idx[k]] + (X @ w)[idx[k]] - (c + X @ w)[idx[k]] + c[idx[k]], 1)
"""


def test_an_in_range_index_into_an_expression_reads_its_element():
    """mu[i] + (X@w)[i] - (c + X@w)[i] + c[i] is (X@w)[i]: the exact
    linear-Gaussian solve with the design rows X[idx]."""
    rng = np.random.default_rng(3)
    X, c = rng.normal(size=(4, 3)), rng.normal(size=4)
    idx, y = np.array([3, 0, 2, 3, 1]), rng.normal(size=5)
    mean, sd = _exact(X[idx], y)
    data = {"N": 4, "K": 5, "X": X.tolist(), "c": c.tolist(), "idx": idx.tolist(), "y": y.tolist()}
    post = fglang.compile(EXPR_INDEX).fit(data, backend="map")
    np.testing.assert_allclose(post.mean("w"), mean, atol=1e-6)
    np.testing.assert_allclose(post.sd("w"), sd, rtol=1e-5)


EXPR_CASES = {
    "a product": ("(X @ w)[n + 1]", "X @ w", "n=3"),
    "a sum": ("(c + X @ w)[n + 1]", "c + X @ w", "n=3"),
    "a call": ("softmax(X @ w)[n + 1]", "softmax(X @ w)", "n=3"),
    "a let": ("mu[n + 1]", "mu", "n=3"),
    "a let through a gather": ("sum(mu[idx])", "mu", ""),
    "a call through a gather": ("sum(exp(c)[idx])", "exp(c)", ""),
}


@pytest.mark.parametrize("case", EXPR_CASES, ids=list(EXPR_CASES))
def test_an_out_of_range_index_into_an_expression_is_a_located_error(case):
    written, base, member = EXPR_CASES[case]
    src = EXPR_INDEX.replace(
        "factor lik[k in 0:K]: y[k] ~ normal(mu[idx[k]] + (X @ w)[idx[k]] - (c + X @ w)[idx[k]] + c[idx[k]], 1)",
        f"factor lik[n in 0:N]: c[n] ~ normal({written}, 1)")
    m = fglang.compile(src)
    data = {"N": 4, "K": 2, "X": np.ones((4, 3)).tolist(), "c": [0.0] * 4, "idx": [1, 4], "y": [0.0, 0.0]}
    with pytest.raises(fglang.FgError) as e:
        m.bind(data)
    text = str(e.value)
    bad = 4
    assert f"index {bad} is out of range for axis 0 of '{base}' (size 4)" in text, text
    assert (f"when {member}" in text) == bool(member)
    line = text.splitlines()
    caret = next(k for k, s in enumerate(line) if "^" in s)
    col = line[caret].index("^")
    index_text = "idx" if "idx" in written else "n + 1"
    assert line[caret - 1][col:].startswith(index_text) and "0-based" in text


WHOLE_IN_FAMILY = """model whole_in_family
data N: int
data K: int
data idx[K]: int
data y[N]: real
var x[N]: real ~ normal(0, 1)
factor f[n in 0:N]: y[n] ~ normal(sum(x[idx]) + sum(x[idx * 0 + n]) / K, 1)
"""


def test_a_whole_array_gather_in_a_family_of_another_length():
    """x[idx] with K = 2 entries in a family of N = 4 members: the bind-time
    index check broadcast idx's (2,) against the members' (4,), a NumPy
    traceback; x[idx * 0 + n] is x[n] K times (a member index inside an int
    array's expression)."""
    idx, y = np.array([3, 1]), np.array([0.2, -0.5, 1.1, 0.4])
    A = np.eye(4)
    A[:, idx] += 1.0
    mean, sd = _exact(A, y)
    data = {"N": 4, "K": 2, "idx": idx.tolist(), "y": y.tolist()}
    post = fglang.compile(WHOLE_IN_FAMILY).fit(data, backend="map")
    np.testing.assert_allclose(post.mean("x"), mean, atol=1e-6)
    np.testing.assert_allclose(post.sd("x"), sd, rtol=1e-5)
    with pytest.raises(fglang.FgError, match=r"index 4 is out of range for axis 0 of 'x' \(size 4\)"):
        fglang.compile(WHOLE_IN_FAMILY).bind({**data, "idx": [1, 4]})


def test_an_index_into_a_broadcast_is_checked_against_the_broadcast_shape():
    """(v + c)[i] with v of 1 node and c of 3: the sum has 3 entries, so i = 2 is
    in range (the check reads the shape the checker gave the sum, not v's).
    Closed form: v ~ N(0, 1) with three unit-noise observations of v = 0.5."""
    src = ("model b\ndata S: int\ndata N: int\ndata c[N]: real\ndata y[N]: real\n"
           "var v[S]: real ~ normal(0, 1)\nfactor f[i in 0:N]: y[i] ~ normal((v + c)[i], 1)\n")
    post = fglang.compile(src).fit({"S": 1, "N": 3, "c": [0.0, 1.0, 2.0], "y": [0.5, 1.5, 2.5]}, backend="map")
    np.testing.assert_allclose(post.mean("v"), [1.5 / 4], atol=1e-6)
    np.testing.assert_allclose(post.sd("v"), [0.5], rtol=1e-5)
