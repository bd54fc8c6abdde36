"""Generated models: hostile templates (each a known way to break a
compiler: blow-ups, huge sizes, odd constants) and random well-typed-ish
models from a small grammar.

A generator is ``(rnd) -> (model text, data dict | None)``; ``None`` data
means "synthesize data for whatever the model declares".
"""

from __future__ import annotations

import random
from collections.abc import Callable

from tests.fuzz.mutate import HOSTILE_NUMBERS

Gen = Callable[[random.Random], tuple[str, dict | None]]

_HEAD = "model g\n"


def fn_nesting(rnd: random.Random) -> tuple[str, dict | None]:
    """A fn that uses its argument twice, called nested (exponential if inlined naively)."""
    depth = rnd.choice((5, 12, 20, 30, 60, 200))
    body = rnd.choice(("x + x", "x * x - x", "sin(x) + cos(x)", "where(x > 0, x, -x)"))
    call = "v"
    for _ in range(depth):
        call = f"f({call})"
    return _HEAD + f"fn f(x: real) -> real {{ return {body} }}\nvar v: real ~ normal(0, 1)\nlet y = {call}\n" \
        f"data o: real\nfactor obs: o ~ normal(y, 1)\n", {"o": 0.5}


def reduction_nesting(rnd: random.Random) -> tuple[str, dict | None]:
    """Reductions nested many levels (padded arrays grow as L^depth)."""
    depth = rnd.choice((3, 8, 16, 26, 40))
    n = rnd.choice((2, 3))
    e = "v"
    for k in range(depth):
        e = f"sum[i{k} in 0:{n}]({e})"
    return _HEAD + f"var v: real ~ normal(0, 1)\ndata o: real\nfactor obs: o ~ normal({e}, 1)\n", {"o": 1.0}


def big_sizes(rnd: random.Random) -> tuple[str, dict | None]:
    """Sizes from 1e8 to past int64, as constants or as data."""
    size = rnd.choice(("100000000", "1000000000", "10000000000", "1000000000000", "9223372036854775807",
                       "9223372036854775806", "4611686018427387904", "2^40", "2^62", "100000 * 100000"))
    how = rnd.randrange(4)
    if how == 0:
        return _HEAD + f"var w: real[{size}] ~ normal(0, 1)\n", {}
    if how == 1:
        return _HEAD + f"data T: int = {size}\nvar w[T]: real ~ normal(0, 1)\n", {}
    if how == 2:
        return _HEAD + "data T: int\nvar x[T]: real\nfactor f[t in 1:T]: x[t] ~ normal(x[t-1], 1)\n", \
            {"T": int(eval(size.replace("^", "**")))}  # noqa: S307 - our own literals
    return _HEAD + f"data T: int\ndata y[T]: real\nvar m: real ~ normal(0, 1)\nfactor f[t in 0:{size}]: " \
        "y[t] ~ normal(m, 1)\n", {"T": 3, "y": [0.0, 1.0, 2.0]}


def many_dims(rnd: random.Random) -> tuple[str, dict | None]:
    """Arrays with more dimensions than NumPy allows (64)."""
    n = rnd.choice((10, 32, 63, 64, 65, 70, 200))
    dims = ", ".join(["1"] * n)
    where = rnd.randrange(3)
    if where == 0:
        return _HEAD + f"var w: real[{dims}] ~ normal(0, 1)\n", {}
    if where == 1:
        return _HEAD + f"var w[{dims}]: real ~ normal(0, 1)\n", {}
    return _HEAD + f"data d[{dims}]: real\nvar m: real ~ normal(0, 1)\n", None


def empty(rnd: random.Random) -> tuple[str, dict | None]:
    """Zero-size vars, no vars, a factor that touches no var."""
    return rnd.choice((
        (_HEAD, {}),
        (_HEAD + "data y: real\n", {"y": 1.0}),
        (_HEAD + "var w: real[0] ~ normal(0, 1)\n", {}),
        (_HEAD + "data N: int\nvar w[N]: real ~ normal(0, 1)\n", {"N": 0}),
        (_HEAD + "data y: real\nfactor f: y ~ normal(0, 1)\n", {"y": 1.0}),
        (_HEAD + "var m: real ~ normal(0, 1)\ndata y: real\nfactor f: y ~ normal(0, 1)\n", {"y": 1.0}),
        (_HEAD + "data N: int\ndata y[N]: real\nvar m: real ~ normal(0,1)\nfactor f[i in 0:N]: y[i] ~ normal(m, 1)\n",
         {"N": 0, "y": []}),
        (_HEAD + "var m: real ~ normal(0, 1)\nfactor f: potential 1.5\n", {}),
        (_HEAD + "var w: real[3, 0] ~ normal(0, 1)\nvar m: real ~ normal(0, 1)\n", {}),
    ))


