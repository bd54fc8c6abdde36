"""Stan's truncation ``y ~ D(args) T[L, U]``: the sugar's log density equals the
hand-written normalizer's (``lcdf``/``lccdf``/``log_diff_exp``) and SciPy's
truncated distributions; a truncated likelihood and a truncated hierarchical
prior fitted by map and NUTS against their exact posteriors; its mistakes are
located errors; ``T`` stays an ordinary name everywhere else."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from test_cdf import truncated_case

import fglang
from fglang.compiler.parse import parse
from fglang.errors import FgError

HEAD = "model t\ndata K: int\ndata y[K]: real\ndata lo: real\ndata hi: real\nvar mu: real ~ normal(0, 1)\n"
SUGAR = HEAD + (
    "var x[K]: real(lower=0) ~ normal(mu, 1.5) T[0, ]\n"
    "factor two[k in 0:K]: y[k] ~ normal(mu, 2) T[lo, hi]\n"
    "factor upper: y ~ student_t(3, mu, 2) T[, hi]\n"
)
BY_HAND = HEAD + (
    "var x[K]: real(lower=0) ~ normal(mu, 1.5)\n"
    "factor x_norm[k in 0:K]: potential -lccdf(normal(mu, 1.5), 0)\n"
    "factor two[k in 0:K]: y[k] ~ normal(mu, 2)\n"
    "factor two_norm[k in 0:K]: potential -log_diff_exp(lcdf(normal(mu, 2), hi), lcdf(normal(mu, 2), lo))\n"
    "factor upper: y ~ student_t(3, mu, 2)\n"
    "factor upper_norm: potential -K * lcdf(student_t(3, mu, 2), hi)\n"
)


@pytest.fixture(scope="module")
def models():
    return fglang.compile(SUGAR, "sugar.fg"), fglang.compile(BY_HAND, "hand.fg")


finite = st.floats(-3, 3, allow_nan=False)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mu=finite, x=st.lists(st.floats(0.01, 5), min_size=3, max_size=3),
       y=st.lists(st.floats(-1.9, 1.9), min_size=3, max_size=3), lo=st.floats(-6, -2), hi=st.floats(2, 6))
def test_the_sugar_is_the_hand_written_normalizer(models, mu, x, y, lo, hi):
    sugar, hand = models
    data = {"K": 3, "y": y, "lo": lo, "hi": hi}
    got = sugar.log_density({"mu": mu, "x": x}, data)
    assert got == pytest.approx(hand.log_density({"mu": mu, "x": x}, data), rel=1e-10, abs=1e-10)
    want = (stats.norm.logpdf(mu) + stats.truncnorm.logpdf(x, -mu / 1.5, np.inf, loc=mu, scale=1.5).sum()
            + stats.truncnorm.logpdf(y, (lo - mu) / 2, (hi - mu) / 2, loc=mu, scale=2).sum()
            + (stats.t.logpdf(y, 3, mu, 2) - stats.t.logcdf(hi, 3, mu, 2)).sum())
    assert got == pytest.approx(want, rel=1e-8)


def test_an_int_truncation_counts_its_lower_end():
    """Stan's rule for an int X: T[L, U] keeps L..U, so the normalizer is
    F(U) - F(L - 1) (SciPy's truncated Poisson, by its pmf)."""
    m = fglang.compile("model p\ndata c[3]: int\nvar lam: positive ~ exponential(1)\n"
                       "factor obs: c ~ poisson(lam) T[1, 6]\nfactor low: c ~ poisson(lam) T[2, ]\n")
    c, lam = np.array([1, 2, 6]), 1.7
    pois = stats.poisson(lam)
    want = (stats.expon.logpdf(lam) + (pois.logpmf(c) - np.log(pois.cdf(6) - pois.cdf(0))).sum()
            + (pois.logpmf(c) - pois.logsf(1)).sum())
    assert m.log_density({"lam": lam}, {"c": c.tolist()}) == pytest.approx(want, rel=1e-9)


def test_an_expression_end_matches_the_vars_bound():
    """``real(lower=a) ... T[a, ]``, a read from data: the same normalizer as
    the hand-written one; a factor on the var itself also truncates it."""
    head = "model e\ndata a: real\nvar mu: real ~ normal(0, 1)\nvar x: real(lower=a)\n"
    sugar = fglang.compile(head + "factor f: x ~ normal(mu, 2) T[a, ]\n")
    mu, x, a = 0.4, 1.3, 0.5
    want = stats.norm.logpdf(mu) + stats.truncnorm.logpdf(x, (a - mu) / 2, np.inf, loc=mu, scale=2)
    assert sugar.log_density({"mu": mu, "x": x}, {"a": a}) == pytest.approx(want, rel=1e-9)


def test_bounds_per_element_and_a_matrix_var():
    """Ends of T[...] broadcast to the value (one per element); a scalar
    normalizer counts once per element of a [2, 3] var."""
    m = fglang.compile("model m\ndata b[3]: real\nvar mu: real ~ normal(0, 1)\n"
                       "var z[2, 3]: real(lower=-1, upper=2) ~ normal(mu, 1) T[-1, 2]\n"
                       "data y[3]: real\nfactor f: y ~ normal(mu, 1) T[b, ]\n")
    z = np.array([[0.1, 0.5, 1.9], [-0.9, 0.0, 1.0]])
    y, b, mu = np.array([0.5, 1.0, 2.0]), np.array([0.0, 0.5, -1.0]), 0.3
    want = (stats.norm.logpdf(mu) + stats.truncnorm.logpdf(z, -1 - mu, 2 - mu, loc=mu).sum()
            + stats.truncnorm.logpdf(y, b - mu, np.inf, loc=mu).sum())
    assert m.log_density({"mu": mu, "z": z.tolist()}, {"b": b.tolist(), "y": y.tolist()}) == pytest.approx(want)


# ---------------------------------------------------------------- fits
TRUNC = """model truncated
data N: int
data y[N]: real
var mu: real ~ normal(0, 10)
factor obs[n in 0:N]: y[n] ~ normal(mu, 1.5) T[0, ]
"""


@pytest.fixture(scope="module")
def truncated_data():
    return truncated_case()


def test_map_finds_the_truncated_posteriors_mode(truncated_data):
    """test_cdf's exact posterior (quadrature), written with the sugar: its
    NUTS run there covers the sampler, as the densities are equal (above)."""
    data, (mode, _, _) = truncated_data
    post = fglang.compile(TRUNC).fit(data, "map")
    assert post.mean("mu") == pytest.approx(mode, abs=1e-4)


def test_nuts_on_a_truncated_hierarchical_prior():
    """x ~ normal(mu, 1) T[0, ] integrates to one for every mu, so mu's
    marginal stays its prior normal(0, 1) exactly; without the normalizer it
    would move up (towards where normal(mu, 1) puts its mass above 0)."""
    m = fglang.compile("model h\nvar mu: real ~ normal(0, 1)\nvar x: real(lower=0) ~ normal(mu, 1) T[0, ]\n")
    post = m.fit({}, "mcmc", chains=2, warmup=400, samples=1000, seed=2)
    assert abs(post.mean("mu")) < 0.12
    assert post.sd("mu") == pytest.approx(1.0, rel=0.12)
    draws = np.asarray(post.samples("mu")).ravel()
    assert stats.kstest(draws[::10], "norm").pvalue > 1e-3


# ---------------------------------------------------------------- the name T and errors
def test_T_is_still_a_name():
    src = ("model n\ndata T: int\ndata x[T]: real\ndata i: int\nvar v[T]: real ~ normal(0, 1) T[-5, 5]\n"
           "factor f[t in 0:T]: x[t] ~ normal(v[t], x[T - 1]) T[, T]\nlet w = x[T - 1] * T\n")
    prog = parse(src)
    assert [getattr(d, "name", None) for d in prog.decls] == ["T", "x", "i", "v", "f", "w"]
    fglang.compile(src.replace("real ~", "real(lower=-5, upper=5) ~"))


BASE = "model c\ndata K: int\ndata y[K]: real\ndata b[2]: real\ndata n: int\nvar mu: real ~ normal(0, 1)\n"


@pytest.mark.parametrize("line, where, message, hint", [
    ("factor f: n ~ bernoulli(0.3) T[0, 1]", "7:30", "T[...] truncates 'bernoulli', which has no CDF",
     "truncation needs one of: beta"),
    ("factor f: y ~ normal(mu, 1) T[3, 1]", "7:29", "T[3, 1] is empty", "swap the two ends"),
    ("factor f: y ~ normal(mu, 1) T[, ]", "7:29", "T[, ] gives neither end", "write T[L, ]"),
    ("data c[2, K]: real\nfactor f: y ~ normal(mu, 1) T[c, ]", "8:31",
     "the lower end of T[...] has shape [2, K], which does not broadcast to the truncated value's shape [K]", None),
    ("factor f: y[0] ~ normal(mu, 1) T[, y]", "7:36", "the upper end of T[...] has shape [K], which does not", None),
    ("var x: real ~ normal(mu, 1) T[0, ]", "7:31", "var 'x' is truncated at lower end 0 but is declared with no lower",
     "real(lower=0): as in Stan"),
    ("var x: real(lower=-1) ~ normal(mu, 1) T[0, ]", "7:41", "declared with lower=-1", "real(lower=0)"),
    ("var x: real(lower=0, upper=3) ~ normal(mu, 1) T[0, 2]", "7:52", "upper end 2 but is declared with upper=3",
     "real(upper=2)"),
    ("var x[3]: real\nfactor f[k in 0:3]: x[k] ~ normal(mu, 1) T[0, ]", "8:44",
     "var 'x' is truncated at lower end 0 but is declared with no lower bound", "real(lower=0)"),
    ("data a: real\nvar x: real(lower=a) ~ normal(mu, 1) T[mu, ]", "8:40",
     "var 'x' is truncated at lower end mu but is declared with lower=a", "real(lower=mu)"),
    ("factor f: y ~ normal(mu, 1) T", "7:30", "unexpected end of line; expected '['", None),
    ("factor f: y ~ normal(mu, 1) T[mu > 0, ]", "7:31", "the lower end of T[...] must be a number", None),
])
def test_mistakes_are_located_errors(line, where, message, hint):
    with pytest.raises(FgError) as err:
        fglang.compile(BASE + line + "\n", "c.fg")
    text = str(err.value)
    assert f"c.fg:{where}:" in text and message in text, text
    assert "^" in text
    if hint is not None:
        assert hint in text, text


def test_a_size_mismatch_found_at_bind_is_located():
    m = fglang.compile(BASE + "factor f: y ~ normal(mu, 1) T[b, ]\n", "c.fg")
    with pytest.raises(FgError) as err:
        m.log_density({"mu": 0.0}, {"K": 3, "y": [1.0, 2.0, 3.0], "b": [0.0, 0.0], "n": 0})
    text = str(err.value)
    assert "c.fg:7:31:" in text and "has shape [2], which does not broadcast to the truncated value's shape [3]" in text
