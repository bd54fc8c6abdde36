"""Symbolic shapes of lowered expressions, for pushing an index into a let
through broadcasting (lower.py `push_index`).

Why: ranks alone cannot tell a broadcast axis from a full one. In ``let m =
v + c`` with ``var v: real[1]`` and ``data c[N]``, both operands have rank 1,
and ``m[i]`` pushed as ``v[i] + c[i]`` read ``v`` past its only element (for
``i >= 1`` the model was refused as "index 1 is out of range for axis 0 of
'v'", though ``m`` has N elements; unchecked, JAX would have clamped it). On
an axis where an operand has size 1 the pushed index is ``0``; where the
operand's size is a different symbol (``d[K] + c[N]``: K may be 1 only in the
data) the index is not pushed into that expression, which is then computed
whole and indexed. A shape that is not known here (a slice with bounds, a
linear-algebra call) is None: the push then goes by rank, as before.

``merged_index``: chained indexing through an int array, which a pushed
index into a let of a gather (``w[g] + c``) makes.
"""

from __future__ import annotations

from collections.abc import Callable

from fglang.compiler import ast as A
from fglang.compiler.checked import CheckedModel
from fglang.compiler.dag import SharedMemo
from fglang.compiler.expr import static_value
from fglang.compiler.infer import canonical_size
from fglang.compiler.types import Dim, Shape, ShapeError, Sym, broadcast, matmul_shape

_SAME_SHAPE = frozenset({"softmax", "log_softmax", "cumulative_sum", "reverse"})  # one argument, its shape


class PushShapes:
    """``of(e)``: the symbolic shape of an expression whose lets are expanded
    (a data let kept by name has its checked shape), or None where unknown.
    ``elementwise``: the calls that broadcast their arguments."""

    def __init__(self, model: CheckedModel, elementwise: frozenset[str] | set[str]):
        self.m = model
        self.elementwise = elementwise
        self._memo = SharedMemo()

    def of(self, e: A.Expr) -> Shape | None:
        return self._memo(self._shape, e, "push-shape")

    def operand_index(self, op: A.Expr, e: A.Expr, args: tuple[A.Expr, ...]) -> tuple[A.Expr, ...] | None:
        """The index ``args`` of ``e`` as it applies to ``e``'s operand ``op`` of
        the same rank: ``args`` itself where their sizes agree (or are not known
        here), ``0`` (for a slice ``:``) on an axis where ``op`` has size 1 and
        ``e`` not, None where ``op``'s size is another symbol (it may be 1 only
        in the data: ``e`` is then indexed whole)."""
        return self.index_for(self.of(op), self.of(e), args)

    def index_for(self, mine: Shape | None, whole: Shape | None, args: tuple[A.Expr, ...]
                  ) -> tuple[A.Expr, ...] | None:
        """`operand_index` from the two shapes (a group call's: their batch axes)."""
        if mine is None or whole is None:
            return args
        out = list(args)
        for j, a in enumerate(args):
            d, full = mine[j], whole[j]
            if d == full:
                continue
            if d != 1:
                return None
            out[j] = A.Slice(a.span) if isinstance(a, A.Slice) else A.Num(a.span, 0, True)
        return args if out == list(args) else tuple(out)

    def batch(self, e: A.Expr, rank: int) -> Shape | None:
        """The first ``rank`` axes of ``e``'s shape (a group value's batch axes,
        before its storage), or None."""
        s = self.of(e)
        return None if s is None or len(s) < rank else s[:rank]

    def broadcast_all(self, shapes: list[Shape | None]) -> Shape | None:
        """The broadcast of ``shapes``, or None where one is unknown or they do not broadcast."""
        if any(s is None for s in shapes):
            return None
        out: Shape = ()
        try:
            for s in shapes:
                out = broadcast(out, s)
        except ShapeError:
            return None
        return out

    def _dims(self, exprs: tuple[A.Expr, ...]) -> Shape:
        out: list[Dim] = []
        for x in exprs:
            v = static_value(x)
            out.append(int(v) if isinstance(v, int | float) and float(v).is_integer() else Sym(canonical_size(x)))
        return tuple(out)

    def _shape(self, e: A.Expr) -> Shape | None:
        m = self.m
        if isinstance(e, A.Num | A.Bool):
            return ()
        if isinstance(e, A.Name):
            if e.id in m.data:
                return self._dims(m.data[e.id].shape_exprs)
            if e.id in m.vars:
                v = m.vars[e.id]
                return self._dims(v.node_dims + v.value_shape)
            if e.id in m.lets:
                return m.lets[e.id].shape
            return ()  # indices and constants
        if isinstance(e, A.Neg):
            return self.of(e.operand)
        if isinstance(e, A.BinOp):
            return self._combine([e.left, e.right], matmul=e.op == "@")
        if isinstance(e, A.Call) and e.func in self.elementwise and not e.kwargs:
            return self._combine(list(e.args))
        if isinstance(e, A.Call) and e.func in _SAME_SHAPE and len(e.args) == 1 and not e.kwargs:
            return self.of(e.args[0])
        if isinstance(e, A.Call) and e.func == "transpose" and len(e.args) == 1:
            s = self.of(e.args[0])
            return None if s is None else tuple(reversed(s))
        if isinstance(e, A.Vector) and e.items:
            items = self._combine(list(e.items))
            return None if items is None else (len(e.items),) + items
        if isinstance(e, A.Index):
            return self._index(e)
        return None

    def _combine(self, operands: list[A.Expr], matmul: bool = False) -> Shape | None:
        shapes = [self.of(x) for x in operands]
        if any(s is None for s in shapes):
            return None
        out = shapes[0]
        try:
            for s in shapes[1:]:
                out = matmul_shape(out, s) if matmul else broadcast(out, s)
        except ShapeError:  # the checker has reported it, or binding will
            return None
        return out

    def _index(self, e: A.Index) -> Shape | None:
        base = self.of(e.base)
        if base is None or len(e.args) > len(base):
            return None
        out: list[Dim] = []
        for k, a in enumerate(e.args):
            if isinstance(a, A.Slice):
                if a.lo is not None or a.hi is not None:
                    return None
                out.append(base[k])
                continue
            s = self.of(a)
            if s is None:
                return None
            out.extend(s)
        return tuple(out) + base[len(e.args):]


