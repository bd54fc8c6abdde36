"""Shape rules of Stan's vector and matrix built-ins (the JAX meaning is in
``stanlib_jax``), so a Stan user's ``quad_form(Sigma, x)`` or
``append_row(a, b)`` type-checks with a located message when the shapes
are wrong. A mixin of ``linalg.LinalgTyping``; ``rank`` serves the
lowering's index push-down like ``linalg.rank``.

fglang has no row vectors: a 1-D array is Stan's (column) vector, and where
Stan takes a row vector beside a matrix (``append_row(M, r)``,
``mdivide_right(b, A)``) a 1-D array plays it.
"""

from __future__ import annotations

from fglang.compiler import ast as A
from fglang.compiler.types import ERROR, Dim, Shape, ShapeError, Sym, T, dims_differ, show_shape

ARITY: dict[str, tuple[int, ...]] = {
    "log_mix": (2, 3), "cumulative_sum": (1,), "squared_distance": (2,), "distance": (2,), "log_softmax": (1,),
    "quad_form": (2,), "diag_pre_multiply": (2,), "diag_post_multiply": (2,), "append_row": (2,),
    "append_col": (2,), "to_vector": (1,), "reverse": (1,), "tcrossprod": (1,), "crossprod": (1,),
    "mdivide_right": (2,),
}
STAN_LINALG = frozenset(ARITY)


def rank(f: str, ranks: list[int]) -> int:
    """The rank of ``f``'s result from its arguments' ranks."""
    if f == "log_mix":
        return max(ranks) if len(ranks) == 3 else 0
    if f in ("cumulative_sum", "log_softmax", "reverse", "mdivide_right"):
        return ranks[0]
    if f in ("squared_distance", "distance"):
        return 0
    if f == "quad_form":
        return 0 if ranks[1] == 1 else 2
    if f == "append_row":
        return max(ranks[0], ranks[1], 1)
    if f == "to_vector":
        return 1
    return 2  # diag_pre/post_multiply, append_col, (t)crossprod


def _dim_expr(d: Dim, span: A.Span) -> A.Expr | None:
    if isinstance(d, int):
        return A.Num(span, d, True)
    return d.value if isinstance(d.value, A.Expr) else None


def combined(op: str, a: Dim, b: Dim, span: A.Span) -> Dim:
    """``a + b`` or ``a * b`` of two dims; symbolic when either is, with the size
    expression binding evaluates where both dims have one."""
    if isinstance(a, int) and isinstance(b, int):
        return a + b if op == "+" else a * b
    x, y = _dim_expr(a, span), _dim_expr(b, span)
    value = A.BinOp(span, op, x, y) if x is not None and y is not None else None
    return Sym(f"{a} {op} {b}" if op == "+" else f"({a}) * ({b})", value)


