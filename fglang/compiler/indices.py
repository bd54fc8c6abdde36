"""Index arithmetic with the data in hand: every family's members, reductions
and slot node ids, in NumPy, one vectorized pass per family.

Every index a model computes (into data or into a var's nodes) is checked
here against its array for all members at once, so an out-of-range index is
a located error naming the member, never a silent clip or wrap on a device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fglang.compiler import ast as A
from fglang.compiler.bound import BoundSlot, BoundVariable
from fglang.compiler.expr import children, map_children, static_value, walk
from fglang.compiler.ir import SlotPattern, SlotRef
from fglang.compiler.limits import Budget, elements, show_count
from fglang.compiler.sizes import shape_value
from fglang.compiler.unparse import unparse


class BadIndex(Exception):
    def __init__(self, message: str, span: A.Span, hint: str | None = None):
        self.message, self.span, self.hint = message, span, hint


class NpIndex:
    """Evaluates int index expressions for all members at once (NumPy), and
    checks every data access it makes against the array's bounds."""

    def __init__(self, data: dict[str, np.ndarray], sizes: dict[str, int], budget: Budget | None = None):
        self.data = data
        self.sizes = sizes
        self.budget = budget  # charged before each index array is made (limits.py)

    def charge(self, nbytes: float, what: str, span) -> None:
        if self.budget is not None:
            self.budget.charge(nbytes, what, span)

    def ev(self, e: A.Expr, env: dict[str, np.ndarray], mask: np.ndarray | None):
        """``e`` for every member at once: the members' (and reductions') axes of
        ``env`` first, then the index's own axes (``idx`` of ``x[idx]``, ``nbr[k]``
        of ``x[nbr[k]]``), so that a whole int array read inside a family of M
        members is (1, K) beside a member index's (M, 1), not broadcast against it."""
        lead = np.ndim(env["__m"]) if "__m" in env else max((np.ndim(v) for v in env.values()), default=0)
        return self._ev(e, env, mask, lead)

    def _ev(self, e: A.Expr, env: dict[str, np.ndarray], mask, lead: int):
        if isinstance(e, A.Num):
            return np.asarray(e.value).reshape((1,) * lead)
        if isinstance(e, A.Bool):
            return np.asarray(int(e.value)).reshape((1,) * lead)
        if isinstance(e, A.Name):
            if e.id in env:
                return env[e.id]
            if e.id in self.data:
                arr = self.data[e.id]
                return arr.reshape((1,) * lead + arr.shape)
            raise BadIndex(f"'{e.id}' cannot be used in an index", e.span)
        if isinstance(e, A.Neg):
            return -self._ev(e.operand, env, mask, lead)
        if isinstance(e, A.BinOp):
            a, b = _aligned([self._ev(e.left, env, mask, lead), self._ev(e.right, env, mask, lead)], lead)
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
                raise BadIndex(f"'{e.op}' cannot be used in an index expression", e.span)
            return ops[e.op](a, b).astype(np.int64)
        if isinstance(e, A.Index) and isinstance(e.base, A.Name) and e.base.id in self.data:
            arr = self.data[e.base.id]
            key = []
            for k, a in enumerate(e.args):
                if isinstance(a, A.Slice):
                    raise BadIndex("a slice cannot be used inside an index expression", a.span)
                v = self._ev(a, env, mask, lead)
                self.check_bounds(v, arr.shape[k], e.base.id, k, a.span, env, _lead_mask(mask, np.ndim(v)))
                key.append(np.clip(v, 0, max(arr.shape[k] - 1, 0)))
            return arr[tuple(_aligned(key, lead))]
        if isinstance(e, A.Call) and e.func in ("min", "max", "abs") and len(e.args) in (1, 2):
            vals = _aligned([self._ev(a, env, mask, lead) for a in e.args], lead)
            if e.func == "abs":
                return np.abs(vals[0])
            if len(vals) == 2:
                return np.minimum(*vals) if e.func == "min" else np.maximum(*vals)
        raise BadIndex("this expression cannot be used as an index", e.span)

    def check_bounds(self, v, size: int, what: str, axis: int, span, env, mask) -> None:
        v = np.asarray(v)
        bad = (v < 0) | (v >= size)
        if mask is not None and bad.ndim:
            bad = bad & np.broadcast_to(mask, np.broadcast_shapes(mask.shape, bad.shape))
            v = np.broadcast_to(v, bad.shape)
        if np.any(bad):
            pos = np.argwhere(bad)[0] if bad.ndim else ()
            val = int(v[tuple(pos)]) if v.ndim else int(v)
            where = _member_desc(env, pos)
            kind = "negative" if val < 0 else "too large"
            raise BadIndex(
                f"index {val} is out of range for axis {axis} of '{what}' (size {size}){where}",
                span,
                f"the index is {kind}; indices are 0-based and do not wrap around",
            )


