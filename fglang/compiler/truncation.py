"""Stan's truncation ``D(args) T[L, U]``: sugar for the normalizer a user
writes by hand, checked and lowered here, in the checker, so that every
backend sees only what it already knows (a sample site and a potential).

``x ~ D T[L, U]`` means the density of ``D`` restricted to ``[L, U]`` and
renormalized: ``log p_D(x) - log(F(U) - F(L))``. The checker keeps the sample
site untruncated and adds an auxiliary potential factor ``NAME__truncation``
(the owner's name: the var for a prior, the factor for a sample factor) whose
value is ``-log_diff_exp(lcdf(D, U), lcdf(D, L))``, ``-lccdf(D, L)`` or
``-lcdf(D, U)``, summed over every element the sample site covers. For an
int distribution the lower end is ``L - 1`` (P(L <= X) = 1 - F(L - 1)), as
in Stan.

A truncated var prior also needs the var's own bounds inside ``[L, U]``: the
sampler must never propose a value outside the truncation (Stan asks the same:
``real<lower=L, upper=U> x; x ~ normal(mu, s) T[L, U];``).
"""

from __future__ import annotations

from fglang.compiler import ast as A
from fglang.compiler.checked import FactorInfo, VarBound
from fglang.compiler.distributions import CDF, DISTRIBUTIONS
from fglang.compiler.types import Domain, Shape, ShapeError, T, show_shape
from fglang.compiler.unparse import unparse

SUFFIX = "__truncation"


