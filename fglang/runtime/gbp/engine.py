"""The GBP engine: loopy Gaussian belief propagation over a `GaussianGraph`.

Design (why it looks like this):

* **Messages are dense arrays per family and slot**: factor-to-variable
  messages ``eta [M, d]``, ``lam [M, d, d]``. Variable-to-factor messages are not
  stored: they are ``belief - own message`` (the standard GBP identity), which
  costs one gather per slot instead of a second message set.
* **One iteration is one pure, jitted function of arrays.** Beliefs are a
  segment-sum of messages (or, for slots with a ``grid_slice``, a zero-padded
  add of a static slice, which XLA fuses); every family is linearized with one
  ``vmap`` of ``jacfwd`` and marginalized with batched algebra
  (`algebra.schur_messages`, or the Sherman-Morrison `algebra.rank1_messages`
  for scalar residuals). The only Python loops run at trace time over the
  (few) families and slots.
* **The loop runs on the device in chunks**: a ``lax.while_loop`` of at most
  ``chunk_size`` iterations stops early on convergence or divergence; Python
  sees the state only between chunks (for the progress callback). The chunk is
  compiled once per graph *structure* (shapes, residual functions, options
  that change the traced program) and reused for new data of the same shapes.
* **Divergence is detected inside the loop, and checked where it happens**:
  chunks run unchecked (only the beliefs' finiteness and the belief change are
  watched, which costs no pass over the message arrays); a chunk that ends in
  non-finite beliefs, non-finite messages or a belief change that stays far
  above its running minimum is replayed from its start with every family's new
  messages checked in every iteration. The checked replay never commits a
  non-finite update, so the returned beliefs are the last finite ones and the
  report names the iteration and family (`_Plan.checked`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import algebra
from .affine import is_affine, reads_consts
from .graph import (
    GaussianFamily,
    GaussianGraph,
    grid_slice_shape,
    normalize_grid_slice,
)
from .robust import robust_weight
from .sparsity import sparsity_precision

Array = jax.Array

DEFAULT_FLAT_REG = 1e-10
"""Relative precision of the stand-in for a flat prior.