def _aligned(values: list, lead: int) -> list:
    """Values of ``NpIndex.ev`` (``lead`` member axes, then their own) with ones
    between the two, so that their own axes line up from the right, as one
    member's would."""
    own = max(np.ndim(v) - lead for v in values)
    return [np.reshape(v, np.shape(v)[:lead] + (1,) * (own - (np.ndim(v) - lead)) + np.shape(v)[lead:])
            for v in values]


def _lead_mask(mask, ndim: int):
    """The members' validity mask with ones for an index value's own axes."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    return mask.reshape(mask.shape + (1,) * max(ndim - mask.ndim, 0))


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


def enumerate_members(ranges: tuple[A.IndexRange, ...], npi: NpIndex) -> tuple[dict[str, np.ndarray], tuple | None]:
    """Every index tuple of a family, in C order, with NumPy repeats (no loop over members)."""
    idx: dict[str, np.ndarray] = {"__m": np.zeros(1, np.int64)}
    rect: list[int] | None = []
    n = 1
    for r in ranges:
        lo = np.broadcast_to(npi.ev(r.lo, idx, None), (n,)).astype(np.int64)
        hi = np.broadcast_to(npi.ev(r.hi, idx, None), (n,)).astype(np.int64)
        # in floats first: a range of 1e19 members must not wrap around in int64
        total_f = float(np.maximum(hi.astype(np.float64) - lo.astype(np.float64), 0).sum())
        what = f"the range '{r.name} in {unparse(r.lo)}:{unparse(r.hi)}' ({show_count(total_f, 'member')})"
        npi.charge(total_f * 8 * (len(idx) + 3), what, r.span)
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
class Reduction:
    values: np.ndarray  # [M, L1, ..., Li]
    mask: np.ndarray  # same shape
    chain: tuple[str, ...]


def scan_reductions(exprs, idx, npi: NpIndex, reds: dict[str, Reduction], lengths: dict[int, int]) -> Callable:
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

    seen: dict[tuple, object] = {}  # (id(node), chain): a node shared in a DAG is scanned once

    def visit(e, chain: tuple[str, ...]):
        if e is None or (id(e), chain) in seen:
            return
        seen[(id(e), chain)] = e
        if isinstance(e, A.Reduce):
            inner = chain
            for r in e.ranges:
                env, mask = env_for(inner)
                lo = npi.ev(r.lo, env, mask)
                hi = npi.ev(r.hi, env, mask)
                shape = (
                    (len(idx["__m"]),) + tuple(reds[c].values.shape[-1] for c in inner) if inner else (len(idx["__m"]),)
                )
                lo = np.broadcast_to(lo, shape)
                hi = np.broadcast_to(hi, shape)
                span_len = np.where(np.broadcast_to(mask, shape), hi.astype(np.float64) - lo.astype(np.float64), 0)
                length_f = max(float(span_len.max(initial=0)), 0.0)
                cells = elements(shape) * length_f
                what = f"the reduction over '{r.name.split('__')[0]}' ({show_count(cells, 'padded index value')})"
                npi.charge(cells * (8 + 1) * 2, what, r.span)
                length = int(length_f)
                lengths[id(r)] = length
                ar = np.arange(length)
                values = lo[..., None] + ar
                m = (values < hi[..., None]) & np.broadcast_to(mask, shape)[..., None]
                reds[r.name] = Reduction(values, m, inner + (r.name,))
                inner = inner + (r.name,)
            visit(e.body, inner)
            return
        if isinstance(e, A.Scan):  # its index ranges over its steps, as a reduction's (compiler/scan.py)
            visit(e.init, chain)
            visit(A.Reduce(e.span, "scan", (e.index,), e.body), chain)
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
        map_children(e, lambda c: (visit(c, chain), c)[1])

    for x in exprs:
        visit(x, ())
    return env_for


def check_data_indices(exprs, idx, npi: NpIndex, reds: dict[str, Reduction], chain_of) -> None:
    """Every data access, checked against its array for all members: a scalar
    index or an int array (a gather)."""

    def data_shape(e: A.Index):
        if isinstance(e.base, A.Name) and e.base.id in npi.data:
            return npi.data[e.base.id].shape, e.base.id
        return None

    _check_indices(exprs, npi, chain_of, data_shape)


def check_slot_indices(exprs, npi: NpIndex, chain_of, slot_shapes: dict[int, tuple]) -> None:
    """Every index into a var's value (``slot_shapes``: one member's value
    shape of each slot, `slot_value_shape`), checked for all members as data
    accesses are: JAX clamps an index past the end of an array, silently."""

    def slot_shape(e: A.Index):
        if isinstance(e.base, SlotRef) and e.base.slot in slot_shapes:
            return slot_shapes[e.base.slot]
        return None

    _check_indices(exprs, npi, chain_of, slot_shape)


def check_expr_indices(exprs, npi: NpIndex, chain_of) -> None:
    """Every index into a value that is neither data nor a var's slot
    (``(X @ w)[n]``, ``softmax(v)[k]``, a let's ``mu[n]`` pushed into its
    expression), checked against the shape the checker gave its base, with
    these data's sizes (JAX clamps an index past the end, silently). A base
    whose shape the sizes do not fix (``y[0:t]``) is not checked here."""

    def expr_shape(e: A.Index):
        if e.base_shape is None:
            return None
        symbolic, written = e.base_shape[:2]
        # a let's ``m[i]`` pushed into ``v + c`` is ``v[i] + c[i]``, each carrying m's shape: checked
        # here, first, so that the message names the let written, not the var or data it reads
        if not pushed_index(e, written) and (isinstance(e.base, SlotRef) or (
                isinstance(e.base, A.Name) and e.base.id in npi.data)):
            return None  # a var's or data access as written: check_slot_indices, check_data_indices
        shape = None if symbolic is None else shape_value(symbolic, npi.sizes)
        if shape is None:
            return None
        if len(e.base_shape) > 2:  # (shape, let, the let's axis of each): a slot's index pushed from a let
            return shape, _Written(written), e.base_shape[2]
        return shape, _Written(written)

    _check_indices(exprs, npi, chain_of, expr_shape)


def pushed_index(e: A.Index, written: A.Expr) -> bool:
    """Whether ``e`` was made by pushing a let's index into its value: its base
    is a name other than the one the checker typed (that is the let's), or a
    slot given the let's axes (lower.py `_slot`)."""
    if isinstance(e.base, SlotRef):
        return e.base_shape is not None and len(e.base_shape) > 2
    return isinstance(written, A.Name) and isinstance(e.base, A.Name) and e.base.id != written.id


def carry_base_shape(e: A.Expr, args: tuple, base_shape: tuple | None,
                     root: Callable[[tuple], tuple] = lambda a: a) -> A.Expr:
    """A let's ``mu[n]``, pushed into its expression (lower.py `push_index`),
    is a new index node for these ``args`` (``(X @ w)[n]``): each gets the
    let's shape to be checked against (the same ``args`` tuple marks them, or
    one made from it with 0 on an operand's broadcast axes: ``root`` maps it
    back; the push passes only through elementwise operations, as this walk does)."""
    if base_shape is None:
        return e
    seen: set[int] = set()
    todo = [e]
    while todo:
        x = todo.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, A.Index):
            if root(x.args) is args and x.base_shape is None:
                object.__setattr__(x, "base_shape", base_shape)  # made by this push, not shared yet
        elif isinstance(x, A.Neg | A.BinOp | A.Call):
            todo.extend(children(x))
    return e


