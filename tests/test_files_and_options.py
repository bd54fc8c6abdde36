"""Output files, posterior files and option values: clean errors, nothing lost.

Regression tests for issue 16's "Options and files" and "Silent wrong
answers" items: every case here was a traceback, a silently replaced special
file or a wrong answer with exit 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

import fglang
from fglang.cli import app
from fglang.errors import FgError
from fglang.io.atomic import TEMP_MARK, clean_stale, write_atomic

NORMAL = """
model nn
data N: int
data y[N]: real
var mu: real ~ normal(0, 10)
factor obs[n in 0:N]: y[n] ~ normal(mu, 1)
"""
DATA = {"N": 4, "y": [0.5, 1.0, 1.5, 2.0]}


@pytest.fixture(scope="module")
def posterior_file(tmp_path_factory):
    post = fglang.compile(NORMAL, "nn.fg").fit(DATA, backend="gbp", dtype="float64")
    return post.save(tmp_path_factory.mktemp("post") / "post.nc")


# ---------------------------------------------------------------- output paths
def test_output_onto_a_fifo_or_device_is_refused(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(FgError, match="not a regular file"):
        write_atomic(fifo, b"x")
    assert fifo.is_fifo()
    with pytest.raises(FgError, match="not a regular file"):
        write_atomic("/dev/null", b"x")
    assert Path("/dev/null").is_char_device()
    with pytest.raises(FgError, match="is a directory"):
        write_atomic(tmp_path, b"x")


def test_output_through_a_symlink_replaces_its_target(tmp_path):
    target = tmp_path / "real.txt"
    target.write_bytes(b"old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    write_atomic(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"


def test_unwritable_output_is_a_clean_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(FgError, match="cannot write"):
        write_atomic(blocker / "sub" / "x.png", b"x")  # a folder under a regular file


def test_stale_temporary_files_are_cleaned(tmp_path):
    stale = tmp_path / f".out.json.abc{TEMP_MARK}"
    fresh = tmp_path / f".out.json.def{TEMP_MARK}"
    stale.write_text("")
    fresh.write_text("")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    clean_stale(tmp_path, "out.json")
    assert not stale.exists() and fresh.exists()


def test_sigterm_during_a_write_leaves_no_temporary_file(tmp_path):
    code = textwrap.dedent(f"""
        import time
        from fglang.io.atomic import write_atomic
        def slow(tmp):
            open(tmp, "w").write("partial")
            print("writing", flush=True)
            time.sleep(30)
        try:
            write_atomic({str(tmp_path / "out.txt")!r}, slow)
        except KeyboardInterrupt:
            raise SystemExit(143)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 143
    assert list(tmp_path.iterdir()) == []


def test_plot_and_graph_to_an_unwritable_path_exit_1(tmp_path, posterior_file):
    blocker = tmp_path / "file"
    blocker.write_text("")
    model = tmp_path / "nn.fg"
    model.write_text(NORMAL)
    r = CliRunner().invoke(app, ["plot", str(posterior_file), "-o", str(blocker / "p.png")])
    assert r.exit_code == 1 and "cannot write" in r.output, r.output
    r = CliRunner().invoke(app, ["graph", str(model), "-o", str(blocker / "g.dot")])
    assert r.exit_code == 1 and "cannot write" in r.output, r.output


# ---------------------------------------------------------------- damaged posterior files
def _damage(src: Path, dst: Path, edit) -> Path:
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f["posterior"].attrs.__delitem__("fglang_model"), "fglang_model is missing"),
        (lambda f: f["posterior"].attrs.__setitem__("fglang_attrs", "{not json"), "fglang_attrs is not valid JSON"),
        (lambda f: f["posterior"].attrs.__setitem__("fglang_node_shapes", "[1, 2]"), "not a JSON dict"),
        (lambda f: f["posterior"].attrs.__setitem__("fglang_node_shapes", '{"mu": "x"}'), "not a list of sizes"),
        (lambda f: f["gaussian_marginals"].attrs.__setitem__("shapes", '{"mu": [[], []], "nu": [[], []]}'),
         "gaussian_marginals has no 'nu__mean'"),
        (lambda f: f.__delitem__("posterior"), "no posterior group"),
    ],
)
def test_damaged_posterior_files_say_what_is_missing(tmp_path, posterior_file, edit, message):
    bad = _damage(posterior_file, tmp_path / "bad.nc", edit)
    with pytest.raises(FgError, match=message):
        fglang.load_posterior(bad)
    r = CliRunner().invoke(app, ["summary", str(bad)])
    assert r.exit_code == 1 and "Traceback" not in r.output


def test_hand_edited_attrs_do_not_break_warnings(tmp_path, posterior_file):
    post = fglang.load_posterior(posterior_file)
    post.attrs.update({"converged": False, "final_change": "big", "observations": [1, 2]})
    assert "last belief change unknown" in post.warnings()[0]
    post.plot(tmp_path / "p.png")


# ---------------------------------------------------------------- options and seeds
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"seed": -1}, "the seed must be a whole number from 0"),
        ({"seed": 2**64}, "the seed must be a whole number from 0"),
        ({"iters": 10**20}, "iters must be at most"),
        ({"tol": -1.0}, "tol must be > 0"),
        ({"damping": float("nan")}, "damping must be a finite number"),
    ],
)
def test_out_of_range_options_are_errors(options, message):
    m = fglang.compile(NORMAL, "nn.fg")
    with pytest.raises(FgError, match=message):
        m.fit(DATA, backend="gbp", **options)


@pytest.mark.parametrize(
    ("backend", "options", "message"),
    [
        ("vi", {"lr": 0.0}, "lr must be > 0"),
        ("vi", {"lr": -1.0}, "lr must be > 0"),
        ("mcmc", {"target_accept": 1.5}, r"target_accept must be in \(0, 1\)"),
        ("gbp", {"epochs": 0, "batch_size": 2}, "epochs must be a positive whole number"),
    ],
)
def test_options_are_range_checked_for_every_backend(backend, options, message):
    m = fglang.compile(NORMAL, "nn.fg")
    with pytest.raises(FgError, match=message):
        m.fit(DATA, backend=backend, **options)


def test_cli_seed_out_of_range_exits_1(tmp_path):
    model = tmp_path / "nn.fg"
    model.write_text(NORMAL)
    data = tmp_path / "d.json"
    data.write_text('{"N": 4, "y": [0.5, 1.0, 1.5, 2.0]}')
    r = CliRunner().invoke(app, ["fit", str(model), "--data", str(data), "--seed", str(2**64), "-q"])
    assert r.exit_code == 1 and "seed" in r.output, r.output


# ---------------------------------------------------------------- predict
def test_predict_refuses_another_models_posterior(posterior_file):
    other = fglang.compile(NORMAL.replace("model nn", "model other"), "other.fg")
    with pytest.raises(FgError, match="fitted to model 'nn', not to 'other'"):
        other.predict(posterior_file, {"N": 2})


def test_sampling_predict_with_other_sizes_is_a_clean_error():
    src = NORMAL.replace("var mu: real", "var z[N]: real ~ normal(0, 1)\nvar mu: real")
    m = fglang.compile(src, "nn.fg")
    post = m.fit(DATA, backend="vi", steps=50)
    with pytest.raises(FgError, match=r"'z' is \[4\] in the posterior, \[2\] here"):
        m.predict(post, {"N": 2})
    assert np.shape(m.predict(post, {"N": 4}).samples("obs"))[1:] == (4,)
