"""Names, types, domains and shapes: everything that can be wrong in a model
before any data arrive.

The checker walks the declarations in order (a name is visible after its
declaration, as in Stan), reports every mistake it finds rather than the
first, and returns a ``CheckedModel`` in which ``fn`` calls and ``include``s
have been inlined, so that later stages see one flat program. What only the
data's sizes can decide is left to binding as ``SizeCheck``s, so a model is
checked once however often it is bound.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from fglang.compiler import ast as A
from fglang.compiler import builtins as B
from fglang.compiler.check_inline_size import InlineSize
from fglang.compiler.checked import CheckedModel, FactorInfo, LetInfo, VarInfo
from fglang.compiler.constants import bad_constants, bound_names, decl_exprs
from fglang.compiler.dist_args import DistArgs
from fglang.compiler.distributions import DISTRIBUTIONS
from fglang.compiler.expr import names_in
from fglang.compiler.groups import GROUPS
from fglang.compiler.includes import expand, load_program
from fglang.compiler.infer import ExprTyping, Symbol
from fglang.compiler.infer_groups import GroupTyping, describe
from fglang.compiler.inline import Inlining
from fglang.compiler.ir import DataInfo
from fglang.compiler.limits import MAX_EXPR_NODES, measure, too_large, too_many_dims
from fglang.compiler.linalg import LinalgTyping
from fglang.compiler.scan import ScanTyping
from fglang.compiler.sizes import SizeCheck
from fglang.compiler.truncation import TruncationTyping, truncated_var
from fglang.compiler.types import (
    BASE_TYPES,
    ERROR,
    MATRIX_KINDS,
    SIZED_KINDS,
    Domain,
    T,
    dims_differ,
    make_domain,
    show_shape,
)
from fglang.compiler.var_bounds import AFFINE_KEYWORDS, DATA_BOUND_HINT, BoundTyping, scalar_data_arithmetic
from fglang.errors import TOO_DEEP, TOO_DEEP_HINT, DiagnosticSink, FgError, did_you_mean, recursion_headroom


class Checker(
    GroupTyping, ScanTyping, LinalgTyping, BoundTyping, TruncationTyping, ExprTyping, DistArgs, InlineSize, Inlining
):
    """Checks declarations in order; expression typing, recurrences, distribution
    arguments and fn inlining are its mixins (``infer``, ``scan``, ``dist_args``,
    ``inline``)."""

    def __init__(self, sources: dict[str, str], sink: DiagnosticSink | None = None):
        self.sources = sources
        self.sink = sink if sink is not None else DiagnosticSink()
        self.scope: dict[str, Symbol] = {}
        self.fns: dict[str, A.FnDecl] = {}
        self.data: dict[str, DataInfo] = {}
        self.vars: dict[str, VarInfo] = {}
        self.lets: dict[str, LetInfo] = {}
        self.factors: dict[str, FactorInfo] = {}
        self.order: list[str] = []
        self._fresh = itertools.count()
        self._current_fn: str | None = None
        self.size_checks: list[SizeCheck] = []
        self._decl_no = 0
        self._let_uses: dict[str, frozenset[str]] = {}
        self._owner: str | None = None  # the let being checked, if any
        self._let_measure: dict[str, tuple[float, int]] = {}  # inlined size and reduction depth (limits.py)
        self._oversized: set[str] = set()  # lets refused as too large
        self.all_decls: dict[str, A.Decl] = {}  # every named declaration of the program (var_bounds.py)
        self.dynamic_bounds: list[A.Kwarg] = []  # the type just checked: its non-constant bounds
        self.data_bounds: list[tuple[str, A.Expr]] = []  # ... and for data, those read from scalar data

    def err(self, msg: str, span: A.Span | None, hint: str | None = None) -> None:
        self.sink.error(msg, span, hint)

    def inline(self, e):
        """``Inlining.inline``, after refusing (at ``e``) an expression too large
        to expand (check_inline_size.py): it is then left as written, and
        the error stops the check."""
        if e is None or self.__dict__.get("_inlining"):
            return super().inline(e)
        size = self.inlined_size(e)
        if size > MAX_EXPR_NODES:
            self.sink.items.extend(too_large((size, 0), e.span))
            return e
        self._inlining = True
        try:
            return super().inline(e)
        finally:
            self._inlining = False

    # ----------------------------------------------------------- declarations
    def run(self, decls: list[A.Decl]) -> None:
        self.all_decls = {d.name: d for d in decls if isinstance(d, A.VarDecl | A.LetDecl | A.DataDecl)}
        with recursion_headroom():
            for d in decls:
                try:
                    self.decl(d)
                except RecursionError:
                    self.err(TOO_DEEP, d.span, TOO_DEEP_HINT)

    def decl(self, d: A.Decl) -> None:
        self._decl_no += 1
        hidden = bound_names(d)
        for root in decl_exprs(d):
            for span, why in bad_constants(root, hidden):
                self.err(why, span, "fglang folds constant expressions when it checks a model")
        if isinstance(d, A.DataDecl):
            self.data_decl(d)
        elif isinstance(d, A.VarDecl):
            self.var_decl(d)
        elif isinstance(d, A.LetDecl):
            self.let_decl(d)
        elif isinstance(d, A.FnDecl):
            self.fn_decl(d)
        elif isinstance(d, A.FactorDecl):
            self.factor_decl(d)

    def declare(self, name: str, span: A.Span, sym: Symbol) -> bool:
        prev = self.scope.get(name) or (Symbol("fn", ERROR) if name in self.fns else None)
        # distribution and built-in function names are only ever called (after '~', in
        # logp(), as f(...)), so they stay free for data, vars and lets: SPEC 5's AR(K)
        # term uses 'beta', a pose graph's noise is data 'sd' beside the sd() built-in
        if name in B.CONSTANTS:
            self.err(f"'{name}' is a built-in constant and cannot be redeclared", span)
            return False
        if "__" in name:
            self.err(f"'{name}': names with '__' are reserved for fglang's auxiliary sites", span)
            return False
        if prev is not None or name in self.factors:
            self.err(f"'{name}' is already declared", span, "every data, var, let, fn and factor needs its own name")
            return False
        self.scope[name] = sym
        return True

    def size_exprs(self, dims: tuple[A.Expr, ...], what: str) -> None:
        """Sizes must be int expressions over int data and constants (SPEC 3)."""
        for e in dims:
            t = self.infer(e)
            if not t.ok:
                continue
            if t.dtype != "int" or not t.scalar:
                self.err(f"a size must be an int scalar expression, got {t.dtype} {show_shape(t.shape)}", e.span)
            elif t.var:
                self.err(f"a size cannot depend on a var ({what})", e.span)
            else:
                self._no_indexnames_in(e, "a size")

    def _no_indexnames_in(self, e: A.Expr, what: str) -> None:
        for n in names_in(e):
            sym = self.scope.get(n.id)
            if sym is not None and sym.kind == "let" and what == "a size":
                self.err(
                    f"a size must use int data and constants; '{n.id}' is a let",
                    n.span,
                    f"declare '{n.id}' as int data (data {n.id}: int) or write its expression here",
                )
            if sym is not None and sym.kind == "data" and sym.t.shape:
                self.err(f"{what} must use int scalar data, and '{n.id}' is an array", n.span)

    def type_expr(self, t: A.TypeExpr, var: str | None = None, data: bool = False) -> tuple[Domain, str] | None:
        """A type's domain and dtype. ``var``: the var this is the type of, whose
        bounds may be expressions of vars, data and lets (``var_bounds.py``); they
        are left in ``self.dynamic_bounds`` for ``var_bounds`` to check. ``data``:
        the type of a data declaration, whose bounds may be arithmetic on scalar
        data declared before it (``self.data_bounds``, checked at bind)."""
        self.dynamic_bounds = []
        self.data_bounds = []
        if t.base in GROUPS:
            if t.bounds:
                self.err(f"'{t.base}' takes no bounds", t.span)
            if t.shape:
                self.err(
                    f"'{t.base}' takes no shape: one {t.base} is one value",
                    t.span,
                    f"the brackets after the name give the number of nodes: var pose[N]: {t.base}",
                )
            return Domain(t.base), t.base
        if t.base not in BASE_TYPES + tuple(GROUPS):
            types = BASE_TYPES + tuple(GROUPS)
            guess = did_you_mean(t.base, types)
            self.err(
                f"unknown type '{t.base}'" + (f"; did you mean '{guess}'?" if guess else ""),
                t.span,
                "types are " + ", ".join(types),
            )
            return None
        lower = upper = None
        keywords = ("lower", "upper") + (AFFINE_KEYWORDS if var is not None else ())
        for kw in t.bounds:
            if kw.name not in keywords:
                expected = "'lower', 'upper', 'offset' or 'multiplier'" if var else "'lower' or 'upper'"
                self.err(f"unknown type bound '{kw.name}'; expected {expected}", kw.span)
                continue
            v = self.const_value(kw.value)
            if var is not None and (v is None or kw.name in AFFINE_KEYWORDS):
                if not any(d.span == kw.value.span for d in self.sink.items):  # a bad constant is reported once
                    self.dynamic_bounds.append(kw)
                continue
            if v is None and data and scalar_data_arithmetic(kw.value, self.scope):
                self.data_bounds.append((kw.name, kw.value))
                continue
            if v is None:
                if not any(d.span == kw.value.span for d in self.sink.items):  # a bad constant is reported once
                    self.err("a type bound must be a constant number", kw.value.span,
                             DATA_BOUND_HINT if data else
                             "only a var's bounds may read vars, data and lets" if names_in(kw.value) else None)
                continue
            if kw.name == "lower":
                lower = float(v)
            else:
                upper = float(v)
        if lower is not None and upper is not None and not lower < upper:
            self.err(f"empty bounds: lower={lower:g} is not below upper={upper:g}", t.span)
        if t.bounds and t.base not in ("real", "int", "positive"):
            self.err(f"'{t.base}' takes no bounds", t.span)
            self.dynamic_bounds = []
        if t.base in SIZED_KINDS and len(t.shape) != 1:
            self.err(f"'{t.base}' needs one size, as in {t.base}[K]", t.span,
                     f"{t.base}[K] is a K x K matrix: its size is the side" if t.base in MATRIX_KINDS else None)
        self.size_exprs(t.shape, "type shape")
        dtype = {"int": "int", "bool": "bool"}.get(t.base, "real")
        if self.dynamic_bounds:
            return self.dynamic_domain(t, lower, upper), dtype
        return make_domain(t.base, lower, upper), dtype

    def limited(self, e: A.Expr | None, source: A.Expr, let: str | None = None) -> None:
        """Refuse an inlined expression too large to lower (``limits.py``), once:
        not again where a let already refused is used."""
        if e is None:
            return
        m = measure(e, self._let_measure)
        bad = too_large(m, source.span)
        if bad and not self.lets_read(source) & self._oversized:
            self.sink.items.extend(bad)
        if let is not None:
            self._let_measure[let] = m
            if bad:
                self._oversized.add(let)

    def data_decl(self, d: A.DataDecl) -> None:
        self.sink.items.extend(too_many_dims(len(d.dims) + len(d.type.shape), f"data '{d.name}'", d.span))
        self.size_exprs(d.dims, "data size")
        td = self.type_expr(d.type, data=True)
        data_bounds = tuple(self.data_bounds)
        if td is None:
            self.declare(d.name, d.name_span, Symbol("data", ERROR))
            return
        domain, dtype = td
        if d.type.base == "real" and domain.kind in ("positive", "unit"):
            # data bounds are closed, as Stan's: `real(lower=0, upper=1)` data hold 0s and 1s
            # (`positive` and `unit` data, fglang's own types, stay open)
            domain = Domain("interval", domain.lower, domain.upper)
        if domain.kind in SIZED_KINDS:
            dtype = "real"
        value_shape = _value_exprs(d.type)
        shape = self.shape_of(d.dims) + self.shape_of(value_shape)
        if domain.kind in GROUPS:
            # stored as a real array of the group's storage shape; typed as the group
            value_shape = _storage_exprs(domain.kind, d.type.span)
            shape, dtype = self.shape_of(d.dims), "real"
            if d.default is not None:
                self.err(f"{domain.kind} data take no default", d.default.span)
        if d.default is not None and domain.kind not in GROUPS:
            dt = self.infer(d.default)
            uses_data = any(self.scope.get(n.id, Symbol("x", ERROR)).kind == "data" for n in names_in(d.default))
            if dt.ok and (dt.var or uses_data):
                self.err("a default must be a constant expression", d.default.span)
            elif dt.ok and shape and dt.shape:
                self.err("a default must be a scalar (it is broadcast to the declared shape)", d.default.span)
            elif dt.ok and dtype == "int" and dt.dtype != "int":
                self.err(f"default for int data '{d.name}' must be an int", d.default.span)
        typed = T(domain.kind, shape) if domain.kind in GROUPS else T(dtype, shape)
        if self.declare(d.name, d.name_span, Symbol("data", typed, d, domain)):
            if d.batch:
                if dtype != "int" or shape:
                    self.err("only an int scalar size can be marked 'batch'", d.span, "e.g. data N: int batch")
                elif any(x.batch for x in self.data.values()):
                    self.err("a model has at most one 'batch' size", d.span)
            self.data[d.name] = DataInfo(d.name, d.dims, value_shape, dtype, domain, d.default, d.span, d.batch,
                                         data_bounds)
            self.order.append(d.name)

    def var_decl(self, d: A.VarDecl) -> None:
        self.sink.items.extend(too_many_dims(len(d.dims) + len(d.type.shape), f"var '{d.name}'", d.span))
        self.size_exprs(d.dims, "var size")
        td = self.type_expr(d.type, var=d.name)
        domain = td[0] if td else Domain("real")
        value_shape = _value_exprs(d.type)
        shape = self.shape_of(d.dims) + self.shape_of(value_shape)
        bounds = self.var_bounds(d, domain, shape) if td else ()
        prior = None
        if domain.kind in GROUPS:
            value_shape = _storage_exprs(domain.kind, d.type.span)
            shape = self.shape_of(d.dims)
            if d.prior is not None:
                self.err(
                    f"a {domain.kind} var takes no '~ prior' (a density on the group is written on a tangent vector)",
                    d.prior.span,
                    f"write a factor: factor {d.name}_prior: log(between(MEAN, {d.name})) ~ normal(0, SD)",
                )
        elif td is not None and d.prior is not None:
            # the var itself is visible in its prior's arguments only as an error
            prior = self.dist_call(d.prior, T("real", shape, True), lhs_domain=domain, on_var=d.name,
                                   lhs_bounds=bounds)
            self.limited(prior, d.prior)
        # an unknown type has no domain to check uses against (no cascade of errors)
        sym = Symbol("var", T(td[1] if td else "real", shape, True), d, domain if td else None)
        if self.declare(d.name, d.name_span, sym):
            self.vars[d.name] = VarInfo(d.name, d.dims, value_shape, domain, prior, d.span, bounds)
            self.order.append(d.name)
            if prior is not None and d.truncation is not None:
                self.truncated(d.name, (), d.prior, d.truncation, shape, (d.name, domain, bounds))
        elif d.truncation is not None and d.prior is None:  # pragma: no cover - the grammar puts T[...] after a prior
            self.err("T[...] needs a distribution before it", d.truncation.span)

    def let_decl(self, d: A.LetDecl) -> None:
        self._owner = d.name
        t = self.infer(d.expr)
        self._owner = None
        expr = self.inline(d.expr)
        if self.declare(d.name, d.name_span, Symbol("let", t, d)):
            self.limited(expr, d.expr, d.name)
            self._let_uses[d.name] = self.lets_read(d.expr)
            if t.dtype in GROUPS:  # reported as its storage array
                storage = tuple(self.shape_of(_storage_exprs(t.dtype, d.span)))
                self.lets[d.name] = LetInfo(d.name, expr, t.shape + storage, "real", d.span)
            else:
                self.lets[d.name] = LetInfo(d.name, expr, t.shape, t.dtype, d.span)
            self.order.append(d.name)

    def fn_decl(self, d: A.FnDecl) -> None:
        if d.name in self.fns or d.name in self.scope:
            self.err(f"'{d.name}' is already declared", d.name_span)
            return
        if d.name in B.ALL or d.name in DISTRIBUTIONS or d.name in B.CONSTANTS:
            self.err(f"'{d.name}' is a built-in name and cannot be redeclared", d.name_span)
            return
        outer = self.scope
        # fn bodies see their parameters, constants and other fns: not the model's names;
        # parameter and return shapes may name data ints too (real[NB]), fixed at bind and
        # compared with each argument's shape at the call (``user_call``)
        sizes = {n: s for n, s in outer.items() if s.kind == "data" and s.t.dtype == "int" and s.t.scalar}
        self.scope = dict(sizes)
        params: dict[str, Symbol] = {}
        for p in d.params:
            if not self._fn_shape_names(d, p.type, outer, sizes):
                params[p.name] = Symbol("param", ERROR)  # known, so its uses raise no second error
                continue
            td = self.type_expr(p.type)
            self._no_matrix_type(p.type, f"parameter '{p.name}'")
            if p.name in params:
                self.err(f"parameter '{p.name}' is repeated", p.span)
            dtype = td[1] if td else "real"
            shape = () if dtype in GROUPS else self.shape_of(p.type.shape)
            params[p.name] = Symbol("param", T(dtype, shape, True))
        ret = self.type_expr(d.ret) if self._fn_shape_names(d, d.ret, outer, sizes) else None
        self._no_matrix_type(d.ret, "the return type")
        want = self.shape_of(d.ret.shape) if ret is not None else ()
        self.scope = params
        self._current_fn = d.name
        for name, e, span in d.lets:
            t = self.infer(e)
            if name in self.scope:
                self.err(f"'{name}' is already declared in fn '{d.name}'", span)
            self.scope[name] = Symbol("local", t)
        rt = self.infer(d.body)
        self._current_fn = None
        self.scope = outer
        if rt.ok and ret is not None and (ret[1] in GROUPS or rt.dtype in GROUPS):
            if rt.dtype != ret[1] or rt.shape:
                self.err(f"fn '{d.name}' returns {describe(rt)} but is declared to return {d.ret.base}", d.body.span)
        elif rt.ok and ret is not None:
            if len(want) != len(rt.shape) or any(dims_differ(a, b) for a, b in zip(want, rt.shape)):
                self.err(
                    f"fn '{d.name}' returns {show_shape(rt.shape)} but is declared to return {show_shape(want)}",
                    d.body.span,
                )
            elif want != rt.shape:  # data sizes: decided at bind
                self.defer("same", (want, rt.shape), f"fn '{d.name}' returns {{1}} but is declared to return {{0}}",
                           d.body.span, d.body)
        self.fns[d.name] = d

    def _no_matrix_type(self, t: A.TypeExpr, what: str) -> None:
        """A fn's parameters and result are plain arrays: a matrix type's promise
        (a correlation matrix) is a var's or data's, checked where it is declared."""
        if t.base in MATRIX_KINDS:
            self.err(f"{what} of a fn cannot be {t.base}[...]", t.span,
                     "declare it real[K, K] (the var or data passed in keeps its own type)")

    def _fn_shape_names(self, d: A.FnDecl, t: A.TypeExpr, outer: dict, sizes: dict) -> bool:
        """A fn's parameter and return shapes name constants and data ints only."""
        ok = True
        for e in t.shape:
            for n in names_in(e):
                if n.id in outer and n.id not in sizes:
                    self.err(f"the shape of a fn's parameter or result can name data ints only; "
                             f"'{n.id}' is {_what(outer[n.id])}", n.span,
                             f"declare the size as 'data {n.id}: int', or pass the value as an argument of '{d.name}'")
                    ok = False
        return ok

    def factor_decl(self, d: A.FactorDecl) -> None:
        saved = dict(self.scope)
        seen = set()
        for r in d.ranges:
            self.range_bounds(r, seen)
            if r.name in seen:
                self.err(f"index '{r.name}' is used twice in this factor", r.span)
            seen.add(r.name)
            self.scope[r.name] = Symbol("index", T("int"))
        dist = potential = lhs = truncated = None
        if d.dist is not None:
            lt = self.infer(d.lhs)
            if lt.ok and lt.dtype in GROUPS:
                self.err(
                    f"the left side of '~' is a {describe(lt)} value; a density is written on numbers",
                    d.lhs.span,
                    "take the tangent vector of the error: log(between(z[k], between(a, b))) ~ normal(0, sd)",
                )
                lt = ERROR
            if lt.ok and lt.dtype == "bool" and not DISTRIBUTIONS.get(d.dist.func, DISTRIBUTIONS["normal"]).discrete:
                self.err("a comparison cannot be the left side of '~'", d.lhs.span)
            if lt.ok:
                dist = self.dist_call(d.dist, lt, lhs_expr=d.lhs)
            else:  # still report the mistakes on the right of '~'
                self._check_callnames_in(d.dist)
            lhs = self.inline(d.lhs)
            self.limited(lhs, d.lhs)
            self.limited(dist, d.dist)
            if dist is not None and d.truncation is not None and d.name not in self.factors:
                truncated = (d.name, d.ranges, d.dist, d.truncation, lt.shape, truncated_var(d.lhs, self.vars))
        else:
            pt = self.infer(d.potential)
            if self.no_group(pt, d.potential, "a potential"):
                pass
            elif pt.ok and pt.dtype == "bool":
                self.err("a potential must be a real expression (a log density)", d.potential.span)
            potential = self.inline(d.potential)
            self.limited(potential, d.potential)
        scoped, self.scope = self.scope, saved
        if d.name in self.scope or d.name in self.factors or d.name in self.fns:
            self.err(f"'{d.name}' is already declared", d.name_span)
            return
        self.factors[d.name] = FactorInfo(d.name, d.ranges, lhs, dist, potential, d.span)
        self.order.append(d.name)
        if truncated is not None:  # its normalizer reads the factor's indices: check it in their scope
            inner = self.scope
            self.scope = scoped
            self.truncated(*truncated)
            self.scope = inner

    def range_bounds(self, r: A.IndexRange, seen) -> None:
        for e in (r.lo, r.hi):
            t = self.infer(e)
            if t.ok and (t.dtype != "int" or not t.scalar):
                self.err(f"a range bound must be an int scalar, got {t.dtype} {show_shape(t.shape)}", e.span)
            elif t.ok and t.var:
                self.err("a range bound cannot depend on a var", e.span)
        # only a range written with constants is 'bad'; one over data sizes
        # (``1:T`` with T = 0) is empty, as in Python
        lo, hi = self.const_value(r.lo), self.const_value(r.hi)
        if lo is not None and hi is not None and hi < lo:
            self.err(f"bad range {lo}:{hi}: the end is before the start", r.span, "ranges are half-open, a:b is a..b-1")


