"""The general path: Newton/LM on the model's log density in the
unconstrained space, for models that are not least squares (non-Gaussian
likelihoods, potentials, sparsity priors, constrained vars).

The density is NumPyro's potential energy of the lowered model (the same
model VI and NUTS run, constrained vars through NumPyro's bijections with
their log-Jacobians), so the mode found is the mode of the unconstrained
density, as Stan's ``optimize`` with ``jacobian=true`` reports it. The
Hessian is exact (``jax.hessian``) and dense: this path is for models of a
few thousand unknowns at most (``max_dense``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from fglang.compiler.bind import BoundModel
from fglang.runtime.carry import CarriedMarginal


class Density:
    """Unconstrained log density as a problem for ``lm.optimize``."""

    kind = "dense"

    def __init__(self, bm: BoundModel, carried: dict[str, CarriedMarginal], init: dict[str, np.ndarray],
                 seed: int, dtype: Any):
        from numpyro.infer import init_to_median, init_to_value
        from numpyro.infer.util import initialize_model

        from fglang.runtime.numpyro_sites import init_sites, numpyro_model

        nm = numpyro_model(bm, carried)
        nm.data = jax.tree_util.tree_map(
            lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, nm.data)
        self.nm, self.model = nm, nm.model_fn()
        sites = init_sites(nm, init)
        strategy = init_to_value(values=sites) if sites else init_to_median
        info = initialize_model(jax.random.PRNGKey(seed), self.model, init_strategy=strategy,
                                model_args=(nm.data,))
        z0 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), info.param_info.z)
        flat, self.unravel = ravel_pytree(z0)
        self.x0 = np.asarray(flat, np.float64)
        self.n = int(flat.size)
        self.dtype = dtype
        self.sites = {k: tuple(np.shape(v)) for k, v in z0.items()}
        names = sorted(z0)  # ravel_pytree's order for a dict
        sizes = [int(np.prod(self.sites[k], dtype=np.int64)) for k in names]
        self.offsets = dict(zip(names, np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()))
        potential, unravel = info.potential_fn, self.unravel

        def u(x):
            return potential(unravel(x))

        self._cost = jax.jit(u)
        self._lin = jax.jit(lambda x: (u(x), jax.grad(u)(x), jax.hessian(u)(x)))
        self._post = jax.jit(jax.vmap(lambda x: info.postprocess_fn(unravel(x))))

    def cost(self, x: np.ndarray) -> float:
        return float(self._cost(jnp.asarray(x, self.dtype)))

    def linearize(self, x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        c, g, h = self._lin(jnp.asarray(x, self.dtype))
        h = np.asarray(h, np.float64)
        return float(c), np.asarray(g, np.float64), 0.5 * (h + h.T)

    def diagonal(self, h: np.ndarray) -> np.ndarray:
        return np.abs(np.diag(h))

    def damped(self, h: np.ndarray, add: np.ndarray) -> np.ndarray:
        return h + np.diag(add)

    def retract(self, x: np.ndarray, dx: np.ndarray) -> np.ndarray:
        return x + dx  # the unconstrained space is a vector space

    def constrained(self, xs: np.ndarray) -> dict[str, np.ndarray]:
        """Unconstrained points [S, n] -> every site's constrained value [S, ...]
        (vars, lets, and sparsity priors' vars as NumPyro's deterministics)."""
        out = self._post(jnp.asarray(xs, self.dtype))
        return {k: np.asarray(v, np.float64) for k, v in out.items()}
