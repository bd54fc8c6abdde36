"""The VI guides: a normal distribution on the whitened unconstrained
parameters ``u``, mean-field, full-rank or low-rank plus diagonal, and their
initial parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist


def init_params(guide: str, dim: int, rank: int, dtype, key, scale0: float) -> dict:
    zeros = jnp.zeros(dim, dtype)
    one = jnp.full(dim, _softplus_inv(scale0), dtype)
    if guide == "delta":
        return {"loc": zeros}
    if guide == "normal":
        return {"loc": zeros, "scale": one}
    if guide == "mvn":
        return {"loc": zeros, "diag": one, "lower": jnp.zeros((dim, dim), dtype)}
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
    if guide == "normal":
        return dist.Normal(p["loc"], jax.nn.softplus(p["scale"])).to_event(1)
    if guide == "mvn":
        tril = scale0 * jnp.tril(p["lower"], -1) + jnp.diag(jax.nn.softplus(p["diag"]))
        return dist.MultivariateNormal(p["loc"], scale_tril=tril)
    if guide == "lowrank":
        return dist.LowRankMultivariateNormal(p["loc"], scale0 * p["factor"], jax.nn.softplus(p["scale"]) ** 2)
    raise AssertionError(guide)