A var without a prior gets ``N(x_lin, 1/(DEFAULT_FLAT_REG * scale))`` per node,
where ``scale`` is the mean diagonal of the factor information touching the var
at the initial linearization and ``x_lin`` the node's current linearization
point. This keeps every belief proper (invertible), so a node no factor
constrains still has a mean. Because it is re-centred on the linearization
point (a Levenberg-Marquardt-style proximal term, not a fixed prior) it exerts
no force at a fixed point, where ``x_lin`` equals the mean: the optimum is not
biased, which matters for badly conditioned graphs (a fixed N(init, .) prior
of relative precision 1e-8 moved a 129-pose graph's optimum by 3e-5). At
iteration 0 the beliefs are then exactly ``init``, where a nonlinear model must
first be linearized. It does add ``reg`` to every belief precision, which
changes a covariance ``Sigma`` by about ``reg * Sigma^2``: 1e-10 keeps that
below 1e-6 relative for condition numbers up to ~1e4 of the node's marginal.
In float32 it is below round-off of the sums and acts only as a floor.
"""

STATUS_RUNNING = 0
STATUS_CONVERGED = 1
STATUS_NONFINITE_MESSAGES = 2
STATUS_NONFINITE_BELIEFS = 3
STATUS_GROWING = 4

_ADVICE = (
    "Try more damping (e.g. damping=0.5 -> 0.9), a finer relinearize_threshold, "
    "float64, or check the model's scales (standard deviations far from the "
    "data's units make the information matrices badly conditioned). Loopy GBP "
    "can diverge on graphs that are not walk-summable even with exact algebra."
)


# ---------------------------------------------------------------------------
# Public result types


@dataclass(frozen=True)
class DivergenceInfo:
    """Why and where a run stopped without converging.

    ``reason`` is ``"nonfinite_messages"`` (a family produced NaN/inf messages),
    ``"nonfinite_beliefs"`` (a belief could not be formed) or ``"growing"`` (the
    belief change stayed ``divergence_ratio`` x above its minimum for
    ``divergence_patience`` iterations). ``family`` is the first culprit in
    schedule order (for ``"growing"``: the family whose messages changed most),
    ``families`` all flagged ones; ``iteration`` is the 0-based iteration whose
    update was rejected.
    """

    reason: str
    iteration: int
    family: str | None
    families: tuple[str, ...]
    variables: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class GbpResult:
    """Per-node Gaussian marginals and the run's convergence record.

    ``means[name]``: ``[n_nodes, dim]``; ``covs[name]``: ``[n_nodes, dim, dim]``
    (inverse of the belief precision); ``beliefs[name]``: the belief's
    information form ``(eta [n, dim], lam [n, dim, dim])``. ``history[t]`` is
    ``max |mean_t - mean_{t-1}|`` over all nodes (``inf`` at t = 0).
    """

    means: dict[str, Array]
    covs: dict[str, Array]
    beliefs: dict[str, tuple[Array, Array]]
    iterations: int
    converged: bool
    history: np.ndarray
    diverged: DivergenceInfo | None = None
    wall_time_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def as_prior(self) -> dict[str, tuple[Array, Array]]:
        """The posterior beliefs as a ``prior=`` for a later `run_gbp`.

        This is GBP Learning's continual-learning step (Nabarro et al. 2024,
        Sec. 3.2): the marginal posterior of one fit becomes the unary prior of
        the next.
        """
        return dict(self.beliefs)


# ---------------------------------------------------------------------------
# Static plan (hashable: the jit cache key)


@dataclass(frozen=True)
class _SlotPlan:
    var: int
    dim: int
    grid: tuple[tuple[int, int, int], ...] | None


def _stored_shape(sp: _SlotPlan, n_members: int, tail: tuple[int, ...]) -> tuple[int, ...]:
    """Shape a slot's messages are kept in between iterations.

    A grid slot keeps its block's shape (``[H, W-1, d]`` for ``x[i, j+1]``), not
    the flat member axis: XLA:CPU loops over a fusion's output shape, and with
    the block shape every read of a shifted belief slice is contiguous along the
    last grid axis (vectorized) instead of a div/mod of a flat member index per
    element.
    """
    return (grid_slice_shape(sp.grid) if sp.grid is not None else (n_members,)) + tail


def _flat(msg: Array, n_members: int, tail_ndim: int) -> Array:
    """A stored message array as ``[M, *tail]`` (a free reshape)."""
    return msg.reshape((n_members,) + msg.shape[msg.ndim - tail_ndim :])


@dataclass(frozen=True)
class _FamilyPlan:
    name: str
    n_members: int
    slots: tuple[_SlotPlan, ...]
    residual: Callable[..., Any]
    res_dim: int
    full_precision: bool
    robust: str | None
    sparsity: str | None
    batched_inputs: bool
    affine: bool = False
    uniform: bool = False
    """Affine with the same Jacobian and target for every member (its residual
    reads no per-member data): `_affine_terms` keeps them as one row."""

    @property
    def folded(self) -> bool:
        """A fixed unary factor (affine, one slot, no reweighting): its message is
        its own information form, constant for the whole run, so it is added to
        the node priors once (`_fold_unary`) instead of being sent every iteration."""
        return self.affine and len(self.slots) == 1 and self.robust is None and self.sparsity is None


@dataclass(frozen=True)
class _VarPlan:
    name: str
    n: int
    dim: int
    grid_shape: tuple[int, ...]
    affine_only: bool = False
    """Every family touching it is affine: where it is linearized does not
    matter, so the engine keeps no re-linearization bookkeeping for it."""


@dataclass(frozen=True)
class _Plan:
    variables: tuple[_VarPlan, ...]
    families: tuple[_FamilyPlan, ...]
    sequential: bool
    use_dropout: bool
    chunk: int
    conv_patience: int
    checked: bool = True
    """Check every family's new messages (finiteness, change) in every
    iteration and commit it only if they pass. `run_gbp` runs chunks unchecked:
    that skips a reduction and a select per message array per iteration (on a
    grid, half the iteration's kernels). A non-finite message still shows up
    in the beliefs one iteration later (an infinite precision with a finite
    eta only two, once damping turns it into NaN), or at the latest in the
    finiteness pass over the chunk's last messages; `run_gbp` then replays
    that chunk checked from its start, which stops before the bad update and
    names the family."""


# ---------------------------------------------------------------------------
# Gather / scatter of node arrays


def _gather(arr: Array, ids: Array | None, slot: _SlotPlan, vp: _VarPlan) -> Array:
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


def _scatter_grid(msg: Array, slot: _SlotPlan, vp: _VarPlan) -> Array:
    """Member values placed on the var's nodes ([n, ...]) by zero padding."""
    tail = msg.shape[1:]
    shape = grid_slice_shape(slot.grid)  # type: ignore[arg-type]
    m = msg.reshape(shape + tail)
    cfg = [(a, n - b, c - 1) for (a, b, c), n in zip(slot.grid, vp.grid_shape, strict=True)]  # type: ignore[union-attr]
    cfg += [(0, 0, 0)] * len(tail)
    return jax.lax.pad(m, jnp.zeros((), msg.dtype), cfg).reshape((vp.n,) + tail)


def _accumulate(
    plan: _Plan,
    ids: tuple[tuple[Array | None, ...], ...],
    eta: tuple[tuple[Array, ...], ...],
    lam: tuple[tuple[Array, ...], ...],
    base_eta: list[Array],
    base_lam: list[Array],
    families: tuple[int, ...] | None = None,
) -> tuple[list[Array], list[Array]]:
    """Add per-slot member arrays onto node arrays (beliefs or belief deltas).

    All non-grid slots of one var are concatenated into a single segment-sum
    (one scatter kernel per var instead of one per slot); grid slots are padded
    into place (the iteration materializes the sum once, `_materialize`).
    """
    out_eta = list(base_eta)
    out_lam = list(base_lam)
    fams = range(len(plan.families)) if families is None else families
    for v, vp in enumerate(plan.variables):
        seg_ids, seg_eta, seg_lam = [], [], []
        for f in fams:
            fp = plan.families[f]
            for s, sp in enumerate(fp.slots):
                if sp.var != v:
                    continue
                e = _flat(eta[f][s], fp.n_members, 1)
                m = _flat(lam[f][s], fp.n_members, 2)
                if sp.grid is None:
                    seg_ids.append(ids[f][s])
                    seg_eta.append(e)
                    seg_lam.append(m)
                else:
                    # Zero-padded blocks: XLA fuses the pads into the sum.
                    out_eta[v] = out_eta[v] + _scatter_grid(e, sp, vp)
                    out_lam[v] = out_lam[v] + _scatter_grid(m, sp, vp)
        if seg_ids:
            i = jnp.concatenate(seg_ids)
            out_eta[v] = out_eta[v] + jax.ops.segment_sum(
                jnp.concatenate(seg_eta), i, num_segments=vp.n
            )
            out_lam[v] = out_lam[v] + jax.ops.segment_sum(
                jnp.concatenate(seg_lam), i, num_segments=vp.n
            )
    return out_eta, out_lam


def _materialize(
    plan: _Plan, it: Array, eta_b: list[Array], lam_b: list[Array]
) -> tuple[list[Array], list[Array]]:
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
    eb = tuple(e.reshape(g + e.shape[1:]) for e, g in zip(eta_b, grid, strict=True))
    lb = tuple(m.reshape(g + m.shape[1:]) for m, g in zip(lam_b, grid, strict=True))
    eb, lb = jax.lax.cond(
        it >= 0, lambda: (eb, lb), lambda: jax.tree_util.tree_map(jnp.zeros_like, (eb, lb))
    )
    return ([e.reshape(o.shape) for e, o in zip(eb, eta_b, strict=True)],
            [m.reshape(o.shape) for m, o in zip(lb, lam_b, strict=True)])


def _centers(plan: _Plan, st: dict[str, Any]) -> list[Array]:
    """Where each var's flat-prior stand-in is centred: its linearization point,
    or for an affine-only var its previous mean (the same point that
    re-linearizing every iteration would give, without storing it twice)."""
    return [st["mean"][v] if vp.affine_only else st["lin"][v] for v, vp in enumerate(plan.variables)]


def _beliefs(
    plan: _Plan, data: dict[str, Any], msg_eta: Any, msg_lam: Any, lin: Any
) -> tuple[list[Array], list[Array]]:
    """Beliefs = priors (flat-prior stand-in centred at ``lin``; folded families
    included, see `_fold_unary`) + the messages of every other family."""
    base_eta = [e + r * x for e, r, x in zip(data["prior_eta"], data["reg"], lin, strict=True)]
    sent = tuple(f for f, fp in enumerate(plan.families) if not fp.folded)
    return _accumulate(plan, data["ids"], msg_eta, msg_lam, base_eta, list(data["prior_lam"]), sent)


# ---------------------------------------------------------------------------
# One family's factor-to-variable update


def _linearize_family(
    fp: _FamilyPlan, plan: _Plan, data: dict[str, Any], f: int, lin: Any
) -> tuple[list[Array], Array, tuple[Array, ...]]:
    """The family's slot points ``x0`` (gathered from ``lin``), residuals and Jacobians there."""
    ids = data["ids"][f]
    x0 = [_gather(lin[sp.var], ids[s], sp, plan.variables[sp.var]) for s, sp in enumerate(fp.slots)]
    residual = _reading_shared(fp.residual, data["shared"][f])
    r0, jacs = algebra.linearize(residual, data["inputs"][f], x0, batched_inputs=fp.batched_inputs)
    return x0, r0, tuple(jacs)


def _per_member(x: Any, n_members: int) -> Any:
    """Arrays of per-member terms broadcast to ``n_members`` rows.

    Terms that are the same for every member (a scalar noise precision, the
    Jacobian of an affine residual without per-member data) are kept as one
    row and broadcast here, inside the iteration: XLA fuses the broadcast
    into the message kernels, which then read no memory for them.
    """
    return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n_members,) + a.shape[1:]), x)


