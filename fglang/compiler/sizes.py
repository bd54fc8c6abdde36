"""What the data's sizes decide: symbolic dims made concrete, and the shape
rules the checker had to leave open.

The checker sees ``X[N, D] @ w[K]`` before any data exist; ``D`` and ``K``
may be equal, so it records a ``SizeCheck`` instead of an error. Binding
decides each one with the sizes in hand, with the same rule and message the
checker would have used, so a model is checked once and bound many times
(once per batch) without checking it again. Nothing here imports JAX.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fglang.compiler import ast as A
from fglang.compiler.distributions import outside
from fglang.compiler.expr import names_in, static_value
from fglang.compiler.types import Dim, Shape, ShapeError, Sym, broadcast, matmul_shape, show_shape
from fglang.errors import Diagnostic


@dataclass(frozen=True)
class Static:
    """What is fixed per model shape: int sizes (for slices) and the padded
    length of every reduction (keyed by the Reduce node's identity)."""

    sizes: dict[str, int]
    reduction_len: dict[int, int]


@dataclass(frozen=True)
class SizeCheck:
    """One shape rule that symbolic sizes could not decide.

    ``rule`` is ``broadcast`` or ``matmul`` (``operands`` two shapes; the
    message's ``{err}`` is the rule's own complaint), ``same`` (two shapes
    that must be equal), ``same_dim`` (two dims), ``index`` (``value`` must
    index a dim, ``operands == (dim,)``) or ``slice`` (``operands == (bound,
    dim)``) or ``domain`` (``value`` must lie in the argument domain
    ``operands[0]``) or ``df`` (``value``, a size or scalar data, must exceed
    ``operands[0] - 1``: a Wishart's degrees of freedom). ``message`` is a ``str.format`` template over the operands as
    shown (``{0}``, ``{1}``, ...). ``decl`` numbers the declaration it belongs
    to and ``uses`` names the lets whose shapes it reads, so that one mistake
    is reported once, as the checker would.
    """

    rule: str
    operands: tuple
    message: str
    span: A.Span = field(compare=False, repr=False)
    hint: str | None = None
    value: A.Expr | None = field(default=None, compare=False, repr=False)
    decl: int = 0
    uses: frozenset[str] = frozenset()
    owner: str | None = None  # the let it belongs to, if any


def evaluable(e: A.Expr, sizes_known: Iterable[str]) -> bool:
    """Whether every name of ``e`` is one of the sizes the data will give."""
    known = set(sizes_known)
    return all(n.id in known for n in names_in(e))


def dim_value(d: Dim, sizes: Mapping[str, int]) -> int | None:
    """A dim with the data's sizes, or None if the sizes do not fix it."""
    if isinstance(d, int):
        return d
    if not isinstance(d, Sym) or d.value is None:
        return None
    v = d.value
    if isinstance(v, A.Expr):
        n = static_value(v, sizes)
        return int(n) if n is not None and float(n).is_integer() else None
    kind, x, y = v
    a, b = dim_value(x, sizes), dim_value(y, sizes)
    if a is None or b is None:
        return None
    if kind == "sub":
        return max(a - b, 0)
    return a if b == 1 or a == b else b if a == 1 else a  # bcast; a mismatch has its own check


def shape_value(shape: Shape, sizes: Mapping[str, int]) -> tuple[int, ...] | None:
    out = tuple(dim_value(d, sizes) for d in shape)
    return None if any(d is None for d in out) else out


def _failure(c: SizeCheck, sizes: Mapping[str, int], scalars: Mapping[str, float]) -> tuple[str, str | None] | None:
    """The message and hint of a check the sizes (or, for ``df``, the scalar
    data) break; None if it holds (or they cannot tell)."""
    if c.rule == "df":  # a Wishart's degrees of freedom: value > dim - 1
        v, d = static_value(c.value, {**scalars, **sizes}), dim_value(c.operands[0], sizes)
        if v is None or d is None or v > d - 1:
            return None
        return c.message.format(v, d - 1, d), c.hint
    if c.rule == "index":
        v = static_value(c.value, sizes)
        if v is None:
            return None
        if v < 0:
            where = f" ({c.message})" if c.message else ""
            return f"index {v} is negative{where}; indices do not wrap around", None
        d = dim_value(c.operands[0], sizes)
        if d is not None and not 0 <= v < d:  # the message: which axis of what (infer.py)
            where = f"{c.message} (size {d})" if c.message else f"a dimension of size {d}"
            return f"index {v} is out of range for {where}", "indices are 0-based"
        return None
    if c.rule == "domain":
        v = static_value(c.value, sizes)
        return (c.message.format(v), c.hint) if v is not None and outside(c.operands[0], v) else None
    if c.rule in ("same_dim", "slice"):
        dims = tuple(dim_value(d, sizes) for d in c.operands)
        if any(d is None for d in dims):
            return None
        a, b = dims
        bad = a != b if c.rule == "same_dim" else not 0 <= a <= b
        return (c.message.format(*dims), c.hint) if bad else None
    shapes = tuple(shape_value(s, sizes) for s in c.operands)
    if any(s is None for s in shapes):
        return None
    shown = [show_shape(s) for s in shapes]
    if c.rule == "same":
        return (c.message.format(*shown), c.hint) if shapes[0] != shapes[1] else None
    try:
        (broadcast if c.rule == "broadcast" else matmul_shape)(shapes[0], shapes[1])
    except ShapeError as err:
        return c.message.format(*shown, err=err), c.hint
    return None


# rules whose failure the checker reports without giving up on the expression
_REPORT_AND_GO_ON = frozenset({"domain", "slice", "df"})


def check_sizes(checks: Iterable[SizeCheck], sizes: Mapping[str, int], file: str,
                scalars: Mapping[str, float] | None = None) -> list[Diagnostic]:
    """Every deferred shape rule the data's sizes break, as the checker reports them:
    the first per declaration, and nothing more about a let already wrong
    (``scalars``: the scalar data, for the rules about a value, ``df``)."""
    out: list[Diagnostic] = []
    failed_decls: set[int] = set()
    failed_lets: set[str] = set()
    for c in checks:
        if c.decl in failed_decls or c.uses & failed_lets:
            if c.owner is not None:
                failed_lets.add(c.owner)
            continue
        bad = _failure(c, sizes, scalars or {})
        if bad is None:
            continue
        message, hint = bad
        out.append(Diagnostic(f"{message} (with the sizes in {file})", c.span, hint))
        if c.rule in _REPORT_AND_GO_ON:
            continue
        failed_decls.add(c.decl)
        if c.owner is not None:
            failed_lets.add(c.owner)
    return out
