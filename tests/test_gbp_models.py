"""GBP through the whole pipeline (.fg -> IR -> bind -> Gaussian graph -> engine),
checked against exact linear-Gaussian solves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import fglang

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_random_walk_matches_kalman_smoother_exactly():
    m = fglang.load(EXAMPLES / "random_walk.fg")
    rng = np.random.default_rng(1)
    t = 40
    y = np.cumsum(rng.normal(0, 0.1, t)) + rng.normal(0, 0.5, t)
    post = m.fit({"T": t, "y": y.tolist()}, backend="gbp", dtype="float64")
    lam = np.zeros((t, t))
    eta = y / 0.25
    lam[0, 0] += 1 / 100
    w = 1 / 0.1**2
    for k in range(1, t):
        lam[k, k] += w
        lam[k - 1, k - 1] += w
        lam[k, k - 1] -= w
        lam[k - 1, k] -= w
    lam += np.eye(t) / 0.25
    cov = np.linalg.inv(lam)
    assert post.attrs["converged"]
    np.testing.assert_allclose(post.mean("x"), cov @ eta, atol=1e-6)
    np.testing.assert_allclose(post.sd("x"), np.sqrt(np.diag(cov)), atol=1e-6)


TREE = """
model tree
data N: int
data parent[N]: int
data z[N]: real[2]
var p[N]: real[2]
factor root: p[0] ~ normal([0, 0], 3)
factor edge[k in 1:N]: p[k] ~ normal(p[parent[k]], 0.5)
factor obs[k in 0:N]: z[k] ~ normal(p[k], 1.5)
"""


def test_tree_of_vector_nodes_exact_marginals():
    rng = np.random.default_rng(2)
    n = 15
    parent = np.array([0] + [int(rng.integers(0, k)) for k in range(1, n)])
    z = rng.normal(size=(n, 2))
    post = fglang.compile(TREE).fit({"N": n, "parent": parent.tolist(), "z": z.tolist()}, backend="gbp",
                                    dtype="float64")
    d = 2 * n
    lam = np.zeros((d, d))
    eta = np.zeros(d)
    lam[0:2, 0:2] += np.eye(2) / 9
    for k in range(1, n):
        a, b = slice(2 * k, 2 * k + 2), slice(2 * parent[k], 2 * parent[k] + 2)
        w = np.eye(2) / 0.25
        lam[a, a] += w
        lam[b, b] += w
        lam[a, b] -= w
        lam[b, a] -= w
    lam += np.eye(d) / 2.25
    eta += z.ravel() / 2.25
    cov = np.linalg.inv(lam)
    np.testing.assert_allclose(post.mean("p"), (cov @ eta).reshape(n, 2), atol=1e-6)
    node_cov = np.stack([cov[2 * k : 2 * k + 2, 2 * k : 2 * k + 2] for k in range(n)])
    np.testing.assert_allclose(post.cov("p"), node_cov, atol=1e-6)


def test_loopy_grid_means_match_sparse_solve():
    m = fglang.load(EXAMPLES / "denoise_normal.fg")
    rng = np.random.default_rng(3)
    h, w = 12, 10
    img = rng.normal(size=(h, w))
    s_obs, s_smooth = 0.1, 0.05
    post = m.fit({"H": h, "W": w, "img": img.tolist(), "s_obs": s_obs, "s_smooth": s_smooth}, backend="gbp",
                 dtype="float64", iters=5000, tol=1e-10)
    n = h * w
    idx = np.arange(n).reshape(h, w)
    rows, cols, vals = [], [], []
    for a, b in [(idx[:, 1:], idx[:, :-1]), (idx[1:, :], idx[:-1, :])]:
        a, b = a.ravel(), b.ravel()
        wgt = 1 / s_smooth**2
        rows += [a, b, a, b]
        cols += [a, b, b, a]
        vals += [np.full(a.size, wgt)] * 2 + [np.full(a.size, -wgt)] * 2
    lam = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), (n, n)).tocsc()
    lam = lam + sp.eye(n) / s_obs**2
    exact = spla.spsolve(lam, img.ravel() / s_obs**2).reshape(h, w)
    np.testing.assert_allclose(post.mean("x"), exact, atol=1e-5)


BLR = """
model blr
data N: int batch
data D: int
data X[N, D]: real
data y[N]: real
var w: real[D] ~ normal(0, 2)
factor lik[n in 0:N]: y[n] ~ normal(dot(X[n], w), 0.3)
"""


def _blr_data(n=30, d=3, seed=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = x @ np.array([1.0, -2.0, 0.5])[:d] + rng.normal(0, 0.3, n)
    return {"N": n, "D": d, "X": x.tolist(), "y": y.tolist()}, x, y


def test_bayesian_linear_regression_equals_closed_form():
    data, x, y = _blr_data()
    post = fglang.compile(BLR).fit(data, backend="gbp", dtype="float64")
    lam = np.eye(3) / 4 + x.T @ x / 0.09
    cov = np.linalg.inv(lam)
    np.testing.assert_allclose(post.mean("w"), cov @ (x.T @ y / 0.09), atol=1e-6)
    np.testing.assert_allclose(post.cov("w"), cov, atol=1e-6)


def test_filtering_over_batches_equals_one_fit_for_one_persistent_node():
    data, _, _ = _blr_data(n=40)
    m = fglang.compile(BLR)
    whole = m.fit(data, backend="gbp", dtype="float64")
    batched = m.fit(data, backend="gbp", dtype="float64", batch_size=20)
    assert len(batched.attrs["batches"]) == 2
    np.testing.assert_allclose(batched.mean("w"), whole.mean("w"), atol=1e-6)
    np.testing.assert_allclose(batched.cov("w"), whole.cov("w"), atol=1e-6)


def test_posterior_file_as_prior_round_trip(tmp_path):
    data, _, _ = _blr_data(n=40)
    m = fglang.compile(BLR)
    first = dict(data, N=20, X=data["X"][:20], y=data["y"][:20])
    second = dict(data, N=20, X=data["X"][20:], y=data["y"][20:])
    path = m.fit(first, backend="gbp", dtype="float64").save(tmp_path / "first.nc")
    carried = m.fit(second, backend="gbp", dtype="float64", prior=path)
    whole = m.fit(data, backend="gbp", dtype="float64")
    np.testing.assert_allclose(carried.mean("w"), whole.mean("w"), atol=1e-6)


def test_prediction_of_missing_targets():
    data, x, y = _blr_data(n=30)
    m = fglang.compile(BLR)
    post = m.fit(data, backend="gbp", dtype="float64")
    new_x = np.random.default_rng(9).normal(size=(5, 3))
    pred = m.predict(post, {"N": 5, "D": 3, "X": new_x.tolist()}, dtype="float64")
    mean_w, cov_w = post.mean("w"), post.cov("w")
    np.testing.assert_allclose(pred.mean("lik"), new_x @ mean_w, atol=1e-6)
    var = np.einsum("nd,de,ne->n", new_x, cov_w, new_x) + 0.09
    np.testing.assert_allclose(pred.sd("lik"), np.sqrt(var), atol=1e-6)


@pytest.mark.parametrize(
    "source, message",
    [
        (
            "model m\ndata y: real\nvar s: positive\nvar x: real\nfactor f: y ~ normal(x, s)\n",
            "gbp needs unconstrained real vars; 's' is positive",
        ),
        (
            "model m\ndata y: int\nvar x: real\nfactor f: y ~ bernoulli(logit=x)\n",
            "gbp cannot run 'bernoulli' in factor 'f'",
        ),
        ("model m\nvar x: real\nfactor f: potential -x^2\n", "gbp cannot run the potential 'f'"),
        (
            "model m\ndata y: real\nvar x: real\nvar z: real\nfactor f: y ~ normal(x, exp(z))\n",
            "gbp needs known scales: 'sd' of normal in factor 'f' depends on a var",
        ),
    ],
)
def test_what_gbp_cannot_run_is_rejected_with_location(source, message):
    m = fglang.compile(source, "m.fg")
    data = {"y": 1}
    with pytest.raises(fglang.FgError) as e:
        m.fit(data, backend="gbp")
    text = str(e.value)
    assert message in text
    assert text.startswith("m.fg:")
    assert "--backend vi" in text or "vi or" in text or "known" in text


def _xor(seed: int, n: int = 40):
    rng = np.random.default_rng(seed)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * (n // 4), float) + rng.normal(0, 0.05, (n, 2))
    label = (np.round(x).sum(1) % 2).astype(int)
    return {"N": n, "D": 2, "H": 8, "X": x.tolist(), "label": label.tolist()}, label


@pytest.mark.heavy
@pytest.mark.parametrize("seed", range(5))
def test_xor_is_learned_by_gbp(seed):
    """SPEC's mlp_classifier_gbp learns XOR (100% train accuracy) in a fixed budget."""
    m = fglang.load(EXAMPLES / "mlp_classifier_gbp.fg")
    data, label = _xor(seed)
    post = m.fit(data, backend="gbp", iters=300, damping=0.5, seed=seed)
    inputs = {k: v for k, v in data.items() if k != "label"}
    pred = m.predict(post, inputs, iters=300, damping=0.5, seed=seed)
    assert np.all((pred.mean("out") > 0).astype(int) == label)