class TruncationTyping:
    """Checker mixin: ``truncated`` checks a ``T[L, U]`` and registers its
    normalizer factor."""

    def truncated(
        self,
        owner: str,
        ranges: tuple[A.IndexRange, ...],
        dist: A.Call,
        trunc: A.Truncation,
        lhs: Shape,
        var: tuple[str, Domain, tuple[VarBound, ...]] | None = None,
    ) -> None:
        """Check ``trunc`` on ``dist`` (a sample site of shape ``lhs``) and add
        the factor ``owner__truncation``; ``var`` is the truncated var's name,
        domain and expression bounds (a prior, or a factor on the var itself).
        Call within the owner's scope."""
        sig = DISTRIBUTIONS.get(dist.func)
        if sig is None:
            return
        if dist.func not in CDF:
            self.err(f"T[...] truncates '{dist.func}', which has no CDF in fglang", trunc.span,
                     f"truncation needs one of: {', '.join(sorted(CDF))}; or write the normalizer as a potential")
            return
        if trunc.lo is None and trunc.hi is None:
            self.err("T[, ] gives neither end: it truncates nothing", trunc.span,
                     "write T[L, ], T[, U] or T[L, U], or drop the T[...]")
            return
        ok = True
        for end, e in (("lower", trunc.lo), ("upper", trunc.hi)):
            if e is None:
                continue
            t = self.infer(e)
            if not t.ok:
                ok = False
            elif t.dtype == "bool" or self.no_group(t, e, "a truncation bound"):
                self.err(f"the {end} end of T[...] must be a number", e.span)
                ok = False
            elif not self._bound_fits(end, e, t, lhs):
                ok = False
        lo, hi = (self.const_value(e) if e is not None else None for e in (trunc.lo, trunc.hi))
        if ok and lo is not None and hi is not None and not lo < hi:
            self.err(f"T[{lo:g}, {hi:g}] is empty: the lower end must be below the upper end", trunc.span,
                     "swap the two ends")
            ok = False
        if ok and var is not None:
            ok = self._var_bounds_within(trunc, lo, hi, *var)
        if not ok:
            return
        normalizer = _normalizer(dist, trunc, sig.discrete)
        nt = self.infer(normalizer)
        if not nt.ok:
            return
        count = self._count(lhs, nt.shape, trunc.span)
        if count is False:
            return
        value: A.Expr = normalizer if count is None else A.BinOp(trunc.span, "*", count, normalizer)
        potential = self.inline(A.Neg(trunc.span, value))
        self.limited(potential, dist)
        name = owner + SUFFIX
        if name in self.factors:  # pragma: no cover - '__' names are refused for user declarations
            self.err(f"'{name}' is already declared", trunc.span)
            return
        self.factors[name] = FactorInfo(name, ranges, None, None, potential, trunc.span)
        self.order.append(name)

    def _bound_fits(self, end: str, e: A.Expr, t: T, lhs: Shape) -> bool:
        """An end of T[...] broadcasts to the truncated value's shape (not beyond it)."""
        message = (f"the {end} end of T[...] has shape {{1}}, which does not broadcast to the truncated "
                   f"value's shape {{0}}")
        hint = "give a scalar, or one bound per element of the value"
        try:
            out = self.broadcast(lhs, t.shape, message, e, hint)
        except ShapeError:
            out = None
        if out is None or len(out) != len(lhs) or any(str(a) != str(b) for a, b in zip(out, lhs)):
            self.err(message.format(show_shape(lhs), show_shape(t.shape)), e.span, hint)
            return False
        return True

    def _var_bounds_within(
        self, trunc: A.Truncation, lo, hi, var: str, domain: Domain, bounds: tuple[VarBound, ...]
    ) -> bool:
        """The var's declared support lies inside [L, U] (Stan: a truncated
        parameter must be declared with those bounds)."""
        ok = True
        for end, e, want, keyword in (("lower", trunc.lo, lo, "lower"), ("upper", trunc.hi, hi, "upper")):
            if e is None:
                continue
            have = domain.lower if end == "lower" else domain.upper
            expr = next((b.expr for b in bounds if b.keyword == keyword), None)
            if want is not None and have is not None:
                inside = have >= want if end == "lower" else have <= want
                if inside:
                    continue
            elif want is None and expr is not None and unparse(self.inline(e)) == unparse(expr):
                continue
            shown = unparse(e)
            have_text = f"{keyword}={have:g}" if have is not None else (
                f"{keyword}={unparse(expr)}" if expr is not None else f"no {keyword} bound")
            self.err(
                f"var '{var}' is truncated at {end} end {shown} but is declared with {have_text}", e.span,
                f"declare the var's own bounds inside the truncation, e.g. real({keyword}={shown}): as in Stan, "
                "a truncated parameter needs them so that no draw falls outside T[...]")
            ok = False
        return ok

    def _count(self, lhs: Shape, norm: Shape, span: A.Span) -> A.Expr | None | bool:
        """How many elements of the sample site each normalizer element stands
        for (the product of the dims it broadcasts over); None for one, False
        where a dim has no size expression."""
        factors: list[A.Expr] = []
        for i in range(1, len(lhs) + 1):
            d = lhs[-i]
            n = norm[-i] if i <= len(norm) else 1
            if n != 1 or d == 1:
                continue
            if isinstance(d, int):
                factors.append(A.Num(span, d, True))
            elif isinstance(d.value, A.Expr):
                factors.append(d.value)
            else:
                self.err(f"T[...] cannot size the truncation of a value of shape {show_shape(lhs)}", span,
                         "give the distribution's arguments or the ends of T[...] the value's full shape")
                return False
        if not factors:
            return None
        out = factors[0]
        for f in factors[1:]:
            out = A.BinOp(span, "*", out, f)
        return out


def truncated_var(lhs: A.Expr, vars: dict) -> tuple | None:
    """(name, domain, bounds) of the var a sample factor's left side is, or
    indexes (``x`` or ``x[k]``); None for data and expressions."""
    base = lhs.base if isinstance(lhs, A.Index) else lhs
    info = vars.get(base.id) if isinstance(base, A.Name) else None
    return None if info is None else (info.name, info.domain, info.bounds)


def _normalizer(dist: A.Call, trunc: A.Truncation, discrete: bool) -> A.Expr:
    """log(F(U) - F(L)) as the user writes it with lcdf/lccdf/log_diff_exp."""
    s = trunc.span
    lo = trunc.lo
    if lo is not None and discrete:  # P(X >= L) = 1 - F(L - 1) for an int X
        lo = A.BinOp(lo.span, "-", lo, A.Num(lo.span, 1, True))
    if lo is None:
        return A.Call(s, "lcdf", s, (dist, trunc.hi), ())
    if trunc.hi is None:
        return A.Call(s, "lccdf", s, (dist, lo), ())
    return A.Call(s, "log_diff_exp", s, (A.Call(s, "lcdf", s, (dist, trunc.hi), ()),
                                         A.Call(s, "lcdf", s, (dist, lo), ())), ())