def _affine_terms(plan: _Plan, data: dict[str, Any], lin: Any) -> tuple[Any, ...]:
    """``(J_s per slot, c)`` of every affine family (``r(x) = J x - c``), else None.

    Linearized once per compiled chunk at the current points: for an affine
    residual any point gives the same ``J`` and ``c = J x0 - r(x0)``. When the
    residual reads no per-member data every member has the same ``J`` and
    ``c``: one row, at the origin (see `_per_member`).
    """
    out: list[Any] = []
    for f, fp in enumerate(plan.families):
        if not fp.affine:
            out.append(None)
            continue
        if fp.uniform:
            zeros = [jnp.zeros((1, sp.dim), data["damping"].dtype) for sp in fp.slots]
            res = _reading_shared(fp.residual, data["shared"][f])
            inputs = data["inputs"][f]
            if fp.batched_inputs:  # read by nothing that matters: any member's row will do
                inputs = jax.tree_util.tree_map(lambda a: a[:1], inputs)
            r0, jacs = algebra.linearize(res, inputs, zeros, batched_inputs=fp.batched_inputs)
            out.append((tuple(jacs), -r0))
            continue
        x0, r0, jacs = _linearize_family(fp, plan, data, f, lin)
        jac = jnp.concatenate(jacs, axis=-1)
        out.append((jacs, algebra.affine_target(jac, jnp.concatenate(x0, axis=-1), r0)))
    return tuple(out)


def _family_messages(
    fp: _FamilyPlan,
    plan: _Plan,
    f: int,
    data: dict[str, Any],
    eta_b: list[Array],
    lam_b: list[Array],
    lin: list[Array],
    old_eta: tuple[Array, ...],
    old_lam: tuple[Array, ...],
) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
    """New (undamped) messages from every member of family ``f`` to its slots."""
    ids = data["ids"][f]
    floor = data["fam_floor"][f]
    in_eta, in_lam = [], []
    for s, sp in enumerate(fp.slots):
        vp = plan.variables[sp.var]
        in_eta.append(_gather(eta_b[sp.var], ids[s], sp, vp) - old_eta[s])
        in_lam.append(_gather(lam_b[sp.var], ids[s], sp, vp) - old_lam[s])
    x0 = r0 = target = None
    if fp.affine:
        # Constant Jacobians and target (`_affine_terms`): no residual evaluation.
        jacs, target = _per_member(data["affine"][f], fp.n_members)
        jac = jnp.concatenate(jacs, axis=-1)
        if fp.robust is not None or fp.sparsity is not None:  # reweighting needs the residual
            x0 = [_gather(lin[sp.var], ids[s], sp, plan.variables[sp.var]) for s, sp in enumerate(fp.slots)]
            r0 = jnp.einsum("mrd,md->mr", jac, jnp.concatenate(x0, axis=-1)) - target
    else:
        x0, r0, jacs = _linearize_family(fp, plan, data, f, lin)
        jac = jnp.concatenate(jacs, axis=-1)
    if fp.sparsity is not None:
        # EM reweighting from the current belief of the element (own message
        # included: the belief is the posterior q(w) of the EM step).
        sp0 = fp.slots[0]
        vp0 = plan.variables[sp0.var]
        b_eta = _gather(eta_b[sp0.var], ids[0], sp0, vp0)
        b_lam = _gather(lam_b[sp0.var], ids[0], sp0, vp0)
        vfloor = data["floor"][sp0.var]
        cov = algebra.spd_inv(b_lam, vfloor)
        mu = jnp.einsum("mij,mj->mi", cov, b_eta)
        er = r0 + jnp.einsum("mri,mi->mr", jac, mu - x0[0])
        vr = jnp.einsum("mri,mij,mrj->mr", jac, cov, jac)
        prec = sparsity_precision(fp.sparsity, data["sparse"][f], er * er + jnp.maximum(vr, 0.0))
    else:
        prec = _per_member(data["prec"][f], fp.n_members)
    if fp.robust is not None:
        w = robust_weight(fp.robust, data["robust"][f], algebra.whiten_sq(r0, prec), fp.res_dim)
        prec = prec * (w[:, None] if prec.ndim == 2 else w[:, None, None])
    msgs = algebra.factor_messages(jacs, prec, r0, x0, in_eta, in_lam, floor, c=target)
    return tuple(m[0] for m in msgs), tuple(m[1] for m in msgs)


def _fold_unary(plan: _Plan, data: dict[str, Any]) -> dict[str, Any]:
    """Add every folded family's information form to its var's prior (once per chunk)."""
    folded = tuple(f for f, fp in enumerate(plan.families) if fp.folded)
    if not folded:
        return data
    eta: list[Any] = [None] * len(plan.families)
    lam: list[Any] = [None] * len(plan.families)
    for f in folded:
        m_f = plan.families[f].n_members
        jacs, target = _per_member(data["affine"][f], m_f)
        prec = _per_member(data["prec"][f], m_f)
        e, m = algebra.information_from_target(jacs[0], prec, target)
        eta[f], lam[f] = (e,), (m,)
    pe, pl = _accumulate(plan, data["ids"], eta, lam, list(data["prior_eta"]), list(data["prior_lam"]), folded)  # type: ignore[arg-type]
    return dict(data, prior_eta=tuple(pe), prior_lam=tuple(pl))


# ---------------------------------------------------------------------------
# The iteration


