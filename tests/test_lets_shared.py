"""Lets in linear time and lets of data only (issue 20).

A let is computed once and shared by its uses (compiler/dag.py): a chain of
lets that each use the previous one twice checks and lowers in time linear in
its length, and fits to the same numbers as the same model with every let
written out by hand (the tree the lowering used to build). A let that reads
no var is computed once at bind, kept out of the draws and of the default
summary, and shown or written on request.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from typer.testing import CliRunner

import fglang
from fglang.cli import app
from fglang.compiler.check import check_source
from fglang.compiler.expr import walk
from fglang.runtime.posterior import load_posterior

runner = CliRunner()


def chain(n: int) -> str:
    """``n`` lets, each using the previous one twice (each equals the first)."""
    lines = ["model chain", "data N: int", "data y[N]: real", "var mu: real ~ normal(0, 1)", "let l0 = mu * 1"]
    lines += [f"let l{k} = 0.5 * l{k - 1} + 0.5 * l{k - 1}" for k in range(1, n + 1)]
    lines.append(f"factor obs[i in 0:N]: y[i] ~ normal(l{n}, 1)")
    return "\n".join(lines) + "\n"


def distinct_nodes(fam) -> int:
    return sum(1 for e in [fam.lhs] + [e for _, e in fam.args] for _ in walk(e))


def test_twenty_chained_lets_check_and_lower_fast():
    check_source(chain(2))  # the parser is built once per process
    t0 = time.perf_counter()
    m = fglang.compile(chain(20), "chain.fg")
    assert time.perf_counter() - t0 < 2.0  # was a 'too large' refusal (2^20 nodes) after seconds
    assert set(m.ir.derived) == {f"l{k}" for k in range(21)}


def test_the_lowered_graph_grows_linearly_along_the_chain():
    sizes = [distinct_nodes(fglang.compile(chain(n), "chain.fg").ir.families["obs"]) for n in (10, 20, 40)]
    # each link adds the same few nodes (0.5 * l + 0.5 * l), where a tree doubles
    assert sizes[2] - sizes[1] == 2 * (sizes[1] - sizes[0])
    assert sizes[2] < 10 * 40


LETS = """model lets_shared
data N: int
data x[N]: real
data y[N]: real
var a: real ~ normal(0, 10)
var b: real ~ normal(0, 10)
let xc = x - sum[i in 0:N](x[i]) / N
let m = a + b * xc
let m2 = 0.5 * m + 0.5 * m
let m3 = 0.5 * m2 + 0.5 * m2
factor obs[i in 0:N]: y[i] ~ normal(m3[i], 0.5)
"""
_XC = "(x - sum[i in 0:N](x[i]) / N)"
_M = f"(a + b * {_XC})"
_M2 = f"(0.5 * {_M} + 0.5 * {_M})"
_M3 = f"(0.5 * {_M2} + 0.5 * {_M2})"
WRITTEN_OUT = LETS.split("let xc")[0] + (
    f"factor obs[i in 0:N]: y[i] ~ normal({_M3}[i], 0.5)\n"
)
_RNG = np.random.default_rng(0)
_X = _RNG.normal(size=6)
DATA = {"N": 6, "x": _X.tolist(), "y": (1 + 2 * (_X - _X.mean()) + 0.5 * _RNG.normal(size=6)).tolist()}


# a let indexed inside a reduction and outside it, through a fn that uses its argument twice
_HEAD = """model reduce_lets
data N: int
data x[N]: real
data y[N]: real
var a: real ~ normal(0, 10)
var b: real ~ normal(0, 10)
fn twice(v: real) -> real { return v + v }
"""
REDUCED = _HEAD + """let m = a + b * x
let q = twice(m[0]) + sum[j in 0:N](m[j] * m[j])
factor obs[i in 0:N]: y[i] ~ normal(m[i] + sum[k in 0:N](m[k]) / N + 0.01 * q, 1)
"""
_m = "(a + b * x)"
_q = f"(twice({_m}[0]) + sum[j in 0:N]({_m}[j] * {_m}[j]))"
REDUCED_OUT = _HEAD + f"factor obs[i in 0:N]: y[i] ~ normal({_m}[i] + sum[k in 0:N]({_m}[k]) / N + 0.01 * {_q}, 1)\n"


@pytest.mark.parametrize("shared_src, tree_src", [(LETS, WRITTEN_OUT), (REDUCED, REDUCED_OUT)])
def test_log_density_is_that_of_the_lets_written_out(shared_src, tree_src):
    shared, tree = fglang.compile(shared_src, "l.fg"), fglang.compile(tree_src, "w.fg")
    for values in ({"a": 0.3, "b": -1.2}, {"a": 2.0, "b": 2.5}):
        assert shared.log_density(values, DATA) == pytest.approx(tree.log_density(values, DATA), rel=1e-12)


def _closed_form() -> tuple[np.ndarray, np.ndarray]:  # (mean, sd)
    """The exact posterior of (a, b): y = a + b * xc + N(0, 0.5^2), priors N(0, 10^2)."""
    xc = _X - _X.mean()
    design = np.stack([np.ones_like(xc), xc], axis=1)
    prec = design.T @ design / 0.25 + np.eye(2) / 100.0
    cov = np.linalg.inv(prec)
    return cov @ (design.T @ np.asarray(DATA["y"]) / 0.25), np.sqrt(np.diag(cov))


@pytest.mark.parametrize(
    "backend, options",
    [("gbp", {}), ("map", {}),
     pytest.param("mcmc", {"chains": 1, "warmup": 20, "samples": 20}, marks=pytest.mark.heavy),
     ("vi", {"steps": 20, "draws": 10})],
)
def test_fits_equal_the_lets_written_out(backend, options):
    shared = fglang.compile(LETS, "l.fg").fit(DATA, backend, seed=3, **options)
    tree = fglang.compile(WRITTEN_OUT, "w.fg").fit(DATA, backend, seed=3, **options)
    for name in ("a", "b"):
        np.testing.assert_allclose(shared.mean(name), tree.mean(name), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(shared.sd(name), tree.sd(name), rtol=1e-6, atol=1e-9)
    if backend in ("gbp", "map"):  # linear and Gaussian: the mode is the closed form's mean
        np.testing.assert_allclose([shared.mean("a"), shared.mean("b")], _closed_form()[0], rtol=1e-4)
    assert "xc" not in shared.draws and "m3" in shared.draws


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    d = tmp_path_factory.mktemp("data_lets")
    (d / "m.fg").write_text(LETS)
    (d / "d.json").write_text(json.dumps(DATA))
    return d


def test_a_data_only_let_is_computed_once_at_bind_and_kept_out_of_the_draws(fitted):
    bm = fglang.compile(LETS, "l.fg").bind(DATA)
    assert bm.derived["xc"].data_only and not bm.derived["m"].data_only
    np.testing.assert_allclose(bm.derived["xc"].value, _X - _X.mean(), rtol=1e-12)
    post = fglang.load(fitted / "m.fg").fit(DATA, "map")
    assert "xc" not in post.draws and "xc" not in post.gaussian
    assert not any(r["name"].startswith("xc") for r in post.summary())
    rows = [r for r in post.summary(data_lets=True) if r["name"].startswith("xc")]
    assert len(rows) == 6 and all(r["sd"] == 0 for r in rows)
    np.testing.assert_allclose(post.mean("xc"), _X - _X.mean(), rtol=1e-12)


def test_summary_all_and_the_file_on_request(fitted):
    plain, full = fitted / "plain.nc", fitted / "full.nc"
    common = ["fit", str(fitted / "m.fg"), "-d", str(fitted / "d.json"), "-b", "map", "-q"]
    r = runner.invoke(app, common + ["-o", str(plain)])
    assert r.exit_code == 0, r.output
    assert "xc[0]" not in r.output and "lets of data only, not shown: xc" in r.output
    r = runner.invoke(app, common + ["-o", str(full), "--save-data-lets"])
    assert r.exit_code == 0, r.output
    assert "xc" not in load_posterior(plain).constants
    np.testing.assert_allclose(load_posterior(full).constants["xc"], _X - _X.mean(), rtol=1e-12)
    shown = runner.invoke(app, ["summary", "--all", str(full)])
    assert shown.exit_code == 0 and "xc[5]" in shown.output
    assert "xc[0]" not in runner.invoke(app, ["summary", str(full)]).output
    missing = runner.invoke(app, ["summary", "--all", str(plain)])
    assert missing.exit_code == 0 and "--save-data-lets" in missing.output


def test_a_factor_reads_a_data_only_let_as_data_computed_once():
    """``xc = x - mean(x)`` in ``obs[i]``: the factor reads ``xc[i]`` (bind
    added its value to the data), so no evaluation of the density sums ``x``
    again; a let that reads a var is still inlined. The posterior's data are
    the user's."""
    import jax
    from numpyro.infer.util import log_density

    from fglang.runtime.numpyro_sites import numpyro_model

    model = fglang.compile(LETS, "l.fg")
    fam = model.ir.families["obs"]
    read = {x.id for e in [fam.lhs] + [e for _, e in fam.args] for x in walk(e) if hasattr(x, "id")}
    assert "xc" in read and "m" not in read and "x" not in read
    bm = model.bind(DATA)
    assert bm.let_data == ("xc",) and "xc" not in bm.observed
    np.testing.assert_allclose(bm.data["xc"], _X - _X.mean(), rtol=1e-12)
    def reductions(src, data):
        nm = numpyro_model(fglang.compile(src, "g.fg").bind(data), {})
        grad = jax.jit(jax.grad(lambda a, b: log_density(nm.model_fn(), (nm.data,), {}, {"a": a, "b": b})[0],
                                (0, 1)))
        return grad.lower(0.3, -1.2).compile().as_text().count(" reduce(")  # after XLA's dead-code removal

    given = LETS.replace("let xc = x - sum[i in 0:N](x[i]) / N", "data xc[N]: real")
    with jax.enable_x64(True):
        # as many sums as the model given xc as data: none of them sums x (the var-reading lets, still
    # inlined, are dead code in the gradient)
        assert reductions(LETS, DATA) == reductions(given, {**DATA, "xc": (_X - _X.mean()).tolist()})
    post = model.fit(DATA, "map")
    assert "xc" not in post.observed