class StanLinalgTyping:
    """Needs from its host: ``err``, ``defer``, ``broadcast`` (``check.Checker``)."""

    def stan_linalg_call(self, e: A.Call, ts: list[T], var: bool) -> T:
        f = e.func
        shapes = [t.shape for t in ts]
        ranks = [len(s) for s in shapes]
        try:
            if f == "log_mix":
                return self._log_mix(e, ts, var)
            if f in ("cumulative_sum", "reverse"):
                if ranks[0] < 1:
                    return self._want(e, 0, "a vector or an array", shapes[0])
                if f == "cumulative_sum" and ranks[0] != 1:
                    return self._want(e, 0, "a vector", shapes[0])
                return T("real", shapes[0], var)
            if f == "log_softmax":
                if ranks[0] < 1:
                    return self._want(e, 0, "a vector", shapes[0])
                return T("real", shapes[0], var)
            if f in ("squared_distance", "distance"):
                if ranks != [1, 1]:
                    self.err(f"{f} needs two vectors, got {show_shape(shapes[0])} and {show_shape(shapes[1])}", e.span)
                    return ERROR
                self._same(f, shapes[0][0], shapes[1][0], e, "{0} and {1} elements")
                return T("real", (), var)
            if f == "to_vector":
                if ranks[0] not in (1, 2):
                    return self._want(e, 0, "a vector or a matrix", shapes[0])
                n = shapes[0][0] if ranks[0] == 1 else combined("*", shapes[0][0], shapes[0][1], e.span)
                return T("real", (n,), var)
            if f in ("tcrossprod", "crossprod"):
                if ranks[0] != 2:
                    return self._want(e, 0, "a matrix", shapes[0])
                n = shapes[0][0] if f == "tcrossprod" else shapes[0][1]
                return T("real", (n, n), var)
            if f == "quad_form":
                a = self._square(f, e.args[0], ts[0])
                if a is None:
                    return ERROR
                if ranks[1] not in (1, 2):
                    return self._want(e, 1, "a vector or a matrix", shapes[1])
                self._same(f, a[0], shapes[1][0], e, "A is {0} x {0} but x has {1} rows")
                return T("real", () if ranks[1] == 1 else (shapes[1][1], shapes[1][1]), var)
            if f == "diag_pre_multiply" or f == "diag_post_multiply":
                v, m = (0, 1) if f == "diag_pre_multiply" else (1, 0)
                if ranks[v] != 1:
                    return self._want(e, v, "a vector", shapes[v])
                if ranks[m] != 2:
                    return self._want(e, m, "a matrix", shapes[m])
                side = shapes[m][0] if f == "diag_pre_multiply" else shapes[m][1]
                what = "rows" if f == "diag_pre_multiply" else "columns"
                self._same(f, shapes[v][0], side, e, f"the vector has {{0}} elements but the matrix {{1}} {what}")
                return T("real", shapes[m], var)
            if f == "append_row":
                return self._append_row(e, shapes, var)
            if f == "append_col":
                return self._append_col(e, shapes, var)
            # mdivide_right(B, A): B A^-1
            a = self._square(f, e.args[1], ts[1])
            if a is None:
                return ERROR
            if ranks[0] not in (1, 2):
                return self._want(e, 0, "a vector (a row) or a matrix", shapes[0])
            self._same(f, shapes[0][-1], a[0], e, "B has {0} columns but A is {1} x {1}")
            return T("real", shapes[0], var)
        except ShapeError as err:
            self.err(f"shape mismatch in '{f}': {err}", e.span)
            return ERROR

    def _want(self, e: A.Call, i: int, what: str, shape: Shape) -> T:
        self.err(f"'{e.func}' needs {what}, got {show_shape(shape)}", e.args[i].span)
        return ERROR

    def _same(self, f: str, x: Dim, y: Dim, e: A.Call, how: str) -> None:
        """Two dims that must agree: an error now when both are known, else a check at binding."""
        if dims_differ(x, y):
            raise ShapeError(how.format(x, y))
        if x != y:
            self.defer("same_dim", (x, y), f"shape mismatch in '{f}': {how}", e.span, e)

    def _log_mix(self, e: A.Call, ts: list[T], var: bool) -> T:
        shapes = [t.shape for t in ts]
        if len(ts) == 3:  # log_mix(theta, lp1, lp2): elementwise
            mismatch = "shape mismatch in 'log_mix': {err}"
            shape = self.broadcast(self.broadcast(shapes[0], shapes[1], mismatch, e), shapes[2], mismatch, e)
            return T("real", shape, var)
        if len(shapes[0]) != 1:
            return self._want(e, 0, "a vector of mixing weights (log_mix(theta, lp) with theta [K])", shapes[0])
        if len(shapes[1]) not in (1, 2):
            return self._want(e, 1, "log densities [K] or [N, K]", shapes[1])
        self._same("log_mix", shapes[0][0], shapes[1][-1], e, "theta has {0} weights but lp has {1} components")
        return T("real", (), var)

    def _append_row(self, e: A.Call, shapes: list[Shape], var: bool) -> T:
        r = [len(s) for s in shapes]
        if any(k > 2 for k in r) or (2 in r and 0 in r):
            self.err(f"append_row needs scalars, vectors or matrices of one width, got {show_shape(shapes[0])} "
                     f"and {show_shape(shapes[1])}", e.span)
            return ERROR
        if 2 not in r:  # scalars and vectors: one longer vector
            n = [1 if k == 0 else s[0] for k, s in zip(r, shapes)]
            return T("real", (combined("+", n[0], n[1], e.span),), var)
        rows = [1 if k == 1 else s[0] for k, s in zip(r, shapes)]
        cols = [s[-1] for s in shapes]
        self._same("append_row", cols[0], cols[1], e, "{0} and {1} columns")
        return T("real", (combined("+", rows[0], rows[1], e.span), cols[0]), var)

    def _append_col(self, e: A.Call, shapes: list[Shape], var: bool) -> T:
        r = [len(s) for s in shapes]
        if any(k not in (1, 2) for k in r):
            self.err(f"append_col needs vectors or matrices, got {show_shape(shapes[0])} and "
                     f"{show_shape(shapes[1])}", e.span)
            return ERROR
        cols = [1 if k == 1 else s[1] for k, s in zip(r, shapes)]
        self._same("append_col", shapes[0][0], shapes[1][0], e, "{0} and {1} rows")
        return T("real", (shapes[0][0], combined("+", cols[0], cols[1], e.span)), var)
