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


# The same bad start through every backend that can run the model: one located
# error naming the factor, the argument and the start. On main VI replaced an
# init where the density is not finite by a uniform start and finished (exit 0,
# a posterior on wherever the density happened to be defined), and map said
# "diverged at iteration 0" without a location.
REAL_SD = """
model negr
data N: int
data y[N]: real
var s: real ~ normal(6, 1)
var mu: real ~ normal(0, 1)
factor obs[n in 0:N]: y[n] ~ normal(mu, s - 5)
"""
LOG_MEAN = """
model lg
data y: real
var a: real ~ normal(2, 1)
factor obs: y ~ normal(log(a), 0.1)
"""
FAST = {"vi": {"steps": 20, "draws": 10}, "mcmc": {"chains": 1, "warmup": 5, "samples": 5}, "map": {},
        "gbp": {"iters": 20}}


@pytest.mark.parametrize("backend", ["vi", "mcmc", "map"])
def test_an_init_with_an_invalid_scale_is_the_same_located_error_on_every_backend(backend):
    with pytest.raises(FgError) as e:
        fglang.compile(REAL_SD, "r.fg").fit(DATA, backend=backend, init={"s": 1.0, "mu": 0.0}, **FAST[backend])
    text = str(e.value)
    assert text.startswith("r.fg:7:41: no valid initial point: factor 'obs': 'sd' of normal must be > 0"), text
    assert "obs[n=0] (value -4)" in text and "at the start (s = 1, mu = 0)" in text


@pytest.mark.parametrize("backend", ["vi", "mcmc", "map", "gbp"])
def test_an_init_where_a_mean_is_nan_is_the_same_located_error_on_every_backend(backend):
    with pytest.raises(FgError) as e:
        fglang.compile(LOG_MEAN, "lg.fg").fit({"y": 0.5}, backend=backend, init={"a": -1.0}, **FAST[backend])
    text = str(e.value)
    assert text.startswith("lg.fg:5:24: no valid initial point: factor 'obs': 'mu' of normal must be finite"), text
    assert "at the start (a = -1)" in text


def test_vi_refuses_an_invalid_argument_at_its_default_start_as_nuts_does():
    """NEGATIVE_SD without an init: at the prior's median (s near 1) sd < 0; main's VI moved on to uniform starts
    until one had s > 5 and fitted there silently. NUTS and map refuse it (test above): so does VI now."""
    with pytest.raises(FgError) as e:
        fglang.compile(NEGATIVE_SD, "neg.fg").fit(DATA, backend="vi", steps=20, draws=10)
    assert str(e.value).startswith("neg.fg:7:41: no valid initial point: factor 'obs': 'sd' of normal must be > 0")


def test_a_valid_init_still_fits_and_fit_many_names_the_factor():
    m = fglang.compile(REAL_SD, "r.fg")
    post = m.fit(DATA, backend="vi", init={"s": 6.0, "mu": 0.0}, steps=20, draws=10)
    assert float(post.mean("s")) > 5
    with pytest.raises(FgError, match=r"^r.fg:7:41: no valid initial point: factor 'obs'"):
        m.fit_many([DATA, DATA], backend="vi", init={"s": 1.0, "mu": 0.0}, steps=20, draws=10)


UNIFORM = """
model u
data y: real
var a: real ~ normal(0, 1)
factor obs: y ~ uniform(a - 1, a + 1)
"""


@pytest.mark.parametrize("backend", ["vi", "mcmc", "map"])
def test_an_init_that_puts_an_observation_outside_the_support_is_the_same_error(backend):
    """Not an invalid argument but a log density of -inf (0.5 outside (4, 6)); main's VI started elsewhere."""
    import warnings

    with pytest.raises(FgError) as e, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NumPyro's "Out-of-support values"
        fglang.compile(UNIFORM, "u.fg").fit({"y": 0.5}, backend=backend, init={"a": 5.0}, **FAST[backend])
    assert str(e.value).startswith("u.fg:5:1: no valid initial point: factor 'obs': its log density is not finite "
                                   "at obs (value 0.5)"), str(e.value)


def test_a_linear_models_start_check_evaluates_nothing(monkeypatch):
    """An affine factor's Jacobian does not depend on the start: the check decides that from
    shapes and gathers no start values (each eager JAX operation is a program lowered of its own)."""
    from fglang.compiler.bind import BoundModel
    from fglang.runtime.values import warn_saddle_start

    gathered: list[str] = []
    gather = BoundModel.gather

    def counted(self, slot, values):
        gathered.append(slot.var)
        return gather(self, slot, values)

    monkeypatch.setattr(BoundModel, "gather", counted)
    linear = fglang.compile("model lin\ndata N: int\ndata y[N]: real\nvar x[N]: real\n"
                            "factor obs[n in 0:N]: y[n] ~ normal(x[n], 1)\n"
                            "factor step[n in 0:N-1]: x[n+1] ~ normal(x[n], 0.5)\n").bind({"N": 4, "y": [0.0] * 4})
    warn_saddle_start(linear, {})
    assert gathered == []
    with pytest.warns(UserWarning, match="all-zero Jacobian"):  # a nonlinear one is still evaluated at the start
        warn_saddle_start(fglang.compile(SADDLE, "saddle.fg").bind({"y": 1.0}), {})
    assert gathered
