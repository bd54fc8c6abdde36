"""Draws from a Gaussian backend's per-node marginals (runtime/gaussian.py):
the column-at-a-time Cholesky product must give what the batched matrix
product it replaced gave, from the same normals, and the summary table's
quantiles, taken only over the rows it shows, must be those of the draws."""

from __future__ import annotations

import numpy as np
import pytest

from fglang.runtime.gaussian import _correlated_normals, node_draws
from fglang.runtime.posterior import GaussianMarginal, Posterior


def _spd(rng: np.random.Generator, nodes: int, d: int) -> np.ndarray:
    a = rng.standard_normal((nodes, d, d))
    return a @ np.swapaxes(a, 1, 2) + 0.1 * np.eye(d)


@pytest.mark.parametrize("d", [1, 2, 3, 6])
def test_column_product_equals_the_batched_cholesky_product(d):
    cov = _spd(np.random.default_rng(1), 50, d)
    e, bad = _correlated_normals(np.random.default_rng(7), cov, 30)
    assert bad == 0
    z = np.random.default_rng(7).standard_normal((30, 50, d))  # the same normals
    chol = np.linalg.cholesky(cov + 1e-12 * np.eye(d))
    want = np.matmul(chol, z[..., None])[..., 0]
    assert e.shape == (30, 50, d)
    np.testing.assert_allclose(e, want, rtol=1e-12, atol=1e-12)


def test_draws_have_the_marginal_covariance():
    cov = _spd(np.random.default_rng(2), 3, 3)
    e, _ = _correlated_normals(np.random.default_rng(3), cov, 40000)
    emp = np.einsum("snd,sne->nde", e, e) / e.shape[0]
    # the standard error of a covariance entry from 4e4 draws is about sqrt(2 / 4e4) of its scale
    scale = np.sqrt(np.einsum("nii,njj->nij", cov, cov))
    assert np.max(np.abs(emp - cov) / scale) < 5 * np.sqrt(2 / 4e4)


def test_a_negative_variance_is_counted_and_not_drawn_as_nan():
    """An unconverged GBP's marginal can have a negative variance: it used to
    reach the user as numpy's LinAlgError (a fuzz finding, horseshoe at iters=5)."""
    e, bad = _correlated_normals(np.random.default_rng(0), np.array([[[1.0]], [[-0.5]], [[np.nan]]]), 4)
    assert bad == 2 and np.all(np.isfinite(e)) and np.all(np.abs(e[:, 1:]) < 1e-5)


def test_an_indefinite_node_is_drawn_from_the_nearest_valid_covariance():
    good = _spd(np.random.default_rng(4), 2, 3)
    indefinite = np.diag([2.0, -1.0, 0.5])
    e, bad = _correlated_normals(np.random.default_rng(5), np.concatenate([good, indefinite[None]]), 40000)
    assert bad == 1 and np.all(np.isfinite(e))
    emp = np.einsum("snd,sne->nde", e, e) / e.shape[0]
    np.testing.assert_allclose(emp[2], np.diag([2.0, 0.0, 0.5]), atol=0.05)
    np.testing.assert_allclose(emp[:2], good, atol=0.1 * np.abs(good).max())


def test_the_gbp_fit_warns_of_an_indefinite_marginal():
    from fglang.runtime.gbp.backend import BACKEND

    post = Posterior("m", "gbp", {}, attrs={"converged": False, "iterations": 5, "final_change": 0.3,
                                              "indefinite_nodes": {"w": 3}})
    lines = BACKEND.advice(post)
    assert lines[0].startswith("GBP did not converge in 5 iterations")
    assert "not positive definite for w (3 nodes)" in lines[1] and "raise iters" in lines[1]


def test_summary_quantiles_are_those_of_the_rows_shown():
    nodes = 100
    mean, var = np.linspace(-1, 1, nodes), np.linspace(0.1, 2.0, nodes)
    g = GaussianMarginal(mean, var.reshape(nodes, 1, 1), (nodes,), ())
    draws, indefinite = node_draws({"x": g}, 400, seed=5)
    assert indefinite == {}
    post = Posterior("m", "gbp", draws, {"x": g}, {}, {}, {}, {"x": (nodes,)})
    rows = post.summary(max_rows=40)
    assert len(rows) == 40
    flat = draws["x"].reshape(-1, nodes)
    for k, row in enumerate(rows):
        assert row["name"] == f"x[{k}]"
        assert row["5%"] == pytest.approx(np.quantile(flat[:, k], 0.05), rel=1e-12, abs=1e-12)
        assert row["95%"] == pytest.approx(np.quantile(flat[:, k], 0.95), rel=1e-12, abs=1e-12)
        assert row["mean"] == pytest.approx(mean[k]) and row["sd"] == pytest.approx(np.sqrt(var[k]))
