"""The VI guides: a normal distribution on the whitened unconstrained
parameters ``u``, mean-field, full-rank or low-rank plus diagonal, and their
initial parameters.

NumPyro is imported only when a guide's distribution is built (inside a
program being traced): a warm fit, whose programs are all stored, never
imports it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def init_params(guide: str, dim: int, rank: int, dtype, key, scale0: float) -> dict:
    """The guide's initial parameters (NumPy arrays: no program runs), the
    low-rank factor drawn from ``key`` (unused by the other guides)."""
    zeros = np.zeros(dim, dtype)
    one = np.full(dim, _softplus_inv(scale0), dtype)
    if guide == "delta":
        return {"loc": zeros}
    if guide == "normal":
        return {"loc": zeros, "scale": one}
    if guide == "mvn":
        return {"loc": zeros, "diag": one, "lower": np.zeros((dim, dim), dtype)}
    if guide == "lowrank":
        factor = 0.01 * jax.random.normal(key, (dim, rank), dtype)
        return {"loc": zeros, "scale": one, "factor": factor}
    raise AssertionError(guide)


def _softplus_inv(y: float) -> float:
    return float(np.log(np.expm1(y)))


def guide_dist(guide: str, p: dict, scale0: float):
    """The guide's distribution of u. The off-diagonal parameters (the Cholesky
    factor's lower part, the low-rank factor) are in units of ``scale0``: Adam
    moves every parameter by about the learning rate, and where the fit is not
    whitened the covariances must move as slowly as the small initial scales."""
    import numpyro.distributions as dist

    if guide == "normal":
        return dist.Normal(p["loc"], jax.nn.softplus(p["scale"])).to_event(1)
    if guide == "mvn":
        tril = scale0 * jnp.tril(p["lower"], -1) + jnp.diag(jax.nn.softplus(p["diag"]))
        return dist.MultivariateNormal(p["loc"], scale_tril=tril)
    if guide == "lowrank":
        return _low_rank_normal()(p["loc"], scale0 * p["factor"], jax.nn.softplus(p["scale"]) ** 2)
    raise AssertionError(guide)


def __getattr__(name: str):
    if name == "LowRankNormal":  # the class, made on first use (it subclasses NumPyro's)
        return _low_rank_normal()
    raise AttributeError(name)


@functools.cache
def _low_rank_normal() -> type:
    import numpyro.distributions as dist

    class LowRankNormal(dist.LowRankMultivariateNormal):
        """NumPyro's low-rank plus diagonal normal, with the entropy's log
        determinant (of the r x r capacitance ``I + W^T D^-1 W``) from its
        eigenvalues instead of its Cholesky factor. Same value; but the gradient
        of a Cholesky factorization runs two triangular solves that XLA's CPU
        backend executes slowly inside a compiled loop (17 ms a step at r = 32,
        D = 1210, against 0.5 ms for the eigenvalues: the step itself costs ~5),
        and VI takes that gradient at every step. The eigenvalues' gradient is
        exact for repeated eigenvalues too (the factor starts near 0, where all
        are 1): only the eigenvectors' derivative divides by their gaps."""

        def entropy(self):
            w, d = self.cov_factor, self.cov_diag
            capacitance = jnp.eye(w.shape[-1], dtype=w.dtype) + (jnp.swapaxes(w, -1, -2) / d[..., None, :]) @ w
            log_det = jnp.sum(jnp.log(jnp.linalg.eigvalsh(capacitance)), -1) + jnp.sum(jnp.log(d), -1)
            h = 0.5 * (self.loc.shape[-1] * (1.0 + jnp.log(2 * jnp.pi)) + log_det)
            return jnp.broadcast_to(h, self.batch_shape)

    return LowRankNormal
