"""GBP's iteration chunk stored and loaded by a warm fit instead of traced (issue 18, `gbp/program.py`).

Oracles: a fit in a fresh process with the cache a first one left loads the
chunk's executable (``attrs["chunk_program"]``, and nothing traced) and exports
nothing (neither the chunk nor the setup's program, the families at zero), and
gives the first fit's means; new data of the same shapes reuse it and give the
chain's exact (linear-Gaussian, tree) posterior means; another shape exports
a chunk of its own; a corrupt executable falls back to the stored module, a
corrupt module is exported again, both with the same means; a warm GBP fit
imports no SciPy. Two fresh processes (a cold one and a warm one) on a
6-node chain share one private cache folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

CHAIN = """model chain
data N: int
data y[N]: real
var x[N]: real ~ normal(0, 10)
factor obs[i in 0:N]: y[i] ~ normal(x[i], 0.5)
factor step[i in 0:N-1]: x[i+1] ~ normal(x[i], 1)
"""
Y1 = [0.3, -0.2, 1.1, 0.8, 0.4, 0.9]
Y2 = [2.1, 1.7, 2.9, 2.4, 1.9, 1.2]

_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import fglang
    from fglang.runtime import cache
    from fglang.runtime.gbp import program

    model = fglang.compile(sys.argv[1], "chain.fg")
    root = Path(sys.argv[2])
    out = {}
    exported = []  # the programs each fit exported (its setup's, its chunk's)
    export = program.program_cache.export_and_save
    program.program_cache.export_and_save = lambda name, *a: exported.append(name.split("-")[1]) or export(name, *a)

    def fit(name, y):
        exported.clear()
        post = model.fit({"N": len(y), "y": y}, backend="gbp", tol=1e-7)
        out[name] = {"source": post.attrs["chunk_program"], "mean": post.gaussian["x"].mean.tolist(),
                     "trace": post.timings.get("trace", 0.0), "exported": sorted(exported)}

    def entries(kind):
        folder = root / ("jax" if kind == "executable" else "programs")
        return sorted(folder.glob("fglang-gbp-chunk-*" if kind == "executable" else "gbp-chunk-*"))

    fit("first", json.loads(sys.argv[4]))
    out["scipy"] = "scipy" in sys.modules
    if sys.argv[3] == "warm":
        program._LOADED.clear()  # as a fresh process: from the files
        fit("new_data", json.loads(sys.argv[5]))
        fit("other_shape", json.loads(sys.argv[4]) + [0.5])
        out["entries"] = {k: len(entries(k)) for k in ("executable", "module")}
        for e in entries("executable"):
            e.write_bytes(b"not an executable")
        program._LOADED.clear()
        fit("corrupt_executable", json.loads(sys.argv[4]))
        # the one that fit read is removed (the other shape's is left as it is)
        out["corrupt_left"] = sum(e.read_bytes() == b"not an executable" for e in entries("executable"))
        for e in entries("module"):
            e.write_bytes(b"not a program")
        for e in entries("executable"):
            e.unlink()
        program._LOADED.clear()
        fit("corrupt_module", json.loads(sys.argv[4]))
        out["corrupt_modules_left"] = sum(e.read_bytes() == b"not a program" for e in entries("module"))
    print("RESULT " + json.dumps(out))
    """
)


