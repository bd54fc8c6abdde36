"""Correlation and covariance matrix types and their distributions (Stan's
correlated hierarchical models): ``cholesky_factor_corr[K]``, ``corr_matrix[K]``,
``cov_matrix[K]``, ``cholesky_factor_cov[K]``, ``lkj_corr_cholesky``, ``lkj_corr``,
``multi_normal_cholesky`` (``mvnormal(mu, chol=L)``), ``wishart``, ``inv_wishart``.

Oracles: the LKJ densities against the closed-form normalizer of Lewandowski,
Kurowicka and Joe (2009) and, for K = 2, the Beta(eta, eta) law of the one
correlation on (-1, 1); a prior-only NUTS run against the known marginal of
every correlation, Beta(eta - 1 + K/2, same) on (-1, 1); multi_normal_cholesky
against mvnormal(cov = L L^T) and scipy; Wishart and inverse Wishart against
scipy; recovery of a known correlation from simulated data under map, vi and mcmc.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.stats as st
from scipy.special import betaln

import fglang
from fglang.errors import FgError


def _lkj_log_normalizer(k: int, eta: float) -> float:
    """log c_K(eta), where the LKJ density of a correlation matrix R is det(R)^(eta-1) / c_K
    (Lewandowski, Kurowicka and Joe 2009, eq. 16, in the form Stan's manual gives)."""
    total = 0.0
    for i in range(1, k):
        b = eta + (k - 1 - i) / 2.0
        total += (2 * eta - 2 + k - i) * (k - i) * math.log(2.0) + (k - i) * betaln(b, b)
    return total


def _random_corr_cholesky(rng: np.random.Generator, k: int) -> np.ndarray:
    a = rng.normal(size=(k, k + 2))
    c = np.linalg.cholesky(a @ a.T)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


# --------------------------------------------------------------------------- densities


@pytest.mark.parametrize("k, eta", [(2, 0.7), (3, 2.0), (4, 1.5)])
def test_lkj_densities_match_the_closed_form(k: int, eta: float) -> None:
    from fglang.runtime.numpyro_distributions import log_density

    rng = np.random.default_rng(k)
    lc = _random_corr_cholesky(rng, k)
    corr = lc @ lc.T
    log_c = _lkj_log_normalizer(k, eta)
    want_corr = (eta - 1) * np.linalg.slogdet(corr)[1] - log_c
    got_corr = float(log_density("lkj_corr", {"eta": eta}, corr))
    assert abs(got_corr - want_corr) < 1e-5
    # Stan's lkj_corr_cholesky: prod_k L_kk^(K - k + 2 eta - 2) / c_K (k from 1)
    powers = np.array([k - i + 2 * eta - 2 for i in range(1, k + 1)])
    want_chol = float(np.sum(powers[1:] * np.log(np.diag(lc)[1:]))) - log_c
    got_chol = float(log_density("lkj_corr_cholesky", {"eta": eta}, lc))
    assert abs(got_chol - want_chol) < 1e-5


def test_lkj_k2_is_beta_of_the_correlation() -> None:
    """K = 2: the one correlation r is Beta(eta, eta) stretched onto (-1, 1), and
    L = [[1, 0], [r, sqrt(1 - r^2)]] has r as its one free entry."""
    from fglang.runtime.numpyro_distributions import log_density

    eta = 2.5
    for r in (-0.9, -0.3, 0.0, 0.55):
        lc = np.array([[1.0, 0.0], [r, math.sqrt(1 - r * r)]])
        want = st.beta(eta, eta).logpdf((r + 1) / 2) - math.log(2.0)
        assert abs(float(log_density("lkj_corr_cholesky", {"eta": eta}, lc)) - want) < 1e-5
        assert abs(float(log_density("lkj_corr", {"eta": eta}, lc @ lc.T)) - want) < 1e-5


def test_wishart_and_inverse_wishart_match_scipy() -> None:
    from fglang.runtime.numpyro_distributions import log_density

    rng = np.random.default_rng(3)
    a = rng.normal(size=(3, 5))
    s = a @ a.T / 5 + np.eye(3)
    w = st.wishart(df=6.5, scale=s).rvs(random_state=4)
    with jax.enable_x64(True):
        got_w = float(log_density("wishart", {"nu": 6.5, "S": s}, w))
        got_iw = float(log_density("inv_wishart", {"nu": 6.5, "S": s}, w))
    assert abs(got_w - st.wishart(df=6.5, scale=s).logpdf(w)) < 1e-9
    assert abs(got_iw - st.invwishart(df=6.5, scale=s).logpdf(w)) < 1e-9


_CHOL_MODEL = """
model chol_lik
data N: int
data K: int
data y[N, K]: real
data Lc: cholesky_factor_cov[K]
data S: cov_matrix[K]
var mu: real[K]
factor a[n in 0:N]: y[n] ~ multi_normal_cholesky(mu, Lc)
"""


def test_multi_normal_cholesky_equals_mvnormal_with_cov_l_lt() -> None:
    rng = np.random.default_rng(5)
    k, n = 3, 7
    a = rng.normal(size=(k, k))
    s = a @ a.T + 0.5 * np.eye(k)
    lc = np.linalg.cholesky(s)
    y = rng.normal(size=(n, k))
    mu = rng.normal(size=k)
    data = {"N": n, "K": k, "y": y, "Lc": lc, "S": s}
    chol = fglang.compile(_CHOL_MODEL)
    cov = fglang.compile(_CHOL_MODEL.replace("multi_normal_cholesky(mu, Lc)", "mvnormal(mu, cov=S)"))
    got = chol.log_density({"mu": mu}, data)
    assert abs(got - cov.log_density({"mu": mu}, data)) < 1e-10
    assert abs(got - st.multivariate_normal(mu, s).logpdf(y).sum()) < 1e-10


def test_chol_factor_runs_on_gbp_and_map_as_its_covariance() -> None:
    """With L from data, `mvnormal(mu, chol=L)` is a Gaussian factor: GBP (precision
    inv(L L^T)) and map's least-squares path (residual L^-1 e) give the exact posterior
    of the mvnormal(cov = L L^T) model."""
    rng = np.random.default_rng(6)
    k, n = 3, 5
    a = rng.normal(size=(k, k))
    s = a @ a.T + 0.5 * np.eye(k)
    data = {"N": n, "K": k, "y": rng.normal(size=(n, k)), "Lc": np.linalg.cholesky(s), "S": s}
    src = _CHOL_MODEL.replace("var mu: real[K]", "var mu: real[K] ~ normal(0, 3)")
    cov = src.replace("multi_normal_cholesky(mu, Lc)", "mvnormal(mu, cov=S)")
    # exact: prior N(0, 9 I), n observations with covariance S
    prec = np.eye(k) / 9 + n * np.linalg.inv(s)
    exact = np.linalg.solve(prec, np.linalg.solve(s, data["y"].sum(axis=0)))
    for backend in ("gbp", "map"):
        got = fglang.compile(src).fit(data, backend=backend)
        want = fglang.compile(cov).fit(data, backend=backend)
        assert np.allclose(got.mean("mu"), exact, atol=1e-6)
        assert np.allclose(got.mean("mu"), want.mean("mu"), atol=1e-8)


_LKJ_FORMS = {
    "prior": "var L: cholesky_factor_corr[K] ~ lkj_corr_cholesky(eta)\n",
    "factor": "var L: cholesky_factor_corr[K]\nfactor p: L ~ lkj_corr_cholesky(eta)\n",
    "logp": "var L: cholesky_factor_corr[K]\nfactor p: potential logp(lkj_corr_cholesky(eta), L)\n",
}


def test_lkj_as_prior_factor_and_logp_is_one_density() -> None:
    rng = np.random.default_rng(7)
    lc = _random_corr_cholesky(rng, 3)
    # Stan: L_kk^(K - k + 2 eta - 2) for k = 2, 3: powers 4 and 3
    want = float(np.sum(np.array([4.0, 3.0]) * np.log(np.diag(lc)[1:]))) - _lkj_log_normalizer(3, 2.5)
    for form, decl in _LKJ_FORMS.items():
        m = fglang.compile("model m\ndata K: int\ndata eta: positive\n" + decl)
        assert abs(m.log_density({"L": lc}, {"K": 3, "eta": 2.5}) - want) < 1e-9, form


def test_an_array_of_matrix_vars_has_one_density_per_matrix() -> None:
    """`var R[G]: corr_matrix[K] ~ lkj_corr(eta[g])`: G independent matrices, eta per node;
    and `var W: cov_matrix[K] ~ inv_wishart(nu, S)` against scipy."""
    rng = np.random.default_rng(8)
    g, k = 3, 3
    chols = [_random_corr_cholesky(rng, k) for _ in range(g)]
    r = np.stack([c @ c.T for c in chols])
    eta = np.array([0.8, 2.0, 4.0])
    m = fglang.compile("model m\ndata G: int\ndata K: int\ndata eta[G]: positive\n"
                       "data nu: positive\ndata S: cov_matrix[K]\n"
                       "var R[G]: corr_matrix[K] ~ lkj_corr(eta)\n"
                       "var W: cov_matrix[K] ~ inv_wishart(nu, S)\n")
    w = st.invwishart(df=5.0, scale=np.eye(k) * 2).rvs(random_state=1)
    got = m.log_density({"R": r, "W": w}, {"G": g, "K": k, "eta": eta, "nu": 5.0, "S": 2 * np.eye(k)})
    want = sum((e - 1) * np.linalg.slogdet(x)[1] - _lkj_log_normalizer(k, e) for e, x in zip(eta, r))
    want += st.invwishart(df=5.0, scale=2 * np.eye(k)).logpdf(w)
    assert abs(got - want) < 1e-9


@pytest.mark.parametrize("dist, nu_decl, nu, K, ok", [
    ("wishart", "data nu: positive", 1.5, "K", False),  # real data: at bind
    ("inv_wishart", "data nu: positive", 2.0, "K", False),  # nu = K - 1 is not > K - 1
    ("wishart", "data nu: positive", 2.01, "K", True),
    ("wishart", "data nu: int", 1, "3", False),  # int data, a constant side
    ("inv_wishart", "", "2", "3", False),  # constants: when compiled
    ("wishart", "", "2", "K", False),  # a constant against a size: at bind
    ("wishart", "", "3", "K", True),
])
def test_a_wishart_needs_more_than_k_minus_one_degrees_of_freedom(dist, nu_decl, nu, K, ok) -> None:
    """Below nu = K - 1 a Wishart is no density (a pole of its multivariate
    gamma) and a fit ran on to meaningless numbers: a located error instead."""
    arg = "nu" if nu_decl else nu
    src = f"model w\ndata K: int\n{nu_decl}\ndata S[{K}, {K}]: real\nvar W: cov_matrix[{K}] ~ {dist}({arg}, S)\n"
    data = {"K": 3, "S": np.eye(3).tolist(), **({"nu": nu} if nu_decl else {})}
    if ok:
        fglang.compile(src).bind(data)
        return
    with pytest.raises(fglang.FgError) as e:
        fglang.compile(src).bind(data)
    text = str(e.value)
    assert text.startswith(f"<string>:5:{src.splitlines()[4].index(arg + ', S') + 1}: 'nu' of {dist} must be "
                           f"greater than K - 1 = 2 for 3 x 3 matrices"), text
    assert "^" in text and "nu > K - 1" in text


# --------------------------------------------------------------------------- NUTS on the LKJ prior


def test_prior_only_nuts_gives_the_lkj_marginal() -> None:
    """Every correlation of an LKJ(eta) K x K matrix is Beta(eta - 1 + K/2, same) on (-1, 1):
    K = 3, eta = 2: Beta(2.5, 2.5), mean 0, variance 1 / (2 * 2.5 + 1) = 1/6."""
    model = fglang.compile("model lkj\ndata K: int\nvar L: cholesky_factor_corr[K] ~ lkj_corr_cholesky(2)\n")
    post = model.fit({"K": 3}, backend="mcmc", samples=1000, warmup=300, chains=1, seed=0)
    lc = post.samples("L").reshape(-1, 3, 3)
    assert np.allclose(np.triu(lc, 1), 0) and np.allclose(np.sum(lc**2, axis=2), 1, atol=1e-5)
    r = (lc @ np.swapaxes(lc, 1, 2))[:, [1, 2, 2], [0, 0, 1]]
    assert np.all(np.abs(r.mean(axis=0)) < 0.1)
    assert abs(r.var() - 1 / 6) < 0.03
    # the whole law, pooled over the three correlations (draws are correlated: a loose level)
    assert st.kstest((r.ravel() + 1) / 2, st.beta(2.5, 2.5).cdf).pvalue > 1e-3


@pytest.mark.heavy
def test_prior_only_nuts_through_the_other_bijections() -> None:
    """corr_matrix through CorrCholesky then L L^T: lkj_corr(2), K = 3, has the same
    Beta(2.5, 2.5) correlations; cov_matrix through LowerCholesky then L L^T:
    wishart(nu, S) has mean nu S and Var(W_ij) = nu (S_ij^2 + S_ii S_jj)."""
    model = fglang.compile("model lkj\ndata K: int\nvar R: corr_matrix[K] ~ lkj_corr(2)\n"
                           "data S: cov_matrix[K]\nvar W: cov_matrix[K] ~ wishart(6, S)\n")
    s = np.array([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 2.0]])
    post = model.fit({"K": 3, "S": s}, backend="mcmc", samples=1500, warmup=500, chains=1, seed=1)
    r = post.samples("R").reshape(-1, 3, 3)[:, [1, 2, 2], [0, 0, 1]]
    assert np.allclose(r.mean(axis=0), 0, atol=0.1) and abs(r.var() - 1 / 6) < 0.03
    w = post.samples("W").reshape(-1, 3, 3)
    sd = np.sqrt(6 * (s**2 + np.outer(np.diag(s), np.diag(s))))
    assert np.all(np.abs(w.mean(axis=0) - 6 * s) < 0.25 * sd)
    assert np.allclose(w.std(axis=0), sd, rtol=0.25)


