"""The static plan of a GBP run and its setup from a `GaussianGraph` (NumPy only).

The plan (`Plan`: `VarPlan`, `FamilyPlan`, `SlotPlan`) is everything about a
graph that changes the traced program: shapes, residual functions, slot
layouts, options such as the schedule. It is hashable and is the compiled
chunk's static argument (the jit cache key). The numbers -- member data,
priors, settings -- go into `state.EngineData` instead, so new data of the
same shapes reuse the compiled chunk.

Setup uses NumPy only: every eager jnp op would compile a kernel of its own.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .affine import is_affine, reads_consts
from .graph import (
    GaussianFamily,
    GaussianGraph,
    grid_slice_shape,
    normalize_grid_slice,
)
from .state import FamilyData, VarData

Array = jax.Array


# ---------------------------------------------------------------------------
# Static plan (hashable: the jit cache key)


@dataclass(frozen=True)
class SlotPlan:
    var: int
    dim: int
    grid: tuple[tuple[int, int, int], ...] | None


def stored_shape(sp: SlotPlan, n_members: int, tail: tuple[int, ...]) -> tuple[int, ...]:
    """Shape a slot's messages are kept in between iterations.

    A grid slot keeps its block's shape (``[H, W-1, d]`` for ``x[i, j+1]``), not
    the flat member axis: XLA:CPU loops over a fusion's output shape, and with
    the block shape every read of a shifted belief slice is contiguous along the
    last grid axis (vectorized) instead of a div/mod of a flat member index per
    element.
    """
    return (grid_slice_shape(sp.grid) if sp.grid is not None else (n_members,)) + tail


def by_member(msg: Array, n_members: int, tail_ndim: int) -> Array:
    """A stored message array as ``[M, *tail]`` (a free reshape)."""
    return msg.reshape((n_members,) + msg.shape[msg.ndim - tail_ndim :])


@dataclass(frozen=True)
class FamilyPlan:
    name: str
    n_members: int
    slots: tuple[SlotPlan, ...]
    residual: Callable[..., Any]
    res_dim: int
    full_precision: bool
    robust: str | None
    sparsity: str | None
    batched_inputs: bool
    affine: bool = False
    uniform: bool = False
    """Affine with the same Jacobian and target for every member (its residual
    reads no per-member data): `messages.affine_terms` keeps them as one row."""

    @property
    def folded(self) -> bool:
        """A fixed unary factor (affine, one slot, no reweighting): its message is
        its own information form, constant for the whole run, so it is added to
        the node priors once (`messages.fold_unary`) instead of being sent every iteration."""
        return self.affine and len(self.slots) == 1 and self.robust is None and self.sparsity is None


@dataclass(frozen=True)
class VarPlan:
    name: str
    n: int
    dim: int
    grid_shape: tuple[int, ...]
    affine_only: bool = False
    """Every family touching it is affine: where it is linearized does not
    matter, so the engine keeps no re-linearization bookkeeping for it."""
    group: str | None = None
    """A group var's Lie group (`graph.VariableBlock.group`): ``dim`` is its
    tangent dimension and the engine moves its chart (`charts.py`)."""
    storage: tuple[int, ...] = ()
    """A group var's stored value shape per node (``(7,)`` for a pose3)."""


@dataclass(frozen=True)
class Plan:
    variables: tuple[VarPlan, ...]
    families: tuple[FamilyPlan, ...]
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
# Setup


class FamilyValueError(ValueError):
    """A family's precision, robust or sparsity parameter is invalid in the
    run's dtype. ``fit`` has checked the data's values in float64
    (runtime/values.py); what is left is a value float32 cannot hold (a sd
    of 1e-30 is a precision of 1e60, past float32's 3.4e38; a huber delta
    of 1e-308 is 0 there), and ``fit_gbp`` names the factor and the dtype."""

    def __init__(self, family: str, what: str):
        super().__init__(f"family {family!r}: {what}")
        self.family, self.what = family, what


