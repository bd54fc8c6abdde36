"""IR + data -> BoundModel: validated data, concrete sizes, index arrays.

Everything that can go wrong with data is found here, before any inference:
missing keys, wrong shapes or dtypes, NaN/inf, values outside a declared
domain, and any index (into data or into a var's nodes) outside its array.
Index arrays are made with NumPy in one vectorized pass per family; the JAX
function that evaluates a family is made here too, closed over the sizes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from fglang.compiler import ast as A
from fglang.compiler.check import CheckedModel, DataInfo, names_in
from fglang.compiler.ir import Derived, FactorFamily, ModelIR, SlotPattern, SlotRef, Variable, walk
from fglang.compiler.static import Static, static_value
from fglang.compiler.types import Domain
from fglang.errors import TOO_DEEP, TOO_DEEP_HINT, Diagnostic, DiagnosticSink, FgError, recursion_headroom

if TYPE_CHECKING:
    from fglang.compiler.lower_jax import Evaluator  # JAX: imported only when a model is bound

_FLOAT = np.float64


@dataclass(frozen=True)
class BoundVariable:
    name: str
    node_shape: tuple[int, ...]
    value_shape: tuple[int, ...]
    domain: Domain
    prior: str | None
    span: A.Span = field(repr=False)

    @property
    def n_nodes(self) -> int:
        return int(np.prod(self.node_shape, dtype=np.int64))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.node_shape + self.value_shape

    @property
    def node_dim(self) -> int:
        return int(np.prod(self.value_shape, dtype=np.int64))


@dataclass(frozen=True)
class BoundSlot:
    """``node_ids[m, *block]`` is the flat node index each member reads.

    ``grid_slice`` is set when the slot is a plain strided view of the var's
    node grid in member order, so a backend can use slices instead of
    gathers and scatter-adds.
    """

    var: str
    node_ids: np.ndarray
    block_shape: tuple[int, ...]
    reductions: tuple[str, ...]
    mask: np.ndarray | None  # [M, *reduction axes]: False where a padded reduction position
    grid_slice: tuple[slice, ...] | None
    span: A.Span = field(repr=False)


@dataclass(frozen=True)
class BoundFamily:
    ir: FactorFamily
    n_members: int
    idx: dict[str, np.ndarray]  # family index arrays [M], plus "__m"
    member_grid: tuple[int, ...] | None  # rectangular families: the member grid (C order)
    slots: tuple[BoundSlot, ...]
    evaluate: Callable = field(repr=False)  # evaluate(data, idx, slot_values) -> dict of [M, ...] arrays
    evaluate_one: Callable = field(repr=False)  # the same for one member (scalar indices, one slot block each)
    members: BoundFamily | None = field(default=None, repr=False)  # the IR's split into members (GBP runs it)

    @property
    def name(self) -> str:
        return self.ir.name


@dataclass(frozen=True)
class BoundDerived:
    ir: Derived
    shape: tuple[int, ...]
    slots: tuple[BoundSlot, ...]
    evaluate: Callable = field(repr=False)  # evaluate(data, slot_values) -> array


@dataclass(frozen=True)
class BoundModel:
    ir: ModelIR
    data: dict[str, np.ndarray]
    sizes: dict[str, int]
    variables: dict[str, BoundVariable]
    families: dict[str, BoundFamily]
    derived: dict[str, BoundDerived]
    data_file: str = "<data>"

    @property
    def name(self) -> str:
        return self.ir.name

    def gather(self, slot: BoundSlot, values: dict[str, Any]):
        """Slot values [M, *block, *value] from full var arrays (NumPy or JAX).

        A strided-slice slot is read as a slice, not a gather: same values,
        and several times faster for grids and chains."""
        v = self.variables[slot.var]
        full = values[slot.var]
        if slot.grid_slice is not None:
            grid = full.reshape(v.node_shape + v.value_shape)
            return grid[slot.grid_slice].reshape(slot.node_ids.shape + v.value_shape)
        flat = full.reshape((v.n_nodes,) + v.value_shape)
        return flat[slot.node_ids]


# ---------------------------------------------------------------- data
def _declared_shape(info: DataInfo, sizes: dict[str, int]) -> tuple[int, ...] | None:
    out = []
    for e in info.shape_exprs:
        v = static_value(e, sizes)
        if v is None:
            return None
        out.append(int(v))
    return tuple(out)


def _validate_data(
    ir: ModelIR, raw: dict[str, Any], file: str, sink: DiagnosticSink
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    data: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    extra = sorted(set(raw) - set(ir.data))
    if extra:
        warnings.warn(f"{file}: ignoring keys the model does not declare: {', '.join(extra)}", stacklevel=3)
    for name, info in ir.data.items():
        decl = f"'{name}' (declared here)"
        if name in raw:
            from fglang.compiler.datafile import to_array

            try:
                arr = to_array(name, raw[name], file)
            except FgError as err:
                sink.error(err.diagnostics[0].message, info.span)
                continue
        elif info.default is not None:
            v = static_value(info.default, {})
            arr = np.asarray(v if v is not None else _eval_const(info.default))
        else:
            sink.error(f"missing data {decl}: {file} has no key '{name}'", info.span)
            continue
        shape = _declared_shape(info, sizes)
        if shape is None:
            # a size that is missing or malformed has been reported already
            if all(n.id in data for e in info.shape_exprs for n in names_in(e) if n.id in ir.data):
                sink.error(f"cannot size '{name}': a size it uses is missing or invalid", info.span)
            continue
        if any(s < 0 for s in shape):
            sink.error(f"cannot size '{name}': its declared shape {_show(shape)} is negative", info.span)
            continue
        if info.default is not None and name not in raw and arr.shape == () and shape:
            arr = np.broadcast_to(arr, shape)
        if arr.shape != shape:
            sink.error(
                f"data '{name}' in {file} has shape {_show(arr.shape)} but the model declares {_show(shape)}",
                info.span,
            )
            continue
        if arr.dtype == bool:
            arr = arr.astype(np.int64 if info.dtype in ("int", "bool") else _FLOAT)
        if info.dtype in ("int", "bool"):
            if arr.dtype.kind == "f":
                if not np.all(np.isfinite(arr)):
                    sink.error(f"data '{name}' in {file} has NaN or inf but is declared {info.dtype}", info.span)
                    continue
                if not np.all(arr == np.round(arr)):
                    bad = np.argwhere(arr != np.round(arr))[0]
                    sink.error(
                        f"data '{name}' in {file} is declared {info.dtype} but holds {float(arr[tuple(bad)]):g}"
                        f"{_at(bad)}",
                        info.span,
                    )
                    continue
            arr = arr.astype(np.int64)
            if info.dtype == "bool" and not np.all((arr == 0) | (arr == 1)):
                sink.error(f"data '{name}' in {file} is declared bool but holds values other than 0/1", info.span)
                continue
        else:
            arr = arr.astype(_FLOAT)
            bad = ~np.isfinite(arr)
            if np.any(bad):
                where = np.argwhere(bad)[0]
                sink.error(
                    f"data '{name}' in {file} has {float(arr[tuple(where)])}{_at(where)}",
                    info.span,
                    "fglang needs finite data; drop or impute missing values first",
                )
                continue
        msg = _domain_violation(arr, info.domain)
        if msg:
            sink.error(f"data '{name}' in {file} {msg}", info.span)
            continue
        data[name] = arr
        if info.dtype == "int" and arr.shape == ():
            sizes[name] = int(arr)
    return data, sizes


def _domain_violation(arr: np.ndarray, d: Domain) -> str | None:
    if arr.size == 0:
        return None
    if d.kind in ("positive",) and np.any(arr <= 0):
        return f"must be positive, but holds {arr.min():g}"
    if d.kind == "unit" and np.any((arr <= 0) | (arr >= 1)):
        return "must lie in (0, 1)"
    if d.lower is not None and d.kind not in ("positive", "unit") and np.any(arr < d.lower):
        return f"must be >= {d.lower:g}, but holds {arr.min():g}"
    if d.upper is not None and d.kind not in ("unit",) and np.any(arr > d.upper):
        return f"must be <= {d.upper:g}, but holds {arr.max():g}"
    if d.kind == "simplex" and np.any(np.abs(arr.sum(-1) - 1) > 1e-6):
        return "must be a simplex (non-negative, summing to 1 along its last axis)"
    if d.kind == "ordered" and np.any(np.diff(arr, axis=-1) <= 0):
        return "must be strictly increasing along its last axis"
    return None


def _eval_const(e: A.Expr):
    from fglang.compiler.check import Checker

    return Checker({}).const_value(e)


def _show(shape) -> str:
    return "scalar" if shape == () else "[" + ", ".join(str(s) for s in shape) + "]"


def _at(idx) -> str:
    """' at [i, j]' for an array element; nothing for a scalar."""
    return " at [" + ", ".join(str(int(i)) for i in idx) + "]" if len(idx) else ""


# ---------------------------------------------------------------- index arithmetic
class _IndexError(Exception):
    def __init__(self, message: str, span: A.Span, hint: str | None = None):
        self.message, self.span, self.hint = message, span, hint


class _NpIndex:
    """Evaluates int index expressions for all members at once (NumPy), and
    checks every data access it makes against the array's bounds."""

    def __init__(self, data: dict[str, np.ndarray], sizes: dict[str, int]):
        self.data = data
        self.sizes = sizes

    def ev(self, e: A.Expr, env: dict[str, np.ndarray], mask: np.ndarray | None):
        if isinstance(e, A.Num):
            return np.asarray(e.value)
        if isinstance(e, A.Bool):
            return np.asarray(int(e.value))
        if isinstance(e, A.Name):
            if e.id in env:
                return env[e.id]
            if e.id in self.data:
                return self.data[e.id]
            raise _IndexError(f"'{e.id}' cannot be used in an index", e.span)
        if isinstance(e, A.Neg):
            return -self.ev(e.operand, env, mask)
        if isinstance(e, A.BinOp):
            a, b = self.ev(e.left, env, mask), self.ev(e.right, env, mask)
            ops = {
                "+": np.add,
                "-": np.subtract,
                "*": np.multiply,
                "==": np.equal,
                "!=": np.not_equal,
                "<": np.less,
                "<=": np.less_equal,
                ">": np.greater,
                ">=": np.greater_equal,
            }
            if e.op not in ops:
                raise _IndexError(f"'{e.op}' cannot be used in an index expression", e.span)
            return ops[e.op](a, b).astype(np.int64)
        if isinstance(e, A.Index) and isinstance(e.base, A.Name) and e.base.id in self.data:
            arr = self.data[e.base.id]
            key = []
            for k, a in enumerate(e.args):
                if isinstance(a, A.Slice):
                    raise _IndexError("a slice cannot be used inside an index expression", a.span)
                v = self.ev(a, env, mask)
                self.check_bounds(v, arr.shape[k], e.base.id, k, a.span, env, mask)
                key.append(np.clip(v, 0, max(arr.shape[k] - 1, 0)))
            return arr[tuple(key)]
        if isinstance(e, A.Call) and e.func in ("min", "max", "abs") and len(e.args) in (1, 2):
            vals = [self.ev(a, env, mask) for a in e.args]
            if e.func == "abs":
                return np.abs(vals[0])
            if len(vals) == 2:
                return np.minimum(*vals) if e.func == "min" else np.maximum(*vals)
        raise _IndexError("this expression cannot be used as an index", e.span)

    def check_bounds(self, v, size: int, what: str, axis: int, span, env, mask) -> None:
        v = np.asarray(v)
        bad = (v < 0) | (v >= size)
        if mask is not None and bad.ndim:
            bad = bad & np.broadcast_to(mask, np.broadcast_shapes(mask.shape, bad.shape))
        if np.any(bad):
            pos = np.argwhere(bad)[0] if bad.ndim else ()
            val = int(v[tuple(pos)]) if v.ndim else int(v)
            where = _member_desc(env, pos)
            kind = "negative" if val < 0 else "too large"
            raise _IndexError(
                f"index {val} is out of range for axis {axis} of '{what}' (size {size}){where}",
                span,
                f"the index is {kind}; indices are 0-based and do not wrap around",
            )


