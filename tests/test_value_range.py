"""value_range (fglang/compiler/value_range.py) is an enclosure: for random
expressions over names with known intervals, every value the expression
takes at points drawn inside those intervals lies in the interval it
computes (the oracle is NumPy evaluating the same expression)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fglang.compiler import ast as A
from fglang.compiler.types import Domain
from fglang.compiler.value_range import EVERYTHING, domain_range, value_range

NAMES = {"p": (0.0, math.inf), "u": (0.0, 1.0), "r": (-math.inf, math.inf), "b": (-3.0, 2.0), "c": (0.5, 4.0)}
FUNCS = {"exp": np.exp, "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "softplus": None,
         "abs": np.abs, "square": np.square, "sqrt": np.sqrt, "log": np.log, "tanh": np.tanh, "relu": None}


def _sample(lo: float, hi: float, rng, n: int) -> np.ndarray:
    """Points of [lo, hi], endpoints and far tails included."""
    if math.isinf(lo) and math.isinf(hi):
        x = rng.standard_cauchy(n)
    elif math.isinf(hi):
        x = lo + rng.exponential(3.0, n) ** 2
    else:
        x = rng.uniform(lo, hi, n)
    finite = [v for v in (lo, hi) if math.isfinite(v)]
    x[: len(finite)] = finite
    return x


def _random_expr(rng, depth: int) -> A.Expr:
    k = rng.integers(0, 6) if depth > 0 else rng.integers(0, 2)
    if k == 0:
        return A.Name(None, str(rng.choice(list(NAMES))))
    if k == 1:
        return A.Num(None, float(rng.choice([0.0, 0.5, 1.0, 2.0, -1.5])))
    if k == 2:
        return A.Neg(None, _random_expr(rng, depth - 1))
    if k == 3:
        f = str(rng.choice(list(FUNCS)))
        return A.Call(None, f, None, (_random_expr(rng, depth - 1),))
    if k == 4:
        return A.BinOp(None, "^", _random_expr(rng, depth - 1), A.Num(None, float(rng.choice([2.0, 3.0]))))
    op = str(rng.choice(["+", "-", "*", "/"]))
    return A.BinOp(None, op, _random_expr(rng, depth - 1), _random_expr(rng, depth - 1))


def _eval(e: A.Expr, env: dict[str, np.ndarray]) -> np.ndarray:
    if isinstance(e, A.Num):
        return np.full(next(iter(env.values())).shape, e.value)
    if isinstance(e, A.Name):
        return env[e.id]
    if isinstance(e, A.Neg):
        return -_eval(e.operand, env)
    if isinstance(e, A.Call):
        x = _eval(e.args[0], env)
        if e.func == "softplus":
            return np.logaddexp(0.0, x)
        if e.func == "relu":
            return np.maximum(x, 0.0)
        return FUNCS[e.func](x)
    a, b = _eval(e.left, env), _eval(e.right, env)
    return {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "^": np.power}[e.op](a, b)


@pytest.mark.parametrize("seed", range(4))
def test_every_value_lies_in_the_computed_interval(seed):
    rng = np.random.default_rng(seed)
    env = {n: _sample(lo, hi, rng, 400) for n, (lo, hi) in NAMES.items()}
    checked = 0
    for _ in range(300):
        e = _random_expr(rng, 3)
        lo, hi = value_range(e, lambda n: NAMES.get(n, EVERYTHING))
        with np.errstate(all="ignore"):
            v = _eval(e, env)
        v = v[np.isfinite(v)]  # points outside a function's domain (log of a negative) are no values
        if v.size:
            checked += 1
            tol = 1e-9 * (1 + np.abs(v))
            assert np.all(v >= lo - tol) and np.all(v <= hi + tol), (e, lo, hi, v.min(), v.max())
    assert checked > 200


def test_what_it_proves_and_what_it_does_not():
    def r(e):
        return value_range(e, lambda n: NAMES.get(n, EVERYTHING))

    p, u, x = A.Name(None, "p"), A.Name(None, "u"), A.Name(None, "r")
    assert r(A.BinOp(None, "+", p, A.Call(None, "exp", None, (x,))))[0] >= 0
    assert r(A.BinOp(None, "*", p, u)) == (0.0, math.inf)
    assert r(A.BinOp(None, "-", p, u))[0] == -1.0
    assert r(x) == EVERYTHING and r(A.BinOp(None, "/", p, x)) == EVERYTHING
    assert r(A.Reduce(None, "sum", (A.IndexRange("i", A.Num(None, 0), A.Num(None, 3), None),),
                      A.Index(None, p, (A.Name(None, "i"),)))) == (0.0, math.inf)
    assert domain_range(Domain("interval", 0.2, 0.7)) == (0.2, 0.7)
    assert domain_range(Domain("bounded", 0.0, None)) == (0.0, math.inf)
    assert domain_range(Domain("affine")) == EVERYTHING