def _iteration(plan: _Plan, data: dict[str, Any], st: dict[str, Any]) -> tuple[dict[str, Any], Array]:
    """One GBP iteration: beliefs, convergence bookkeeping, message updates."""
    nv = len(plan.variables)
    nf = len(plan.families)
    it = st["it"]
    dtype = data["damping"].dtype
    eta_b, lam_b = _beliefs(plan, data, st["msg_eta"], st["msg_lam"], _centers(plan, st))
    eta_b, lam_b = _materialize(plan, it, eta_b, lam_b)
    mu = [algebra.info_to_moments(eta_b[v], lam_b[v], data["floor"][v]) for v in range(nv)]
    # Precisions must have settled too: early on, multi-node factors send almost
    # flat messages (their other slots are not yet informed), so the means can
    # sit still for an iteration while the beliefs are far from a fixed point.
    lam_diag = [jnp.diagonal(lam_b[v], axis1=-2, axis2=-1) for v in range(nv)]
    moved_l, rel_l = [], []
    for v in range(nv):
        # Both maxima in one variadic reduction, which XLA fuses with the
        # differences: one pass over the var's arrays and no temporaries.
        m, r = jax.lax.reduce(
            (jnp.abs(mu[v] - st["mean"][v]), jnp.abs(lam_diag[v] - st["lam_diag"][v]) / jnp.abs(lam_diag[v])),
            (jnp.zeros((), dtype), jnp.zeros((), dtype)),  # both are >= 0; NaN propagates
            lambda a, b: (jnp.maximum(a[0], b[0]), jnp.maximum(a[1], b[1])),
            (0, 1),
        )
        moved_l.append(m)
        rel_l.append(r)
    moved = jnp.stack(moved_l)
    # The stored means are finite, so a var's largest change is finite exactly
    # when its new means are (max propagates NaN): no separate isfinite pass.
    var_ok = jnp.isfinite(moved)
    beliefs_ok = jnp.all(var_ok)
    delta = jnp.where(it == 0, jnp.inf, jnp.max(moved))
    tol = data["tol"]
    lam_change = jnp.max(jnp.stack(rel_l))

    # Re-linearize nodes whose mean moved more than the threshold since their
    # last linearization; once the beliefs have settled (delta < tol) every node
    # that moved more than tol is re-linearized, so convergence is only declared
    # at a fixed point of the *nonlinear* problem. Iteration 0 keeps `init`:
    # beliefs then hold no factor information yet.
    settled = (delta < tol) & (lam_change < data["lam_rtol"])
    lin, lin_out, stale = [], [], jnp.zeros((), bool)
    for v, vp in enumerate(plan.variables):
        if vp.affine_only:
            lin.append(mu[v])
            lin_out.append(st["lin"][v])
            continue
        move = jnp.max(jnp.abs(mu[v] - st["lin"][v]), axis=-1)
        relin = ((move > data["relin_thr"]) | (settled & (move > tol))) & (it > 0)
        relin = relin & jnp.all(jnp.isfinite(mu[v]), axis=-1)
        lin.append(jnp.where(relin[:, None], mu[v], st["lin"][v]))
        lin_out.append(lin[-1])
        stale = stale | jnp.any(move > tol)

    beta = jnp.where(it > 0, data["damping"], jnp.zeros((), dtype))
    if plan.use_dropout:
        # A key per iteration derived from (seed, iteration): no key in the state.
        fam_keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(data["seed"]), it), max(nf, 1))
    new_eta: list[tuple[Array, ...]] = []
    new_lam: list[tuple[Array, ...]] = []
    fam_ok, fam_change = [], []
    cur_eta, cur_lam = eta_b, lam_b
    for f, fp in enumerate(plan.families):
        if fp.folded:  # already in the priors; it has no messages (empty arrays)
            fam_ok.append(jnp.ones((), bool))
            fam_change.append(jnp.zeros((), dtype))
            new_eta.append(st["msg_eta"][f])
            new_lam.append(st["msg_lam"][f])
            continue
        old_e = tuple(_flat(x, fp.n_members, 1) for x in st["msg_eta"][f])
        old_l = tuple(_flat(x, fp.n_members, 2) for x in st["msg_lam"][f])
        e_new, l_new = _family_messages(fp, plan, f, data, cur_eta, cur_lam, lin, old_e, old_l)
        e_new = tuple((1 - beta) * e + beta * o for e, o in zip(e_new, old_e, strict=True))
        l_new = tuple((1 - beta) * m + beta * o for m, o in zip(l_new, old_l, strict=True))
        if plan.use_dropout:
            ks = jax.random.split(fam_keys[f], len(fp.slots))
            keep = [jax.random.bernoulli(k, data["dropout"], (fp.n_members,)) & (it > 0) for k in ks]
            e_new = tuple(jnp.where(k[:, None], o, e) for k, e, o in zip(keep, e_new, old_e, strict=True))
            l_new = tuple(
                jnp.where(k[:, None, None], o, m) for k, m, o in zip(keep, l_new, old_l, strict=True)
            )
        if plan.checked:
            # One pass per message array: max |new - old| is NaN/inf exactly when
            # the new message is (XLA's max propagates NaN), so it doubles as the
            # finiteness check.
            ce = jnp.max(jnp.stack([jnp.max(jnp.abs(e - o)) for e, o in zip(e_new, old_e, strict=True)]))
            cl = jnp.max(jnp.stack([jnp.max(jnp.abs(m - o)) for m, o in zip(l_new, old_l, strict=True)]))
            fam_ok.append(jnp.isfinite(ce) & jnp.isfinite(cl))
            fam_change.append(ce)
        else:
            fam_ok.append(jnp.ones((), bool))
            fam_change.append(jnp.zeros((), dtype))
        new_eta.append(tuple(e.reshape(o.shape) for e, o in zip(e_new, st["msg_eta"][f], strict=True)))
        new_lam.append(tuple(m.reshape(o.shape) for m, o in zip(l_new, st["msg_lam"][f], strict=True)))
        if plan.sequential:
            # Family-by-family schedule: the next family already sees these messages.
            d_eta = tuple(e - o for e, o in zip(e_new, old_e, strict=True))
            d_lam = tuple(m - o for m, o in zip(l_new, old_l, strict=True))
            de = [None] * nf
            dl = [None] * nf
            de[f], dl[f] = d_eta, d_lam
            cur_eta, cur_lam = _accumulate(plan, data["ids"], de, dl, cur_eta, cur_lam, families=(f,))  # type: ignore[arg-type]

    fam_ok_arr = jnp.stack(fam_ok) if nf else jnp.ones((0,), bool)
    msgs_ok = jnp.all(fam_ok_arr)
    change = jnp.stack(fam_change) if nf else jnp.zeros((0,), dtype)
    if plan.sequential and nf:
        # After the first bad family, later ones saw poisoned beliefs: blame the first.
        first_bad = jnp.argmin(fam_ok_arr)
        fam_ok_arr = jnp.where(msgs_ok, fam_ok_arr, jnp.arange(nf) != first_bad)

    conv_now = settled & ~stale & (it > 0)
    conv_count = jnp.where(conv_now, st["conv_count"] + 1, 0)
    finite_delta = jnp.isfinite(delta)
    # A forced re-linearization (settled but stale) legitimately makes the means
    # jump again: restart the growth detector's running minimum there.
    # The running minimum only counts iterations whose precisions have roughly
    # settled: before that, means can sit still merely because messages are
    # still nearly flat, and such a tiny early change would make any later
    # progress look like growth.
    track = finite_delta & (lam_change < 1e-2)
    min_delta = jnp.where(track, jnp.minimum(st["min_delta"], delta), st["min_delta"])
    min_delta = jnp.where(settled & stale, jnp.asarray(jnp.inf, dtype), min_delta)
    grow = jnp.where(finite_delta & (delta > data["div_ratio"] * min_delta), st["grow"] + 1, 0)

    status = jnp.where(
        ~beliefs_ok,
        STATUS_NONFINITE_BELIEFS,
        jnp.where(
            ~msgs_ok,
            STATUS_NONFINITE_MESSAGES,
            jnp.where(
                conv_count >= plan.conv_patience,
                STATUS_CONVERGED,
                jnp.where(grow >= data["div_patience"], STATUS_GROWING, STATUS_RUNNING),
            ),
        ),
    ).astype(jnp.int32)
    commit = beliefs_ok & msgs_ok
    if nf:
        blamed = jnp.where(
            status == STATUS_GROWING, jnp.arange(nf) == jnp.argmax(change), ~fam_ok_arr
        )
    else:
        blamed = jnp.zeros((0,), bool)

    def pick(new: Any, old: Any) -> Any:
        if not plan.checked:  # a failed unchecked chunk is replayed, not kept
            return new
        return jax.tree_util.tree_map(lambda a, b: jnp.where(commit, a, b), new, old)

    out = dict(
        msg_eta=pick(tuple(new_eta), st["msg_eta"]),
        msg_lam=pick(tuple(new_lam), st["msg_lam"]),
        lin=pick(tuple(lin_out), st["lin"]),
        mean=pick(tuple(mu), st["mean"]),
        lam_diag=pick(tuple(lam_diag), st["lam_diag"]),
        it=jnp.where(commit, it + 1, it),
        min_delta=min_delta,
        grow=grow,
        conv_count=conv_count,
        status=status,
        bad_fams=jnp.where(status >= STATUS_NONFINITE_MESSAGES, blamed, st["bad_fams"]),
        bad_vars=jnp.where(status == STATUS_NONFINITE_BELIEFS, ~var_ok, st["bad_vars"]),
    )
    return out, delta


