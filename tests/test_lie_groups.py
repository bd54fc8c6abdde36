"""Lie-group types (issue 15): the algebra (group laws, tangent Jacobians
against finite differences), the checker's typing and its located errors,
and the backends' handling (map retracts; gbp: tests/test_gbp_groups.py; vi
and mcmc: tests/test_lie_numpyro.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compile_error
from hypothesis import given, settings
from hypothesis import strategies as st
from test_check_errors import assert_formatted

import fglang
from fglang.compiler.groups import GROUPS
from fglang.errors import FgError

jax.config.update("jax_enable_x64", True)
LIE = pytest.importorskip("fglang.compiler.lie_jax")
KINDS = tuple(GROUPS)


class L:
    """The jitted ops (one compile per group and shape: eager jaxlie compiles each small piece)."""

    compose, inverse, between, log, exp, act, translation, construct = (
        LIE.OPS[k] for k in ("compose", "inverse", "between", "log", "exp", "act", "translation", "make"))
    retract = LIE.retract_jit
    local = jax.jit(LIE.local, static_argnums=0)
    to_lie, from_lie = LIE.to_lie, LIE.from_lie


def _residual(kind, a, b, z, d):
    return LIE.log(kind, LIE.between(kind, z, LIE.between(kind, a, LIE.retract(kind, b, d))))


_JAC = jax.jit(jax.jacfwd(_residual, argnums=4), static_argnums=0)
_RES = jax.jit(jax.vmap(_residual, in_axes=(None, None, None, None, 0)), static_argnums=0)


def _tangent(kind: str, seed: int, scale: float = 1.0) -> np.ndarray:
    """A tangent vector whose rotation part stays below pi (log's principal branch)."""
    g = GROUPS[kind]
    v = np.random.default_rng(seed).uniform(-1, 1, g.tangent) * scale
    rot = v[-1:] if kind in ("rot2", "pose2") else v[-3:]
    n = np.linalg.norm(rot)
    if n > 2.5:
        v[-rot.size:] *= 2.5 / n
    return v


def _element(kind: str, seed: int) -> np.ndarray:
    return np.asarray(L.exp(kind, _tangent(kind, seed, 2.0)))


def _close(kind: str, a, b, tol=1e-9):
    """Equal as group elements (q and -q are one rotation)."""
    d = np.asarray(L.log(kind, L.between(kind, a, b)))
    assert np.max(np.abs(d)) < tol, (a, b, d)


SETTINGS = settings(max_examples=20, deadline=None)
seeds = st.integers(0, 2**31 - 1)


@SETTINGS
@pytest.mark.parametrize("kind", KINDS)
@given(seed=seeds)
def test_log_inverts_exp_and_storage_round_trips(kind, seed):
    v = _tangent(kind, seed, 2.0)
    x = L.exp(kind, v)
    assert np.asarray(x).shape == GROUPS[kind].storage
    np.testing.assert_allclose(L.log(kind, x), v, atol=1e-9)
    np.testing.assert_allclose(L.from_lie(kind, L.to_lie(kind, x)), x, atol=1e-12)


@SETTINGS
@pytest.mark.parametrize("kind", KINDS)
@given(s1=seeds, s2=seeds, s3=seeds)
def test_group_laws(kind, s1, s2, s3):
    a, b, c = _element(kind, s1), _element(kind, s2), _element(kind, s3)
    _close(kind, L.compose(kind, L.compose(kind, a, b), c), L.compose(kind, a, L.compose(kind, b, c)))
    _close(kind, L.compose(kind, a, L.inverse(kind, a)), L.exp(kind, np.zeros(GROUPS[kind].tangent)))
    _close(kind, L.between(kind, a, b), L.compose(kind, L.inverse(kind, a), b))
    _close(kind, L.inverse(kind, L.inverse(kind, a)), a)
    p = np.random.default_rng(s3).normal(size=GROUPS[kind].point)
    np.testing.assert_allclose(L.act(kind, L.compose(kind, a, b), p), L.act(kind, a, L.act(kind, b, p)), atol=1e-9)
    _close(kind, L.retract(kind, a, L.local(kind, b, a)), b)


@SETTINGS
@pytest.mark.parametrize("kind", [k if k != "pose3" else pytest.param(k, marks=pytest.mark.slow) for k in KINDS])
@given(s1=seeds, s2=seeds, s3=seeds)
def test_tangent_jacobians_match_finite_differences(kind, s1, s2, s3):
    """What map differentiates: d/d(delta) log(z^-1 a^-1 (b compose exp(delta))) at 0."""
    a, b, z = _element(kind, s1), _element(kind, s2), _element(kind, s3)
    n = GROUPS[kind].tangent
    jac = np.asarray(_JAC(kind, a, b, z, jnp.zeros(n)))
    h = 1e-6
    steps = np.concatenate([h * np.eye(n), -h * np.eye(n)])
    r = np.asarray(_RES(kind, a, b, z, jnp.asarray(steps)))
    fd = ((r[:n] - r[n:]) / (2 * h)).T
    np.testing.assert_allclose(jac, fd, rtol=1e-4, atol=1e-5)  # central differences: O(h^2) plus rounding


def _smoothness_derivatives(kind, w, d):
    """The derivatives the test below checks, in one jitted program per group
    and dtype (eager ``jacfwd``/``hessian`` compiled every small op of the
    SE(3) log and exp on its own: 40 of the test's 63 CPU-s).

    Returns the Hessians of ``sum(sin(local(retract(base, e), base) + 0.1))``
    at each row of ``d`` (``base = exp(w)``), and the Jacobian and the
    Hessian of the sum of ``log(exp(e))`` at the identity, e = 0."""
    base = LIE.exp(kind, w)

    def f(e):
        return jnp.sum(jnp.sin(LIE.local(kind, LIE.retract(kind, base, e), base) + 0.1))

    def log_exp(e):
        return LIE.log(kind, LIE.exp(kind, e))

    zero = jnp.zeros_like(w)
    return (jax.vmap(jax.hessian(f))(d), jax.jacfwd(log_exp)(zero),
            jax.hessian(lambda e: jnp.sum(log_exp(e)))(zero))


# XLA's optimizations off for this checker's four programs (SE(3)'s Hessians,
# unrolled: 40 -> 34 CPU-s): what it checks is the formulas' smoothness (a
# series against cancellation near theta = 0), which no fusion or reordering
# of XLA's changes by anything near the tolerances
_SMOOTHNESS = jax.jit(_smoothness_derivatives, static_argnums=0,
                      compiler_options={"xla_backend_optimization_level": 0,
                                        "xla_llvm_disable_expensive_passes": True})


def test_pose_exp_log_are_smooth_near_the_identity_in_float32_and_float64():
    """local(retract(x, d), x) = d, so sum(sin(that + 0.1)) has the Hessian
    diag(-sin(d + 0.1)) exactly: what vi's Laplace whitening differentiates.
    jaxlie 1.5's SE(2)/SE(3) exp and log missed it by up to 0.5 near the
    identity (cancellation in (1 - cos t) / t in float32; R standing in for
    V below its Taylor threshold, in float64 too); fglang's own V matrices
    (lie_jax) are series in theta^2 there."""
    scales = np.array([0.0, 1e-7, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.5])  # |rotation| < pi: no wrap
    # float32: SO(3) log divides by theta, its second derivative carries ~eps / theta^2
    for dtype, tol in ((np.float32, 5e-4), (np.float64, 1e-9)):
        with jax.enable_x64(dtype == np.float64):
            for kind in ("pose2", "pose3"):
                n = GROUPS[kind].tangent
                d = (scales[:, None] * (1 + np.linspace(-0.9, 0.9, n))).astype(dtype)
                w = jnp.asarray(np.linspace(0.2, 0.7, n), dtype)
                h, jac, curv = (np.asarray(x) for x in _SMOOTHNESS(kind, w, jnp.asarray(d)))
                assert h.dtype == dtype and jac.dtype == dtype and curv.dtype == dtype
                exact = np.stack([np.diag(-np.sin(row.astype(np.float64) + 0.1)) for row in d])
                np.testing.assert_allclose(h, exact, atol=tol, rtol=0, err_msg=f"{kind} {dtype.__name__}")
                # at the identity itself (a var started at its default): log(exp(e)) = e to second order
                np.testing.assert_allclose(jac, np.eye(n), atol=tol)
                np.testing.assert_allclose(curv, 0.0, atol=tol)


def test_storage_conventions():
    """g2o's order; TORO's R = Rz(yaw) Ry(pitch) Rx(roll); translation-first tangents."""
    from fglang.io.pose_graph import euler_to_quaternion

    q = L.construct("rot3", 0.1, -0.2, 0.3)
    np.testing.assert_allclose(q, euler_to_quaternion(0.1, -0.2, 0.3), atol=1e-12)
    p = L.construct("pose3", jnp.array([1.0, 2.0, 3.0]), 0.1, -0.2, 0.3)
    np.testing.assert_allclose(p, [1, 2, 3, *np.asarray(q)], atol=1e-12)
    np.testing.assert_allclose(L.log("pose3", L.exp("pose3", [0.1, 0, 0, 0, 0, 0])), [0.1, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(L.construct("pose2", 1.0, 2.0, 4.0), [1.0, 2.0, 4.0 - 2 * np.pi], atol=1e-12)
    np.testing.assert_allclose(L.translation("pose2", L.compose("pose2", [1, 0, np.pi / 2], [1, 0, 0])), [1, 1],
                               atol=1e-12)


# ------------------------------------------------------------------ the checker
POSES = """model m
data N: int
data M: int
data src[M]: int
data dst[M]: int
data z[M]: pose3
data sd[M]: real[6]
var pose[N]: pose3
"""


def test_group_models_check_and_lower_with_tagged_calls():
    src = POSES + """fn rel(a: pose3, b: pose3) -> pose3 { return between(a, b) }
let t = translation(pose[0])
factor odo[k in 0:M]: log(between(z[k], rel(pose[src[k]], pose[dst[k]]))) ~ normal(0, sd[k])
factor pt: act(pose[1], [1, 0, 0]) ~ normal(translation(compose(pose[0], exp_pose3(sd[0]))), 1)
factor r: quaternion(rotation(pose[0])) ~ normal(0, 1)
factor mk: log(between(pose3([0, 0, 0], 0.1, 0.2, 0.3), pose[0])) ~ normal(0, 1)
"""
    m = fglang.compile(src)
    from fglang.compiler.unparse import unparse

    assert unparse(m.ir.families["odo"].lhs).startswith("pose3.log(pose3.between(")
    assert "rot3.quaternion(pose3.rotation(" in unparse(m.ir.families["r"].lhs)
    assert m.ir.variables["pose"].domain.kind == "pose3"


def test_spec_between_fn_still_hides_the_builtin():
    src = """model m
fn between(a: real[3], b: real[3]) -> real[3] { return b - a }
var p[2]: real[3]
factor f: 0 ~ normal(between(p[0], p[1]), 1)
"""
    fglang.compile(src)


ERRORS = [
    ("pose_plus", "factor f: pose[0] + 1 ~ normal(0, 1)",
     "'+' needs numbers, got a pose3 value", "log(...)"),
    ("pose_as_sd", "factor f: 0 ~ normal(0, pose[0])", "'sd' of normal needs numbers, got a pose3 value", "log(...)"),
    ("lhs_pose", "factor f: pose[0] ~ normal(0, 1)",
     "the left side of '~' is a pose3 value; a density is written on numbers", "log(between("),
    ("between_reals", "factor f: log(between(sd[0], sd[1])) ~ normal(0, 1)",
     "'between' needs a rot2, rot3, pose2 or pose3 value, got real [6]", "declare the var"),
    ("index_pose", "factor f: pose[0, 2] ~ normal(0, 1)",
     "a pose3 value cannot be indexed into ('pose' has 1 node dimension)", "translation(p)[i]"),
    ("mixed", "factor f: log(compose(pose[0], rot3([0, 0, 0, 1]))) ~ normal(0, 1)",
     "'compose' of a pose3 and a rot3: both must be one group", None),
    ("exp_size", "factor f: log(exp_pose3([1, 2, 3])) ~ normal(0, 1)",
     "'exp_pose3' needs a tangent vector [6], got int [3]", None),
    ("prior", "var q: pose2 ~ normal(0, 1)",
     "a pose2 var takes no '~ prior' (a density on the group is written on a tangent vector)", "factor q_prior"),
    ("shape", "var q: pose2[3]", "'pose2' takes no shape: one pose2 is one value", "var pose[N]: pose2"),
]


@pytest.mark.parametrize("case", ERRORS, ids=[c[0] for c in ERRORS])
def test_misuse_is_located_with_a_hint(case):
    _, line, message, hint = case
    err = compile_error(POSES + line + "\n")
    assert [d.message for d in err.diagnostics] == [message]
    d = err.diagnostics[0]
    assert d.span.line == POSES.count("\n") + 1
    if hint:
        assert hint in (d.hint or "")
    assert_formatted(err)


def test_quaternion_data_must_be_unit():
    src = "model m\ndata z[2]: rot3\n"
    with pytest.raises(FgError, match=r"quaternion \[qx, qy, qz, qw\] at \[1\] has norm 2"):
        fglang.compile(src).bind({"z": [[0, 0, 0, 1], [0, 0, 0, 2]]})


def _pose2_graph(n: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = np.stack([np.arange(n, dtype=float), np.sin(np.arange(n)), 0.4 * np.arange(n)], 1)
    src = np.r_[np.arange(n - 1), [0, 1]]
    dst = np.r_[np.arange(1, n), [n - 1, n - 2]]
    rel = np.asarray(L.between("pose2", truth[src], truth[dst])) + rng.normal(0, 0.02, (src.size, 3))
    data = {"N": n, "M": src.size, "src": src, "dst": dst, "z": rel, "sd": np.full((src.size, 3), 0.05)}
    return data, {"pose": truth + rng.normal(0, 0.05, truth.shape)}


@pytest.mark.heavy
def test_pose2_model_reaches_the_real3_optimum_and_saves(tmp_path):
    data, init = _pose2_graph()
    lie = fglang.load("examples/m3500_pose2.fg").fit(data, backend="map", init=init)
    vec = fglang.load("examples/m3500.fg").fit(data, backend="map", init=init)
    assert lie.attrs["converged"]
    np.testing.assert_allclose(lie.attrs["cost"], vec.attrs["cost"], rtol=1e-3)
    np.testing.assert_allclose(lie.mean("pose")[:, :2], vec.mean("pose")[:, :2], atol=2e-3)
    assert lie.cov("pose").shape == (6, 3, 3) and lie.mean("pose").shape == (6, 3)
    path = lie.save(tmp_path / "post.nc")
    back = fglang.load_posterior(path)
    np.testing.assert_allclose(back.cov("pose"), lie.cov("pose"))
    import arviz as az

    assert "pose" in az.from_netcdf(path).posterior


@pytest.mark.heavy
def test_small_3d_pose_graph_equals_scipy_least_squares():
    """The map fit and scipy's least_squares on the same tangent-space residuals
    (each pose parameterized as init compose exp(delta)) reach the same poses."""
    from scipy.optimize import least_squares

    rng = np.random.default_rng(1)
    n = 5
    truth = np.stack([np.asarray(L.exp("pose3", rng.normal(0, 0.6, 6))) for _ in range(n)])
    src = np.r_[np.arange(n - 1), [0, 1, 2]]
    dst = np.r_[np.arange(1, n), [3, 4, 4]]
    z = np.asarray(L.compose("pose3", L.between("pose3", truth[src], truth[dst]),
                             L.exp("pose3", rng.normal(0, 0.03, (src.size, 6)))))
    a = rng.normal(size=(src.size, 6, 6)) * 0.2
    info = np.einsum("mij,mkj->mik", a, a) + np.eye(6) * np.r_[10, 10, 10, 100, 100, 25]
    init = np.asarray(L.compose("pose3", truth, L.exp("pose3", rng.normal(0, 0.1, (n, 6)))))
    data = {"N": n, "M": src.size, "src": src, "dst": dst, "z": z, "info": info, "origin": truth[0]}
    post = fglang.load("examples/pose_graph_3d.fg").fit(data, backend="map", init={"pose": init})

    chol = np.linalg.cholesky(info)

    @jax.jit
    def residuals(d):
        poses = L.retract("pose3", jnp.asarray(init), d.reshape(n, 6))
        e = L.log("pose3", L.between("pose3", z, L.between("pose3", poses[src], poses[dst])))
        anchor = L.log("pose3", L.between("pose3", truth[0], poses[0])) / 0.001
        return jnp.concatenate([jnp.einsum("mij,mi->mj", chol, e).ravel(), anchor])

    sol = least_squares(lambda d: np.asarray(residuals(jnp.asarray(d))), np.zeros(6 * n),
                        jac=lambda d: np.asarray(jax.jacfwd(residuals)(jnp.asarray(d))), xtol=1e-15, ftol=1e-15,
                        gtol=1e-15)
    ref = np.asarray(L.retract("pose3", jnp.asarray(init), sol.x.reshape(n, 6)))
    np.testing.assert_allclose(post.attrs["cost"], sol.cost, rtol=1e-8)
    for k in range(n):
        _close("pose3", post.mean("pose")[k], ref[k], tol=1e-6)
    assert post.cov("pose").shape == (n, 6, 6)
