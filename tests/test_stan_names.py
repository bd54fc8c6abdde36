"""Stan's distribution names (``bernoulli_logit``, ``poisson_log``, ...) mean
what they mean in Stan, checked against SciPy; Stan's binary
``log_sum_exp(a, b)`` against NumPy's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

import fglang
from fglang.errors import FgError


def _logp(call: str, y, data_decl: str = "") -> float:
    """log DIST(y) of a one-factor model, less its one var's prior."""
    src = f"model s\n{data_decl}var u: real ~ normal(0, 1)\nfactor f: potential logp({call}, {y})\n"
    return fglang.compile(src).log_density({"u": 0.0}, {}) - stats.norm.logpdf(0.0)


def _sig(x: float) -> float:
    return 1 / (1 + np.exp(-x))


CASES = [
    ("bernoulli_logit(0.7)", 1, stats.bernoulli(_sig(0.7)).logpmf(1)),
    ("bernoulli_logit(-1.3)", 0, stats.bernoulli(_sig(-1.3)).logpmf(0)),
    ("binomial_logit(10, 0.4)", 7, stats.binom(10, _sig(0.4)).logpmf(7)),
    ("poisson_log(0.9)", 3, stats.poisson(np.exp(0.9)).logpmf(3)),
    ("neg_binomial_2(2.5, 3)", 4, stats.nbinom(3, 3 / (3 + 2.5)).logpmf(4)),
    ("neg_binomial_2_log(0.5, 3)", 4, stats.nbinom(3, 3 / (3 + np.exp(0.5))).logpmf(4)),
    ("double_exponential(0.3, 0.7)", 1.5, stats.laplace(0.3, 0.7).logpdf(1.5)),
    ("std_normal()", 0.4, stats.norm.logpdf(0.4)),
    ("categorical_logit([0.1, 0.5, -0.2])", 1, np.log(special.softmax([0.1, 0.5, -0.2])[1])),
    ("multi_normal([0, 1], [[2, 0.5], [0.5, 1]])", "[0.3, 0.2]",
     stats.multivariate_normal([0, 1], [[2, 0.5], [0.5, 1]]).logpdf([0.3, 0.2])),
    ("multi_normal_prec([0, 1], [[2, 0.5], [0.5, 1]])", "[0.3, 0.2]",
     stats.multivariate_normal([0, 1], np.linalg.inv([[2, 0.5], [0.5, 1]])).logpdf([0.3, 0.2])),
]


@pytest.mark.parametrize("call, y, ref", CASES, ids=[c[0].split("(")[0] + f"-{i}" for i, c in enumerate(CASES)])
def test_stan_names_mean_what_they_mean_in_stan(call, y, ref):
    assert _logp(call, y) == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_a_stan_name_as_a_prior_and_a_likelihood():
    """The eight-schools-style use: ``~ std_normal()`` on a var and a
    ``bernoulli_logit`` likelihood equal the fglang spelling's density."""
    stan = ("model a\ndata N: int\ndata x[N]: real\ndata y[N]: int\nvar b: real ~ std_normal()\n"
            "factor lik[n in 0:N]: y[n] ~ bernoulli_logit(b * x[n])\n")
    plain = stan.replace("std_normal()", "normal(0, 1)")
    plain = plain.replace("bernoulli_logit(b * x[n])", "bernoulli(logit=b * x[n])")
    data = {"N": 3, "x": [0.5, -1.0, 2.0], "y": [1, 0, 1]}
    got = fglang.compile(stan).log_density({"b": 0.8}, data)
    assert got == pytest.approx(fglang.compile(plain).log_density({"b": 0.8}, data), rel=1e-12)
    e = 0.8 * np.array(data["x"])
    assert got == pytest.approx(stats.norm.logpdf(0.8) + np.sum(np.array(data["y"]) * e - np.logaddexp(0, e)))


def test_a_wrong_number_of_arguments_names_fglangs_distribution():
    with pytest.raises(FgError) as err:
        fglang.compile("model a\ndata y: int\nvar b: real ~ normal(0, 1)\nfactor f: y ~ poisson_log(b, 2)\n", "a.fg")
    assert "a.fg:4:" in str(err.value) and "poisson" in str(err.value)


def test_a_fn_may_not_take_a_stan_name():
    with pytest.raises(FgError) as err:
        src = "model a\nfn poisson_log(x: real) -> real {\n  return x\n}\nvar b: real ~ normal(0, 1)\n"
        fglang.compile(src, "a.fg")
    text = str(err.value)
    assert "a.fg:2:4" in text and "Stan's name for poisson(exp(eta))" in text and "another name" in text


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-800, 800), min_size=2, max_size=2), st.floats(-800, 800))
def test_binary_log_sum_exp_is_stable_and_broadcasts(a, b):
    src = f"model l\nvar u: real ~ normal(0, 1)\nfactor f: potential sum(log_sum_exp([{a[0]!r}, {a[1]!r}], {b!r}))\n"
    got = fglang.compile(src).log_density({"u": 0.0}, {}) - stats.norm.logpdf(0.0)
    assert got == pytest.approx(float(np.sum(np.logaddexp(np.array(a), b))), rel=1e-12, abs=1e-12)


def test_log_sum_exp_of_one_array_is_still_the_reduction():
    src = "model l\nvar u: real ~ normal(0, 1)\nfactor f: potential log_sum_exp([1.0, 2.0, 3.0])\n"
    got = fglang.compile(src).log_density({"u": 0.0}, {}) - stats.norm.logpdf(0.0)
    assert got == pytest.approx(special.logsumexp([1.0, 2.0, 3.0]), rel=1e-12)


def test_log_sum_exp_of_three_arguments_is_a_located_error():
    with pytest.raises(FgError) as err:
        fglang.compile("model l\nvar u: real ~ normal(0, 1)\nfactor f: potential log_sum_exp(u, u, u)\n", "l.fg")
    assert "l.fg:3:" in str(err.value) and "log_sum_exp" in str(err.value)
