"""Two-level GBP: flooding GBP as the smoother, an exact coarse-graph correction between chunks.

Why: synchronous GBP is Jacobi-like. Information crosses a graph one factor
per iteration, so the smooth, global modes of a long loopy graph (the drift
a pose graph's loop closures must bend out of its odometry chain) converge at
the rate of the condition number: on M3500 linear GBP at the optimum still
moves after 3000 iterations. A few GBP iterations remove the error that
varies from node to node; what is left varies slowly along the graph and
lives in a small coarse space, where one sparse solve removes it. This is
two-level multigrid (aggregation AMG) with GBP as the smoother.

The coarse space (`Aggregation`): the graph's nodes are grown into connected
aggregates of about ``size`` nodes (breadth first over the factors, each
aggregate from its first node, its *root*). An aggregate moves as its root
moves, extended to its other nodes by the *harmonic* (energy-minimizing)
extension through the factors inside the aggregate: for a chain of pose-graph
odometry that is the linearized rigid motion of the segment, which a
piecewise-constant coarse space (every node shifted alike) cannot express
(rotating a segment moves its far poses). The correction is the Galerkin one,
``P (P^T H P)^-1 P^T (-g)`` with ``H, g`` the Gauss-Newton system of the
nonlinear energy at the current beliefs, taken with a backtracking line
search on that energy, so it never makes a fit worse.

It is applied to GBP's state by *shifting* every factor-to-variable message
by its node's correction (``eta += Lambda delta``): a belief, a sum of
messages, then moves by exactly ``delta`` and GBP carries on from its
messages instead of starting over.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from .beliefs import gather
from .graph import GaussianGraph
from .messages import fold_unary, linearize_family, per_member
from .plan import Plan, by_member, stored_shape
from .state import EngineData, EngineState, FamilyState

if TYPE_CHECKING:  # SciPy is imported where a coarse correction is built (~0.3 s; a flooding fit needs none)
    import scipy.sparse as sp

Array = jax.Array

AGGREGATE_SIZE = 4
"""Nodes per coarse aggregate. GBP smooths an error across an aggregate in
about this many iterations (one chunk); larger aggregates make the coarse
solve cheaper but leave more for GBP (measured on M3500, issue 14)."""


SMOOTHING_SWEEPS = 5
"""GBP iterations between two coarse corrections (the compiled chunk's length)."""

STALL_CYCLES = 2
"""Cycles in a row whose energy changed by less than ``STALL_RTOL * tol`` (relative) before a run
counts as converged."""

FALLBACK_RATIO = 2.0
FALLBACK_CYCLES = 4
"""`FALLBACK_CYCLES` cycles in a row that each start at a higher energy, the last
above `FALLBACK_RATIO` times the lowest start, turn the corrections off for the
rest of the run (`CoarseCorrector.step`). On M3500 early cycles rise 1.5x twice
and recover, on a 20,000-pose Manhattan graph the first rise is above 2x; on a
129-pose graph of four laps with rotations 100x more precise than its
translations the rise compounds (1.3x a cycle) and flooding alone converges."""

STALL_RTOL = 0.1
"""0.1: with ``tol``'s own 1e-5 (float32) SPEC's pose graph stopped 2e-5 above its optimum."""


def supports_coarse(plan: Plan) -> bool:
    """The coarse correction needs the energy's Gauss-Newton form: no robust or sparsity family."""
    return all(fp.robust is None and fp.sparsity is None for fp in plan.families)


def wants_coarse(plan: Plan, dropout: float) -> bool:
    """``schedule="auto"``'s rule: the two-level schedule for a nonlinear graph of one var
    with many nodes (a pose graph, a SLAM chain, a mesh), flooding otherwise.

    Linear models keep flooding (exact on trees, the grid's speed); a graph of
    several vars (a network's weights and hidden units) keeps flooding too:
    there a Gauss-Newton step in a coarse space is no better a direction than
    GBP's own messages, and measured learning runs were tuned on flooding."""
    nonlinear = any(not fp.affine for fp in plan.families)
    return (nonlinear and len(plan.variables) == 1 and plan.variables[0].n >= 2 * AGGREGATE_SIZE
            and dropout == 0.0 and supports_coarse(plan))


# ---------------------------------------------------------------------------
# The energy and its Gauss-Newton terms (jitted once per plan)


def _terms(plan: Plan, data: EngineData, x: tuple[Array, ...], origins: Any = None) -> tuple[Any, Any]:
    """Per family (not folded): Jacobians per slot, residuals, noise precision at ``x``;
    per var: the prior's information form (folded unary families included).
    A group var's ``x`` is its tangent step from ``origins`` (`charts.py`)."""
    data = fold_unary(plan, _with_affine(plan, data, x))
    fams = []
    for fp, fd in zip(plan.families, data.families, strict=True):
        if fp.folded:
            fams.append(None)
            continue
        _, r0, jacs = linearize_family(fp, plan, fd, list(x), origins)
        fams.append((jacs, r0, per_member(fd.precision, fp.n_members)))
    return tuple(fams), tuple((vd.prior_eta, vd.prior_lam) for vd in data.variables)


def _with_affine(plan: Plan, data: EngineData, x: tuple[Array, ...]) -> EngineData:
    from .messages import affine_terms

    terms = affine_terms(plan, data, list(x))
    return data._replace(families=tuple(fd._replace(affine=a) for fd, a in zip(data.families, terms, strict=True)))


def energy64(fams: Any, priors: Any, x: Any) -> float:
    """`_energy` in float64 from the terms `terms_jit` returned (float32 sums would hide
    the last digits a convergence test reads)."""
    total = 0.0
    for t in fams:
        if t is None:
            continue
        r, prec = np.asarray(t[1], np.float64), np.asarray(t[2], np.float64)
        quad = np.einsum("mr,mr->", r * prec, r) if prec.ndim == 2 else np.einsum("mr,mrs,ms->", r, prec, r)
        total += 0.5 * float(quad)
    for (eta, lam), xv in zip(priors, x, strict=True):
        xv = np.asarray(xv, np.float64)
        total += 0.5 * float(np.einsum("ni,nij,nj->", xv, np.asarray(lam, np.float64), xv))
        total -= float(np.sum(np.asarray(eta, np.float64) * xv))
    return total


def _energy(plan: Plan, data: EngineData, x: tuple[Array, ...], origins: Any = None) -> Array:
    """``0.5 sum r^T Lambda r`` over the factors plus the priors' ``0.5 x^T L x - eta^T x``."""
    fams, priors = _terms(plan, data, x, origins)
    total = jnp.zeros((), x[0].dtype)
    for t in fams:
        if t is None:
            continue
        _, r, prec = t
        quad = jnp.einsum("mr,mr->m", r * prec, r) if prec.ndim == 2 else jnp.einsum("mr,mrs,ms->m", r, prec, r)
        total = total + 0.5 * jnp.sum(quad)
    for (eta, lam), xv in zip(priors, x, strict=True):
        total = total + 0.5 * jnp.einsum("ni,nij,nj->", xv, lam, xv) - jnp.sum(eta * xv)
    return total


terms_jit = jax.jit(_terms, static_argnums=0)
energy_jit = jax.jit(_energy, static_argnums=0)


# ---------------------------------------------------------------------------
# Node layout, aggregates and the prolongation


@dataclass(frozen=True)
class Layout:
    """Every node of every var in one flat vector: node ``k`` of var ``v`` is global node
    ``node_off[v] + k`` with unknowns ``dof_off[v] + k * dim_v + (0..dim_v)``."""

    node_off: np.ndarray
    dof_off: np.ndarray
    dims: np.ndarray
    """Dimension of every global node."""
    node_dof: np.ndarray
    """First unknown of every global node."""
    slot_nodes: tuple[tuple[np.ndarray, ...] | None, ...]
    """Global node ids per family and slot (None for a folded family)."""

    @property
    def n_dofs(self) -> int:
        return int(self.node_dof[-1] + self.dims[-1])


def layout(plan: Plan, graph: GaussianGraph) -> Layout:
    """The flat node layout of ``plan`` (its graph's resolved slots give the node ids)."""
    n = np.array([vp.n for vp in plan.variables])
    d = np.array([vp.dim for vp in plan.variables])
    node_off = np.concatenate([[0], np.cumsum(n)[:-1]])
    dof_off = np.concatenate([[0], np.cumsum(n * d)[:-1]])
    dims = np.repeat(d, n)
    node_dof = np.concatenate([dof_off[v] + np.arange(vp.n) * vp.dim for v, vp in enumerate(plan.variables)])
    slots = []
    for fp, fam in zip(plan.families, graph.families, strict=True):
        if fp.folded:
            slots.append(None)
            continue
        slots.append(tuple(node_off[sp.var] + s.resolve(graph.var(s.var)).node_ids.astype(np.int64)
                           for sp, s in zip(fp.slots, fam.slots, strict=True)))
    return Layout(node_off, dof_off, dims, node_dof, tuple(slots))


def aggregates(lay: Layout, size: int) -> np.ndarray:
    """Aggregate id of every global node: connected groups of up to ``size`` nodes grown
    breadth first over the factors (nodes in order, each new aggregate from the
    first node not yet taken: its root). A pose graph's chain gives segments."""
    n = len(lay.dims)
    nbrs: list[list[int]] = [[] for _ in range(n)]
    for slots in lay.slot_nodes:
        if slots is None or len(slots) < 2:
            continue
        for a in range(len(slots)):
            for b in range(a + 1, len(slots)):
                for i, j in zip(slots[a].tolist(), slots[b].tolist(), strict=True):
                    if i != j:
                        nbrs[i].append(j)
                        nbrs[j].append(i)
    for lst in nbrs:
        lst.sort()
    agg = np.full(n, -1, np.int64)
    n_agg = 0
    for seed in range(n):
        if agg[seed] >= 0:
            continue
        agg[seed] = n_agg
        count, queue = 1, deque([seed])
        while queue and count < size:
            i = queue.popleft()
            for j in nbrs[i]:
                if agg[j] < 0 and count < size:
                    agg[j] = n_agg
                    count += 1
                    queue.append(j)
        n_agg += 1
    return agg


@dataclass(frozen=True)
class Aggregation:
    """Aggregates and the local positions of their nodes' unknowns (fixed for a run)."""

    agg: np.ndarray
    """Aggregate of every global node."""
    local: np.ndarray
    """First local unknown of every global node inside its aggregate (the root's is 0)."""
    width: int
    """Most unknowns in one aggregate."""
    root_dim: np.ndarray
    """Unknowns of every aggregate's root: its coarse unknowns."""
    coarse_off: np.ndarray
    """First coarse unknown of every aggregate."""

    @property
    def n_coarse(self) -> int:
        return int(self.coarse_off[-1] + self.root_dim[-1])


def aggregation(lay: Layout, size: int) -> Aggregation:
    """`aggregates` and their local unknown layout (the root first: it is each aggregate's smallest node)."""
    agg = aggregates(lay, size)
    order = np.lexsort((np.arange(len(agg)), agg))
    local = np.zeros(len(agg), np.int64)
    n_agg = int(agg.max()) + 1
    fill = np.zeros(n_agg, np.int64)
    root_dim = np.zeros(n_agg, np.int64)
    for i in order.tolist():
        a = agg[i]
        if fill[a] == 0:
            root_dim[a] = lay.dims[i]
        local[i] = fill[a]
        fill[a] += lay.dims[i]
    coarse_off = np.concatenate([[0], np.cumsum(root_dim)[:-1]])
    return Aggregation(agg, local, int(fill.max()), root_dim, coarse_off)


def _factor_blocks(lay: Layout, fams: Any) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per family: ``(global unknown ids [M, D], J^T Lambda J [M, D, D], J^T Lambda r [M, D], nodes [M, S])``."""
    out = []
    for slots, t in zip(lay.slot_nodes, fams, strict=True):
        if t is None:
            continue
        jacs, r, prec = (np.asarray(a, np.float64) for a in (jnp.concatenate(t[0], axis=-1), t[1], t[2]))
        lj = prec[:, :, None] * jacs if prec.ndim == 2 else np.einsum("mrs,msd->mrd", prec, jacs)
        h = np.einsum("mrd,mre->mde", jacs, lj)
        g = np.einsum("mrd,mr->md", lj, r)
        ids = np.concatenate([lay.node_dof[s][:, None] + np.arange(lay.dims[s[0]])[None, :] for s in slots], axis=1)
        out.append((ids, h, g, np.stack(slots, axis=1)))
    return out


def gauss_newton(lay: Layout, fams: Any, priors: Any, x: list[np.ndarray]) -> tuple[sp.csr_matrix, np.ndarray]:
    """The energy's Gauss-Newton Hessian ``H`` (sparse) and gradient ``g`` at ``x`` (float64)."""
    import scipy.sparse as sp

    n = lay.n_dofs
    rows, cols, vals = [], [], []
    g = np.zeros(n)
    for ids, h, gf, _ in _factor_blocks(lay, fams):
        rows.append(np.repeat(ids, ids.shape[1], axis=1).ravel())
        cols.append(np.tile(ids, (1, ids.shape[1])).ravel())
        vals.append(h.ravel())
        np.add.at(g, ids.ravel(), gf.ravel())
    for v, ((eta, lam), xv) in enumerate(zip(priors, x, strict=True)):
        lam = np.asarray(lam, np.float64)
        nv, d = xv.shape
        base = lay.dof_off[v] + np.arange(nv)[:, None] * d + np.arange(d)[None, :]
        rows.append(np.repeat(base, d, axis=1).ravel())
        cols.append(np.tile(base, (1, d)).ravel())
        vals.append(lam.ravel())
        g[base.ravel()] += (np.einsum("nij,nj->ni", lam, xv) - np.asarray(eta, np.float64)).ravel()
    hess = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return hess.tocsr(), g


def prolongation(lay: Layout, ag: Aggregation, fams: Any) -> sp.csr_matrix:
    """``P [n_dofs, n_coarse]``: each aggregate's root moves freely, its other nodes follow by the
    harmonic extension through the factors inside the aggregate (``x_I = -H_II^-1 H_IR x_R``)."""
    import scipy.sparse as sp

    n_agg, w = len(ag.root_dim), ag.width
    hint = np.zeros((n_agg, w, w))
    for ids, h, _, nodes in _factor_blocks(lay, fams):
        a = ag.agg[nodes]
        inside = np.all(a == a[:, :1], axis=1)
        if not np.any(inside):
            continue
        node_of_dof = np.concatenate([np.repeat(nodes[:, s:s + 1], lay.dims[nodes[0, s]], axis=1)
                                      for s in range(nodes.shape[1])], axis=1)
        first = np.searchsorted(lay.node_dof, ids, side="right") - 1
        loc = ag.local[node_of_dof] + (ids - lay.node_dof[first])
        m = np.nonzero(inside)[0]
        aa = a[m, 0]
        li, lj = loc[m][:, :, None], loc[m][:, None, :]
        np.add.at(hint, (aa[:, None, None], li, lj), h[m])
    used = np.zeros((n_agg, w), bool)
    node_local_dofs = ag.local[:, None] + np.arange(lay.dims.max())[None, :]
    valid = np.arange(lay.dims.max())[None, :] < lay.dims[:, None]
    used[np.repeat(ag.agg[:, None], node_local_dofs.shape[1], axis=1)[valid], node_local_dofs[valid]] = True
    scale = np.maximum(np.einsum("aii->a", hint) / np.maximum(used.sum(1), 1), 1e-300)
    hint += (np.eye(w)[None] * (1e-9 * scale)[:, None, None]) + np.where(~used, 1.0, 0.0)[:, :, None] * np.eye(w)
    # Extension of every aggregate's root (its first root_dim local unknowns):
    rmax = int(ag.root_dim.max())
    ext = np.zeros((n_agg, w, rmax))
    for r in np.unique(ag.root_dim):
        sel = np.nonzero(ag.root_dim == r)[0]
        h_ii = hint[sel][:, r:, r:]
        h_ir = hint[sel][:, r:, :r]
        ext[sel, :r, :r] = np.eye(r)
        if w > r:
            ext[sel, r:, :r] = -np.linalg.solve(h_ii, h_ir)
    rows, cols, vals = [], [], []
    d_all = lay.dims
    dmax = int(d_all.max())
    k = np.arange(dmax)[None, :]
    ok = k < d_all[:, None]
    fine = (lay.node_dof[:, None] + k)[ok]
    loc = (ag.local[:, None] + k)[ok]
    a_of = np.repeat(ag.agg[:, None], dmax, axis=1)[ok]
    for c in range(rmax):
        has = c < ag.root_dim[a_of]
        rows.append(fine[has])
        cols.append(ag.coarse_off[a_of[has]] + c)
        vals.append(ext[a_of[has], loc[has], c])
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(lay.n_dofs, ag.n_coarse))


