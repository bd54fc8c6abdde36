"""The two-level GBP schedule (fglang/runtime/gbp/coarse.py, issue 14): flooding GBP
smoothing with an exact coarse-graph correction between chunks.

Oracles: the exact solve of a loopy linear graph (scipy), sparse
Levenberg-Marquardt's optimum of a synthetic Manhattan pose graph started from its
odometry, and the harmonic extension's rigid motion of a pose chain."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fglang
from fglang.errors import FgError
from fglang.runtime.gbp import GaussianFamily, GaussianGraph, Slot, VariableBlock, coarse, run_gbp
from fglang.runtime.gbp.plan import build_plan

ROOT = Path(__file__).resolve().parents[1]


def _manhattan(n: int, seed: int):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from manhattan import manhattan_graph
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return manhattan_graph(n, seed, size=8)


def _cost(data, poses) -> float:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from g2o import pose_graph_cost
    finally:
        sys.path.remove(str(ROOT / "examples"))
    return pose_graph_cost(data, np.asarray(poses))


@pytest.fixture()
def _x64() -> Iterator[None]:
    with jax.enable_x64(True):
        yield


def pair(inp, a, b):
    return inp["A"] @ a + inp["B"] @ b - inp["c"]


def unary(inp, a):
    return a - inp["c"]


def test_linear_loopy_graph_is_solved_exactly(_x64: None) -> None:
    """A loopy linear graph of 2-d nodes under ``multigrid``: the exact posterior mean (scipy solve)."""
    rng = np.random.default_rng(3)
    n = 40
    src = np.concatenate([np.arange(n - 1), rng.integers(0, n, 15)])
    dst = np.concatenate([np.arange(1, n), rng.integers(0, n, 15)])
    keep = src != dst
    src, dst = src[keep], dst[keep]
    m = len(src)
    a = rng.standard_normal((m, 2, 2))
    b = rng.standard_normal((m, 2, 2))
    c = rng.standard_normal((m, 2))
    prec = rng.uniform(0.5, 2.0, (m, 2))
    fams = (
        GaussianFamily("pair", m, (Slot("x", src), Slot("x", dst)), pair, {"A": a, "B": b, "c": c}, prec),
        GaussianFamily("prior", n, (Slot("x", np.arange(n)),), unary, {"c": np.zeros((n, 2))}, 0.1),
    )
    graph = GaussianGraph((VariableBlock("x", n, 2),), fams)
    h = np.eye(2 * n) * 0.1
    g = np.zeros(2 * n)
    for k in range(m):
        j = np.zeros((2, 2 * n))
        j[:, 2 * src[k]:2 * src[k] + 2] += a[k]
        j[:, 2 * dst[k]:2 * dst[k] + 2] += b[k]
        h += j.T @ (prec[k][:, None] * j)
        g += j.T @ (prec[k] * c[k])
    exact = np.linalg.solve(h, g).reshape(n, 2)
    res = run_gbp(graph, schedule="multigrid", dtype=jnp.float64, tol=1e-10, iters=400)
    assert res.converged and res.info["coarse_corrections"] > 0
    np.testing.assert_allclose(np.asarray(res.means["x"]), exact, atol=1e-7)


def test_pose_graph_defaults_reach_the_gauss_newton_optimum() -> None:
    """A 120-pose Manhattan graph from its odometry, gbp with no options (auto picks multigrid):
    sparse Levenberg-Marquardt's cost (examples/g2o.py) to 1e-4 relative."""
    data, init = _manhattan(120, seed=1)
    model = fglang.load(ROOT / "examples" / "m3500.fg")
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from g2o import solve_levenberg_marquardt
    finally:
        sys.path.remove(str(ROOT / "examples"))
    best = _cost(data, solve_levenberg_marquardt(data, np.asarray(init["pose"])).poses)
    post = model.fit(data, backend="gbp", init=init, draws=4, iters=300)
    assert post.attrs["schedule"] == "multigrid" and post.attrs["coarse_corrections"] > 0
    assert post.attrs["converged"]
    assert _cost(data, post.mean("pose")) == pytest.approx(best, rel=1e-4)


