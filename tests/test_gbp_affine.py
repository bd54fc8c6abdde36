"""The affine analysis that lets GBP skip re-linearizing linear families."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fglang
from fglang.runtime import xla_options
from fglang.runtime.gbp.affine import is_affine, reads_consts
from fglang.runtime.gbp.lowering import to_graph
from fglang.runtime.gbp.plan import build_plan

EX = Path(__file__).resolve().parent.parent / "examples"
X2 = jax.ShapeDtypeStruct((2,), jnp.float32)
DATA = {"a": jnp.arange(6.0), "i": jnp.asarray(3)}


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (lambda d, x, y: x - y, True),
        (lambda d, x, y: 2.0 * x - d["a"][d["i"]] * y + 1.0, True),
        (lambda d, x, y: (x - y) / d["a"][d["i"]], True),
        (lambda d, x, y: jnp.dot(d["a"][:2], x) + jnp.sum(y), True),
        (lambda d, x, y: jnp.concatenate([x, y])[1:3] - jnp.flip(x), True),
        (lambda d, x, y: x * y, False),
        (lambda d, x, y: jnp.dot(x, y), False),
        (lambda d, x, y: x / y, False),
        (lambda d, x, y: jax.nn.relu(x) - y, False),
        (lambda d, x, y: jnp.sin(x) + y, False),
        (lambda d, x, y: x**2 - y, False),
        (lambda d, x, y: d["a"][jnp.argmax(x)] - y, False),
        (lambda d, x, y: jnp.where(d["a"][:2] > 1, x, y), True),
        (lambda d, x, y: jnp.where(x > 0, x, y), False),
        (lambda d, x, y: jnp.sin(d["a"][:2]) * x, True),
    ],
)
def test_is_affine(fn, expected):
    assert is_affine(fn, DATA, [X2, X2]) is expected


def test_is_affine_agrees_with_second_differences():
    # An affine answer must be exactly affine: f(x + h) - 2 f(x) + f(x - h) = 0.
    fn = lambda d, x, y: 3.0 * x - jnp.cumsum(y) + d["a"][:2]  # noqa: E731
    assert is_affine(fn, DATA, [X2, X2])
    rng = np.random.default_rng(0)
    x, y, hx, hy = (jnp.asarray(rng.normal(size=2)) for _ in range(4))
    second = fn(DATA, x + hx, y + hy) - 2 * fn(DATA, x, y) + fn(DATA, x - hx, y - hy)
    assert np.allclose(second, 0.0, atol=1e-5)


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (lambda d, x, y: x - y, False),
        (lambda d, x, y: (x - y) * 2.0 + jnp.ones(2), False),
        (lambda d, x, y: x - y + 0.0 * d["i"], True),  # reads it, even if to no effect: safe side
        (lambda d, x, y: x - d["a"][:2], True),
        (lambda d, x, y: (x - y) / d["a"][d["i"]], True),
        (lambda d, x, y: jnp.where(d["a"][:2] > 1, x, y), True),
        (lambda d, x, y: jnp.dot(d["a"][:2], x) + y, True),
    ],
)
def test_reads_consts(fn, expected):
    # Whether the residual's value depends on per-member data (the node values held fixed).
    assert reads_consts(fn, DATA, [X2, X2]) is expected


def _plan(path, data):
    graph = to_graph(fglang.load(path).bind(data))
    plan, _, _ = build_plan(graph, dtype=np.float32, schedule="flooding", dropout=0.0, chunk=5)
    return {fp.name: fp for fp in plan.families}, {vp.name: vp for vp in plan.variables}


def test_denoise_families_are_affine_and_observations_fold_into_priors():
    fams, vars_ = _plan(EX / "denoise_normal.fg", {"H": 6, "W": 5, "img": np.zeros((6, 5))})
    assert all(fp.affine for fp in fams.values())
    assert fams["obs"].folded and not fams["right"].folded
    assert vars_["x"].affine_only
    # smoothness reads only the nodes (its indices choose them): one Jacobian row
    # for all members; the observations read img[i, j]
    assert fams["right"].uniform and fams["down"].uniform and not fams["obs"].uniform


def test_pose_graph_odometry_is_not_affine():
    data = json.loads((EX / "data" / "pose_graph_2d.json").read_text())
    fams, vars_ = _plan(EX / "pose_graph_2d.fg", data)
    assert fams["anchor"].affine and not fams["odo"].affine
    assert not vars_["pose"].affine_only


def test_xla_options_respect_user_flags(monkeypatch):
    monkeypatch.delenv("FGLANG_KEEP_XLA_FLAGS", raising=False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=reduce")
    xla_options.configure()
    assert xla_options.YNN_FLAG not in os.environ["XLA_FLAGS"]
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    monkeypatch.setattr(xla_options, "_jaxlib_version", lambda: (0, 10))
    xla_options.configure()
    assert os.environ["XLA_FLAGS"].endswith(xla_options.YNN_FLAG)
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setattr(xla_options, "_jaxlib_version", lambda: (0, 4))
    xla_options.configure()
    assert os.environ["XLA_FLAGS"] == ""
