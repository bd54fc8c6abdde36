"""Distribution calls: arguments bound to a signature's names, and their domains.

A mixin of ``Checker``. ``normal(0, sd=s)`` and ``normal(mu=0, sd=s)`` both
come out as keyword arguments in the signature's order, with defaults filled
in, so that the lowering and the backends see one canonical call.
"""

from __future__ import annotations

import math
from dataclasses import replace

from fglang.compiler import ast as A
from fglang.compiler.checked import VarBound
from fglang.compiler.distributions import (
    DISTRIBUTIONS,
    MATRIX_PARAMS,
    PARAM_DOMAINS,
    SUPPORT_ALLOWS,
    DistSig,
    outside,
)
from fglang.compiler.expr import names_in
from fglang.compiler.infer import Symbol
from fglang.compiler.stan_hints import density_call_hint
from fglang.compiler.types import ERROR, Domain, ShapeError, T, dims_differ, show_shape
from fglang.compiler.unparse import unparse
from fglang.compiler.value_range import EVERYTHING, Interval, domain_range, value_range
from fglang.errors import did_you_mean


class DistArgs:
    """Needs from its host: ``scope``, ``err``, ``infer``, ``inline``, ``const_value``,
    ``sized``, ``broadcast`` and ``defer``."""

    def dist_call(
        self,
        call: A.Call,
        lhs: T,
        *,
        lhs_domain: Domain | None = None,
        on_var: str | None = None,
        lhs_expr: A.Expr | None = None,
        lhs_bounds: tuple[VarBound, ...] = (),
    ) -> A.Call | None:
        sig = DISTRIBUTIONS.get(call.func)
        if sig is None:
            self._check_callnames_in(call)
            return None
        bound = self.bind_args(sig, call)
        if bound is None:
            return None
        if not self.event_fits(sig, lhs, lhs_expr.span if lhs_expr is not None else call.span, lhs_expr or call):
            return None
        shapes = []
        for pname, e in bound.items():
            t = self.infer(e)
            if not t.ok or self.no_group(t, e, f"'{pname}' of {sig.name}"):
                return None
            if on_var is not None and on_var in {n.id for n in names_in(e)}:
                self.err(f"the prior of '{on_var}' cannot use '{on_var}' itself", e.span)
            self.check_param_domain(sig, pname, e, t)
            if sig.event_ndim and pname in MATRIX_PARAMS and not self.matrix_arg_fits(sig, pname, e, t, lhs):
                return None
            if not (pname == "cutpoints" or (sig.event_ndim and pname in MATRIX_PARAMS)):
                shapes.append((e, t.shape[: len(t.shape) - sig.event_ndim] if pname in ("mu", "alpha") else t.shape))
        value_shape = lhs.shape[: len(lhs.shape) - sig.event_ndim] if sig.event_ndim else lhs.shape
        batch = value_shape
        for e, s in shapes:
            try:
                batch = self.broadcast(
                    batch,
                    s,
                    "argument of shape {1} does not broadcast with the left side's shape {2}",
                    e,
                    shown=(value_shape,),
                )
            except ShapeError:
                self.err(
                    f"argument of shape {show_shape(s)} does not broadcast with the left side's shape "
                    f"{show_shape(value_shape)}",
                    e.span,
                )
                return None
        if sig.discrete:
            if lhs.var:
                what = f"var '{on_var}'" if on_var else "an expression of vars"
                self.err(
                    f"'{sig.name}' is a discrete distribution and {what} would be a discrete latent variable",
                    (lhs_expr.span if lhs_expr is not None else call.span),
                    "discrete distributions are for observed int data; latent discrete vars are not supported",
                )
            elif lhs.dtype == "real" and lhs_expr is not None:
                self.err(f"'{sig.name}' needs int data on the left of '~', got real", lhs_expr.span)
        if sig.sparsity and on_var is None and lhs_expr is not None and _var_root(lhs_expr, self.scope) is None:
            self.err(f"the sparsity prior '{sig.name}' needs a var (or part of one) on the left of '~'", lhs_expr.span)
        if lhs_domain is not None and on_var is not None:
            allowed = SUPPORT_ALLOWS.get(sig.support, frozenset())
            # a bound that reads vars (real(lower=tau)) stays inside a positive or unit support when
            # the types it reads prove it (value_range.py)
            inside = lhs_domain.kind in ("bounded", "interval") and sig.support in ("positive", "unit") and \
                self.bounded_inside(lhs_domain, lhs_bounds, sig.support)
            if lhs_domain.kind not in allowed and not sig.sparsity and not inside:
                self.err(
                    f"'{sig.name}' has support {sig.support} but '{on_var}' is declared {lhs_domain.describe()}"
                    + self.bounds_outside(lhs_domain, lhs_bounds, sig.support),
                    call.span,
                    f"declare '{on_var}' with a type inside the distribution's support"
                    + (" (a bound is inside when the types it reads prove it: a positive var, data declared "
                       "with lower=0, a constant >= 0, exp(...), sums and products of those)"
                       if lhs_domain.kind in ("bounded", "interval") and sig.support in ("positive", "unit")
                       else ""),
                )
            elif sig.sparsity and lhs_domain.kind != "real":
                self.err(f"a sparsity prior needs a real var; '{on_var}' is {lhs_domain.describe()}", call.span)
        if sig.name in WISHARTS and "nu" in bound and lhs.ok and len(lhs.shape) >= 2:
            self.wishart_df(sig, bound["nu"], lhs.shape[-1])
        inlined = self.inline(call)
        # normalize argument order to the signature's names
        kwargs = tuple(A.Kwarg(k, self.inline(v), v.span) for k, v in bound.items())
        return replace(inlined, args=(), kwargs=kwargs)

    # ----------------------------------------------------------- event shapes
    def event_fits(self, sig: DistSig, lhs: T, span: A.Span, node: A.Expr) -> bool:
        """The left side holds whole events: a vector for mvnormal, a square
        [K, K] matrix for the matrix distributions (an LKJ's K is its side)."""
        if not sig.event_ndim or not lhs.ok:
            return True
        what = "vectors" if sig.event_ndim == 1 else "square [K, K] matrices"
        if len(lhs.shape) < sig.event_ndim:
            self.err(f"'{sig.name}' is a density of {what}; its left side is {show_shape(lhs.shape)}", span)
            return False
        if sig.event_ndim == 2:
            a, b = lhs.shape[-2:]
            message = f"'{sig.name}' is a density of {what}; its left side is {{0}} x {{1}}"
            if dims_differ(a, b):
                self.err(message.format(a, b), span)
                return False
            if a != b:
                self.defer("same_dim", (a, b), message, span, node)
        return True

    def matrix_arg_fits(self, sig: DistSig, pname: str, e: A.Expr, t: T, lhs: T) -> bool:
        """A matrix argument (``cov``, ``prec``, ``chol``, ``S``) is [d, d] with d the
        side of the left side's event: a located error, not a broadcasting failure mid-fit."""
        if not t.ok or not lhs.ok or len(lhs.shape) < sig.event_ndim:
            return True
        d = lhs.shape[-1]
        if len(t.shape) < 2:
            self.err(f"'{pname}' of {sig.name} must be a [{d}, {d}] matrix, got {show_shape(t.shape)}", e.span)
            return False
        for x in t.shape[-2:]:
            message = (f"'{pname}' of {sig.name} must be [{{1}}, {{1}}] to match the left side's {{1}}, "
                       "but has a side {0}")
            if dims_differ(x, d):
                self.err(message.format(x, d), e.span)
                return False
            if x != d:
                self.defer("same_dim", (x, d), message, e.span, e)
        return True

    def wishart_df(self, sig: DistSig, e: A.Expr, side) -> None:
        """``nu > K - 1`` for K x K matrices: below it a Wishart is no density
        (its normalizer's multivariate gamma has a pole), and a fit ran on
        regardless, to numbers of no meaning. A constant is checked here, data
        (a size or a real scalar) when they are bound (sizes.py rule ``df``)."""
        message = f"'nu' of {sig.name} must be greater than K - 1 = {{1}} for {{2}} x {{2}} matrices, got {{0:g}}"
        hint = f"{sig.name} of K x K matrices needs nu > K - 1 degrees of freedom"
        v = self.const_value(e)
        if v is not None and isinstance(side, int):
            if not v > side - 1:
                self.err(message.format(v, side - 1, side), e.span, hint)
        elif v is not None or (names_in(e) and self.sized(e)):
            self.defer("df", (side,), message, e.span, e, hint=hint, value=e)

    # ----------------------------------------------------------- a bounded var inside a support
    def name_range(self, name: str) -> Interval:
        """Where every element of a var, data or constant lies, from its type
        (a var's bounds that read vars: from theirs, in declaration order)."""
        memo = self.__dict__.setdefault("_name_ranges", {})  # lets share subexpressions: each name once
        if name not in memo:
            memo[name] = self._name_range(name)
        return memo[name]

    def _name_range(self, name: str) -> Interval:
        sym = self.scope.get(name)
        if sym is None or sym.kind == "const":
            v = self.const_value(A.Name(None, name))
            return EVERYTHING if v is None else (float(v), float(v))
        if sym.kind == "let":
            let = self.lets.get(name)
            return EVERYTHING if let is None else value_range(let.expr, self.name_range)
        if sym.kind not in ("var", "data") or sym.domain is None:
            return EVERYTHING
        lo, hi = domain_range(sym.domain)
        info = self.vars.get(name) if sym.kind == "var" and sym.domain.kind == "bounded" else None
        for b in info.bounds if info is not None else ():
            blo, bhi = value_range(b.expr, self.name_range)
            if b.keyword == "lower":
                lo = max(lo, blo)
            elif b.keyword == "upper":
                hi = min(hi, bhi)
        return (lo, hi)

    def _bounded_range(self, domain: Domain, bounds: tuple[VarBound, ...]) -> tuple[Interval, dict[str, Interval]]:
        """A bounded var's interval and, per keyword that reads vars, its bound's."""
        lo, hi = domain_range(domain)
        each = {b.keyword: value_range(b.expr, self.name_range) for b in bounds if b.keyword in ("lower", "upper")}
        if "lower" in each:
            lo = max(lo, each["lower"][0])
        if "upper" in each:
            hi = min(hi, each["upper"][1])
        return (lo, hi), each

    def bounded_inside(self, domain: Domain, bounds: tuple[VarBound, ...], support: str) -> bool:
        """Whether a var of ``domain`` (kind bounded or interval) provably lies
        in a positive ([0, inf)) or unit ([0, 1]) support."""
        (lo, hi), _ = self._bounded_range(domain, bounds)
        return lo >= 0 and (support == "positive" or hi <= 1)

    def bounds_outside(self, domain: Domain, bounds: tuple[VarBound, ...], support: str) -> str:
        """Why a bounded var is not provably inside the support: the side
        that may leave it, and the names it reads whose types allow that."""
        if domain.kind not in ("bounded", "interval") or support not in ("positive", "unit"):
            return ""
        (lo, hi), each = self._bounded_range(domain, bounds)
        reasons = []
        for kw, bad in (("lower", lo < 0), ("upper", support == "unit" and hi > 1)):
            if not bad:
                continue
            b = next((x for x in bounds if x.keyword == kw), None)
            if b is None:
                side = domain.lower if kw == "lower" else domain.upper
                reasons.append(f"it has no {kw} bound" if side is None else
                               f"its {kw} bound {side:g} is {'below 0' if kw == 'lower' else 'above 1'}")
                continue
            loose = self._loose(b.expr, kw, set())
            shown = ", ".join(f"'{n}' is {self._declared(n)}" for n in loose[:3])
            text = dict(domain.written).get(kw) or unparse(b.expr)
            need = ">= 0" if kw == "lower" else "<= 1"
            reasons.append(f"its bound {kw}={text} is not provably {need}" + (f" ({shown})" if shown else ""))
        return (": " + "; ".join(reasons)) if reasons else ""

    def _loose(self, e: A.Expr, kw: str, seen: set[str]) -> list[str]:
        """The vars and data (through lets) of ``e`` whose types let a lower
        bound go below 0 (an upper one above 1)."""
        out: list[str] = []
        for n in dict.fromkeys(x.id for x in names_in(e)):
            if n in seen:
                continue
            seen.add(n)
            sym = self.scope.get(n)
            if sym is not None and sym.kind == "let" and n in self.lets:
                out += self._loose(self.lets[n].expr, kw, seen)
            elif sym is not None and sym.kind in ("var", "data") and (
                    self.name_range(n)[0] < 0 if kw == "lower" else self.name_range(n)[1] > 1):
                out.append(n)
        return out

    def _declared(self, name: str) -> str:
        sym = self.scope.get(name)
        if sym is None or sym.domain is None:
            return "of unknown range"
        return f"declared {sym.domain.describe()}"

    def _check_callnames_in(self, call: A.Call) -> None:
        """Name and argument errors of a distribution call whose left side is broken."""
        sig = DISTRIBUTIONS.get(call.func)
        if sig is None:
            self._unknown_dist(call)
        elif self.bind_args(sig, call) is None:
            return
        for e in call.args + tuple(k.value for k in call.kwargs):
            self.infer(e)

    def _unknown_dist(self, call: A.Call) -> None:
        guess = did_you_mean(call.func, DISTRIBUTIONS)
        msg = f"unknown distribution '{call.func}'" + (f"; did you mean '{guess}'?" if guess else "")
        hint = density_call_hint(call.func) or (None if guess else "see docs/language.md for the distributions")
        self.err(msg, call.func_span or call.span, hint)

    def bind_args(self, sig: DistSig, call: A.Call) -> dict[str, A.Expr] | None:
        slots: list[tuple[str, ...]] = [(p.name,) for p in sig.params]
        slots += [tuple(a.name for a in g) for g in sig.alternatives]
        out: dict[str, A.Expr] = {}
        ok = True
        unknown_kw = False  # a misspelt keyword: 'missing argument' would only repeat it
        if len(call.args) > len(slots):
            self.err(
                f"'{sig.name}' takes at most {len(slots)} positional argument{'s' * (len(slots) != 1)} "
                f"({', '.join('|'.join(s) for s in slots)}), got {len(call.args)}",
                call.args[len(slots)].span,
            )
            return None
        for names, e in zip(slots, call.args):
            out[names[0]] = e
        for kw in call.kwargs:
            group = next((g for g in slots if kw.name in g), None)
            if group is None:
                guess = did_you_mean(kw.name, sig.names)
                self.err(
                    f"'{sig.name}' has no argument '{kw.name}'" + (f"; did you mean '{guess}'?" if guess else ""),
                    kw.span,
                    f"its arguments are {', '.join('|'.join(s) for s in slots)}",
                )
                ok = False
                unknown_kw = True
                continue
            taken = [g for g in group if g in out]
            if taken:
                self.err(f"'{sig.name}' got '{kw.name}' and '{taken[0]}': give only one", kw.span)
                ok = False
                continue
            out[kw.name] = kw.value
        if unknown_kw:
            return None
        for p in sig.params:
            if p.name not in out:
                if p.default is not None:
                    out[p.name] = A.Num(call.span, p.default, False)
                else:
                    self.err(f"'{sig.name}' is missing its argument '{p.name}'", call.span, _usage(sig))
                    ok = False
        for g in sig.alternatives:
            if not any(a.name in out for a in g):
                self.err(
                    f"'{sig.name}' needs one of {' or '.join(repr(a.name + '=') for a in g)}", call.span, _usage(sig)
                )
                ok = False
        return out if ok else None

    def check_param_domain(self, sig: DistSig, pname: str, e: A.Expr, t: T) -> None:
        dom = next(p.domain for p in sig.params + tuple(a for g in sig.alternatives for a in g) if p.name == pname)
        v = self.const_value(e)
        if v is not None and not math.isfinite(v):
            self.err(f"'{pname}' of {sig.name} must be finite, got {v:g}", e.span)
            return
        if dom in PARAM_DOMAINS and v is not None:
            if outside(dom, v):
                self.err(f"'{pname}' of {sig.name} must be {PARAM_DOMAINS[dom]}, got {v:g}", e.span)
            return
        if dom in PARAM_DOMAINS and names_in(e) and self.sized(e):  # `sd = N`: the data decide
            message = f"'{pname}' of {sig.name} must be {PARAM_DOMAINS[dom]}, got {{0:g}}"
            self.defer("domain", (dom,), message, e.span, e, value=e)
        if dom in ("positive", "unit") and t.var:
            for n in names_in(e):
                sym = self.scope.get(n.id)
                if sym is not None and sym.kind == "var" and sym.domain is not None:
                    if e is n or isinstance(e, A.Index) and e.base is n:
                        # the kinds whose every element is > 0 (a positive parameter) or in [0, 1] (unit;
                        # a positive var there was always let through, as before)
                        within = ("positive", "unit", "simplex") + (("positive_ordered",) if dom == "positive" else ())
                        if sym.domain.kind not in within and not (
                            sym.domain.kind in ("interval", "bounded") and sym.domain.lower is not None
                            and sym.domain.lower >= 0
                        ):
                            self.err(
                                f"'{pname}' of {sig.name} must be positive, but var '{n.id}' is declared "
                                f"{sym.domain.describe()} and can be negative",
                                e.span,
                                f"declare '{n.id}' positive",
                            )
        if sig.sparsity and pname in ("scale", "slab_scale", "slab_df") and sig.name != "laplace" and t.ok and t.shape:
            self.err(
                f"'{pname}' of {sig.name} is the one global scale of the prior and must be a scalar, "
                f"got {show_shape(t.shape)}",
                e.span,
            )
        if dom == "nonneg_int" and t.ok and t.dtype != "int":
            self.err(f"'{pname}' of {sig.name} must be an int", e.span)


WISHARTS = ("wishart", "inv_wishart")


def _var_root(e: A.Expr, scope: dict[str, Symbol]) -> str | None:
    while isinstance(e, A.Index):
        e = e.base
    if isinstance(e, A.Name) and scope.get(e.id, Symbol("x", ERROR)).kind == "var":
        return e.id
    return None


def _usage(sig: DistSig) -> str:
    parts = [p.name + (f"={p.default:g}" if p.default is not None else "") for p in sig.params]
    parts += ["|".join(a.name + "=" for a in g) for g in sig.alternatives]
    return f"usage: {sig.name}({', '.join(parts)})"