def test_harmonic_prolongation_is_the_rigid_motion_of_a_chain() -> None:
    """An aggregate of a pose chain moves as its root moves: the linearized rigid motion
    (rotating the root by d turns the segment about it), not a uniform shift."""
    data, init = _manhattan(40, seed=2)
    model = fglang.load(ROOT / "examples" / "m3500.fg")
    bm = model.bind(data)
    from fglang.runtime.gbp.lowering import to_graph

    graph = to_graph(bm, set(), set())
    plan, _, _ = build_plan(graph, dtype=np.float64, schedule="flooding", dropout=0.0, chunk=5)
    lay = coarse.layout(plan, graph)
    # the odometry chain only: every aggregate is a chain segment and P the segment's rigid motion
    chain = np.asarray(data["dst"]) == np.asarray(data["src"]) + 1
    lay = coarse.Layout(lay.node_off, lay.dof_off, lay.dims, lay.node_dof,
                        tuple(None if s is None else tuple(ids[chain] for ids in s) for s in lay.slot_nodes))
    ag = coarse.aggregation(lay, 5)
    poses = np.asarray(init["pose"], np.float64)
    with jax.enable_x64(True):
        fams, _ = _terms_at(plan, graph, poses)
    fams = tuple(None if t is None else (tuple(j[chain] for j in t[0]), t[1][chain], t[2][chain])
                 for t in fams)
    p = coarse.prolongation(lay, ag, fams).toarray()
    a = 1  # the second aggregate: root pose 5, poses 5..9
    members = np.nonzero(ag.agg == a)[0]
    root = members[0]
    col = ag.coarse_off[a] + 2  # the root's angle
    for i in members:
        dx, dy = poses[i, :2] - poses[root, :2]
        np.testing.assert_allclose(p[3 * i:3 * i + 3, col], [-dy, dx, 1.0], atol=1e-6)


def _terms_at(plan, graph, poses):
    from fglang.runtime.gbp.plan import family_floors, variable_data
    from fglang.runtime.gbp.state import EngineData, Settings

    _, families, scales = build_plan(graph, dtype=np.float64, schedule="flooding", dropout=0.0, chunk=5)
    _, variables, floors = variable_data(plan, {"pose": poses}, {}, scales, 1e-10, np.float64)
    z = np.asarray(0.0)
    settings = Settings(*(z,) * len(Settings._fields))
    data = EngineData(family_floors(plan, families, floors, np.float64), variables, settings)
    return coarse.terms_jit(plan, data, (jnp.asarray(poses),))


def test_auto_keeps_flooding_for_linear_models() -> None:
    m = fglang.compile(
        "model m\ndata N: int\ndata y[N]: real\nvar x[N]: real ~ normal(0, 1)\n"
        "factor obs[i in 0:N]: y[i] ~ normal(x[i], 1)\n"
    )
    post = m.fit({"N": 40, "y": np.linspace(0, 1, 40)}, backend="gbp", draws=4)
    assert post.attrs["schedule"] == "flooding"


def test_multigrid_refuses_a_robust_factor_where_it_is_written() -> None:
    m = fglang.compile(
        "model m\ndata N: int\ndata y[N]: real\nvar x[N]: real ~ normal(0, 1)\n"
        "factor obs[i in 0:N]: y[i] ~ huber(x[i], 1, 1.345)\n"
    )
    with pytest.raises(FgError, match="schedule multigrid cannot take factor 'obs'") as err:
        m.fit({"N": 3, "y": [1.0, 2.0, 3.0]}, backend="gbp", schedule="multigrid")
    assert ":5:" in str(err.value) and "use schedule flooding" in str(err.value)
