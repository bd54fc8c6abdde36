"""The gbp backend's defaults on nonlinear graphs (issue 14): chosen damping,
the undamped-after-relinearization schedule, SPEC's pose graph and the
quadrant XOR network with no options given."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import fglang
from fglang.runtime.gbp.engine import AUTO_DAMPING

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _pose_graph():
    data = json.loads((EXAMPLES / "data" / "pose_graph_2d.json").read_text())
    raw = json.loads((EXAMPLES / "data" / "pose_graph_2d_init.json").read_text())
    init = {k: np.asarray(v) for k, v in raw.items()}
    return fglang.load(EXAMPLES / "pose_graph_2d.fg"), data, init


def _cost(data, poses):
    sys.path.insert(0, str(EXAMPLES))
    try:
        from g2o import pose_graph_cost
    finally:
        sys.path.remove(str(EXAMPLES))
    return pose_graph_cost(data, np.asarray(poses))


def test_linear_model_defaults_to_no_damping():
    m = fglang.compile(
        "model m\ndata N: int\ndata y[N]: real\nvar x[N]: real ~ normal(0, 1)\n"
        "factor obs[i in 0:N]: y[i] ~ normal(x[i], 1)\n"
    )
    post = m.fit({"N": 3, "y": [1.0, 2.0, 3.0]}, backend="gbp", dtype="float64")
    assert post.attrs["damping"] == 0.0
    assert post.attrs["options"]["damping"] is None
    np.testing.assert_allclose(post.mean("x"), [0.5, 1.0, 1.5], atol=1e-8)


def test_pose_graph_defaults_reach_the_map_optimum():
    """SPEC's pose graph from the odometry guess, gbp with no options: the map backend's cost (1e-5 relative)."""
    m, data, init = _pose_graph()
    best = _cost(data, m.fit(data, backend="map", init=init).mean("pose"))
    post = m.fit(data, backend="gbp", init=init, draws=4)
    assert post.attrs["damping"] == AUTO_DAMPING
    assert _cost(data, post.mean("pose")) == pytest.approx(best, rel=1e-5)


def test_undamped_schedule_reaches_the_same_optimum():
    """A few undamped iterations after each re-linearization (Ortiz et al.), then damping: same fixed point."""
    m, data, init = _pose_graph()
    best = _cost(data, m.fit(data, backend="map", init=init).mean("pose"))
    post = m.fit(data, backend="gbp", init=init, draws=4, undamped=5, relinearize=0.01)
    assert _cost(data, post.mean("pose")) == pytest.approx(best, rel=1e-5)


@pytest.mark.heavy
def test_quadrant_xor_is_learned_with_defaults():
    """SPEC's mlp_classifier_gbp on the XOR of the signs of two standard-normal inputs, no options given."""
    m = fglang.load(EXAMPLES / "mlp_classifier_gbp.fg")
    seed = 0
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((64, 2))
    y = ((x[:, 0] > 0) != (x[:, 1] > 0)).astype(int)
    post = m.fit({"N": 64, "D": 2, "H": 8, "X": x, "label": y}, backend="gbp", seed=seed, draws=4)
    w1, b1, w2, b2 = (np.asarray(post.mean(k)) for k in ("W1", "b1", "w2", "b2"))
    h = np.maximum(x @ w1.T + b1, 0)
    assert np.mean(((h @ w2 + b2) > 0) == y) > 0.9
