"""A chain of lets that each index the one before lowers to a program linear in its length.

Fuzz finding let_chain_where_vi_oom: ``let w{i+1} = where(w{i} > 0, w{i}, 1) + w{i}[k[0]]``
a hundred times over ``var x: real[2]``; a vi fit aborted with std::bad_alloc (23.6 GB in 600 s
without a limit). The lowering pushed each use's index ``k[0]`` through the whole chain again,
because it cached the push on the index's identity and every link writes its own ``k[0]``:
n^2 nodes, and a log density of 16k jaxpr equations at n = 100. Now the push is cached on the
index's structure (``dag.StructuralKeys``): the lowered DAG and the jaxpr grow linearly.

Oracles: equation counts (structure, not timing) and the exact linear-Gaussian posterior of a
chain whose ``where`` keeps every value (``w > -1000`` always holds), so the chain is linear in x:
``w_n[0] = x[0]`` and ``w_n[1] = 2^-n x[1] + (1 - 2^-n) x[0]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fglang
from fglang.compiler.dag import StructuralKeys, distinct_nodes
from fglang.compiler.parse import parse

Y = [0.7, -0.4]


def where_chain(n: int, keep: str = "0", other: str = "1", scale: str = "") -> str:
    """The fuzz case's chain of ``n`` lets (``keep``/``other``: the where's threshold and else value)."""
    lines = ["model chain", "data N: int", "data k[N]: int", "var x: real[N] ~ normal(0, 1)", "data y[N]: real",
             "let w0 = x"]
    lines += [f"let w{i + 1} = {scale}where(w{i} > {keep}, w{i}, {other}) + {scale}w{i}[k[0]]" for i in range(n)]
    lines += [f"factor f0: y[0] ~ normal(w{n}[0], 1)", f"factor f1: y[1] ~ normal(w{n}[1], 1)"]
    return "\n".join(lines) + "\n"


def linear_chain(n: int) -> str:
    """Every where keeps its value and both terms are halved: linear in x (see the module docstring)."""
    return where_chain(n, keep="-1000", other="1", scale="0.5 * ")


DATA = {"N": 2, "k": [0, 1], "y": Y}


def lowered_nodes(n: int) -> int:
    ir = fglang.compile(where_chain(n)).ir
    roots = [e for f in ir.families.values() for _, e in f.args] + [d.expr for d in ir.derived.values()]
    return len(distinct_nodes(roots))


def log_density_equations(n: int) -> int:
    from numpyro.infer.util import log_density

    model, d = fglang.compile(where_chain(n)).numpyro_model(DATA)
    jaxpr = jax.make_jaxpr(lambda x: log_density(model, (d,), {}, {"x": x})[0])(jnp.zeros(2))
    return len(jaxpr.jaxpr.eqns)


def test_lowered_chain_is_linear_in_its_length():
    a, b, c = (lowered_nodes(n) for n in (10, 20, 40))
    # linear: each doubling adds the same number of nodes again (now 222, 432, 852; before: 636, 2161, 7911)
    assert (c - b) <= 2.2 * (b - a), (a, b, c)
    assert c < 25 * 40, c  # about 20 per link: the lets' chain, and the factors' pushed by 0, 1 and k[0]


def test_log_density_jaxpr_is_linear_in_the_chain_length():
    a, b, c = (log_density_equations(n) for n in (10, 20, 40))
    assert (c - b) <= 2.2 * (b - a), (a, b, c)  # now 182, 282, 482 equations; before: 317, 852, 2822
    assert c < 15 * 40, c


def test_structural_keys_ignore_spans_and_share_nodes():
    e1 = parse("model a\nlet u = k[0] + x\n", "a.fg").decls[0].expr
    e2 = parse("model b\n\n   let v =   k[0] + x\n", "b.fg").decls[0].expr
    e3 = parse("model c\nlet u = k[1] + x\n", "c.fg").decls[0].expr
    keys = StructuralKeys()
    assert keys.of(e1) == keys.of(e2) != keys.of(e3)
    assert keys.of((e1.left,)) == keys.of((e2.left,)) != keys.of((e3.left,))


def exact_posterior(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of x: prior N(0, I), y ~ N(A x, I) with A the chain's linear map."""
    h = 0.5 ** n
    a = np.array([[1.0, 0.0], [1.0 - h, h]])
    cov = np.linalg.inv(np.eye(2) + a.T @ a)
    return cov @ a.T @ np.asarray(Y), cov


