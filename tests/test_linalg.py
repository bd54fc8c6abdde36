"""Linear-algebra built-ins (``fglang.compiler.linalg``) against NumPy, and
their shape mistakes as located errors.

Each built-in is evaluated through a model's log density: a potential
``sum(W * f(...))`` with random weights ``W`` is a number that only the
right matrix gives (a wrong transpose or sign changes it).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import bind_error, compile_error

import fglang


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


RNG = np.random.default_rng(3)
N = 4
A0 = RNG.normal(size=(N, N))
SPD = A0 @ A0.T + N * np.eye(N)
B = RNG.normal(size=(N, 2))
V = RNG.normal(size=N)
X = RNG.normal(size=(N, 3))


def _kernel(x1, x2, alpha, rho):
    d2 = ((x1[:, None, :] - x2[None, :, :]) ** 2).sum(-1)
    return alpha**2 * np.exp(-d2 / (2 * rho**2))


CASES = {
    "cholesky(S)": ("[N, N]", np.linalg.cholesky(SPD)),
    "diag(v)": ("[N, N]", np.diag(V)),
    "diagonal(S)": ("[N]", np.diag(SPD)),
    "eye(N)": ("[N, N]", np.eye(N)),
    "solve(S, b)": ("[N, 2]", np.linalg.solve(SPD, B)),
    "solve(S, v)": ("[N]", np.linalg.solve(SPD, V)),
    "log_determinant(S) + 0 * v": ("[N]", np.linalg.slogdet(SPD)[1] + 0 * V),
    "gp_exp_quad_cov(x, 1.5, 0.7)": ("[N, N]", _kernel(X, X, 1.5, 0.7)),
    "gp_exp_quad_cov(v, 1.5, 0.7)": ("[N, N]", _kernel(V[:, None], V[:, None], 1.5, 0.7)),
    "gp_exp_quad_cov(x, x[0:2], 1.5, 0.7)": ("[N, 2]", _kernel(X, X[:2], 1.5, 0.7)),
    "rep(2.5, N)": ("[N]", np.full(N, 2.5)),
    "rep_vector(0, N) + v": ("[N]", V),
    "rep_array(v, 3)": ("[3, N]", np.tile(V, (3, 1))),
    "diag(rep(0.5, N))": ("[N, N]", 0.5 * np.eye(N)),
}


@pytest.mark.parametrize("expr", list(CASES))
def test_against_numpy(expr):
    shape, want = CASES[expr]
    src = (f"model m\ndata N: int\ndata S[N, N]: real\ndata b[N, 2]: real\ndata v[N]: real\ndata x[N, 3]: real\n"
           f"data W{shape}: real\nvar a: real\nfactor f: potential a * sum(W * ({expr}))\n")
    model = fglang.compile(src)
    w = RNG.normal(size=want.shape)
    data = {"N": N, "S": SPD.tolist(), "b": B.tolist(), "v": V.tolist(), "x": X.tolist(), "W": w.tolist()}
    assert model.log_density({"a": 1.0}, data) == pytest.approx(float((w * want).sum()), rel=1e-9, abs=1e-12)


def test_gp_regression_density_is_the_closed_form():
    """A GP regression written with the built-ins: its marginal likelihood
    against scipy's multivariate normal."""
    from scipy.stats import multivariate_normal

    src = """model gp
data N: int
data x[N]: real
data y[N]: real
var rho: positive
var alpha: positive
var sigma: positive
let K = gp_exp_quad_cov(x, alpha, rho) + diag(rep(sigma^2, N))
factor lik: y ~ mvnormal(rep_vector(0, N), cov=K)
"""
    x = np.linspace(0, 3, 6)
    y = np.sin(x)
    p = {"rho": 0.8, "alpha": 1.3, "sigma": 0.2}
    lp = fglang.compile(src).log_density(p, {"N": 6, "x": x.tolist(), "y": y.tolist()})
    cov = _kernel(x[:, None], x[:, None], 1.3, 0.8) + 0.04 * np.eye(6)
    assert lp == pytest.approx(multivariate_normal(np.zeros(6), cov).logpdf(y), rel=1e-9)


@pytest.mark.parametrize(
    "expr, message",
    [
        ("cholesky(v)", "'cholesky' needs a square matrix, got [N]"),
        ("log_determinant(x[0:2])", "'log_determinant' needs a square matrix, got [2, 3]"),
        ("diag(S)", "diag(v) needs a vector, got [N, N]"),
        ("solve(S[0:2, 0:2], v[0:3])", "solve(A, b): A is [2, 2] but b has 3 rows"),
        ("eye(a)", "eye(n) needs an int size"),
        ("gp_exp_quad_cov(x, v, 1)", "gp_exp_quad_cov's alpha must be a scalar, got [N]"),
        ("gp_exp_quad_cov(x, v, 1.0, 1.0)", "gp_exp_quad_cov's points differ in dimension"),
        ("gp_exp_quad_cov(x, 1.0, v)", "gp_exp_quad_cov's rho must be a scalar, got [N]"),
        ("solve(S)", "'solve' takes 2 arguments, got 1"),
        ("rep(1.0, a)", "rep(x, n) needs an int count n"),
        ("rep_vector(1.0, v)", "rep_vector(x, n) needs an int count n"),
        ("rep(1.0)", "'rep' takes 2 arguments, got 1"),
    ],
)
def test_mistakes_are_located(expr, message):
    line = f"factor f: potential a * sum({expr})"
    src = f"model m\ndata N: int\ndata S[N, N]: real\ndata v[N]: real\ndata x[N, 3]: real\nvar a: real\n{line}\n"
    err = compile_error(src)
    hits = [d for d in err.diagnostics if message in d.message]
    assert hits, [d.message for d in err.diagnostics]
    assert hits[0].span.line == 7 and hits[0].span.col > line.index("sum(")
    assert "Traceback" not in str(err)


def test_a_square_only_the_sizes_decide_is_checked_at_bind():
    src = ("model m\ndata N: int\ndata M: int\ndata A[N, M]: real\nvar a: real\n"
           "factor f: potential a * log_determinant(A)\n")
    err = bind_error(src, {"N": 2, "M": 3, "A": np.ones((2, 3)).tolist()})
    assert "'log_determinant' needs a square matrix, got 2 x 3" in str(err)
    assert err.diagnostics[0].span.line == 6


@pytest.mark.heavy
def test_gp_pois_regr_matches_posteriordb():
    """posteriordb's gp_pois_regr (a latent GP through cholesky and
    gp_exp_quad_cov, Poisson counts): NUTS (2 x (300 + 600)) against the
    reference draws, means within 0.1 sd; VI's mvn guide is not trusted
    there (Pareto k-hat above 0.7) and says so."""
    import json
    from pathlib import Path

    from test_outside_models import compare

    here = Path(__file__).resolve().parent / "outside" / "linalg"
    model = fglang.load(here / "gp_pois_regr.fg")
    data = json.loads((here / "gp_pois_regr.data.json").read_text())
    ref = json.loads((here / "gp_pois_regr.reference.json").read_text())
    post = model.fit(data, backend="mcmc", seed=0, chains=2, warmup=300, samples=600)
    for label, (err, ratio) in compare(post, ref).items():
        assert err < 0.1 and 0.8 < ratio < 1.2, (label, err, ratio)
    vi = model.fit(data, backend="vi", seed=0)
    assert vi.attrs["khat"] < 0.7 or any("k-hat" in w for w in vi.warnings())
