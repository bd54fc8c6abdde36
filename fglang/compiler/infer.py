"""Expression typing: the element type, shape and var-dependence of every expression.

A mixin of ``Checker`` (it reads the checker's scope and reports through its
sink). Symbolic dims that may or may not agree (``N`` against ``M``) are not
errors here: each such rule is recorded as a ``SizeCheck`` for binding to
decide with the data's sizes, so the checker runs once per model.
"""

from __future__ import annotations

from dataclasses import dataclass

from fglang.compiler import ast as A
from fglang.compiler import builtins as B
from fglang.compiler.distributions import CDF, CDF_CONSTANT_PARAMS, DISTRIBUTIONS, MATRIX_PARAMS
from fglang.compiler.expr import names_in, static_value
from fglang.compiler.groups import FUNCS as GROUP_FUNCS
from fglang.compiler.groups import GROUPS
from fglang.compiler.infer_groups import NUMBERS_HINT, describe, is_group
from fglang.compiler.sizes import SizeCheck
from fglang.compiler.stan_hints import density_call_hint
from fglang.compiler.types import (
    ERROR,
    Dim,
    Domain,
    Shape,
    ShapeError,
    Sym,
    T,
    broadcast,
    dims_differ,
    matmul_shape,
    show_shape,
    undecided,
)
from fglang.compiler.unparse import unparse
from fglang.errors import did_you_mean


@dataclass(frozen=True)
class Symbol:
    kind: str  # data | var | let | index | const | param | local
    t: T
    decl: object = None
    domain: Domain | None = None


