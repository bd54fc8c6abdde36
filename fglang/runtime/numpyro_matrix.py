"""NumPyro's side of the matrix types and their distributions (compiler/matrix_types.py).

Each matrix type is a NumPyro constraint whose bijection is NumPyro's own
(``CorrCholeskyTransform``, Stan's; ``LowerCholeskyTransform``; those
composed with ``L -> L L^T`` for a correlation or covariance matrix), and
the LKJ densities are NumPyro's ``LKJCholesky`` / ``LKJ``. What is added:

* **One jitted call per function.** NumPyro runs a model outside of jit to
  trace and initialize it (and vi, mcmc and map's general path all do so),
  where every primitive of a transform or a log density is compiled on its
  own: the correlation bijection and the LKJ density are some 150 primitives,
  which cost 20 s of XLA compilation per fit of a two-line model. Here the
  forward map, its inverse, its log-Jacobian and the densities are each one
  ``jax.jit`` (inlined under an outer jit, so the compiled sampler is the same),
  cached per shape for the process and on disk by JAX's compilation cache.
* ``InverseWishart``: Stan's ``inv_wishart`` (not in every NumPyro).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.transforms import ParameterFreeTransform, biject_to
from numpyro.distributions.util import validate_sample

Array = Any


class _Jitted(ParameterFreeTransform):
    """A parameter-free NumPyro transform whose forward map, inverse and
    log|det J| are one jitted call each (see the module's docstring)."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self._fwd = jax.jit(base.__call__)
        self._inv_fn = jax.jit(base._inverse)
        self._ldj = jax.jit(lambda x, y: base.log_abs_det_jacobian(x, y))

    @property
    def domain(self) -> constraints.Constraint:
        return self.base.domain

    @property
    def codomain(self) -> constraints.Constraint:
        return self.base.codomain

    def __call__(self, x: Array) -> Array:
        return self._fwd(x)

    def _inverse(self, y: Array) -> Array:
        return self._inv_fn(y)

    def log_abs_det_jacobian(self, x: Array, y: Array, intermediates: Any = None) -> Array:
        return self._ldj(x, y)

    def forward_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.base.forward_shape(shape)

    def inverse_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.base.inverse_shape(shape)

    def tree_flatten(self):
        return (), ((), {"base": self.base, "_fwd": self._fwd, "_inv_fn": self._inv_fn, "_ldj": self._ldj})

    def eq(self, other: object, static: bool = False) -> bool:
        return isinstance(other, _Jitted) and other.base is self.base


def _jitted_constraint(base: constraints.Constraint, name: str) -> constraints.Constraint:
    """``base`` as a constraint of its own type, whose ``biject_to`` is ``base``'s
    bijection, jitted (``biject_to`` dispatches on the constraint's exact type)."""
    cls = type(f"Jitted{type(base).__name__.lstrip('_')}", (type(base),), {})
    transform = _Jitted(biject_to(base))
    biject_to.register(cls, lambda _c: transform)
    return cls()


#: matrix type -> its support, sampled through its bijection
MATRIX_CONSTRAINTS: dict[str, constraints.Constraint] = {
    kind: _jitted_constraint(base, kind)
    for kind, base in {
        "cholesky_factor_corr": constraints.corr_cholesky,
        "corr_matrix": constraints.corr_matrix,
        "cov_matrix": constraints.positive_definite,
        "cholesky_factor_cov": constraints.lower_cholesky,
    }.items()
}


# --------------------------------------------------------------------------- LKJ


@jax.jit
def _lkj_cholesky_logp(value: Array, eta: Array) -> Array:
    return dist.LKJCholesky(value.shape[-1], eta).log_prob(value)


@jax.jit
def _lkj_logp(value: Array, eta: Array) -> Array:
    return dist.LKJ(value.shape[-1], eta).log_prob(value)


class _Lkj(dist.Distribution):
    """An LKJ density of dimension K: NumPyro's, built only to sample (its
    constructor is some twenty eager primitives), its density one jitted call."""

    arg_constraints = {"concentration": constraints.positive}
    _numpyro: type[dist.Distribution]
    _logp: Any

    def __init__(self, dimension: int, concentration: Array, *, validate_args: bool | None = None) -> None:
        self.dimension, self.concentration = int(dimension), concentration
        super().__init__(batch_shape=jnp.shape(concentration), event_shape=(self.dimension, self.dimension),
                         validate_args=validate_args)

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        return self._numpyro(self.dimension, self.concentration).sample(key, sample_shape)

    def log_prob(self, value: Array) -> Array:
        return type(self)._logp(value, jnp.asarray(self.concentration, jnp.result_type(float)))


class LkjCholesky(_Lkj):
    """Stan's ``lkj_corr_cholesky(eta)`` (NumPyro's ``LKJCholesky``)."""

    support = constraints.corr_cholesky
    _numpyro = dist.LKJCholesky
    _logp = _lkj_cholesky_logp


class Lkj(_Lkj):
    """Stan's ``lkj_corr(eta)`` (NumPyro's ``LKJ``)."""

    support = constraints.corr_matrix
    _numpyro = dist.LKJ
    _logp = _lkj_logp


# --------------------------------------------------------------------------- inverse Wishart


class InverseWishart(dist.Distribution):
    """Stan's ``inv_wishart(nu, S)`` on ``[K, K]`` SPD matrices: ``W`` such that
    ``W^-1 ~ wishart(nu, S^-1)``, with the closed-form log density
    ``(nu/2) log|S| - (nu K/2) log 2 - log Gamma_K(nu/2) - ((nu+K+1)/2) log|W| - tr(S W^-1)/2``."""

    arg_constraints = {"nu": constraints.positive, "S": constraints.positive_definite}
    support = constraints.positive_definite
    reparametrized_params = ["S"]

    def __init__(self, nu: Array, S: Array, *, validate_args: bool | None = None) -> None:
        self.nu, self.S = nu, S
        batch = jnp.broadcast_shapes(jnp.shape(nu), jnp.shape(S)[:-2])
        super().__init__(batch_shape=batch, event_shape=jnp.shape(S)[-2:], validate_args=validate_args)

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        inv = jnp.linalg.inv(self.S)
        w = dist.Wishart(jnp.broadcast_to(self.nu, self.batch_shape), scale_matrix=inv).sample(key, sample_shape)
        return jnp.linalg.inv(w)

    @validate_sample
    def log_prob(self, value: Array) -> Array:
        return _inv_wishart_logp(value, jnp.asarray(self.nu, jnp.result_type(float)), self.S)


@jax.jit
def _inv_wishart_logp(value: Array, nu: Array, s: Array) -> Array:
    k = value.shape[-1]
    _, logdet_s = jnp.linalg.slogdet(s)
    chol_w = jnp.linalg.cholesky(value)
    logdet_w = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol_w, axis1=-2, axis2=-1)), axis=-1)
    trace = jnp.trace(s @ jnp.linalg.inv(value), axis1=-2, axis2=-1)
    return (0.5 * nu * logdet_s - 0.5 * nu * k * math.log(2.0) - jax.scipy.special.multigammaln(0.5 * nu, k)
            - 0.5 * (nu + k + 1) * logdet_w - 0.5 * trace)
