"""Residual blocks -> the Gauss-Newton system ``J^T W J``, ``J^T W r`` on a
fixed sparse pattern: the least-squares path's one jitted linearization.

Why per member, not per model: a member's Jacobian is a small dense
``[R, K]`` block (``jax.vmap`` of ``jax.jacfwd`` over members, one call per
family), its ``K x K`` contribution lands on positions of the upper triangle
that are computed once per model shape with NumPy, and the scatter-add is
part of the same compiled function. The pattern also holds every node's own
``d x d`` block, so the Laplace step finds each node's covariance in the
selected inverse.

A block over group-valued vars is differentiated with respect to its
members' tangent steps at 0 (``r(x compose exp(delta))``, see ``manifold``)
and scatters into the tangent columns, so ``J^T W J`` is the system for the
step ``delta`` that ``retract`` then applies.

Robust blocks are reweighted at every linearization (IRLS): with ``w =
rho'(u) / u`` the gradient ``J^T W r`` is the robust cost's exact gradient,
so LM's fixed point is the robust optimum.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fglang.runtime.manifold import retract_member, retraction
from fglang.runtime.map.residuals import Layout, ResidualBlock, tangent_layout
from fglang.runtime.map.shard import pad_rows, padded, specs
from fglang.runtime.map.solve import Pattern, upper_pattern


class Scatter(NamedTuple):
    """Where each block's gradient and Hessian entries go (per model shape)."""

    cols: tuple[np.ndarray, ...]  # per block [M, K]
    hpos: tuple[np.ndarray, ...]  # per block [M, K, K]: data position, or nnz (dropped: lower triangle)


def node_pairs(bm, lay: Layout | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every (row, col) inside every node's own block (of the solver's tangent layout)."""
    lay = tangent_layout(bm) if lay is None else lay
    rows, cols = [], []
    for v in bm.variables.values():
        d = lay.dims[v.name]
        base = lay.offsets[v.name] + np.arange(v.n_nodes)[:, None, None] * d
        rows.append(np.broadcast_to(base + np.arange(d)[:, None], (v.n_nodes, d, d)).ravel())
        cols.append(np.broadcast_to(base + np.arange(d)[None, :], (v.n_nodes, d, d)).ravel())
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(cols)


def build_scatter(blocks: tuple[ResidualBlock, ...], extra: tuple[np.ndarray, np.ndarray], n: int
                  ) -> tuple[Pattern, Scatter]:
    bc = [b.solver_cols for b in blocks]
    rows = [np.broadcast_to(c[:, :, None], c.shape + c.shape[1:]).ravel() for c in bc]
    cols = [np.broadcast_to(c[:, None, :], c.shape[:1] + c.shape[1:] * 2).ravel() for c in bc]
    all_r = np.concatenate(rows + [extra[0]]) if rows else extra[0]
    all_c = np.concatenate(cols + [extra[1]]) if cols else extra[1]
    pattern, pos = upper_pattern(all_r.astype(np.int64), all_c.astype(np.int64), n)
    hpos, start = [], 0
    for b, r, c in zip(blocks, rows, cols):
        p = pos[start : start + r.size].copy()
        start += r.size
        p[r > c] = pattern.nnz  # each symmetric pair of entries once
        hpos.append(p.reshape(b.solver_cols.shape + b.solver_cols.shape[1:]).astype(np.int32))
    return pattern, Scatter(tuple(b.solver_cols.astype(np.int32) for b in blocks), tuple(hpos))


def _rho_weight(kind: str | None, r, p):
    """Per element: the cost rho(u) and the IRLS weight rho'(u)/u."""
    if kind is None:
        return 0.5 * r * r, jnp.ones_like(r)
    if kind == "huber":
        a = jnp.abs(r)
        m = jnp.minimum(a, p)
        return m * (a - 0.5 * m), jnp.where(a <= p, 1.0, p / jnp.where(a <= p, 1.0, a))
    return 0.5 * (p + 1.0) * jnp.log1p(r * r / p), (p + 1.0) / (p + r * r)


def _curvature(kind: str | None, r, p):
    """Per element: rho''(u), the robust cost's own curvature, for the Laplace
    Hessian ``J^T diag(rho'') J`` at the mode. The IRLS weight ``rho'(u)/u``
    is what LM needs (its gradient is exact), but as curvature it is wrong:
    a Huber outlier past ``delta`` has ``rho'' = 0`` (the cost is linear
    there) where IRLS still counts ``delta/|u|``, and a Student-t residual
    past ``sqrt(df)`` bends the cost down. With residuals linear in the
    unknowns this is the cost's exact Hessian."""
    if kind is None:
        return jnp.ones_like(r)
    if kind == "huber":
        return jnp.where(jnp.abs(r) <= p, 1.0, 0.0).astype(r.dtype)
    return (p + 1.0) * (p - r * r) / jnp.square(p + r * r)


