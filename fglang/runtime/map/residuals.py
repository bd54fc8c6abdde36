"""BoundModel -> whitened residual blocks: the sparse least-squares path.

A model whose vars are all real and whose factors are all Gaussian or robust
with known scales has ``-log p(x) = sum_m rho(r_m(x)) + const``, where
``r_m`` is member m's whitened residual (``(lhs - mu) / sd``, or the
Cholesky-whitened ``lhs - mu`` of an ``mvnormal``) and ``rho`` is
``u^2/2`` (normal), Huber's loss, or the Student-t's ``(df+1)/2 log(1 +
u^2/df)``, elementwise as the densities are. Each family becomes one block:
its one-member function (``BoundFamily.evaluate_one``) as a function of the
member's unknowns, the global columns of those unknowns, and its robust
kind. A carried ``--prior`` becomes one more block per var (per node
``L^T (x_n - m_n)`` with ``L L^T`` the carried precision; for a group var
``L^T log(m_n^-1 x_n)``, the carried covariance being a tangent one).

Group-valued vars (``manifold``): a block reads its members' stored values
(``cols``, the storage layout) and is differentiated with respect to their
tangent steps (``tcols``, the tangent layout the solver works in).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from fglang.compiler.bind import BoundFamily, BoundModel, data_read
from fglang.runtime.carry import CarriedMarginal
from fglang.runtime.manifold import Segment, is_group, member_retraction, tangent_dim

LSQ_DISTS = ("normal", "mvnormal", "huber", "student_t")
_SCALES = ("sd", "cov", "prec", "chol", "df", "delta")


class ResidualBlock(NamedTuple):
    """One family's members as whitened residuals of their own unknowns.

    ``fn(shared, inputs_m, x_m)`` -> (r [R], param [R]): ``x_m`` the member's
    unknowns (flat, in ``cols`` order), ``param`` Huber's delta or the
    Student-t's df per element (ignored for Gaussian blocks)."""

    name: str
    cols: np.ndarray  # [M, K] index into the stored estimate of each of a member's numbers
    fn: Callable
    inputs: Any  # per-member arrays, leading axis M
    shared: Any  # the data the family reads (not per member)
    robust: str | None  # None | "huber" | "student_t"
    tcols: np.ndarray | None = None  # [M, Kt] the solver's (tangent) unknowns; None: the same as cols
    segments: tuple[Segment, ...] | None = None  # the member's group runs (None: all real)

    @property
    def solver_cols(self) -> np.ndarray:
        return self.cols if self.tcols is None else self.tcols


class Layout(NamedTuple):
    """Where each var's numbers sit in one flat vector (node-major): the stored
    estimate (``layout``) or the solver's tangent unknowns (``tangent_layout``)."""

    offsets: dict[str, int]
    n: int
    dims: dict[str, int]  # numbers per node

    def columns(self, bm: BoundModel, var: str, node_ids: np.ndarray) -> np.ndarray:
        d = self.dims[var]
        return self.offsets[var] + node_ids[..., None] * d + np.arange(d)


def layout(bm: BoundModel, tangent: bool = False) -> Layout:
    offsets, dims, n = {}, {}, 0
    for v in bm.variables.values():
        offsets[v.name] = n
        dims[v.name] = tangent_dim(v) if tangent else v.node_dim
        n += v.n_nodes * dims[v.name]
    return Layout(offsets, n, dims)


def tangent_layout(bm: BoundModel) -> Layout:
    return layout(bm, tangent=True)


def lsq_reason(bm: BoundModel, skip: set[str]) -> str | None:
    """Why the model is not a least-squares problem (None when it is)."""
    for v in bm.variables.values():
        if v.domain.kind != "real" and not is_group(v):
            return f"var '{v.name}' is {v.domain.describe()}"
    for fam in bm.families.values():
        f = fam.ir
        if f.name in skip or fam.n_members == 0:
            continue
        if f.kind == "potential":
            return f"'{f.name}' is a potential"
        if f.dist.name not in LSQ_DISTS:
            return f"factor '{f.name}' is {f.dist.name}"
        for name in f.arg_map:
            if name in _SCALES and f.arg_uses_vars(name):
                return f"the scale '{name}' of factor '{f.name}' depends on a var"
    return None


def _unpack(fam: BoundFamily, bm: BoundModel) -> Callable:
    """A member's flat unknowns -> its slot blocks (each [*block, *value])."""
    shapes = []
    for s in fam.slots:
        v = bm.variables[s.var]
        shapes.append(tuple(s.block_shape) + tuple(v.value_shape))
    sizes = [int(np.prod(sh, dtype=np.int64)) for sh in shapes]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)

    def unpack(x):
        return tuple(jnp.reshape(x[a:b], sh) for a, b, sh in zip(starts[:-1], starts[1:], shapes))

    return unpack


