"""Stan's further scalar distributions (fglang.runtime.stan_distributions) in
Stan's parametrizations: each log density and log CDF against SciPy, each
through the compiler's argument order, each as a var's prior under NUTS
(the draws' mean is the distribution's), and GBP's located refusal."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize, stats

import fglang
from fglang.errors import FgError
from fglang.runtime.numpyro_distributions import distribution, log_density

# fglang call, its canonical arguments, SciPy's same distribution, points in its support
CASES = {
    "weibull": ("weibull(1.7, 2.3)", {"alpha": 1.7, "sigma": 2.3}, stats.weibull_min(1.7, scale=2.3),
                [0.05, 0.8, 2.3, 6.0]),
    "logistic": ("logistic(0.3, 1.4)", {"mu": 0.3, "sigma": 1.4}, stats.logistic(0.3, 1.4), [-40.0, -1.0, 0.3, 5.0]),
    "gumbel": ("gumbel(0.3, 1.4)", {"mu": 0.3, "beta": 1.4}, stats.gumbel_r(0.3, 1.4), [-3.0, 0.0, 0.3, 9.0]),
    "skew_normal": ("skew_normal(0.3, 1.4, -2)", {"xi": 0.3, "omega": 1.4, "alpha": -2.0},
                    stats.skewnorm(-2.0, 0.3, 1.4), [-4.0, -0.5, 0.3, 2.0]),
    "von_mises": ("von_mises(0.3, 1.4)", {"mu": 0.3, "kappa": 1.4}, stats.vonmises(1.4, loc=0.3),
                  [-3.0, -1.0, 0.3, 3.1]),
    "chi_square": ("chi_square(3.5)", {"nu": 3.5}, stats.chi2(3.5), [0.1, 1.0, 3.5, 12.0]),
    "inv_chi_square": ("inv_chi_square(3.5)", {"nu": 3.5}, stats.invgamma(1.75, scale=0.5), [0.05, 0.3, 1.0, 8.0]),
    "scaled_inv_chi_square": ("scaled_inv_chi_square(3.5, 0.8)", {"nu": 3.5, "s": 0.8},
                              stats.invgamma(1.75, scale=3.5 * 0.64 / 2), [0.1, 0.5, 1.2, 10.0]),
    "exp_mod_normal": ("exp_mod_normal(0.3, 1.4, 0.7)", {"mu": 0.3, "sigma": 1.4, "lambda": 0.7},
                       stats.exponnorm(1 / (1.4 * 0.7), 0.3, 1.4), [-5.0, 0.0, 1.2, 9.0]),
    "pareto": ("pareto(0.5, 2.5)", {"y_min": 0.5, "alpha": 2.5}, stats.pareto(2.5, scale=0.5), [0.5, 0.7, 1.2, 30.0]),
    "rayleigh": ("rayleigh(1.4)", {"sigma": 1.4}, stats.rayleigh(scale=1.4), [0.01, 0.9, 1.4, 6.0]),
    "frechet": ("frechet(2.5, 1.4)", {"alpha": 2.5, "sigma": 1.4}, stats.invweibull(2.5, scale=1.4),
                [0.3, 0.9, 1.4, 20.0]),
}
CDF = ["weibull", "logistic", "gumbel", "chi_square", "inv_chi_square", "scaled_inv_chi_square", "exp_mod_normal",
       "pareto", "rayleigh", "frechet"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_log_density_equals_scipys(name):
    _, args, ref, ys = CASES[name]
    with jax.enable_x64(True):
        got = np.asarray(distribution(name, args).log_prob(jnp.asarray(ys)))
    np.testing.assert_allclose(got, ref.logpdf(ys), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", CDF)
def test_log_cdfs_equal_scipys(name):
    _, args, ref, ys = CASES[name]
    with jax.enable_x64(True):
        lcdf, lccdf = (np.asarray(log_density(name, args, jnp.asarray(ys), k)) for k in ("lcdf", "lccdf"))
    np.testing.assert_allclose(lcdf, ref.logcdf(ys), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(lccdf, ref.logsf(ys), rtol=1e-8, atol=1e-12)


def test_far_tails_are_finite_logs():
    """Closed forms in log space: where ``log(1 - F)`` would be ``log 0``."""
    with jax.enable_x64(True):
        assert float(log_density("weibull", {"alpha": 2.0, "sigma": 1.0}, jnp.asarray(40.0), "lccdf")) == -1600.0
        assert float(log_density("logistic", {"mu": 0.0, "sigma": 1.0}, jnp.asarray(-800.0), "lcdf")) == \
            pytest.approx(-800.0)
        # SciPy's logcdf underflows there; d/dy log F = f / F is the oracle (f matches SciPy's logpdf)
        emn = {"mu": 0.0, "sigma": 1.0, "lambda": 1.0}
        lcdf = jax.grad(lambda y: log_density("exp_mod_normal", emn, y, "lcdf"))
        for y in (-40.0, -8.0, 3.0):
            lp = float(log_density("exp_mod_normal", emn, jnp.asarray(y)))
            assert lp == pytest.approx(stats.exponnorm(1.0).logpdf(y), rel=1e-9)
            lf = float(log_density("exp_mod_normal", emn, jnp.asarray(y), "lcdf"))
            assert np.isfinite(lf) and float(lcdf(jnp.asarray(y))) == pytest.approx(np.exp(lp - lf), rel=1e-6)


def test_the_compiler_passes_stans_argument_order():
    """Every call of the table through one model (one compile): a potential per
    distribution, ``sum(logp(D, y))`` (and ``lccdf`` for two) against SciPy's sum."""
    names = sorted(CASES)
    decls = "".join(f"data y_{k}[4]: real\n" for k in range(len(names)))
    terms = [f"factor f_{k}: potential sum(logp({CASES[n][0]}, y_{k}))\n" for k, n in enumerate(names)]
    terms += [f"factor g_{k}: potential sum(lccdf({CASES[n][0]}, y_{k}))\n" for k, n in enumerate(names)
              if n in ("weibull", "exp_mod_normal")]
    m = fglang.compile("model s\n" + decls + "var u: real ~ normal(0, 1)\n" + "".join(terms))
    got = m.log_density({"u": 0.0}, {f"y_{k}": np.asarray(CASES[n][3]) for k, n in enumerate(names)})
    ref = stats.norm.logpdf(0.0) + sum(np.sum(CASES[n][2].logpdf(CASES[n][3])) for n in names) + sum(
        np.sum(CASES[n][2].logsf(CASES[n][3])) for n in ("weibull", "exp_mod_normal"))
    assert got == pytest.approx(ref, rel=1e-10)


