"""Shared fixtures: the SPEC's example models and small data sets for them.

The models are read from the fenced code blocks of the language contract
(``shared/SPEC.md`` next to the repository), so that a change to the SPEC is
tested at once; where that file is absent, ``examples/*.fg`` stand in.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

# The suite compiles hundreds of small programs and runs each a few times: XLA:CPU's
# compile is most of its CPU time. Its fusion emitters and LLVM's optimizations cost
# compile time that these tiny runs never win back (tests/test_group_predict.py and
# tests/test_lie_groups.py: 82 -> 40 CPU s). Every oracle is a tolerance, not a
# bit pattern of XLA's default code; FG_TEST_XLA_DEFAULTS=1 runs the suite without them.
TEST_XLA_FLAGS = "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=0"
if not os.environ.get("FG_TEST_XLA_DEFAULTS") and "fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

from fglang.errors import FgError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = Path(__file__).resolve().parents[2] / "shared" / "SPEC.md"
EXAMPLES = ROOT / "examples"


def load_script(name: str, path: Path) -> ModuleType:
    """Import a script that is not part of a package (examples/, bench/), once."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


_MODEL_LINE = re.compile(r"^model\s+(\w+)\s*$", re.M)


def load_spec_models() -> dict[str, str]:
    """``{model name: source}`` for every fenced block of SPEC.md that is a whole model."""
    models: dict[str, str] = {}
    if SPEC_PATH.exists():
        for block in re.findall(r"^```[^\n]*\n(.*?)^```", SPEC_PATH.read_text(), re.S | re.M):
            m = _MODEL_LINE.search(block)
            if m:
                models[m.group(1)] = block
    if not models:
        # the SPEC models are in examples/ verbatim (tests/test_examples_data.py)
        spec_names = ("random_walk", "sparse_regression", "eight_schools", "denoise", "pose_graph_2d",
                      "mlp_classifier", "mlp_classifier_gbp")
        for name in spec_names:
            path = EXAMPLES / f"{name}.fg"
            if path.exists():
                models[name] = path.read_text()
    return models


SPEC_MODELS = load_spec_models()


def spec_data() -> dict[str, dict]:
    """Small, valid data for each SPEC model (sizes chosen so no two are equal)."""
    rng = np.random.default_rng(0)
    return {
        "random_walk": {"T": 50, "y": rng.normal(size=50).tolist()},
        "sparse_regression": {"N": 20, "D": 5, "X": rng.normal(size=(20, 5)), "y": rng.normal(size=20)},
        "eight_schools": {
            "J": 8,
            "y": [28, 8, -3, 7, -1, 1, 18, 12],
            "sigma": [15, 10, 16, 11, 9, 11, 10, 18],
        },
        "denoise": {"H": 6, "W": 7, "img": rng.normal(size=(6, 7))},
        "denoise_normal": {"H": 6, "W": 7, "img": rng.normal(size=(6, 7))},
        "pose_graph_2d": {
            "N": 4,
            "M": 5,
            "src": [0, 1, 2, 3, 0],
            "dst": [1, 2, 3, 0, 2],
            "z": rng.normal(size=(5, 3)),
            "sd": np.full((5, 3), 0.1),
        },
        "mlp_classifier": {"N": 6, "D": 3, "H": 4, "X": rng.normal(size=(6, 3)), "label": [0, 1, 0, 1, 1, 0]},
        "mlp_classifier_gbp": {"N": 6, "D": 3, "H": 4, "X": rng.normal(size=(6, 3)), "label": [0, 1, 0, 1, 1, 0]},
    }


def expected_members(name: str, data: dict) -> dict[str, int]:
    """Family sizes by hand, from the SPEC's ranges (priors: one member per node)."""
    d = data
    table = {
        "random_walk": lambda: {"init": 1, "step": d["T"] - 1, "obs": d["T"]},
        "sparse_regression": lambda: {"w__prior": 1, "b__prior": 1, "sigma__prior": 1, "lik": 1},
        "eight_schools": lambda: {"mu__prior": 1, "tau__prior": 1, "theta_raw__prior": d["J"], "obs": d["J"]},
        "denoise": lambda: {
            "obs": d["H"] * d["W"],
            "right": d["H"] * (d["W"] - 1),
            "down": (d["H"] - 1) * d["W"],
        },
        "pose_graph_2d": lambda: {"anchor": 1, "odo": d["M"]},
        "mlp_classifier": lambda: {
            "W1__prior": d["H"],
            "b1__prior": d["H"],
            "w2__prior": 1,
            "b2__prior": 1,
            "layer1": d["N"] * d["H"],
            "out": d["N"],
        },
    }
    table["denoise_normal"] = table["denoise"]
    table["mlp_classifier_gbp"] = table["mlp_classifier"]
    return table[name]()