def _member_desc(env: dict[str, np.ndarray], pos) -> str:
    parts = []
    for k, arr in env.items():
        if k.startswith("__"):
            continue
        a = np.asarray(arr)
        if a.ndim == 0:
            continue
        try:
            val = a[tuple(p if s > 1 else 0 for p, s in zip(pos, a.shape))]
        except IndexError:
            continue
        parts.append(f"{k.split('__')[0]}={int(val)}")
    return f" when {', '.join(parts)}" if parts else ""


# ---------------------------------------------------------------- families
def _enumerate(ranges: tuple[A.IndexRange, ...], npi: _NpIndex) -> tuple[dict[str, np.ndarray], tuple | None]:
    """Every index tuple of a family, in C order, with NumPy repeats (no loop over members)."""
    idx: dict[str, np.ndarray] = {"__m": np.zeros(1, np.int64)}
    rect: list[int] | None = []
    n = 1
    for r in ranges:
        lo = np.broadcast_to(npi.ev(r.lo, idx, None), (n,)).astype(np.int64)
        hi = np.broadcast_to(npi.ev(r.hi, idx, None), (n,)).astype(np.int64)
        lengths = np.maximum(hi - lo, 0)
        if rect is not None and n > 0:
            if np.all(lo == lo[0]) and np.all(hi == hi[0]):
                rect.append(int(lengths[0]))
            else:
                rect = None
        total = int(lengths.sum())
        rep = np.repeat(np.arange(n), lengths)
        starts = np.cumsum(lengths) - lengths
        offsets = np.arange(total) - np.repeat(starts, lengths)
        idx = {k: v[rep] for k, v in idx.items()}
        idx[r.name] = lo[rep] + offsets
        n = total
    idx["__m"] = np.arange(n, dtype=np.int64)
    return idx, (tuple(rect) if rect is not None else None)


