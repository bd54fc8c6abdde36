"""The generic expression toolkit: traversal, rewriting, and the one static evaluator.

Every stage (checking, inlining, lowering, binding, printing the IR, the
backends' reports) walks the same tree; keeping the child structure in one
``map_children`` means a new node kind is taught to all of them at once.
``static_value`` is the only evaluator of constant and size expressions:
the checker folds constants with it and binding computes sizes with it, so
the two can never disagree about what ``N - 1`` or ``2 ^ 3`` is.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import replace

from fglang.compiler import ast as A
from fglang.compiler.builtins import CONSTANTS


def map_children(e, f: Callable):
    """``e`` with ``f`` applied to each direct child expression (a leaf comes back as is)."""
    if isinstance(e, A.Neg):
        return replace(e, operand=f(e.operand))
    if isinstance(e, A.BinOp):
        return replace(e, left=f(e.left), right=f(e.right))
    if isinstance(e, A.Slice):
        return replace(e, lo=f(e.lo) if e.lo is not None else None, hi=f(e.hi) if e.hi is not None else None)
    if isinstance(e, A.Index):
        return replace(e, base=f(e.base), args=tuple(f(a) for a in e.args))
    if isinstance(e, A.Call):
        return replace(
            e, args=tuple(f(a) for a in e.args), kwargs=tuple(A.Kwarg(k.name, f(k.value), k.span) for k in e.kwargs)
        )
    if isinstance(e, A.Vector):
        return replace(e, items=tuple(f(a) for a in e.items))
    if isinstance(e, A.Reduce):
        ranges = tuple(A.IndexRange(r.name, f(r.lo), f(r.hi), r.span) for r in e.ranges)
        return replace(e, ranges=ranges, body=f(e.body))
    if isinstance(e, A.Scan):
        r = e.index
        return replace(e, index=A.IndexRange(r.name, f(r.lo), f(r.hi), r.span), init=f(e.init), body=f(e.body))
    return e


def children(e) -> list:
    out: list = []
    map_children(e, lambda c: (out.append(c), c)[1])
    return out


def walk(e) -> Iterator:
    """Every node of ``e``, parents before children, in source order; a node
    shared by several parents (a let's expansion, compiler/dag.py) once."""
    # an explicit stack: nested generators would make a deep expression quadratic
    stack = [e]
    seen: dict[int, object] = {}
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen[id(x)] = x
        yield x
        stack.extend(reversed(children(x)))


def names_in(e) -> list[A.Name]:
    """Every name ``e`` reads, in source order (repeats kept: each use has its own span)."""
    return [x for x in walk(e) if isinstance(x, A.Name)]


def substitute(e: A.Expr, env: Mapping[str, A.Expr]) -> A.Expr:
    """Replace free names by expressions; a reduction's own index hides the outer one."""
    if isinstance(e, A.Name) and e.id in env:
        return env[e.id]
    if isinstance(e, A.Reduce):
        inner = {k: v for k, v in env.items() if k not in {r.name for r in e.ranges}}
        ranges = tuple(A.IndexRange(r.name, substitute(r.lo, env), substitute(r.hi, env), r.span) for r in e.ranges)
        return replace(e, ranges=ranges, body=substitute(e.body, inner))
    if isinstance(e, A.Scan):
        inner = {k: v for k, v in env.items() if k not in (e.index.name, e.state)}
        r = e.index
        index = A.IndexRange(r.name, substitute(r.lo, env), substitute(r.hi, env), r.span)
        return replace(e, index=index, init=substitute(e.init, env), body=substitute(e.body, inner))
    return map_children(e, lambda x: substitute(x, env))


_FOLD: dict[str, Callable] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "^": lambda a, b: float(a) ** b,
}


def static_value(
    e: A.Expr | None, sizes: Mapping[str, int | float] | None = None, hidden: Container[str] = ()
) -> int | float | None:
    """The value of an expression of literals, constants and known sizes (``N - 1``,
    ``2 ^ 3``), or None if it is not one. ``hidden`` names shadow the built-in
    constants (a fn parameter called ``pi``)."""
    if isinstance(e, A.Num):
        return e.value
    if isinstance(e, A.Name):
        if sizes is not None and e.id in sizes:
            return sizes[e.id]
        return CONSTANTS.get(e.id) if e.id not in hidden else None
    if isinstance(e, A.Neg):
        v = static_value(e.operand, sizes, hidden)
        return None if v is None else -v
    if isinstance(e, A.BinOp) and e.op in _FOLD:
        a = static_value(e.left, sizes, hidden)
        b = static_value(e.right, sizes, hidden) if a is not None else None
        if a is None or b is None:
            return None
        try:
            v = _FOLD[e.op](a, b)
        except (ZeroDivisionError, OverflowError):
            return None
        # (-1)^0.5 is complex: not a value here (the checker reports it, fglang.compiler.constants)
        return None if isinstance(v, complex) else v
    return None
