"""Several processes joined into one fit (issue 17): two ``fglang fit``
processes on this machine, joined by ``--coordinator``, run GBP over the
global mesh of their devices; process 0 writes the posterior, whose means
must be the exact (least-squares) posterior means of a linear model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import LINEAR_XY, free_port

from fglang.errors import FgError

LINEAR = LINEAR_XY  # conftest's straight line with known noise




def test_two_processes_give_the_exact_answer_of_a_linear_model(tmp_path):
    from fglang.runtime.posterior import load_posterior

    exe = shutil.which("fglang", path=str(Path(sys.executable).parent)) or shutil.which("fglang")
    assert exe, "the fglang console script is not installed"
    (tmp_path / "linear.fg").write_text(LINEAR)
    x = np.linspace(-1.0, 1.0, 20)
    y = 1.0 + 2.0 * x + 0.3 * np.sin(7.0 * x)
    (tmp_path / "d.json").write_text(json.dumps({"N": 20, "x": x.tolist(), "y": y.tolist()}))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("XLA_FLAGS", None)  # one CPU device per process: the mesh is the two processes'
    addr = f"localhost:{free_port()}"
    procs = [
        subprocess.Popen([exe, "fit", str(tmp_path / "linear.fg"), "-d", str(tmp_path / "d.json"), "--dtype",
                          "float64", "-q", "--coordinator", addr, "--num-processes", "2", "--process-id", str(i),
                          "-o", str(tmp_path / f"post{i}.nc")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, err[-3000:]
    # process 0 prints the summary and writes; process 1 only Gloo's line from C++
    assert "linear (gbp)" in outs[0][0] and "linear (gbp)" not in outs[1][0]
    assert not (tmp_path / "post1.nc").exists()
    post = load_posterior(tmp_path / "post0.nc")
    assert post.attrs["processes"] == 2 and len(post.attrs["devices"]) == 2
    # the exact posterior: prior precision 1/100 on (a, b), noise sd 0.5
    X = np.stack([np.ones_like(x), x], axis=1)
    prec = X.T @ X / 0.25 + np.eye(2) / 100.0
    mean = np.linalg.solve(prec, X.T @ y / 0.25)
    assert abs(float(post.mean("a")) - mean[0]) < 1e-6 and abs(float(post.mean("b")) - mean[1]) < 1e-6


def test_process_flags_are_checked_before_anything_joins():
    from fglang.runtime.device import join_processes

    assert join_processes(None, None, None) == 1
    with pytest.raises(FgError, match="need --coordinator"):
        join_processes(None, 2, 0)
    with pytest.raises(FgError, match="HOST:PORT"):
        join_processes("localhost", 2, 0)
    with pytest.raises(FgError, match="needs --num-processes"):
        join_processes("localhost:1234", None, 0)
    with pytest.raises(FgError, match="from 0 to 1"):
        join_processes("localhost:1234", 2, 2)
    with pytest.raises(FgError, match="positive whole number"):
        join_processes("localhost:1234", 0, 0)


def test_backends_that_run_in_one_process_refuse_before_joining():
    # every registered backend joins runs now (map: tests/test_map_devices.py; mcmc and vi:
    # tests/test_processes_numpyro.py); one without ``multi_process`` is refused before
    # jax.distributed starts, naming those that join
    from fglang.runtime import backend as backends
    from fglang.runtime.fit import refuse_several

    assert all(getattr(backends.get(n), "multi_process", False) for n in ("gbp", "map", "mcmc", "vi"))

    class OneProcess:
        pass

    with pytest.raises(FgError, match="(?s)backend 'solo' runs in one process.*gbp") as e:
        refuse_several(OneProcess(), "solo", "processes", True)
    assert all(n in str(e.value) for n in ("map", "mcmc", "vi"))
    refuse_several(OneProcess(), "solo", "processes", False)  # no coordinator: nothing to refuse