def test_let_is_reported_by_linearization():
    m = fglang.compile(
        "model m\ndata N: int\ndata y[N]: real\nvar x[N]: real ~ normal(0, 1)\n"
        "let z = 2 * x + 1\nfactor obs[i in 0:N]: y[i] ~ normal(x[i], 1)\n"
    )
    post = m.fit({"N": 3, "y": [1.0, 2.0, 3.0]}, backend="gbp", dtype="float64")
    np.testing.assert_allclose(post.mean("x"), [0.5, 1.0, 1.5], atol=1e-8)
    np.testing.assert_allclose(post.mean("z"), 2 * post.mean("x") + 1, atol=1e-8)
    np.testing.assert_allclose(post.sd("z"), 2 * post.sd("x"), atol=1e-8)


NEURON_LAYER = """
model neurons
data N: int
data D: int
data H: int
data X[N, D]: real
var W1[H]: real[D] ~ normal(0, 0.3)
var b1[H]: real ~ normal(0, 1)
var h[N, H]: real
factor layer1[n in 0:N, k in 0:H]: h[n, k] ~ normal(leaky_relu(dot(W1[k], X[n]) + b1[k]), 0.1)
"""

_NEURON_SCRIPT = """
import sys, numpy as np, fglang
src = sys.stdin.read()
x = np.random.default_rng(0).normal(size=(30, 64))
post = fglang.compile(src).fit({"N": 30, "D": 64, "H": 16, "X": x}, backend="gbp", iters=3)
print("iterations", post.attrs["iterations"])
"""


