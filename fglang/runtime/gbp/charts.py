"""Group-valued vars (``rot2``, ``rot3``, ``pose2``, ``pose3``) in the GBP engine:
messages on the tangent space at each node's current linearization point.

Why: a rotation is not a vector space. GBP's messages are Gaussians over a
vector, so a group node is written ``x = origin compose exp(delta)`` and
every belief and message of that node is a Gaussian over its tangent
``delta`` (6 numbers for a pose3, whose stored value has 7), as in GTSAM,
the Robot Web (Murai et al. 2024) and Theseus' GBP. A factor's residual is
evaluated on the stored values ``origin compose exp(delta)`` (`charted`) and
linearized in ``delta`` by the engine's one ``vmap`` of ``jacfwd``.

The chart moves with the linearization point (`recenter`): every iteration,
after the relinearization step has chosen each node's point ``lin``
(``delta`` coordinates in the current chart; 0 for a node not
relinearized), the node's origin is retracted ``origin <- origin compose
exp(lin)`` and the node is linearized at ``delta = 0`` of the new chart. The
Gaussians already held over the old ``delta`` (every factor-to-variable
message, the belief, the stored mean) are carried to the new chart by the
translation ``delta' = delta - lin``: a message ``(eta, Lambda)`` becomes
``(eta - Lambda lin, Lambda)``.

What is and is not transported: that translation is the chart change
``delta' = log(exp(lin)^-1 exp(delta))`` to first order. Its linear part
(the inverse right Jacobian of ``exp`` at ``lin``, which would rotate and
shear each precision, and for a pose the coupling of translation and
rotation that BCH adds) is not applied, so a message's precision is kept
as it was in the old chart: exact when ``lin`` is 0, off by ``O(|lin|)``
relative otherwise. Messages are recomputed from their factors every
iteration at the new point, so the approximation only affects the damped
mix of old and new messages and what the other factors see for one
iteration; at a fixed point ``lin`` is 0 (below ``tol``) and nothing is
approximated: GBP's fixed point is the same as the tangent-space
Gauss-Newton (``map``) fixed point of the same factors.

The covariance a fit reports is the belief's over ``delta`` in the final
chart, whose origin is within ``tol`` of the mean: the tangent covariance at
the mean, as ``map``'s Laplace marginals give it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .beliefs import gather
from .plan import FamilyPlan, Plan, by_member
from .state import Beliefs, EngineData, FamilyState

Array = jax.Array


def retract(kind: str, origin: Array, delta: Array) -> Array:
    """``origin compose exp(delta)`` in stored form (``delta``'s dtype)."""
    from fglang.compiler.lie_jax import retract as lie_retract

    return lie_retract(kind, origin, delta).astype(delta.dtype)


def slot_kinds(fp: FamilyPlan, plan: Plan) -> tuple[str | None, ...]:
    """The group of each slot's var (None for a real var)."""
    return tuple(plan.variables[sp.var].group for sp in fp.slots)


def has_group_slot(fp: FamilyPlan, plan: Plan) -> bool:
    return any(k is not None for k in slot_kinds(fp, plan))


def charted(residual: Callable[..., Any], kinds: Sequence[str | None]) -> Callable[..., Any]:
    """``residual(inputs, *stored values)`` as a function of the tangent steps:
    ``f((inputs, origins), *deltas)``, a group slot's value being ``origin
    compose exp(delta)`` and a real slot's ``delta`` itself."""
    kinds = tuple(kinds)

    def f(inputs: Any, *deltas: Array) -> Any:
        inner, origins = inputs
        xs = [d if k is None else retract(k, o, d) for k, o, d in zip(kinds, origins, deltas, strict=True)]
        return residual(inner, *xs)

    return f


def slot_origins(fp: FamilyPlan, plan: Plan, ids: Sequence[Any], origins: Sequence[Array]) -> tuple[Any, ...]:
    """Every group slot's chart origins in member order (None for a real slot)."""
    return tuple(
        None if plan.variables[sp.var].group is None else gather(origins[sp.var], ids[s], sp, plan.variables[sp.var])
        for s, sp in enumerate(fp.slots)
    )


def recenter(
    plan: Plan,
    data: EngineData,
    families: tuple[FamilyState, ...],
    b: Beliefs,
    mean: list[Array],
    lin: list[Array],
    origins: Sequence[Array],
) -> tuple[tuple[FamilyState, ...], Beliefs, list[Array], list[Array], list[Array]]:
    """Move every group node's chart to its linearization point (see the module doc).

    Returns the messages, beliefs and means carried to the new charts, the
    points (0 for every group node) and the new origins. Real vars pass
    through unchanged. ``families`` are in stored shape.
    """
    shift = [lin[v] if vp.group is not None else None for v, vp in enumerate(plan.variables)]
    new_fams = []
    for f, fp in enumerate(plan.families):
        fs = families[f]
        if fp.folded or not has_group_slot(fp, plan):
            new_fams.append(fs)
            continue
        etas = []
        for s, sp in enumerate(fp.slots):
            d = shift[sp.var]
            if d is None:
                etas.append(fs.eta[s])
                continue
            lam = by_member(fs.lam[s], fp.n_members, 2)
            step = gather(d, data.families[f].ids[s], sp, plan.variables[sp.var])
            eta = by_member(fs.eta[s], fp.n_members, 1) - jnp.einsum("mij,mj->mi", lam, step)
            etas.append(eta.reshape(fs.eta[s].shape))
        new_fams.append(FamilyState(tuple(etas), fs.lam))
    eta_b = tuple(e if d is None else e - jnp.einsum("nij,nj->ni", m, d)
                  for e, m, d in zip(b.eta, b.lam, shift, strict=True))
    mean = [m if d is None else m - d for m, d in zip(mean, shift, strict=True)]
    new_lin = [x if d is None else jnp.zeros_like(x) for x, d in zip(lin, shift, strict=True)]
    new_origins = [o if vp.group is None else _moved(vp.group, o, shift[v])
                   for v, (vp, o) in enumerate(zip(plan.variables, origins, strict=True))]
    return tuple(new_fams), Beliefs(eta_b, b.lam), mean, new_lin, new_origins


def _moved(kind: str, origin: Array, shift: Array) -> Array:
    """``origin compose exp(shift)`` where the shift is not zero: a node that stays keeps its
    origin bit for bit (a round trip through the group's form would add round-off every iteration)."""
    moved = retract(kind, origin, shift).astype(origin.dtype)
    still = jnp.all(shift == 0, axis=-1).reshape(shift.shape[:1] + (1,) * (origin.ndim - 1))
    return jnp.where(still, origin, moved)


def stored_means(plan: Plan, origins: Sequence[Any], means: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``means`` (tangent steps per node) with every group var's replaced by its
    stored value ``origin compose exp(mean)``."""
    out = dict(means)
    for vp, o in zip(plan.variables, origins, strict=True):
        if vp.group is not None:
            d = jnp.asarray(means[vp.name])
            out[vp.name] = np.asarray(_retract_jit(vp.group, jnp.asarray(o, d.dtype), d))
    return out


_retract_jit = jax.jit(retract, static_argnums=0)
