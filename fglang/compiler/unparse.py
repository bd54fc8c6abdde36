"""AST -> .fg source text (for listings, and for the parser's round-trip tests)."""

from __future__ import annotations

from fglang.compiler import ast as A
from fglang.compiler.ir import SlotRef

_PREC = {"==": 1, "!=": 1, "<": 1, "<=": 1, ">": 1, ">=": 1, "+": 2, "-": 2, "*": 3, "/": 3, "@": 3, "^": 5}


def unparse(e: A.Expr | None, parent: int = 0) -> str:
    if e is None:
        return ""
    if isinstance(e, A.Num):
        return repr(e.value) if not e.is_int else str(e.value)
    if isinstance(e, A.Bool):
        return "true" if e.value else "false"
    if isinstance(e, A.Name):
        return e.id
    if isinstance(e, SlotRef):
        return f"<slot {e.slot}>"
    if isinstance(e, A.Neg):
        s = "-" + unparse(e.operand, 4)
        return f"({s})" if parent > 4 else s
    if isinstance(e, A.BinOp):
        p = _PREC[e.op]
        if e.op == "^":
            s = f"{unparse(e.left, p + 1)} ^ {unparse(e.right, p)}"
        elif p == 1:
            s = f"{unparse(e.left, p + 1)} {e.op} {unparse(e.right, p + 1)}"
        else:
            s = f"{unparse(e.left, p)} {e.op} {unparse(e.right, p + 1)}"
        return f"({s})" if p < parent or (p == 1 and parent == 1) else s
    if isinstance(e, A.Slice):
        return f"{unparse(e.lo)}:{unparse(e.hi)}"
    if isinstance(e, A.Index):
        return f"{unparse(e.base, 6)}[{', '.join(unparse(a) for a in e.args)}]"
    if isinstance(e, A.Call):
        args = [unparse(a) for a in e.args] + [f"{k.name}={unparse(k.value)}" for k in e.kwargs]
        return f"{e.func}({', '.join(args)})"
    if isinstance(e, A.Vector):
        return "[" + ", ".join(unparse(x) for x in e.items) + "]"
    if isinstance(e, A.Reduce):
        rng = ", ".join(f"{r.name} in {unparse(r.lo)}:{unparse(r.hi)}" for r in e.ranges)
        return f"{e.op}[{rng}]({unparse(e.body)})"
    if isinstance(e, A.Scan):
        r = e.index
        return f"scan[{r.name} in {unparse(r.lo)}:{unparse(r.hi)}]({unparse(e.init)}, {e.state} -> {unparse(e.body)})"
    return f"<{type(e).__name__}>"
