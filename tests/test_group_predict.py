"""Prediction through group vars (issue 15): a target family that reads a
pose2 var, predicted from a gbp fit (moments linearized in the tangent space
at the means: runtime/predict.family_moments) and from a map fit (Laplace
draws through NumPyro's Predictive). Oracle: the same moments computed
directly, ``mu(mean compose exp(e))`` with ``e ~ N(0, cov)`` the posterior's
tangent marginal: the Jacobian by central differences (gbp), and Monte Carlo
over the tangent draws (map)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fglang

LIE = pytest.importorskip("fglang.compiler.lie_jax")

SRC = """model pose2_predict
data N: int
data M: int
data src[M]: int
data dst[M]: int
data z[M]: pose2
data sd[M]: real[3]
data K: int
data at[K]: int
data p[K]: real[2]
data y[K]: real[2]
var pose[N]: pose2

factor anchor: log(pose[0]) ~ normal(0, 0.01)
factor odo[k in 0:M]: log(between(z[k], between(pose[src[k]], pose[dst[k]]))) ~ normal(0, sd[k])
factor seen[k in 0:K]: y[k] ~ normal(act(pose[at[k]], p[k]), 0.05)
"""
SD_Y = 0.05


def _data():
    with jax.enable_x64(True):
        rng = np.random.default_rng(4)
        n = 5
        truth = np.stack([np.arange(n, dtype=float), np.sin(np.arange(n)), 0.5 + 0.4 * np.arange(n)], 1)
        src, dst = np.r_[np.arange(n - 1), 0], np.r_[np.arange(1, n), n - 1]
        between = jax.jit(LIE.between, static_argnums=0)
        rel = np.asarray(between("pose2", jnp.asarray(truth[src]), jnp.asarray(truth[dst])))
        rel = rel + rng.normal(0, 0.02, rel.shape)
    sd = np.tile([0.05, 0.05, 0.1], (src.size, 1))  # loose heading: rotation matters to the prediction
    at = np.array([1, 3, 4])
    p = np.array([[1.0, 0.5], [-0.5, 2.0], [2.0, -1.0]])
    data = {"N": n, "M": src.size, "src": src, "dst": dst, "z": rel, "sd": sd, "K": 3, "at": at, "p": p}
    return data, truth


def _act(mean, e, p):
    """``act(mean compose exp(e), p)``, batched over e [..., 3]."""
    with jax.enable_x64(True):
        x = jax.jit(LIE.retract, static_argnums=0)("pose2", jnp.asarray(mean), jnp.asarray(e))
        return np.asarray(jax.jit(LIE.act, static_argnums=0)("pose2", x, jnp.asarray(p)))


def _direct_linearized(mean, cov, at, p):
    """Mean and variance of act(pose[at], p) linearized in the tangent space
    (central differences), plus the observation noise."""
    out_m, out_v = [], []
    h = 1e-6
    for j, q in zip(at, p):
        steps = np.concatenate([h * np.eye(3), -h * np.eye(3)])
        r = _act(np.broadcast_to(mean[j], (6, 3)), steps, np.broadcast_to(q, (6, 2)))
        jac = ((r[:3] - r[3:]) / (2 * h)).T  # [2, 3]
        out_m.append(_act(mean[j], np.zeros(3), q))
        out_v.append(np.diag(jac @ cov[j] @ jac.T) + SD_Y**2)
    return np.array(out_m), np.array(out_v)


def test_gbp_predicts_through_a_pose2_var_in_its_tangent_space():
    data, truth = _data()
    model = fglang.compile(SRC)
    y = np.stack([_act(truth[j], np.zeros(3), q) for j, q in zip(data["at"], data["p"])])
    post = model.fit({**data, "y": y}, backend="gbp", init={"pose": truth})
    pred = model.predict(post, {k: v for k, v in data.items()})
    mean, var = _direct_linearized(pred.mean("pose"), pred.cov("pose"), data["at"], data["p"])
    np.testing.assert_allclose(pred.mean("seen"), mean, atol=1e-6)
    got_var = np.asarray(pred.gaussian["seen"].cov)[..., 0, 0]
    np.testing.assert_allclose(got_var, var, rtol=1e-4)
    assert np.all(var > 1.2 * SD_Y**2)  # the pose's uncertainty is a visible part of it


def test_map_predicts_through_a_pose2_var_by_its_laplace_draws():
    data, truth = _data()
    model = fglang.compile(SRC)
    y = np.stack([_act(truth[j], np.zeros(3), q) for j, q in zip(data["at"], data["p"])])
    post = model.fit({**data, "y": y}, backend="map", init={"pose": truth})
    pred = model.predict(post, dict(data))
    draws = pred.samples("seen").reshape(-1, 3, 2)
    rng = np.random.default_rng(0)
    mean, cov = post.mean("pose"), post.cov("pose")
    e = np.stack([rng.multivariate_normal(np.zeros(3), cov[j], 20000) for j in data["at"]], 1)  # [S, K, 3]
    direct = _act(np.broadcast_to(mean[data["at"]], e.shape), e, np.broadcast_to(data["p"], e.shape[:2] + (2,)))
    s = draws.shape[0]
    sd = np.sqrt(direct.var(0) + SD_Y**2)
    assert np.all(np.abs(draws.mean(0) - direct.mean(0)) < 4 * sd / np.sqrt(s))
    np.testing.assert_allclose(draws.var(0), direct.var(0) + SD_Y**2, rtol=6 / np.sqrt(s))
