"""The recurrence ``scan[t in lo:hi](init, prev -> step)`` and ``log_sum_exp[...]``.

Oracles: each model's log density (NumPyro's, through ``Model.log_density``)
against the same recursion written as a Python loop with scipy's densities,
and the HMM forward algorithm against brute-force enumeration of every state
path. Differences of log densities between two points are compared, so that
the constant log densities of flat and simplex priors drop out. The fits
against posteriordb's reference draws (``tests/outside/recurrences``, made by
``tests/outside/make_reference.py`` from posteriordb's 10 x 1000 Stan draws)
are ``test_fits_nuts`` and ``test_vi_fits_through_the_scan``.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import compile_error
from scipy.special import logsumexp
from scipy.stats import norm

import fglang
from fglang.errors import FgError

OUTSIDE = Path(__file__).resolve().parent / "outside" / "recurrences"


@pytest.fixture(autouse=True)
def _float64():
    """The oracles are float64 loops; so is every density compared with them."""
    with jax.enable_x64(True):
        yield


def _outside(name: str):
    return fglang.load(OUTSIDE / f"{name}.fg"), json.loads((OUTSIDE / f"{name}.data.json").read_text())


def _garch_loglik(y, sigma1, mu, alpha0, alpha1, beta1):
    sigma = [sigma1]
    for t in range(1, len(y)):
        sigma.append(np.sqrt(alpha0 + alpha1 * (y[t - 1] - mu) ** 2 + beta1 * sigma[-1] ** 2))
    return norm.logpdf(y, mu, np.array(sigma)).sum() + np.log1p(-alpha1)


def test_garch_density_is_the_loop():
    model, data = _outside("garch11")
    y = np.asarray(data["y"])
    points = [dict(mu=0.1, alpha0=0.3, alpha1=0.2, beta1_raw=0.5), dict(mu=-0.2, alpha0=0.5, alpha1=0.4, beta1_raw=0.3)]
    lp = [model.log_density(p, data) for p in points]
    ref = [_garch_loglik(y, data["sigma1"], p["mu"], p["alpha0"], p["alpha1"], (1 - p["alpha1"]) * p["beta1_raw"])
           for p in points]
    assert lp[0] - lp[1] == pytest.approx(ref[0] - ref[1], rel=1e-9, abs=1e-8)


def test_arma_density_is_the_loop():
    model, data = _outside("arma11")
    y = np.asarray(data["y"])
    points = [dict(mu=0.1, phi=0.5, theta=0.3, sigma=1.2), dict(mu=-0.3, phi=0.2, theta=-0.4, sigma=0.8)]

    def ref(mu, phi, theta, sigma):
        err = [y[0] - (mu + phi * mu)]
        for t in range(1, len(y)):
            err.append(y[t] - (mu + phi * y[t - 1] + theta * err[-1]))
        priors = norm.logpdf(mu, 0, 10) + norm.logpdf(phi, 0, 2) + norm.logpdf(theta, 0, 2)
        half_cauchy = np.log(2 / (np.pi * 2.5 * (1 + (sigma / 2.5) ** 2)))
        return norm.logpdf(err, 0, sigma).sum() + priors + half_cauchy

    assert model.log_density(points[0], data) == pytest.approx(ref(**points[0]), rel=1e-9)
    assert model.log_density(points[1], data) == pytest.approx(ref(**points[1]), rel=1e-9)


def test_hmm_forward_is_the_sum_over_paths():
    """A vector state (log alpha over K states) with log_sum_exp[...] in its step,
    against the sum over all K^N state paths."""
    model, _ = _outside("hmm_example")
    rng = np.random.default_rng(0)
    y = rng.normal(5, 3, size=7)
    data = {"N": 7, "K": 2, "y": y.tolist()}

    def brute(theta1, theta2, mu):
        theta = np.array([theta1, theta2])
        paths = []
        for z in itertools.product(range(2), repeat=len(y)):
            lp = sum(norm.logpdf(y[t], mu[z[t]], 1) for t in range(len(y)))
            lp += sum(np.log(theta[z[t - 1], z[t]]) for t in range(1, len(y)))
            paths.append(lp)
        return logsumexp(paths) + norm.logpdf(mu[0], 3, 1) + norm.logpdf(mu[1], 10, 1)

    points = [dict(theta1=[0.7, 0.3], theta2=[0.2, 0.8], mu=[2.0, 7.0]),
              dict(theta1=[0.4, 0.6], theta2=[0.9, 0.1], mu=[4.0, 9.5])]
    lp = [model.log_density(p, data) for p in points]
    ref = [brute(**p) for p in points]
    assert lp[0] - lp[1] == pytest.approx(ref[0] - ref[1], rel=1e-9)


VAR_STEPS = """model walk
data T: int
data K: int
data y[T + 1, K]: real
var x[T]: real[K]
var w[K]: real
let s = scan[t in 0:T](0 * w, prev -> prev + x[t] * sum[k in 0:K](w[k] * prev[k] + 1))
factor obs: y ~ normal(s, 1)
"""


def test_a_var_indexed_by_the_scan_index():
    """``x[t]`` reads one node per step (a slot with one block per step) and a
    reduction inside the step reads nodes of ``w``."""
    model = fglang.compile(VAR_STEPS)
    rng = np.random.default_rng(1)
    T, K = 5, 3
    y = rng.normal(size=(T + 1, K))
    data = {"T": T, "K": K, "y": y.tolist()}

    def ref(x, w):
        s = [np.zeros(K)]
        for t in range(T):
            s.append(s[-1] + x[t] * (np.dot(w, s[-1]) + K))
        return norm.logpdf(y, np.array(s), 1).sum()

    points = [dict(x=rng.normal(size=(T, K)) * 0.3, w=rng.normal(size=K)) for _ in range(2)]
    lp = [model.log_density(p, data) for p in points]
    want = [ref(**p) for p in points]
    assert lp[0] - lp[1] == pytest.approx(want[0] - want[1], rel=1e-9)


def test_the_result_has_the_range_plus_the_initial_state():
    m = fglang.compile("model m\ndata T: int\nvar a: real\nlet h = scan[t in 2:T](a, p -> p * 2 + t)\n"
                       "factor f: potential sum(h)\n")
    bm = m.bind({"T": 6})
    assert bm.derived["h"].shape == (5,)
    lp1 = m.log_density({"a": 1.0}, {"T": 6})
    # h = 1, 1*2+2=4, 4*2+3=11, 11*2+4=26, 26*2+5=57
    assert lp1 == pytest.approx(1 + 4 + 11 + 26 + 57)


def test_log_sum_exp_reduction_is_stable():
    m = fglang.compile("model m\ndata K: int\ndata c[K]: real\nvar a: real\n"
                       "factor f: potential log_sum_exp[k in 0:K](c[k] + a)\n")
    c = [1000.0, 1001.0, -5.0]
    assert m.log_density({"a": 2.0}, {"K": 3, "c": c}) == pytest.approx(logsumexp(np.array(c) + 2.0), rel=1e-12)


@pytest.mark.parametrize(
    "body, where, message",
    [
        ("scan[t in 1:T](a, p -> [p, p])", "[p, p]", "a scan's step must return the state's shape scalar, got [2]"),
        ("scan[t in 1:T](a, p -> p > 0)", "p > 0", "a scan's step must return numbers, got a comparison"),
        ("scan[t in 1:T](a > 0, p -> p)", "a > 0", "a scan's state must be numbers, got a comparison (bool)"),
        ("scan[t in 1:T](a, y -> y)", "y", "'y' in this scan hides the declared name 'y'"),
        ("scan[t in 1:T](a, t -> t)", "t", "the scan's index and its state are both called 't'"),
        ("scan[t in 1:a](a, p -> p)", "a", "a scan's range must be fixed by the data's sizes"),
        ("scan[t in 1:T](a, p -> p + q)", "q", "unknown name 'q'"),
    ],
)
def test_mistakes_are_located(body, where, message):
    line = f"let h = {body}"
    src = f"model m\ndata T: int\ndata y[T]: real\nvar a: real\n{line}\nfactor f: potential sum(h)\n"
    err = compile_error(src)
    hits = [d for d in err.diagnostics if message in d.message]
    assert hits, [d.message for d in err.diagnostics]
    s = hits[0].span
    start = line.index(where, line.index("(") + 1) if where != "a" or "1:a" not in line else line.index("1:a") + 2
    assert (s.line, s.col) == (5, start + 1), (s, str(err))
    assert "Traceback" not in str(err)


def test_a_range_over_a_factor_index_is_refused():
    err = compile_error("model m\ndata N: int\nvar a: real\n"
                        "factor f[i in 0:N]: potential scan[t in 0:i](a, p -> p + 1)[0]\n")
    assert "a scan's range must be fixed by the data's sizes" in str(err)
    assert err.diagnostics[0].span.line == 4


def test_the_syntax_error_names_the_arrow():
    err = compile_error("model m\ndata T: int\nvar a: real\nlet h = scan[t in 1:T](a, p)\n")
    assert "'->'" in err.diagnostics[0].message
    assert err.diagnostics[0].span.line == 4


def test_gbp_refuses_a_scan_of_vars_and_names_the_backends():
    model, data = _outside("arma11")
    with pytest.raises(FgError) as info:
        model.fit(data, backend="gbp")
    text = str(info.value)
    assert "recurrence" in text and "--backend mcmc" in text and "arma11.fg:" in text


@pytest.mark.heavy
def test_vi_fits_through_the_scan():
    """VI's defaults on ARMA(1,1) (about 10 s): gradients flow through lax.scan."""
    model, data = _outside("arma11")
    ref = json.loads((OUTSIDE / "arma11.reference.json").read_text())["params"]
    post = model.fit(data, backend="vi", seed=0)
    for name in ("mu", "phi", "theta", "sigma"):
        assert abs(post.mean(name) - ref[name]["mean"]) < 0.25 * ref[name]["sd"], name