class _Written:
    """A base's text for a message, made only when an index is out of range."""

    def __init__(self, e: A.Expr):
        self.e = e

    def __format__(self, spec: str) -> str:
        text = unparse(self.e)
        return text if len(text) <= 40 else text[:37] + "..."


def _check_indices(exprs, npi: NpIndex, chain_of, shape_of: Callable) -> None:

    seen: dict[tuple, object] = {}  # (id(node), chain): a node shared in a DAG is checked once

    def visit(e, chain):
        if e is None or (id(e), chain) in seen:
            return
        seen[(id(e), chain)] = e
        if isinstance(e, A.Reduce):
            inner = chain + tuple(r.name for r in e.ranges)
            visit(e.body, inner)
            return
        if isinstance(e, A.Scan):
            visit(e.init, chain)
            visit(e.body, chain + (e.index.name,))
            return
        found = shape_of(e) if isinstance(e, A.Index) else None
        if found is not None:
            shape, what = found[:2]
            axes = found[2] if len(found) > 2 else range(len(shape))  # the axis of the array each index names
            env, mask = chain_of(chain)
            for k, a in enumerate(e.args):
                if isinstance(a, A.Slice) or k >= len(shape):
                    continue
                if any(isinstance(x, SlotRef) for x in walk(a)):
                    continue
                v = npi.ev(a, env, mask)  # the members' axes, then an int array's own (NpIndex.ev)
                # an index that reads no member index names no member (an int array's entry is not one)
                reads = {x.id for x in walk(a) if isinstance(x, A.Name)}
                npi.check_bounds(v, shape[k], what, axes[k], a.span, env if reads & set(env) else {},
                                 _lead_mask(mask, np.ndim(v)))
        if isinstance(e, A.Index):
            visit(e.base, chain)
            for a in e.args:
                visit(a.lo if isinstance(a, A.Slice) else a, chain)
                if isinstance(a, A.Slice):
                    visit(a.hi, chain)
            return
        map_children(e, lambda c: (visit(c, chain), c)[1])

    for x in exprs:
        visit(x, ())