@dataclass
class _Reduction:
    values: np.ndarray  # [M, L1, ..., Li]
    mask: np.ndarray  # same shape
    chain: tuple[str, ...]


def _scan_reductions(exprs, idx, npi: _NpIndex, reds: dict[str, _Reduction], lengths: dict[int, int]) -> Callable:
    """Find every reduction's padded length and index values, outermost first.

    Returns ``env_for(chain)``: the index environment (arrays broadcast over
    members and the chain's reduction axes) and its validity mask."""

    def env_for(chain: tuple[str, ...]):
        depth = len(chain)
        env = {k: v.reshape(v.shape + (1,) * depth) for k, v in idx.items()}
        mask = np.ones((len(idx["__m"]),) + (1,) * depth, bool)
        for r in chain:
            red = reds[r]
            extra = depth - (red.values.ndim - 1)
            env[r] = red.values.reshape(red.values.shape + (1,) * extra)
            mask = mask & red.mask.reshape(red.mask.shape + (1,) * extra)
        return env, mask

    def visit(e, chain: tuple[str, ...]):
        if e is None:
            return
        if isinstance(e, A.Reduce):
            inner = chain
            for r in e.ranges:
                env, mask = env_for(inner)
                lo = npi.ev(r.lo, env, mask)
                hi = npi.ev(r.hi, env, mask)
                shape = (len(idx["__m"]),) + tuple(reds[c].values.shape[-1] for c in inner) if inner else (
                    len(idx["__m"]),
                )
                lo = np.broadcast_to(lo, shape)
                hi = np.broadcast_to(hi, shape)
                span_len = np.where(np.broadcast_to(mask, shape), hi - lo, 0)
                length = int(max(span_len.max(initial=0), 0))
                lengths[id(r)] = length
                ar = np.arange(length)
                values = lo[..., None] + ar
                m = (values < hi[..., None]) & np.broadcast_to(mask, shape)[..., None]
                reds[r.name] = _Reduction(values, m, inner + (r.name,))
                inner = inner + (r.name,)
            visit(e.body, inner)
            return
        if isinstance(e, A.Index):
            visit(e.base, chain)
            for a in e.args:
                if isinstance(a, A.Slice):
                    visit(a.lo, chain)
                    visit(a.hi, chain)
                else:
                    visit(a, chain)
            return
        from fglang.compiler.check import map_children

        map_children(e, lambda c: (visit(c, chain), c)[1])

    for x in exprs:
        visit(x, ())
    return env_for