def _child(root, phase: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "FGLANG_NO_CACHE"}
    env.update(FGLANG_CACHE_DIR=str(root), XDG_CACHE_HOME=str(root.parent / "xdg"))
    proc = subprocess.run([sys.executable, "-c", _CHILD, CHAIN, str(root), phase, json.dumps(Y1), json.dumps(Y2)],
                          capture_output=True, text=True, env=env, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[dict, dict]:
    root = tmp_path_factory.mktemp("gbp-warm") / "fglang"
    return _child(root, "cold"), _child(root, "warm")


def _exact_means(y: list[float]) -> np.ndarray:
    """The chain's posterior means: the precision (prior, observations, steps) solved against the data."""
    n = len(y)
    lam = np.eye(n) * (1 / 100 + 4)
    for i in range(n - 1):
        lam[i, i] += 1
        lam[i + 1, i + 1] += 1
        lam[i, i + 1] -= 1
        lam[i + 1, i] -= 1
    return np.linalg.solve(lam, 4 * np.asarray(y))


def test_a_fresh_process_loads_the_stored_chunk_and_gives_the_same_means(runs):
    cold, warm = runs
    assert cold["first"]["source"] == "exported" and cold["first"]["exported"] == ["chunk", "zero"]
    assert warm["first"]["source"] == "executable" and warm["first"]["exported"] == []
    assert warm["first"]["trace"] < cold["first"]["trace"]
    np.testing.assert_allclose(warm["first"]["mean"], cold["first"]["mean"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(cold["first"]["mean"], _exact_means(Y1), atol=1e-4)


def test_new_data_of_the_same_shapes_reuse_it_and_another_shape_does_not(runs):
    _, warm = runs
    assert warm["new_data"]["source"] == "executable" and warm["new_data"]["exported"] == []
    np.testing.assert_allclose(warm["new_data"]["mean"], _exact_means(Y2), atol=1e-4)
    assert warm["other_shape"]["source"] == "exported" and warm["other_shape"]["exported"] == ["chunk", "zero"]
    np.testing.assert_allclose(warm["other_shape"]["mean"], _exact_means(Y1 + [0.5]), atol=1e-4)
    assert warm["entries"] == {"executable": 2, "module": 2}


def test_a_corrupt_entry_is_dropped_and_the_fit_runs(runs):
    cold, warm = runs
    assert warm["corrupt_executable"]["source"] == "module" and warm["corrupt_left"] == 1
    assert warm["corrupt_module"]["source"] == "exported" and warm["corrupt_modules_left"] == 1  # rewritten
    for case in ("corrupt_executable", "corrupt_module"):
        np.testing.assert_allclose(warm[case]["mean"], cold["first"]["mean"], rtol=0, atol=1e-6)


def test_a_warm_gbp_fit_imports_no_scipy(runs):
    """Not fglang's loop check nor its coarse solver (~0.3-0.5 s); a cold fit's lowering imports it
    (JAX's LAPACK set-up), a warm fit lowers nothing."""
    _, warm = runs
    assert warm["scipy"] is False


def _lowerings(fn) -> int:
    """How many programs JAX lowers while ``fn()`` runs (each eager operation is one)."""
    import jax

    count = [0]

    def on(event: str, duration: float, **_: object) -> None:
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(on)
    try:
        fn()
    finally:
        jax.monitoring.unregister_event_duration_listener(on)
    return count[0]


def test_the_graphs_setup_lowers_one_program_per_family_and_the_start_none():
    """Evaluating the families at zero (their scales) is one jitted program each, not one program per
    eager operation; a model without normal priors makes no start program (each is a lowering and a
    cache lookup on every warm fit)."""
    import fglang
    from fglang.runtime.gaussian import default_start, derived_marginals
    from fglang.runtime.gbp.lowering import to_graph

    model = fglang.compile(CHAIN.replace(" ~ normal(0, 10)", ""), "chain.fg")
    bm = model.bind({"N": 13, "y": np.linspace(-1, 1, 13)})  # a shape no other test lowers for
    assert _lowerings(lambda: to_graph(bm)) == len(bm.families) == 2
    assert _lowerings(lambda: default_start(bm, 0, set())) == 0
    assert _lowerings(lambda: derived_marginals(bm, {}, {})) == 0  # no lets that read vars: nothing to linearize


def test_a_refused_export_or_no_cache_runs_the_plain_jit_said_once(program_store, monkeypatch):
    import warnings

    import fglang
    from fglang.runtime import program_cache
    from fglang.runtime.gbp import program

    monkeypatch.setattr(program_cache, "export_and_save", lambda *a, **k: None)  # as for an unstable custom call
    monkeypatch.setattr(program, "_REFUSED_SAID", False)
    program._LOADED.clear()
    model = fglang.compile(CHAIN, "chain.fg")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        posts = [model.fit({"N": 6, "y": y}, backend="gbp", tol=1e-7) for y in (Y1, Y2)]
    said = [w for w in seen if "could not be exported" in str(w.message)]
    assert len(said) == 1 and [p.attrs["chunk_program"] for p in posts] == ["jit", "jit"]
    for post, y in zip(posts, (Y1, Y2), strict=True):
        np.testing.assert_allclose(post.gaussian["x"].mean, _exact_means(y), atol=1e-4)
    monkeypatch.setenv("FGLANG_NO_CACHE", "1")  # the store off: the plain jit too, and nothing said
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        off = model.fit({"N": 6, "y": Y1}, backend="gbp", tol=1e-7)
    assert off.attrs["chunk_program"] == "jit" and not [w for w in seen if "exported" in str(w.message)]
    np.testing.assert_allclose(off.gaussian["x"].mean, posts[0].gaussian["x"].mean, rtol=0, atol=1e-6)
    program._LOADED.clear()


def test_the_key_follows_the_model_shapes_int_data_dtype_and_layout_not_real_values():
    import fglang
    from fglang.runtime.gbp import program
    from fglang.runtime.gbp.lowering import to_graph
    from fglang.runtime.gbp.plan import build_plan

    model = fglang.compile(CHAIN, "chain.fg")

    def key(m, data, dtype="float32", carried=(), skip=()):
        bm = m.bind(data)
        return program.model_key(program.model_digest(bm), bm, dtype, set(carried), set(skip))

    base = key(model, {"N": 6, "y": Y1})
    assert key(model, {"N": 6, "y": Y2}) == base  # real data are arguments
    assert key(model, {"N": 7, "y": Y1 + [0.0]}) != base  # a shape
    assert key(model, {"N": 6, "y": Y1}, dtype="float64") != base
    assert key(model, {"N": 6, "y": Y1}, carried=["x"]) != base  # a carried prior replaces the written one
    assert key(model, {"N": 6, "y": Y1}, skip=["obs"]) != base  # a prediction leaves a factor out
    assert key(fglang.compile(CHAIN.replace("0.5)", "0.6)"), "chain.fg"), {"N": 6, "y": Y1}) != base
    graph = to_graph(model.bind({"N": 6, "y": Y1}))

    def layout(**opts):
        o = {"dtype": np.float32, "schedule": "flooding", "dropout": 0.0, "chunk": 20, **opts}
        return program.plan_signature(build_plan(graph, **o)[0])

    assert layout() == layout(dtype=np.float32)
    for change in ({"schedule": "sequential"}, {"dropout": 0.1}, {"chunk": 5}):
        assert layout(**change) != layout(), change