def test_beta_binomial_equals_scipys():
    n, a, b = 10, 2.5, 1.5
    ks = np.arange(n + 1)
    with jax.enable_x64(True):
        got = np.asarray(distribution("beta_binomial", {"n": n, "a": a, "b": b}).log_prob(jnp.asarray(ks)))
    np.testing.assert_allclose(got, stats.betabinom(n, a, b).logpmf(ks), rtol=1e-10)
    assert np.exp(got).sum() == pytest.approx(1.0, rel=1e-12)


# a var per distribution, each under its prior alone (the posterior is the prior), and a
# beta_binomial likelihood on a unit var, whose posterior mean a quadrature gives
PRIORS = {
    "weibull": ("positive", "weibull(2, 1.5)", stats.weibull_min(2, scale=1.5)),
    "logistic": ("real", "logistic(0.5, 0.8)", stats.logistic(0.5, 0.8)),
    "gumbel": ("real", "gumbel(0.5, 0.8)", stats.gumbel_r(0.5, 0.8)),
    "skew_normal": ("real", "skew_normal(0.5, 1.2, 3)", stats.skewnorm(3, 0.5, 1.2)),
    "chi_square": ("positive", "chi_square(3)", stats.chi2(3)),
    "inv_chi_square": ("positive", "inv_chi_square(10)", stats.invgamma(5, scale=0.5)),
    "scaled_inv_chi_square": ("positive", "scaled_inv_chi_square(10, 0.7)",
                              stats.invgamma(5, scale=10 * 0.49 / 2)),
    "exp_mod_normal": ("real", "exp_mod_normal(0.5, 0.8, 2)", stats.exponnorm(1 / 1.6, 0.5, 0.8)),
    "pareto": ("positive", "pareto(1, 6)", stats.pareto(6, scale=1)),
    "rayleigh": ("positive", "rayleigh(1.2)", stats.rayleigh(scale=1.2)),
    "frechet": ("positive", "frechet(6, 1.2)", stats.invweibull(6, scale=1.2)),
}
VON_MISES = stats.vonmises(2.0, loc=0.5)
BB_Y, BB_N, BB_C = np.array([3, 7, 5, 6]), 10, 4.0