def slot_value_shape(pat: SlotPattern, slot: BoundSlot, var: BoundVariable) -> tuple:
    """(shape, var, axes): one member's value of a slot where an index applies
    to it, its sliced node axes (a reduction's axes are taken by the
    reduction) and then the value axes, and which axis of the var each is."""
    sliced = [k for k, p in enumerate(pat.node_index) if isinstance(p, A.Slice)]
    axes = tuple(sliced) + tuple(len(var.node_shape) + k for k in range(len(var.value_shape)))
    return tuple(slot.block_shape[len(slot.reductions):]) + tuple(var.value_shape), var.name, axes


def check_static_slices(exprs, sizes: dict[str, int]) -> None:
    """A slice's bounds fix the shape of what a member computes, so they must
    be known from the data sizes alone (``y[0:T-1]``, not ``y[0:t]``)."""
    for x in exprs:
        for e in walk(x):
            if isinstance(e, A.Slice):
                for part in (e.lo, e.hi):
                    if part is not None and static_value(part, sizes) is None:
                        raise BadIndex(
                            "a slice inside a factor needs bounds fixed by the data sizes, not by the factor's indices",
                            part.span,
                            "index each member explicitly, or use a reduction sum[k in a:b](...)",
                        )


def bind_slot(
    pat: SlotPattern, var: BoundVariable, idx, npi: NpIndex, reds: dict[str, Reduction], chain_of, rect
) -> BoundSlot:
    env, mask = chain_of(pat.reductions)
    # a let's index inside a node index (m[i] of let m = w[g] is w[g[i]]): the let's range first
    check_expr_indices([p for p in pat.node_index if not isinstance(p, A.Slice)], npi, lambda _: (env, mask))
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
                raise BadIndex(
                    "a slice of a var inside a factor needs bounds fixed by the data sizes, "
                    "not by the factor's indices",
                    part.span,
                    "index each member explicitly, or use a reduction sum[k in a:b](...)",
                )
            lo, hi = int(lo), int(hi)
            if not (0 <= lo <= size and 0 <= hi <= size):
                raise BadIndex(f"slice {lo}:{hi} is outside 0:{size} of '{pat.var}'", part.span)
            coords.append(("slice", np.arange(lo, max(hi, lo))))
            slice_shape.append(max(hi - lo, 0))
        else:
            v = np.broadcast_to(npi.ev(part, env, mask), lead)
            let_shape = None if pat.within is None or pat.within[0] is None else \
                shape_value(pat.within[0], npi.sizes)
            if let_shape is not None:  # a let's index pushed here: out of the let's range names the let
                npi.check_bounds(v, let_shape[axis], _Written(pat.within[1]), axis, part.span, env, mask)
            npi.check_bounds(v, size, pat.var, axis, part.span, env, mask)
            coords.append(("scalar", v))
    full = lead + tuple(slice_shape)
    what = f"the node ids of '{pat.var}' ({show_count(elements(full), 'slot entry', 'slot entries')})"
    npi.charge(elements(full) * 8 * (len(coords) + 2), what, pat.span)
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