def _check_data_indices(exprs, idx, npi: _NpIndex, reds: dict[str, _Reduction], chain_of) -> None:
    """Every data access with a scalar index, checked against its array for all members."""

    def visit(e, chain):
        if e is None:
            return
        if isinstance(e, A.Reduce):
            inner = chain + tuple(r.name for r in e.ranges)
            visit(e.body, inner)
            return
        if isinstance(e, A.Index) and isinstance(e.base, A.Name) and e.base.id in npi.data:
            arr = npi.data[e.base.id]
            env, mask = chain_of(chain)
            for k, a in enumerate(e.args):
                if isinstance(a, A.Slice):
                    continue
                if any(isinstance(x, SlotRef) for x in walk(a)):
                    continue
                v = npi.ev(a, env, mask)
                npi.check_bounds(v, arr.shape[k], e.base.id, k, a.span, env, mask)
        if isinstance(e, A.Index):
            visit(e.base, chain)
            for a in e.args:
                visit(a.lo if isinstance(a, A.Slice) else a, chain)
                if isinstance(a, A.Slice):
                    visit(a.hi, chain)
            return
        from fglang.compiler.check import map_children

        map_children(e, lambda c: (visit(c, chain), c)[1])

    for x in exprs:
        visit(x, ())


def _check_static_slices(exprs, sizes: dict[str, int]) -> None:
    """A slice's bounds fix the shape of what a member computes, so they must
    be known from the data sizes alone (``y[0:T-1]``, not ``y[0:t]``)."""
    for x in exprs:
        for e in walk(x):
            if isinstance(e, A.Slice):
                for part in (e.lo, e.hi):
                    if part is not None and static_value(part, sizes) is None:
                        raise _IndexError(
                            "a slice inside a factor needs bounds fixed by the data sizes, "
                            "not by the factor's indices",
                            part.span,
                            "index each member explicitly, or use a reduction sum[k in a:b](...)",
                        )


