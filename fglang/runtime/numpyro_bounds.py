"""A var's support when its bounds are expressions (``real(lower=a)``,
``real(offset=mu, multiplier=tau)``), for the NumPyro model that ``vi``,
``mcmc`` and ``map``'s general path share.

The var is one sample site whose support is built, each time the model
runs, from the bounds evaluated on the vars sampled before it
(``compiler.bound.bound_values``). NumPyro maps a site to the unconstrained
space through ``biject_to(support)`` inside every run of the model and adds
that transform's log-Jacobian, so the sampler moves on ``z`` with ``x = a +
exp(z)`` (``lower=a``), ``x = a + (b - a) sigmoid(z)`` (both) or ``x =
offset + multiplier * z`` and the density is the one Stan samples. (NumPyro
maps draws back to the constrained space with the first run's transforms
unless the model has a deterministic site: each live bound is one.) As in
Stan the var's prior is not renormalized by the bounds: ``var x:
real(lower=a) ~ normal(0, 1)`` is ``normal(0, 1)`` restricted to ``x > a``,
without the ``1 - Phi(a)`` that a truncated prior would divide by.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.distributions import constraints
from numpyro.distributions.transforms import AffineTransform, biject_to

from fglang.compiler.bound import BoundModel, BoundVariable, bound_values
from fglang.compiler.ir import bound_name


class _AffineReal(constraints.Constraint):
    """The real line, reached from the unconstrained space by ``offset +
    multiplier * z`` (Stan's ``offset=``/``multiplier=``): a constraint only
    so that ``biject_to`` picks that transform (``_affine_bijection``)."""

    event_dim = 0

    def __init__(self, offset: Any, multiplier: Any) -> None:
        self.offset = offset
        self.multiplier = multiplier

    def __call__(self, x: Any) -> Any:
        xp = jnp if isinstance(x, jax.Array) else np
        return xp.isfinite(x)

    def feasible_like(self, prototype: Any) -> Any:
        return jnp.broadcast_to(self.offset, jnp.shape(prototype))

    def tree_flatten(self):
        return (self.offset, self.multiplier), (("offset", "multiplier"), dict())


@biject_to.register(_AffineReal)
def _affine_bijection(c: _AffineReal) -> AffineTransform:
    return AffineTransform(c.offset, c.multiplier)


def var_support(bm: BoundModel, v: BoundVariable, data: dict[str, Any], values: dict[str, Any]
                ) -> constraints.Constraint:
    """The support of var ``v`` with its bounds evaluated at ``values``. Where
    a lower bound read from vars is not below the upper one, the model's
    density is ``-inf`` (the draw is rejected, as Stan rejects it)."""
    got = {k: jnp.asarray(x) for k, x in bound_values(bm, v, data, values).items()}
    for k in got:
        if not bm.bounds[bound_name(v.name, k)].data_only:
            # a deterministic site makes NumPyro replay the model to constrain a draw
            # (its check for supports that depend on other sites misses these); the
            # site is dropped from the draws (numpyro_sites.site_draws)
            numpyro.deterministic(bound_name(v.name, k), got[k])
    d = v.domain
    if d.kind == "affine":
        return _AffineReal(got.get("offset", 0.0), got.get("multiplier", 1.0))
    lo = got.get("lower", d.lower)
    hi = got.get("upper", d.upper)
    if lo is not None and hi is not None:
        if any(not bm.bounds[bound_name(v.name, k)].data_only for k in got):  # data-only: checked at bind
            ok = jnp.asarray(lo) < jnp.asarray(hi)
            numpyro.factor(f"{v.name}__bounds", jnp.where(jnp.all(ok), 0.0, -jnp.inf))
            hi = jnp.where(ok, hi, jnp.asarray(lo) + 1.0)  # a rejected draw still has a valid transform
        return constraints.interval(lo, hi)
    if lo is not None:
        return constraints.greater_than(lo)
    return constraints.less_than(hi)
