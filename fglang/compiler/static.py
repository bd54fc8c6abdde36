"""Values fixed by the data's sizes: what binding needs without JAX.

Kept apart from `lower_jax` so that checking and binding a model (`fglang
check`, `--emit ir`) do not import JAX, which alone takes about a second.
"""

from __future__ import annotations

from dataclasses import dataclass

from fglang.compiler import ast as A
from fglang.compiler.builtins import CONSTANTS


@dataclass(frozen=True)
class Static:
    """What is fixed per model shape: int sizes (for slices) and the padded
    length of every reduction (keyed by the Reduce node's identity)."""

    sizes: dict[str, int]
    reduction_len: dict[int, int]


def static_value(e: A.Expr, sizes: dict[str, int]) -> int | float | None:
    """An int expression of sizes and constants (``N - 1``), or None if it is not one."""
    if isinstance(e, A.Num):
        return e.value
    if isinstance(e, A.Name):
        if e.id in sizes:
            return sizes[e.id]
        return CONSTANTS.get(e.id)
    if isinstance(e, A.Neg):
        v = static_value(e.operand, sizes)
        return None if v is None else -v
    if isinstance(e, A.BinOp) and e.op in "+-*":
        a, b = static_value(e.left, sizes), static_value(e.right, sizes)
        if a is None or b is None:
            return None
        return {"+": a + b, "-": a - b, "*": a * b}[e.op]
    return None
