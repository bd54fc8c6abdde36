"""The .fg abstract syntax tree.

Every node carries the ``Span`` it came from, because every later error
(names, shapes, data, backend support) must point at the user's source.
Nodes are frozen so that the checker and the lowering can share and rewrite
them (``fn`` inlining, ``let`` push-down) without aliasing bugs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fglang.span import Span  # here too, so that every stage can write A.Span

NOWHERE = Span("<builtin>", 0, 0, 0, 0)


# ---------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Expr:
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class Num(Expr):
    value: float | int = 0
    is_int: bool = False


@dataclass(frozen=True)
class Bool(Expr):
    value: bool = False


@dataclass(frozen=True)
class Name(Expr):
    id: str = ""


@dataclass(frozen=True)
class Neg(Expr):
    operand: Expr | None = None


@dataclass(frozen=True)
class BinOp(Expr):
    """Arithmetic (``+ - * / ^ @``) and comparisons (``== != < <= > >=``)."""

    op: str = ""
    left: Expr | None = None
    right: Expr | None = None


@dataclass(frozen=True)
class Slice(Expr):
    """``lo:hi`` inside an index; either end may be missing."""

    lo: Expr | None = None
    hi: Expr | None = None


@dataclass(frozen=True)
class Index(Expr):
    base: Expr | None = None
    args: tuple[Expr, ...] = ()
    # (the base's symbolic shape, the base as written), set by the checker where it types the
    # base; rewrites copy it (``replace``), and binding checks every index against it
    # (compiler/indices.py `check_expr_indices`): JAX clamps an index past the end
    base_shape: tuple | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Kwarg:
    name: str
    value: Expr
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class Call(Expr):
    func: str = ""
    func_span: Span | None = field(default=None, compare=False, repr=False)
    args: tuple[Expr, ...] = ()
    kwargs: tuple[Kwarg, ...] = ()


@dataclass(frozen=True)
class Vector(Expr):
    items: tuple[Expr, ...] = ()


@dataclass(frozen=True)
class IndexRange:
    """``name in lo:hi`` — a comprehension or reduction index (half-open)."""

    name: str
    lo: Expr
    hi: Expr
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class Reduce(Expr):
    """``sum[k in 0:K](body)`` and its siblings ``prod``, ``max``, ``min``, ``log_sum_exp``."""

    op: str = ""
    ranges: tuple[IndexRange, ...] = ()
    body: Expr | None = None


@dataclass(frozen=True)
class Scan(Expr):
    """``scan[t in lo:hi](init, prev -> step)``: a recurrence (Stan's for loop
    over a local, NumPyro's ``scan``). Its value is the states ``init``,
    ``step(t=lo)``, ..., ``step(t=hi-1)`` stacked along a new first axis, each
    step reading the state before it as ``state`` (see ``compiler/scan.py``)."""

    index: IndexRange | None = None
    init: Expr | None = None
    state: str = ""
    body: Expr | None = None
    state_span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Truncation:
    """Stan's ``T[lo, hi]`` after a distribution call (either end may be
    missing): the checker adds the normalizer ``-log(F(hi) - F(lo))`` as an
    auxiliary potential factor (``compiler/truncation.py``)."""

    lo: Expr | None
    hi: Expr | None
    span: Span = field(compare=False, repr=False)


# ---------------------------------------------------------------- declarations
@dataclass(frozen=True)
class TypeExpr:
    base: str
    bounds: tuple[Kwarg, ...]
    shape: tuple[Expr, ...]
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class Decl:
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class DataDecl(Decl):
    name: str = ""
    name_span: Span | None = field(default=None, compare=False, repr=False)
    dims: tuple[Expr, ...] = ()
    type: TypeExpr | None = None
    default: Expr | None = None
    batch: bool = False


@dataclass(frozen=True)
class VarDecl(Decl):
    name: str = ""
    name_span: Span | None = field(default=None, compare=False, repr=False)
    dims: tuple[Expr, ...] = ()
    type: TypeExpr | None = None
    prior: Call | None = None
    truncation: Truncation | None = None


@dataclass(frozen=True)
class LetDecl(Decl):
    name: str = ""
    name_span: Span | None = field(default=None, compare=False, repr=False)
    expr: Expr | None = None


@dataclass(frozen=True)
class Param:
    name: str
    type: TypeExpr
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class FnDecl(Decl):
    name: str = ""
    name_span: Span | None = field(default=None, compare=False, repr=False)
    params: tuple[Param, ...] = ()
    ret: TypeExpr | None = None
    lets: tuple[tuple[str, Expr, Span], ...] = ()
    body: Expr | None = None


@dataclass(frozen=True)
class IncludeDecl(Decl):
    path: str = ""


@dataclass(frozen=True)
class FactorDecl(Decl):
    name: str = ""
    name_span: Span | None = field(default=None, compare=False, repr=False)
    ranges: tuple[IndexRange, ...] = ()
    lhs: Expr | None = None  # None for a potential
    dist: Call | None = None  # None for a potential
    potential: Expr | None = None
    truncation: Truncation | None = None  # only on a sample factor


@dataclass(frozen=True)
class Program:
    name: str | None
    decls: tuple[Decl, ...]
    file: str
    source: str
    header_span: Span | None = None
