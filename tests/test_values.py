"""Data-only argument and observation values are checked before any backend runs.

Regression tests for issue 16 ("values that are invalid only at run time"):
each of these was a traceback (vi/mcmc: "Cannot find valid initial
parameters") or, for GBP, a silent wrong answer (sd = -1 treated as 1).
"""

from __future__ import annotations

import pytest

import fglang
from fglang.errors import FgError

SCALE = """model m
data N: int
data s[N]: real
data y[N]: real
var mu: real ~ normal(0, 1)
factor obs[n in 0:N]: y[n] ~ normal(mu, s[n])
"""


@pytest.mark.parametrize("backend", ["gbp", "vi", "mcmc"])
@pytest.mark.parametrize(("s", "what"), [([1.0, 0.0, 2.0], "(value 0)"), ([1.0, 2.0, -1.0], "obs[n=2] (value -1)")])
def test_bad_scale_in_the_data_is_located(backend, s, what):
    m = fglang.compile(SCALE, "m.fg")
    with pytest.raises(FgError, match="m.fg:6:41: 'sd' of normal in factor 'obs'") as e:
        m.fit({"N": 3, "s": s, "y": [0.0, 1.0, 2.0]}, backend=backend)
    assert what in str(e.value)


def test_a_scale_that_overflows_is_located():
    m = fglang.compile(SCALE.replace("s[n])", "exp(s[n]))"), "m.fg")
    with pytest.raises(FgError, match=r"'sd' of normal in factor 'obs' is not finite at obs\[n=1\]"):
        m.fit({"N": 3, "s": [1.0, 1000.0, 2.0], "y": [0.0, 1.0, 2.0]}, backend="gbp")


def test_categorical_outcome_out_of_range_names_one_based_data():
    src = "model m\ndata N: int\ndata y[N]: int\nvar l: real[3] ~ normal(0, 1)\n" \
          "factor obs[n in 0:N]: y[n] ~ categorical(logits=l)\n"
    with pytest.raises(FgError, match=r"must be in 0..2 \(0-based\), but is not at obs\[n=2\] \(value 3\)") as e:
        fglang.compile(src, "m.fg").fit({"N": 3, "y": [1, 2, 3]}, backend="vi", steps=10)
    assert "subtract 1 from 1-based" in str(e.value)


@pytest.mark.parametrize(
    ("src", "data", "message"),
    [
        ("model m\ndata N: int\ndata y[N]: int\nvar r: positive ~ gamma(1, 1)\n"
         "factor obs[n in 0:N]: y[n] ~ poisson(r)\n", {"N": 3, "y": [1, -2, 3]},
         r"\(poisson\) is not a whole number >= 0 at obs\[n=1\] \(value -2\)"),
        ("model m\ndata N: int\ndata y[N]: int\ndata k[N]: int\nvar p: unit ~ beta(1, 1)\n"
         "factor obs[n in 0:N]: y[n] ~ binomial(k[n], p)\n", {"N": 2, "y": [1, 5], "k": [3, 3]},
         r"exceeds its n at obs\[n=1\] \(value 5\)"),
        ("model m\ndata N: int\ndata y[N]: real\nvar r: positive ~ gamma(1, 1)\n"
         "factor obs[n in 0:N]: y[n] ~ exponential(r)\n", {"N": 2, "y": [1.0, 0.0]},
         r"outside the support \(0, inf\) at obs\[n=1\]"),
    ],
)
def test_observations_outside_the_support(src, data, message):
    with pytest.raises(FgError, match=message):
        fglang.compile(src, "m.fg").fit(data, backend="mcmc", chains=1, warmup=10, samples=10)


def test_valid_values_fit():
    post = fglang.compile(SCALE, "m.fg").fit({"N": 3, "s": [1.0, 0.5, 2.0], "y": [0.0, 1.0, 2.0]}, backend="gbp")
    assert post.mean("mu").shape == ()


def test_declarations_that_settle_the_values_cost_no_evaluation(monkeypatch):
    # typed data (positive sd, real observations) are checked at bind: nothing to evaluate,
    # so a large grid's first fit pays no op-by-op compilation for this check
    from pathlib import Path

    import numpy as np

    from fglang.runtime import values

    def refuse(*args, **kwargs):
        raise AssertionError("evaluated a family whose values the declarations settle")

    monkeypatch.setattr(values, "_evaluate", refuse)
    m = fglang.load(Path(__file__).resolve().parents[1] / "examples" / "denoise_normal.fg")
    values.check_values(m.bind({"H": 8, "W": 8, "img": np.zeros((8, 8))}))


TINY_SD = """
model tiny_sd
data N: int
data y[N]: real
data sd[N]: {kind}
var mu: real ~ normal(0, 10)
factor obs[n in 0:N]: y[n] ~ normal(mu, sd[n])
"""


@pytest.mark.parametrize("kind", ["real", "positive"])
def test_a_degenerate_tiny_scale_from_data_warns_naming_the_member(kind):
    import warnings as _w

    from fglang.runtime.values import check_values

    bm = fglang.compile(TINY_SD.format(kind=kind), "t.fg").bind({"N": 3, "y": [0.0, 1.0, 2.0],
                                                                  "sd": [1.0, 1e-30, 1.0]})
    with _w.catch_warnings(record=True) as seen:
        _w.simplefilter("always")
        check_values(bm)
    text = "\n".join(str(w.message) for w in seen)
    assert "'sd' of normal in factor 'obs' is degenerate (below 1e-10)" in text, text
    assert ("obs[n=1] (value 1e-30)" if kind == "real" else "data 'sd' (value 1e-30)") in text
    assert "t.fg:7:" in text
    bm = fglang.compile(TINY_SD.format(kind=kind), "t.fg").bind({"N": 2, "y": [0.0, 1.0], "sd": [1.0, 1e-3]})
    with _w.catch_warnings(record=True) as seen:
        _w.simplefilter("always")
        check_values(bm)
    assert not seen


