"""Node arrays <-> slot arrays: gathers, scatter-adds and the beliefs.

A slot reads node values (beliefs, linearization points) in member order with
`gather` and adds member values onto nodes with `accumulate`. A grid slot (a
``grid_slice``, `plan.SlotPlan.grid`) does both with static slices and zero
padding, which XLA fuses, instead of index gathers and segment sums. The
beliefs are the priors plus every family's messages (`beliefs`), computed
once per iteration into memory (`materialize`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from .graph import grid_slice_shape
from .plan import Plan, SlotPlan, VarPlan, by_member
from .state import Beliefs, EngineData, EngineState, FamilyState

Array = jax.Array


def gather(arr: Array, ids: Array | None, slot: SlotPlan, vp: VarPlan) -> Array:
    """Values of ``arr`` ([n, ...]) at the slot's nodes, member order ([M, ...])."""
    if slot.grid is None:
        return jnp.take(arr, ids, axis=0)
    tail = arr.shape[1:]
    grid = slot.grid
    out = jax.lax.slice(
        arr.reshape(vp.grid_shape + tail),
        [a for a, _, _ in grid] + [0] * len(tail),
        [b for _, b, _ in grid] + list(tail),
        [c for _, _, c in grid] + [1] * len(tail),
    )
    return out.reshape((-1,) + tail)


def scatter_grid(msg: Array, slot: SlotPlan, vp: VarPlan) -> Array:
    """Member values placed on the var's nodes ([n, ...]) by zero padding."""
    tail = msg.shape[1:]
    shape = grid_slice_shape(slot.grid)  # type: ignore[arg-type]
    m = msg.reshape(shape + tail)
    cfg = [(a, n - b, c - 1) for (a, b, c), n in zip(slot.grid, vp.grid_shape, strict=True)]  # type: ignore[union-attr]
    cfg += [(0, 0, 0)] * len(tail)
    return jax.lax.pad(m, jnp.zeros((), msg.dtype), cfg).reshape((vp.n,) + tail)


def accumulate(
    plan: Plan,
    data: EngineData,
    sent: Sequence[tuple[int, FamilyState]],
    base: Beliefs,
) -> Beliefs:
    """Add per-slot member arrays onto node arrays (beliefs or belief deltas).

    ``sent`` holds ``(family index, its per-slot arrays)`` in schedule order;
    the arrays may be in stored or ``[M, ...]`` shape. All non-grid slots of
    one var are concatenated into a single segment-sum (one scatter kernel per
    var instead of one per slot); grid slots are padded into place (the
    iteration materializes the sum once, `materialize`).
    """
    out_eta = list(base.eta)
    out_lam = list(base.lam)
    for v, vp in enumerate(plan.variables):
        seg_ids, seg_eta, seg_lam = [], [], []
        for f, msgs in sent:
            fp = plan.families[f]
            for s, sp in enumerate(fp.slots):
                if sp.var != v:
                    continue
                e = by_member(msgs.eta[s], fp.n_members, 1)
                m = by_member(msgs.lam[s], fp.n_members, 2)
                if sp.grid is None:
                    seg_ids.append(data.families[f].ids[s])
                    seg_eta.append(e)
                    seg_lam.append(m)
                else:
                    # Zero-padded blocks: XLA fuses the pads into the sum.
                    out_eta[v] = out_eta[v] + scatter_grid(e, sp, vp)
                    out_lam[v] = out_lam[v] + scatter_grid(m, sp, vp)
        if seg_ids:
            i = jnp.concatenate(seg_ids)
            out_eta[v] = out_eta[v] + jax.ops.segment_sum(
                jnp.concatenate(seg_eta), i, num_segments=vp.n
            )
            out_lam[v] = out_lam[v] + jax.ops.segment_sum(
                jnp.concatenate(seg_lam), i, num_segments=vp.n
            )
    return Beliefs(tuple(out_eta), tuple(out_lam))


def materialize(plan: Plan, it: Array, beliefs: Beliefs) -> Beliefs:
    """The beliefs, computed once into memory in each var's grid shape.

    XLA treats the belief sum as cheap and re-computes it inside every kernel
    that reads a belief (each message kernel then re-reads every incoming
    message array), and XLA:CPU drops `lax.optimization_barrier` before fusion.
    A conditional's operands are always materialized, so the beliefs go
    through one whose branch is always taken. In grid shape, the kernel that
    sums the shifted message blocks loops over the grid's axes (vectorized)
    rather than over a flat node index.
    """
    grid = [vp.grid_shape if len(vp.grid_shape) > 1 else (vp.n,) for vp in plan.variables]
    eb = tuple(e.reshape(g + e.shape[1:]) for e, g in zip(beliefs.eta, grid, strict=True))
    lb = tuple(m.reshape(g + m.shape[1:]) for m, g in zip(beliefs.lam, grid, strict=True))
    eb, lb = jax.lax.cond(
        it >= 0, lambda: (eb, lb), lambda: jax.tree_util.tree_map(jnp.zeros_like, (eb, lb))
    )
    return Beliefs(
        tuple(e.reshape(o.shape) for e, o in zip(eb, beliefs.eta, strict=True)),
        tuple(m.reshape(o.shape) for m, o in zip(lb, beliefs.lam, strict=True)),
    )


def centers(plan: Plan, st: EngineState) -> list[Array]:
    """Where each var's flat-prior stand-in is centred: its linearization point,
    or for an affine-only var its previous mean (the same point that
    re-linearizing every iteration would give, without storing it twice)."""
    return [vs.mean if vp.affine_only else vs.lin for vp, vs in zip(plan.variables, st.variables, strict=True)]


def beliefs(plan: Plan, data: EngineData, messages: Sequence[FamilyState], lin: Sequence[Array]) -> Beliefs:
    """Beliefs = priors (flat-prior stand-in centred at ``lin``; folded families
    included, see `messages.fold_unary`) + the messages of every other family."""
    base_eta = tuple(vd.prior_eta + vd.reg * x for vd, x in zip(data.variables, lin, strict=True))
    sent = [(f, messages[f]) for f, fp in enumerate(plan.families) if not fp.folded]
    return accumulate(plan, data, sent, Beliefs(base_eta, tuple(vd.prior_lam for vd in data.variables)))