def _run_chunk(
    plan: _Plan, data: dict[str, Any], state: dict[str, Any]
) -> tuple[dict[str, Any], Array, Array, list[Array], list[Array]]:
    """Up to ``plan.chunk`` iterations in a ``lax.while_loop`` (stops early).

    Also returns the beliefs of the final state, so that no second compiled
    function is needed to read the result out (compiles dominate small runs).
    """
    dtype = data["damping"].dtype
    hist0 = jnp.full((plan.chunk,), jnp.nan, dtype)
    data = dict(data, affine=_affine_terms(plan, data, state["lin"]))
    data = _fold_unary(plan, data)

    def cond(c: tuple[Array, dict[str, Any], Array]) -> Array:
        i, st, _ = c
        return (i < plan.chunk) & (st["status"] == STATUS_RUNNING) & (st["it"] < data["max_iters"])

    def body(c: tuple[Array, dict[str, Any], Array]) -> tuple[Array, dict[str, Any], Array]:
        i, st, h = c
        with algebra.sequential_lapack_solves():
            st, delta = _iteration(plan, data, st)
        return i + 1, st, h.at[i].set(delta)

    n, state, hist = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), state, hist0))
    if not plan.checked:
        # The last iteration's messages have not been through the beliefs yet:
        # one finiteness pass per chunk, so that a chunk never hands on (or
        # reads out) unchecked messages and a replay never has to reach back
        # into an earlier chunk.
        leaves = jax.tree_util.tree_leaves((state["msg_eta"], state["msg_lam"]))
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else True
        state = dict(state, status=jnp.where(finite, state["status"], STATUS_NONFINITE_MESSAGES))
    eta_b, lam_b = _beliefs(plan, data, state["msg_eta"], state["msg_lam"], _centers(plan, state))
    return state, hist, n, eta_b, lam_b


_run_chunk_jit = jax.jit(_run_chunk, static_argnums=0)


# ---------------------------------------------------------------------------
# Setup (NumPy only: every eager jnp op would compile a kernel of its own)