MVN = "model m\ndata S[2, 2]: real\nvar x: real[2] ~ mvnormal([0, 0], S)\n"


@pytest.mark.parametrize("backend", ["gbp", "vi", "map"])
@pytest.mark.parametrize(("S", "what"), [
    ([[1, 1], [1, 1]], "is not positive definite (the value: its smallest eigenvalue) at x__prior (value 0)"),
    ([[1, 2], [2, 1]], "is not positive definite (the value: its smallest eigenvalue) at x__prior (value -1)"),
    ([[1, 0.5], [0.4, 1]], "is not symmetric (the value: its largest |A - A^T|) at x__prior (value 0.1)"),
])
def test_a_covariance_from_data_that_is_no_covariance_is_located(backend, S, what):
    """Main: GBP's LinAlgError ('Singular matrix') or ValueError tracebacks; vi 'no valid initial point' and
    map 'cost not finite', neither naming the data; a non-symmetric one ran on vi and map (lower triangle)."""
    with pytest.raises(FgError) as e:
        fglang.compile(MVN, "m.fg").fit({"S": S}, backend=backend)
    text = str(e.value)
    assert text.startswith(f"m.fg:3:35: 'cov' of mvnormal in factor 'x__prior' {what}"), text


def test_a_precision_matrix_per_member_is_checked_and_semidefinite_is_allowed():
    src = ("model m\ndata N: int\ndata P[N, 2, 2]: real\ndata y[N, 2]: real\nvar x: real[2] ~ normal(0, 1)\n"
           "factor o[i in 0:N]: y[i] ~ mvnormal(x, prec=P[i])\n")
    m = fglang.compile(src, "m.fg")
    bad = {"N": 3, "P": [[[1, 0], [0, 1]], [[1, 0], [0, -1]], [[1, 3], [3, 1]]], "y": [[0, 0]] * 3}
    with pytest.raises(FgError, match=r"'prec' of mvnormal in factor 'o' is not positive semi-definite .* at "
                                      r"o\[i=1\] \(value -1\), o\[i=2\] \(value -2\)"):
        m.fit(bad, backend="gbp")
    # no information along x[1] from the second member: GBP's posterior of x[0] is the closed form
    post = m.fit({"N": 2, "P": [[[1, 0], [0, 1]], [[1, 0], [0, 0]]], "y": [[1, 0], [2, 0]]}, backend="gbp")
    assert post.mean("x")[0] == pytest.approx(3 / 3, rel=1e-4)  # (1 + 2) / (1 prior + 1 + 1)


WIDE_PRIOR = SCALE.replace("normal(0, 1)", "normal(0, 10)")


def test_a_scale_float32_cannot_hold_is_located_for_gbp_and_float64_runs():
    """sd = 1e-30 is a precision 1e60: finite in float64, inf in float32, where GBP plans (and by default
    runs). Main: ValueError 'precision must be finite and non-negative' from the engine, even with
    dtype=float64 (the schedule was planned in float32)."""
    m = fglang.compile(WIDE_PRIOR, "m.fg")
    data = {"N": 2, "s": [1.0, 1e-30], "y": [0.0, 1.0]}
    with pytest.warns(UserWarning, match="degenerate"), pytest.raises(FgError) as e:
        m.fit(data, backend="gbp")
    text = str(e.value)
    assert text.startswith("m.fg:6:1: GBP cannot run factor 'obs' in float32: its precision (1/sd^2)"), text
    assert "fit with --dtype float64" in text
    with pytest.warns(UserWarning, match="degenerate"):
        post = m.fit(data, backend="gbp", dtype="float64")
    assert post.mean("mu") == pytest.approx(1.0, abs=1e-12)  # precision-weighted: 1e60 * 1 / (1e60 + 1.01)


def test_a_huber_delta_float32_cannot_hold_is_located_for_gbp():
    src = "model m\ndata y: real\nvar x: real ~ normal(0, 1)\nfactor o: y ~ huber(x, 1, 1e-308)\n"
    with pytest.raises(FgError, match=r"m.fg:4:1: GBP cannot run factor 'o' in float32: its robust parameter is "
                                      r"not positive there"):
        fglang.compile(src, "m.fg").fit({"y": 1.0}, backend="gbp")


def test_a_scale_whose_precision_overflows_float64_is_located_and_shown_as_written():
    """sd = 1e-300: main evaluated the check in float32 and said 'must be > 0, but is not at obs[i=1] (value 0)';
    vi and map then found 'no valid initial point' blaming 'a scale computed from a var'."""
    m = fglang.compile(WIDE_PRIOR, "m.fg")
    for backend in ("vi", "map", "gbp"):
        with pytest.raises(FgError) as e:
            m.fit({"N": 2, "s": [1.0, 1e-300], "y": [0.0, 1.0]}, backend=backend)
        text = str(e.value)
        assert text.startswith("m.fg:6:41: 'sd' of normal in factor 'obs' is below 7.5e-155 at obs[n=1] "
                               "(value 1e-300): its precision 1/sd^2 is past float64's range"), text
