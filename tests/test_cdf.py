"""``lcdf(D(args), x)`` and ``lccdf(D(args), x)``: the log CDF and its
complement, for a truncation's normalizer (Stan's ``normal_lccdf(0 | mu, s)``),
against SciPy; a truncated-normal likelihood fitted by map and NUTS against its
exact posterior."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, optimize, stats

import fglang
from fglang.errors import FgError

# fglang distribution call -> the same distribution in SciPy
CASES = [
    ("normal(0.3, 1.2)", stats.norm(0.3, 1.2), 0.5),
    ("student_t(3, 0.3, 1.2)", stats.t(3, 0.3, 1.2), 0.5),
    ("cauchy(0.3, 1.2)", stats.cauchy(0.3, 1.2), -2.0),
    ("laplace(0.3, 0.7)", stats.laplace(0.3, 0.7), 1.5),
    ("half_normal(1.2)", stats.halfnorm(scale=1.2), 0.5),
    ("half_cauchy(1.2)", stats.halfcauchy(scale=1.2), 0.5),
    ("exponential(1.5)", stats.expon(scale=1 / 1.5), 0.5),
    ("gamma(2, 1.5)", stats.gamma(2, scale=1 / 1.5), 0.5),
    ("inv_gamma(2, 1.3)", stats.invgamma(2, scale=1.3), 0.5),
    ("lognormal(0.3, 1.2)", stats.lognorm(1.2, scale=np.exp(0.3)), 0.5),
    ("beta(2, 3)", stats.beta(2, 3), 0.3),
    ("uniform(-1, 2)", stats.uniform(-1, 3), 0.5),
    ("poisson(1.5)", stats.poisson(1.5), 2),
    ("neg_binomial(1.5, 2)", stats.nbinom(2, 2 / (2 + 1.5)), 2),
]


def _value(call: str, fn: str, x) -> float:
    m = fglang.compile(f"model c\nvar u: real ~ normal(0, 1)\nfactor f: potential {fn}({call}, {x})\n")
    return m.log_density({"u": 0.0}, {}) - stats.norm.logpdf(0.0)


@pytest.mark.parametrize("call, ref, x", CASES, ids=[c[0].split("(")[0] for c in CASES])
def test_lcdf_and_lccdf_equal_scipys(call, ref, x):
    assert _value(call, "lcdf", x) == pytest.approx(ref.logcdf(x), rel=1e-9, abs=1e-12)
    assert _value(call, "lccdf", x) == pytest.approx(ref.logsf(x), rel=1e-9, abs=1e-12)


def test_the_normal_tail_is_finite_far_out():
    """In log space (log_ndtr): 40 sd out is about -804, not log 0."""
    assert _value("normal(0, 1)", "lcdf", -40) == pytest.approx(stats.norm.logcdf(-40), rel=1e-9)
    assert _value("normal(0, 1)", "lccdf", 40) == pytest.approx(stats.norm.logsf(40), rel=1e-9)


@pytest.mark.parametrize("body, message", [
    ("lcdf(bernoulli(0.3), 1)", "lcdf of 'bernoulli': fglang has no CDF for it"),
    ("lccdf(mvnormal(v, cov = c), v)", "lccdf of 'mvnormal': fglang has no CDF for it"),
    ("lcdf(student_t(u, 0, 1), 0.5)", "lcdf of 'student_t' needs a 'df' that reads no var"),
    ("lcdf(normal(0, 1))", "lcdf takes a distribution and a value"),
])
def test_misuse_is_a_located_error(body, message):
    src = ("model c\ndata c[2, 2]: real\nvar u: positive ~ exponential(1)\nvar v: real[2] ~ normal(0, 1)\n"
           f"factor f: potential {body}\n")
    with pytest.raises(FgError) as err:
        fglang.compile(src, "c.fg")
    text = str(err.value)
    assert message in text and "c.fg:5:" in text, text


# a truncated normal likelihood: y > 0 observed from normal(mu, s), s known
TRUNC = """model truncated
data N: int
data y[N]: real
var mu: real ~ normal(0, 10)
factor obs[n in 0:N]: y[n] ~ normal(mu, 1.5)
factor truncation[n in 0:N]: potential -lccdf(normal(mu, 1.5), 0)
"""


def _exact(y: np.ndarray) -> tuple[float, float, float]:
    """(mode, mean, sd) of mu's posterior, by optimization and quadrature."""
    def logp(mu):
        return stats.truncnorm.logpdf(y, -mu / 1.5, np.inf, loc=mu, scale=1.5).sum() + stats.norm.logpdf(mu, 0, 10)

    mode = optimize.minimize_scalar(lambda m: -logp(m), bounds=(-5, 5), method="bounded").x
    top = logp(mode)
    lo, hi = mode - 3, mode + 3
    z = integrate.quad(lambda m: np.exp(logp(m) - top), lo, hi)[0]
    mean = integrate.quad(lambda m: m * np.exp(logp(m) - top), lo, hi)[0] / z
    var = integrate.quad(lambda m: (m - mean) ** 2 * np.exp(logp(m) - top), lo, hi)[0] / z
    return mode, mean, np.sqrt(var)


def truncated_case() -> tuple[dict, tuple[float, float, float]]:
    """60 draws of normal(0.5, 1.5) truncated at 0 and mu's exact posterior."""
    y = stats.truncnorm.rvs(-0.5 / 1.5, np.inf, loc=0.5, scale=1.5, size=60, random_state=3)
    return {"N": 60, "y": y.tolist()}, _exact(y)


@pytest.fixture(scope="module")
def truncated_data():
    return truncated_case()


def test_map_finds_the_truncated_posteriors_mode(truncated_data):
    data, (mode, _, _) = truncated_data
    post = fglang.compile(TRUNC).fit(data, "map")
    assert post.mean("mu") == pytest.approx(mode, abs=1e-4)


def test_nuts_matches_the_truncated_posterior(truncated_data):
    data, (_, mean, sd) = truncated_data
    post = fglang.compile(TRUNC).fit(data, "mcmc", chains=1, warmup=300, samples=600, seed=1)
    assert abs(post.mean("mu") - mean) < 0.15 * sd
    assert post.sd("mu") == pytest.approx(sd, rel=0.15)


def test_a_two_sided_truncation_with_log_diff_exp():
    """``-log_diff_exp(lcdf(D, U), lcdf(D, L))``: SciPy's truncated normal on
    [L, U], also with the interval 9 sd out in a tail (where log(F(U) - F(L))
    of the plain CDFs is log 0)."""
    src = ("model two\ndata y: real\ndata lo: real\ndata hi: real\nvar mu: real\n"
           "factor obs: y ~ normal(mu, 1)\n"
           "factor truncation: potential -log_diff_exp(lcdf(normal(mu, 1), hi), lcdf(normal(mu, 1), lo))\n")
    m = fglang.compile(src)
    for y, lo, hi, mu in ((0.5, -1.0, 2.0, 0.3), (-9.2, -9.5, -9.0, 0.0)):
        want = stats.truncnorm.logpdf(y, lo - mu, hi - mu, loc=mu)
        assert m.log_density({"mu": mu}, {"y": y, "lo": lo, "hi": hi}) == pytest.approx(want, rel=1e-7)