class ExprTyping:
    """Needs from its host: ``scope``, ``fns``, ``_current_fn``, ``err``, and the
    distribution-argument rules (``bind_args``, ``check_param_domain``, ``_unknown_dist``)."""

    scope: dict[str, Symbol]
    fns: dict[str, A.FnDecl]
    _current_fn: str | None
    size_checks: list[SizeCheck]
    _decl_no: int
    _let_uses: dict[str, frozenset[str]]
    _owner: str | None

    # ----------------------------------------------------------- constants and sizes
    def const_value(self, e: A.Expr) -> float | int | None:
        """The value of an expression made only of literals and constants."""
        return static_value(e, None, self.scope)

    def sized(self, e: A.Expr) -> bool:
        """Whether the data's sizes alone fix ``e`` (every name in it is data)."""
        return all(
            getattr(self.scope.get(n.id), "kind", None) == "data" or (n.id in B.CONSTANTS and n.id not in self.scope)
            for n in names_in(e)
        )

    def shape_of(self, dims: tuple[A.Expr, ...]) -> Shape:
        return tuple(self.dim(e) for e in dims)

    def dim(self, e: A.Expr) -> Dim:
        v = self.const_value(e)
        if isinstance(v, int | float) and float(v).is_integer():
            return int(v)
        return Sym(canonical_size(e), e if self.sized(e) else None)

    def lets_read(self, e: A.Expr | None) -> frozenset[str]:
        """The lets ``e`` reads, directly or through other lets."""
        out: set[str] = set()
        for n in names_in(e):
            if getattr(self.scope.get(n.id), "kind", None) == "let":
                out.add(n.id)
                out |= self._let_uses.get(n.id, frozenset())
        return frozenset(out)

    def defer(self, rule: str, operands: tuple, message: str, span: A.Span, node, *, hint=None, value=None) -> None:
        """Leave a shape rule to binding (see ``fglang.compiler.sizes``)."""
        uses = self.lets_read(node)
        self.size_checks.append(SizeCheck(rule, operands, message, span, hint, value, self._decl_no, uses, self._owner))

    def broadcast(
        self, a: Shape, b: Shape, message: str, node: A.Expr, hint: str | None = None, shown: tuple[Shape, ...] = ()
    ) -> Shape:
        """``types.broadcast``, recording the comparisons that only the sizes decide
        (``shown``: more shapes the message names after ``a`` and ``b``)."""
        shape = broadcast(a, b)
        if undecided(a, b):
            self.defer("broadcast", (a, b) + shown, message, node.span, node, hint=hint)
        return shape

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
        if e.id in self.fns or e.id in B.ALL or e.id in GROUP_FUNCS:
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
        if self.no_group(t, e.operand, "'-'"):
            return ERROR
        if t.ok and t.dtype == "bool":
            return T("int", t.shape, t.var)
        return t

    def infer_BinOp(self, e: A.BinOp) -> T:
        a, b = self.infer(e.left), self.infer(e.right)
        if not (a.ok and b.ok):
            return ERROR
        if self.no_group(a, e.left, f"'{e.op}'") | self.no_group(b, e.right, f"'{e.op}'"):
            return ERROR
        var = a.var or b.var
        try:
            if e.op == "@":
                if a.dtype == "bool" or b.dtype == "bool":
                    raise ShapeError("'@' needs numbers, not comparisons")
                shape = matmul_shape(a.shape, b.shape)
                if a.shape[-1] != b.shape[0] and not (isinstance(a.shape[-1], int) and isinstance(b.shape[0], int)):
                    self.defer(
                        "matmul",
                        (a.shape, b.shape),
                        "shape mismatch: {err}",
                        e.span,
                        e,
                        hint=_shape_hint(e.op, a.shape, b.shape),
                    )
                return T("real" if "real" in (a.dtype, b.dtype) else "int", shape, var)
            shape = self.broadcast(a.shape, b.shape, "shape mismatch: {err}", e, _shape_hint(e.op, a.shape, b.shape))
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
        if any([self.no_group(t, x, "a vector literal [...]") for t, x in zip(ts, e.items)]):
            return ERROR
        first = ts[0]
        for x, t in zip(e.items[1:], ts[1:]):
            if len(t.shape) != len(first.shape) or any(dims_differ(p, q) for p, q in zip(t.shape, first.shape)):
                self.err(
                    f"vector items must have one shape: {show_shape(first.shape)} and {show_shape(t.shape)}", x.span
                )
                return ERROR
            if t.shape != first.shape:
                self.defer("same", (first.shape, t.shape), "vector items must have one shape: {0} and {1}", x.span, e)
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
        if is_group(base) and len(e.args) > len(base.shape):
            self.err(
                f"a {base.dtype} value cannot be indexed into"
                + (f" ('{e.base.id}' has {len(base.shape)} node dimension{'s' * (len(base.shape) != 1)})"
                   if isinstance(e.base, A.Name) else ""),
                e.span,
                "its numbers come from translation(p)[i], log(p)[i], angle(r) or quaternion(r)",
            )
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
                    elif bound is not None and (isinstance(bound, Sym) or isinstance(dim, Sym)):
                        self.defer("slice", (bound, dim), "slice bound {0} is outside 0:{1}", part.span, e)
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
                self.err(f"index {v} is negative (axis {k} of {indexed_text(e.base)}); indices do not wrap around",
                         a.span)
                return ERROR
            if v is not None and isinstance(dim, int) and not 0 <= v < dim:
                self.err(f"index {v} is out of range for axis {k} of {indexed_text(e.base)} (size {dim})", a.span,
                         "indices are 0-based")
                return ERROR
            if (v is None and self.sized(a)) or (v is not None and isinstance(dim, Sym)):
                self.defer("index", (dim,), f"axis {k} of {indexed_text(e.base)}", a.span, e, value=a)
            if t.shape:
                if array_index_seen:
                    self.err("only one int array may index a value at a time", a.span)
                    return ERROR
                array_index_seen = True
                out.extend(t.shape)
        _know_base_shape(e, base.shape)
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
        if not t.ok or self.no_group(t, e.body, f"'{e.op}[...]'"):
            return ERROR
        if e.op == "log_sum_exp":
            return T("real", t.shape, t.var)
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
        if f in GROUP_FUNCS:
            return self.group_call(e, f)
        if f == "log" and len(e.args) == 1 and not e.kwargs:
            t = self.infer(e.args[0])
            if not t.ok:
                return ERROR
            if is_group(t):
                return self.group_call(e, f, [t])
            return T("real", t.shape, t.var)  # the elementwise log
        if f not in B.ALL:
            guess = did_you_mean(f, list(B.ALL) + list(self.fns) + list(GROUP_FUNCS))
            self.err(f"unknown function '{f}'" + (f"; did you mean '{guess}'?" if guess else ""), e.func_span or e.span,
                     density_call_hint(f))
            for a in e.args:
                self.infer(a)
            return ERROR
        if f in ("logp", "lcdf", "lccdf"):
            return self.logp_call(e)
        if e.kwargs and f != "leaky_relu":
            self.err(f"'{f}' takes no keyword arguments", e.kwargs[0].span)
            return ERROR
        ts = [self.infer(a) for a in e.args]
        if not all(t.ok for t in ts):
            return ERROR
        if any([self.no_group(t, a, f"'{f}'") for t, a in zip(ts, e.args)]):
            return ERROR
        if f in B.LINALG:
            return self.linalg_call(e, ts)
        var = any(t.var for t in ts)
        n = len(ts)

        def arity(*allowed: int) -> bool:
            if n not in allowed:
                want = " or ".join(str(a) for a in allowed)
                self.err(f"'{f}' takes {want} argument{'s' * (allowed != (1,))}, got {n}", e.span)
                return False
            return True

        mismatch = f"shape mismatch in '{f}': {{err}}"
        try:
            if f in B.ELEMENTWISE:
                keeps_int = f == "abs" and ts[0].dtype == "int"
                return T("int" if keeps_int else "real", ts[0].shape, var) if arity(1) else ERROR
            if f == "log_sum_exp" and n == 2:  # Stan's binary log_sum_exp(a, b): elementwise, stable
                return T("real", self.broadcast(ts[0].shape, ts[1].shape, mismatch, e), var)
            if f in B.REDUCING:
                return T("real", (), var) if arity(*((1, 2) if f == "log_sum_exp" else (1,))) else ERROR
            if f == "softmax":
                return T("real", ts[0].shape, var) if arity(1) else ERROR
            if f == "leaky_relu":
                if e.kwargs and not (len(e.kwargs) == 1 and e.kwargs[0].name == "slope"):
                    self.err("leaky_relu takes one keyword, slope=", e.kwargs[0].span)
                    return ERROR
                return T("real", ts[0].shape, var) if arity(1, 2) else ERROR
            if f in ("atan2", "log_diff_exp") or f in B.BROADCAST:
                if not arity(2):
                    return ERROR
                return T("real", self.broadcast(ts[0].shape, ts[1].shape, mismatch, e), var)
            if f in ("min", "max"):
                if not arity(1, 2):
                    return ERROR
                if n == 1:
                    return T(ts[0].dtype, (), var)
                dtype = "real" if "real" in (ts[0].dtype, ts[1].dtype) else "int"
                return T(dtype, self.broadcast(ts[0].shape, ts[1].shape, mismatch, e), var)
            if f == "where":
                if not arity(3):
                    return ERROR
                shape = self.broadcast(self.broadcast(ts[0].shape, ts[1].shape, mismatch, e), ts[2].shape, mismatch, e)
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
                if ts[0].shape[0] != ts[1].shape[0]:
                    self.defer(
                        "same_dim", (ts[0].shape[0], ts[1].shape[0]), "dot of vectors of lengths {0} and {1}", e.span, e
                    )
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
        """``logp(D(args), x)``, and the log CDF ``lcdf(D(args), x)`` = log P(X <= x)
        and its complement ``lccdf(D(args), x)`` = log P(X > x) (Stan's
        ``normal_lcdf(x | mu, s)``, ``normal_lccdf``): a truncation's normalizer."""
        f = e.func
        if len(e.args) != 2 or e.kwargs or not isinstance(e.args[0], A.Call):
            self.err(f"{f} takes a distribution and a value: {f}(normal(mu, sd), x)", e.span)
            return ERROR
        d, value = e.args
        vt = self.infer(value)
        if not vt.ok or self.no_group(vt, value, f"{f}'s value"):
            return ERROR
        sig = DISTRIBUTIONS.get(d.func)
        if sig is None:
            self._unknown_dist(d)
            return ERROR
        if sig.sparsity:
            self.err(f"{f} of the sparsity prior '{d.func}' has no closed form", d.span, "use it after '~'")
            return ERROR
        if f != "logp" and d.func not in CDF:
            self.err(f"{f} of '{d.func}': fglang has no CDF for it", d.span,
                     f"{f} takes one of: {', '.join(sorted(CDF))}")
            return ERROR
        bound = self.bind_args(sig, d)
        if bound is None:
            return ERROR
        shape = vt.shape[: len(vt.shape) - sig.event_ndim]
        var = vt.var
        for pname, a in bound.items():
            t = self.infer(a)
            if not t.ok or self.no_group(t, a, f"'{pname}' of {d.func}"):
                return ERROR
            var = var or t.var
            self.check_param_domain(sig, pname, a, t)
            if f != "logp" and t.var and pname in CDF_CONSTANT_PARAMS.get(d.func, ()):
                self.err(f"{f} of '{d.func}' needs a '{pname}' that reads no var", a.span,
                         f"JAX has no gradient of {d.func}'s CDF in '{pname}': give it data or a constant")
                return ERROR
            if pname not in MATRIX_PARAMS | {"cutpoints"}:
                s = t.shape[: len(t.shape) - sig.event_ndim] if pname in ("mu", "alpha") else t.shape
                try:
                    shape = self.broadcast(shape, s, f"shape mismatch in {f}: {{err}}", a)
                except ShapeError as err:
                    self.err(f"shape mismatch in {f}: {err}", a.span)
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
            if p.type.base in GROUPS or is_group(t):
                if t.dtype != p.type.base or t.shape:
                    self.err(
                        f"argument '{p.name}' of fn '{fn.name}' must be a {p.type.base}"
                        f"{'' if p.type.base in GROUPS else ' ' + show_shape(self.shape_of(p.type.shape))}, "
                        f"got {describe(t)}",
                        a.span,
                        NUMBERS_HINT if is_group(t) else None,
                    )
                    return ERROR
                continue
            want = self.shape_of(p.type.shape)
            if len(want) != len(t.shape) or any(dims_differ(x, y) for x, y in zip(want, t.shape)):
                self.err(
                    f"argument '{p.name}' of fn '{fn.name}' must have shape {show_shape(want)}, "
                    f"got {show_shape(t.shape)}",
                    a.span,
                )
                return ERROR
            if want != t.shape:
                self.defer(
                    "same",
                    (want, t.shape),
                    f"argument '{p.name}' of fn '{fn.name}' must have shape {{0}}, got {{1}}",
                    a.span,
                    a,
                )
        if fn.ret.base in GROUPS:
            return T(fn.ret.base, (), var)
        dtype = {"int": "int", "bool": "bool"}.get(fn.ret.base, "real")
        return T(dtype, self.shape_of(fn.ret.shape), var)