def _von_mises_moments() -> tuple[float, float]:
    """On the var's [-pi, pi], by quadrature."""
    m = integrate.quad(lambda x: x * VON_MISES.pdf(x), -math.pi, math.pi)[0]
    s = integrate.quad(lambda x: (x - m) ** 2 * VON_MISES.pdf(x), -math.pi, math.pi)[0]
    return m, math.sqrt(s)


def _beta_binomial_moments() -> tuple[float, float]:
    """``p ~ beta(2, 2)``, ``y ~ beta_binomial(10, C p, C (1 - p))``: the posterior of ``p`` by quadrature."""
    def post(p):
        return stats.beta(2, 2).pdf(p) * np.prod(stats.betabinom(BB_N, BB_C * p, BB_C * (1 - p)).pmf(BB_Y))
    z = integrate.quad(post, 0, 1)[0]
    m = integrate.quad(lambda p: p * post(p), 0, 1)[0] / z
    s = integrate.quad(lambda p: (p - m) ** 2 * post(p), 0, 1)[0] / z
    return m, math.sqrt(s)


# The densities written here (and Pareto's support) run by default; NumPyro's own,
# only renamed (their parametrizations are checked above), the von Mises angle and the
# beta_binomial likelihood under `-m heavy`: a NUTS fit's compilation grows by about
# 2.5 s CPU a var, and one fit of all 14 is 37 s.
WRITTEN = ("skew_normal", "exp_mod_normal", "rayleigh", "frechet", "pareto")


def prior_model(names: tuple[str, ...], extra: bool) -> str:
    src = "model priors\ndata N: int\ndata y[N]: int\n" + "".join(
        f"var {name}: {PRIORS[name][0]} ~ {PRIORS[name][1]}\n" for name in names)
    if extra:
        src += ("var von_mises: real(lower=-pi, upper=pi) ~ von_mises(0.5, 2)\nvar p: unit ~ beta(2, 2)\n"
                f"factor bb[n in 0:N]: y[n] ~ beta_binomial({BB_N}, {BB_C} * p, {BB_C} * (1 - p))\n")
    return src


def _nuts(src: str):
    return fglang.compile(src).fit({"N": len(BB_Y), "y": BB_Y}, "mcmc", chains=1, warmup=300, samples=1000, seed=3)


@pytest.fixture(scope="module")
def written_draws():
    return _nuts(prior_model(WRITTEN, False))


@pytest.fixture(scope="module")
def other_draws():
    return _nuts(prior_model(tuple(n for n in PRIORS if n not in WRITTEN), True))


@pytest.mark.parametrize("name", [n if n in WRITTEN else pytest.param(n, marks=pytest.mark.heavy)
                                  for n in [*PRIORS, "von_mises", "beta_binomial"]])
def test_nuts_draws_have_the_distributions_mean(request, name):
    """Each var's NUTS mean within 0.15 sd of the exact mean (about 4 Monte Carlo
    errors at 1000 draws), and its sd within 20%; the vars of a group are
    independent blocks of one fit."""
    draws = request.getfixturevalue("written_draws" if name in WRITTEN else "other_draws")
    if name == "von_mises":
        mean, sd = _von_mises_moments()
    elif name == "beta_binomial":
        mean, sd = _beta_binomial_moments()
        name = "p"
    else:
        ref = PRIORS[name][2]
        mean, sd = ref.mean(), ref.std()
    assert abs(draws.mean(name) - mean) < 0.15 * sd, (draws.mean(name), mean, sd)
    assert draws.sd(name) == pytest.approx(sd, rel=0.2)


