"""GBP on Lie-group vars (rot2, rot3, pose2, pose3): messages on the tangent
space at each node's linearization point, charts moved by retraction
(fglang/runtime/gbp/charts.py).

Oracles: the ``map`` backend's tangent-space Gauss-Newton optimum (GBP's
fixed point is the same point: both linearize the same factors in
``x compose exp(delta)``); on a tree GBP's marginals are exact for the
linearized system, so its sds equal map's Laplace sds there; the real[3]
pose graph of SPEC (examples/m3500.fg) and its pose2 rewrite
(examples/m3500_pose2.fg) have the same optimum, so GBP gives both the same
answer. Graphs are tiny (a dozen nodes), so a fit is mostly its compile
(5-15 s for a pose2 model on the 2-core CI machine, more for rot3 and pose3,
whose jaxlie Jacobians compile slowly); the pose2 loop graph's fits are one
module fixture, and the tests that need a compile of their own (the tree,
pose3, rot2/rot3, the carried prior) are ``heavy``, but for the rot2 chain
(SO(2) compiles fast).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import fglang
from fglang.compiler import lie_jax as L

TIGHT = {"dtype": "float64", "tol": 1e-10, "iters": 3000}


def _pose2_graph(n: int, loops: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    k = np.arange(n, dtype=float)
    truth = np.stack([k, np.sin(k), 0.4 * k], 1)
    src, dst = np.arange(n - 1), np.arange(1, n)
    if loops:
        src, dst = np.r_[src, [0, 2]], np.r_[dst, [n - 1, n - 3]]
    rel = np.asarray(L.between("pose2", truth[src], truth[dst])) + rng.normal(0, 0.02, (src.size, 3))
    data = {"N": n, "M": src.size, "src": src, "dst": dst, "z": rel, "sd": np.full((src.size, 3), 0.05)}
    return data, {"pose": truth + rng.normal(0, 0.05, truth.shape)}


def _wrap(a):
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def _same_pose2(a, b, tol):
    np.testing.assert_allclose(a[:, :2], b[:, :2], atol=tol)
    np.testing.assert_allclose(_wrap(a[:, 2] - b[:, 2]), 0.0, atol=tol)


@pytest.fixture(scope="module")
def loop_graph():
    """A 12-pose pose2 graph with two loop closures: map's optimum and GBP's fit with default options
    (schedule auto = multigrid, dtype auto = float64) but a tight tolerance."""
    data, init = _pose2_graph(12, loops=True)
    model = fglang.load("examples/m3500_pose2.fg")
    mode = model.fit(data, backend="map", init=init, tol=1e-12)
    gbp = model.fit(data, backend="gbp", init=init, tol=1e-10)
    return data, init, mode, gbp


def test_pose2_loop_graph_reaches_maps_optimum(loop_graph):
    _, _, mode, gbp = loop_graph
    assert gbp.attrs["converged"] and gbp.attrs["schedule"] == "multigrid"
    assert gbp.mean("pose").shape == (12, 3) and gbp.cov("pose").shape == (12, 3, 3)
    _same_pose2(gbp.mean("pose"), mode.mean("pose"), 1e-6)
    # loopy GBP's sds are approximate, but of the right size
    np.testing.assert_allclose(gbp.sd("pose"), mode.sd("pose"), rtol=0.2)


def test_pose2_and_real3_models_give_the_same_gbp_answer(loop_graph):
    """SPEC's real[3] pose graph (hand-written between and wrap_angle) and the pose2 model have
    the same optimum: GBP reaches it from the same start on both."""
    data, init, _, gbp = loop_graph
    vec = fglang.load("examples/m3500.fg").fit(data, backend="gbp", init=init, tol=1e-10)
    assert vec.attrs["converged"]
    _same_pose2(gbp.mean("pose"), vec.mean("pose"), 1e-6)


@pytest.mark.heavy
def test_pose2_tree_means_and_sds_equal_maps_laplace():
    """On a chain (a tree) GBP's marginals of the linearized factors are exact: its sds are the
    Laplace sds of map at the same optimum."""
    data, init = _pose2_graph(10, loops=False)
    model = fglang.load("examples/m3500_pose2.fg")
    mode = model.fit(data, backend="map", init=init, tol=1e-12)
    gbp = model.fit(data, backend="gbp", init=init, schedule="flooding", **TIGHT)
    assert gbp.attrs["converged"]
    _same_pose2(gbp.mean("pose"), mode.mean("pose"), 1e-6)
    np.testing.assert_allclose(gbp.cov("pose"), mode.cov("pose"), rtol=1e-5, atol=1e-6 * np.abs(mode.cov("pose")).max())


POSE3 = """model p3
data N: int
data M: int
data src[M]: int
data dst[M]: int
data z[M]: pose3
data sd[M]: real[6]
var pose[N]: pose3
factor anchor: log(pose[0]) ~ normal(0, 0.001)
factor odo[k in 0:M]: log(between(z[k], between(pose[src[k]], pose[dst[k]]))) ~ normal(0, sd[k])
"""


@pytest.mark.heavy
def test_pose3_graph_reaches_maps_optimum():
    rng = np.random.default_rng(3)
    n = 6
    truth = np.stack([np.asarray(L.exp("pose3", rng.normal(0, 0.7, 6))) for _ in range(n)])
    truth[0] = [0, 0, 0, 0, 0, 0, 1]
    src, dst = np.r_[np.arange(n - 1), [0, 1]], np.r_[np.arange(1, n), [4, 5]]
    z = np.asarray(L.compose("pose3", L.between("pose3", truth[src], truth[dst]),
                             L.exp("pose3", rng.normal(0, 0.03, (src.size, 6)))))
    sd = np.tile([0.05, 0.05, 0.05, 0.02, 0.02, 0.02], (src.size, 1))
    init = np.asarray(L.compose("pose3", truth, L.exp("pose3", rng.normal(0, 0.1, (n, 6)))))
    data = {"N": n, "M": src.size, "src": src, "dst": dst, "z": z, "sd": sd}
    model = fglang.compile(POSE3)
    mode = model.fit(data, backend="map", init={"pose": init}, tol=1e-12)
    gbp = model.fit(data, backend="gbp", init={"pose": init}, **TIGHT)
    assert gbp.attrs["converged"]
    got, want = gbp.mean("pose"), mode.mean("pose")
    assert got.shape == (n, 7) and gbp.cov("pose").shape == (n, 6, 6)
    np.testing.assert_allclose(np.linalg.norm(got[:, 3:], axis=1), 1.0, atol=1e-12)
    err = np.asarray(L.log("pose3", L.between("pose3", jnp.asarray(want), jnp.asarray(got))))
    np.testing.assert_allclose(err, 0.0, atol=1e-6)


ROTATIONS = """model rots
data N: int
data M: int
data src[M]: int
data dst[M]: int
data a[M]: rot2
data q[M]: rot3
var r[N]: rot2
var s[N]: rot3
factor r0: log(r[0]) ~ normal(0, 0.01)
factor s0: log(s[0]) ~ normal(0, 0.01)
factor rr[k in 0:M]: log(between(a[k], between(r[src[k]], r[dst[k]]))) ~ normal(0, 0.1)
factor ss[k in 0:M]: log(between(q[k], between(s[src[k]], s[dst[k]]))) ~ normal(0, 0.1)
"""


@pytest.mark.heavy
def test_rot2_and_rot3_averaging_reach_maps_optimum():
    rng = np.random.default_rng(5)
    n = 6
    src, dst = np.r_[np.arange(n - 1), [0, 1, 3]], np.r_[np.arange(1, n), [3, 4, 5]]
    r = rng.uniform(-3, 3, n)
    s = np.stack([np.asarray(L.exp("rot3", rng.normal(0, 1.0, 3))) for _ in range(n)])
    a = np.asarray(L.compose("rot2", L.between("rot2", r[src], r[dst]), rng.normal(0, 0.1, src.size)))
    q = np.asarray(L.compose("rot3", L.between("rot3", s[src], s[dst]),
                             L.exp("rot3", rng.normal(0, 0.1, (src.size, 3)))))
    data = {"N": n, "M": src.size, "src": src, "dst": dst, "a": a, "q": q}
    init = {"r": _wrap(r + rng.normal(0, 0.2, n)),
            "s": np.asarray(L.compose("rot3", s, L.exp("rot3", rng.normal(0, 0.2, (n, 3)))))}
    model = fglang.compile(ROTATIONS)
    mode = model.fit(data, backend="map", init=init, tol=1e-12)
    gbp = model.fit(data, backend="gbp", init=init, **TIGHT)
    assert gbp.attrs["converged"]
    assert gbp.mean("r").shape == (n,) and gbp.cov("r").shape == (n, 1, 1) and gbp.cov("s").shape == (n, 3, 3)
    np.testing.assert_allclose(_wrap(gbp.mean("r") - mode.mean("r")), 0.0, atol=1e-6)
    err = np.asarray(L.log("rot3", L.between("rot3", jnp.asarray(mode.mean("s")), jnp.asarray(gbp.mean("s")))))
    np.testing.assert_allclose(err, 0.0, atol=1e-6)


@pytest.mark.heavy
def test_a_carried_pose_prior_is_a_tangent_factor(loop_graph):
    """A pose2 posterior carried as --prior into a fit with no odometry keeps its means and
    tangent covariances (the prior family is log(mean^-1 x) with the carried precision)."""
    data, init, mode, _ = loop_graph
    prior_only = dict(data, M=0, src=np.zeros(0, int), dst=np.zeros(0, int), z=np.zeros((0, 3)),
                      sd=np.zeros((0, 3)))
    model = fglang.load("examples/m3500_pose2.fg")
    post = model.fit(prior_only, backend="gbp", prior=mode, init=init, **TIGHT)
    _same_pose2(post.mean("pose")[1:], mode.mean("pose")[1:], 1e-6)
    np.testing.assert_allclose(post.cov("pose")[1:], mode.cov("pose")[1:], rtol=1e-5)


ROT2_CHAIN = """model chain
data N: int
data M: int
data a[M]: rot2
var r[N]: rot2
factor r0: log(r[0]) ~ normal(0, 0.1)
factor step[k in 0:M]: log(between(a[k], between(r[k], r[k + 1]))) ~ normal(0, 0.2)
"""


def test_rot2_chain_across_pi_has_the_closed_form_posterior():
    """A chain of headings from the identity: the residual is linear in the tangent angle, so the
    posterior is exact: node k at the sum of the first k steps (wrapped past pi, which a real
    angle's linearization could not cross) with variance 0.1^2 + k 0.2^2. Its slots are strided
    slices (r[k], r[k + 1]): the charts' origins are read by the engine's grid gathers."""
    n = 7
    steps = np.full(n - 1, 1.1)
    post = fglang.compile(ROT2_CHAIN).fit({"N": n, "M": n - 1, "a": steps}, backend="gbp", schedule="flooding",
                                          **TIGHT)
    assert post.attrs["converged"]
    want = _wrap(np.r_[0.0, np.cumsum(steps)])
    np.testing.assert_allclose(_wrap(post.mean("r") - want), 0.0, atol=1e-8)
    assert np.all(np.abs(post.mean("r")) <= np.pi)
    np.testing.assert_allclose(post.cov("r")[:, 0, 0], 0.01 + 0.04 * np.arange(n), rtol=1e-6)
