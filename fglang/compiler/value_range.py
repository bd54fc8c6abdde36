"""What an expression's value can provably be: an interval from the types it
reads (interval arithmetic, conservative: unknown is ``(-inf, inf)``).

Why: a prior's support must contain its var's. With a bound that reads
other vars (``var x: real(lower=tau) ~ exponential(1)``) the var lies in
``[tau, inf)``, inside ``exponential``'s ``[0, inf)`` exactly when ``tau``
cannot be negative, which its type says (``tau: positive``, ``data L:
real(lower=0)``, ``exp(...)``, a sum of such). Whatever this cannot prove
stays refused, so a prior never puts mass outside the support it was given.

Every rule below is a true enclosure of the operation's image, endpoints
included, so the answer is never wider than the truth is narrow: a
``lower >= 0`` that this proves holds for every value the vars can take.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from fglang.compiler import ast as A
from fglang.compiler.types import Domain

Interval = tuple[float, float]
EVERYTHING: Interval = (-math.inf, math.inf)

#: the kinds whose every element lies in a fixed interval
_KIND_RANGE: dict[str, Interval] = {
    "positive": (0.0, math.inf),
    "positive_ordered": (0.0, math.inf),
    "unit": (0.0, 1.0),
    "simplex": (0.0, 1.0),
    "bool": (0.0, 1.0),
    "cholesky_factor_corr": (-1.0, 1.0),
    "corr_matrix": (-1.0, 1.0),
}

# monotone non-decreasing elementwise functions, defined on the whole line: f([a, b]) = [f(a), f(b)]
def _finite(f: Callable[[float], float], at_minus_inf: float, at_inf: float) -> Callable[[float], float]:
    """``f`` with its limits at the infinities, and ``inf`` where it overflows."""
    def g(x: float) -> float:
        if x == -math.inf:
            return at_minus_inf
        if x == math.inf:
            return at_inf
        try:
            return f(x)
        except OverflowError:
            return math.inf if x > 0 else at_minus_inf
    return g


_INCREASING: dict[str, Callable[[float], float]] = {
    "exp": _finite(math.exp, 0.0, math.inf),
    "sigmoid": _finite(lambda x: 1 / (1 + math.exp(-x)) if x > -700 else 0.0, 0.0, 1.0),
    "softplus": _finite(lambda x: math.log1p(math.exp(x)) if x < 700 else x, 0.0, math.inf),
    "relu": lambda x: max(x, 0.0),
    "tanh": math.tanh,
    "floor": lambda x: math.floor(x) if math.isfinite(x) else x,
    "ceil": lambda x: math.ceil(x) if math.isfinite(x) else x,
}
_INCREASING["inv_logit"] = _INCREASING["sigmoid"]


def domain_range(domain: Domain | None) -> Interval:
    """The interval every element of a var or data of ``domain`` lies in
    (its constant sides; a side that reads vars is not known here)."""
    if domain is None:
        return EVERYTHING
    if domain.kind in _KIND_RANGE:
        return _KIND_RANGE[domain.kind]
    if domain.kind in ("interval", "bounded", "int", "real"):
        lo = -math.inf if domain.lower is None else float(domain.lower)
        hi = math.inf if domain.upper is None else float(domain.upper)
        return (lo, hi)
    return EVERYTHING


def value_range(e: A.Expr, name_range: Callable[[str], Interval]) -> Interval:
    """An interval that holds every value of ``e``; ``name_range(n)`` gives
    the interval of a name (a var, data or constant; ``EVERYTHING`` when
    unknown). Names bound inside ``e`` (a reduction's index, a scan's state)
    are unknown."""
    return _range(e, name_range, frozenset())


def _range(e: A.Expr, name_range: Callable[[str], Interval], local: frozenset[str]) -> Interval:
    def r(x: A.Expr, extra: frozenset[str] = frozenset()) -> Interval:
        return _range(x, name_range, local | extra)

    if isinstance(e, A.Num):
        return (float(e.value), float(e.value))
    if isinstance(e, A.Name):
        return EVERYTHING if e.id in local else name_range(e.id)
    if isinstance(e, A.Index):
        return r(e.base)  # an element lies where the whole does
    if isinstance(e, A.Neg):
        lo, hi = r(e.operand)
        return (-hi, -lo)
    if isinstance(e, A.BinOp):
        return _binop(e.op, r(e.left), r(e.right), e.right)
    if isinstance(e, A.Call):
        return _call(e, [r(a) for a in e.args])
    if isinstance(e, A.Reduce):
        lo, hi = r(e.body, frozenset(x.name for x in e.ranges))
        if e.op in ("max", "min"):
            return (lo, hi)
        if e.op in ("sum", "prod"):  # an empty sum is 0, an empty product 1
            if lo >= 0:
                return (0.0, math.inf)
            if e.op == "sum" and hi <= 0:
                return (-math.inf, 0.0)
        return EVERYTHING
    return EVERYTHING


def _mul(a: Interval, b: Interval) -> Interval:
    products = [x * y for x in a for y in b if not ((x == 0 and math.isinf(y)) or (y == 0 and math.isinf(x)))]
    if len(products) < 4:  # 0 * inf at a corner: the product's sign is all that is sure
        if a[0] >= 0 and b[0] >= 0:
            return (0.0, math.inf)
        return EVERYTHING
    return (min(products), max(products))


def _binop(op: str, a: Interval, b: Interval, right: A.Expr | None) -> Interval:
    if op == "+":
        return (a[0] + b[0], a[1] + b[1]) if not _opposite_infs(a[0], b[0]) and not _opposite_infs(a[1], b[1]) \
            else EVERYTHING
    if op == "-":
        return _binop("+", a, (-b[1], -b[0]), None)
    if op == "*":
        return _mul(a, b)
    if op == "/":
        if b[0] > 0:  # a positive divisor keeps the dividend's sign
            inv = (1 / b[1] if b[1] < math.inf else 0.0, 1 / b[0])
            return _mul(a, inv)
        return EVERYTHING
    if op == "^":
        p = right.value if isinstance(right, A.Num) else None
        if p is not None and float(p).is_integer() and int(p) % 2 == 0:
            return (0.0, math.inf)  # an even power
        if a[0] >= 0:
            return (0.0, math.inf)  # a power of a number >= 0
        return EVERYTHING
    return EVERYTHING


def _opposite_infs(x: float, y: float) -> bool:
    return math.isinf(x) and math.isinf(y) and (x > 0) != (y > 0)


def _call(e: A.Call, args: list[Interval]) -> Interval:
    f = e.func
    if len(args) == 1 and not e.kwargs:
        (lo, hi), = args
        if f in _INCREASING:
            return (_INCREASING[f](lo), _INCREASING[f](hi))
        if f in ("abs", "square"):
            m = max(abs(lo), abs(hi))
            floor = 0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))
            return (floor, m) if f == "abs" else (floor**2, m**2)
        if f == "sqrt":
            return (math.sqrt(max(lo, 0.0)), math.sqrt(hi) if hi >= 0 else 0.0)
        if f in ("log", "log1p") and lo > (0 if f == "log" else -1):
            g = math.log if f == "log" else math.log1p
            return (g(lo), g(hi) if hi < math.inf else math.inf)
    if f in ("min", "max", "mean") and len(args) == 1:  # over the elements of one array
        return args[0]
    if f == "sum" and len(args) == 1 and args[0][0] >= 0:
        return (0.0, math.inf)
    if f in ("min", "max") and len(args) == 2:
        (a0, a1), (b0, b1) = args
        return (min(a0, b0), min(a1, b1)) if f == "min" else (max(a0, b0), max(a1, b1))
    return EVERYTHING
