"""Factor-to-variable messages of one family, and the terms they are built from.

Every family is linearized with one ``vmap`` of ``jacfwd`` (`linearize_family`)
-- or, if its residual is affine, once per compiled chunk (`affine_terms`) --
and marginalized with batched algebra (`algebra.factor_messages`). Robust
losses and sparsity priors reweight its noise precision first
(`reweighted_precision`). A fixed unary factor sends no messages at all: it
is folded into the node priors (`fold_unary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from . import algebra
from .beliefs import accumulate, gather
from .charts import charted, has_group_slot, slot_kinds, slot_origins
from .plan import FamilyPlan, Plan, reading_shared
from .robust import robust_weight
from .sparsity import sparsity_precision
from .state import AffineTerms, Beliefs, EngineData, FamilyData, FamilyState

Array = jax.Array


def linearize_family(
    fp: FamilyPlan, plan: Plan, fd: FamilyData, lin: Any, origins: Sequence[Array] | None = None
) -> tuple[list[Array], Array, tuple[Array, ...]]:
    """The family's slot points ``x0`` (gathered from ``lin``), residuals and Jacobians there.

    A slot on a group var reads ``origin compose exp(delta)`` and is
    linearized in ``delta`` (`charts.charted`; ``origins``: every var's
    `state.VarState.origin`, needed when the family has such a slot)."""
    x0 = [gather(lin[sp.var], fd.ids[s], sp, plan.variables[sp.var]) for s, sp in enumerate(fp.slots)]
    residual = reading_shared(fp.residual, fd.shared)
    if has_group_slot(fp, plan):
        if origins is None:
            raise ValueError(f"family {fp.name!r} reads a group var: linearizing it needs the chart origins")
        residual = charted(residual, slot_kinds(fp, plan))
        inputs = (fd.inputs, slot_origins(fp, plan, fd.ids, origins))
        r0, jacs = algebra.linearize(residual, inputs, x0, batched_inputs=True)
        return x0, r0, tuple(jacs)
    r0, jacs = algebra.linearize(residual, fd.inputs, x0, batched_inputs=fp.batched_inputs)
    return x0, r0, tuple(jacs)


def per_member(x: Any, n_members: int) -> Any:
    """Arrays of per-member terms broadcast to ``n_members`` rows.

    Terms that are the same for every member (a scalar noise precision, the
    Jacobian of an affine residual without per-member data) are kept as one
    row and broadcast here, inside the iteration: XLA fuses the broadcast
    into the message kernels, which then read no memory for them.
    """
    return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n_members,) + a.shape[1:]), x)


def affine_terms(plan: Plan, data: EngineData, lin: Any) -> tuple[AffineTerms | None, ...]:
    """`AffineTerms` ``(J_s per slot, c)`` of every affine family (``r(x) = J x - c``), else None.

    Linearized once per compiled chunk at the current points: for an affine
    residual any point gives the same ``J`` and ``c = J x0 - r(x0)``. When the
    residual reads no per-member data every member has the same ``J`` and
    ``c``: one row, at the origin (see `per_member`).
    """
    out: list[AffineTerms | None] = []
    for fp, fd in zip(plan.families, data.families, strict=True):
        if not fp.affine:
            out.append(None)
            continue
        if fp.uniform:
            zeros = [jnp.zeros((1, sp.dim), data.settings.damping.dtype) for sp in fp.slots]
            res = reading_shared(fp.residual, fd.shared)
            inputs = fd.inputs
            if fp.batched_inputs:  # read by nothing that matters: any member's row will do
                inputs = jax.tree_util.tree_map(lambda a: a[:1], inputs)
            r0, jacs = algebra.linearize(res, inputs, zeros, batched_inputs=fp.batched_inputs)
            out.append(AffineTerms(tuple(jacs), -r0))
            continue
        x0, r0, jacs = linearize_family(fp, plan, fd, lin)
        jac = jnp.concatenate(jacs, axis=-1)
        out.append(AffineTerms(jacs, algebra.affine_target(jac, jnp.concatenate(x0, axis=-1), r0)))
    return tuple(out)


def _incoming(
    fp: FamilyPlan, plan: Plan, fd: FamilyData, b: Beliefs, old: FamilyState
) -> tuple[list[Array], list[Array]]:
    """Variable-to-factor messages per slot: the belief minus the family's own message."""
    in_eta, in_lam = [], []
    for s, sp in enumerate(fp.slots):
        vp = plan.variables[sp.var]
        in_eta.append(gather(b.eta[sp.var], fd.ids[s], sp, vp) - old.eta[s])
        in_lam.append(gather(b.lam[sp.var], fd.ids[s], sp, vp) - old.lam[s])
    return in_eta, in_lam


