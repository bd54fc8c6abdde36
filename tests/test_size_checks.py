"""Shape rules only the data's sizes decide (``fglang.compiler.sizes``).

The checker sees ``a[N] + b[M]`` before any data exist and leaves the rule to
binding; binding must report exactly what checking with the sizes known
would (message, position, hint), and derive the same concrete let shapes.
The expected messages are those of the checker run again with the sizes.
"""

from __future__ import annotations

import pytest

import fglang

H = "model m\ndata N: int\ndata M: int\ndata a[N]: real\ndata b[M]: real\n"
D = {"N": 3, "M": 4, "a": [0.0] * 3, "b": [0.0] * 4}
SIZES = " (with the sizes in <data>)"

CASES = {
    "broadcast": (
        H + "var x: real\nlet p = a + b + x\n",
        [("shape mismatch: shapes [3] and [4] do not broadcast", 7, 9)],
    ),
    "call": (
        H + "var x: real\nlet s = where(a > 0, b, x)\n",
        [("shape mismatch in 'where': shapes [3] and [4] do not broadcast", 7, 9)],
    ),
    "dist_argument": (
        H + "var x: real[N]\nfactor f: x ~ normal(b, 1)\n",
        [("argument of shape [4] does not broadcast with the left side's shape [3]", 7, 22)],
    ),
    "logp": (
        H + "var x: real[N]\nfactor f: potential logp(normal(b, 1), x)\n",
        [("shape mismatch in logp: shapes [3] and [4] do not broadcast", 7, 33)],
    ),
    "vector": (H + "var x: real\nlet v = [a, b]\n", [("vector items must have one shape: [3] and [4]", 7, 13)]),
    "dot": (H + "var x: real\nlet v = dot(a, b) + x\n", [("dot of vectors of lengths 3 and 4", 7, 9)]),
    "fn_argument": (
        H + "fn f(p: real[3]) -> real { return sum(p) }\nvar x: real\nlet v = f(b) + x\n",
        [("argument 'p' of fn 'f' must have shape [3], got [4]", 8, 11)],
    ),
    "index": (H + "var x[N]: real\nlet v = x[N]\n", [("index 3 is out of range for axis 0 of 'x' (size 3)", 7, 11)]),
    "negative_index": (
        H + "var x[N]: real\nlet v = x[N-5]\n",
        [("index -2 is negative (axis 0 of 'x'); indices do not wrap around", 7, 11)],
    ),
    "slice": (H + "var x[N]: real\nlet v = sum(x[0:M])\n", [("slice bound 4 is outside 0:3", 7, 17)]),
    "slice_length": (
        H + "var x[N]: real\nlet s = x[0:N-1] + b[1:M]\n",
        [("shape mismatch: shapes [2] and [3] do not broadcast", 7, 9)],
    ),
    "argument_domain": (
        H + "var x: real\nfactor f: x ~ normal(0, N - 5)\n",
        [("'sd' of normal must be > 0, got -2", 7, 25)],
    ),
    # a let already wrong is reported once, not again where it is used
    "once_per_mistake": (
        H + "var w: real[M]\ndata X[N, N]: real\nlet mu = X @ w\nfactor f: a ~ normal(mu, 1)\nlet z = mu + b\n",
        [("shape mismatch: '@' inner dimensions differ: [3, 3] @ [4]", 8, 10)],
    ),
    "two_declarations": (
        H + "var x: real\nlet p = a + b\nlet q = [a, b]\n",
        [
            ("shape mismatch: shapes [3] and [4] do not broadcast", 7, 9),
            ("vector items must have one shape: [3] and [4]", 8, 13),
        ],
    ),
    # a domain error does not stop the checker: the shape error after it is reported too
    "domain_then_shape": (
        H + "var x: real[N]\nfactor f: x ~ normal(b, N - 5)\n",
        [
            ("argument of shape [4] does not broadcast with the left side's shape [3]", 7, 22),
            ("'sd' of normal must be > 0, got -2", 7, 25),
        ],
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_bind_reports_what_the_sizes_break(name):
    src, want = CASES[name]
    data = {**D, "X": [[0.0] * 3] * 3} if "data X" in src else D
    model = fglang.compile(src, "t.fg")
    with pytest.raises(fglang.FgError) as info:
        model.bind(data)
    got = [(d.message, d.span.line, d.span.col) for d in info.value.diagnostics]
    assert got == [(m + SIZES, line, col) for m, line, col in want]


@pytest.mark.parametrize(
    ("src", "data", "shapes"),
    [
        # N == 1 broadcasts: the let has b's length, not N's
        (H + "var x: real[4]\nlet z = a + x\nlet y = z * 2 + b\n", {**D, "N": 1, "a": [0.0]}, {"z": (4,), "y": (4,)}),
        (H + "var x[N]: real\nlet s = x[1:N]\n", D, {"s": (2,)}),
        (H + "data X[N, M]: real\nvar w: real[M]\nlet mu = X @ w\n", {**D, "X": [[0.0] * 4] * 3}, {"mu": (3,)}),
    ],
)
def test_let_shapes_come_from_the_sizes(src, data, shapes):
    bound = fglang.compile(src, "t.fg").bind(data)
    assert {n: d.shape for n, d in bound.derived.items()} == shapes
