"""The command line's front-end commands: ``fglang check`` and ``fglang compile``.

Most cases run in-process with typer's CliRunner; two run the installed
console script in a subprocess, as a user would, to be sure that no
traceback reaches the terminal.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SPEC_MODELS, expected_members, spec_data
from typer.testing import CliRunner

from fglang.cli import app

runner = CliRunner()

BROKEN = (
    "model broken\ndata T: int\ndata sigma: positive\nvar x[T]: real\nfactor obs[t in 0:T]: 0 ~ normal(x[t], sigm)\n"
)


def fglang_script() -> str | None:
    exe = Path(sys.executable).parent / "fglang"
    return str(exe) if exe.exists() else shutil.which("fglang")


def write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps({k: np.asarray(v).tolist() for k, v in data.items()}))
    return path


@pytest.fixture
def spec_files(tmp_path) -> dict[str, Path]:
    out = {}
    for name, src in SPEC_MODELS.items():
        p = tmp_path / f"{name}.fg"
        p.write_text(src)
        out[name] = p
    return out


@pytest.mark.parametrize("name", sorted(SPEC_MODELS))
def test_check_accepts_every_spec_model(spec_files, tmp_path, name):
    r = runner.invoke(app, ["check", str(spec_files[name])])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == f"{spec_files[name]}: model {name} is well formed"
    data = write_json(tmp_path / f"{name}.json", spec_data()[name])
    r = runner.invoke(app, ["check", str(spec_files[name]), "--data", str(data)])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip().endswith(f"is well formed with {data}")


@pytest.mark.parametrize("name", sorted(SPEC_MODELS))
def test_compile_emit_ir_prints_family_sizes(spec_files, tmp_path, name):
    r = runner.invoke(app, ["compile", str(spec_files[name]), "--emit", "ir"])
    assert r.exit_code == 0, r.stderr
    assert f"model {name}" in r.stdout and "factor families:" in r.stdout
    data = spec_data()[name]
    path = write_json(tmp_path / f"{name}.json", data)
    r = runner.invoke(app, ["compile", str(spec_files[name]), "--emit", "ir", "--data", str(path)])
    assert r.exit_code == 0, r.stderr
    members = dict(re.findall(r"^  (\w+)(?:\[.*\])?: \w+  members=(\d+)", r.stdout, re.M))
    expect = expected_members(name, data)
    assert {k: int(v) for k, v in members.items()} == expect
    total = sum(expect.values())
    assert re.search(rf"^totals: .* {total} factors$", r.stdout, re.M)


def test_compile_random_walk_text(spec_files, tmp_path):
    path = write_json(tmp_path / "rw.json", {"T": 50, "y": np.zeros(50)})
    r = runner.invoke(app, ["compile", str(spec_files["random_walk"]), "--data", str(path)])
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert "  init: normal  members=1" in lines
    assert "  step[t in 1:T]: normal  members=49" in lines
    assert "  obs[t in 0:T]: normal  members=50" in lines


def test_compile_denoise_text(spec_files, tmp_path):
    H, W = 6, 7
    path = write_json(tmp_path / "d.json", {"H": H, "W": W, "img": np.zeros((H, W))})
    r = runner.invoke(app, ["compile", str(spec_files["denoise"]), "--emit", "ir", "--data", str(path)])
    assert r.exit_code == 0
    assert f"members={H * W} grid=[{H}, {W}]" in r.stdout
    assert f"members={H * (W - 1)} grid=[{H}, {W - 1}]" in r.stdout
    assert f"members={(H - 1) * W} grid=[{H - 1}, {W}]" in r.stdout


@pytest.mark.parametrize(
    "path", sorted(Path(__file__).resolve().parents[1].glob("examples/*.fg")), ids=lambda p: p.name
)
def test_check_and_compile_every_example_file(path):
    r = runner.invoke(app, ["check", str(path)])
    assert r.exit_code == 0, r.stderr
    r = runner.invoke(app, ["compile", str(path), "--emit", "ir"])
    assert r.exit_code == 0, r.stderr


def test_check_broken_model_exit_1(tmp_path):
    p = tmp_path / "broken.fg"
    p.write_text(BROKEN)
    r = runner.invoke(app, ["check", str(p)])
    assert r.exit_code == 1
    lines = r.stderr.splitlines()
    assert lines[0] == f"{p}:5:40: unknown name 'sigm'; did you mean 'sigma'?"
    assert lines[1] == "    factor obs[t in 0:T]: 0 ~ normal(x[t], sigm)"
    assert lines[2] == "    " + " " * 39 + "^^^^"
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stdout == ""


def test_check_bad_data_exit_1(spec_files, tmp_path):
    path = write_json(tmp_path / "bad.json", {"T": 3, "y": [1.0, 2.0]})
    r = runner.invoke(app, ["check", str(spec_files["random_walk"]), "--data", str(path)])
    assert r.exit_code == 1
    assert re.match(
        rf"{re.escape(str(spec_files['random_walk']))}:\d+:1: data 'y' in {re.escape(str(path))} has shape", r.stderr
    )
    r = runner.invoke(app, ["check", str(spec_files["random_walk"]), "--data", str(tmp_path / "missing.json")])
    assert r.exit_code == 1 and "data file not found" in r.stderr


def test_missing_model_file_exit_1(tmp_path):
    r = runner.invoke(app, ["check", str(tmp_path / "nope.fg")])
    assert r.exit_code == 1
    assert r.stderr.startswith(f"{tmp_path / 'nope.fg'}: cannot read model file")


@pytest.mark.parametrize(
    "args",
    [["check"], ["check", "--bogus", "x.fg"], ["nosuchcommand"], ["compile", "x.fg", "--emit", "llvm"]],
)
def test_usage_errors_exit_2(args, tmp_path):
    if args[0] == "compile":
        p = tmp_path / "x.fg"
        p.write_text("model x\nvar a: real\n")
        args = ["compile", str(p), "--emit", "llvm"]
    r = runner.invoke(app, args)
    assert r.exit_code == 2
    assert "Traceback" not in r.stderr + r.stdout


# ------------------------------------------------------------------ as a user runs it
@pytest.mark.skipif(fglang_script() is None, reason="the fglang console script is not installed")
def test_console_script_broken_model(tmp_path):
    p = tmp_path / "broken.fg"
    p.write_text(BROKEN)
    r = subprocess.run([fglang_script(), "check", str(p)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{p}:5:40: unknown name 'sigm'")
    assert "    factor obs[t in 0:T]: 0 ~ normal(x[t], sigm)\n" + " " * 43 + "^^^^" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


@pytest.mark.skipif(fglang_script() is None, reason="the fglang console script is not installed")
def test_console_script_syntax_error(tmp_path):
    p = tmp_path / "syntax.fg"
    p.write_text("model s\nvar x real\n")
    r = subprocess.run([fglang_script(), "check", str(p)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.splitlines()[:3] == [
        f"{p}:2:7: unexpected 'real'; expected ':', '['",
        "    var x real",
        "          ^^^^",
    ]


@pytest.mark.skipif(fglang_script() is None, reason="the fglang console script is not installed")
def test_console_script_extra_data_keys_warn(tmp_path):
    model = tmp_path / "rw.fg"
    model.write_text(SPEC_MODELS["random_walk"])
    data = write_json(tmp_path / "rw.json", {"T": 3, "y": [0.0, 1.0, 2.0], "zz": 1})
    r = subprocess.run(
        [fglang_script(), "check", str(model), "--data", str(data)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == f"warning: {data}: ignoring keys the model does not declare: zz"
    assert "well formed" in r.stdout


def test_checking_a_model_does_not_import_jax():
    # `fglang check` and fglang.load are front-end work: importing JAX alone
    # took about a second of the 1.9 s a check used to take.
    code = (
        "import sys, fglang\n"
        "from fglang.cli import app\n"
        "m = fglang.load(sys.argv[1])\n"
        "assert m.ir.families\n"
        "print(sorted(k for k in ('jax', 'numpyro', 'arviz') if k in sys.modules))\n"
    )
    model = Path(__file__).resolve().parents[1] / "examples" / "denoise.fg"
    out = subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
