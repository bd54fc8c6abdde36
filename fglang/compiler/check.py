"""Names, types, domains and shapes: everything that can be wrong in a model
before any data arrive.

The checker walks the declarations in order (a name is visible after its
declaration, as in Stan), reports every mistake it finds rather than the
first, and returns a ``CheckedModel`` in which ``fn`` calls and ``include``s
have been inlined, so that later stages see one flat program.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path

from fglang.compiler import ast as A
from fglang.compiler import builtins as B
from fglang.compiler.distributions import DISTRIBUTIONS, SUPPORT_ALLOWS, DistSig
from fglang.compiler.parse import parse
from fglang.compiler.types import (
    BASE_TYPES,
    ERROR,
    Domain,
    Shape,
    ShapeError,
    T,
    broadcast,
    dims_differ,
    make_domain,
    matmul_shape,
    show_shape,
)
from fglang.errors import TOO_DEEP, TOO_DEEP_HINT, DiagnosticSink, FgError, did_you_mean, recursion_headroom


@dataclass(frozen=True)
class Symbol:
    kind: str  # data | var | let | index | const | param | local
    t: T
    decl: object = None
    domain: Domain | None = None


@dataclass(frozen=True)
class DataInfo:
    name: str
    dims: tuple[A.Expr, ...]  # node-style brackets after the name
    value_shape: tuple[A.Expr, ...]  # the TYPE's shape
    dtype: str  # int | real | bool
    domain: Domain
    default: A.Expr | None
    span: A.Span
    batch: bool = False  # the size `fit --batch-size` splits along

    @property
    def shape_exprs(self) -> tuple[A.Expr, ...]:
        return self.dims + self.value_shape


@dataclass(frozen=True)
class VarInfo:
    name: str
    node_dims: tuple[A.Expr, ...]
    value_shape: tuple[A.Expr, ...]
    domain: Domain
    prior: A.Call | None  # fns inlined
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
    decls: tuple = field(default=(), repr=False)  # the flat declarations, to check again with sizes
    program: A.Program | None = field(default=None, repr=False)

    def recheck(self, sizes: dict[str, int]) -> CheckedModel:
        """Check again with every size known (run when data are bound)."""
        return check_decls(list(self.decls), self.program, self.sources, DiagnosticSink(), sizes)


# ------------------------------------------------------------------ loading
def load_program(path: str | Path) -> tuple[list[A.Decl], A.Program, dict[str, str], list]:
    """Read a file and its includes (depth first, in place)."""
    path = Path(path)
    sources: dict[str, str] = {}
    sink = DiagnosticSink()
    try:
        text = path.read_text()
    except OSError as err:
        raise FgError([_nowhere(f"cannot read model file: {err.strerror}", str(path))]) from None
    return _expand(text, str(path), path.parent, sources, sink, stack=())


def _nowhere(message: str, file: str):
    from fglang.errors import Diagnostic

    return Diagnostic(message, A.Span(file, 0, 0, 0, 0))


def _expand(text, file, base: Path | None, sources, sink, stack):
    sources[file] = text
    prog = parse(text, file)
    decls: list[A.Decl] = []
    for d in prog.decls:
        if not isinstance(d, A.IncludeDecl):
            decls.append(d)
            continue
        if base is None:
            sink.error("'include' needs a model loaded from a file (fglang.load), not a string", d.span)
            continue
        target = (base / d.path).resolve()
        key = str(base / d.path)
        if str(target) in stack or str(target) == str(Path(file).resolve()):
            chain = " -> ".join([Path(s).name for s in stack] + [Path(file).name, Path(key).name])
            sink.error(f"include cycle: {chain}", d.span)
            continue
        try:
            sub_text = target.read_text()
        except OSError:
            sink.error(f"cannot read included file '{d.path}' (looked in {base})", d.span)
            continue
        try:
            sub, _, _, _ = _expand(sub_text, key, Path(key).parent, sources, sink, stack + (str(Path(file).resolve()),))
        except FgError as err:
            sink.items.extend(err.diagnostics)
            sources.update(err.sources)
            continue
        decls.extend(sub)
    return decls, prog, sources, sink


# ------------------------------------------------------------------ checker
class Checker:
    def __init__(
        self, sources: dict[str, str], sink: DiagnosticSink | None = None, sizes: dict[str, int] | None = None
    ):
        self.sources = sources
        # int scalar data values, when checking again with data bound: every
        # dim becomes concrete and N-vs-D mismatches surface with locations.
        self.sizes = dict(sizes or {})
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

    def err(self, msg: str, span: A.Span | None, hint: str | None = None) -> None:
        self.sink.error(msg, span, hint)

    # ----------------------------------------------------------- declarations
    def run(self, decls: list[A.Decl]) -> None:
        with recursion_headroom():
            for d in decls:
                try:
                    self.decl(d)
                except RecursionError:
                    self.err(TOO_DEEP, d.span, TOO_DEEP_HINT)

    def decl(self, d: A.Decl) -> None:
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
        # distribution names are only ever called after '~' or inside logp(), so
        # they stay free for data and vars (SPEC 5's AR(K) term uses 'beta')
        if name in B.CONSTANTS or name in B.ALL:
            self.err(f"'{name}' is a built-in name and cannot be redeclared", span)
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
                self._no_index_names(e, "a size")

    def _no_index_names(self, e: A.Expr, what: str) -> None:
        for n in _names(e):
            sym = self.scope.get(n.id)
            if sym is not None and sym.kind == "let" and what == "a size":
                self.err(
                    f"a size must use int data and constants; '{n.id}' is a let",
                    n.span,
                    f"declare '{n.id}' as int data (data {n.id}: int) or write its expression here",
                )
            if sym is not None and sym.kind == "data" and sym.t.shape:
                self.err(f"{what} must use int scalar data, and '{n.id}' is an array", n.span)

    def type_expr(self, t: A.TypeExpr) -> tuple[Domain, str] | None:
        if t.base not in BASE_TYPES:
            guess = did_you_mean(t.base, BASE_TYPES)
            self.err(
                f"unknown type '{t.base}'" + (f"; did you mean '{guess}'?" if guess else ""),
                t.span,
                "types are " + ", ".join(BASE_TYPES),
            )
            return None
        lower = upper = None
        for kw in t.bounds:
            if kw.name not in ("lower", "upper"):
                self.err(f"unknown type bound '{kw.name}'; expected 'lower' or 'upper'", kw.span)
                continue
            v = self.const_value(kw.value)
            if v is None:
                self.err("a type bound must be a constant number", kw.value.span)
                continue
            if kw.name == "lower":
                lower = float(v)
            else:
                upper = float(v)
        if lower is not None and upper is not None and not lower < upper:
            self.err(f"empty bounds: lower={lower:g} is not below upper={upper:g}", t.span)
        if t.bounds and t.base not in ("real", "int", "positive"):
            self.err(f"'{t.base}' takes no bounds", t.span)
        if t.base in ("simplex", "ordered") and len(t.shape) != 1:
            self.err(f"'{t.base}' needs one size, as in {t.base}[K]", t.span)
        self.size_exprs(t.shape, "type shape")
        dtype = {"int": "int", "bool": "bool"}.get(t.base, "real")
        return make_domain(t.base, lower, upper), dtype

    def shape_of(self, dims: tuple[A.Expr, ...]) -> Shape:
        return tuple(self.dim(e) for e in dims)

    def dim(self, e: A.Expr) -> int | str:
        v = self.const_value(e)
        if isinstance(v, int | float) and float(v).is_integer():
            return int(v)
        return _canon(e)

    def data_decl(self, d: A.DataDecl) -> None:
        self.size_exprs(d.dims, "data size")
        td = self.type_expr(d.type)
        if td is None:
            self.declare(d.name, d.name_span, Symbol("data", ERROR))
            return
        domain, dtype = td
        if domain.kind in ("simplex", "ordered"):
            dtype = "real"
        shape = self.shape_of(d.dims) + self.shape_of(d.type.shape)
        if d.default is not None:
            dt = self.infer(d.default)
            uses_data = any(self.scope.get(n.id, Symbol("x", ERROR)).kind == "data" for n in _names(d.default))
            if dt.ok and (dt.var or uses_data):
                self.err("a default must be a constant expression", d.default.span)
            elif dt.ok and shape and dt.shape:
                self.err("a default must be a scalar (it is broadcast to the declared shape)", d.default.span)
            elif dt.ok and dtype == "int" and dt.dtype != "int":
                self.err(f"default for int data '{d.name}' must be an int", d.default.span)
        if self.declare(d.name, d.name_span, Symbol("data", T(dtype, shape), d, domain)):
            if d.batch:
                if dtype != "int" or shape:
                    self.err("only an int scalar size can be marked 'batch'", d.span, "e.g. data N: int batch")
                elif any(x.batch for x in self.data.values()):
                    self.err("a model has at most one 'batch' size", d.span)
            self.data[d.name] = DataInfo(d.name, d.dims, d.type.shape, dtype, domain, d.default, d.span, d.batch)
            self.order.append(d.name)

    def var_decl(self, d: A.VarDecl) -> None:
        self.size_exprs(d.dims, "var size")
        td = self.type_expr(d.type)
        domain = td[0] if td else Domain("real")
        shape = self.shape_of(d.dims) + self.shape_of(d.type.shape)
        prior = None
        if td is not None and d.prior is not None:
            # the var itself is visible in its prior's arguments only as an error
            prior = self.dist_call(d.prior, T("real", shape, True), lhs_domain=domain, on_var=d.name)
        # an unknown type has no domain to check uses against (no cascade of errors)
        sym = Symbol("var", T(td[1] if td else "real", shape, True), d, domain if td else None)
        if self.declare(d.name, d.name_span, sym):
            self.vars[d.name] = VarInfo(d.name, d.dims, d.type.shape, domain, prior, d.span)
            self.order.append(d.name)

    def let_decl(self, d: A.LetDecl) -> None:
        t = self.infer(d.expr)
        expr = self.inline(d.expr)
        if self.declare(d.name, d.name_span, Symbol("let", t, d)):
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
        # fn bodies see their parameters, constants and other fns: not the model's names
        self.scope = {}
        seen: set[str] = set()
        for p in d.params:
            td = self.type_expr(p.type)
            if p.name in seen:
                self.err(f"parameter '{p.name}' is repeated", p.span)
            seen.add(p.name)
            dtype = td[1] if td else "real"
            self.scope[p.name] = Symbol("param", T(dtype, self.shape_of(p.type.shape), True))
        self._current_fn = d.name
        for name, e, span in d.lets:
            t = self.infer(e)
            if name in self.scope:
                self.err(f"'{name}' is already declared in fn '{d.name}'", span)
            self.scope[name] = Symbol("local", t)
        rt = self.infer(d.body)
        self._current_fn = None
        ret = self.type_expr(d.ret)
        self.scope = outer
        if rt.ok and ret is not None:
            want = self.shape_of(d.ret.shape)
            if len(want) != len(rt.shape) or any(dims_differ(a, b) for a, b in zip(want, rt.shape)):
                self.err(
                    f"fn '{d.name}' returns {show_shape(rt.shape)} but is declared to return {show_shape(want)}",
                    d.body.span,
                )
        self.fns[d.name] = d

    def factor_decl(self, d: A.FactorDecl) -> None:
        saved = dict(self.scope)
        seen = set()
        for r in d.ranges:
            self.range_bounds(r, seen)
            if r.name in seen:
                self.err(f"index '{r.name}' is used twice in this factor", r.span)
            seen.add(r.name)
            self.scope[r.name] = Symbol("index", T("int"))
        dist = potential = lhs = None
        if d.dist is not None:
            lt = self.infer(d.lhs)
            if lt.ok and lt.dtype == "bool" and not DISTRIBUTIONS.get(d.dist.func, DISTRIBUTIONS["normal"]).discrete:
                self.err("a comparison cannot be the left side of '~'", d.lhs.span)
            if lt.ok:
                dist = self.dist_call(d.dist, lt, lhs_expr=d.lhs)
            else:  # still report the mistakes on the right of '~'
                self._check_call_names(d.dist)
            lhs = self.inline(d.lhs)
        else:
            pt = self.infer(d.potential)
            if pt.ok and pt.dtype == "bool":
                self.err("a potential must be a real expression (a log density)", d.potential.span)
            potential = self.inline(d.potential)
        self.scope = saved
        if d.name in self.scope or d.name in self.factors or d.name in self.fns:
            self.err(f"'{d.name}' is already declared", d.name_span)
            return
        self.factors[d.name] = FactorInfo(d.name, d.ranges, lhs, dist, potential, d.span)
        self.order.append(d.name)

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
        if self.sizes and any(n.id in self.sizes for n in _names(r.lo) + _names(r.hi)):
            lo = hi = None
        if lo is not None and hi is not None and hi < lo:
            self.err(f"bad range {lo}:{hi}: the end is before the start", r.span, "ranges are half-open, a:b is a..b-1")

    # ----------------------------------------------------------- distributions
    def dist_call(
        self,
        call: A.Call,
        lhs: T,
        *,
        lhs_domain: Domain | None = None,
        on_var: str | None = None,
        lhs_expr: A.Expr | None = None,
    ) -> A.Call | None:
        sig = DISTRIBUTIONS.get(call.func)
        if sig is None:
            self._check_call_names(call)
            return None
        bound = self.bind_args(sig, call)
        if bound is None:
            return None
        shapes = []
        for pname, e in bound.items():
            t = self.infer(e)
            if not t.ok:
                return None
            if on_var is not None and on_var in {n.id for n in _names(e)}:
                self.err(f"the prior of '{on_var}' cannot use '{on_var}' itself", e.span)
            self.check_param_domain(sig, pname, e, t)
            if not (pname == "cutpoints" or (sig.event_ndim and pname in ("cov", "prec"))):
                shapes.append((e, t.shape[: len(t.shape) - sig.event_ndim] if pname in ("mu", "alpha") else t.shape))
        value_shape = lhs.shape[: len(lhs.shape) - sig.event_ndim] if sig.event_ndim else lhs.shape
        batch = value_shape
        for e, s in shapes:
            try:
                batch = broadcast(batch, s)
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
            if lhs_domain.kind not in allowed and not sig.sparsity:
                self.err(
                    f"'{sig.name}' has support {sig.support} but '{on_var}' is declared {lhs_domain.describe()}",
                    call.span,
                    f"declare '{on_var}' with a type inside the distribution's support",
                )
            elif sig.sparsity and lhs_domain.kind != "real":
                self.err(f"a sparsity prior needs a real var; '{on_var}' is {lhs_domain.describe()}", call.span)
        inlined = self.inline(call)
        # normalize argument order to the signature's names
        kwargs = tuple(A.Kwarg(k, self.inline(v), v.span) for k, v in bound.items())
        return replace(inlined, args=(), kwargs=kwargs)

    def _check_call_names(self, call: A.Call) -> None:
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
        self.err(msg, call.func_span or call.span, None if guess else "see docs/language.md for the distributions")

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
        if dom in ("positive", "unit", "nonneg", "nonneg_int") and v is not None:
            bad = (
                (dom == "positive" and not v > 0)
                or (dom == "unit" and not 0 <= v <= 1)
                or (dom in ("nonneg", "nonneg_int") and not v >= 0)
                or (dom == "nonneg_int" and not float(v).is_integer())
            )
            if bad:
                want = {"positive": "> 0", "unit": "in [0, 1]", "nonneg": ">= 0", "nonneg_int": "a whole number >= 0"}[
                    dom
                ]
                self.err(f"'{pname}' of {sig.name} must be {want}, got {v:g}", e.span)
            return
        if dom in ("positive", "unit") and t.var:
            for n in _names(e):
                sym = self.scope.get(n.id)
                if sym is not None and sym.kind == "var" and sym.domain is not None:
                    if e is n or isinstance(e, A.Index) and e.base is n:
                        if sym.domain.kind not in ("positive", "unit") and not (
                            sym.domain.kind == "interval" and sym.domain.lower is not None and sym.domain.lower >= 0
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

    # ----------------------------------------------------------- constants
    def const_value(self, e: A.Expr) -> float | int | None:
        """The value of an expression made only of literals and constants."""
        if isinstance(e, A.Num):
            return e.value
        if isinstance(e, A.Name) and e.id in B.CONSTANTS and e.id not in self.scope:
            return B.CONSTANTS[e.id]
        if isinstance(e, A.Name) and e.id in self.sizes and getattr(self.scope.get(e.id), "kind", None) == "data":
            return self.sizes[e.id]
        if isinstance(e, A.Neg):
            v = self.const_value(e.operand)
            return None if v is None else -v
        if isinstance(e, A.BinOp) and e.op in "+-*/^":
            a, b = self.const_value(e.left), self.const_value(e.right)
            if a is None or b is None:
                return None
            try:
                return {
                    "+": lambda: a + b,
                    "-": lambda: a - b,
                    "*": lambda: a * b,
                    "/": lambda: a / b,
                    "^": lambda: float(a) ** b,
                }[e.op]()
            except (ZeroDivisionError, OverflowError):
                return None
        return None

    # ----------------------------------------------------------- expressions
    def infer(self, e: A.Expr) -> T:
        method = getattr(self, "infer_" + type(e).__name__)
        return method(e)

    def infer_Num(self, e: A.Num) -> T:
        return T("int" if e.is_int else "real")

    def infer_Bool(self, e: A.Bool) -> T:
        return T("bool")

    def infer_Name(self, e: A.Name) -> T:
        sym = self.scope.get(e.id)
        if sym is not None:
            return sym.t
        if e.id in B.CONSTANTS:
            return T("real")
        if e.id == self._current_fn:
            self.err(f"fn '{e.id}' cannot refer to itself: recursion is not supported", e.span)
            return ERROR
        if e.id in self.fns or e.id in B.ALL:
            self.err(f"'{e.id}' is a function; call it as {e.id}(...)", e.span)
            return ERROR
        if e.id in DISTRIBUTIONS:
            self.err(f"'{e.id}' is a distribution; use it after '~' or in logp({e.id}(...), value)", e.span)
            return ERROR
        self._unknown(e.id, e.span)
        return ERROR

    def _unknown(self, name: str, span: A.Span) -> None:
        cands = list(self.scope) + list(B.CONSTANTS)
        guess = did_you_mean(name, cands)
        hint = None
        if self._current_fn is not None:
            hint = "a fn body sees only its parameters, its own lets, constants and other fns"
        self.err(f"unknown name '{name}'" + (f"; did you mean '{guess}'?" if guess else ""), span, hint)

    def infer_Neg(self, e: A.Neg) -> T:
        t = self.infer(e.operand)
        if t.ok and t.dtype == "bool":
            return T("int", t.shape, t.var)
        return t

    def infer_BinOp(self, e: A.BinOp) -> T:
        a, b = self.infer(e.left), self.infer(e.right)
        if not (a.ok and b.ok):
            return ERROR
        var = a.var or b.var
        try:
            if e.op == "@":
                if a.dtype == "bool" or b.dtype == "bool":
                    raise ShapeError("'@' needs numbers, not comparisons")
                return T("real" if "real" in (a.dtype, b.dtype) else "int", matmul_shape(a.shape, b.shape), var)
            shape = broadcast(a.shape, b.shape)
        except ShapeError as err:
            self.err(f"shape mismatch: {err}", e.span, _shape_hint(e.op, a.shape, b.shape))
            return ERROR
        if e.op in ("==", "!=", "<", "<=", ">", ">="):
            return T("bool", shape, var)
        if e.op in ("/", "^"):
            return T("real", shape, var)
        dtype = "real" if "real" in (a.dtype, b.dtype) else "int"
        return T(dtype, shape, var)

    def infer_Vector(self, e: A.Vector) -> T:
        ts = [self.infer(x) for x in e.items]
        if not all(t.ok for t in ts):
            return ERROR
        first = ts[0]
        for x, t in zip(e.items[1:], ts[1:]):
            if len(t.shape) != len(first.shape) or any(dims_differ(p, q) for p, q in zip(t.shape, first.shape)):
                self.err(
                    f"vector items must have one shape: {show_shape(first.shape)} and {show_shape(t.shape)}", x.span
                )
                return ERROR
        dtypes = {t.dtype for t in ts}
        dtype = "real" if "real" in dtypes else ("int" if "int" in dtypes else "bool")
        return T(dtype, (len(ts),) + first.shape, any(t.var for t in ts))

    def infer_Slice(self, e: A.Slice) -> T:  # only reached through Index
        self.err("a slice ':' can only appear inside [ ]", e.span)
        return ERROR

    def infer_Index(self, e: A.Index) -> T:
        base = self.infer(e.base)
        if not base.ok:
            for a in e.args:
                if not isinstance(a, A.Slice):
                    self.infer(a)
            return ERROR
        if len(e.args) > len(base.shape):
            what = f"'{e.base.id}'" if isinstance(e.base, A.Name) else "this value"
            self.err(
                f"{what} has {len(base.shape)} dimension{'s' * (len(base.shape) != 1)} "
                f"({show_shape(base.shape)}) but is indexed with {len(e.args)}",
                e.span,
            )
            return ERROR
        out: list = []
        var = base.var
        array_index_seen = False
        for k, a in enumerate(e.args):
            dim = base.shape[k]
            if isinstance(a, A.Slice):
                lo = hi = None
                for part in (a.lo, a.hi):
                    if part is not None:
                        t = self.infer(part)
                        if t.ok and (t.dtype != "int" or not t.scalar):
                            self.err("slice bounds must be int scalars", part.span)
                        elif t.ok and t.var:
                            self.err("slice bounds cannot depend on a var", part.span)
                if a.lo is not None:
                    lo = self.dim(a.lo)
                if a.hi is not None:
                    hi = self.dim(a.hi)
                out.append(_slice_len(lo, hi, dim))
                for bound, part in ((lo, a.lo), (hi, a.hi)):
                    if isinstance(bound, int) and isinstance(dim, int) and not 0 <= bound <= dim:
                        self.err(f"slice bound {bound} is outside 0:{dim}", part.span)
                continue
            t = self.infer(a)
            if not t.ok:
                return ERROR
            if t.dtype == "bool":
                self.err("an index must be an int, got a comparison (bool)", a.span)
                return ERROR
            if t.dtype != "int":
                self.err(f"an index must be an int, got {t.dtype}", a.span, "index with int data or a factor index")
                return ERROR
            if t.var:
                self.err("an index cannot depend on a var", a.span)
                return ERROR
            v = self.const_value(a)
            if v is not None and v < 0:
                self.err(f"index {v} is negative; indices do not wrap around", a.span)
                return ERROR
            if v is not None and isinstance(dim, int) and not 0 <= v < dim:
                self.err(f"index {v} is out of range for a dimension of size {dim}", a.span, "indices are 0-based")
                return ERROR
            if t.shape:
                if array_index_seen:
                    self.err("only one int array may index a value at a time", a.span)
                    return ERROR
                array_index_seen = True
                out.extend(t.shape)
        return T(base.dtype, tuple(out) + base.shape[len(e.args) :], var)

    def infer_Reduce(self, e: A.Reduce) -> T:
        saved = dict(self.scope)
        for r in e.ranges:
            self.range_bounds(r, ())
            if r.name in self.scope and self.scope[r.name].kind != "index":
                self.err(f"reduction index '{r.name}' hides the declared name '{r.name}'", r.span)
            self.scope[r.name] = Symbol("index", T("int"))
        t = self.infer(e.body)
        self.scope = saved
        if not t.ok:
            return ERROR
        if t.dtype == "bool":
            return T("int", t.shape, t.var)
        return t

    def infer_Call(self, e: A.Call) -> T:
        f = e.func
        if f in self.fns and f not in self.scope:
            return self.user_call(e)
        if f == self._current_fn:
            self.err(f"fn '{f}' calls itself: recursion is not supported", e.func_span or e.span)
            return ERROR
        if f in DISTRIBUTIONS:
            self.err(
                f"'{f}' is a distribution, not a function",
                e.func_span or e.span,
                f"write 'LHS ~ {f}(...)' in a factor, or logp({f}(...), value) in a potential",
            )
            return ERROR
        if f not in B.ALL:
            guess = did_you_mean(f, list(B.ALL) + list(self.fns))
            self.err(
                f"unknown function '{f}'" + (f"; did you mean '{guess}'?" if guess else ""), e.func_span or e.span
            )
            for a in e.args:
                self.infer(a)
            return ERROR
        if f == "logp":
            return self.logp_call(e)
        if e.kwargs and f != "leaky_relu":
            self.err(f"'{f}' takes no keyword arguments", e.kwargs[0].span)
            return ERROR
        ts = [self.infer(a) for a in e.args]
        if not all(t.ok for t in ts):
            return ERROR
        var = any(t.var for t in ts)
        n = len(ts)

        def arity(*allowed: int) -> bool:
            if n not in allowed:
                want = " or ".join(str(a) for a in allowed)
                self.err(f"'{f}' takes {want} argument{'s' * (allowed != (1,))}, got {n}", e.span)
                return False
            return True

        try:
            if f in B.ELEMENTWISE:
                keeps_int = f == "abs" and ts[0].dtype == "int"
                return T("int" if keeps_int else "real", ts[0].shape, var) if arity(1) else ERROR
            if f in B.REDUCING:
                return T("real", (), var) if arity(1) else ERROR
            if f == "softmax":
                return T("real", ts[0].shape, var) if arity(1) else ERROR
            if f == "leaky_relu":
                if e.kwargs and not (len(e.kwargs) == 1 and e.kwargs[0].name == "slope"):
                    self.err("leaky_relu takes one keyword, slope=", e.kwargs[0].span)
                    return ERROR
                return T("real", ts[0].shape, var) if arity(1, 2) else ERROR
            if f == "atan2":
                return T("real", broadcast(ts[0].shape, ts[1].shape), var) if arity(2) else ERROR
            if f in ("min", "max"):
                if not arity(1, 2):
                    return ERROR
                if n == 1:
                    return T(ts[0].dtype, (), var)
                dtype = "real" if "real" in (ts[0].dtype, ts[1].dtype) else "int"
                return T(dtype, broadcast(ts[0].shape, ts[1].shape), var)
            if f == "where":
                if not arity(3):
                    return ERROR
                shape = broadcast(broadcast(ts[0].shape, ts[1].shape), ts[2].shape)
                return T("real" if "real" in (ts[1].dtype, ts[2].dtype) else "int", shape, var)
            if f == "dot":
                if not arity(2):
                    return ERROR
                if len(ts[0].shape) != 1 or len(ts[1].shape) != 1:
                    self.err(
                        f"dot needs two vectors, got {show_shape(ts[0].shape)} and {show_shape(ts[1].shape)}", e.span
                    )
                    return ERROR
                if dims_differ(ts[0].shape[0], ts[1].shape[0]):
                    self.err(f"dot of vectors of lengths {ts[0].shape[0]} and {ts[1].shape[0]}", e.span)
                    return ERROR
                return T("real", (), var)
            if f == "transpose":
                if not arity(1):
                    return ERROR
                if len(ts[0].shape) != 2:
                    self.err(f"transpose needs a matrix, got {show_shape(ts[0].shape)}", e.span)
                    return ERROR
                return T(ts[0].dtype, tuple(reversed(ts[0].shape)), var)
        except ShapeError as err:
            self.err(f"shape mismatch in '{f}': {err}", e.span)
            return ERROR
        raise AssertionError(f"builtin {f} has no shape rule")  # pragma: no cover

    def logp_call(self, e: A.Call) -> T:
        if len(e.args) != 2 or e.kwargs or not isinstance(e.args[0], A.Call):
            self.err("logp takes a distribution and a value: logp(normal(mu, sd), x)", e.span)
            return ERROR
        d, value = e.args
        vt = self.infer(value)
        if not vt.ok:
            return ERROR
        sig = DISTRIBUTIONS.get(d.func)
        if sig is None:
            self._unknown_dist(d)
            return ERROR
        if sig.sparsity:
            self.err(f"logp of the sparsity prior '{d.func}' has no closed form", d.span, "use it after '~'")
            return ERROR
        bound = self.bind_args(sig, d)
        if bound is None:
            return ERROR
        shape = vt.shape[: len(vt.shape) - sig.event_ndim]
        var = vt.var
        for pname, a in bound.items():
            t = self.infer(a)
            if not t.ok:
                return ERROR
            var = var or t.var
            self.check_param_domain(sig, pname, a, t)
            if pname not in ("cutpoints", "cov", "prec"):
                s = t.shape[: len(t.shape) - sig.event_ndim] if pname in ("mu", "alpha") else t.shape
                try:
                    shape = broadcast(shape, s)
                except ShapeError as err:
                    self.err(f"shape mismatch in logp: {err}", a.span)
                    return ERROR
        return T("real", shape, var)

    def user_call(self, e: A.Call) -> T:
        fn = self.fns[e.func]
        if e.kwargs:
            self.err(f"fn '{fn.name}' takes positional arguments only", e.kwargs[0].span)
            return ERROR
        if len(e.args) != len(fn.params):
            self.err(
                f"fn '{fn.name}' takes {len(fn.params)} argument{'s' * (len(fn.params) != 1)}, got {len(e.args)}",
                e.span,
            )
            return ERROR
        var = False
        for p, a in zip(fn.params, e.args):
            t = self.infer(a)
            if not t.ok:
                return ERROR
            var = var or t.var
            want = self.shape_of(p.type.shape)
            if len(want) != len(t.shape) or any(dims_differ(x, y) for x, y in zip(want, t.shape)):
                self.err(
                    f"argument '{p.name}' of fn '{fn.name}' must have shape {show_shape(want)}, "
                    f"got {show_shape(t.shape)}",
                    a.span,
                )
                return ERROR
        dtype = {"int": "int", "bool": "bool"}.get(fn.ret.base, "real")
        return T(dtype, self.shape_of(fn.ret.shape), var)

    # ----------------------------------------------------------- inlining
    def inline(self, e):
        """Replace calls to user fns by their bodies (SPEC 5: fns are inlined)."""
        if e is None:
            return None
        if isinstance(e, A.Call):
            args = tuple(self.inline(a) for a in e.args)
            kwargs = tuple(A.Kwarg(k.name, self.inline(k.value), k.span) for k in e.kwargs)
            if e.func in self.fns and e.func not in self.scope:
                return self._expand_fn(self.fns[e.func], args, e.span)
            return replace(e, args=args, kwargs=kwargs)
        return _map_children(e, self.inline)

    def _expand_fn(self, fn: A.FnDecl, args: tuple[A.Expr, ...], span: A.Span) -> A.Expr:
        env: dict[str, A.Expr] = {p.name: a for p, a in zip(fn.params, args)}
        for name, e, _ in fn.lets:
            env[name] = _substitute(self.inline(self._freshen(e)), env)
        return _substitute(self.inline(self._freshen(fn.body)), env)

    def _freshen(self, e: A.Expr) -> A.Expr:
        """Rename reduction indices inside a fn body so that inlining cannot
        capture a caller's index of the same name."""
        if isinstance(e, A.Reduce):
            ren = {r.name: f"{r.name}__{next(self._fresh)}" for r in e.ranges}
            sub = {old: A.Name(e.span, new) for old, new in ren.items()}
            ranges = tuple(
                A.IndexRange(ren[r.name], _substitute(r.lo, sub), _substitute(r.hi, sub), r.span) for r in e.ranges
            )
            return replace(e, ranges=ranges, body=self._freshen(_substitute(e.body, sub)))
        return _map_children(e, self._freshen)


