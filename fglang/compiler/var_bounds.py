"""A var's bounds that are expressions of vars, data and lets
(``var x: real(lower=a)``, Stan's ``real<lower=a> x``), and Stan's
``offset=``/``multiplier=`` (``real(offset=mu, multiplier=tau)``).

A mixin of ``Checker``. Such a bound is typed like any expression: it may
read the data, the lets and the vars declared before its var, and its shape
must broadcast to the var's (a scalar, or an array of the var's shape). The
lowering turns it into a ``Derived`` that the backends evaluate per draw
(``ModelIR.bounds``), so a sampler transforms the var with the bound the
other vars give it. A bound reads only names declared before its var, so
the bounds form a DAG that one pass in declaration order evaluates; a bound
that reads its own var, or a var declared after it (the only way to write a
cycle), is a located error here.
"""

from __future__ import annotations

import math

from fglang.compiler import ast as A
from fglang.compiler.checked import VarBound
from fglang.compiler.expr import names_in
from fglang.compiler.groups import GROUPS
from fglang.compiler.types import Domain, Shape, dims_differ, show_shape
from fglang.compiler.unparse import unparse

AFFINE_KEYWORDS = ("offset", "multiplier")
DATA_BOUND_HINT = "a data declaration's bounds are constants or arithmetic on scalar data declared before it"


def scalar_data_arithmetic(e: A.Expr, scope: dict) -> bool:
    """Whether ``e`` is arithmetic (``+ - * / ^``) on numbers and scalar data
    declared before: a data declaration's bound that binding can fold
    (``data y[N]: int(lower=1, upper=K)``, Stan's ``int<lower=1, upper=K>``)."""
    if isinstance(e, A.Num):
        return True
    if isinstance(e, A.Name):
        sym = scope.get(e.id)
        return sym is not None and sym.kind == "data" and sym.t.shape == () and sym.t.dtype in ("int", "real")
    if isinstance(e, A.Neg):
        return scalar_data_arithmetic(e.operand, scope)
    if isinstance(e, A.BinOp) and e.op in ("+", "-", "*", "/", "^"):
        return scalar_data_arithmetic(e.left, scope) and scalar_data_arithmetic(e.right, scope)
    return False
_ORDER_HINT = "a var's bounds may read data, lets and the vars declared before it: declare '{0}' first"


class BoundTyping:
    """Needs from its host: ``err``, ``infer``, ``inline``, ``limited``,
    ``const_value``, ``scope``, ``all_decls`` (every named declaration) and
    ``dynamic_bounds`` (the non-constant keywords ``type_expr`` just found)."""

    def dynamic_domain(self, t: A.TypeExpr, lower: float | None, upper: float | None) -> Domain:
        """The domain of a var type with a bound that is not a constant (an
        infinite constant side is no bound, as in Stan)."""
        lower = None if lower == -math.inf else lower
        upper = None if upper == math.inf else upper
        kws = {kw.name for kw in self.dynamic_bounds}
        written = tuple((kw.name, unparse(kw.value)) for kw in self.dynamic_bounds)
        if kws & set(AFFINE_KEYWORDS):
            if t.base != "real" or lower is not None or upper is not None or kws & {"lower", "upper"}:
                self.err(
                    "offset= and multiplier= take a real var without lower= or upper= (as in Stan)",
                    t.span,
                    "write real(offset=MU, multiplier=SIGMA), or bounds without offset/multiplier",
                )
            return Domain("affine", None, None, written)
        texts = dict(written)
        if texts.get("lower") is not None and texts.get("lower") == texts.get("upper"):
            self.err(f"empty bounds: lower={texts['lower']} is not below upper={texts['upper']}", t.span)
        if t.base == "int":
            self.err("an int var's bounds must be constant numbers", t.span,
                     "only a real var's bounds may read vars, data and lets")
            return Domain("int", lower, upper)
        if t.base == "positive":
            if "lower" in kws:
                first = next(kw for kw in self.dynamic_bounds if kw.name == "lower")
                self.err("positive(lower=...) needs a constant lower bound", first.value.span,
                         f"write real(lower={unparse(first.value)}) for a lower bound that reads vars or data")
            lower = 0.0 if lower is None else max(lower, 0.0)
        return Domain("bounded", lower, upper, written)

    def var_bounds(self, d: A.VarDecl, domain: Domain, shape: Shape) -> tuple[VarBound, ...]:
        """Type-check every non-constant bound of var ``d`` (of shape ``shape``)."""
        out = []
        for kw in self.dynamic_bounds:
            e = kw.value
            if not self._reads_earlier(d.name, e):
                continue
            t = self.infer(e)
            if not t.ok:
                continue
            if t.dtype in GROUPS or t.dtype == "bool":
                what = "a comparison" if t.dtype == "bool" else f"a {t.dtype} value"
                self.err(f"the bound '{kw.name}=' of '{d.name}' is {what}; a bound is a number", e.span)
                continue
            if not self._fits(d.name, kw.name, t.shape, shape, e.span):
                continue
            if kw.name == "multiplier":
                v = self.const_value(e)
                if v is not None and not v > 0:
                    self.err(f"multiplier= of '{d.name}' must be positive, got {v:g}", e.span)
                    continue
            expr = self.inline(e)
            self.limited(expr, e)
            out.append(VarBound(kw.name, expr, t.shape, e.span))
        return tuple(out)

    def _reads_earlier(self, var: str, e: A.Expr) -> bool:
        """A bound reads neither its own var nor a name declared after it."""
        ok = True
        for n in names_in(e):
            if n.id == var:
                self.err(f"the bounds of '{var}' cannot read '{var}' itself", n.span,
                         "a bound is evaluated before its var is; write the constraint with other vars or data")
                ok = False
            elif n.id not in self.scope and n.id in self.all_decls:
                later = self.all_decls[n.id]
                kind = type(later).__name__.removesuffix("Decl").lower()
                where = f"line {later.span.line}" if later.span.file == n.span.file else \
                    f"{later.span.file}:{later.span.line}"
                self.err(
                    f"the bounds of '{var}' read {kind} '{n.id}', declared after '{var}' "
                    f"({where}): bounds are evaluated in declaration order and cannot form a cycle",
                    n.span,
                    _ORDER_HINT.format(n.id),
                )
                ok = False
        return ok

    def _fits(self, var: str, keyword: str, bound: Shape, shape: Shape, span: A.Span) -> bool:
        """Whether a bound of shape ``bound`` broadcasts to the var's ``shape``
        (sizes only the data fix are checked again at bind)."""
        bad = len(bound) > len(shape) or any(
            x != 1 and dims_differ(x, y) for x, y in zip(reversed(bound), reversed(shape))
        )
        if bad:
            self.err(
                f"the bound '{keyword}=' of '{var}' has shape {show_shape(bound)}, which does not broadcast to "
                f"the var's shape {show_shape(shape)}",
                span,
                "a bound is a scalar or an array of the var's shape (one bound per element)",
            )
        return not bad