# ---------------------------------------------------------------------------
# The correction, applied to the engine's state


@dataclass
class CoarseCorrector:
    """Everything fixed for one run's coarse corrections: the plan, the layout and the aggregates."""

    plan: Plan
    lay: Layout
    ag: Aggregation
    corrections: int = 0
    energies: list[float] = dataclasses.field(default_factory=list)
    """The energy at the start of every coarse correction (the bench's cost trace)."""
    times: list[float] = dataclasses.field(default_factory=list)
    disabled: bool = False
    """The run fell back to flooding (`FALLBACK_RATIO`)."""
    """`time.perf_counter` at each of those energies."""

    @classmethod
    def setup(cls, plan: Plan, graph: GaussianGraph, size: int | None = None) -> CoarseCorrector:
        lay = layout(plan, graph)
        return cls(plan, lay, aggregation(lay, size or AGGREGATE_SIZE))

    def stalled(self, rtol: float) -> bool:
        """The last `STALL_CYCLES` cycles changed the energy by less than ``rtol`` relative each:
        a fixed point, as far as the dtype can tell (GBP's belief-change test alone
        may never pass in float32 on a graph of large coordinates)."""
        e = self.energies
        if len(e) <= STALL_CYCLES:
            return False
        return all(abs(e[-k - 1] - e[-k]) <= rtol * abs(e[-k]) for k in range(1, STALL_CYCLES + 1))

    def step(self, data: EngineData, x: list[np.ndarray], origins: Any = None) -> list[np.ndarray] | None:
        """The line-searched coarse correction per var at the points ``x`` (None: no descent found).

        A group var's ``x`` and correction are tangent steps in the chart at
        ``origins`` (`charts.py`): the energy is evaluated at ``origin compose
        exp(x)``, and the prolongation is built from its tangent Jacobians."""
        import scipy.sparse as sp
        import scipy.sparse.linalg as spla

        xs = tuple(jnp.asarray(v) for v in x)
        fams, priors = terms_jit(self.plan, data, xs, origins)
        x64 = [np.asarray(v, np.float64) for v in x]
        hess, g = gauss_newton(self.lay, fams, priors, x64)
        p = prolongation(self.lay, self.ag, fams)
        hc = (p.T @ hess @ p).tocsc()
        hc = hc + sp.identity(hc.shape[0], format="csc") * (1e-12 * float(np.max(hc.diagonal())))
        try:
            dc = spla.spsolve(hc, -(p.T @ g))
        except RuntimeError:
            return None
        if not np.all(np.isfinite(dc)):
            return None
        delta = p @ dc
        e0 = energy64(fams, priors, x64)
        self.energies.append(e0)
        self.times.append(time.perf_counter())
        e = self.energies
        rises = len(e) > FALLBACK_CYCLES and all(e[-k] > e[-k - 1] * (1 + 1e-6) for k in range(1, FALLBACK_CYCLES + 1))
        if rises and e0 > FALLBACK_RATIO * min(e):
            # GBP's smoothing keeps undoing the corrections (it is no descent
            # method, and shifted messages can feed an oscillation): flooding
            # alone from here, which converges where loopy GBP does.
            self.disabled = True
            return None
        alpha = 1.0
        for _ in range(6):
            moved = self._split(x64, alpha * delta)
            e1 = energy64(*terms_jit(self.plan, data, tuple(jnp.asarray(v, x[0].dtype) for v in moved), origins), moved)
            if np.isfinite(e1) and e1 < e0:
                self.corrections += 1
                return [np.asarray(m - x0, x[0].dtype) for m, x0 in zip(moved, x64, strict=True)]
            alpha *= 0.5
        return None

    def _split(self, x64: list[np.ndarray], delta: np.ndarray) -> list[np.ndarray]:
        out = []
        for v, xv in enumerate(x64):
            off = int(self.lay.dof_off[v])
            out.append(xv + delta[off:off + xv.size].reshape(xv.shape))
        return out


