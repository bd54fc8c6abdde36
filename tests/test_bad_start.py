"""A sampler's "no valid initial point" names the factor and member at fault (issue 16).

On main these were a bare ``ValueError: Normal distribution got invalid
scale parameter`` traceback (NumPyro validating a scale computed from a var
while it traced the model) or NumPyro's "Cannot find valid initial
parameters". Tiny runs: the error comes before any sampling.
"""

from __future__ import annotations

import pytest

import fglang
from fglang.errors import FgError

NEGATIVE_SD = """
model neg
data N: int
data y[N]: real
var s: real(lower=0) ~ exponential(1)
var mu: real ~ normal(0, 1)
factor obs[n in 0:N]: y[n] ~ normal(mu, s - 5)
"""

OUTSIDE = """
model out
data N: int
data y[N]: real
var a: real ~ normal(0, 1)
factor obs[n in 0:N]: y[n] ~ uniform(a - 1, a + 1)
"""
DATA = {"N": 3, "y": [0.0, 0.5, 5.0]}


def test_a_scale_invalid_at_the_start_names_the_factor_argument_and_members():
    with pytest.raises(FgError) as e:
        fglang.compile(NEGATIVE_SD, "neg.fg").fit(DATA, backend="mcmc", chains=1, warmup=5, samples=5)
    text = str(e.value)
    assert text.startswith("neg.fg:7:41: no valid initial point: factor 'obs': 'sd' of normal must be > 0"), text
    assert "obs[n=0] (value -4)" in text and "at the start (s = 1, mu = 0)" in text and "--init" in text


def test_a_log_density_not_finite_at_the_start_names_the_member():
    import warnings

    with pytest.raises(FgError) as e, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NumPyro's own "Out-of-support values" before it gives up
        fglang.compile(OUTSIDE, "out.fg").fit(DATA, backend="mcmc", chains=1, warmup=5, samples=5)
    text = str(e.value)
    assert "out.fg:6:1: no valid initial point: factor 'obs': its log density is not finite at obs[n=2]" in text, text


SADDLE = """
model saddle
data y: real
var a: real
var b: real
factor obs: y ~ normal(a * b, 0.1)
"""


def test_a_zero_jacobian_start_warns_for_backends_that_linearize():
    m = fglang.compile(SADDLE, "saddle.fg")
    with pytest.warns(UserWarning, match=r"saddle.fg:6:1: factor 'obs' has an all-zero Jacobian at the start"):
        m.fit({"y": 1.0}, backend="gbp", iters=3)
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        m.fit({"y": 1.0}, backend="gbp", iters=3, init={"a": 1.0, "b": 0.5})
    assert not [w for w in seen if "Jacobian" in str(w.message)]