def _bind_slot(
    pat: SlotPattern, var: BoundVariable, idx, npi: _NpIndex, reds: dict[str, _Reduction], chain_of, rect
) -> BoundSlot:
    env, mask = chain_of(pat.reductions)
    m = len(idx["__m"])
    red_shape = tuple(reds[r].values.shape[-1] for r in pat.reductions)
    lead = (m,) + red_shape
    coords = []
    slice_shape: list[int] = []
    for axis, part in enumerate(pat.node_index):
        size = var.node_shape[axis]
        if isinstance(part, A.Slice):
            lo = 0 if part.lo is None else static_value(part.lo, npi.sizes)
            hi = size if part.hi is None else static_value(part.hi, npi.sizes)
            if lo is None or hi is None:
                raise _IndexError(
                    "a slice of a var inside a factor needs bounds fixed by the data sizes, "
                    "not by the factor's indices",
                    part.span,
                    "index each member explicitly, or use a reduction sum[k in a:b](...)",
                )
            lo, hi = int(lo), int(hi)
            if not (0 <= lo <= size and 0 <= hi <= size):
                raise _IndexError(f"slice {lo}:{hi} is outside 0:{size} of '{pat.var}'", part.span)
            coords.append(("slice", np.arange(lo, max(hi, lo))))
            slice_shape.append(max(hi - lo, 0))
        else:
            v = np.broadcast_to(npi.ev(part, env, mask), lead)
            npi.check_bounds(v, size, pat.var, axis, part.span, env, mask)
            coords.append(("scalar", v))
    full = lead + tuple(slice_shape)
    grids = []
    k = 0
    for kind, v in coords:
        if kind == "scalar":
            grids.append(np.broadcast_to(v.reshape(lead + (1,) * len(slice_shape)), full))
        else:
            shape = [1] * len(full)
            shape[len(lead) + k] = len(v)
            grids.append(np.broadcast_to(v.reshape(shape), full))
            k += 1
    if grids:
        safe = [np.clip(g, 0, max(s - 1, 0)) for g, s in zip(grids, var.node_shape)]
        node_ids = np.ravel_multi_index(safe, var.node_shape) if var.node_shape else np.zeros(full, np.int64)
    else:
        node_ids = np.zeros(full, np.int64)
    node_ids = np.asarray(node_ids, dtype=np.int64)
    red_mask = None
    if pat.reductions:
        red_mask = np.broadcast_to(mask, lead).copy()
        node_ids = np.where(red_mask.reshape(lead + (1,) * len(slice_shape)), node_ids, 0)
    grid_slice = _as_grid_slice(coords, var, rect) if not pat.reductions and not slice_shape else None
    return BoundSlot(pat.var, node_ids, red_shape + tuple(slice_shape), pat.reductions, red_mask, grid_slice, pat.span)