def _np_float(x: Any, dtype: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: expected numbers, got {type(x).__name__}") from e


def _as_inputs(inputs: Any, dtype: Any) -> Any:
    """Per-member data as NumPy arrays; floating leaves in the run's dtype."""

    def conv(a: Any) -> np.ndarray:
        a = np.asarray(a)
        if np.issubdtype(a.dtype, np.floating):
            return a.astype(dtype)
        if np.issubdtype(a.dtype, np.integer) and (a.size == 0 or np.abs(a).max() < 2**31):
            return a.astype(np.int32)  # what JAX would canonicalize to without x64
        return a

    return jax.tree_util.tree_map(conv, inputs)


def _precision_array(fam: GaussianFamily, m: int, r: int, dtype: Any) -> tuple[np.ndarray, bool]:
    p = _np_float(fam.precision, dtype, f"family {fam.name!r}: precision")
    if p.ndim == 0:
        p, full = np.broadcast_to(p, (1, r)), False
    elif p.shape == (m, r):
        full = False
    elif p.shape == (m, r, r):
        full = True
    else:
        raise ValueError(
            f"family {fam.name!r}: precision has shape {p.shape}; expected a scalar, "
            f"[M, R] = {(m, r)} (diagonal) or [M, R, R] = {(m, r, r)} (full)"
        )
    diag = np.diagonal(p, axis1=-2, axis2=-1) if full else p
    if not np.all(np.isfinite(p)) or np.any(diag < 0):
        raise ValueError(f"family {fam.name!r}: precision must be finite and non-negative")
    if full:
        # A noise information matrix must be symmetric PSD: an indefinite
        # "factor" is no Gaussian, and GBP on it can blow up at the first step.
        if not np.allclose(p, np.swapaxes(p, -1, -2), rtol=1e-6, atol=0.0):
            raise ValueError(f"family {fam.name!r}: full precision matrices must be symmetric")
        eig = np.linalg.eigvalsh(p.astype(np.float64))
        if np.any(eig[..., 0] < -1e-8 * np.maximum(np.abs(eig[..., -1]), 1e-300)):
            raise ValueError(f"family {fam.name!r}: full precision matrices must be positive semi-definite")
    if p.shape[0] > 1 and np.all(p == p[:1]):
        p = p[:1]  # one row for all members (see `_per_member`)
    return np.ascontiguousarray(p), full


def _with_shared(residual: Callable[..., Any], shared: Any, inputs: Any, *xs: Any) -> Any:
    """A residual that also reads unbatched ``shared`` data (see GaussianFamily.shared)."""
    return residual((inputs, shared), *xs)


def _reading_shared(residual: Callable[..., Any], shared: Any) -> Callable[..., Any]:
    """The family's residual as ``f(inputs, *xs)``, with its ``shared`` data bound if it has any."""
    return residual if shared is None else functools.partial(_with_shared, residual, shared)


def _residual_dim(
    fam: GaussianFamily, graph: GaussianGraph, inputs: Any, batched: bool, dtype: Any
) -> tuple[int, bool, bool]:
    """R of a family, whether its residual is affine and whether it is affine
    and the same for every member (`_FamilyPlan.uniform`), from one member's shapes."""
    xs = [jax.ShapeDtypeStruct((graph.var(s.var).dim,), dtype) for s in fam.slots]
    one = (
        jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), inputs)
        if batched
        else inputs
    )
    try:
        res = _reading_shared(fam.residual, fam.shared)
        out = jax.eval_shape(lambda i, *x: jnp.reshape(res(i, *x), (-1,)), one, *xs)
    except Exception as e:  # noqa: BLE001 - re-raised with the family's name
        raise ValueError(f"family {fam.name!r}: residual failed on one member's shapes: {e}") from e
    affine = is_affine(res, one, xs)
    return int(out.shape[0]), affine, affine and (not batched or not reads_consts(res, one, xs))


def _node_array(x: Any, n: int, d: int, what: str, dtype: Any) -> np.ndarray:
    a = _np_float(x, dtype, what)
    if a.size == n * d:
        return a.reshape(n, d)
    if a.size == d:
        return np.broadcast_to(a.reshape(1, d), (n, d)).copy()
    if a.size == 1:
        return np.full((n, d), a.reshape(()), dtype)
    raise ValueError(f"{what}: got shape {a.shape}; expected [{n}, {d}] (or broadcastable)")


def _prior_lam(x: Any, n: int, d: int, what: str, dtype: Any) -> np.ndarray:
    """Prior precisions as ``[n, d, d]``: from ``[n, d, d]``, ``[d, d]`` or diagonals."""
    a = _np_float(x, dtype, what)
    if a.shape == (n, d, d) or (a.shape == (d, d) and d > 1 and n != d):
        return np.broadcast_to(a, (n, d, d)).copy()
    diag = _node_array(a, n, d, what, dtype)
    return diag[:, :, None] * np.eye(d, dtype=dtype)


def _build(
    graph: GaussianGraph,
    *,
    dtype: Any,
    schedule: str,
    dropout: float,
    chunk: int,
) -> tuple[_Plan, dict[str, Any], list[float]]:
    """Validate the graph and split it into a hashable plan and NumPy data.

    Also returns a precision scale per var (the member-weighted mean of the
    diagonal precisions of the non-sparsity families touching it), which sets
    the flat-prior stand-in and the pivot floors relative to the model's units
    without compiling anything.
    """
    if schedule not in ("flooding", "sequential"):
        raise ValueError(f"schedule must be 'flooding' or 'sequential', got {schedule!r}")
    vplans = tuple(_VarPlan(v.name, v.n_nodes, v.dim, v.grid_shape) for v in graph.variables)
    scale_sum = np.zeros(len(vplans))
    scale_cnt = np.zeros(len(vplans))
    fplans = []
    ids_all, inputs_all, prec_all, robust_all, sparse_all, shared_all = [], [], [], [], [], []
    for fam in graph.families:
        slots, ids = [], []
        for s in fam.slots:
            block = graph.var(s.var)
            rs = s.resolve(block)
            n_ids = rs.node_ids.shape[0]  # type: ignore[union-attr]
            if n_ids != fam.n_members:
                raise ValueError(
                    f"family {fam.name!r}: slot on {s.var!r} has {n_ids} node ids "
                    f"for {fam.n_members} members"
                )
            grid = normalize_grid_slice(s.grid_slice, block.grid_shape) if s.grid_slice is not None else None
            slots.append(_SlotPlan(graph.var_index(s.var), block.dim, grid))
            ids.append(None if grid is not None else rs.node_ids)
        inputs = _as_inputs(fam.inputs, dtype)
        leaves = jax.tree_util.tree_leaves(inputs)
        batched = bool(leaves)
        for leaf in leaves:
            if leaf.ndim == 0 or leaf.shape[0] != fam.n_members:
                raise ValueError(
                    f"family {fam.name!r}: every inputs leaf needs leading axis "
                    f"{fam.n_members} (one row per member); got shape {leaf.shape}"
                )
        r, affine, uniform = _residual_dim(fam, graph, inputs, batched, dtype)
        full = False
        prec = None
        if fam.sparsity is None:
            prec, full = _precision_array(fam, fam.n_members, r, dtype)
            diag = np.diagonal(prec, axis1=-2, axis2=-1) if full else prec
            for sp in slots:
                scale_sum[sp.var] += float(np.sum(diag)) / r * (fam.n_members / diag.shape[0])
                scale_cnt[sp.var] += fam.n_members
        rob = None
        if fam.robust is not None:
            rob = np.broadcast_to(_np_float(fam.robust[1], dtype, f"family {fam.name!r}: robust"), (fam.n_members,))
            if np.any(rob <= 0):
                raise ValueError(f"family {fam.name!r}: robust parameter must be positive")
        sparse = None
        if fam.sparsity is not None:
            sparse = tuple(
                np.broadcast_to(_np_float(p, dtype, f"family {fam.name!r}: sparsity"), (fam.n_members, r))
                for p in fam.sparsity[1:]
            )
            if any(np.any(p <= 0) for p in sparse):
                raise ValueError(f"family {fam.name!r}: sparsity parameters must be positive")
        fplans.append(
            _FamilyPlan(
                fam.name,
                fam.n_members,
                tuple(slots),
                fam.residual,
                r,
                full,
                fam.robust[0] if fam.robust is not None else None,
                fam.sparsity[0] if fam.sparsity is not None else None,
                batched,
                affine,
                uniform,
            )
        )
        ids_all.append(tuple(ids))
        inputs_all.append(inputs if batched else None)
        shared_all.append(None if fam.shared is None else _as_inputs(fam.shared, dtype))
        prec_all.append(prec)
        robust_all.append(rob)
        sparse_all.append(sparse)
    nonaffine = {sp.var for fp in fplans if not fp.affine for sp in fp.slots}
    vplans = tuple(dataclasses.replace(vp, affine_only=v not in nonaffine) for v, vp in enumerate(vplans))
    plan = _Plan(
        vplans,
        tuple(fplans),
        schedule == "sequential",
        dropout > 0,
        int(chunk),
        1 if dropout == 0 else 10,
    )
    data = dict(
        ids=tuple(ids_all),
        inputs=tuple(inputs_all),
        shared=tuple(shared_all),
        prec=tuple(prec_all),
        robust=tuple(robust_all),
        sparse=tuple(sparse_all),
    )
    scales = [
        float(sm / ct) if ct > 0 and sm > 0 and np.isfinite(sm) else 1.0
        for sm, ct in zip(scale_sum, scale_cnt, strict=True)
    ]
    return plan, data, scales


