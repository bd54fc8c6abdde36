"""The ``map`` backend: MAP by Levenberg-Marquardt and its Laplace marginals,
checked against closed forms, dense solves and SciPy optimizers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sp
from conftest import load_script, vector_chain_posterior
from scipy.special import expit, log_expit
from typer.testing import CliRunner

import fglang
from fglang.cli import app
from fglang.errors import FgError
from fglang.runtime.posterior import load_posterior

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
g2o = load_script("g2o", EXAMPLES / "g2o.py")

BLR = """
model blr
data N: int
data D: int
data X[N, D]: real
data y[N]: real
var w[D]: real ~ normal(0, 2)
var b: real ~ normal(0, 3)
let fit0 = b + sum[d in 0:D](X[0, d] * w[d])
factor lik[n in 0:N]: y[n] ~ normal(b + sum[d in 0:D](X[n, d] * w[d]), 0.3)
"""


def _blr_data(n=30, d=3, seed=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = x @ np.array([1.0, -2.0, 0.5])[:d] + 0.7 + rng.normal(0, 0.3, n)
    return {"N": n, "D": d, "X": x.tolist(), "y": y.tolist()}, x, y


def _blr_closed_form(x, y):
    a = np.hstack([x, np.ones((len(x), 1))])
    lam = np.diag([1 / 4] * x.shape[1] + [1 / 9]) + a.T @ a / 0.09
    cov = np.linalg.inv(lam)
    return cov @ (a.T @ y / 0.09), cov


def test_bayesian_linear_regression_equals_closed_form():
    data, x, y = _blr_data()
    post = fglang.compile(BLR).fit(data, backend="map")
    mean, cov = _blr_closed_form(x, y)
    assert post.attrs["path"] == "lsq" and post.attrs["converged"]
    np.testing.assert_allclose(post.mean("w"), mean[:3], rtol=0, atol=1e-8)
    np.testing.assert_allclose(post.mean("b"), mean[3], rtol=0, atol=1e-8)
    np.testing.assert_allclose(post.cov("w").ravel(), np.diag(cov)[:3], rtol=1e-8, atol=0)
    np.testing.assert_allclose(post.cov("b").ravel(), cov[3, 3], rtol=1e-8, atol=0)
    # the let, linearized with the per-node variances (no cross-node terms, as in GBP)
    a0 = np.append(x[0], 1.0)
    np.testing.assert_allclose(post.mean("fit0"), a0 @ mean, atol=1e-8)
    np.testing.assert_allclose(post.sd("fit0") ** 2, (a0**2) @ np.diag(cov), rtol=1e-8)


def test_general_path_agrees_with_least_squares_on_a_linear_model():
    data, x, y = _blr_data()
    m = fglang.compile(BLR)
    lsq = m.fit(data, backend="map")
    gen = m.fit(data, backend="map", path="general")
    assert gen.attrs["path"] == "general"
    np.testing.assert_allclose(gen.mean("w"), lsq.mean("w"), atol=1e-8)
    np.testing.assert_allclose(gen.cov("w"), lsq.cov("w"), rtol=1e-7)


def test_random_walk_equals_a_dense_solve():
    m = fglang.load(EXAMPLES / "random_walk.fg")
    rng = np.random.default_rng(1)
    t, q = 60, 0.1
    y = np.cumsum(rng.normal(0, q, t)) + rng.normal(0, 0.5, t)
    post = m.fit({"T": t, "y": y.tolist()}, backend="map")
    d = sp.diags([np.ones(t - 1), -np.ones(t - 1)], [0, 1], shape=(t - 1, t)).toarray()
    lam = d.T @ d / q**2 + np.eye(t) / 0.25
    lam[0, 0] += 1 / 100
    cov = np.linalg.inv(lam)
    np.testing.assert_allclose(post.mean("x"), cov @ (y / 0.25), rtol=0, atol=1e-8)
    np.testing.assert_allclose(post.cov("x").ravel(), np.diag(cov), rtol=1e-8, atol=0)


VECTOR_NODES = """
model chain3
data T: int
data y[T]: real[3]
data C: real[3, 3]
var x[T]: real[3]
factor init: x[0] ~ normal([0, 0, 0], 10)
factor step[t in 1:T]: x[t] ~ mvnormal(x[t-1], C)
factor obs[t in 0:T]: y[t] ~ normal(x[t], 0.5)
"""


def test_vector_nodes_and_mvnormal_give_the_dense_blocks():
    """Full 3x3 blocks per node through mvnormal: selected inversion against a dense inverse."""
    rng = np.random.default_rng(2)
    t = 25
    c = np.array([[0.04, 0.01, 0.0], [0.01, 0.09, 0.02], [0.0, 0.02, 0.05]])
    y = rng.normal(size=(t, 3))
    post = fglang.compile(VECTOR_NODES).fit({"T": t, "y": y.tolist(), "C": c.tolist()}, backend="map")
    mean, blocks = vector_chain_posterior(c, y)
    np.testing.assert_allclose(post.mean("x").ravel(), mean, atol=1e-8)
    np.testing.assert_allclose(post.cov("x"), blocks, rtol=1e-8, atol=1e-12)


def _pose_graph():
    data = json.loads((EXAMPLES / "data" / "pose_graph_2d.json").read_text())
    init = json.loads((EXAMPLES / "data" / "pose_graph_2d_init.json").read_text())
    data.pop("pose_true", None)
    return data, init


def test_pose_graph_reaches_the_least_squares_optimum():
    data, init = _pose_graph()
    post = fglang.load(EXAMPLES / "pose_graph_2d.fg").fit(data, backend="map", init=init)
    ref = g2o.solve_least_squares(data, np.asarray(init["pose"]))
    ref_cost = g2o.pose_graph_cost(data, ref.poses)
    assert post.attrs["converged"] and post.attrs["path"] == "lsq"
    assert abs(post.attrs["cost"] - ref_cost) <= 1e-6 * ref_cost
    assert abs(g2o.pose_graph_cost(data, post.mean("pose")) - ref_cost) <= 1e-6 * ref_cost
    # Gauss-Newton reaches the same optimum
    gn = fglang.load(EXAMPLES / "pose_graph_2d.fg").fit(data, backend="map", init=init, method="gn")
    assert abs(gn.attrs["cost"] - ref_cost) <= 1e-6 * ref_cost


ROBUST = """
model robust_line
data N: int
data x[N]: real
data y[N]: real
var a: real
var b: real
factor obs[n in 0:N]: y[n] ~ {dist}
"""


def _outlier_line(seed=3, n=40):
    rng = np.random.default_rng(seed)
    x = np.linspace(-2, 2, n)
    y = 1.5 * x - 0.5 + rng.normal(0, 0.2, n)
    y[::7] += rng.choice([-4.0, 5.0], size=len(y[::7]))
    return {"N": n, "x": x.tolist(), "y": y.tolist()}, x, y


def test_huber_factors_give_the_robust_optimum():
    data, x, y = _outlier_line()
    sd, delta = 0.2, 1.345
    post = fglang.compile(ROBUST.format(dist=f"huber(a + b * x[n], {sd}, {delta})")).fit(data, backend="map")
    ref = so.least_squares(lambda p: (y - p[0] - p[1] * x) / sd, [0.0, 0.0], loss="huber", f_scale=delta,
                           xtol=1e-15, ftol=1e-15, gtol=1e-15)
    np.testing.assert_allclose([post.mean("a"), post.mean("b")], ref.x, atol=1e-8)
    assert abs(post.attrs["cost"] - ref.cost) <= 1e-9 * ref.cost
    # a plain Gaussian fit is pulled by the outliers; the robust one is not
    assert abs(post.mean("b") - 1.5) < 0.1


def test_student_t_factors_give_the_robust_optimum():
    data, x, y = _outlier_line()
    sd, df = 0.2, 4.0
    post = fglang.compile(ROBUST.format(dist=f"student_t({df}, a + b * x[n], {sd})")).fit(data, backend="map")

    def cost(p):
        u = (y - p[0] - p[1] * x) / sd
        return 0.5 * (df + 1) * np.sum(np.log1p(u * u / df))

    start = np.polyfit(x, y, 1)[::-1]
    ref = so.minimize(cost, start, method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose([post.mean("a"), post.mean("b")], ref.x, atol=1e-6)


EIGHT = {
    "J": 8,
    "y": [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0],
    "sigma": [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0],
}


def _eight_schools_neg_log_density(u):
    """-log p(mu, log tau, theta_raw | y) with the log-Jacobian of tau = exp(log tau)."""
    import jax.numpy as jnp

    y, s = jnp.asarray(EIGHT["y"]), jnp.asarray(EIGHT["sigma"])
    mu, lt, raw = u[0], u[1], u[2:]
    tau = jnp.exp(lt)
    lp = -0.5 * (mu / 5) ** 2
    lp += -jnp.log1p((tau / 5) ** 2) + lt
    lp += -0.5 * jnp.sum(raw**2)
    lp += -0.5 * jnp.sum(((y - mu - tau * raw) / s) ** 2)
    return -lp


def test_eight_schools_non_centered_equals_scipy_minimize():
    post = fglang.load(EXAMPLES / "eight_schools.fg").fit(EIGHT, backend="map")
    assert post.attrs["path"] == "general" and post.attrs["converged"]
    import jax

    with jax.enable_x64(True):
        f = jax.jit(_eight_schools_neg_log_density)
        g, h = jax.jit(jax.grad(f)), jax.jit(jax.hessian(f))
        ref = so.minimize(lambda u: float(f(u)), np.zeros(10), jac=lambda u: np.asarray(g(u)),
                          hess=lambda u: np.asarray(h(u)), method="trust-exact", options={"gtol": 1e-10})
    assert np.max(np.abs(ref.jac)) < 1e-8
    np.testing.assert_allclose(post.mean("mu"), ref.x[0], atol=1e-6)
    np.testing.assert_allclose(post.mean("theta_raw"), ref.x[2:], atol=1e-6)
    # tau has no Gaussian marginal of its own (it is positive): its draws are exp of the Laplace draws
    assert "tau" not in post.gaussian and np.all(post.samples("tau") > 0)
    assert np.median(np.log(post.samples("tau"))) == pytest.approx(ref.x[1], abs=0.15)
    assert post.samples("theta").shape == (200, 8)


LOGREG = """
model logreg
data N: int
data D: int
data X[N, D]: real
data y[N]: int
var w[D]: real ~ normal(0, 1)
factor obs[n in 0:N]: y[n] ~ bernoulli(logit=sum[d in 0:D](X[n, d] * w[d]))
"""


def test_logistic_regression_equals_scipy_minimize():
    rng = np.random.default_rng(5)
    n, d = 80, 4
    x = rng.normal(size=(n, d))
    y = (rng.random(n) < expit(x @ np.array([1.0, -1.0, 0.5, 2.0]))).astype(int)
    post = fglang.compile(LOGREG).fit({"N": n, "D": d, "X": x.tolist(), "y": y.tolist()}, backend="map")

    def f(w):
        z = x @ w
        return -(np.sum(y * log_expit(z) + (1 - y) * log_expit(-z)) - 0.5 * w @ w)

    def g(w):
        return -(x.T @ (y - expit(x @ w)) - w)

    ref = so.minimize(f, np.zeros(d), jac=g, method="BFGS", options={"gtol": 1e-12})
    np.testing.assert_allclose(post.mean("w"), ref.x, atol=1e-6)
    # the Laplace variance is the inverse of the exact Hessian at the mode
    p = expit(x @ ref.x)
    h = x.T @ (x * (p * (1 - p))[:, None]) + np.eye(d)
    np.testing.assert_allclose(post.cov("w").ravel(), np.diag(np.linalg.inv(h)), rtol=1e-6)


def test_laplace_draws_have_the_stated_covariance():
    data, x, y = _blr_data()
    post = fglang.compile(BLR).fit(data, backend="map", draws=20000, seed=3)
    s = post.samples("w")
    np.testing.assert_allclose(s.mean(0), post.mean("w"), atol=4 * np.sqrt(post.cov("w").max() / 20000))
    np.testing.assert_allclose(s.var(0), post.cov("w").ravel(), rtol=0.05)
    # the general path draws from the joint Gaussian: cross-node covariance included
    gen = fglang.compile(BLR).fit(data, backend="map", path="general", draws=20000, seed=3)
    _, cov = _blr_closed_form(x, y)
    np.testing.assert_allclose(np.cov(gen.samples("w").T), cov[:3, :3], atol=0.05 * np.abs(cov[:3, :3]).max())


def test_carried_prior_round_trip(tmp_path):
    """A fit's per-node marginals as the next fit's prior: exact for one vector node."""
    src = BLR.replace("var w[D]: real ~ normal(0, 2)\nvar b: real ~ normal(0, 3)",
                      "var w: real[D] ~ normal(0, 2)\ndata b: real = 0").replace("w[d]", "w[d]")
    m = fglang.compile(src)
    data, _, _ = _blr_data(n=40)
    first = dict(data, N=20, X=data["X"][:20], y=data["y"][:20])
    second = dict(data, N=20, X=data["X"][20:], y=data["y"][20:])
    path = m.fit(first, backend="map").save(tmp_path / "first.nc")
    carried = m.fit(second, backend="map", prior=path)
    whole = m.fit(data, backend="map")
    np.testing.assert_allclose(carried.mean("w"), whole.mean("w"), atol=1e-8)
    np.testing.assert_allclose(carried.cov("w"), whole.cov("w"), rtol=1e-8)


def test_prediction_samples_the_targets_over_the_laplace_draws():
    data, x, y = _blr_data()
    m = fglang.compile(BLR)
    post = m.fit(data, backend="map", draws=4000)
    new_x = np.random.default_rng(9).normal(size=(5, 3))
    pred = m.predict(post, {"N": 5, "D": 3, "X": new_x.tolist()})
    assert pred.backend == "map" and pred.samples("lik").shape == (4000, 5)
    mean, cov = _blr_closed_form(x, y)
    want = np.append(new_x, np.ones((5, 1)), 1) @ mean
    np.testing.assert_allclose(pred.mean("lik"), want, atol=0.05)


def test_not_converged_is_advised():
    data, init = _pose_graph()
    m = fglang.load(EXAMPLES / "pose_graph_2d.fg")
    post = m.fit(data, backend="map", init=init, iters=1)
    assert not post.attrs["converged"]
    from fglang.runtime import backend

    (msg,) = backend.get("map").advice(post)
    assert "did not converge in 1 iterations" in msg and "raise iters" in msg


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "newton"}, "unknown method 'newton'"),
        ({"iters": 0}, "iters must be a positive whole number"),
        ({"lambda_init": 0}, "lambda_init must be > 0"),
        ({"path": "lsq"}, "path=lsq needs a least-squares model, but var 'tau' is positive"),
        ({"max_dense": 5}, "has 10 unknowns (more than max_dense=5)"),
        ({"steps": 3}, "unknown option for backend 'map': steps"),
    ],
)
def test_bad_options_are_clean_errors(options, message):
    m = fglang.load(EXAMPLES / "eight_schools.fg")
    with pytest.raises(FgError) as err:
        m.fit(EIGHT, backend="map", **options)
    assert message in str(err.value)


def test_divergence_is_an_error_with_advice():
    src = "model m\ndata y: real\nvar x: real\nfactor f: y ~ normal(log(x), 1)\n"
    with pytest.raises(FgError) as err:
        fglang.compile(src).fit({"y": 1.0}, backend="map", init={"x": -1.0})
    text = str(err.value)
    # located at the argument, as vi and mcmc say it (tests/test_bad_start.py); it was "diverged at iteration 0"
    assert "no valid initial point: factor 'f': 'mu' of normal must be finite" in text and "--init" in text


def test_cli_fit_map_then_summary(tmp_path):
    runner = CliRunner()
    data = tmp_path / "walk.json"
    data.write_text(json.dumps({"T": 20, "y": np.sin(np.arange(20) / 3).tolist()}))
    out = tmp_path / "post.nc"
    r = runner.invoke(app, ["fit", str(EXAMPLES / "random_walk.fg"), "--data", str(data), "--backend", "map",
                            "--method", "gn", "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert "random_walk (map)" in r.output and "x[19]" in r.output
    post = load_posterior(out)
    assert post.backend == "map" and post.attrs["options"]["method"] == "gn"
    r = runner.invoke(app, ["summary", str(out)])
    assert r.exit_code == 0, r.output
    assert "random_walk (map)" in r.output and "MAP (lsq path)" in r.output
    r = runner.invoke(app, ["fit", str(EXAMPLES / "random_walk.fg"), "--data", str(data), "--backend", "map",
                            "--method", "bfgs", "-q"])
    assert r.exit_code == 1 and "unknown method 'bfgs'" in r.output and "Traceback" not in r.output