@pytest.mark.heavy
@pytest.mark.parametrize("name", ["hmm_example", "garch11", "arma11"])
def test_fits_nuts(name):
    """NUTS (2 chains x (300 + 600)) on each recurrence against posteriordb's
    reference draws: means within 0.1 reference sd, sds within 20%."""
    from test_outside_models import compare

    model, data = _outside(name)
    ref = json.loads((OUTSIDE / f"{name}.reference.json").read_text())
    post = model.fit(data, backend="mcmc", seed=0, chains=2, warmup=300, samples=600)
    for label, (err, ratio) in compare(post, ref).items():
        assert err < 0.1 and 0.8 < ratio < 1.2, (label, err, ratio)


def test_a_scan_per_member_of_a_family():
    """Each member runs its own recurrence from its own start (the scan is
    vmapped over the family's members)."""
    src = ("model m\ndata N: int\ndata T: int\ndata y[N]: real\ndata a[N]: real\nvar b: real\n"
           "factor f[i in 0:N]: y[i] ~ normal(scan[t in 0:T](a[i], p -> p * b + t)[T], 1)\n")
    rng = np.random.default_rng(5)
    y, a = rng.normal(size=3), rng.normal(size=3)
    data = {"N": 3, "T": 4, "y": y.tolist(), "a": a.tolist()}

    def last(a0, b):
        h = a0
        for t in range(4):
            h = h * b + t
        return h

    model = fglang.compile(src)
    lp = [model.log_density({"b": b}, data) for b in (0.5, -0.8)]
    want = [norm.logpdf(y, [last(x, b) for x in a], 1).sum() for b in (0.5, -0.8)]
    assert lp[0] - lp[1] == pytest.approx(want[0] - want[1], rel=1e-9)