# ---------------------------------------------------------------------------
# Public entry point


def run_gbp(
    graph: GaussianGraph,
    init: Mapping[str, Any] | None = None,
    *,
    prior: Mapping[str, tuple[Any, Any]] | None = None,
    iters: int = 1000,
    tol: float | None = None,
    damping: float = 0.0,
    schedule: str = "flooding",
    dropout: float = 0.0,
    relinearize_threshold: float = 0.0,
    precision_rtol: float | None = None,
    dtype: Any = jnp.float32,
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
    chunk_size: int = 20,
    flat_reg: float = DEFAULT_FLAT_REG,
    divergence_ratio: float = 1e3,
    divergence_patience: int = 50,
) -> GbpResult:
    """Run loopy Gaussian belief propagation on ``graph``.

    Parameters
    ----------
    init
        Initial node values per var (``[n_nodes, dim]`` or anything of that size);
        the first linearization point. Missing vars start at their prior mean
        (if ``prior`` has them) or 0.
    prior
        Per-node Gaussian priors ``{name: (eta [n, dim], lam [n, dim, dim] or
        [n, dim])}`` in information form, e.g. `GbpResult.as_prior` of an
        earlier fit (continual learning). Vars without one get the flat-prior
        stand-in (see `DEFAULT_FLAT_REG`).
    iters
        Maximum number of iterations.
    tol
        Stop when the largest absolute change of any belief mean between two
        iterations is below ``tol`` (default 1e-6 in float64, 1e-5 in float32)
        and no node has moved more than ``tol`` from its linearization point.
    damping
        ``beta`` in ``new = (1 - beta) new + beta old`` on the factor-to-variable
        messages' ``eta`` and ``lam`` (not applied at iteration 0, whose old
        messages are empty).
    schedule
        ``"flooding"`` (all families update from the same beliefs) or
        ``"sequential"`` (family by family, each seeing the previous families'
        new messages; members within a family update in parallel).
    dropout
        Probability that a member keeps its old message in an iteration (GBP
        Learning's message dropout). With dropout, convergence needs 10
        consecutive iterations below ``tol``.
    relinearize_threshold
        Re-linearize a node's factors at its current mean once the mean moved
        more than this (max-abs) since its last linearization; 0 re-linearizes
        every iteration. Once the beliefs settle, nodes further than ``tol``
        from their linearization point are re-linearized regardless, so the
        fixed point is that of the nonlinear problem.
    precision_rtol
        Convergence also needs the largest relative change of a belief
        precision's diagonal below this (default ``100 * tol``).
    dtype
        ``jnp.float32`` or ``jnp.float64`` (float64 runs under ``jax.enable_x64``
        if it is not globally on).
    seed
        Seed for message dropout.
    callback
        ``callback(iteration, belief_change)``, called from Python between
        chunks of ``chunk_size`` jitted iterations (for progress bars).
    chunk_size
        Iterations per compiled chunk (the callback's granularity).
    flat_reg
        Relative precision of the flat-prior stand-in (`DEFAULT_FLAT_REG`).
    divergence_ratio, divergence_patience
        Declare divergence when the belief change stays above
        ``divergence_ratio`` times its running minimum for
        ``divergence_patience`` consecutive iterations.
    """
    dt = np.dtype(dtype)
    if dt == np.float64 and not jax.config.jax_enable_x64:
        with jax.enable_x64(True):
            return run_gbp(
                graph, init, prior=prior, iters=iters, tol=tol, damping=damping,
                schedule=schedule, dropout=dropout,
                relinearize_threshold=relinearize_threshold, precision_rtol=precision_rtol,
                dtype=dtype, seed=seed,
                callback=callback, chunk_size=chunk_size, flat_reg=flat_reg,
                divergence_ratio=divergence_ratio, divergence_patience=divergence_patience,
            )
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    if not 0.0 <= damping < 1.0:
        raise ValueError(f"damping must be in [0, 1), got {damping}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if iters < 0 or chunk_size < 1:
        raise ValueError("iters must be >= 0 and chunk_size >= 1")
    if tol is None:
        tol = 1e-6 if dt == np.float64 else 1e-5
    t_start = time.perf_counter()
    plan, data, scales = _build(graph, dtype=dt, schedule=schedule, dropout=dropout, chunk=chunk_size)
    init = dict(init or {})
    prior = dict(prior or {})
    known = {v.name for v in graph.variables}
    for name in list(init) + list(prior):
        if name not in known:
            raise KeyError(f"no variable {name!r}; known: {sorted(known)}")

    lin0, prior_eta, prior_lam, floors, regs = [], [], [], [], []
    for v, vp in enumerate(plan.variables):
        if vp.name in prior:
            pe = _node_array(prior[vp.name][0], vp.n, vp.dim, f"prior eta of {vp.name!r}", dt)
            pl = _prior_lam(prior[vp.name][1], vp.n, vp.dim, f"prior lam of {vp.name!r}", dt)
            pscale = float(np.mean(np.diagonal(pl, axis1=-2, axis2=-1)))
            floor = flat_reg * (pscale if np.isfinite(pscale) and pscale > 0 else scales[v])
            reg = 0.0
        else:
            reg = floor = flat_reg * scales[v]
            pe = np.zeros((vp.n, vp.dim), dt)
            pl = np.broadcast_to(reg * np.eye(vp.dim, dtype=dt), (vp.n, vp.dim, vp.dim))
        if vp.name in init:
            x = _node_array(init[vp.name], vp.n, vp.dim, f"init of {vp.name!r}", dt)
        elif vp.name in prior:
            x = np.linalg.solve(pl + floor * np.eye(vp.dim), pe[..., None])[..., 0].astype(dt)
        else:
            x = np.zeros((vp.n, vp.dim), dt)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"init of {vp.name!r} is not finite")
        lin0.append(x)
        prior_eta.append(pe)
        prior_lam.append(pl)
        floors.append(floor)
        regs.append(reg)
    fam_floor = [min(floors[sp.var] for sp in fp.slots) for fp in plan.families]
    data.update(
        prior_eta=tuple(prior_eta),
        prior_lam=tuple(prior_lam),
        floor=tuple(np.asarray(f, dt) for f in floors),
        reg=tuple(np.asarray(r, dt) for r in regs),
        fam_floor=tuple(np.asarray(f, dt) for f in fam_floor),
        damping=np.asarray(damping, dt),
        dropout=np.asarray(dropout, dt),
        relin_thr=np.asarray(relinearize_threshold, dt),
        tol=np.asarray(tol, dt),
        lam_rtol=np.asarray(100.0 * tol if precision_rtol is None else precision_rtol, dt),
        div_ratio=np.asarray(divergence_ratio, dt),
        div_patience=np.asarray(divergence_patience, np.int32),
        max_iters=np.asarray(iters, np.int32),
        seed=np.asarray(seed % 2**31, np.int32),
    )
    nf = len(plan.families)
    state: dict[str, Any] = dict(
        # Folded families (`_FamilyPlan.folded`) send no messages: empty arrays,
        # so a large unary family costs no message memory.
        msg_eta=tuple(
            tuple(
                np.zeros((0, sp.dim) if fp.folded else _stored_shape(sp, fp.n_members, (sp.dim,)), dt)
                for sp in fp.slots
            )
            for fp in plan.families
        ),
        msg_lam=tuple(
            tuple(
                np.zeros((0, sp.dim, sp.dim) if fp.folded else _stored_shape(sp, fp.n_members, (sp.dim, sp.dim)), dt)
                for sp in fp.slots
            )
            for fp in plan.families
        ),
        lin=tuple(lin0),
        mean=tuple(lin0),
        lam_diag=tuple(np.ones((vp.n, vp.dim), dt) for vp in plan.variables),
        it=np.zeros((), np.int32),
        min_delta=np.asarray(np.inf, dt),
        grow=np.zeros((), np.int32),
        conv_count=np.zeros((), np.int32),
        status=np.zeros((), np.int32),
        bad_fams=np.zeros((nf,), bool),
        bad_vars=np.zeros((len(plan.variables),), bool),
    )
    data, state = jax.device_put((data, state))

    history: list[np.ndarray] = []
    fast = dataclasses.replace(plan, checked=False)
    while True:
        start = state
        state, hist, n, eta_b, lam_b = _run_chunk_jit(fast, data, start)
        if int(state["status"]) >= STATUS_NONFINITE_MESSAGES:
            # Replay checked: the same iterations, stopping before the first
            # bad update with the family to blame (compiled only when needed).
            state, hist, n, eta_b, lam_b = _run_chunk_jit(plan, data, start)
        n_i = int(n)
        h = np.asarray(hist)[:n_i]
        history.append(h)
        status = int(state["status"])
        it = int(state["it"])
        if callback is not None and n_i:
            finite = h[np.isfinite(h)]
            callback(it, float(finite[-1]) if finite.size else float("inf"))
        if status != STATUS_RUNNING or it >= iters or n_i == 0:
            break

    names = [vp.name for vp in plan.variables]
    means, covs, beliefs = {}, {}, {}
    for v, name in enumerate(names):
        e = np.asarray(eta_b[v])
        lam = np.asarray(lam_b[v])
        # 1 / lam for scalar nodes: numpy's batched inv costs ~100 ns a matrix
        if lam.shape[-1] == 1 and np.all(lam != 0):
            cov = 1.0 / lam
        else:
            cov = np.linalg.inv(lam)  # raises on a singular belief, as for vector nodes
        cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
        means[name] = np.einsum("nij,nj->ni", cov, e)
        covs[name] = cov
        beliefs[name] = (e, lam)
    diverged = None
    if status in (STATUS_NONFINITE_MESSAGES, STATUS_NONFINITE_BELIEFS, STATUS_GROWING):
        diverged = _divergence_info(plan, state, status)
    return GbpResult(
        means=means,
        covs=covs,
        beliefs=beliefs,
        iterations=it,
        converged=status == STATUS_CONVERGED,
        history=np.concatenate(history) if history else np.zeros((0,)),
        diverged=diverged,
        wall_time_s=time.perf_counter() - t_start,
        info=dict(schedule=schedule, damping=damping, dtype=str(dt), tol=tol, flat_reg_scale=scales),
    )


