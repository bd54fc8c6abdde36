"""Group-valued vars (``pose3``, ...) in the least-squares path: linearize in
the tangent space at the current estimate, update by ``x <- x compose exp(delta)``.

Why: a quaternion or an angle is not a vector space. Adding a step to the
stored numbers would leave the group (a quaternion of norm != 1) and make
the Gauss-Newton system rank deficient (7 numbers for 6 degrees of
freedom); GTSAM, Ceres' manifolds and jaxls all solve for a tangent
``delta`` instead. So the estimate ``x`` keeps every var's storage
(``Layout``, 7 numbers per pose3 node) while the solver's unknowns are the
tangent ``delta`` (``tangent_layout``, 6 per node); a real var's tangent is
itself and its retraction plain addition, so a model without groups runs
exactly as before. Each residual block is differentiated with respect to
its members' ``delta`` at 0 (``member_retraction``), and the step is applied
by one jitted ``retract`` over all nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fglang.compiler.bind import BoundFamily, BoundModel
from fglang.compiler.groups import GROUPS


def tangent_dim(v) -> int:
    """Unknowns per node of a var in the solver (its tangent dimension)."""
    g = GROUPS.get(v.domain.kind)
    return g.tangent if g is not None else v.node_dim


def is_group(v) -> bool:
    return v.domain.kind in GROUPS


def has_groups(bm: BoundModel) -> bool:
    return any(is_group(v) for v in bm.variables.values())


class Segment(NamedTuple):
    """One run of a flat vector that belongs to one var (or one slot block)."""

    kind: str | None  # the group, None for a real var
    nodes: int
    storage: tuple[int, ...]  # per node
    tangent: int  # per node


def _apply(segments: tuple[Segment, ...], x, d):
    """``x compose exp(d)`` run by run: storage ``x`` and tangent ``d``, both flat."""
    from fglang.compiler.lie_jax import retract

    out, a, b = [], 0, 0
    for s in segments:
        ns = s.nodes * int(np.prod(s.storage, dtype=np.int64))
        nt = s.nodes * s.tangent
        xs, ds = x[a : a + ns], d[b : b + nt]
        if s.kind is None:
            out.append(xs + ds)
        else:
            new = retract(s.kind, xs.reshape((s.nodes,) + s.storage), ds.reshape(s.nodes, s.tangent))
            out.append(new.reshape(-1).astype(x.dtype))
        a, b = a + ns, b + nt
    return jnp.concatenate(out) if out else x


def _segments_of(bm: BoundModel) -> tuple[Segment, ...]:
    out = []
    for v in bm.variables.values():
        g = GROUPS.get(v.domain.kind)
        out.append(Segment(g.name if g else None, v.n_nodes, g.storage if g else (v.node_dim,), tangent_dim(v)))
    return tuple(out)


# per model shape: the jitted whole-vector retraction
_RETRACT: dict[tuple, Callable] = {}


def retraction(bm: BoundModel) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``retract(x, dx)`` over every var: storage ``x``, tangent step ``dx``."""
    segs = _segments_of(bm)
    if not any(s.kind for s in segs):
        return lambda x, dx: x + dx
    if segs not in _RETRACT:
        if len(_RETRACT) > 64:
            _RETRACT.clear()
        _RETRACT[segs] = jax.jit(lambda x, d: _apply(segs, x, d))
    f = _RETRACT[segs]

    def retract(x: np.ndarray, dx: np.ndarray) -> np.ndarray:
        return np.asarray(f(jnp.asarray(x), jnp.asarray(dx)), np.float64)

    return retract


def member_retraction(fam: BoundFamily, bm: BoundModel) -> tuple[Segment, ...] | None:
    """The runs of one member's unknowns (slot by slot), or None when all are real."""
    segs = []
    for s in fam.slots:
        v = bm.variables[s.var]
        g = GROUPS.get(v.domain.kind)
        nodes = int(np.prod(s.block_shape, dtype=np.int64))
        segs.append(Segment(g.name if g else None, nodes, g.storage if g else (v.node_dim,), tangent_dim(v)))
    return tuple(segs) if any(s.kind for s in segs) else None


def retract_member(segments: tuple[Segment, ...]) -> Callable:
    return lambda x, d: _apply(segments, x, d)


def identity(v) -> np.ndarray:
    """The group's identity as storage, for every node (where a fit starts without init)."""
    g = GROUPS[v.domain.kind]
    one = np.zeros(g.storage)
    if g.name == "rot3":
        one[3] = 1.0
    elif g.name == "pose3":
        one[6] = 1.0
    return np.broadcast_to(one, v.shape).copy()


def normalized(v, x: np.ndarray) -> np.ndarray:
    """Storage with unit quaternions (an init read from a file carries rounding)."""
    g = GROUPS.get(v.domain.kind)
    if g is None or g.name not in ("rot3", "pose3"):
        return x
    x = np.array(x, np.float64).reshape(v.shape)
    q = x[..., -4:]
    x[..., -4:] = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return x


def tangent_draws(kind: str, mean: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """``mean compose exp(eps)``: draws of a group var from its tangent Gaussian."""
    from fglang.compiler.lie_jax import retract_jit

    return np.asarray(retract_jit(kind, jnp.asarray(mean), jnp.asarray(eps)), np.float64)
