"""``init="map"`` / ``--init map``: start any backend at the posterior mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

import fglang
from fglang.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _pose_graph():
    m = fglang.load(EXAMPLES / "pose_graph_2d.fg")
    data = json.loads((EXAMPLES / "data" / "pose_graph_2d.json").read_text())
    init = json.loads((EXAMPLES / "data" / "pose_graph_2d_init.json").read_text())
    return m, data, init


def test_gbp_started_at_the_map_found_from_the_file_guess(tmp_path):
    m, data, init = _pose_graph()
    mode = m.fit(data, backend="map", init=init)
    path = tmp_path / "init.json"
    path.write_text(json.dumps(init))
    gbp = m.fit(data, backend="gbp", init=f"map:{path}", dtype="float64", iters=1000, damping=0.5)
    # GBP linearizes at the mode, which is then its fixed point
    np.testing.assert_allclose(gbp.mean("pose"), mode.mean("pose"), atol=5e-3)
    same = m.fit(data, backend="gbp", init=("map", init), dtype="float64", iters=1000, damping=0.5)
    np.testing.assert_allclose(same.mean("pose"), gbp.mean("pose"))


def test_the_map_from_the_default_start_is_not_the_pose_graph_optimum():
    # why map:FILE exists: a pose graph started at zero finds a poor local mode
    m, data, init = _pose_graph()
    assert m.fit(data, backend="map").attrs["cost"] > 10 * m.fit(data, backend="map", init=init).attrs["cost"]


def test_nuts_started_at_the_map(tmp_path):
    m = fglang.load(EXAMPLES / "eight_schools.fg")
    data = json.loads((EXAMPLES / "data" / "eight_schools.json").read_text())
    post = m.fit(data, backend="mcmc", init="map", chains=1, warmup=50, samples=50)
    assert np.isfinite(post.mean("mu"))


def test_cli_init_map(tmp_path):
    r = CliRunner().invoke(app, ["fit", str(EXAMPLES / "random_walk.fg"), "--data",
                                 str(EXAMPLES / "data" / "random_walk.json"), "--backend", "gbp", "--init", "map",
                                 "-q"])
    assert r.exit_code == 0, r.output