def test_map_finds_the_mode_of_real_priors():
    """map: ``logistic``, ``gumbel`` and ``von_mises`` have their mode at ``mu``;
    ``skew_normal``'s, SciPy's optimizer finds."""
    src = ("model m\nvar a: real ~ logistic(0.5, 0.8)\nvar b: real ~ gumbel(-0.3, 2)\nvar c: real ~ von_mises(1.1, 3)\n"
           "var d: real ~ skew_normal(0.5, 1.2, 3)\n")
    post = fglang.compile(src).fit({}, "map")
    d_mode = optimize.minimize_scalar(lambda x: -stats.skewnorm(3, 0.5, 1.2).logpdf(x), bounds=(-2, 4),
                                      method="bounded", options={"xatol": 1e-10}).x
    for name, mode in (("a", 0.5), ("b", -0.3), ("c", 1.1), ("d", d_mode)):
        assert post.mean(name) == pytest.approx(mode, abs=1e-4), name


def test_vi_fits_them():
    """VI's Gaussian on ``logistic(0.5, 0.8)`` is centered at 0.5 (the density is
    symmetric), and its fit of ``weibull(2, 1.5)`` (a Gaussian in ``log w``) lands
    near the Weibull's mean."""
    src = "model v\nvar a: real ~ logistic(0.5, 0.8)\nvar w: positive ~ weibull(2, 1.5)\n"
    post = fglang.compile(src).fit({}, "vi", seed=0)
    assert post.mean("a") == pytest.approx(0.5, abs=0.05)
    assert post.mean("w") == pytest.approx(stats.weibull_min(2, scale=1.5).mean(), rel=0.1)


def test_gbp_refuses_them_with_a_located_message():
    """One model of a var under each: GBP's error names every one, at its prior."""
    names = sorted(CASES)
    doms = ["positive" if CASES[n][2].support()[0] >= 0 else "real" for n in names]
    lines = [f"var w_{k}: {dom} ~ {CASES[n][0]}" for k, (n, dom) in enumerate(zip(names, doms))]
    with pytest.raises(FgError) as err:
        fglang.compile("model g\n" + "\n".join(lines) + "\n", "g.fg").fit({}, "gbp")
    text = str(err.value)
    for k, (n, dom) in enumerate(zip(names, doms)):
        col = 12 + len(str(k)) + len(dom)
        assert f"g.fg:{k + 2}:{col}: gbp cannot run '{n}' in factor 'w_{k}__prior'" in text, (n, text)
    assert "--backend mcmc" in text


@pytest.mark.parametrize("src_line, message", [
    ("var w: positive ~ weibull(2)", "weibull"),
    ("var w: positive ~ weibull(2, -1)", "'sigma' of weibull must be > 0"),
    ("var w: real ~ rayleigh(1)", "'rayleigh' has support positive but 'w' is declared real"),
    ("var w: positive ~ pareto(0, 2)", "'y_min' of pareto must be > 0"),
    ("var w: real ~ gumbel(0, beta=-2)", "'beta' of gumbel must be > 0"),
])
def test_a_wrong_argument_is_a_located_error(src_line, message):
    with pytest.raises(FgError) as err:
        fglang.compile(f"model e\n{src_line}\n", "e.fg")
    text = str(err.value)
    assert message in text and "e.fg:2:" in text, text


@pytest.mark.parametrize("name", ["skew_normal", "exp_mod_normal", "rayleigh", "frechet"])
def test_the_written_densities_integrate_to_one_and_sample_them(name):
    """The four NumPyro lacks: the density integrates to 1, and 4000 draws of the
    sampler (VI's start and predictions draw from it) pass a KS test against SciPy."""
    _, args, ref, _ = CASES[name]
    with jax.enable_x64(True):
        d = distribution(name, args)
        lo, hi = ref.support()
        logp = jax.jit(d.log_prob)
        total = integrate.quad(lambda y: math.exp(float(logp(y))), lo, hi, limit=200)[0]
        draws = np.asarray(d.sample(jax.random.PRNGKey(0), (4000,)))
    assert total == pytest.approx(1.0, rel=1e-7)
    assert stats.kstest(draws, ref.cdf).pvalue > 1e-3
