"""The summary's 40 rows put small vars first in declaration order: a
stochastic-volatility model's latent series ``h_std[200]`` sorted before
``mu``, ``phi`` and ``sigma`` and hid all three (a newcomer's first fit)."""

from __future__ import annotations

import numpy as np

from fglang.runtime.posterior import SMALL_QUANTITY, Posterior


def _posterior(sizes: dict[str, int], lets: dict[str, int]) -> Posterior:
    rng = np.random.default_rng(0)
    draws = {n: rng.normal(size=(2, 5, k)) for n, k in sorted({**sizes, **lets}.items())}
    return Posterior("m", "map", draws, node_shapes={n: (k,) for n, k in sizes.items()})


def test_small_vars_come_first_in_declaration_order_then_big_vars_then_lets():
    post = _posterior({"sigma": 1, "h_std": 200, "mu": 1, "phi": 1, "z": 300}, {"h": 200, "b": 1})
    assert post.report_order == ["sigma", "mu", "phi", "h_std", "z", "b", "h"]
    names = [r["name"] for r in post.summary()]
    assert names[:4] == ["sigma[0]", "mu[0]", "phi[0]", "h_std[0]"] and len(names) == 40


def test_a_var_of_exactly_the_small_size_counts_as_small():
    post = _posterior({"big": SMALL_QUANTITY + 1, "edge": SMALL_QUANTITY}, {})
    assert post.report_order == ["edge", "big"]


def test_the_r_hat_warning_names_the_worst_first():
    """phi (chains apart by 1 sd) must lead the r_hat warning, ahead of a
    200-element series whose elements are only slightly off."""
    rng = np.random.default_rng(1)
    h = rng.normal(size=(4, 200, 200))
    h[0] += 0.15
    phi = rng.normal(size=(4, 200, 1))
    phi[1] += 1.0
    post = Posterior("m", "mcmc", {"h_std": h, "phi": phi}, node_shapes={"h_std": (200,), "phi": (1,)},
                     sample_stats={"lp": rng.normal(size=(4, 200))})
    line = next(w for w in post.warnings() if w.startswith("r_hat > 1.01"))
    assert line.startswith("r_hat > 1.01 for phi[0] ("), line
    assert " more: " in line and line.count("h_std[") == 7
