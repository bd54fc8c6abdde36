"""The summary table shows the parameters before the lets of parameters: a
GP's kernel ``K[N, N]`` (sorted first, upper case) used to fill all 40 rows
and hide rho and alpha. The CLI says how many rows it left out and
``--name`` shows every element of one quantity."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import fglang
from fglang.cli import app

MODEL = """model gp_small
data N: int
data x[N]: real
data y[N]: real
var rho: positive ~ inv_gamma(5, 5)
var alpha: positive ~ half_normal(2)
var sigma: positive ~ half_normal(1)
let K = gp_exp_quad_cov(x, alpha, rho) + diag(rep(sigma^2, N))
factor lik: y ~ mvnormal(rep(0, N), cov=K)
"""


def _data(n: int = 8) -> dict:
    x = np.linspace(-2, 2, n)
    return {"N": n, "x": x.tolist(), "y": np.sin(x).tolist()}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One CLI fit, written: (its output, the file)."""
    tmp = tmp_path_factory.mktemp("summary")
    model, data, out = tmp / "gp.fg", tmp / "gp.json", tmp / "gp.nc"
    model.write_text(MODEL)
    data.write_text(json.dumps(_data()))
    r = CliRunner().invoke(app, ["fit", str(model), "-d", str(data), "-b", "map", "-q", "-o", str(out)])
    assert r.exit_code == 0, r.output
    return r.output, out


def test_vars_come_before_lets_of_vars(fitted):
    post = fglang.load_posterior(fitted[1])
    names = [r["name"] for r in post.summary()]
    assert names[:3] == ["rho", "alpha", "sigma"], names[:5]  # declaration order
    assert names[3] == "K[0, 0]" and len(names) == 40
    assert post.rows_in() == 3 + 64


def test_the_cli_counts_what_it_left_out_and_shows_one_quantity(fitted):
    output, out = fitted
    assert "40 of 67 rows shown, vars first" in output
    runner = CliRunner()
    r = runner.invoke(app, ["summary", str(out), "--name", "K"])
    assert r.exit_code == 0, r.output
    assert "K[7, 7]" in r.output and "rho" not in r.output and "rows shown" not in r.output
    r = runner.invoke(app, ["summary", str(out), "--name", "rho", "--name", "sigma"])
    assert r.exit_code == 0 and "rho" in r.output and "sigma" in r.output and "K[" not in r.output
    r = runner.invoke(app, ["summary", str(out), "--name", "kappa"])
    assert r.exit_code != 0 and "has no var or let 'kappa'" in r.output and "Traceback" not in r.output


def test_one_chain_has_its_ess_and_no_r_hat():
    """Split R-hat needs two chains (ArviZ gives NaN for one): a one-chain
    fit or a prediction shows ESS only, not a column of nan."""
    from fglang.runtime.posterior import Posterior

    rng = np.random.default_rng(0)
    one = Posterior("m", "mcmc", {"a": rng.normal(size=(1, 400))}, node_shapes={"a": ()})
    four = Posterior("m", "mcmc", {"a": rng.normal(size=(4, 400))}, node_shapes={"a": ()})
    (row1,), (row4,) = one.summary(), four.summary()
    assert "r_hat" not in row1 and row1["ess_bulk"] > 100
    assert row4["r_hat"] == pytest.approx(1.0, abs=0.02) and row4["ess_bulk"] > 400