def test_linear_chain_map_equals_the_closed_form():
    n = 12
    mean, cov = exact_posterior(n)
    post = fglang.compile(linear_chain(n)).fit(DATA, backend="map")
    np.testing.assert_allclose(post.mean("x"), mean, atol=1e-5)
    np.testing.assert_allclose(post.sd("x"), np.sqrt(np.diag(cov)), rtol=1e-3)
    # the last let's draws are the chain's value of x's: w_n[0] = x[0]
    np.testing.assert_allclose(post.mean(f"w{n}")[0], mean[0], atol=1e-5)


@pytest.mark.heavy  # 15 CPU-s (map), 28 (vi): mostly XLA compiling a 100-link chain
@pytest.mark.parametrize("backend", ["map", "vi"])
def test_hundred_link_chain_fits_to_the_closed_form(backend):
    n = 100
    mean, cov = exact_posterior(n)
    opts = {"steps": 2000, "draws": 2000} if backend == "vi" else {}
    post = fglang.compile(linear_chain(n)).fit(DATA, backend=backend, **opts)
    tol = 1e-5 if backend == "map" else 0.08
    np.testing.assert_allclose(post.mean("x"), mean, atol=tol)
    np.testing.assert_allclose(post.sd("x"), np.sqrt(np.diag(cov)), atol=tol)


def indexed_chain(n: int) -> str:
    """Each link indexes the one before with an index of its own: n^2 nodes if every index were pushed."""
    lines = ["model chain", f"data k[{n + 2}]: int", f"var x: real[{n + 2}] ~ normal(0, 1)", "data y: real",
             "let w0 = x"]
    lines += [f"let w{i + 1} = where(w{i} > 0, w{i}, 1) + w{i}[k[{i}]]" for i in range(n)]
    lines.append(f"factor f: y ~ normal(w{n}[0], 1)")
    return "\n".join(lines) + "\n"


def test_index_push_budget_bounds_the_lowering(monkeypatch):
    import fglang.compiler.lower as lower

    def nodes(n: int) -> int:
        ir = fglang.compile(indexed_chain(n)).ir
        return len(distinct_nodes([e for f in ir.families.values() for _, e in f.args]
                                  + [d.expr for d in ir.derived.values()]))

    monkeypatch.setattr(lower, "PUSH_BUDGET", 500)
    a, b = nodes(60), nodes(120)
    assert b - a < 20 * 60, (a, b)  # past the budget: linear (unbounded: 4x per doubling)


def test_index_past_the_push_budget_has_the_same_value(monkeypatch):
    import fglang.compiler.lower as lower

    n = 12
    rng = np.random.default_rng(3)
    data = {"k": rng.integers(0, n + 2, n + 2).tolist(), "y": 0.3}
    values = {"x": rng.normal(size=n + 2)}
    pushed = fglang.compile(indexed_chain(n)).log_density(values, data)
    monkeypatch.setattr(lower, "PUSH_BUDGET", 20)
    whole = fglang.compile(indexed_chain(n)).log_density(values, data)
    assert np.isfinite(pushed)
    np.testing.assert_allclose(whole, pushed, rtol=1e-12)


def test_lets_values_compile_to_a_program_linear_in_the_chain():
    """Every let is an output of the draws program (a deterministic site): its index into the
    let before reads that let's value. Pushed, it made a scalar copy of the chain that no output
    held, and XLA fused a copy of it into every output: n^2 operations (1786, 7209 HLO lines at
    n = 20, 40 before; now about 17 per link)."""
    from numpyro.handlers import substitute, trace

    def lines(n: int) -> int:
        model, d = fglang.compile(where_chain(n)).numpyro_model(DATA)

        def lets(x):
            tr = trace(substitute(model, {"x": x})).get_trace(d)
            return {k: s["value"] for k, s in tr.items() if s["type"] == "deterministic"}

        return jax.jit(lets).lower(jnp.zeros(2)).compile().as_text().count("\n")

    a, b = lines(10), lines(20)
    assert b - a < 2.2 * a and b < 60 * 20, (a, b)