def _whiten(name: str, out: dict):
    """(whitened residual [R], robust parameter [R]) of one member."""
    args = out["args"]
    lhs, mu = jnp.asarray(out["lhs"]), jnp.asarray(args["mu"])
    e = lhs - mu
    if name == "mvnormal":
        e = jnp.ravel(e)
        if "prec" in args:
            chol = jnp.linalg.cholesky(jnp.asarray(args["prec"]))
            r = chol.T @ e
        elif "chol" in args:  # multi_normal_cholesky: r = L^-1 e
            import jax.scipy.linalg as jsl

            r = jsl.solve_triangular(jnp.tril(jnp.asarray(args["chol"])), e, lower=True)
        else:
            import jax.scipy.linalg as jsl

            r = jsl.solve_triangular(jnp.linalg.cholesky(jnp.asarray(args["cov"])), e, lower=True)
        return r, jnp.zeros_like(r)
    sd = jnp.asarray(args["sd"])
    shape = jnp.broadcast_shapes(e.shape, sd.shape)
    r = jnp.ravel(jnp.broadcast_to(e / sd, shape))
    param = {"huber": "delta", "student_t": "df"}.get(name)
    p = jnp.ravel(jnp.broadcast_to(jnp.asarray(args[param]), shape)) if param else jnp.zeros_like(r)
    return r, p


# (member function, slot layout, dist) -> block function: the same object for
# the same model shape, so the compiled linearization is reused across fits.
_FNS: dict[tuple, tuple[object, Callable]] = {}


def _block_fn(fam: BoundFamily, bm: BoundModel) -> Callable:
    one = fam.evaluate_one
    shapes = tuple((s.var, tuple(s.block_shape), bm.variables[s.var].value_shape) for s in fam.slots)
    key = (id(one), shapes, fam.ir.dist.name)
    hit = _FNS.get(key)
    if hit is not None and hit[0] is one:
        return hit[1]
    unpack = _unpack(fam, bm)
    name = fam.ir.dist.name

    def fn(shared, idx_m, x_m):
        return _whiten(name, one(shared, idx_m, unpack(x_m)))

    if len(_FNS) > 4096:
        _FNS.clear()
    _FNS[key] = (one, fn)
    return fn


def _cols(bm: BoundModel, fam: BoundFamily, lay: Layout) -> np.ndarray:
    m = fam.n_members
    cols = [lay.columns(bm, s.var, np.asarray(s.node_ids).reshape(m, -1)).reshape(m, -1) for s in fam.slots]
    return np.concatenate(cols, axis=1) if cols else np.zeros((m, 0), np.int64)


def family_block(bm: BoundModel, fam: BoundFamily, lay: Layout, data: dict,
                 tlay: Layout | None = None) -> ResidualBlock:
    sig = fam.ir.dist.name
    robust = sig if sig in ("huber", "student_t") else None
    inputs = {k: np.asarray(v) for k, v in fam.idx.items()}
    segments = member_retraction(fam, bm)
    tcols = _cols(bm, fam, tlay) if segments is not None and tlay is not None else None
    used = data_read(fam.ir)
    return ResidualBlock(fam.name, _cols(bm, fam, lay), _block_fn(fam, bm), inputs,
                         {k: v for k, v in data.items() if k in used}, robust, tcols, segments)


def _carried_fn(shared, inputs_m, x_m):
    r = inputs_m["chol_t"] @ (x_m - inputs_m["mean"])
    return r, jnp.zeros_like(r)


_CARRIED_GROUP: dict[str, Callable] = {}


def _carried_group_fn(kind: str) -> Callable:
    if kind not in _CARRIED_GROUP:
        from fglang.compiler.lie_jax import local

        def fn(shared, inputs_m, x_m):
            r = inputs_m["chol_t"] @ local(kind, x_m.reshape(inputs_m["mean"].shape), inputs_m["mean"])
            return r, jnp.zeros_like(r)

        _CARRIED_GROUP[kind] = fn
    return _CARRIED_GROUP[kind]


def carried_block(bm: BoundModel, name: str, c: CarriedMarginal, lay: Layout,
                  tlay: Layout | None = None) -> ResidualBlock:
    v = bm.variables[name]
    d = tangent_dim(v)
    lam = np.linalg.inv(c.cov + 1e-12 * np.eye(d))
    chol_t = np.swapaxes(np.linalg.cholesky(lam), -1, -2)
    cols = lay.columns(bm, name, np.arange(v.n_nodes))
    inputs = {"chol_t": chol_t, "mean": np.asarray(c.mean, np.float64).reshape((v.n_nodes,) + v.value_shape)}
    if not is_group(v):
        inputs["mean"] = inputs["mean"].reshape(v.n_nodes, d)
        return ResidualBlock(f"{name}__prior", cols, _carried_fn, inputs, {}, None)
    seg = (Segment(v.domain.kind, 1, v.value_shape, d),)
    tcols = tlay.columns(bm, name, np.arange(v.n_nodes))
    return ResidualBlock(f"{name}__prior", cols, _carried_group_fn(v.domain.kind), inputs, {}, None, tcols, seg)


def blocks(
    bm: BoundModel, carried: dict[str, CarriedMarginal], skip_families: set[str] = frozenset()
) -> tuple[Layout, tuple[ResidualBlock, ...]]:
    """Every residual block of a least-squares model (``lsq_reason`` is None)."""
    lay, tlay = layout(bm), tangent_layout(bm)
    data = dict(bm.data)
    out = []
    for fam in bm.families.values():
        if fam.name in skip_families or fam.n_members == 0:
            continue
        if fam.ir.prior_of is not None and fam.ir.prior_of in carried:
            continue
        out.append(family_block(bm, fam.members or fam, lay, data, tlay))
    out += [carried_block(bm, k, c, lay, tlay) for k, c in carried.items()]
    return lay, tuple(out)
