"""A chain of fns each calling the one before twice is sized before it is inlined (issue 16).

Inlining expands every call afresh, so ``f_k(a) = f_{k-1}(a) + f_{k-1}(a)``
did 2^n expansions before the size limit saw the result: n = 16 took 14 s
to be refused, n = 18 over a minute. check_inline_size.py counts the inlined
size from each fn's affine form first. Oracle: the closed form 3 * 2^n - 1
(f0 = a * a + a has 2 nodes and 3 uses of a; each level doubles both and
adds one), and for a chain under the limit, ``limits.measure`` of the
expression really inlined.
"""

from __future__ import annotations

import time

import pytest

import fglang
from fglang.compiler.limits import measure
from fglang.errors import FgError


def chain(n: int, via_let: bool = False) -> str:
    fns = ["fn f0(a: real) -> real { return a * a + a }"]
    for k in range(1, n):
        body = f"let b = f{k - 1}(a)\n  return b + f{k - 1}(a)" if via_let else f"return f{k - 1}(a) + f{k - 1}(a)"
        fns.append(f"fn f{k}(a: real) -> real {{ {body} }}")
    return ("model m\n" + "\n".join(fns) + f"\nvar x: real ~ normal(0, 1)\nlet z = f{n - 1}(x)\n"
            "factor f: 0.5 ~ normal(z, 1)\n")


@pytest.mark.parametrize("via_let", [False, True])
def test_a_chain_under_the_limit_is_counted_as_measure_counts_it(via_let):
    model = fglang.compile(chain(10, via_let), "m.fg")
    assert measure(model.checked.lets["z"].expr, {})[0] == 3 * 2**10 - 1
    checker_size = _checker_size(chain(10, via_let))
    assert checker_size == 3 * 2**10 - 1


@pytest.mark.parametrize("n", [16, 18, 40, 200])
def test_a_long_chain_is_refused_at_once_with_its_size(n):
    t0 = time.perf_counter()
    with pytest.raises(FgError) as e:
        fglang.compile(chain(n), "m.fg")
    seconds = time.perf_counter() - t0
    text = str(e.value)
    size = 3 * 2**n - 1
    shown = f"{size:,}" if size < 1e15 else f"{float(size):.3g}"
    assert text.startswith(f"m.fg:{n + 3}:9: this expression is too large: with its fn calls and lets inlined it "
                           f"has {shown} nodes (at most 100,000)"), text
    assert seconds < 5, seconds  # on main: 14 s at n = 16, over a minute at n = 18


def _checker_size(src: str) -> float:
    """The checker's own pre-inlining count of the let ``z`` (the fns declared first)."""
    from fglang.compiler.check import Checker, expand
    from fglang.errors import DiagnosticSink

    decls, _, sources, _ = expand(src, "m.fg", None, {}, DiagnosticSink())
    ck = Checker(sources)
    for d in decls:
        if getattr(d, "name", None) == "z":
            return ck.inlined_size(d.expr)
        ck.decl(d)
    raise AssertionError("no let z")