def np_float(x: Any, dtype: Any, what: str) -> np.ndarray:
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
    p = np_float(fam.precision, dtype, f"family {fam.name!r}: precision")
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
        raise FamilyValueError(fam.name, "its precision (1/sd^2) is not finite, or negative")
    if full:
        # A noise information matrix must be symmetric PSD: an indefinite
        # "factor" is no Gaussian, and GBP on it can blow up at the first step.
        if not np.allclose(p, np.swapaxes(p, -1, -2), rtol=1e-6, atol=0.0):
            raise FamilyValueError(fam.name, "its full precision matrices are not symmetric")
        eig = np.linalg.eigvalsh(p.astype(np.float64))
        if np.any(eig[..., 0] < -1e-8 * np.maximum(np.abs(eig[..., -1]), 1e-300)):
            raise FamilyValueError(fam.name, "its full precision matrices are not positive semi-definite")
    if p.shape[0] > 1 and np.all(p == p[:1]):
        p = p[:1]  # one row for all members (see `messages.per_member`)
    return np.ascontiguousarray(p), full


def _with_shared(residual: Callable[..., Any], shared: Any, inputs: Any, *xs: Any) -> Any:
    """A residual that also reads unbatched ``shared`` data (see GaussianFamily.shared)."""
    return residual((inputs, shared), *xs)


def reading_shared(residual: Callable[..., Any], shared: Any) -> Callable[..., Any]:
    """The family's residual as ``f(inputs, *xs)``, with its ``shared`` data bound if it has any."""
    return residual if shared is None else functools.partial(_with_shared, residual, shared)


_TRACED: dict[Any, tuple[int, bool, bool]] = {}
"""`_residual_dim`'s answers by residual function and shapes: a second fit of new
data of the same shapes traces no residual (issue 18: three traces per family
were most of a warm `run_gbp`'s setup)."""

_TRACED_MAX = 256


def _shapes(tree: Any) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((np.shape(a), str(getattr(a, "dtype", type(a).__name__))) for a in leaves)


def _residual_dim(
    fam: GaussianFamily, graph: GaussianGraph, inputs: Any, batched: bool, dtype: Any
) -> tuple[int, bool, bool]:
    """R of a family, whether its residual is affine and whether it is affine
    and the same for every member (`FamilyPlan.uniform`), from one member's shapes
    (remembered per residual function and shapes, `_TRACED`)."""
    xs = [jax.ShapeDtypeStruct(graph.var(s.var).storage, dtype) for s in fam.slots]
    one = (
        jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), inputs)
        if batched
        else inputs
    )
    try:
        key = (fam.residual, batched, _shapes(one), _shapes(fam.shared), tuple(x.shape for x in xs),
               np.dtype(dtype).str, _values(fam.shared))
        hash(key)
    except TypeError:  # an unhashable residual or data: trace every time
        return _trace_residual(fam, one, xs, batched)
    if key not in _TRACED:
        if len(_TRACED) >= _TRACED_MAX:
            _TRACED.pop(next(iter(_TRACED)))
        _TRACED[key] = _trace_residual(fam, one, xs, batched)
    return _TRACED[key]


def _values(tree: Any) -> Any:
    """Shared data are constants of the trace (a residual may branch on them in Python):
    a digest of their values is part of the key."""
    return tuple(hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()
                 for a in jax.tree_util.tree_leaves(tree))


def _trace_residual(fam: GaussianFamily, one: Any, xs: list[Any], batched: bool) -> tuple[int, bool, bool]:
    try:
        res = reading_shared(fam.residual, fam.shared)
        out = jax.eval_shape(lambda i, *x: jnp.reshape(res(i, *x), (-1,)), one, *xs)
    except Exception as e:  # noqa: BLE001 - re-raised with the family's name
        raise ValueError(f"family {fam.name!r}: residual failed on one member's shapes: {e}") from e
    affine = is_affine(res, one, xs)
    return int(out.shape[0]), affine, affine and (not batched or not reads_consts(res, one, xs))


def node_array(x: Any, n: int, d: int, what: str, dtype: Any) -> np.ndarray:
    a = np_float(x, dtype, what)
    if a.size == n * d:
        return a.reshape(n, d)
    if a.size == d:
        return np.broadcast_to(a.reshape(1, d), (n, d)).copy()
    if a.size == 1:
        return np.full((n, d), a.reshape(()), dtype)
    raise ValueError(f"{what}: got shape {a.shape}; expected [{n}, {d}] (or broadcastable)")