@pytest.fixture(scope="session")
def spec_models() -> dict[str, str]:
    assert SPEC_MODELS, "no models found in SPEC.md or examples/"
    return dict(SPEC_MODELS)


@pytest.fixture
def spec_datasets() -> dict[str, dict]:
    return spec_data()


@pytest.fixture
def write_models(tmp_path):
    """Write ``{filename: text}`` into a temporary folder; returns the folder."""

    def write(files: dict[str, str]) -> Path:
        for name, text in files.items():
            p = tmp_path / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        return tmp_path

    return write


def free_port() -> int:
    """A port nothing on localhost listens on now: the --coordinator of a two-process test."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_on_four_devices(script: str, *args: str) -> dict:
    """Run ``script`` (Python source) in a fresh process with 4 forced CPU
    devices (``XLA_FLAGS`` must be set before JAX starts) and return the JSON
    it printed on its last ``RESULT `` line."""
    import subprocess

    fast = "" if os.environ.get("FG_TEST_XLA_DEFAULTS") else TEST_XLA_FLAGS
    flags = f"--xla_force_host_platform_device_count=4 {fast}"
    env = {**os.environ, "XLA_FLAGS": flags.strip(), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT "):])


LINEAR_XY = """\
model linear
data N: int
data x[N]: real
data y[N]: real
var a: real ~ normal(0, 10)
var b: real ~ normal(0, 10)
factor lik[n in 0:N]: y[n] ~ normal(a + b * x[n], 0.5)
"""
"""A straight line with known noise: the multi-device tests' model (tests/test_devices*.py)."""


NORMAL_MEAN = """
model normal_mean
data N: int
data y[N]: real
var mu: real ~ normal(0, 1)
factor obs[n in 0:N]: y[n] ~ normal(mu, 1)
"""
"""The model the exported-program tests (mcmc, vi) fit cold and warm."""


@pytest.fixture(scope="module")
def program_store(tmp_path_factory):
    """A program store of the module's own (the XLA cache stays where the first fit put it)."""
    root = tmp_path_factory.mktemp("fglang-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FGLANG_CACHE_DIR", str(root))
        mp.delenv("FGLANG_NO_CACHE", raising=False)
        yield root


@pytest.fixture(scope="module")
def normal_mean_model():
    import fglang

    return fglang.compile(NORMAL_MEAN, "normal_mean.fg")


def vector_chain_posterior(c: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact posterior (mean of all 3T unknowns, the T [3, 3] marginal
    covariances) of the vector random walk the map tests fit: steps
    x[k] - x[k-1] ~ N(0, c), observations y[k] ~ N(x[k], 0.5^2 I), x[0] ~ N(0, 10^2 I),
    by a dense solve."""
    t = y.shape[0]
    ci = np.linalg.inv(np.asarray(c))
    n = 3 * t
    lam = np.zeros((n, n))
    for k in range(1, t):
        i, j = slice(3 * k, 3 * k + 3), slice(3 * k - 3, 3 * k)
        lam[i, i] += ci
        lam[j, j] += ci
        lam[i, j] -= ci
        lam[j, i] -= ci
    lam += np.eye(n) / 0.25
    lam[:3, :3] += np.eye(3) / 100
    cov = np.linalg.inv(lam)
    return cov @ (y.ravel() / 0.25), np.stack([cov[3 * k : 3 * k + 3, 3 * k : 3 * k + 3] for k in range(t)])


def compile_error(source: str, file: str = "m.fg") -> FgError:
    """The FgError that compiling ``source`` raises (fails the test if none)."""
    import fglang

    with pytest.raises(FgError) as info:
        fglang.compile(source, file)
    return info.value


def bind_error(source: str, data: dict, file: str = "m.fg") -> FgError:
    import fglang

    model = fglang.compile(source, file)
    with pytest.raises(FgError) as info:
        model.bind(data)
    return info.value


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs() -> Iterator[None]:
    """Drop JAX's in-memory compiled programs after each test module.

    One long pytest process otherwise keeps every program of every module
    alive; CI's 2-core machine crashed in XLA's compiler late in a run.
    """
    yield
    import gc

    import jax

    jax.clear_caches()
    gc.collect()


_TIMES = os.environ.get("FG_TEST_TIMES")


if _TIMES:

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        """Per-test CPU seconds (setup and teardown included), to $FG_TEST_TIMES: robust to a loaded machine."""
        cpu, wall = _cpu_seconds(), time.perf_counter()
        yield
        with open(_TIMES, "a") as out:
            out.write(json.dumps({"test": item.nodeid, "cpu": _cpu_seconds() - cpu,
                                  "wall": time.perf_counter() - wall}) + "\n")

    def _cpu_seconds() -> float:
        """This process's CPU time and its finished subprocesses' (the CLI tests run ``fglang`` in one)."""
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime
