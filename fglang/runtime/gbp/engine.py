"""The GBP engine: loopy Gaussian belief propagation over a `GaussianGraph`.

Design (why it looks like this):

* **Messages are dense arrays per family and slot**: factor-to-variable
  messages ``eta [M, d]``, ``lam [M, d, d]`` (`state.FamilyState`).
  Variable-to-factor messages are not stored: they are ``belief - own
  message`` (the standard GBP identity), which costs one gather per slot
  instead of a second message set.
* **One iteration is one pure, jitted function of arrays**
  (`iteration.iteration`). Beliefs are a segment-sum of messages (or, for
  slots with a ``grid_slice``, a zero-padded add of a static slice, which XLA
  fuses; `beliefs.py`); every family is linearized with one ``vmap`` of
  ``jacfwd`` and marginalized with batched algebra (`algebra.schur_messages`,
  or the Sherman-Morrison `algebra.rank1_messages` for scalar residuals;
  `messages.py`). The only Python loops run at trace time over the (few)
  families and slots.
* **The loop runs on the device in chunks**: a ``lax.while_loop`` of at most
  ``chunk_size`` iterations stops early on convergence or divergence; Python
  sees the state only between chunks (for the progress callback). The chunk is
  compiled once per graph *structure* (`plan.Plan`: shapes, residual
  functions, options that change the traced program) and reused for new data
  of the same shapes (`state.EngineData`, `state.EngineState`).
* **Divergence is detected inside the loop, and checked where it happens**:
  chunks run unchecked (only the beliefs' finiteness and the belief change are
  watched, which costs no pass over the message arrays); a chunk that ends in
  non-finite beliefs, non-finite messages or a belief change that stays far
  above its running minimum is replayed from its start with every family's new
  messages checked in every iteration. The checked replay never commits a
  non-finite update, so the returned beliefs are the last finite ones and the
  report names the iteration and family (`plan.Plan.checked`).

This module is the run driver: `run_gbp` validates its options, sets up the
plan, data and initial state (`plan.py`), runs chunks (`iteration.run_chunk`)
until the run stops, and reads out the marginals (`GbpResult`).
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

from .charts import stored_means
from .coarse import SMOOTHING_SWEEPS, STALL_RTOL, CoarseCorrector, shift_state, supports_coarse, wants_coarse
from .graph import GaussianGraph
from .iteration import run_chunk_jit
from .plan import Plan, build_plan, chart_origins, family_floors, stored_shape, variable_data
from .program import JIT, StoredChunk
from .sharding import device_placement, run_chunk_sharded_of
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
    Settings,
    VarState,
)

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
    ``max |mean_t - mean_{t-1}|`` over all nodes (``inf`` at t = 0). A group
    var's (`graph.VariableBlock.group`) mean is its stored value ``[n_nodes,
    *storage]``, its covariance and belief over the tangent ``delta`` at the
    final chart's origin, which is within ``tol`` of the mean (`charts.py`).
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
# Public entry point


def run_gbp(
    graph: GaussianGraph,
    init: Mapping[str, Any] | None = None,
    *,
    prior: Mapping[str, tuple[Any, Any]] | None = None,
    iters: int = 1000,
    tol: float | None = None,
    damping: float | None = 0.0,
    undamped_iters: int = 0,
    schedule: str = "auto",
    dropout: float = 0.0,
    relinearize_threshold: float = 0.0,
    precision_rtol: float | None = None,
    dtype: Any = jnp.float32,
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
    chunk_size: int | None = None,
    flat_reg: float = DEFAULT_FLAT_REG,
    divergence_ratio: float = 1e3,
    divergence_patience: int = 50,
    mesh: Any = None,
    program: str | None = None,
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
        messages are empty). None: `AUTO_DAMPING` if some family is nonlinear,
        else 0.
    undamped_iters
        A nonlinear family's members run undamped for this many iterations
        after one of their nodes was re-linearized (and at the start).
    schedule
        ``"flooding"`` (all families update from the same beliefs),
        ``"sequential"`` (family by family, each seeing the previous families'
        new messages; members within a family update in parallel),
        ``"multigrid"`` (flooding, and after every chunk an exact coarse-graph
        correction, `coarse.py`) or ``"auto"``: multigrid for a nonlinear
        graph of one many-node var (`coarse.wants_coarse`: pose graphs),
        flooding otherwise.
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
        Iterations per compiled chunk (the callback's granularity); default 20,
        and `coarse.SMOOTHING_SWEEPS` under ``"multigrid"``, where a chunk is
        the smoothing between two coarse corrections.
    flat_reg
        Relative precision of the flat-prior stand-in (`DEFAULT_FLAT_REG`).
    divergence_ratio, divergence_patience
        Declare divergence when the belief change stays above
        ``divergence_ratio`` times its running minimum for
        ``divergence_patience`` consecutive iterations.
    mesh
        A 1-D ``jax.sharding.Mesh`` to run over (default: the fit's,
        `fglang.runtime.device.current_mesh`; None runs on one device). Every
        family's member data and messages are sharded along their member axis
        (`device_placement`); beliefs and the run's bookkeeping are replicated. The
        compiled chunk is the same program: XLA partitions it and inserts
        the collectives that form the beliefs across devices.
    program
        The key of what built ``graph`` (`program.model_key`, which
        `fit.fit_gbp` gives): on one device the chunk is then a stored
        program (`program.StoredChunk`), which a later process loads instead
        of tracing it; None (or a mesh) runs the plain jit.
        ``info["chunk_program"]`` says how the run got it.
    """
    dt = np.dtype(dtype)
    if dt == np.float64 and not jax.config.jax_enable_x64:
        with jax.enable_x64(True):
            return run_gbp(
                graph, init, prior=prior, iters=iters, tol=tol, damping=damping, undamped_iters=undamped_iters,
                schedule=schedule, dropout=dropout,
                relinearize_threshold=relinearize_threshold, precision_rtol=precision_rtol,
                dtype=dtype, seed=seed,
                callback=callback, chunk_size=chunk_size, flat_reg=flat_reg,
                divergence_ratio=divergence_ratio, divergence_patience=divergence_patience, mesh=mesh,
                program=program,
            )
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    _check_options(dt, 0.0 if damping is None else damping, dropout, iters, 1 if chunk_size is None else chunk_size)
    if tol is None:
        tol = 1e-6 if dt == np.float64 else 1e-5
    t_start = time.perf_counter()
    plan, families, scales = build_plan(graph, dtype=dt, schedule="sequential" if schedule == "sequential" else
                                        "flooding", dropout=dropout, chunk=chunk_size or 20)
    if schedule == "auto":
        schedule = "multigrid" if wants_coarse(plan, dropout) else "flooding"
    if schedule == "multigrid" and chunk_size is None:
        plan = dataclasses.replace(plan, chunk=SMOOTHING_SWEEPS)
    if schedule == "multigrid" and not supports_coarse(plan):
        raise ValueError("schedule='multigrid' needs factors without robust losses or sparsity priors")
    if damping is None:
        damping = auto_damping(plan)
    init = dict(init or {})
    prior = dict(prior or {})
    known = {v.name for v in graph.variables}
    for name in list(init) + list(prior):
        if name not in known:
            raise KeyError(f"no variable {name!r}; known: {sorted(known)}")
    lin0, variables, floors = variable_data(plan, init, prior, scales, flat_reg, dt)
    origins = chart_origins(plan, init, dt)
    settings = Settings(
        damping=np.asarray(damping, dt),
        undamped_iters=np.asarray(undamped_iters, np.int32),
        dropout=np.asarray(dropout, dt),
        relinearize_threshold=np.asarray(relinearize_threshold, dt),
        tol=np.asarray(tol, dt),
        precision_rtol=np.asarray(100.0 * tol if precision_rtol is None else precision_rtol, dt),
        divergence_ratio=np.asarray(divergence_ratio, dt),
        divergence_patience=np.asarray(divergence_patience, np.int32),
        max_iters=np.asarray(iters, np.int32),
        seed=np.asarray(seed % 2**31, np.int32),
    )
    data = EngineData(family_floors(plan, families, floors, dt), variables, settings)
    state = _initial_state(plan, lin0, origins, dt)
    if mesh is None:
        from fglang.runtime.device import current_mesh

        mesh = current_mesh()
    placement = constraint = None
    if mesh is not None and mesh.size > 1:
        placement = device_placement(plan, data, state, mesh, uneven=False)
        constraint = device_placement(plan, data, state, mesh, uneven=True)
    data, state = jax.device_put((data, state), placement)

    corrector = CoarseCorrector.setup(plan, graph) if schedule == "multigrid" else None
    stored = StoredChunk(program) if program is not None and constraint is None else None
    last, history = _run_chunks(plan, data, state, iters, callback, placement, constraint, corrector, stored)
    status = int(last.state.status)
    it = int(last.state.iteration)
    means, covs, beliefs = _marginals(plan, last.beliefs)
    means = stored_means(plan, [vs.origin for vs in last.state.variables], means)
    diverged = None
    if status in (STATUS_NONFINITE_MESSAGES, STATUS_NONFINITE_BELIEFS, STATUS_GROWING):
        diverged = _divergence_info(plan, last.state, status)
    return GbpResult(
        means=means,
        covs=covs,
        beliefs=beliefs,
        iterations=it,
        converged=status == STATUS_CONVERGED,
        history=np.concatenate(history) if history else np.zeros((0,)),
        diverged=diverged,
        wall_time_s=time.perf_counter() - t_start,
        info=dict(schedule=schedule, damping=damping, dtype=str(dt), tol=tol, flat_reg_scale=scales,
                  devices=1 if placement is None else int(mesh.size),
                  coarse_corrections=0 if corrector is None else corrector.corrections,
                  coarse_fallback=corrector is not None and corrector.disabled,
                  coarse_energies=[] if corrector is None else list(corrector.energies),
                  coarse_times=[] if corrector is None else [t - t_start for t in corrector.times],
                  chunk_program=JIT if stored is None or stored.source is None else stored.source),
    )


SCHEDULES = ("auto", "flooding", "sequential", "multigrid")
"""`run_gbp`'s schedules (``schedule=``)."""

AUTO_DAMPING = 0.5
"""``damping=None``'s value for a graph with a nonlinear family (0 if all are affine).

Undamped synchronous GBP re-linearized every iteration oscillates on
nonlinear loopy graphs: on SPEC's pose graph, M3500 and the quadrant-XOR
network 0.5 reached the optimum / learned where 0 did not (measured, issue 14)."""


def resolve_schedule(graph: GaussianGraph, schedule: str, dropout: float = 0.0, dtype: Any = np.float32) -> str:
    """The schedule ``schedule="auto"`` runs on ``graph`` (`coarse.wants_coarse`); others as given.
    ``dtype``: the plan's, float64 for a float64 fit (whose values float32 may not hold)."""
    if schedule != "auto":
        return schedule
    plan, _, _ = build_plan(graph, dtype=dtype, schedule="flooding", dropout=dropout, chunk=1)
    return "multigrid" if wants_coarse(plan, dropout) else "flooding"


def auto_damping(plan: Plan) -> float:
    """`AUTO_DAMPING` if some family of the plan is nonlinear, else 0.0."""
    return AUTO_DAMPING if any(not fp.affine for fp in plan.families) else 0.0