# ------------------------------------------------------------------ tree helpers
def _map_children(e, f):
    if isinstance(e, A.Neg):
        return replace(e, operand=f(e.operand))
    if isinstance(e, A.BinOp):
        return replace(e, left=f(e.left), right=f(e.right))
    if isinstance(e, A.Slice):
        return replace(e, lo=f(e.lo) if e.lo is not None else None, hi=f(e.hi) if e.hi is not None else None)
    if isinstance(e, A.Index):
        return replace(e, base=f(e.base), args=tuple(f(a) for a in e.args))
    if isinstance(e, A.Call):
        return replace(
            e, args=tuple(f(a) for a in e.args), kwargs=tuple(A.Kwarg(k.name, f(k.value), k.span) for k in e.kwargs)
        )
    if isinstance(e, A.Vector):
        return replace(e, items=tuple(f(a) for a in e.items))
    if isinstance(e, A.Reduce):
        ranges = tuple(A.IndexRange(r.name, f(r.lo), f(r.hi), r.span) for r in e.ranges)
        return replace(e, ranges=ranges, body=f(e.body))
    return e


def _substitute(e: A.Expr, env: dict[str, A.Expr]) -> A.Expr:
    if isinstance(e, A.Name) and e.id in env:
        return env[e.id]
    if isinstance(e, A.Reduce):
        inner = {k: v for k, v in env.items() if k not in {r.name for r in e.ranges}}
        ranges = tuple(A.IndexRange(r.name, _substitute(r.lo, env), _substitute(r.hi, env), r.span) for r in e.ranges)
        return replace(e, ranges=ranges, body=_substitute(e.body, inner))
    return _map_children(e, lambda x: _substitute(x, env))


