"""One GBP iteration, and the compiled chunk of iterations that runs on the device.

An iteration is one pure function of arrays (`iteration`), in steps: the
beliefs (`beliefs.beliefs`, materialized once), how far they moved
(`_belief_change`), which nodes to re-linearize (`_relinearize`), every
family's new messages (`_update_messages`), the convergence and divergence
bookkeeping (`_progress`) and the commit (`_commit`). The only Python loops
run at trace time over the (few) vars, families and slots.

A chunk (`run_chunk`) is a ``lax.while_loop`` of at most ``plan.chunk``
iterations that stops early on convergence or divergence; Python sees the
state only between chunks. Chunks normally run unchecked (`plan.Plan.checked`);
a chunk that fails is replayed checked from its start by `engine.run_gbp`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from . import algebra
from .beliefs import accumulate, beliefs, centers, gather, materialize
from .charts import recenter
from .messages import affine_terms, family_messages, fold_unary
from .plan import FamilyPlan, Plan, by_member
from .state import (
    STATUS_CONVERGED,
    STATUS_GROWING,
    STATUS_NONFINITE_BELIEFS,
    STATUS_NONFINITE_MESSAGES,
    STATUS_RUNNING,
    Beliefs,
    ChunkResult,
    EngineData,
    EngineState,
    FamilyState,
    VarState,
)

Array = jax.Array


class _BeliefChange(NamedTuple):
    mean: list[Array]
    """The new belief means per var."""
    lam_diag: list[Array]
    """The new belief precisions' diagonals per var."""
    var_ok: Array
    """``[n_vars]`` bool: the var's new beliefs are finite."""
    beliefs_ok: Array
    delta: Array
    """Largest change of a belief mean (``inf`` at iteration 0)."""
    lam_change: Array
    """Largest relative change of a belief precision's diagonal."""


class _MessageUpdate(NamedTuple):
    families: tuple[FamilyState, ...]
    """Every family's new messages, in stored shape."""
    family_ok: Array
    """``[n_families]`` bool: its new messages passed the check (all True unchecked)."""
    ok: Array
    change: Array
    """``[n_families]``: the largest change of its messages' eta (0 unchecked)."""


class _Progress(NamedTuple):
    conv_count: Array
    min_delta: Array
    grow: Array
    status: Array