def _check_options(dt: np.dtype, damping: float, dropout: float, iters: int, chunk_size: int) -> None:
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    if not 0.0 <= damping < 1.0:
        raise ValueError(f"damping must be in [0, 1), got {damping}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if iters < 0 or chunk_size < 1:
        raise ValueError("iters must be >= 0 and chunk_size >= 1")


def _initial_state(plan: Plan, lin0: list[np.ndarray], origins: list[np.ndarray], dt: np.dtype) -> EngineState:
    """Empty messages, beliefs at the first linearization point, nothing counted yet."""
    return EngineState(
        # Folded families (`plan.FamilyPlan.folded`) send no messages: empty
        # arrays, so a large unary family costs no message memory.
        families=tuple(
            FamilyState(
                eta=tuple(
                    np.zeros((0, sp.dim) if fp.folded else stored_shape(sp, fp.n_members, (sp.dim,)), dt)
                    for sp in fp.slots
                ),
                lam=tuple(
                    np.zeros(
                        (0, sp.dim, sp.dim) if fp.folded else stored_shape(sp, fp.n_members, (sp.dim, sp.dim)),
                        dt,
                    )
                    for sp in fp.slots
                ),
            )
            for fp in plan.families
        ),
        variables=tuple(
            VarState(lin=x, mean=x, lam_diag=np.ones((vp.n, vp.dim), dt), since=np.zeros((vp.n,), np.int32),
                     origin=o)
            for x, o, vp in zip(lin0, origins, plan.variables, strict=True)
        ),
        iteration=np.zeros((), np.int32),
        min_delta=np.asarray(np.inf, dt),
        grow=np.zeros((), np.int32),
        conv_count=np.zeros((), np.int32),
        status=np.zeros((), np.int32),
        bad_families=np.zeros((len(plan.families),), bool),
        bad_variables=np.zeros((len(plan.variables),), bool),
    )


def _run_chunks(
    plan: Plan,
    data: EngineData,
    state: EngineState,
    iters: int,
    callback: Callable[[int, float], None] | None,
    placement: Any = None,
    constraint: Any = None,
    corrector: CoarseCorrector | None = None,
    stored: StoredChunk | None = None,
) -> tuple[ChunkResult, list[np.ndarray]]:
    """Chunks until the run converges, diverges or reaches ``iters``: the last
    chunk's result and every chunk's belief-change history.

    Chunks run unchecked (`plan.Plan.checked`); one that fails is replayed
    checked from its start, which stops before the bad update with the family
    to blame (that variant is compiled only when needed). Over several
    devices (``placement``, ``constraint`` from `device_placement`) the chunk is
    `run_chunk_sharded` and each chunk's state is put back on
    ``placement`` (a no-op where XLA kept the sharding), so every chunk is
    called with the same shardings and compiles once. ``stored``: the chunk
    as a stored program (`program.StoredChunk`), on one device.
    """
    if stored is not None:
        chunk = stored
    elif constraint is not None:
        leaves, treedef = jax.tree.flatten(constraint)
        chunk = functools.partial(run_chunk_sharded_of, (tuple(leaves), treedef))  # hashable: a static argument
    else:
        chunk = run_chunk_jit
    history: list[np.ndarray] = []
    fast = dataclasses.replace(plan, checked=False)
    while True:
        start = state
        out = chunk(fast, data, start)
        if int(out.state.status) >= STATUS_NONFINITE_MESSAGES:
            out = chunk(plan, data, start)
        state = out.state if placement is None else jax.device_put(out.state, placement[1])
        n_i = int(out.n_iterations)
        h = np.asarray(out.history)[:n_i]
        history.append(h)
        status = int(state.status)
        it = int(state.iteration)
        if callback is not None and n_i:
            finite = h[np.isfinite(h)]
            callback(it, float(finite[-1]) if finite.size else float("inf"))
        if (corrector is not None and not corrector.disabled and status in (STATUS_RUNNING, STATUS_CONVERGED)
                and it < iters and n_i):
            x = [np.asarray(vs.mean) for vs in state.variables]
            delta = corrector.step(data, x, [vs.origin for vs in state.variables])
            if not corrector.disabled and corrector.stalled(STALL_RTOL * float(data.settings.tol)):
                done = out.state._replace(status=np.int32(STATUS_CONVERGED))
                return out._replace(state=done), history
            if delta is not None and max(float(np.max(np.abs(d))) for d in delta) > float(data.settings.tol):
                state = shift_state(plan, data, state, delta)._replace(status=np.int32(STATUS_RUNNING))
                if placement is not None:
                    state = jax.device_put(state, placement[1])
                continue
        if status != STATUS_RUNNING or it >= iters or n_i == 0:
            return out, history


def _marginals(
    plan: Plan, b: Beliefs
) -> tuple[dict[str, Any], dict[str, Any], dict[str, tuple[Any, Any]]]:
    """Means, covariances and information forms per var, from the final beliefs (NumPy)."""
    means: dict[str, Any] = {}
    covs: dict[str, Any] = {}
    beliefs: dict[str, tuple[Any, Any]] = {}
    for v, vp in enumerate(plan.variables):
        e = np.asarray(b.eta[v])
        lam = np.asarray(b.lam[v])
        # 1 / lam for scalar nodes: numpy's batched inv costs ~100 ns a matrix
        if lam.shape[-1] == 1 and np.all(lam != 0):
            cov = 1.0 / lam
        else:
            cov = np.linalg.inv(lam)  # raises on a singular belief, as for vector nodes
        cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
        means[vp.name] = np.einsum("nij,nj->ni", cov, e)
        covs[vp.name] = cov
        beliefs[vp.name] = (e, lam)
    return means, covs, beliefs


def _divergence_info(plan: Plan, state: EngineState, status: int) -> DivergenceInfo:
    it = int(state.iteration)
    bad_f = np.asarray(state.bad_families)
    fams = tuple(fp.name for fp, b in zip(plan.families, bad_f, strict=True) if b)
    bad_v = np.asarray(state.bad_variables)
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