def prior_lam_array(x: Any, n: int, d: int, what: str, dtype: Any) -> np.ndarray:
    """Prior precisions as ``[n, d, d]``: from ``[n, d, d]``, ``[d, d]`` or diagonals."""
    a = np_float(x, dtype, what)
    if a.shape == (n, d, d) or (a.shape == (d, d) and d > 1 and n != d):
        return np.broadcast_to(a, (n, d, d)).copy()
    diag = node_array(a, n, d, what, dtype)
    return diag[:, :, None] * np.eye(d, dtype=dtype)


def build_plan(
    graph: GaussianGraph,
    *,
    dtype: Any,
    schedule: str,
    dropout: float,
    chunk: int,
) -> tuple[Plan, tuple[FamilyData, ...], list[float]]:
    """Validate the graph and split it into a hashable plan and NumPy member data.

    The families' ``floor`` is left unset: it depends on the var floors, which
    depend on the priors (`variable_data`).

    Also returns a precision scale per var (the member-weighted mean of the
    diagonal precisions of the non-sparsity families touching it), which sets
    the flat-prior stand-in and the pivot floors relative to the model's units
    without compiling anything.
    """
    if schedule not in ("flooding", "sequential"):
        raise ValueError(f"schedule must be 'flooding' or 'sequential', got {schedule!r}")
    vplans = tuple(VarPlan(v.name, v.n_nodes, v.dim, v.grid_shape, group=v.group,
                           storage=v.storage if v.group is not None else ()) for v in graph.variables)
    scale_sum = np.zeros(len(vplans))
    scale_cnt = np.zeros(len(vplans))
    fplans = []
    fdata: list[FamilyData] = []
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
            slots.append(SlotPlan(graph.var_index(s.var), block.dim, grid))
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
        if any(vplans[sp.var].group is not None for sp in slots):
            # Its residual reads `origin compose exp(delta)`, and the origins move (`charts.py`).
            affine = uniform = False
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
            rob = np.broadcast_to(np_float(fam.robust[1], dtype, f"family {fam.name!r}: robust"), (fam.n_members,))
            if np.any(rob <= 0):
                raise FamilyValueError(fam.name, "its robust parameter is not positive")
        sparse = None
        if fam.sparsity is not None:
            sparse = tuple(
                np.broadcast_to(np_float(p, dtype, f"family {fam.name!r}: sparsity"), (fam.n_members, r))
                for p in fam.sparsity[1:]
            )
            if any(np.any(p <= 0) for p in sparse):
                raise FamilyValueError(fam.name, "its sparsity parameters are not positive")
        fplans.append(
            FamilyPlan(
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
        fdata.append(
            FamilyData(
                ids=tuple(ids),
                inputs=inputs if batched else None,
                shared=None if fam.shared is None else _as_inputs(fam.shared, dtype),
                precision=prec,
                robust=rob,
                sparsity=sparse,
            )
        )
    nonaffine = {sp.var for fp in fplans if not fp.affine for sp in fp.slots}
    nonaffine |= {v for v, vp in enumerate(vplans) if vp.group is not None}
    vplans = tuple(dataclasses.replace(vp, affine_only=v not in nonaffine) for v, vp in enumerate(vplans))
    plan = Plan(
        vplans,
        tuple(fplans),
        schedule == "sequential",
        dropout > 0,
        int(chunk),
        1 if dropout == 0 else 10,
    )
    scales = [
        float(sm / ct) if ct > 0 and sm > 0 and np.isfinite(sm) else 1.0
        for sm, ct in zip(scale_sum, scale_cnt, strict=True)
    ]
    return plan, tuple(fdata), scales



def variable_data(
    plan: Plan,
    init: Mapping[str, Any],
    prior: Mapping[str, tuple[Any, Any]],
    scales: list[float],
    flat_reg: float,
    dtype: Any,
) -> tuple[list[np.ndarray], tuple[VarData, ...], list[float]]:
    """Every var's first linearization point, priors and floors.

    A var with a ``prior`` keeps it (its floor is ``flat_reg`` times the
    prior's mean diagonal); one without gets the flat-prior stand-in of
    precision ``flat_reg * scale`` (`engine.DEFAULT_FLAT_REG`). The points are
    ``init``, else the prior mean, else 0. Also returns the floors as Python
    floats (a family's floor is the smallest of its vars', `family_floors`).
    """
    dt = dtype
    lin0, variables, floors = [], [], []
    for v, vp in enumerate(plan.variables):
        if vp.group is not None and vp.name in prior:
            raise ValueError(f"prior of {vp.name!r}: a {vp.group} var takes no prior in information form "
                             "(a Gaussian over stored values is not one over the group); write it as a factor")
        if vp.name in prior:
            pe = node_array(prior[vp.name][0], vp.n, vp.dim, f"prior eta of {vp.name!r}", dt)
            pl = prior_lam_array(prior[vp.name][1], vp.n, vp.dim, f"prior lam of {vp.name!r}", dt)
            pscale = float(np.mean(np.diagonal(pl, axis1=-2, axis2=-1)))
            floor = flat_reg * (pscale if np.isfinite(pscale) and pscale > 0 else scales[v])
            reg = 0.0
        else:
            reg = floor = flat_reg * scales[v]
            pe = np.zeros((vp.n, vp.dim), dt)
            pl = np.broadcast_to(reg * np.eye(vp.dim, dtype=dt), (vp.n, vp.dim, vp.dim))
        if vp.group is not None:  # its init is the chart origin (`chart_origins`): delta = 0
            x = np.zeros((vp.n, vp.dim), dt)
        elif vp.name in init:
            x = node_array(init[vp.name], vp.n, vp.dim, f"init of {vp.name!r}", dt)
        elif vp.name in prior:
            x = np.linalg.solve(pl + floor * np.eye(vp.dim), pe[..., None])[..., 0].astype(dt)
        else:
            x = np.zeros((vp.n, vp.dim), dt)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"init of {vp.name!r} is not finite")
        lin0.append(x)
        variables.append(VarData(pe, pl, np.asarray(floor, dt), np.asarray(reg, dt)))
        floors.append(floor)
    return lin0, tuple(variables), floors


def chart_origins(plan: Plan, init: Mapping[str, Any], dtype: Any) -> list[np.ndarray]:
    """Every var's first chart origins (`state.VarState.origin`): a group var's
    ``init`` as stored values ``[n, *storage]`` (quaternions normalized), else
    the group's identity; ``[0]`` for a real var."""
    out = []
    for vp in plan.variables:
        if vp.group is None:
            out.append(np.zeros((0,), dtype))
            continue
        size = int(np.prod(vp.storage, dtype=np.int64))
        if vp.name in init:
            x = node_array(init[vp.name], vp.n, size, f"init of {vp.name!r}", np.float64).copy()
        else:
            x = np.zeros((vp.n, size))
            if vp.group in ("rot3", "pose3"):
                x[:, -1] = 1.0  # qw of the identity
        if not np.all(np.isfinite(x)):
            raise ValueError(f"init of {vp.name!r} is not finite")
        if vp.group in ("rot3", "pose3"):
            norm = np.linalg.norm(x[:, -4:], axis=-1, keepdims=True)
            if np.any(norm == 0):
                raise ValueError(f"init of {vp.name!r}: a quaternion [qx, qy, qz, qw] is zero")
            x[:, -4:] /= norm
        out.append(np.ascontiguousarray(x.reshape((vp.n,) + vp.storage).astype(dtype)))
    return out


def family_floors(
    plan: Plan, families: tuple[FamilyData, ...], floors: list[float], dtype: Any
) -> tuple[FamilyData, ...]:
    """The families with their pivot floor set: the smallest floor of their vars."""
    return tuple(
        fd._replace(floor=np.asarray(min(floors[sp.var] for sp in fp.slots), dtype))
        for fd, fp in zip(families, plan.families, strict=True)
    )