def shift_state(plan: Plan, data: EngineData, state: EngineState, delta: list[np.ndarray]) -> EngineState:
    """``state`` with every node moved by ``delta``: its messages shifted by ``Lambda delta``,
    its linearization point and mean set to the moved mean (see the module doc)."""
    return _shift_jit(plan, data, state, tuple(jnp.asarray(d) for d in delta))


@functools.partial(jax.jit, static_argnums=0)
def _shift_jit(plan: Plan, data: EngineData, state: EngineState, delta: tuple[Array, ...]) -> EngineState:
    fams = []
    for fp, fd, fs in zip(plan.families, data.families, state.families, strict=True):
        if fp.folded:
            fams.append(fs)
            continue
        etas = []
        for s, sp_ in enumerate(fp.slots):
            lam = by_member(fs.lam[s], fp.n_members, 2)
            d = gather(delta[sp_.var], fd.ids[s], sp_, plan.variables[sp_.var])
            eta = by_member(fs.eta[s], fp.n_members, 1) + jnp.einsum("mij,mj->mi", lam, d)
            etas.append(eta.reshape(stored_shape(sp_, fp.n_members, (sp_.dim,))))
        fams.append(FamilyState(tuple(etas), fs.lam))
    variables = tuple(vs._replace(lin=vs.mean + d, mean=vs.mean + d, since=jnp.zeros_like(vs.since))
                      for vs, d in zip(state.variables, delta, strict=True))
    return state._replace(families=tuple(fams), variables=variables, min_delta=jnp.full_like(state.min_delta, jnp.inf),
                          grow=jnp.zeros_like(state.grow), conv_count=jnp.zeros_like(state.conv_count))
