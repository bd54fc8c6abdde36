"""Findings of the CLI campaign (issue 16, `python -m tests.fuzz.run --campaign cli --seed 8`) and of bad init
files tried on every backend: each was a traceback or a silent wrong start on main, now a clean error."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fglang.cli import app

REAL = """model r
data N: int
data y[N]: real
var mu: real ~ normal(0, 1)
factor obs[n in 0:N]: y[n] ~ normal(mu, 1)
"""


def test_plot_of_an_empty_path_is_an_error_not_a_traceback(tmp_path, monkeypatch):
    """``fglang plot ""``: main raised ValueError("PosixPath('.') has an empty name") making the default -o."""
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["plot", "", "--names", ","])
    assert r.exit_code == 1 and (r.exception is None or isinstance(r.exception, SystemExit)), r.exception
    assert "is not a file" in r.output


@pytest.mark.parametrize(("backend", "flags"), [
    ("gbp", ["--iters", "3"]),  # main: ValueError "init of 'mu' is not finite" from the GBP plan
    ("vi", ["--dtype", "float32", "--steps", "5"]),  # main: the inf start silently replaced by a random one
    ("mcmc", ["--dtype", "float32", "--chains", "1", "--warmup", "5", "--samples", "5"]),  # main: "mu = inf"
])
def test_an_init_past_float32_is_refused_where_the_fit_may_run_in_float32(tmp_path, backend, flags):
    (tmp_path / "r.fg").write_text(REAL)
    (tmp_path / "d.json").write_text(json.dumps({"N": 2, "y": [0.0, 1.0]}))
    (tmp_path / "i.json").write_text('{"mu": 1e39}')
    r = CliRunner().invoke(app, ["fit", str(tmp_path / "r.fg"), "--data", str(tmp_path / "d.json"), "--init",
                                 str(tmp_path / "i.json"), "--backend", backend, "-q", *flags])
    assert r.exit_code == 1, r.output
    assert "init for 'mu' holds 1e+39, past float32's range (+-3.4e+38)" in r.output and "--dtype float64" in r.output


def test_the_same_init_in_float64_is_a_start_like_any_other():
    import fglang
    from fglang.runtime.inits import check_init

    bm = fglang.compile(REAL, "r.fg").bind({"N": 2, "y": [0.0, 1.0]})
    assert float(check_init(bm, {"mu": 1e39}, "i.json", "float64")["mu"]) == 1e39


def test_a_float64_start_is_shown_as_given_in_the_bad_start_error():
    """main evaluated the explanation in float32: an init of 1e308 was reported as 'mu = inf'."""
    import fglang
    from fglang.errors import FgError

    with pytest.raises(FgError, match=r"at the start \(mu = 1e\+308\)"):
        fglang.compile(REAL, "r.fg").fit({"N": 2, "y": [0.0, 1.0]}, backend="map", init={"mu": 1e308})


@pytest.mark.parametrize(("out", "why"), [("fifo.nc", "it is not a regular file"), ("nodir/p.nc", "its folder nodir "
                                          "does not exist"), ("sub", "it is a directory")])
@pytest.mark.parametrize("cmd", ["fit", "predict"])
def test_an_output_the_write_would_refuse_is_refused_before_the_fit(tmp_path, monkeypatch, out, why, cmd):
    """Main fitted, printed the summary and only then refused -o onto a FIFO (a missing folder: the same)."""
    import os

    import fglang.runtime.fit as fit_module

    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.fg").write_text(REAL)
    (tmp_path / "d.json").write_text(json.dumps({"N": 2, "y": [0.0, 1.0]}))
    os.mkfifo(tmp_path / "fifo.nc")
    (tmp_path / "sub").mkdir()
    monkeypatch.setattr(fit_module, "fit", lambda *a, **k: pytest.fail("fitted before refusing -o"))
    args = ["fit", "r.fg", "--data", "d.json", "-q"] if cmd == "fit" else ["predict", "r.fg", "-p", "p.nc", "--data",
                                                                           "d.json"]
    r = CliRunner().invoke(app, [*args, "-o", out])
    assert r.exit_code == 1, r.output
    assert f"cannot write {out}: {why}" in r.output and "┃" not in r.output