def _jacobian(fn, segments, kt: int):
    """A member's ``[R, K]`` Jacobian: w.r.t. its numbers, or for a block over
    group vars w.r.t. its tangent step at 0 (``kt`` unknowns)."""
    if segments is None:
        return jax.jacfwd(lambda s, i, v: fn(s, i, v)[0], argnums=2)
    step = retract_member(segments)

    def jac(s, i, v):
        return jax.jacfwd(lambda d: fn(s, i, step(v, d))[0])(jnp.zeros((kt,), v.dtype))

    return jac


def _make(fns: tuple, kinds: tuple, n: int, nnz: int, segments: tuple = (), kts: tuple = (), mesh: Any = None):
    """The jitted (cost, linearize). ``valid`` weighs each member's cost (0 for
    the padding `shard` adds; its scatter targets are out of range). With a
    ``mesh`` both run per device on its members and sum over the mesh.
    ``curvature`` (a traced bool, so one compiled program serves both) weighs
    the Hessian by ``rho''`` (``_curvature``, for the Laplace step) instead of
    the IRLS weights (for LM): the same for Gaussian blocks."""
    segments = segments or (None,) * len(fns)
    kts = kts or (0,) * len(fns)

    def residuals(fn, shared, inputs, xm):
        return jax.vmap(fn, in_axes=(None, 0, 0))(shared, inputs, xm)

    def cost(x, shared, inputs, cols, valid):
        total = jnp.zeros((), x.dtype)
        for fn, kind, sh, inp, c, v in zip(fns, kinds, shared, inputs, cols, valid):
            r, p = residuals(fn, sh, inp, x[c])
            total = total + jnp.sum(_rho_weight(kind, r, p)[0] * v[:, None])
        return total

    def linearize(x, shared, curvature, inputs, cols, tcols, hpos, valid):
        total = jnp.zeros((), x.dtype)
        g = jnp.zeros((n,), x.dtype)
        h = jnp.zeros((nnz,), x.dtype)
        for fn, kind, seg, kt, sh, inp, c, tc, hp, v in zip(fns, kinds, segments, kts, shared, inputs, cols, tcols,
                                                             hpos, valid):
            xm = x[c]
            r, p = residuals(fn, sh, inp, xm)
            jac = jax.vmap(_jacobian(fn, seg, kt), in_axes=(None, 0, 0))(sh, inp, xm)  # [M, R, K]
            rho, w = _rho_weight(kind, r, p)
            total = total + jnp.sum(rho * v[:, None])
            g = g.at[tc].add(jnp.einsum("mrk,mr->mk", jac, w * r), mode="drop")
            hm = jnp.einsum("mrk,mr,mrl->mkl", jac, jnp.where(curvature, _curvature(kind, r, p), w), jac)
            h = h.at[hp].add(hm, mode="drop")
        return total, g, h

    if mesh is not None:
        from fglang.runtime.map.shard import over_members

        cost, linearize = over_members(mesh, cost, 3, 2), over_members(mesh, linearize, 5, 3)
    return jax.jit(cost), jax.jit(linearize)


# compiled functions per model shape (the block functions are cached per shape too)
_COMPILED: dict[tuple, tuple[Any, Any]] = {}


def residual_count(blocks: tuple[ResidualBlock, ...]) -> int:
    """How many scalar residuals the blocks hold (members x each member's
    residual length, from its function's output shape: nothing is evaluated).
    With ``n`` unknowns, a Gaussian model's ``2 cost`` at its optimum is
    chi-square with ``residuals - n`` degrees of freedom (fit.py's local-minimum test)."""
    total = 0
    for b in blocks:
        m = int(b.cols.shape[0])
        if m == 0:
            continue
        one = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a)[1:], np.asarray(a).dtype), b.inputs)
        out = jax.eval_shape(b.fn, b.shared, one, jax.ShapeDtypeStruct((b.cols.shape[1],), jnp.float32))
        total += m * int(np.prod(out[0].shape, dtype=np.int64))
    return total


