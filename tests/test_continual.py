"""Posterior-as-prior (continual learning) for the vi backend: a file written
by one fit is read as the priors of the next (the gbp case is in
test_gbp_models.py)."""

from __future__ import annotations

import numpy as np
import pytest

import fglang

BLR = """
model blr
data N: int
data D: int
data X[N, D]: real
data y[N]: real
var w: real[D] ~ normal(0, 2)
factor lik[n in 0:N]: y[n] ~ normal(dot(X[n], w), 0.3)
"""


@pytest.mark.heavy
def test_vi_posterior_file_becomes_the_next_prior(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 2))
    y = x @ np.array([1.0, -0.5]) + rng.normal(0, 0.3, 60)
    m = fglang.compile(BLR)
    half = {"N": 30, "D": 2, "X": x[:30].tolist(), "y": y[:30].tolist()}
    rest = {"N": 30, "D": 2, "X": x[30:].tolist(), "y": y[30:].tolist()}
    path = m.fit(half, backend="vi", steps=3000, lr=0.02, seed=1).save(tmp_path / "half.nc")
    carried = m.fit(rest, backend="vi", steps=3000, lr=0.02, seed=2, prior=path)
    lam = np.eye(2) / 4 + x.T @ x / 0.09
    cov = np.linalg.inv(lam)
    exact = cov @ (x.T @ y / 0.09)
    # a normal guide on a Gaussian posterior recovers its mean; the
    # tolerance covers Monte Carlo noise of 1000 draws and SVI's stochastic optimum
    assert np.allclose(carried.mean("w"), exact, atol=0.03)
    assert np.all(carried.sd("w") < 1.5 * np.sqrt(np.diag(cov)) + 0.01)