def odd_constants(rnd: random.Random) -> tuple[str, dict | None]:
    """Constants that are complex, infinite, denormal or enormous, where the checker folds them."""
    c = rnd.choice(HOSTILE_NUMBERS)
    return rnd.choice((
        (_HEAD + f"var m: real ~ normal(0, {c})\n", {}),
        (_HEAD + f"var m: real(lower={c}) ~ normal(0, 1)\n", {}),
        (_HEAD + f"data d: real = {c}\nvar m: real ~ normal(d, 1)\n", {}),
        (_HEAD + f"data d: int = {c}\nvar m: real ~ normal(d, 1)\n", {}),
        (_HEAD + f"var m: real ~ normal(0, 1)\ndata y: real\nfactor f: y ~ huber(m, {c})\n", {"y": 0.0}),
        (_HEAD + f"var m[3]: real ~ normal(0, 1)\nlet z = m[{c}]\n", {}),
        (_HEAD + f"data x[3]: real\nvar m: real ~ normal(0, 1)\nlet z = x[{c}] + m\n", {"x": [1.0, 2.0, 3.0]}),
        (_HEAD + "data k: int\nvar m: real ~ normal(inv_logit(k), 1)\n", {"k": 2}),
        (_HEAD + f"var m: real ~ normal(0, 1)\nlet z = m + {c}\ndata y: real\nfactor f: y ~ normal(z, 1)\n",
         {"y": 0.0}),
    ))


def long_chain(rnd: random.Random) -> tuple[str, dict | None]:
    """A generated sum of thousands of terms, and deep brackets."""
    n = rnd.choice((100, 1000, 3000, 10_000))
    if rnd.random() < 0.5:
        e = " + ".join(["m"] * n)
    else:
        e = "(" * n + "m" + ")" * n
    return _HEAD + f"var m: real ~ normal(0, 1)\ndata y: real\nfactor f: y ~ normal({e}, 1)\n", {"y": 0.0}


def index_nesting(rnd: random.Random) -> tuple[str, dict | None]:
    """Nested data indices, calls, where()s and slices: each a pass that must visit a node once
    (lowering expanded an index's args twice, 3^depth for x[k[k[...]]])."""
    depth = rnd.choice((5, 12, 20, 40, 100))
    k = rnd.randrange(4)
    if k == 0:
        e = "x[" + "k[" * depth + "0" + "]" * depth + "]"
    elif k == 1:
        e = "tanh(" * depth + "x[0]" + ")" * depth
    elif k == 2:  # a let per level, used twice by the next: shared, or 2^depth
        lets = "".join(f"let w{i + 1} = where(w{i} > 0, w{i}, 1) + w{i}[k[0]]\n".replace("w0[k[0]]", "x[k[0]]")
                       for i in range(depth))
        return _HEAD + f"data N: int\ndata k[N]: int\nvar x: real[N] ~ normal(0, 1)\ndata y: real\nlet w0 = x\n" \
            f"{lets}factor f: y ~ normal(w{depth}[0], 1)\n", {"N": 2, "k": [0, 1], "y": 0.5}
    else:
        e = "sum(x[" + "k[" * depth + "0" + "]" * depth + ":N])"
    return _HEAD + f"data N: int\ndata k[N]: int\nvar x: real[N] ~ normal(0, 1)\ndata y: real\n" \
        f"factor f: y ~ normal({e}, 1)\n", {"N": 2, "k": [0, 1], "y": 0.5}


# ------------------------------------------------------------------ random models
_UNARY = ("exp", "log", "sqrt", "tanh", "sigmoid", "inv_logit", "softplus", "abs", "square", "log1p", "relu")
_DISTS = ("normal({a}, {p})", "student_t(3, {a}, {p})", "laplace({a}, {p})", "cauchy({a}, {p})",
          "huber({a}, {p})", "lognormal({a}, {p})")


def _expr(rnd: random.Random, atoms: list[str], depth: int) -> str:
    if depth <= 0 or rnd.random() < 0.3:
        return rnd.choice(atoms + ["1", "0.5", "2", "pi"])
    k = rnd.randrange(5)
    if k == 0:
        return f"{rnd.choice(_UNARY)}({_expr(rnd, atoms, depth - 1)})"
    if k == 1:
        return f"({_expr(rnd, atoms, depth - 1)} {rnd.choice('+-*/')} {_expr(rnd, atoms, depth - 1)})"
    if k == 2:
        return f"-{_expr(rnd, atoms, depth - 1)}"
    if k == 3:
        return f"where({_expr(rnd, atoms, depth - 1)} > 0, {_expr(rnd, atoms, depth - 1)}, 1)"
    return f"{_expr(rnd, atoms, depth - 1)}^2"


def random_model(rnd: random.Random) -> tuple[str, dict | None]:
    """A few sizes, vars and lets, and factors over ranges of them."""
    n = rnd.choice((0, 1, 2, 3, 5))
    lines = [_HEAD.strip(), "data N: int", "data y[N]: real"]
    atoms_m = ["y[i]"]
    for k in range(rnd.randrange(1, 4)):
        arr = rnd.random() < 0.5
        lines.append(f"var v{k}{'[N]' if arr else ''}: real ~ normal(0, {rnd.choice(('1', '2', '0.1'))})")
        atoms_m.append(f"v{k}[i]" if arr else f"v{k}")
    for k in range(rnd.randrange(0, 3)):
        lines.append(f"let l{k} = {_expr(rnd, [a for a in atoms_m if '[' not in a] or ['1'], 2)}")
    body = _expr(rnd, atoms_m, rnd.randrange(1, 4))
    dist = rnd.choice(_DISTS).format(a=body, p=rnd.choice(("1", "0.5", "exp(v0)" if "v0" in atoms_m else "1")))
    lines.append(f"factor f[i in 0:N]: y[i] ~ {dist}")
    return "\n".join(lines) + "\n", {"N": n, "y": [float(rnd.gauss(0, 1)) for _ in range(n)]}


GENERATORS: tuple[Gen, ...] = (
    fn_nesting, reduction_nesting, big_sizes, many_dims, empty, odd_constants, long_chain, index_nesting,
    random_model, random_model, random_model,
)
