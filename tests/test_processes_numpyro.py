"""NUTS and VI over several processes (issue 17): two ``fglang fit`` processes
on this machine joined by ``--coordinator`` (one CPU device each) against one
process with the same seed, and against the closed-form posterior.

NUTS splits the chains into one block per process from the keys a
one-process run of all of them uses, so 2 processes x 2 chains are 4 chains
of one process, chain for chain; VI runs the one data-parallel fit over the
two processes' devices (the data rows split), so its answer is the
one-device answer.

The two end-to-end tests are heavy (`pytest -m heavy`): each starts two cold
processes that import NumPyro, trace and compile the sampler (or VI's
pieces) and then a one-process reference: 40-55 s CPU each on 2 loaded cores;
the chain split's arithmetic is checked by default."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port

from fglang.errors import FgError

CONJUGATE = """\
model conjugate
data N: int
data y[N]: real
var mu: real ~ normal(0, 10)
factor lik[n in 0:N]: y[n] ~ normal(mu, 2)
"""

LINEAR = """\
model linear
data N: int
data x[N]: real
data y[N]: real
var a: real ~ normal(0, 10)
var b: real ~ normal(0, 10)
let fitted = a + b * x
factor lik[n in 0:N]: y[n] ~ normal(fitted[n], 0.5)
"""




def _two_processes(tmp_path: Path, source: str, data: dict, args: list[str]):
    """Run ``fglang fit`` as processes 0 and 1 of one run; process 0's posterior and both outputs."""
    from fglang.runtime.posterior import load_posterior

    exe = shutil.which("fglang", path=str(Path(sys.executable).parent)) or shutil.which("fglang")
    assert exe, "the fglang console script is not installed"
    (tmp_path / "m.fg").write_text(source)
    (tmp_path / "d.json").write_text(json.dumps(data))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("XLA_FLAGS", None)  # one CPU device per process: the mesh is the two processes'
    addr = f"localhost:{free_port()}"
    procs = [
        subprocess.Popen([exe, "fit", str(tmp_path / "m.fg"), "-d", str(tmp_path / "d.json"), "-q", *args,
                          "--coordinator", addr, "--num-processes", "2", "--process-id", str(i),
                          "-o", str(tmp_path / f"post{i}.nc")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, err[-3000:]
    assert not (tmp_path / "post1.nc").exists()  # process 0 writes
    return load_posterior(tmp_path / "post0.nc"), outs


@pytest.mark.heavy
def test_nuts_chains_split_over_two_processes_are_the_one_process_chains(tmp_path):
    import fglang

    y = 1.5 + 2.0 * np.random.default_rng(0).standard_normal(30)
    data = {"N": 30, "y": y.tolist()}
    opts = {"chains": 4, "warmup": 150, "samples": 100}
    post, outs = _two_processes(tmp_path, CONJUGATE, data, ["-b", "mcmc", "--seed", "3"] + [
        a for k, v in opts.items() for a in (f"--{k}", str(v))])
    assert "conjugate (mcmc)" in outs[0][0] and "conjugate (mcmc)" not in outs[1][0]
    assert post.attrs["processes"] == 2 and len(post.attrs["devices"]) == 2
    one = fglang.compile(CONJUGATE).fit(data, backend="mcmc", seed=3, chain_method="vectorized", **opts)
    # chain for chain (process 0 ran chains 0-1, process 1 chains 2-3): bit for bit here, vectorized over 2 or 4
    assert post.draws["mu"].shape == (4, 100)
    np.testing.assert_allclose(post.draws["mu"], one.draws["mu"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(post.sample_stats["lp"], one.sample_stats["lp"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(post.attrs["step_size"], one.attrs["step_size"], rtol=1e-12)
    # the closed form: prior N(0, 10^2), 30 observations of sd 2
    var = 1.0 / (1.0 / 100 + 30 / 4.0)
    mean = var * y.sum() / 4.0
    draws = post.draws["mu"].ravel()
    assert abs(draws.mean() - mean) < 5 * np.sqrt(var / 100)  # 400 draws, an ESS of at least 100
    assert abs(draws.std() / np.sqrt(var) - 1) < 0.25


@pytest.mark.heavy
def test_vi_over_two_processes_gives_the_one_process_answer(tmp_path):
    import fglang

    x = np.linspace(-1.0, 1.0, 20)
    y = 1.0 + 2.0 * x + 0.3 * np.sin(7.0 * x)
    data = {"N": 20, "x": x.tolist(), "y": y.tolist()}
    post, _ = _two_processes(tmp_path, LINEAR, data, ["-b", "vi", "--dtype", "float64", "--steps", "400"])
    assert post.attrs["processes"] == 2 and len(post.attrs["devices"]) == 2
    assert post.attrs["sharded_data"] == ["x", "y"]  # the rows split over the two processes' devices
    one = fglang.compile(LINEAR).fit(data, backend="vi", dtype="float64", steps=400)
    for name in ("a", "b", "fitted"):  # fitted: a let over the rows, gathered from both processes
        np.testing.assert_allclose(post.draws[name], one.draws[name], rtol=0, atol=1e-6)
    # the exact posterior: prior precision 1/100 on (a, b), noise sd 0.5
    X = np.stack([np.ones_like(x), x], axis=1)
    prec = X.T @ X / 0.25 + np.eye(2) / 100.0
    cov = np.linalg.inv(prec)
    mean = cov @ (X.T @ y / 0.25)
    ab = np.stack([post.draws["a"].ravel(), post.draws["b"].ravel()], axis=1)
    se = np.sqrt(np.diag(cov) / ab.shape[0])
    assert np.all(np.abs(ab.mean(axis=0) - mean) < 5 * se)
    np.testing.assert_allclose(np.cov(ab.T), cov, rtol=0.15, atol=0.15 * np.sqrt(cov[0, 0] * cov[1, 1]))


def test_chains_that_do_not_divide_over_the_processes_are_refused():
    from fglang.runtime.mcmc.processes import chain_block, local_chain_method

    assert [chain_block(6, 3, i) for i in range(3)] == [(0, 2), (2, 4), (4, 6)]
    with pytest.raises(FgError, match=r"(?s)5 chain\(s\) over 2 processes.*--chains 4 or 6"):
        chain_block(5, 2, 0)
    with pytest.raises(FgError, match="--chains 2"):
        chain_block(1, 2, 1)
    # a process's block: one chain per local device where it has enough, else vectorized on one
    assert local_chain_method("auto", 2, 2) == ("parallel", "")
    assert local_chain_method("auto", 2, 1) == ("vectorized", "")
    assert local_chain_method("auto", 4, 2)[0] == "vectorized"
    assert local_chain_method("parallel", 4, 2)[0] == "sequential"
