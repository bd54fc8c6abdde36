"""``map`` over several devices (issue 17): the least-squares path's residual
blocks split along their members over 4 forced CPU devices (runtime/map/shard.py),
the sparse factorization on the host.

As in tests/test_devices.py, the 4 devices need
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` before JAX starts, so
the fits run in one subprocess (`_FOUR_DEVICES`) that prints its numbers as
JSON; the tests below check them against exact solves and the one-device fit.
The last test joins two processes (one CPU device each) into one global mesh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from conftest import LINEAR_XY, free_port, run_on_four_devices, vector_chain_posterior

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"

# a linear-Gaussian chain of 3-vectors: 1 + 22 + 23 members, none a multiple of 4 (every block padded)
CHAIN = """\
model chain3
data T: int
data y[T]: real[3]
data C: real[3, 3]
var x[T]: real[3]
factor init: x[0] ~ normal([0, 0, 0], 10)
factor step[t in 1:T]: x[t] ~ mvnormal(x[t-1], C)
factor obs[t in 0:T]: y[t] ~ normal(x[t], 0.5)
"""
T = 23
C = [[0.04, 0.01, 0.0], [0.01, 0.09, 0.02], [0.0, 0.02, 0.05]]

HUBER = """\
model robust_line
data N: int
data x[N]: real
data y[N]: real
var a: real
var b: real
factor obs[n in 0:N]: y[n] ~ huber(a + b * x[n], 0.2, 1.345)
"""

POISSON = """\
model counts
data N: int
data y[N]: int
var rate: real ~ normal(0, 2)
factor obs[n in 0:N]: y[n] ~ poisson(exp(rate))
"""

_FOUR_DEVICES = textwrap.dedent(
    """
    import json, sys, time, warnings
    t0 = time.perf_counter()
    import numpy as np
    import jax
    import fglang
    from fglang.runtime.map import assemble

    warnings.simplefilter("ignore")
    ex, spec = sys.argv[1], json.loads(sys.argv[2])
    out = {"n_devices": jax.device_count()}

    def both(model, data, **kw):
        one, four = model.fit(data, backend="map", **kw), model.fit(data, backend="map", devices=4, **kw)
        return one, four

    # linear-Gaussian chain (mvnormal steps)
    y = np.random.default_rng(2).normal(size=(spec["T"], 3))
    chain = fglang.compile(spec["chain"])
    one, four = both(chain, {"T": spec["T"], "y": y.tolist(), "C": spec["C"]}, dtype="float64")
    out["chain"] = {"y": y.tolist(), "mean1": one.mean("x").tolist(), "cov1": one.cov("x").tolist(),
                    "mean4": four.mean("x").tolist(), "cov4": four.cov("x").tolist(),
                    "devices": four.attrs["devices"], "devices1": one.attrs["devices"],
                    "sharded": four.attrs["sharded"], "sharded1": one.attrs["sharded"]}

    # where the chain's arrays live: each device holds its slice of the padded members (the fit's
    # compiled functions: the same model shape)
    from fglang.runtime.device import device_mesh, mesh_context
    from fglang.runtime.map.fit import _least_squares
    with jax.enable_x64(True), mesh_context(device_mesh(4)):
        problem, _ = _least_squares(chain.bind(
            {"T": spec["T"], "y": y.tolist(), "C": spec["C"]}), {}, jax.numpy.float64)
        text = problem.compiled_text(np.zeros(problem.n))
    out["chain"]["placement"] = {b.name: [list(s.data.shape) for s in c.addressable_shards]
                                 for b, c in zip(problem.blocks, problem._cols)}
    out["chain"]["all_reduce"] = "all-reduce" in text

    # pose2 graph: 125 odometry edges (4 devices do not divide them), group vars in the tangent space
    m = fglang.load(ex + "/m3500_pose2.fg")
    d = json.load(open(ex + "/data/pose_graph_2d.json"))
    init = json.load(open(ex + "/data/pose_graph_2d_init.json"))
    one, four = both(m, d, dtype="float64", init=init)
    gap = np.abs(one.mean("pose") - four.mean("pose"))
    gap[:, 2] = np.abs((gap[:, 2] + np.pi) % (2 * np.pi) - np.pi)
    out["pose"] = {"mean": float(gap.max()), "cov": float(np.abs(one.cov("pose") - four.cov("pose")).max()),
                   "cost1": one.attrs["cost"], "cost4": four.attrs["cost"], "converged": four.attrs["converged"],
                   "iterations": [one.attrs["iterations"], four.attrs["iterations"]],
                   "devices": four.attrs["devices"]}

    # robust (IRLS) blocks: a Huber line with outliers, 40 members
    x = np.linspace(-2, 2, 40)
    yl = 1.5 * x - 0.5 + np.random.default_rng(3).normal(0, 0.2, 40)
    yl[::7] += 5.0
    one, four = both(fglang.compile(spec["huber"]), {"N": 40, "x": x.tolist(), "y": yl.tolist()})
    out["huber"] = max(abs(float(one.mean(k)) - float(four.mean(k))) for k in ("a", "b"))

    # the general path runs on one device and says so
    g = fglang.compile(spec["poisson"]).fit({"N": 5, "y": [1, 3, 2, 0, 4]}, backend="map", devices=4)
    out["general"] = {"path": g.attrs["path"], "warnings": g.warnings(), "rate": float(g.mean("rate"))}

    # every LM iteration ran the one compiled program (per model shape and mesh)
    out["compiled"] = [[f._cache_size() for f in fns] for key, fns in assemble._COMPILED.items()
                       if key[-1] is not None]
    out["seconds"] = time.perf_counter() - t0
    print("RESULT " + json.dumps(out))
    """
)


@cache
def four_devices() -> dict:
    spec = {"chain": CHAIN, "T": T, "C": C, "huber": HUBER, "poisson": POISSON}
    return run_on_four_devices(_FOUR_DEVICES, str(EX), json.dumps(spec))


@pytest.fixture(scope="module")
def res() -> dict:
    return four_devices()


def test_linear_gaussian_on_four_devices_is_the_exact_solve(res):
    ch = res["chain"]
    mean, cov = vector_chain_posterior(np.asarray(C), np.asarray(ch["y"]))
    for m, c in ((ch["mean4"], ch["cov4"]), (ch["mean1"], ch["cov1"])):
        np.testing.assert_allclose(np.ravel(m), mean, rtol=0, atol=1e-8)
        np.testing.assert_allclose(np.asarray(c), cov, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(np.asarray(ch["mean4"]), np.asarray(ch["mean1"]), rtol=0, atol=1e-8)
    np.testing.assert_allclose(np.asarray(ch["cov4"]), np.asarray(ch["cov1"]), rtol=0, atol=1e-8)


def test_devices_are_recorded_and_every_block_is_split(res):
    ch = res["chain"]
    assert res["n_devices"] == 4
    assert ch["devices"] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"] and ch["devices1"] == ["cpu:0"]
    assert sorted(ch["sharded"]) == ["init", "obs", "step"] and ch["sharded1"] == []
    # members padded to a multiple of 4 and split: 1 -> 4 (1 each), 22 -> 24 (6 each), 23 -> 24 (6 each);
    # a step member reads 6 unknowns (two 3-vectors), an obs member 3
    assert ch["placement"] == {"init": [[1, 3]] * 4, "step": [[6, 6]] * 4, "obs": [[6, 3]] * 4}
    assert ch["all_reduce"]  # the partial gradients and Hessians summed over the mesh


def test_pose2_graph_on_four_devices_reaches_the_one_device_optimum(res):
    p = res["pose"]
    assert p["converged"] and len(p["devices"]) == 4
    assert p["mean"] < 1e-8 and p["cov"] < 1e-8
    assert abs(p["cost1"] - p["cost4"]) <= 1e-10 * p["cost1"]


def test_robust_blocks_on_four_devices(res):
    assert res["huber"] < 1e-8


def test_general_path_runs_on_one_device_and_says_so(res):
    g = res["general"]
    assert g["path"] == "general"
    assert any("general path" in w and "3 device(s) were idle" in w for w in g["warnings"])
    # the mode of the unconstrained density: sum(y) = N exp(rate) - rate / 4 (prior sd 2)
    r = g["rate"]
    assert abs(10 - 5 * np.exp(r) - r / 4) < 1e-6


def test_one_compiled_linearization_per_model_shape(res):
    # (cost, linearize) per model shape on the mesh: each compiled once for all LM iterations
    assert res["compiled"] and all(sizes == [1, 1] for sizes in res["compiled"])


# ---------------------------------------------------------------------------
# two processes on this machine, one CPU device each, joined by --coordinator

LINEAR = LINEAR_XY  # conftest's straight line with known noise




_PROCESS = textwrap.dedent(
    """
    import json, sys, warnings
    import fglang

    warnings.simplefilter("ignore")
    fg, data, addr, pid = sys.argv[1:5]
    post = fglang.load(fg).fit(json.load(open(data)), backend="map", dtype="float64", coordinator=addr,
                               num_processes=2, process_id=int(pid))
    print("RESULT " + json.dumps({"mean": [float(post.mean(k)) for k in ("a", "b")],
                                  "sd": [float(post.sd(k)) for k in ("a", "b")],
                                  **{k: post.attrs[k] for k in ("devices", "processes", "sharded")}}))
    """
)


def test_two_processes_give_the_exact_laplace_posterior_of_a_linear_model(tmp_path):
    """The global mesh of two processes' devices (Python's ``coordinator=``; the CLI's
    ``--coordinator``, where process 0 alone writes, is tests/test_processes.py's): 21
    likelihood members padded to 22, 11 a process; both processes end at the exact
    posterior mean and sd."""
    (tmp_path / "linear.fg").write_text(LINEAR)
    x = np.linspace(-1.0, 1.0, 21)
    y = 1.0 + 2.0 * x + 0.3 * np.sin(7.0 * x)
    (tmp_path / "d.json").write_text(json.dumps({"N": 21, "x": x.tolist(), "y": y.tolist()}))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("XLA_FLAGS", None)  # one CPU device per process: the mesh is the two processes'
    addr = f"localhost:{free_port()}"
    procs = [subprocess.Popen([sys.executable, "-c", _PROCESS, str(tmp_path / "linear.fg"), str(tmp_path / "d.json"),
                               addr, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    X = np.stack([np.ones_like(x), x], axis=1)
    prec = X.T @ X / 0.25 + np.eye(2) / 100.0
    mean, cov = np.linalg.solve(prec, X.T @ y / 0.25), np.linalg.inv(prec)
    for p, (out, err) in zip(procs, outs, strict=True):
        lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        assert p.returncode == 0 and lines, err[-3000:]
        got = json.loads(lines[-1][len("RESULT "):])
        assert got["processes"] == 2 and len(got["devices"]) == 2 and "lik" in got["sharded"]
        np.testing.assert_allclose(got["mean"], mean, rtol=0, atol=1e-8)
        np.testing.assert_allclose(got["sd"], np.sqrt(np.diag(cov)), rtol=1e-8)