def _as_grid_slice(coords, var: BoundVariable, rect) -> tuple[slice, ...] | None:
    """A slot whose node index along axis k is (k-th family index + constant)
    over a rectangular family is a shifted slice of the node grid."""
    if rect is None or len(rect) != len(var.node_shape) or len(coords) != len(var.node_shape):
        return None
    if any(n == 0 for n in rect):
        return None
    out = []
    for axis, (_, v) in enumerate(coords):
        g = v.reshape(rect)
        start = int(g.flat[0])
        expect_shape = [1] * len(rect)
        expect_shape[axis] = rect[axis]
        expect = start + np.arange(rect[axis]).reshape(expect_shape)
        if not np.array_equal(g, np.broadcast_to(expect, rect)):
            return None
        out.append(slice(start, start + rect[axis]))
    return tuple(out)


def _slot_reds(slots: tuple[BoundSlot, ...]) -> dict[int, tuple[str, ...]]:
    return {i: s.reductions for i, s in enumerate(slots) if s.reductions}


def _family_outputs(fam: FactorFamily) -> Callable[[Evaluator], dict]:
    if fam.kind == "potential":
        return lambda ev: {"value": ev.ev(fam.potential)}

    def out(ev: Evaluator) -> dict:
        return {"lhs": ev.ev(fam.lhs), "args": {k: ev.ev(e) for k, e in fam.args}}

    return out


def _bind_family(fam: FactorFamily, variables, npi: _NpIndex, lengths: dict[int, int]) -> BoundFamily:
    idx, rect = _enumerate(fam.ranges, npi)
    exprs = [fam.lhs, fam.potential] + [e for _, e in fam.args]
    reds: dict[str, _Reduction] = {}
    chain_of = _scan_reductions(exprs, idx, npi, reds, lengths)
    _check_data_indices(exprs, idx, npi, reds, chain_of)
    _check_static_slices(exprs, npi.sizes)
    slots = tuple(_bind_slot(p, variables[p.var], idx, npi, reds, chain_of, rect) for p in fam.slots)
    static = Static(dict(npi.sizes), lengths)
    one, fn = _member_functions(fam, static, _slot_reds(slots))
    return BoundFamily(fam, len(idx["__m"]), dict(idx), rect, slots, fn, one)


# (family, sizes, reduction lengths, slot reductions) -> (one, all_members).
# Binding new data of the same shape returns the *same* function objects, so
# every jit downstream (GBP's plan, NumPyro's kernels) is reused, not retraced.
_FUNCTION_CACHE: dict[tuple, tuple[FactorFamily, Callable, Callable]] = {}


def _member_functions(fam: FactorFamily, static: Static, slot_reds: dict[int, tuple[str, ...]]):
    red_ids = {id(r) for x in walk_all(fam) if isinstance(x, A.Reduce) for r in x.ranges}
    key = (
        id(fam),
        tuple(sorted(static.sizes.items())),
        tuple(sorted((k, v) for k, v in static.reduction_len.items() if k in red_ids)),
        tuple(sorted(slot_reds.items())),
    )
    hit = _FUNCTION_CACHE.get(key)
    if hit is not None and hit[0] is fam:
        return hit[1], hit[2]
    from fglang.compiler.lower_jax import member_function  # JAX: imported when a model is bound

    one, fn = member_function(_family_outputs(fam), static, slot_reds)
    if len(_FUNCTION_CACHE) > 4096:
        _FUNCTION_CACHE.clear()
    _FUNCTION_CACHE[key] = (fam, one, fn)
    return one, fn


