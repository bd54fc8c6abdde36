"""Linear-algebra built-ins: their shape rules (the JAX meaning is in ``lower_jax``).

Why built-ins rather than user fns: a Cholesky factor, a solve or a log
determinant cannot be written with elementwise arithmetic and reductions
(and a GP kernel written as ``[x] - transpose([x])`` broadcasts by hand).
Each rule checks its operands' ranks and square dims here, and leaves the
comparisons only the data's sizes decide to binding (``defer``), like
``@``. A mixin of ``Checker``; ``rank`` serves the lowering's index push-down.

| built-in | shapes | meaning |
|---|---|---|
| ``eye(n)`` | int size -> [n, n] | identity |
| ``rep(x, n)`` | x [S...], int size -> [n, S...] | ``n`` copies of ``x`` (Stan's ``rep_vector``, ``rep_array``) |
| ``diag(v)`` | [n] -> [n, n] | diagonal matrix |
| ``diagonal(A)`` | [n, n] -> [n] | its diagonal |
| ``cholesky(A)`` | [n, n] -> [n, n] | lower Cholesky factor of an SPD matrix |
| ``solve(A, b)`` | [n, n], [n] or [n, m] -> b's shape | ``A^-1 b`` (Stan's ``mdivide_left``) |
| ``log_determinant(A)`` | [n, n] -> scalar | ``log |det A|`` |
| ``gp_exp_quad_cov(x, alpha, rho)`` | [N] or [N, D] -> [N, N] | ``alpha^2 exp(-|x_i - x_j|^2 / (2 rho^2))`` |
| ``gp_exp_quad_cov(x1, x2, alpha, rho)`` | -> [N1, N2] | the cross-covariance |
"""

from __future__ import annotations

from fglang.compiler import ast as A
from fglang.compiler.builtins import LINALG
from fglang.compiler.linalg_stan import ARITY as STAN_ARITY
from fglang.compiler.linalg_stan import STAN_LINALG, StanLinalgTyping
from fglang.compiler.linalg_stan import rank as stan_rank
from fglang.compiler.types import ERROR, Shape, T, dims_differ, show_shape

REP = frozenset({"rep", "rep_vector", "rep_array"})  # one built-in; Stan's names for it too

assert LINALG == {"eye", "diag", "diagonal", "cholesky", "solve", "log_determinant", "gp_exp_quad_cov"} | REP | \
    STAN_LINALG
_ARITY = {"eye": (1,), "diag": (1,), "diagonal": (1,), "cholesky": (1,), "solve": (2,), "log_determinant": (1,),
          "gp_exp_quad_cov": (3, 4)} | dict.fromkeys(REP, (2,)) | STAN_ARITY


def rank(f: str, ranks: list[int]) -> int:
    """The rank of ``f``'s result from its arguments' ranks (``ranks.Ranks``)."""
    if f in STAN_LINALG:
        return stan_rank(f, ranks)
    if f in ("eye", "diag", "cholesky", "gp_exp_quad_cov"):
        return 2
    if f == "diagonal":
        return 1
    if f in REP:
        return 1 + ranks[0]
    if f == "log_determinant":
        return 0
    return ranks[1]  # solve: b's


class LinalgTyping(StanLinalgTyping):
    """Needs from its host: ``err``, ``defer``, ``dim``, ``sized`` (``check.Checker``)."""

    def linalg_call(self, e: A.Call, ts: list[T]) -> T:
        f = e.func
        if len(ts) not in _ARITY[f]:
            want = " or ".join(str(n) for n in _ARITY[f])
            self.err(f"'{f}' takes {want} argument{'s' * (_ARITY[f] != (1,))}, got {len(ts)}", e.span)
            return ERROR
        var = any(t.var for t in ts)
        if f in STAN_LINALG:
            return self.stan_linalg_call(e, ts, var)
        if f == "eye":
            n = e.args[0]
            if ts[0].dtype != "int" or ts[0].shape or ts[0].var or not self.sized(n):
                self.err("eye(n) needs an int size: int data or a constant", n.span, "e.g. eye(N) with data N: int")
                return ERROR
            d = self.dim(n)
            return T("real", (d, d), False)
        if f in REP:
            n = e.args[1]
            if ts[1].dtype != "int" or ts[1].shape or ts[1].var or not self.sized(n):
                self.err(f"{f}(x, n) needs an int count n: int data or a constant", n.span,
                         f"e.g. {f}(0, N) with data N: int")
                return ERROR
            return T(ts[0].dtype, (self.dim(n), *ts[0].shape), ts[0].var)
        if f == "diag":
            if len(ts[0].shape) != 1:
                self.err(f"diag(v) needs a vector, got {show_shape(ts[0].shape)}", e.args[0].span,
                         "diagonal(A) is the diagonal of a matrix")
                return ERROR
            n = ts[0].shape[0]
            return T("real", (n, n), var)
        if f == "gp_exp_quad_cov":
            return self._kernel(e, ts, var)
        square = self._square(f, e.args[0], ts[0])
        if square is None:
            return ERROR
        if f == "diagonal":
            return T("real", square[:1], var)
        if f == "cholesky":
            return T("real", square, var)
        if f == "log_determinant":
            return T("real", (), var)
        # solve(A, b)
        b = ts[1]
        if len(b.shape) not in (1, 2):
            self.err(f"solve(A, b) needs a vector or matrix b, got {show_shape(b.shape)}", e.args[1].span)
            return ERROR
        if dims_differ(square[0], b.shape[0]):
            self.err(f"solve(A, b): A is {show_shape(square)} but b has {b.shape[0]} rows", e.span)
            return ERROR
        if square[0] != b.shape[0]:
            self.defer("same_dim", (square[0], b.shape[0]), "solve(A, b): A has {0} rows but b has {1}", e.span, e)
        return T("real", b.shape, var)

    def _square(self, f: str, a: A.Expr, t: T) -> Shape | None:
        if len(t.shape) != 2:
            self.err(f"'{f}' needs a square matrix, got {show_shape(t.shape)}", a.span)
            return None
        n, m = t.shape
        if dims_differ(n, m):
            self.err(f"'{f}' needs a square matrix, got {show_shape(t.shape)}", a.span)
            return None
        if n != m:
            self.defer("same_dim", (n, m), f"'{f}' needs a square matrix, got {{0}} x {{1}}", a.span, a)
        return (n, n)

    def _kernel(self, e: A.Call, ts: list[T], var: bool) -> T:
        points = ts[:-2]
        for a, t in zip(e.args, points):
            if len(t.shape) not in (1, 2):
                self.err(f"gp_exp_quad_cov needs points [N] or [N, D], got {show_shape(t.shape)}", a.span)
                return ERROR
        if len(points) == 2:
            p, q = points
            if len(p.shape) != len(q.shape) or (len(p.shape) == 2 and dims_differ(p.shape[1], q.shape[1])):
                self.err(f"gp_exp_quad_cov's points differ in dimension: {show_shape(p.shape)} and "
                         f"{show_shape(q.shape)}", e.span)
                return ERROR
        for name, a, t in zip(("alpha", "rho"), e.args[-2:], ts[-2:]):
            if t.shape:
                self.err(f"gp_exp_quad_cov's {name} must be a scalar, got {show_shape(t.shape)}", a.span)
                return ERROR
        return T("real", (points[0].shape[0], points[-1].shape[0]), var)