@pytest.mark.slow
def test_many_wide_neurons_do_not_deadlock_the_cpu_solver():
    # 480 factors over 64-weight neurons: one iteration holds two independent
    # batched LAPACK Cholesky calls (the 16 neurons' beliefs and the 480
    # members' solves), which deadlocked XLA:CPU's 2-thread pool before the
    # solves were chained (algebra.sequential_lapack_solves). A subprocess with
    # a timeout, so that a regression fails instead of hanging the suite.
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _NEURON_SCRIPT], input=NEURON_LAYER, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "iterations 3" in out.stdout


def test_prediction_moments_per_member_equal_the_dense_linearization():
    # family_moments (one vmapped Jacobian per member) against the dense
    # Jacobian of the whole family over every node, with per-node covariances;
    # the last member reads x[N-1] through two slots (min(n + 1, N - 1)).
    import jax.numpy as jnp

    from fglang.runtime.gaussian import linearized_moments
    from fglang.runtime.predict import family_moments

    src = """model m
data N: int
data y[N]: real
var x[N]: real
var w: real[2]
factor f[n in 0:N]: y[n] ~ normal(tanh(x[n] * x[min(n + 1, N - 1)]) + dot(w, [x[n], 1]), 0.5)
"""
    n = 7
    bm = fglang.compile(src).bind({"N": n, "y": np.zeros(n)})
    rng = np.random.default_rng(0)
    means = {"x": jnp.asarray(rng.normal(size=n)), "w": jnp.asarray(rng.normal(size=2))}
    a = rng.normal(size=(n, 1, 1))
    b = rng.normal(size=(2, 2))
    covs = {"x": a * a + 0.1, "w": b @ b.T + 0.1 * np.eye(2)}
    fam = bm.families["f"]
    data = {k: jnp.asarray(v) for k, v in bm.data.items()}
    mean, var = family_moments(bm, fam, data, means, covs)
    idx = {k: jnp.asarray(v) for k, v in fam.idx.items()}

    def mu_of(x, w):
        out = fam.evaluate(data, idx, tuple(bm.gather(s, {"x": x, "w": w}) for s in fam.slots))
        return jnp.ravel(out["args"]["mu"])

    ref_mean, ref_var = linearized_moments(bm, mu_of, ["x", "w"], means, covs)
    np.testing.assert_allclose(mean.ravel(), ref_mean, rtol=1e-6)
    np.testing.assert_allclose(var.ravel(), ref_var, rtol=1e-5)
