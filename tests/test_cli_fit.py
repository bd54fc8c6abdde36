"""``fglang fit --backend vi|mcmc`` and ``fglang summary`` end to end.

In-process through typer's ``CliRunner`` (fast), plus one real subprocess
run of the installed ``fglang`` console script.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import arviz as az
import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from fglang.cli import app
from fglang.runtime.posterior import load_posterior

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MODEL = str(EXAMPLES / "eight_schools.fg")
EIGHT_SCHOOLS = {
    "J": 8,
    "y": [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0],
    "sigma": [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0],
}

runner = CliRunner()


@pytest.fixture()
def data_file(tmp_path) -> str:
    f = tmp_path / "eight_schools.json"
    f.write_text(json.dumps(EIGHT_SCHOOLS))
    return str(f)


def _run(*args: str):
    return runner.invoke(app, list(args))


def _no_traceback(result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_fit_vi_then_summary(data_file, tmp_path):
    out = tmp_path / "post.nc"
    args = ["--backend", "vi", "--steps", "300", "--seed", "1", "--device", "cpu", "-o", str(out), "-q"]
    r = _run("fit", MODEL, "--data", data_file, *args)
    assert r.exit_code == 0, r.output
    assert "eight_schools (vi)" in r.output and "theta[7]" in r.output and "tau" in r.output
    assert f"wrote {out}" in r.output
    assert "r_hat" not in r.output
    post = load_posterior(out)
    assert post.backend == "vi" and post.attrs["options"]["steps"] == 300 and post.attrs["seed"] == 1
    assert post.samples("theta").shape == (1000, 8)
    r = _run("summary", str(out))
    assert r.exit_code == 0, r.output
    assert "eight_schools (vi)" in r.output and "theta_raw[0]" in r.output


def test_fit_mcmc_then_summary(data_file, tmp_path):
    out = tmp_path / "post.nc"
    r = _run(
        "fit", MODEL, "--data", data_file, "--backend", "mcmc",
        "--chains", "2", "--warmup", "150", "--samples", "100", "--target-accept", "0.9",
        "--chain-method", "sequential", "-o", str(out), "-q",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "r_hat" in r.output and "ess_bulk" in r.output and "divergences:" in r.output
    idata = az.from_netcdf(out)
    assert idata.posterior["mu"].shape == (2, 100)
    assert idata.sample_stats["diverging"].shape == (2, 100)
    opts = json.loads(idata.posterior.attrs["fglang_attrs"])["options"]
    assert opts["target_accept"] == 0.9 and opts["chain_method"] == "sequential"
    r = _run("summary", str(out))
    assert r.exit_code == 0 and "r_hat" in r.output and "theta[0]" in r.output


@pytest.mark.heavy
def test_fit_console_script_subprocess(data_file, tmp_path):
    """The installed entry point, as a user runs it."""
    exe = shutil.which("fglang", path=str(Path(sys.executable).parent)) or shutil.which("fglang")
    assert exe, "the fglang console script is not installed"
    out = tmp_path / "post.nc"
    env = {k: v for k, v in os.environ.items() if k not in ("FGLANG_CACHE_DIR", "FGLANG_NO_CACHE")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    cmd = [exe, "fit", MODEL, "--data", data_file, "--backend", "vi", "--steps", "200", "-o", str(out), "-q",
           "--timings"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "theta[0]" in p.stdout and "Traceback" not in p.stderr
    assert az.from_netcdf(out).posterior["theta"].shape == (1, 1000, 8)
    assert any((tmp_path / "cache" / "fglang" / "jax").iterdir())  # the compilation cache is used
    # --timings: every phase of a fresh process's fit, and the programs XLA compiled into the empty cache
    for phase in ("parse", "check", "bind", "import", "trace", "compile", "run", "summary", "write", "total"):
        assert f"  {phase} " in p.stderr, (phase, p.stderr)
    # (a cold process may still load a few from the cache: a program compiled twice in it, the second time loaded)
    assert re.search(r"programs compiled: [1-9]\d*, programs from cache: \d+\n", p.stderr), p.stderr


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--backend", "mcmc", "--steps", "10"], "--steps"),
        (["--backend", "mcmc", "--guide", "mvn"], "--guide"),
        (["--backend", "vi", "--chains", "2"], "--chains"),
        (["--backend", "vi", "--iters", "5"], "--iters"),
        (["--backend", "nuts"], "--backend"),
        (["--backend", "vi", "--steps", "many"], "--steps"),
    ],
)
def test_bad_options_exit_2(data_file, args, flag):
    r = _run("fit", MODEL, "--data", data_file, *args)
    assert r.exit_code == 2, r.output
    assert flag in r.output
    _no_traceback(r)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "vi", "--guide", "flow"], "unknown guide 'flow'"),
        (["--backend", "mcmc", "--chain-method", "threads"], "chain_method"),
        (["--backend", "mcmc", "--samples", "0"], "samples must be a positive whole number"),
    ],
)
def test_bad_option_values_exit_1(data_file, args, message):
    r = _run("fit", MODEL, "--data", data_file, *args, "-q")
    assert r.exit_code == 1, r.output
    assert message in r.output
    _no_traceback(r)


@pytest.mark.skipif(bool(jax.devices()[0].platform == "gpu"), reason="a GPU is present")
@pytest.mark.parametrize("backend", ["vi", "mcmc"])
def test_device_gpu_without_gpu(data_file, backend):
    r = _run("fit", MODEL, "--data", data_file, "--backend", backend, "--device", "gpu", "-q")
    assert r.exit_code == 1, r.output
    assert "no GPU" in r.output and "--device cpu" in r.output
    _no_traceback(r)


def test_init_file(data_file, tmp_path):
    good = tmp_path / "init.json"
    good.write_text(json.dumps({"mu": 2.0, "tau": 1.5, "theta_raw": [0.0] * 8}))
    r = _run("fit", MODEL, "--data", data_file, "--backend", "vi", "--steps", "50", "--init", str(good), "-q")
    assert r.exit_code == 0, r.output
    for content, message in [
        ({"tua": 1.0}, "did you mean 'tau'"),
        ({"theta_raw": [0.0, 1.0]}, "has shape [2], the var has [8]"),
        ({"tau": -2.0}, "outside the var's support"),
    ]:
        bad = tmp_path / "bad_init.json"
        bad.write_text(json.dumps(content))
        r = _run("fit", MODEL, "--data", data_file, "--backend", "mcmc", "--init", str(bad), "-q")
        assert r.exit_code == 1, r.output
        assert message in r.output
        _no_traceback(r)


def test_data_mistake_is_located(tmp_path):
    f = tmp_path / "d.json"
    f.write_text(json.dumps({**EIGHT_SCHOOLS, "sigma": [1.0] * 7}))
    r = _run("fit", MODEL, "--data", str(f), "--backend", "vi", "-q")
    assert r.exit_code == 1
    assert "eight_schools.fg:" in r.output and "sigma" in r.output
    _no_traceback(r)


def test_summary_errors(tmp_path):
    r = _run("summary", str(tmp_path / "missing.nc"))
    assert r.exit_code == 1 and "not found" in r.output
    bad = tmp_path / "bad.nc"
    bad.write_text("garbage")
    r = _run("summary", str(bad))
    assert r.exit_code == 1 and "not a readable" in r.output
    _no_traceback(r)


def test_out_unwritable(data_file, tmp_path):
    (tmp_path / "a_file").write_text("")
    out = tmp_path / "a_file" / "p.nc"
    r = _run("fit", MODEL, "--data", data_file, "--backend", "vi", "--steps", "20", "-o", str(out), "-q")
    assert r.exit_code == 1 and "cannot write" in r.output
    _no_traceback(r)


@pytest.mark.heavy
def test_prior_from_posterior_file(data_file, tmp_path):
    """``--prior post.nc``: the earlier fit's marginals become the priors (a sequential update)."""
    first = tmp_path / "first.nc"
    r = _run("fit", MODEL, "--data", data_file, "--backend", "vi", "--steps", "300", "-o", str(first), "-q")
    assert r.exit_code == 0, r.output
    second = tmp_path / "second.nc"
    r = _run(
        "fit", MODEL, "--data", data_file, "--backend", "vi", "--steps", "300",
        "--prior", str(first), "-o", str(second), "-q",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    a, b = load_posterior(first), load_posterior(second)
    assert np.all(np.isfinite(b.mean("theta"))) and b.sd("mu") < a.sd("mu") * 1.2


def test_arviz_import_notice_is_not_a_user_warning(tmp_path):
    """ArviZ 0.23 warns on its first import of the day (a FutureWarning about
    its own coming refactor, stamped in the user's cache), which the CLI
    printed as a ``warning:`` line under the day's first written posterior:
    fglang imports it with that notice silenced. A fresh cache: the notice's day."""
    code = "from fglang.runtime.posterior import import_arviz; import_arviz()"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    assert "ArviZ is undergoing" not in p.stderr
