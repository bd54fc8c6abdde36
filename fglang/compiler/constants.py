"""Constant expressions that are not finite real numbers, found where they are written.

``(-1)^0.5`` is complex, ``10^400`` overflows, ``1/0`` divides by zero:
folded by Python they become a complex number (a ``TypeError`` three stages
later), ``inf``, or nothing at all, and as a data default ``(-8)^(1/3)``
would silently become 1.0. The checker calls ``bad_constants`` on every
expression of a declaration; the fold is one post-order pass (a generated
sum of thousands of terms stays linear).
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterator
from dataclasses import fields, is_dataclass

from fglang.compiler import ast as A
from fglang.compiler.builtins import CONSTANTS
from fglang.compiler.expr import children


def decl_exprs(d: object) -> Iterator[A.Expr]:
    """The root expressions of a declaration (dims, bounds, defaults, bodies, arguments)."""
    stack = [d]
    while stack:
        x = stack.pop()
        if isinstance(x, A.Expr):
            yield x
        elif isinstance(x, tuple | list):
            stack.extend(reversed(x))
        elif is_dataclass(x) and not isinstance(x, A.Span):
            stack.extend(reversed([getattr(x, f.name) for f in fields(x)]))


def bound_names(d: object) -> set[str]:
    """Names a declaration binds (fn parameters and lets, factor and reduction indices):
    they hide the built-in constants ``pi`` and ``inf``."""
    out: set[str] = set()
    if isinstance(d, A.FnDecl):
        out |= {p.name for p in d.params} | {name for name, _, _ in d.lets}
    if isinstance(d, A.FactorDecl):
        out |= {r.name for r in d.ranges}
    for root in decl_exprs(d):
        stack = [root]
        while stack:
            e = stack.pop()
            if isinstance(e, A.Reduce):
                out |= {r.name for r in e.ranges}
            if isinstance(e, A.Scan):
                out |= {e.index.name, e.state}
            stack.extend(children(e))
    return out


def _fold(op: str, a: float, b: float) -> tuple[float | complex | None, str | None]:
    """(value, what went wrong)."""
    try:
        if op == "+":
            v = a + b
        elif op == "-":
            v = a - b
        elif op == "*":
            v = a * b
        elif op == "/":
            v = a / b
        else:
            v = float(a) ** b
    except ZeroDivisionError:
        return None, "divides by zero"
    except OverflowError:
        return None, "overflows a 64-bit float"
    if isinstance(v, complex):
        return None, "is not a real number (a negative base to a fractional power is complex)"
    if isinstance(v, float) and math.isnan(v):
        return None, "is not a number (nan)"
    if isinstance(v, float) and math.isinf(v) and not (math.isinf(a) or math.isinf(b)):
        return None, "overflows a 64-bit float"
    return v, None


def bad_constants(root: A.Expr, hidden: Container[str] = ()) -> list[tuple[A.Span, str]]:
    """(span, complaint) for the innermost constant sub-expressions that are not
    finite reals; an expression above one is not reported again."""
    values: dict[int, float | None] = {}
    out: list[tuple[A.Span, str]] = []
    stack: list[tuple[A.Expr, bool]] = [(root, False)]
    while stack:
        e, ready = stack.pop()
        if not ready:
            stack.append((e, True))
            stack.extend((c, False) for c in children(e))
            continue
        v: float | None = None
        if isinstance(e, A.Num):
            v = e.value
        elif isinstance(e, A.Name) and e.id in CONSTANTS and e.id not in hidden:
            v = CONSTANTS[e.id]
        elif isinstance(e, A.Neg):
            v = values.get(id(e.operand))
            v = None if v is None else -v
        elif isinstance(e, A.BinOp) and e.op in "+-*/^":
            a, b = values.get(id(e.left)), values.get(id(e.right))
            if a is not None and b is not None:
                v, why = _fold(e.op, a, b)
                if why is not None:
                    out.append((e.span, f"this constant {why}"))
        values[id(e)] = v
    return out