class LeastSquares:
    """The least-squares path's problem: cost, and (cost, gradient, Hessian data)."""

    kind = "sparse"

    def __init__(self, blocks: tuple[ResidualBlock, ...], lay: Layout, pattern: Pattern, scatter: Scatter,
                 dtype: Any, bm: Any = None, mesh: Any = None):
        self.blocks, self.layout, self.pattern, self.dtype = blocks, lay, pattern, dtype
        # the solver's unknowns: tangent steps (as many as the stored numbers when every var is real)
        self.tangent = tangent_layout(bm) if bm is not None else lay
        self.n = self.tangent.n
        self.mesh = mesh if mesh is not None and mesh.size > 1 else None
        self._retract = retraction(bm) if bm is not None else (lambda x, dx: x + dx)
        segs = tuple(b.segments for b in blocks)
        kts = tuple(b.solver_cols.shape[1] for b in blocks)
        key = (tuple(b.fn for b in blocks), tuple(b.robust for b in blocks), self.n, pattern.nnz, str(dtype), segs,
               kts, self.mesh)
        if key not in _COMPILED:
            if len(_COMPILED) > 256:
                _COMPILED.clear()
            _COMPILED[key] = _make(tuple(b.fn for b in blocks), tuple(b.robust for b in blocks), self.n,
                                   pattern.nnz, segs, kts, self.mesh)
        self._cost, self._lin = _COMPILED[key]
        self.robust = any(b.robust is not None for b in blocks)
        self.residuals = residual_count(blocks)

        def cast(a):
            a = np.asarray(a)
            return np.asarray(a, dtype) if np.issubdtype(a.dtype, np.floating) else a

        # per block: its members (padded to a whole number per device on a mesh, `shard`)
        rows = [b.cols.shape[0] if self.mesh is None else padded(b.cols.shape[0], self.mesh.size) for b in blocks]
        shared = tuple(jax.tree_util.tree_map(cast, b.shared) for b in blocks)
        split = (
            tuple(jax.tree_util.tree_map(lambda a, m=m: pad_rows(cast(a), m), b.inputs) for b, m in zip(blocks, rows)),
            tuple(pad_rows(b.cols, m) for b, m in zip(blocks, rows)),
            tuple(pad_rows(c, m, self.n) for c, m in zip(scatter.cols, rows)),
            tuple(pad_rows(h, m, pattern.nnz) for h, m in zip(scatter.hpos, rows)),
            tuple(pad_rows(np.ones(b.cols.shape[0], dtype), m, 0) for b, m in zip(blocks, rows)),
        )
        if self.mesh is None:
            self._shared, (self._inputs, self._cols, self._tcols, self._hpos, self._valid) = jax.tree_util.tree_map(
                jnp.asarray, (shared, split))
            self._rep = None
        else:
            self._rep, along = specs(self.mesh)
            self._shared = jax.device_put(shared, self._rep)
            self._inputs, self._cols, self._tcols, self._hpos, self._valid = jax.device_put(split, along)
        self.sharded = [b.name for b in blocks] if self.mesh is not None else []

    def _x(self, x: np.ndarray) -> Any:
        x = np.asarray(x, self.dtype)
        return jnp.asarray(x) if self._rep is None else jax.device_put(x, self._rep)

    def _flag(self, curvature: bool) -> Any:
        """``linearize``'s traced switch to the Laplace curvature (a value, not a constant: one program)."""
        f = np.asarray(curvature)
        return jnp.asarray(f) if self._rep is None else jax.device_put(f, self._rep)

    def cost(self, x: np.ndarray) -> float:
        return float(self._cost(self._x(x), self._shared, self._inputs, self._cols, self._valid))

    def linearize(self, x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        c, g, h = self._lin(self._x(x), self._shared, self._flag(False), self._inputs, self._cols, self._tcols,
                            self._hpos, self._valid)
        return float(c), np.asarray(g, np.float64), np.asarray(h, np.float64)

    def laplace_hessian(self, x: np.ndarray) -> np.ndarray:
        """The Hessian data for the Laplace covariance at the mode ``x``: the
        Gauss-Newton ``J^T W J`` with robust blocks weighted by their cost's
        curvature ``rho''`` (``_curvature``), not by LM's IRLS weights (only
        robust models differ: the Gaussian ones reuse ``linearize``)."""
        if not self.robust:
            return self.linearize(x)[2]
        _, _, h = self._lin(self._x(x), self._shared, self._flag(True), self._inputs, self._cols, self._tcols,
                            self._hpos, self._valid)
        return np.asarray(h, np.float64)

    def compiled_text(self, x: np.ndarray) -> str:
        """The compiled linearization's HLO at ``x`` (what `bench/scale_out.py` reads the collectives from)."""
        args = (self._x(x), self._shared, self._flag(False), self._inputs, self._cols, self._tcols, self._hpos,
                self._valid)
        return self._lin.lower(*args).compile().as_text()

    def retract(self, x: np.ndarray, dx: np.ndarray) -> np.ndarray:
        """The estimate after a step: ``x + dx``, or ``x compose exp(dx)`` per group node."""
        return self._retract(x, dx)

    def diagonal(self, h: np.ndarray) -> np.ndarray:
        return h[self.pattern.diag]

    def damped(self, h: np.ndarray, add: np.ndarray) -> np.ndarray:
        out = h.copy()
        out[self.pattern.diag] += add
        return out