def substitute(e: A.Expr, env: dict[str, A.Expr]) -> A.Expr:
    return _substitute(e, env)


def _names(e) -> list[A.Name]:
    out: list[A.Name] = []

    def walk(x):
        if x is None:
            return
        if isinstance(x, A.Name):
            out.append(x)
        _map_children(x, lambda c: (walk(c), c)[1])

    walk(e)
    return out


names_in = _names
map_children = _map_children


def _var_root(e: A.Expr, scope: dict[str, Symbol]) -> str | None:
    while isinstance(e, A.Index):
        e = e.base
    if isinstance(e, A.Name) and scope.get(e.id, Symbol("x", ERROR)).kind == "var":
        return e.id
    return None


def _canon(e: A.Expr) -> str:
    """Canonical text of a size expression, for symbolic shape comparison."""
    if isinstance(e, A.Num):
        return str(e.value)
    if isinstance(e, A.Name):
        return e.id
    if isinstance(e, A.Neg):
        return f"-{_canon(e.operand)}"
    if isinstance(e, A.BinOp):
        return f"{_canon(e.left)}{e.op}{_canon(e.right)}"
    return f"<{type(e).__name__}>"


def _slice_len(lo, hi, dim):
    lo = 0 if lo is None else lo
    hi = dim if hi is None else hi
    if isinstance(lo, int) and isinstance(hi, int):
        return max(hi - lo, 0)
    if lo == 0:
        return hi
    return f"{hi}-{lo}" if isinstance(lo, int) or "-" not in str(lo) else f"{hi}-({lo})"


