"""NUTS as one exported program, loaded on a warm fit without tracing (issue 18).

Oracles: a warm fit of the same model and shapes never builds the NumPyro
model (the functions that would are made to count their calls) and draws
bit for bit what the cold fit drew with the same seed; a conjugate normal
mean fitted warm to new data of the same shapes matches its closed-form
posterior; the key changes with a shape, an option, the int data or the
model, and not with real data values or the seed; the compiled executables
are stored and a warm fit lowers and compiles nothing; a corrupt executable
falls back to the exported module, a corrupt module is rebuilt, a platform
that cannot serialize runs on the module, all drawing the same chains;
FGLANG_NO_CACHE writes nothing; the exported program draws
what NumPyro's own ``MCMC.run`` draws for the same seed (heavy).

One model and one option set for the fits, so that the module compiles the
sampler once (XLA's persistent cache serves the rest).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import NORMAL_MEAN

import fglang
from fglang.runtime import cache
from fglang.runtime.mcmc import exported
from fglang.runtime.mcmc.options import McmcOptions

OPTS = {"chains": 2, "warmup": 150, "samples": 400}
Y1 = [0.3, -0.2, 1.1, 0.8, 0.4]
Y2 = [2.1, 1.7, 2.9, 2.4, 1.9]


@pytest.fixture(scope="module")
def store(program_store):
    return program_store


@pytest.fixture(scope="module")
def model(normal_mean_model):
    return normal_mean_model


def _programs(root: Path) -> list[Path]:
    return sorted((root / "programs").glob(f"*{cache.PROGRAM_SUFFIX}"))


def _executables(root: Path) -> list[Path]:
    return sorted((root / "jax").glob(f"fglang-nuts-*{cache.ENTRY_SUFFIX}"))


def _count_builds(monkeypatch) -> list[str]:
    """Every call that would trace the model on the cold path, recorded."""
    from fglang.runtime.mcmc import program
    from fglang.runtime.numpyro_model import NumpyroModel

    calls: list[str] = []
    model_fn, build = NumpyroModel.model_fn, program.NutsPrograms.__init__
    monkeypatch.setattr(NumpyroModel, "model_fn", lambda self: calls.append("model_fn") or model_fn(self))
    monkeypatch.setattr(program.NutsPrograms, "__init__",
                        lambda self, *a, **k: calls.append("NutsPrograms") or build(self, *a, **k))
    return calls


@pytest.fixture(scope="module")
def cold(store, model):
    exported._LOADED.clear()
    post = model.fit({"N": 5, "y": Y1}, backend="mcmc", seed=3, **OPTS)
    return post


def test_a_second_fit_loads_the_program_and_does_not_trace_the_model(store, model, cold, monkeypatch):
    assert len(_programs(store)) == 2  # the start, and warm-up with sampling
    exported._LOADED.clear()  # as a fresh process: the program comes from the file
    calls = _count_builds(monkeypatch)
    warm = model.fit({"N": 5, "y": Y1}, backend="mcmc", seed=3, **OPTS)
    assert calls == []
    assert "cache load" in warm.timings and warm.timings["trace"] < cold.timings["trace"]
    # the executables compiled from the modules: nothing lowered, nothing compiled or looked up in XLA's cache
    assert len(_executables(store)) == 2
    assert warm.timings["lower to HLO"] == 0 and warm.timings["compile"] == 0, warm.timings
    # the same seed: the same draws, bit for bit (cold ran the exported module it stored)
    np.testing.assert_array_equal(warm.samples("mu"), cold.samples("mu"))
    np.testing.assert_array_equal(warm.sample_stats["diverging"], cold.sample_stats["diverging"])
    assert len(_programs(store)) == 2


def test_new_data_of_the_same_shapes_reuse_it_and_give_the_closed_form(store, model, cold, monkeypatch):
    exported._LOADED.clear()
    calls = _count_builds(monkeypatch)
    post = model.fit({"N": 5, "y": Y2}, backend="mcmc", seed=4, **OPTS)
    assert calls == [] and len(_programs(store)) == 2
    # mu ~ normal(0, 1), y[n] ~ normal(mu, 1): mu | y ~ normal(sum(y) / (N + 1), 1 / sqrt(N + 1))
    mean, sd = sum(Y2) / 6, 1 / np.sqrt(6)
    draws = post.samples("mu").reshape(-1)
    se = sd / np.sqrt(draws.size / 2)  # an ESS of half the draws, conservatively
    assert abs(draws.mean() - mean) < 5 * se, (draws.mean(), mean)
    assert abs(draws.std() / sd - 1) < 0.12
    assert post.attrs["chain_method"] == "vectorized" and post.sample_stats["diverging"].shape == (2, 400)


def _key(model, data, seed=0, **opts):
    from fglang.runtime.dtypes import precision

    bm = model.bind(data)
    o = McmcOptions.parse({**OPTS, **opts})
    with precision("float64"):
        fixed, args = exported.program_args(bm, seed, {})
        return exported.program_key(bm, o, "float64", {}, fixed, args, "cpu")


def test_the_key_follows_shapes_options_int_data_and_the_model_not_real_values_or_the_seed(model):
    base = _key(model, {"N": 5, "y": Y1})
    assert _key(model, {"N": 5, "y": Y2}, seed=9) == base  # real data and the seed are arguments
    assert _key(model, {"N": 6, "y": Y1 + [0.0]}) != base  # a shape
    for opt in ({"warmup": 151}, {"samples": 401}, {"chains": 3}, {"target_accept": 0.9}):
        assert _key(model, {"N": 5, "y": Y1}, **opt) != base, opt
    other = fglang.compile(NORMAL_MEAN.replace("normal(0, 1)", "normal(0, 2)"), "normal_mean.fg")
    assert _key(other, {"N": 5, "y": Y1}) != base  # the model
    grouped = fglang.compile(
        "model g\ndata N: int\ndata G: int\ndata g[N]: int\ndata y[N]: real\nvar a[G]: real ~ normal(0, 1)\n"
        "factor obs[n in 0:N]: y[n] ~ normal(a[g[n]], 1)\n", "g.fg")
    d = {"N": 3, "G": 2, "g": [0, 1, 1], "y": [0.1, 0.2, 0.3]}
    k = _key(grouped, d)
    assert _key(grouped, {**d, "y": [1.0, 2.0, 3.0]}) == k
    assert _key(grouped, {**d, "g": [1, 0, 1]}) != k  # index data pick the nodes: constants of the program


def test_a_corrupt_executable_falls_back_to_the_module(store, model, cold):
    entry = _executables(store)[-1]
    entry.write_bytes(b"not an executable")
    exported._LOADED.clear()
    post = model.fit({"N": 5, "y": Y1}, backend="mcmc", seed=3, **OPTS)
    np.testing.assert_array_equal(post.samples("mu"), cold.samples("mu"))
    assert post.timings["lower to HLO"] > 0  # the module lowered and compiled
    # replaced by a fresh compile (not XLA's cached one: re-serialized, a loaded executable loses kernels)
    assert entry.exists() and entry.read_bytes() != b"not an executable" and len(_executables(store)) == 2
    exported._LOADED.clear()
    again = model.fit({"N": 5, "y": Y1}, backend="mcmc", seed=3, **OPTS)
    np.testing.assert_array_equal(again.samples("mu"), cold.samples("mu"))
    assert again.timings["lower to HLO"] == 0  # both executables loaded


def test_a_corrupt_module_is_a_miss_and_is_rebuilt(store, model, cold):
    entry = _programs(store)[-1]
    entry.write_bytes(b"not a program")
    for e in _executables(store):
        e.unlink()  # else the executables serve and the module is never read
    exported._LOADED.clear()
    post = model.fit({"N": 5, "y": Y1}, backend="mcmc", seed=3, **OPTS)
    np.testing.assert_array_equal(post.samples("mu"), cold.samples("mu"))
    assert entry.read_bytes() != b"not a program" and len(_programs(store)) == 2
    for e in _programs(store) + _executables(store):
        e.unlink()  # vanished (another process cleared it): a miss too
    exported._LOADED.clear()
    again = model.fit({"N": 5, "y": Y1}, backend="mcmc", seed=3, **OPTS)
    np.testing.assert_array_equal(again.samples("mu"), cold.samples("mu"))
    assert len(_programs(store)) == 2
    exported._LOADED.clear()  # a later fit of what these stored: the same draws
    third = model.fit({"N": 5, "y": Y1}, backend="mcmc", seed=3, **OPTS)
    np.testing.assert_array_equal(third.samples("mu"), cold.samples("mu"))


def test_a_platform_that_cannot_serialize_runs_the_module(store, model, cold, monkeypatch):
    from jax.experimental import serialize_executable

    def refuse(compiled):
        raise ValueError("Compilation does not support serialization")

    monkeypatch.setattr(serialize_executable, "serialize", refuse)
    for e in _executables(store):
        e.unlink()
    exported._LOADED.clear()
    post = model.fit({"N": 5, "y": Y1}, backend="mcmc", seed=3, **OPTS)
    np.testing.assert_array_equal(post.samples("mu"), cold.samples("mu"))
    assert _executables(store) == [] and len(_programs(store)) == 2


def test_no_cache_writes_no_program_and_draws_the_same(store, model, cold, monkeypatch, tmp_path):
    monkeypatch.setenv("FGLANG_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("FGLANG_NO_CACHE", "1")
    exported._LOADED.clear()
    post = model.fit({"N": 5, "y": Y1}, backend="mcmc", seed=3, **OPTS)
    np.testing.assert_array_equal(post.samples("mu"), cold.samples("mu"))
    assert not (tmp_path / "programs").exists()


_WARM_IMPORTS = textwrap.dedent(
    """
    import json, sys
    import fglang
    post = fglang.compile(sys.argv[1], "normal_mean.fg").fit(json.loads(sys.argv[2]), backend="mcmc", seed=3,
                                                              **json.loads(sys.argv[3]))
    print("RESULT " + json.dumps({"numpyro": "numpyro" in sys.modules, "mu": post.samples("mu").ravel()[:5].tolist(),
                                  "timings": post.timings}))
    """
)


def test_a_warm_fit_in_a_fresh_process_does_not_import_numpyro(store, model, cold):
    import jax

    if not _programs(store):
        exported._LOADED.clear()
        model.fit({"N": 5, "y": Y1}, backend="mcmc", seed=3, **OPTS)
    entries = _programs(store)
    # the child reads the program beside the XLA cache this process compiled it into (JAX keeps the
    # folder the first fit of the process chose), so that it loads XLA's code too instead of compiling
    xla = Path(jax.config.jax_compilation_cache_dir or store / "jax")
    root = xla.parent if xla.name == "jax" else store
    (root / "programs").mkdir(parents=True, exist_ok=True)
    for entry in entries if root != store else []:
        (root / "programs" / entry.name).write_bytes(entry.read_bytes())
    env = {**os.environ, "FGLANG_CACHE_DIR": str(root)}
    env.pop("FGLANG_NO_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", _WARM_IMPORTS, NORMAL_MEAN, json.dumps({"N": 5, "y": Y1}),
                           json.dumps(OPTS)], capture_output=True, text=True, env=env, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["numpyro"] is False, out
    assert out["mu"] == cold.samples("mu").ravel()[:5].tolist()


def test_cache_info_and_clear_count_the_programs(store, cold):
    info = cache.cache_info()
    assert info.programs_path == store / "programs" and info.programs >= 1 and info.programs_bytes > 0
    from typer.testing import CliRunner

    from fglang.cli import app

    r = CliRunner().invoke(app, ["cache", "info"])
    assert r.exit_code == 0 and f"{store / 'programs'}: {info.programs} exported program" in r.output
    r = CliRunner().invoke(app, ["cache", "clear"])
    assert r.exit_code == 0 and f"removed {info.programs} exported program" in r.output
    assert _programs(store) == [] and cache.cache_info().programs == 0


@pytest.mark.heavy
def test_the_program_draws_what_numpyro_mcmc_run_draws(store, model):
    """The same seed through NumPyro's ``MCMC.run`` (vectorized chains) and
    through the exported program: the same chains up to round-off (one
    program fuses what MCMC runs as several)."""
    from fglang.runtime.dtypes import precision
    from fglang.runtime.mcmc.fit import _run_mcmc

    bm = model.bind({"N": 5, "y": Y1})
    o = McmcOptions.parse(OPTS)
    with precision("float64"):
        ref, stats = _run_mcmc(bm, o, "vectorized", 3, {}, {}, False)
    post = model.fit({"N": 5, "y": Y1}, backend="mcmc", seed=3, **OPTS)
    np.testing.assert_allclose(post.draws["mu"], ref["mu"], rtol=0, atol=1e-8)
    np.testing.assert_array_equal(post.sample_stats["diverging"], stats["diverging"])
    np.testing.assert_allclose(post.sample_stats["lp"], -stats["potential_energy"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(post.attrs["step_size"], stats["step_size"], rtol=1e-10)


def test_the_executable_s_name_follows_the_compiler_options_and_the_shapes(monkeypatch):
    from fglang.runtime import program_cache

    monkeypatch.delenv("FGLANG_KEEP_XLA_FLAGS", raising=False)
    options = program_cache.compiler_options("cpu")
    assert options == program_cache.CPU_COMPILER_OPTIONS and program_cache.compiler_options("gpu") == {}
    monkeypatch.setenv("FGLANG_KEEP_XLA_FLAGS", "1")
    assert program_cache.compiler_options("cpu") == {}
    args = (np.int64(0), {"y": np.zeros(5)})
    name = program_cache.compiled_name("nuts-init-k", args, options)
    assert name.startswith("fglang-nuts-init-k-") and name == program_cache.compiled_name("nuts-init-k", args, options)
    assert program_cache.compiled_name("nuts-init-k", args, {}) != name
    assert program_cache.compiled_name("nuts-init-k", (np.int64(0), {"y": np.zeros(6)}), options) != name