# --------------------------------------------------------------------------- recovering a correlation

_DIRECT = """
model corr_direct
data J: int
data K: int
data y[J, K]: real
var L: cholesky_factor_corr[K] ~ lkj_corr_cholesky(2)
var tau: positive[K] ~ cauchy(0, 2.5)
var mu: real[K] ~ normal(0, 5)
factor obs[j in 0:J]: y[j] ~ multi_normal_cholesky(mu, diag(tau) @ L)
"""


@pytest.fixture(scope="module")
def correlated() -> tuple[dict, float]:
    rng = np.random.default_rng(1)
    j, rho = 150, 0.6
    s = np.array([[1.0, rho * 2.0], [rho * 2.0, 4.0]])
    y = rng.multivariate_normal([1.0, -1.0], s, size=j)
    return {"J": j, "K": 2, "y": y}, float(np.corrcoef(y.T)[0, 1])


# each about 20 s CPU with cold caches (compilation: map's general path and NumPyro's
# eager initialization), so heavy; the density tests above and the prior-only NUTS
# run keep the default suite's coverage of the matrix types
@pytest.mark.parametrize("backend, options", [
    pytest.param("map", {}, marks=pytest.mark.heavy),
    pytest.param("vi", {}, marks=pytest.mark.heavy),
    pytest.param("mcmc", {"samples": 300, "warmup": 200, "chains": 1}, marks=pytest.mark.heavy),
])
def test_a_known_correlation_is_recovered(correlated, backend: str, options: dict) -> None:
    data, sample_corr = correlated
    post = fglang.compile(_DIRECT).fit(data, backend=backend, seed=0, **options)
    lc = post.samples("L").reshape(-1, 2, 2)
    corr = (lc @ np.swapaxes(lc, 1, 2))[:, 1, 0].mean()
    # the posterior of a correlation from 150 pairs has sd about (1 - 0.36) / sqrt(150) = 0.05
    assert abs(corr - sample_corr) < 0.1
    assert abs(corr - 0.6) < 0.2
    assert np.allclose(post.mean("tau"), np.std(data["y"], axis=0), rtol=0.2)


