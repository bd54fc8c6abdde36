"""What the checker hands on: every declaration checked, with fns and
includes inlined, so that the lowering sees one flat program."""

from __future__ import annotations

from dataclasses import dataclass, field

from fglang.compiler import ast as A
from fglang.compiler.ir import DataInfo
from fglang.compiler.sizes import SizeCheck
from fglang.compiler.types import Domain, Shape


@dataclass(frozen=True)
class VarInfo:
    name: str
    node_dims: tuple[A.Expr, ...]
    value_shape: tuple[A.Expr, ...]
    domain: Domain
    prior: A.Call | None  # fns inlined
    span: A.Span
    # bounds that are expressions of vars, data or lets (var_bounds.py), fns inlined
    bounds: tuple[VarBound, ...] = ()


@dataclass(frozen=True)
class VarBound:
    """One ``lower=``/``upper=``/``offset=``/``multiplier=`` of a var that is not a
    constant: its expression and shape (broadcast to the var's when evaluated)."""

    keyword: str
    expr: A.Expr
    shape: Shape
    span: A.Span


@dataclass(frozen=True)
class LetInfo:
    name: str
    expr: A.Expr  # fns inlined
    shape: Shape
    dtype: str
    span: A.Span


@dataclass(frozen=True)
class FactorInfo:
    name: str
    ranges: tuple[A.IndexRange, ...]
    lhs: A.Expr | None
    dist: A.Call | None  # fns inlined
    potential: A.Expr | None
    span: A.Span


@dataclass(frozen=True)
class CheckedModel:
    name: str
    file: str
    sources: dict[str, str]
    data: dict[str, DataInfo]
    vars: dict[str, VarInfo]
    lets: dict[str, LetInfo]
    factors: dict[str, FactorInfo]
    order: tuple[str, ...] = field(default=())  # declaration order of data/var/let/factor names
    # the shape rules symbolic sizes left open, for binding to decide (see sizes.py)
    size_checks: tuple[SizeCheck, ...] = field(default=(), repr=False)