def walk_all(fam: FactorFamily):
    for e in [fam.lhs, fam.potential] + [e for _, e in fam.args]:
        if e is not None:
            yield from walk(e)


def _bind_derived(d: Derived, variables, npi: _NpIndex, lengths) -> BoundDerived:
    idx = {"__m": np.zeros(1, np.int64)}
    reds: dict[str, _Reduction] = {}
    chain_of = _scan_reductions([d.expr], idx, npi, reds, lengths)
    _check_data_indices([d.expr], idx, npi, reds, chain_of)
    slots = tuple(_bind_slot(p, variables[p.var], idx, npi, reds, chain_of, ()) for p in d.slots)
    static = Static(dict(npi.sizes), lengths)
    from fglang.compiler.lower_jax import member_function

    one, _ = member_function(lambda ev: ev.ev(d.expr), static, _slot_reds(slots))

    def evaluate(data, slot_values):
        """slot_values hold one member's blocks (no leading member axis)."""
        return one(data, {"__m": 0}, slot_values)

    return BoundDerived(d, (), slots, evaluate)


# ---------------------------------------------------------------- entry point
def bind(ir: ModelIR, raw: dict[str, Any], file: str = "<data>") -> BoundModel:
    """Validate ``raw`` against the model and build every index array."""
    with recursion_headroom():
        return _bind(ir, raw, file)


def _bind(ir: ModelIR, raw: dict[str, Any], file: str) -> BoundModel:
    sink = DiagnosticSink()
    data, sizes = _validate_data(ir, raw, file, sink)
    sink.raise_if_any(ir.sources)
    checked: CheckedModel = ir.checked
    try:
        concrete = checked.recheck(sizes)  # concrete shapes: N-vs-D mismatches now have values
    except FgError as err:
        raise FgError(
            [Diagnostic(d.message + f" (with the sizes in {file})", d.span, d.hint) for d in err.diagnostics],
            ir.sources,
        ) from None
    for name in sizes:
        if sizes[name] < 0 and any(_uses(name, v) for v in ir.variables.values()):
            sink.error(f"size '{name}' is {sizes[name]}; sizes cannot be negative", ir.data[name].span)
    sink.raise_if_any(ir.sources)
    variables = {}
    for name, v in ir.variables.items():
        node = tuple(int(static_value(e, sizes)) for e in v.node_dims)
        val = tuple(int(static_value(e, sizes)) for e in v.value_shape)
        if any(s < 0 for s in node + val):
            sink.error(f"var '{name}' has a negative size {_show(node + val)}", v.span)
            continue
        variables[name] = BoundVariable(name, node, val, v.domain, v.prior, v.span)
    sink.raise_if_any(ir.sources)
    npi = _NpIndex(data, sizes)
    families: dict[str, BoundFamily] = {}
    derived: dict[str, BoundDerived] = {}
    lengths: dict[int, int] = {}
    for name, fam in ir.families.items():
        try:
            families[name] = _bind_family(fam, variables, npi, lengths)
            if fam.members is not None:
                members = _bind_family(fam.members, variables, npi, lengths)
                families[name] = replace(families[name], members=members)
        except _IndexError as err:
            sink.error(err.message, err.span, err.hint)
        except RecursionError:
            sink.error(TOO_DEEP, fam.span, TOO_DEEP_HINT)
    for name, d in ir.derived.items():
        try:
            b = _bind_derived(d, variables, npi, lengths)
        except _IndexError as err:
            sink.error(err.message, err.span, err.hint)
            continue
        except RecursionError:
            sink.error(TOO_DEEP, d.span, TOO_DEEP_HINT)
            continue
        shape = tuple(int(s) for s in concrete.lets[name].shape)
        derived[name] = BoundDerived(b.ir, shape, b.slots, b.evaluate)
    sink.raise_if_any(ir.sources)
    return BoundModel(ir, data, sizes, variables, families, derived, file)


def _uses(name: str, v: Variable) -> bool:
    from fglang.compiler.check import names_in

    return any(n.id == name for e in v.node_dims + v.value_shape for n in names_in(e))