def _residual_terms(
    fp: FamilyPlan, plan: Plan, fd: FamilyData, lin: list[Array], origins: Sequence[Array] | None
) -> tuple[Any, Any, Any, tuple[Array, ...], Array]:
    """``(x0, r0, target, J per slot, J)`` of the family at the points ``lin``.

    An affine family has its constant Jacobians and target (`affine_terms`)
    and evaluates no residual; ``x0`` and ``r0`` are None unless a
    reweighting needs the residual. Otherwise ``target`` is None.
    """
    x0 = r0 = target = None
    if fp.affine:
        # Constant Jacobians and target (`affine_terms`): no residual evaluation.
        jacs, target = per_member(fd.affine, fp.n_members)
        jac = jnp.concatenate(jacs, axis=-1)
        if fp.robust is not None or fp.sparsity is not None:  # reweighting needs the residual
            x0 = [gather(lin[sp.var], fd.ids[s], sp, plan.variables[sp.var]) for s, sp in enumerate(fp.slots)]
            r0 = jnp.einsum("mrd,md->mr", jac, jnp.concatenate(x0, axis=-1)) - target
    else:
        x0, r0, jacs = linearize_family(fp, plan, fd, lin, origins)
        jac = jnp.concatenate(jacs, axis=-1)
    return x0, r0, target, jacs, jac


def reweighted_precision(
    fp: FamilyPlan, plan: Plan, data: EngineData, f: int, b: Beliefs, x0: Any, r0: Any, jac: Array
) -> Array:
    """The family's noise precision per member, with its sparsity and robust reweighting."""
    fd = data.families[f]
    if fp.sparsity is not None:
        # EM reweighting from the current belief of the element (own message
        # included: the belief is the posterior q(w) of the EM step).
        sp0 = fp.slots[0]
        vp0 = plan.variables[sp0.var]
        b_eta = gather(b.eta[sp0.var], fd.ids[0], sp0, vp0)
        b_lam = gather(b.lam[sp0.var], fd.ids[0], sp0, vp0)
        vfloor = data.variables[sp0.var].floor
        cov = algebra.spd_inv(b_lam, vfloor)
        mu = jnp.einsum("mij,mj->mi", cov, b_eta)
        er = r0 + jnp.einsum("mri,mi->mr", jac, mu - x0[0])
        vr = jnp.einsum("mri,mij,mrj->mr", jac, cov, jac)
        prec = sparsity_precision(fp.sparsity, fd.sparsity, er * er + jnp.maximum(vr, 0.0))
    else:
        prec = per_member(fd.precision, fp.n_members)
    if fp.robust is not None:
        w = robust_weight(fp.robust, fd.robust, algebra.whiten_sq(r0, prec), fp.res_dim)
        prec = prec * (w[:, None] if prec.ndim == 2 else w[:, None, None])
    return prec


def family_messages(
    fp: FamilyPlan,
    plan: Plan,
    f: int,
    data: EngineData,
    b: Beliefs,
    lin: list[Array],
    old: FamilyState,
    origins: Sequence[Array] | None = None,
) -> FamilyState:
    """New (undamped) messages from every member of family ``f`` to its slots.

    ``old`` is the family's current messages as ``[M, ...]`` (`plan.by_member`);
    so are the new ones. ``origins``: the vars' chart origins (`charts.py`).
    """
    fd = data.families[f]
    in_eta, in_lam = _incoming(fp, plan, fd, b, old)
    x0, r0, target, jacs, jac = _residual_terms(fp, plan, fd, lin, origins)
    prec = reweighted_precision(fp, plan, data, f, b, x0, r0, jac)
    msgs = algebra.factor_messages(jacs, prec, r0, x0, in_eta, in_lam, fd.floor, c=target)
    return FamilyState(tuple(m[0] for m in msgs), tuple(m[1] for m in msgs))


def fold_unary(plan: Plan, data: EngineData) -> EngineData:
    """Add every folded family's information form to its var's prior (once per chunk)."""
    folded = tuple(f for f, fp in enumerate(plan.families) if fp.folded)
    if not folded:
        return data
    sent = []
    for f in folded:
        m_f = plan.families[f].n_members
        jacs, target = per_member(data.families[f].affine, m_f)
        prec = per_member(data.families[f].precision, m_f)
        e, m = algebra.information_from_target(jacs[0], prec, target)
        sent.append((f, FamilyState((e,), (m,))))
    priors = Beliefs(tuple(vd.prior_eta for vd in data.variables), tuple(vd.prior_lam for vd in data.variables))
    priors = accumulate(plan, data, sent, priors)
    variables = tuple(
        vd._replace(prior_eta=e, prior_lam=m)
        for vd, e, m in zip(data.variables, priors.eta, priors.lam, strict=True)
    )
    return data._replace(variables=variables)