def _divergence_info(plan: _Plan, state: dict[str, Any], status: int) -> DivergenceInfo:
    it = int(state["it"])
    bad_f = np.asarray(state["bad_fams"])
    fams = tuple(fp.name for fp, b in zip(plan.families, bad_f, strict=True) if b)
    bad_v = np.asarray(state["bad_vars"])
    vars_ = tuple(vp.name for vp, b in zip(plan.variables, bad_v, strict=True) if b)
    if status == STATUS_NONFINITE_MESSAGES:
        reason = "nonfinite_messages"
        what = f"messages of family {fams[0]!r} became non-finite (NaN/inf)"
    elif status == STATUS_NONFINITE_BELIEFS:
        reason = "nonfinite_beliefs"
        touching = tuple(
            fp.name
            for fp in plan.families
            if any(plan.variables[sp.var].name in vars_ for sp in fp.slots)
        )
        fams = touching
        what = f"beliefs of {', '.join(map(repr, vars_))} became non-finite"
    else:
        reason = "growing"
        what = (
            "the belief change kept growing (oscillating or exploding messages); "
            f"family {fams[0]!r} changed its messages most"
        )
    return DivergenceInfo(
        reason=reason,
        iteration=it,
        family=fams[0] if fams else None,
        families=fams,
        variables=vars_,
        message=f"GBP diverged at iteration {it}: {what}. {_ADVICE}",
    )