def _translation(title: str) -> str:
    """The fg block under the heading ``title`` of docs/translations.md."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "translations.md").read_text()
    part = text[text.index(title):]
    start = part.index("```fg\n") + len("```fg\n")
    return part[start:part.index("```", start)]


@pytest.mark.heavy
def test_noncentered_hierarchical_model_under_nuts() -> None:
    """docs/translations.md's Stan 10 (`beta = rep_matrix(mu', J) +
    (diag_pre_multiply(tau, L) * z)'`): NUTS finds the strong correlation of the group effects.
    (Not map: the joint mode over z and L has no log-determinant term to
    reward a correlation, so it sits near none; that is the model, not map.)"""
    rng = np.random.default_rng(2)
    j, k, per = 30, 2, 12
    s = np.array([[1.0, 0.8], [0.8, 1.0]])
    beta = rng.multivariate_normal([0.5, -0.5], s, size=j)
    g = np.repeat(np.arange(j), per)
    x = np.column_stack([np.ones(j * per), rng.normal(size=j * per)])
    y = np.sum(x * beta[g], axis=1) + 0.3 * rng.normal(size=j * per)
    data = {"N": j * per, "J": j, "K": k, "g": g, "x": x, "y": y}
    model = fglang.compile(_translation("## Stan 10: correlated varying effects"))
    post = model.fit(data, backend="mcmc", samples=400, warmup=400, chains=1, seed=0)
    lc = post.samples("L_Omega").reshape(-1, 2, 2)
    corr = (lc @ np.swapaxes(lc, 1, 2))[:, 1, 0].mean()
    assert abs(float(post.mean("Omega")[1, 0]) - corr) < 1e-6
    assert abs(corr - np.corrcoef(beta.T)[0, 1]) < 0.2
    assert abs(float(post.mean("sigma")) - 0.3) < 0.05


# --------------------------------------------------------------------------- located errors


def _errors(src: str, data: dict | None = None, backend: str | None = None) -> str:
    with pytest.raises(FgError) as e:
        m = fglang.compile(src, name="m.fg")
        if backend is not None:
            m.fit(data, backend=backend)
        elif data is not None:
            m.bind(data)
    return str(e.value)


def test_a_matrix_type_takes_one_size() -> None:
    msg = _errors("model m\ndata K: int\nvar L: cholesky_factor_corr[K, K]\n")
    assert "'cholesky_factor_corr' needs one size, as in cholesky_factor_corr[K]" in msg
    assert "m.fg:3:" in msg and "K x K matrix" in msg


def test_lkj_prior_needs_the_matching_type() -> None:
    msg = _errors("model m\ndata K: int\nvar L: real[K, K] ~ lkj_corr_cholesky(2)\n")
    assert "support corr_cholesky" in msg and "m.fg:3:" in msg
    msg = _errors("model m\ndata K: int\nvar R: corr_matrix[K] ~ lkj_corr_cholesky(2)\n")
    assert "'R' is declared corr_matrix" in msg
    msg = _errors("model m\ndata K: int\nvar L: cholesky_factor_corr[K] ~ normal(0, 1)\n")
    assert "support real" in msg


@pytest.mark.parametrize("kind, value, what", [
    ("corr_matrix", [[1.0, 0.5], [0.5, 2.0]], "has a diagonal entry that is not 1"),
    ("corr_matrix", [[1.0, 0.5], [0.4, 1.0]], "is not symmetric"),
    ("cov_matrix", [[1.0, 2.0], [2.0, 1.0]], "is not positive definite"),
    ("cholesky_factor_corr", [[1.0, 0.0], [0.6, 0.6]], "has a row whose length is not 1"),
    ("cholesky_factor_cov", [[1.0, 0.3], [0.2, 1.0]], "is not lower triangular"),
    ("cholesky_factor_cov", [[1.0, 0.0], [0.2, -1.0]], "has a diagonal entry that is not positive"),
])
def test_bad_data_matrix_is_a_located_error(kind: str, value: list, what: str) -> None:
    src = f"model m\ndata K: int\ndata M: {kind}[K]\nvar x: real ~ normal(0, 1)\n"
    msg = _errors(src, {"K": 2, "M": value})
    assert "data 'M'" in msg and what in msg and "m.fg:3:" in msg
    good = {"corr_matrix": np.eye(2), "cov_matrix": 2 * np.eye(2), "cholesky_factor_corr": np.eye(2),
            "cholesky_factor_cov": [[1.0, 0.0], [0.5, 2.0]]}[kind]
    fglang.compile(src).bind({"K": 2, "M": good})


def test_an_array_of_data_matrices_names_the_bad_one() -> None:
    src = "model m\ndata G: int\ndata K: int\ndata R[G]: corr_matrix[K]\nvar x: real ~ normal(0, 1)\n"
    bad = np.stack([np.eye(2), [[1.0, 1.5], [1.5, 1.0]]])
    assert "(matrix [1])" in _errors(src, {"G": 2, "K": 2, "R": bad})


def test_gbp_refuses_a_matrix_var_naming_map_and_mcmc() -> None:
    msg = _errors(_DIRECT, {"J": 3, "K": 2, "y": np.zeros((3, 2))}, backend="gbp")
    assert "gbp cannot run var 'L': it is cholesky_factor_corr" in msg
    assert "--backend map" in msg and "--backend mcmc" in msg and "m.fg:6:" in msg


def test_a_bad_start_for_a_matrix_var_is_refused() -> None:
    m = fglang.compile("model m\ndata K: int\nvar R: corr_matrix[K] ~ lkj_corr(2)\n", name="m.fg")
    with pytest.raises(FgError) as e:
        m.fit({"K": 2}, backend="map", init={"R": [[1.0, 0.2], [0.2, 3.0]]})
    assert "diagonal entry that is not 1" in str(e.value)


def test_a_fn_parameter_cannot_be_a_matrix_type() -> None:
    msg = _errors("model m\nfn f(a: corr_matrix[2]) -> real { return sum(a) }\nvar x: real ~ normal(0, 1)\n")
    assert "parameter 'a' of a fn cannot be corr_matrix" in msg and "real[K, K]" in msg


def test_chol_data_with_a_zero_diagonal_is_located() -> None:
    src = _CHOL_MODEL.replace("data Lc: cholesky_factor_cov[K]", "data Lc: real[K, K]")
    data = {"N": 2, "K": 2, "y": np.zeros((2, 2)), "Lc": [[1.0, 0.0], [0.5, 0.0]], "S": np.eye(2)}
    msg = _errors(src, data, backend="mcmc")
    assert "'chol' of mvnormal in factor 'a' has a diagonal entry <= 0" in msg


@pytest.mark.parametrize("decl, call, what", [
    ("data x: real[3]", "x ~ lkj_corr_cholesky(2)", "is a density of square [K, K] matrices; its left side is [3]"),
    ("data x: real[3, 2]", "x ~ lkj_corr(2)", "is a density of square [K, K] matrices; its left side is 3 x 2"),
    ("data x: real[3, 3]\ndata C: real[2, 2]", "x ~ wishart(4, C)", "'S' of wishart must be [3, 3]"),
    ("data x: real[3]\ndata C: real[2, 2]", "x ~ multi_normal_cholesky(0 * x, C)", "'chol' of mvnormal must be [3, 3]"),
])
def test_event_and_matrix_shapes_are_checked(decl: str, call: str, what: str) -> None:
    msg = _errors(f"model m\n{decl}\nvar e: positive ~ exponential(1)\nfactor f: {call}\n")
    assert what in msg and "m.fg:" in msg


def test_a_square_left_side_sized_by_data_is_checked_at_bind() -> None:
    src = "model m\ndata A: int\ndata B: int\ndata x: real[A, B]\nfactor f: x ~ lkj_corr(2)\n"
    msg = _errors(src, {"A": 2, "B": 3, "x": np.zeros((2, 3))})
    assert "its left side is 2 x 3" in msg
    fglang.compile(src).bind({"A": 2, "B": 2, "x": np.eye(2)})