def check_decls(
    decls: list[A.Decl],
    prog: A.Program,
    sources: dict[str, str],
    sink: DiagnosticSink,
) -> CheckedModel:
    if prog.name is None:
        # at the first declaration, not at line 1: a file that opens with comments
        # pointed its caret at the comment
        first = next((d.span for d in prog.decls if getattr(d, "span", None) is not None
                      and d.span.file == prog.file), None)
        at = A.Span(prog.file, first.line, first.col, first.line, first.col + 1) if first else A.Span(
            prog.file, 1, 1, 1, 2)
        sink.error("a model starts with 'model NAME'", at, "add a line 'model my_model' before this one")
    c = Checker(sources, sink)
    c.run(decls)
    sink.raise_if_any(sources)
    return CheckedModel(
        prog.name, prog.file, sources, c.data, c.vars, c.lets, c.factors, tuple(c.order), tuple(c.size_checks)
    )


def check_file(path: str | Path) -> CheckedModel:
    decls, prog, sources, sink = load_program(path)
    return check_decls(decls, prog, sources, sink)


def check_source(text: str, file: str = "<string>") -> CheckedModel:
    sources: dict[str, str] = {}
    sink = DiagnosticSink()
    try:
        decls, prog, sources, sink = expand(text, file, None, sources, sink)
    except FgError as err:
        raise FgError(err.diagnostics, {file: text, **err.sources}) from None
    return check_decls(decls, prog, sources, sink)


def _what(sym: Symbol) -> str:
    """A name's kind as a message says it: 'a var', 'real data', 'a let'."""
    return f"{sym.t.dtype} data" + (" with a shape" if sym.t.shape else "") if sym.kind == "data" else f"a {sym.kind}"


def _value_exprs(t: A.TypeExpr) -> tuple[A.Expr, ...]:
    """The value shape a type declares, as size expressions: ``corr_matrix[K]``
    holds a [K, K] matrix (its one size is the side); every other type its shape."""
    if t.base in MATRIX_KINDS and len(t.shape) == 1:
        return (t.shape[0], t.shape[0])
    return tuple(t.shape)


def _storage_exprs(kind: str, span: A.Span) -> tuple[A.Expr, ...]:
    """The storage shape of a group (``[7]`` for a pose3) as the size expressions
    binding reads, so data, init and every backend see a plain real array."""
    return tuple(A.Num(span, n, True) for n in GROUPS[kind].storage)