def merged_index(e: A.Index, rank_of: Callable[[A.Expr], int]) -> A.Index | None:
    """Chained indexing ``x[a][b]`` (the first index without a slice) as one
    index of ``x``: ``x[i][j]`` is ``x[i, j]``; through an int array, the
    outer index picks entries of the array, ``x[g][j]`` is ``x[g[j]]`` (and
    ``x[i, G][j, k]`` is ``x[i, G[j], k]`` for a 1-d G). Merged as
    ``x[g, j]`` (before), it crashed in JAX with "Too many indices" (a let
    ``m = w[group] + c`` read as ``m[n]``: a fuzz finding). The array's new
    index keeps the outer one's shape to check against (a let's, pushed).
    None where they stay two indices: a slice in the first, or one that would
    slice the array (``x[G][:, j]``: a node index is not sliced; the gather
    then reads the whole axis and JAX indexes its value)."""
    inner, outer = e.base.args, e.args
    if any(isinstance(a, A.Slice) for a in inner):
        return None
    arrays = [k for k, a in enumerate(inner) if rank_of(a) > 0]
    if not arrays:
        return A.Index(e.span, e.base.base, inner + outer)
    p = arrays[0]  # the checker allows one int array per index
    g = inner[p]
    rank = rank_of(g)
    if any(isinstance(a, A.Slice) for a in outer[:rank]):
        return None
    picked = A.Index(g.span, g, outer[:rank], e.base_shape)
    return A.Index(e.span, e.base.base, inner[:p] + (picked,) + inner[p + 1:] + outer[rank:])
