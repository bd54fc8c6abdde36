"""VI's start, SVI chunk and draws as stored exported programs (issue 18, `runtime.vi.program`).

Oracles: a warm fit of the same model and shapes exports nothing (every
stored piece is loaded, none traced) and gives bit for bit the cold fit's
draws for the same seed, as does a fit with ``FGLANG_NO_CACHE`` (which stores
nothing); new data of the same shapes reuse the programs and give the
closed-form posterior of a conjugate normal mean; the key follows shapes,
options and the model, and not real data values or the learning-rate schedule.
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
from fglang.runtime import cache, program_cache
from fglang.runtime.vi import program

OPTS = {"guide": "mvn", "steps": 600, "draws": 500}
Y1 = [0.3, -0.2, 1.1, 0.8, 0.4]
Y2 = [2.1, 1.7, 2.9, 2.4, 1.9]


@pytest.fixture(scope="module")
def store(program_store):
    return program_store


@pytest.fixture(scope="module")
def model(normal_mean_model):
    return normal_mean_model


def _programs(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "programs").glob(f"vi-*{cache.PROGRAM_SUFFIX}"))


def _count_exports(monkeypatch) -> list[str]:
    calls: list[str] = []
    save = program_cache.export_and_save
    monkeypatch.setattr(program_cache, "export_and_save", lambda name, *a: calls.append(name) or save(name, *a))
    return calls


@pytest.fixture(scope="module")
def cold(store, model):
    program._LOADED.clear()
    return model.fit({"N": 5, "y": Y1}, backend="vi", seed=3, **OPTS)


def test_a_warm_fit_loads_every_piece_and_draws_what_the_cold_fit_drew(store, model, cold, monkeypatch):
    stored = _programs(store)
    pieces = sorted(n.split("-", 1)[1].rsplit("-", 1)[0] for n in stored)
    # the start too: the keys, the initial points, the mode search's potential, gradient, Hessian
    assert pieces == ["adam-init", "chunk", "draw", "hessian", "keys", "potential", "start-median",
                      "uniform-start", "value-and-grad"]
    program._LOADED.clear()  # as a fresh process: the programs come from the files
    calls = _count_exports(monkeypatch)
    warm = model.fit({"N": 5, "y": Y1}, backend="vi", seed=3, **OPTS)
    assert calls == [] and _programs(store) == stored
    np.testing.assert_array_equal(warm.samples("mu"), cold.samples("mu"))
    assert warm.attrs["loss_history"] == cold.attrs["loss_history"]
    assert warm.attrs["start"] == cold.attrs["start"] and "Laplace-whitened" in cold.attrs["start"]


def test_no_cache_stores_nothing_and_draws_the_same(store, model, cold, monkeypatch):
    monkeypatch.setenv("FGLANG_NO_CACHE", "1")
    program._LOADED.clear()
    before = _programs(store)
    post = model.fit({"N": 5, "y": Y1}, backend="vi", seed=3, **OPTS)
    assert _programs(store) == before
    np.testing.assert_array_equal(post.samples("mu"), cold.samples("mu"))


def test_new_data_of_the_same_shapes_reuse_them_and_give_the_closed_form(store, model, cold, monkeypatch):
    program._LOADED.clear()
    calls = _count_exports(monkeypatch)
    post = model.fit({"N": 5, "y": Y2}, backend="vi", seed=4, **OPTS)
    assert calls == []
    # mu ~ normal(0, 1), y[n] ~ normal(mu, 1): mu | y ~ normal(sum(y) / (N + 1), 1 / sqrt(N + 1))
    draws = post.samples("mu").reshape(-1)
    mean, sd = sum(Y2) / 6, 1 / np.sqrt(6)
    assert abs(draws.mean() - mean) < 4 * sd / np.sqrt(draws.size), (draws.mean(), mean)
    assert abs(draws.std() / sd - 1) < 0.15


def _key(model, data, **opts):
    from fglang.runtime.vi.options import ViOptions

    return program.fit_key(model.bind(data), ViOptions.parse({**OPTS, **opts}), "float64", {}, guide="mvn", dim=1)


def test_the_key_follows_shapes_options_and_the_model_not_real_values_or_the_schedule(model):
    base = _key(model, {"N": 5, "y": Y1})
    assert _key(model, {"N": 5, "y": Y2}) == base  # real data are arguments
    assert _key(model, {"N": 5, "y": Y1}, steps=50, lr=0.1, elbo_tol=1e-3) == base  # host-side schedule
    assert _key(model, {"N": 6, "y": Y1 + [0.5]}) != base  # a shape
    for opt in ({"particles": 8}, {"draws": 700}, {"guide": "normal"}, {"rank": 2}):
        assert _key(model, {"N": 5, "y": Y1}, **opt) != base, opt
    other = fglang.compile(NORMAL_MEAN.replace("normal(0, 1)", "normal(0, 2)"), "normal_mean.fg")
    assert _key(other, {"N": 5, "y": Y1}) != base  # the model


def test_the_start_key_follows_shapes_and_the_model_not_real_values_or_options(model):
    def key(m, data, dtype="float64"):
        return program.start_key(m.bind(data), dtype, {})

    base = key(model, {"N": 5, "y": Y1})
    assert key(model, {"N": 5, "y": Y2}) == base  # real data are arguments; no option is in it
    assert key(model, {"N": 6, "y": Y1 + [0.5]}) != base
    assert key(model, {"N": 5, "y": Y1}, "float32") != base
    other = fglang.compile(NORMAL_MEAN.replace("normal(0, 1)", "normal(0, 2)"), "normal_mean.fg")
    assert key(other, {"N": 5, "y": Y1}) != base


_WARM_IMPORTS = textwrap.dedent(
    """
    import json, sys
    import fglang
    post = fglang.compile(sys.argv[1], "normal_mean.fg").fit(json.loads(sys.argv[2]), backend="vi", seed=3,
                                                              **json.loads(sys.argv[3]))
    print("RESULT " + json.dumps({"numpyro": "numpyro" in sys.modules, "optax": "optax" in sys.modules,
                                  "mu": post.samples("mu").ravel()[:5].tolist()}))
    """
)


def test_a_warm_fit_in_a_fresh_process_imports_neither_numpyro_nor_optax(store, model, cold):
    """Every piece stored: a fresh process builds no NumPyro model and traces
    nothing, and draws what the cold fit drew."""
    import jax

    # the child reads the programs beside the XLA cache this process compiled them into (JAX keeps
    # the folder the first fit of the process chose), so that it loads XLA's code instead of compiling
    xla = Path(jax.config.jax_compilation_cache_dir or store / "jax")
    root = xla.parent if xla.name == "jax" else store
    (root / "programs").mkdir(parents=True, exist_ok=True)
    for name in _programs(store) if root != store else []:
        (root / "programs" / name).write_bytes((store / "programs" / name).read_bytes())
    env = {**os.environ, "FGLANG_CACHE_DIR": str(root)}
    env.pop("FGLANG_NO_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", _WARM_IMPORTS, NORMAL_MEAN, json.dumps({"N": 5, "y": Y1}),
                           json.dumps(OPTS)], capture_output=True, text=True, env=env, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["numpyro"] is False and out["optax"] is False, out
    assert out["mu"] == cold.samples("mu").ravel()[:5].tolist()
