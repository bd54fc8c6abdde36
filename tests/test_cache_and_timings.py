"""The compilation cache users can see, move and clear, and the timings split of a fit.

Oracles: the cache's folder follows the documented precedence
(FGLANG_CACHE_DIR, then XDG_CACHE_HOME, then ~/.cache); an entry written by
one store is read whole by another over the same folder; clear removes what
info counted. Timings: the union of overlapping intervals computed by hand;
the phases of a real fit add up to no more than its wall time.
"""

from __future__ import annotations

import threading
import time

import pytest
from typer.testing import CliRunner

import fglang
from fglang.cli import app
from fglang.runtime import cache
from fglang.runtime.timings import Timings, format_timings, recording

runner = CliRunner()


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("FGLANG_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.jax_cache_dir() == tmp_path / "xdg" / "fglang" / "jax"
    monkeypatch.setenv("FGLANG_CACHE_DIR", str(tmp_path / "moved"))
    assert cache.jax_cache_dir() == tmp_path / "moved" / "jax"
    monkeypatch.delenv("FGLANG_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "fglang"


def test_store_is_whole_or_nothing_across_writers(tmp_path):
    """Two stores over one folder (two processes): each entry is read whole;
    concurrent writers of one key leave one complete entry and no temporaries."""
    a, b = cache.AtomicFileStore(tmp_path), cache.AtomicFileStore(tmp_path)
    assert a.get("k") is None
    big = bytes(range(256)) * 4096
    threads = [threading.Thread(target=s.put, args=("k", big)) for s in (a, b) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.get("k") == big
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k-cache"]
    (tmp_path / "k-cache").unlink()  # cleared by another process: a miss, not an error
    assert a.get("k") is None


def test_cache_info_and_clear_cli(monkeypatch, tmp_path):
    monkeypatch.setenv("FGLANG_CACHE_DIR", str(tmp_path))
    store = cache.AtomicFileStore(cache.jax_cache_dir())
    store.put("jit_f-abc", b"x" * 2048)
    store.put("jit_g-def", b"y" * 1024)
    (cache.jax_cache_dir() / "unrelated.txt").write_text("kept")
    r = runner.invoke(app, ["cache", "info"])
    assert r.exit_code == 0 and f"{tmp_path / 'jax'}: 2 compiled programs, 3.0 KiB" in r.output
    r = runner.invoke(app, ["cache", "clear"])
    assert r.exit_code == 0 and "removed 2 compiled programs, 3.0 KiB" in r.output
    assert cache.cache_info().entries == 0 and (cache.jax_cache_dir() / "unrelated.txt").exists()
    monkeypatch.setenv("FGLANG_CACHE_DIR", str(tmp_path / "never-made"))
    r = runner.invoke(app, ["cache", "clear"])
    assert r.exit_code == 0 and "removed 0 compiled programs" in r.output


def test_interval_union():
    t = Timings()
    for a, b in [(0.0, 2.0), (1.0, 3.0), (5.0, 6.0), (5.5, 5.7)]:  # nested and overlapping, as JAX's traces are
        t.span("trace", a, b)
    t.span("compile", 2.5, 5.2)
    assert t.jax_seconds(("trace",), 0.0, 10.0) == pytest.approx(4.0)
    assert t.jax_seconds(("trace", "compile"), 0.0, 10.0) == pytest.approx(6.0)
    assert t.jax_seconds(("trace",), 1.5, 5.5) == pytest.approx(2.0)  # clipped to the fit's own window


def test_api_fit_timings(tmp_path):
    m = fglang.compile(
        "model tiny\ndata N: int\ndata y[N]: real\nvar mu: real ~ normal(0, 1)\n"
        "factor obs[n in 0:N]: y[n] ~ normal(mu, 1)\n"
    )
    t0 = time.perf_counter()
    post = m.fit({"N": 3, "y": [0.1, 0.2, 0.3]}, backend="map")
    wall = time.perf_counter() - t0
    t = post.timings
    assert {"check", "lower", "bind", "import", "trace", "compile", "run"} <= set(t)
    phases = sum(v for k, v in t.items() if not k.startswith("programs") and k not in ("check", "lower"))
    assert phases <= wall * 1.01 + 1e-3
    assert t["programs compiled"] + t["programs from cache"] >= 1
    again = m.fit({"N": 3, "y": [0.5, 0.2, 0.3]}, backend="map")
    assert "check" not in again.timings  # parse and check are the first fit's
    assert any(line.startswith("  total") for line in format_timings(again.timings))


def test_recording_nests_into_the_outer():
    with recording() as outer, recording() as inner:
        assert inner is outer


@pytest.mark.parametrize(
    ("asked", "chains", "local", "expect", "note"),
    [
        ("auto", 4, 1, "vectorized", ""),  # one device: vectorized
        ("auto", 4, 4, "parallel", ""),  # a device per chain: one chain per device, by default
        ("auto", 8, 4, "vectorized", ""),  # fewer devices than chains, no devices=N asked: one device
        ("auto", 1, 4, "vectorized", ""),
        ("vectorized", 4, 4, "vectorized", ""),  # asked for: kept
        ("parallel", 4, 1, "sequential", "parallel needs a device per chain"),  # cannot run: says so
        ("parallel", 2, 4, "parallel", ""),
    ],
)
def test_chain_method_follows_the_devices(monkeypatch, asked, chains, local, expect, note):
    import jax

    from fglang.runtime.mcmc.fit import _chain_method
    from fglang.runtime.mcmc.options import McmcOptions

    monkeypatch.setattr(jax, "local_device_count", lambda *a, **k: local)
    method, why = _chain_method(McmcOptions.parse({"chains": chains, "chain_method": asked}))
    assert method == expect
    assert (note in why) if note else why == ""


def _k_families(k: int):
    lines = ["model k_families", "data N: int"] + [f"data y{i}[N]: real" for i in range(k)]
    lines += [f"var a{i}: real ~ normal(0, 1)" for i in range(k)]
    lines += [f"factor f{i}[n in 0:N]: y{i}[n] ~ normal(a{i}, 1)" for i in range(k)]
    data = {"N": 3, **{f"y{i}": [0.1 * i, 0.2, 0.3] for i in range(k)}}
    return fglang.compile("\n".join(lines) + "\n"), data


def test_eager_model_run_compiles_a_few_programs_whatever_the_number_of_families():
    """NumPyro runs the model outside of jit (its prototype trace): the families
    are evaluated in a few jitted batches, not one XLA program per family."""
    import jax
    from numpyro.handlers import seed, trace

    compiled: list[str] = []

    def listen(event: str, *_: object, **kw: object) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(str(kw.get("fun_name")))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        counts = {}
        for k in (2, 3, 9):  # k = 2 warms the per-primitive caches the others share
            m, data = _k_families(k)
            model, d = m.numpyro_model(data)
            compiled.clear()
            tr = trace(seed(model, 0)).get_trace(d)
            counts[k] = len(compiled)
            for i in range(k):  # the batched evaluation observes each family's own data
                assert list(map(float, tr[f"f{i}"]["value"])) == pytest.approx(data[f"y{i}"])
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert counts[3] == counts[9] <= 4, counts


_SAME_HLO_TWO_KEYS = """
import jax, jax.numpy as jnp, numpy as np
from fglang.runtime import cache, program_cache
cache.enable_compilation_cache()
x = np.linspace(0.0, 1.0, 7)
call = jax.export.export(jax.jit(lambda v: jnp.cumsum(jnp.sin(v) * 3.0)))(
    jax.ShapeDtypeStruct(x.shape, x.dtype)).call
import sys
name = sys.argv[1]
program_cache.compile_and_save(name, call, (x,), {})
loaded = program_cache.load_compiled(name, (x,), {})
print(name, loaded is not None and bool(np.allclose(loaded(x), np.cumsum(np.sin(x) * 3.0))))
"""


def test_a_program_another_key_compiled_still_stores_its_executable(tmp_path):
    """Two keys of one program (the same model under another name, an fglang
    upgrade that left the program alone): the second compile met the first's
    entry in XLA's persistent cache, whose executables cannot be re-stored
    (`program_cache.compile_and_save`), so every later process of the second
    key lowered the module and read XLA's cache again. Each program is now
    named by its key (its own XLA cache entry): both executables are stored
    and run."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "FGLANG_CACHE_DIR": str(tmp_path)}
    env.pop("FGLANG_NO_CACHE", None)
    for name in ("test-first-key", "test-second-key"):  # two processes: XLA's cache is what they share
        p = subprocess.run([sys.executable, "-c", _SAME_HLO_TWO_KEYS, name], capture_output=True, text=True,
                           env=env, timeout=300)
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == [name, "True"], p.stdout