def indexed_text(base: A.Expr) -> str:
    """What an index message names: the array, let or expression as written."""
    text = unparse(base)
    return f"'{text}'" if len(text) <= 40 else f"'{text[:37]}...'"


def _know_base_shape(e: A.Index, shape: Shape) -> None:
    """Keep the base's shape on the node, for binding to check each index against
    (indices.py `check_expr_indices`). A node typed twice with two shapes (never
    seen; a guard) keeps no shape, so that no member is refused by the wrong one."""
    if e.base_shape is not None and e.base_shape[0] != shape:
        shape = None
    object.__setattr__(e, "base_shape", (shape, e.base))


def canonical_size(e: A.Expr) -> str:
    """Canonical text of a size expression, for symbolic shape comparison."""
    if isinstance(e, A.Num):
        return str(e.value)
    if isinstance(e, A.Name):
        return e.id
    if isinstance(e, A.Neg):
        return f"-{canonical_size(e.operand)}"
    if isinstance(e, A.BinOp):
        return f"{canonical_size(e.left)}{e.op}{canonical_size(e.right)}"
    return f"<{type(e).__name__}>"


def _slice_len(lo: Dim | None, hi: Dim | None, dim: Dim) -> Dim:
    lo = 0 if lo is None else lo
    hi = dim if hi is None else hi
    if isinstance(lo, int) and isinstance(hi, int):
        return max(hi - lo, 0)
    if lo == 0:
        return hi
    text = f"{hi}-{lo}" if isinstance(lo, int) or "-" not in str(lo) else f"{hi}-({lo})"
    return Sym(text, ("sub", hi, lo))


def _shape_hint(op: str, a: Shape, b: Shape) -> str | None:
    if op == "*" and len(a) == 2 and len(b) == 1:
        return "for a matrix-vector product use '@'"
    return None
