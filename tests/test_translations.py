"""The translations of docs/translations.md that have no posteriordb reference,
against exact answers: the change point's density against the same sum in
NumPy and its posterior against a grid over (e, l); the GP regression written
with the linear-algebra built-ins against tests/outside/gp_regr.fg, which
builds the same kernel by broadcasting (and is checked against posteriordb)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from scipy.special import gammaln, logsumexp

import fglang

ROOT = Path(__file__).resolve().parents[1]


def _block(title: str) -> str:
    """The fg block under the heading ``title`` of translations.md."""
    text = (ROOT / "docs" / "translations.md").read_text()
    part = text[text.index(title):]
    start = part.index("```fg\n") + len("```fg\n")
    return part[start:part.index("```", start)]


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


def _changepoint_data():
    rng = np.random.default_rng(4)
    T = 40
    D = np.concatenate([rng.poisson(3.0, 25), rng.poisson(1.0, T - 25)])
    return {"T": T, "D": D.tolist(), "r_e": 0.5, "r_l": 0.5}


def _changepoint_logp(e, l, data):
    """log p(e, l, D) up to a constant: exponential priors, the change point summed out."""
    D = np.asarray(data["D"])
    T = data["T"]
    t = np.arange(T)
    lp = []
    for s in range(T):
        rate = np.where(t < s, e[..., None], l[..., None])
        lp.append((D * np.log(rate) - rate - gammaln(D + 1)).sum(-1))
    prior = np.log(data["r_e"]) - data["r_e"] * e + np.log(data["r_l"]) - data["r_l"] * l
    return logsumexp(np.stack(lp), axis=0) - np.log(T) + prior


def test_changepoint_density_is_the_sum():
    model = fglang.compile(_block("## Stan 7: change point"))
    data = _changepoint_data()
    for e, l in [(3.0, 1.0), (2.2, 1.7)]:
        lp = model.log_density({"e": e, "l": l}, data)
        assert lp == pytest.approx(float(_changepoint_logp(np.array(e), np.array(l), data)), rel=1e-10)


@pytest.mark.heavy
def test_changepoint_posterior_is_the_grid():
    """NUTS (2 x (300 + 600)) against the posterior means on a 400 x 400 grid."""
    model = fglang.compile(_block("## Stan 7: change point"))
    data = _changepoint_data()
    e, l = np.meshgrid(np.linspace(0.5, 6, 400), np.linspace(0.2, 3, 400), indexing="ij")
    w = _changepoint_logp(e, l, data)
    w = np.exp(w - w.max())
    w /= w.sum()
    post = model.fit(data, backend="mcmc", seed=0, chains=2, warmup=300, samples=600)
    for name, grid in (("e", e), ("l", l)):
        mean = (w * grid).sum()
        sd = np.sqrt((w * (grid - mean) ** 2).sum())
        assert abs(post.mean(name) - mean) < 0.1 * sd, (name, post.mean(name), mean, sd)


def test_gp_regression_is_the_hand_built_kernel():
    model = fglang.compile(_block("## Stan 8: Gaussian process regression"))
    outside = fglang.load(ROOT / "tests" / "outside" / "gp_regr.fg")
    data = json.loads((ROOT / "tests" / "outside" / "gp_regr.data.json").read_text())
    for p in ({"rho": 6.0, "alpha": 1.5, "sigma": 0.4}, {"rho": 3.0, "alpha": 0.7, "sigma": 1.1}):
        assert model.log_density(p, data) == pytest.approx(outside.log_density(p, data), rel=1e-10)
