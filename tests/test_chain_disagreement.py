"""Chains that disagree (fglang/runtime/mcmc/chains.py): the detector on
synthetic per-chain draws whose truth is known by construction (same
distribution, a shifted chain, a frozen chain, a 2-2 split), the warning a
NUTS fit prints, ``Posterior.drop_chains``, and (heavy) ARMA(1,1)'s four
default chains, where one chain froze before starts were screened and none
does now."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import fglang
from fglang.errors import FgError
from fglang.runtime.mcmc.chains import chain_groups, chain_moments, disagreement_warning
from fglang.runtime.posterior import Posterior, load_posterior

OUTSIDE = Path(__file__).parent / "outside" / "recurrences"


def _ar1(rng, shape, rho=0.9):
    """Autocorrelated N(0, 1) draws [chain, draw, k] (AR(1), stationary): an
    ESS per chain near n (1 - rho) / (1 + rho), about 50 of 1000 here, as a
    slowly mixing NUTS chain."""
    e = rng.normal(size=shape) * np.sqrt(1 - rho**2)
    x = np.empty(shape)
    x[:, 0] = rng.normal(size=(shape[0],) + shape[2:])
    for t in range(1, shape[1]):  # a test's synthetic data, not a run-time loop
        x[:, t] = rho * x[:, t - 1] + e[:, t]
    return x


def _label(k: int) -> str:
    return f"w[{k}]"


def test_chains_of_one_distribution_agree_even_over_many_slow_elements():
    rng = np.random.default_rng(0)
    for seed in range(5):
        x = _ar1(np.random.default_rng(seed), (4, 1000, 500))
        assert chain_groups(*chain_moments(x)) is None, seed
    assert chain_groups(*chain_moments(rng.normal(size=(1, 100, 3)))) is None  # one chain: nothing to compare


def test_a_shifted_chain_is_named_with_its_means_and_the_better_log_density():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 800, 6))
    x[2, :, 4] += 12.0  # chain 2 sits 12 sd away on element 4 only
    lp = np.array([-10.0, -10.2, -31.0, -9.9])[:, None] + rng.normal(size=(4, 800))
    found = chain_groups(*chain_moments(x), lp)
    assert found is not None
    assert found.groups == [[0, 1, 3], [2]] and found.frozen == []
    assert int(np.argmax(found.separation)) == 4 and found.separation[4] > 10
    np.testing.assert_allclose(found.means[1, 4], x[2, :, 4].mean())
    np.testing.assert_allclose(found.means[0, 4], x[[0, 1, 3], :, 4].mean())
    np.testing.assert_allclose(found.lp, [np.mean(lp[[0, 1, 3]]), np.mean(lp[2])])
    assert found.lp_sd == pytest.approx(1.0, abs=0.05)
    text = disagreement_warning(found, _label)
    first, table = text.splitlines()[0], text.splitlines()[1:4]
    assert first.startswith("chain 2 disagrees with chains 0, 1, 3")
    assert table[0].split() == ["mean", "chains", "0,", "1,", "3", "chain", "2"]
    assert table[1].split()[0] == "w[4]" and float(table[1].split()[2]) == pytest.approx(x[2, :, 4].mean(), 1e-3)
    assert table[2].split()[:2] == ["log", "density"]
    assert "chains 0, 1, 3 sit where the mean log density is higher (by 21" in text
    assert "did not move" not in text
    assert "--init map" in text and "--warmup" in text and "post.drop_chains([2])" in text


def test_a_frozen_chain_is_called_frozen_with_its_step_size():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 500, 3))
    x[3] = np.array([1.3, -1.1, -1.2])  # every draw the same point, as ARMA's stuck chain
    lp = np.array([65.7, 65.6, 65.7, -3.1e5])[:, None] + rng.normal(size=(4, 500)) * (np.arange(4) < 3)[:, None]
    found = chain_groups(*chain_moments(x), lp)
    assert found is not None and found.groups == [[0, 1, 2], [3]] and found.frozen == [3]
    text = disagreement_warning(found, _label, step_size=[0.30, 0.31, 0.29, 4.6e-7])
    assert "chain 3 did not move" in text and "step size of 4.6e-07 (the others 0.29 to 0.31)" in text
    assert "not a second mode" in text and "post.drop_chains([3])" in text


def test_a_two_two_split_is_reported_as_such_and_the_log_density_picks_the_reference():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 400, 2))
    x[[0, 2], :, 0] += 8.0
    found = chain_groups(*chain_moments(x), np.array([-50.0, -40.0, -50.0, -40.0])[:, None] + rng.normal(size=(4, 400)))
    assert found.groups == [[1, 3], [0, 2]]
    text = disagreement_warning(found, _label)
    assert text.startswith("the chains disagree: chains 1, 3 | chains 0, 2 settled in different places")
    assert "post.drop_chains([0, 2])" in text


def test_a_nan_element_and_a_constant_let_are_not_disagreements():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 300, 3))
    x[:, :, 1] = 2.5  # the same constant in every chain
    x[1, 7, 2] = np.nan
    assert chain_groups(*chain_moments(x)) is None


def _posterior(draws, lp, step=None):
    return Posterior("m", "mcmc", draws, sample_stats={"diverging": np.zeros(lp.shape, bool), "lp": lp},
                     attrs={"step_size": step}, node_shapes={k: v.shape[2:] for k, v in draws.items()})


def test_the_fit_warning_replaces_run_more_draws_and_survives_the_file(tmp_path):
    rng = np.random.default_rng(5)
    w = rng.normal(size=(4, 200, 2, 3))
    w[1, :, 1, 2] += 20.0
    lp = rng.normal(size=(4, 200)) - 5 * (np.arange(4) == 1)[:, None]
    post = _posterior({"w": w, "s": rng.normal(size=(4, 200))}, lp)
    out = post.warnings()
    assert out[0].endswith(": see which chains disagree below") and "w[1, 2]" in out[0]
    assert out[1].startswith("chain 1 disagrees with chains 0, 2, 3")
    assert "\n  w[1, 2] " in out[1] and "\n  s " not in out[1]  # only the element that is apart is shown
    assert load_posterior(post.save(tmp_path / "p.nc")).warnings() == out
    kept = post.drop_chains([1])
    assert kept.draws["w"].shape == (3, 200, 2, 3) and kept.sample_stats["lp"].shape == (3, 200)
    np.testing.assert_array_equal(kept.draws["w"][1], w[2])
    assert kept.warnings() == [] and kept.attrs["dropped_chains"] == [1]
    for bad in ([4], [0, 1, 2, 3]):
        with pytest.raises(FgError, match="drop_chains"):
            post.drop_chains(bad)


def test_agreeing_chains_keep_the_run_more_draws_advice():
    rng = np.random.default_rng(6)
    x = _ar1(rng, (4, 60, 1), rho=0.97)[..., 0]  # slow chains that R-hat flags but that overlap
    post = _posterior({"a": x}, rng.normal(size=(4, 60)))
    out = post.warnings()
    assert out and out[-1].endswith("run more draws") and len(out) == 1


def test_nuts_chains_in_the_two_modes_of_a_symmetric_posterior_are_grouped_by_mode():
    """y ~ normal(mu^2, 0.1) with y = 4: modes at mu = -2 and 2, equally high,
    with no path between them NUTS takes; seed 0 starts two chains on each
    side. The warning groups the chains by the sign of their start, shows
    both means, and says the log densities are alike (a symmetry)."""
    model = fglang.compile("model twomodes\ndata y: real\nvar mu: real ~ normal(0, 3)\n"
                           "factor f: y ~ normal(mu * mu, 0.1)\n")
    post = model.fit({"y": 4.0}, backend="mcmc", seed=0, warmup=200, samples=200)
    side = np.sign(post.draws["mu"].mean(axis=1))
    np.testing.assert_allclose(np.abs(post.draws["mu"].mean(axis=1)), 2.0, atol=0.01)
    assert sorted(side) == [-1, -1, 1, 1]
    text = post.warnings()[-1]
    groups = [[int(c) for c in np.flatnonzero(side == s)] for s in (-1, 1)]
    head = text.splitlines()[0]
    assert head.startswith("the chains disagree: chains ") and all(
        f"chains {a}, {b}" in head for a, b in groups)
    row = next(line for line in text.splitlines() if line.strip().startswith("mu "))
    assert sorted(float(x) for x in row.split()[1:]) == pytest.approx([-2.0, 2.0], abs=0.01)
    assert "the mean log densities are about the same" in text and "symmetry" in text


@pytest.mark.heavy
def test_arma_default_chains_agree_and_match_the_reference():
    """posteriordb arma11 with the four default chains (about 20 s CPU cold):
    before starts were screened (`mcmc.starts`), chain 3 of seed 0 and chain 0
    of seed 3 started with |theta| > 1, where the recursion explodes, and
    froze (the warning above named them). Now every chain moves, no warning,
    R-hat <= 1.01 and the means match the reference within 0.1 sd; --init map
    (every chain from the MAP, no screening) still agrees too."""
    from fglang.runtime.posterior import rank_diagnostics

    model = fglang.load(OUTSIDE / "arma11.fg")
    data = json.loads((OUTSIDE / "arma11.data.json").read_text())
    ref = json.loads((OUTSIDE / "arma11.reference.json").read_text())["params"]
    for seed, init in ((0, None), (3, None), (0, "map")):
        post = model.fit(data, backend="mcmc", seed=seed, **({"init": init} if init else {}))
        assert not post.warnings(), (seed, init, post.warnings())
        assert min(post.attrs["step_size"]) > 0.1, (seed, init)
        for name in ("mu", "phi", "theta", "sigma"):
            d = post.draws[name]
            assert float(rank_diagnostics(d.reshape(4, d.shape[1], 1))[0][0]) <= 1.01, (seed, name)
            assert abs(post.mean(name) - ref[name]["mean"]) < 0.1 * ref[name]["sd"], (seed, init, name)