def _belief_change(plan: Plan, data: EngineData, st: EngineState, b: Beliefs) -> _BeliefChange:
    """The beliefs' means, and how far the means and precisions moved since the last iteration."""
    nv = len(plan.variables)
    dtype = data.settings.damping.dtype
    mu = [algebra.info_to_moments(b.eta[v], b.lam[v], data.variables[v].floor) for v in range(nv)]
    # Precisions must have settled too: early on, multi-node factors send almost
    # flat messages (their other slots are not yet informed), so the means can
    # sit still for an iteration while the beliefs are far from a fixed point.
    lam_diag = [jnp.diagonal(b.lam[v], axis1=-2, axis2=-1) for v in range(nv)]
    moved_l, rel_l = [], []
    for v in range(nv):
        # Both maxima in one variadic reduction, which XLA fuses with the
        # differences: one pass over the var's arrays and no temporaries.
        old = st.variables[v]
        m, r = jax.lax.reduce(
            (jnp.abs(mu[v] - old.mean), jnp.abs(lam_diag[v] - old.lam_diag) / jnp.abs(lam_diag[v])),
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
    delta = jnp.where(st.iteration == 0, jnp.inf, jnp.max(moved))
    lam_change = jnp.max(jnp.stack(rel_l))
    return _BeliefChange(mu, lam_diag, var_ok, beliefs_ok, delta, lam_change)


def _relinearize(
    plan: Plan, data: EngineData, st: EngineState, mu: list[Array], settled: Array
) -> tuple[list[Array], list[Array], Array, list[Array]]:
    """The points the families linearize at this iteration, the points to keep,
    staleness, and every node's iterations since its last re-linearization.

    Re-linearize nodes whose mean moved more than the threshold since their
    last linearization; once the beliefs have settled (delta < tol) every node
    that moved more than tol is re-linearized, so convergence is only declared
    at a fixed point of the *nonlinear* problem. Iteration 0 keeps `init`:
    beliefs then hold no factor information yet. An affine-only var is
    linearized at its mean (any point gives the same factors) and keeps no
    point of its own. ``stale``: some node is further than tol from its point.
    """
    it = st.iteration
    tol = data.settings.tol
    lin, lin_out, stale, since = [], [], jnp.zeros((), bool), []
    for v, vp in enumerate(plan.variables):
        old_lin = st.variables[v].lin
        old_since = st.variables[v].since
        if vp.affine_only:
            lin.append(mu[v])
            lin_out.append(old_lin)
            since.append(old_since)  # read by no damping: only affine families touch the var
            continue
        move = jnp.max(jnp.abs(mu[v] - old_lin), axis=-1)
        relin = ((move > data.settings.relinearize_threshold) | (settled & (move > tol))) & (it > 0)
        relin = relin & jnp.all(jnp.isfinite(mu[v]), axis=-1)
        lin.append(jnp.where(relin[:, None], mu[v], old_lin))
        lin_out.append(lin[-1])
        since.append(jnp.where(relin, 0, jnp.minimum(old_since + 1, _SINCE_CAP)))
        stale = stale | jnp.any(move > tol)
    return lin, lin_out, stale, since


_SINCE_CAP = 1 << 20
"""`VarState.since` stops counting here (no int32 overflow on long runs)."""


def _damped(new: FamilyState, old: FamilyState, beta: Array) -> FamilyState:
    """``(1 - beta) new + beta old`` on every slot's eta and lam (``beta``: a scalar or one per member)."""

    def mix(n: Array, o: Array) -> Array:
        b = beta if beta.ndim == 0 else beta.reshape(beta.shape + (1,) * (n.ndim - 1))
        return (1 - b) * n + b * o

    return FamilyState(
        tuple(mix(e, o) for e, o in zip(new.eta, old.eta, strict=True)),
        tuple(mix(m, o) for m, o in zip(new.lam, old.lam, strict=True)),
    )


def _member_damping(fp: FamilyPlan, plan: Plan, data: EngineData, since: list[Array], beta: Array) -> Array:
    """A nonlinear family's damping per member: 0 while one of its nodes was
    re-linearized fewer than ``undamped_iters`` iterations ago, else ``beta``
    (the schedule of Ortiz et al.'s GBP bundle adjustment: a few undamped
    iterations let the messages take up a new linearization, then damping
    keeps the loopy updates from oscillating)."""
    fd = next(fd for fd, p in zip(data.families, plan.families, strict=True) if p is fp)
    fresh = jnp.zeros((fp.n_members,), bool)
    for s, sp in enumerate(fp.slots):
        sv = gather(since[sp.var][:, None], fd.ids[s], sp, plan.variables[sp.var])[:, 0]
        fresh = fresh | (sv < data.settings.undamped_iters)
    return jnp.where(fresh, jnp.zeros((), beta.dtype), beta)


def _dropped_out(
    fp: FamilyPlan, data: EngineData, it: Array, key: Array, new: FamilyState, old: FamilyState
) -> FamilyState:
    """Message dropout: each member keeps its old message with probability ``dropout`` (not at iteration 0)."""
    ks = jax.random.split(key, len(fp.slots))
    keep = [jax.random.bernoulli(k, data.settings.dropout, (fp.n_members,)) & (it > 0) for k in ks]
    return FamilyState(
        tuple(jnp.where(k[:, None], o, e) for k, e, o in zip(keep, new.eta, old.eta, strict=True)),
        tuple(jnp.where(k[:, None, None], o, m) for k, m, o in zip(keep, new.lam, old.lam, strict=True)),
    )


def _checked(new: FamilyState, old: FamilyState) -> tuple[Array, Array]:
    """Whether a family's new messages are finite, and its largest eta change.

    One pass per message array: max |new - old| is NaN/inf exactly when the
    new message is (XLA's max propagates NaN), so it doubles as the
    finiteness check.
    """
    ce = jnp.max(jnp.stack([jnp.max(jnp.abs(e - o)) for e, o in zip(new.eta, old.eta, strict=True)]))
    cl = jnp.max(jnp.stack([jnp.max(jnp.abs(m - o)) for m, o in zip(new.lam, old.lam, strict=True)]))
    return jnp.isfinite(ce) & jnp.isfinite(cl), ce


def _update_messages(
    plan: Plan, data: EngineData, st: EngineState, b: Beliefs, lin: list[Array], since: list[Array],
    origins: list[Array],
) -> _MessageUpdate:
    """Every family's new messages: computed, damped, dropped out and (if checked) checked.

    With the sequential schedule each family sees the messages of the
    families before it (its beliefs are updated by their changes).
    """
    nf = len(plan.families)
    it = st.iteration
    dtype = data.settings.damping.dtype
    beta = jnp.where(it > 0, data.settings.damping, jnp.zeros((), dtype))
    if plan.use_dropout:
        # A key per iteration derived from (seed, iteration): no key in the state.
        fam_keys = jax.random.split(
            jax.random.fold_in(jax.random.PRNGKey(data.settings.seed), it), max(nf, 1)
        )
    new: list[FamilyState] = []
    fam_ok, fam_change = [], []
    current = b
    for f, fp in enumerate(plan.families):
        stored = st.families[f]
        if fp.folded:  # already in the priors; it has no messages (empty arrays)
            fam_ok.append(jnp.ones((), bool))
            fam_change.append(jnp.zeros((), dtype))
            new.append(stored)
            continue
        old = FamilyState(
            tuple(by_member(x, fp.n_members, 1) for x in stored.eta),
            tuple(by_member(x, fp.n_members, 2) for x in stored.lam),
        )
        beta_f = beta if fp.affine else _member_damping(fp, plan, data, since, beta)
        upd = _damped(family_messages(fp, plan, f, data, current, lin, old, origins), old, beta_f)
        if plan.use_dropout:
            upd = _dropped_out(fp, data, it, fam_keys[f], upd, old)
        if plan.checked:
            ok, ch = _checked(upd, old)
            fam_ok.append(ok)
            fam_change.append(ch)
        else:
            fam_ok.append(jnp.ones((), bool))
            fam_change.append(jnp.zeros((), dtype))
        new.append(
            FamilyState(
                tuple(e.reshape(o.shape) for e, o in zip(upd.eta, stored.eta, strict=True)),
                tuple(m.reshape(o.shape) for m, o in zip(upd.lam, stored.lam, strict=True)),
            )
        )
        if plan.sequential:
            # Family-by-family schedule: the next family already sees these messages.
            diff = FamilyState(
                tuple(e - o for e, o in zip(upd.eta, old.eta, strict=True)),
                tuple(m - o for m, o in zip(upd.lam, old.lam, strict=True)),
            )
            current = accumulate(plan, data, [(f, diff)], current)

    fam_ok_arr = jnp.stack(fam_ok) if nf else jnp.ones((0,), bool)
    msgs_ok = jnp.all(fam_ok_arr)
    change = jnp.stack(fam_change) if nf else jnp.zeros((0,), dtype)
    if plan.sequential and nf:
        # After the first bad family, later ones saw poisoned beliefs: blame the first.
        first_bad = jnp.argmin(fam_ok_arr)
        fam_ok_arr = jnp.where(msgs_ok, fam_ok_arr, jnp.arange(nf) != first_bad)
    return _MessageUpdate(tuple(new), fam_ok_arr, msgs_ok, change)


def _progress(
    plan: Plan,
    data: EngineData,
    st: EngineState,
    bc: _BeliefChange,
    settled: Array,
    stale: Array,
    msgs_ok: Array,
) -> _Progress:
    """Convergence and divergence counters, and the iteration's status."""
    dtype = data.settings.damping.dtype
    delta = bc.delta
    conv_now = settled & ~stale & (st.iteration > 0)
    conv_count = jnp.where(conv_now, st.conv_count + 1, 0)
    finite_delta = jnp.isfinite(delta)
    # A forced re-linearization (settled but stale) legitimately makes the means
    # jump again: restart the growth detector's running minimum there.
    # The running minimum only counts iterations whose precisions have roughly
    # settled: before that, means can sit still merely because messages are
    # still nearly flat, and such a tiny early change would make any later
    # progress look like growth.
    track = finite_delta & (bc.lam_change < 1e-2)
    min_delta = jnp.where(track, jnp.minimum(st.min_delta, delta), st.min_delta)
    min_delta = jnp.where(settled & stale, jnp.asarray(jnp.inf, dtype), min_delta)
    grow = jnp.where(finite_delta & (delta > data.settings.divergence_ratio * min_delta), st.grow + 1, 0)

    status = jnp.where(
        ~bc.beliefs_ok,
        STATUS_NONFINITE_BELIEFS,
        jnp.where(
            ~msgs_ok,
            STATUS_NONFINITE_MESSAGES,
            jnp.where(
                conv_count >= plan.conv_patience,
                STATUS_CONVERGED,
                jnp.where(grow >= data.settings.divergence_patience, STATUS_GROWING, STATUS_RUNNING),
            ),
        ),
    ).astype(jnp.int32)
    return _Progress(conv_count, min_delta, grow, status)


def _commit(
    plan: Plan,
    st: EngineState,
    bc: _BeliefChange,
    lin_out: list[Array],
    since: list[Array],
    upd: _MessageUpdate,
    prog: _Progress,
    mean: list[Array],
    origins: list[Array],
) -> EngineState:
    """The next state: the new messages, points and beliefs if they are all finite
    (checked; unchecked they are always taken), and who is to blame if not."""
    nf = len(plan.families)
    it = st.iteration
    commit = bc.beliefs_ok & upd.ok
    if nf:
        blamed = jnp.where(
            prog.status == STATUS_GROWING, jnp.arange(nf) == jnp.argmax(upd.change), ~upd.family_ok
        )
    else:
        blamed = jnp.zeros((0,), bool)

    def pick(new: Any, old: Any) -> Any:
        if not plan.checked:  # a failed unchecked chunk is replayed, not kept
            return new
        return jax.tree_util.tree_map(lambda a, b: jnp.where(commit, a, b), new, old)

    return EngineState(
        families=pick(upd.families, st.families),
        variables=pick(
            tuple(VarState(*v) for v in zip(lin_out, mean, bc.lam_diag, since, origins, strict=True)), st.variables
        ),
        iteration=jnp.where(commit, it + 1, it),
        min_delta=prog.min_delta,
        grow=prog.grow,
        conv_count=prog.conv_count,
        status=prog.status,
        bad_families=jnp.where(prog.status >= STATUS_NONFINITE_MESSAGES, blamed, st.bad_families),
        bad_variables=jnp.where(prog.status == STATUS_NONFINITE_BELIEFS, ~bc.var_ok, st.bad_variables),
    )


def iteration(plan: Plan, data: EngineData, st: EngineState) -> tuple[EngineState, Array]:
    """One GBP iteration: beliefs, convergence bookkeeping, message updates."""
    b = beliefs(plan, data, st.families, centers(plan, st))
    b = materialize(plan, st.iteration, b)
    bc = _belief_change(plan, data, st, b)
    settled = (bc.delta < data.settings.tol) & (bc.lam_change < data.settings.precision_rtol)
    lin, lin_out, stale, since = _relinearize(plan, data, st, bc.mean, settled)
    mean, origins = bc.mean, [vs.origin for vs in st.variables]
    moved = st
    if any(vp.group is not None for vp in plan.variables):
        # Group nodes move their charts to their new points (`charts.py`):
        # messages, beliefs and means are carried along, the points become 0.
        # (A checked iteration that is not committed keeps `st`: the old charts.)
        families, b, mean, lin, origins = recenter(plan, data, st.families, b, mean, lin, origins)
        lin_out = [x if vp.group is None else lx for x, lx, vp in zip(lin_out, lin, plan.variables, strict=True)]
        moved = st._replace(families=families)
    upd = _update_messages(plan, data, moved, b, lin, since, origins)
    prog = _progress(plan, data, st, bc, settled, stale, upd.ok)
    return _commit(plan, st, bc, lin_out, since, upd, prog, mean, origins), bc.delta


def _with_chunk_constants(plan: Plan, data: EngineData, state: EngineState) -> EngineData:
    """The data with every affine family's terms (`messages.affine_terms`) and
    the folded unary families added to the priors (`messages.fold_unary`):
    computed once per chunk, outside the loop."""
    terms = affine_terms(plan, data, [vs.lin for vs in state.variables])
    data = data._replace(families=tuple(fd._replace(affine=a) for fd, a in zip(data.families, terms, strict=True)))
    return fold_unary(plan, data)


def _check_final_messages(state: EngineState) -> EngineState:
    """An unchecked chunk's last messages, checked for finiteness.

    The last iteration's messages have not been through the beliefs yet: one
    finiteness pass per chunk, so that a chunk never hands on (or reads out)
    unchecked messages and a replay never has to reach back into an earlier
    chunk.
    """
    leaves = [x for fs in state.families for x in fs.eta] + [x for fs in state.families for x in fs.lam]
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else True
    return state._replace(status=jnp.where(finite, state.status, STATUS_NONFINITE_MESSAGES))


def run_chunk(plan: Plan, data: EngineData, state: EngineState) -> ChunkResult:
    """Up to ``plan.chunk`` iterations in a ``lax.while_loop`` (stops early).

    Also returns the beliefs of the final state, so that no second compiled
    function is needed to read the result out (compiles dominate small runs).
    """
    dtype = data.settings.damping.dtype
    hist0 = jnp.full((plan.chunk,), jnp.nan, dtype)
    data = _with_chunk_constants(plan, data, state)

    def cond(c: tuple[Array, EngineState, Array]) -> Array:
        i, st, _ = c
        return (i < plan.chunk) & (st.status == STATUS_RUNNING) & (st.iteration < data.settings.max_iters)

    def body(c: tuple[Array, EngineState, Array]) -> tuple[Array, EngineState, Array]:
        i, st, h = c
        # Every traced function that solves chains its large solves (a
        # deadlock of XLA:CPU's LAPACK calls otherwise, see the context manager).
        with algebra.sequential_lapack_solves():
            st, delta = iteration(plan, data, st)
        return i + 1, st, h.at[i].set(delta)

    n, state, hist = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), state, hist0))
    if not plan.checked:
        state = _check_final_messages(state)
    final = beliefs(plan, data, state.families, centers(plan, state))
    return ChunkResult(state, hist, n, final)


run_chunk_jit = jax.jit(run_chunk, static_argnums=0)
"""`run_chunk` compiled once per plan (static) and data/state shapes."""