def _shape_hint(op: str, a: Shape, b: Shape) -> str | None:
    if op == "*" and len(a) == 2 and len(b) == 1:
        return "for a matrix-vector product use '@'"
    return None


def _usage(sig: DistSig) -> str:
    parts = [p.name + (f"={p.default:g}" if p.default is not None else "") for p in sig.params]
    parts += ["|".join(a.name + "=" for a in g) for g in sig.alternatives]
    return f"usage: {sig.name}({', '.join(parts)})"


# ------------------------------------------------------------------ entry points
def check_decls(
    decls: list[A.Decl],
    prog: A.Program,
    sources: dict[str, str],
    sink: DiagnosticSink,
    sizes: dict[str, int] | None = None,
) -> CheckedModel:
    if prog.name is None:
        sink.error("a model starts with 'model NAME'", A.Span(prog.file, 1, 1, 1, 2), "e.g. model my_model")
    c = Checker(sources, sink, sizes)
    c.run(decls)
    sink.raise_if_any(sources)
    return CheckedModel(
        prog.name, prog.file, sources, c.data, c.vars, c.lets, c.factors, tuple(c.order), tuple(decls), prog
    )


def check_file(path: str | Path) -> CheckedModel:
    decls, prog, sources, sink = load_program(path)
    return check_decls(decls, prog, sources, sink)


def check_source(text: str, file: str = "<string>") -> CheckedModel:
    sources: dict[str, str] = {}
    sink = DiagnosticSink()
    try:
        decls, prog, sources, sink = _expand(text, file, None, sources, sink, ())
    except FgError as err:
        raise FgError(err.diagnostics, {file: text, **err.sources}) from None
    return check_decls(decls, prog, sources, sink)
