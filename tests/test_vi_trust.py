"""VI that says when it is wrong: the guide chosen by size, the ELBO stopping
rule, Pareto-smoothed importance sampling (k-hat) and its warning, the dtype.

Small models only (a few seconds each); the outside-model set is in
``test_outside_models.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

import fglang
from fglang.errors import FgError
from fglang.runtime.posterior import load_posterior
from fglang.runtime.vi.fit import choose_guide
from fglang.runtime.vi.psis import psis

CORRELATED = """
model correlated
data rho: real
var x: real[2]
factor f: potential logp(mvnormal([0, 0], cov=[[1, rho], [rho, 1]]), x)
"""


def test_psis_matches_arviz():
    import arviz as az

    rng = np.random.default_rng(0)
    for lw in (rng.normal(size=1000), 3 * rng.normal(size=1000), rng.standard_t(2, size=2000),
               np.log(rng.pareto(0.8, size=1000))):
        mine, k = psis(lw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs, k_az = az.psislw(lw.copy())
        assert k == pytest.approx(float(k_az), rel=1e-10)
        np.testing.assert_allclose(mine, np.asarray(theirs), atol=1e-10)
    w, k = psis(np.zeros(500))  # equal weights: nothing to smooth
    assert k < 0.5 and np.allclose(np.exp(w), 1 / 500)
    assert psis(np.array([0.0, np.inf, 1.0] * 50))[1] == np.inf


def test_choose_guide_by_size():
    assert choose_guide("auto", 3) == "mvn" and choose_guide("auto", 500) == "mvn"
    assert choose_guide("auto", 501) == "lowrank" and choose_guide("auto", 100_000) == "lowrank"
    assert choose_guide("auto", 100_001) == "normal"
    assert choose_guide("normal", 3) == "normal"


def test_full_rank_guide_fits_a_correlated_posterior():
    post = fglang.compile(CORRELATED).fit({"rho": 0.99}, backend="vi", seed=0)
    a = post.attrs
    assert a["guide"] == "mvn" and a["dim"] == 2 and a["stop"] == "converged" and a["khat"] < 0.5
    assert 1000 <= a["steps"] < 50_000 and "Laplace-whitened" in a["start"]
    x = post.samples("x")
    np.testing.assert_allclose(x.std(axis=0), 1.0, atol=0.1)
    assert np.corrcoef(x.T)[0, 1] == pytest.approx(0.99, abs=0.005)
    assert not post.warnings()
    lines = post.report()
    assert lines[0] == f"guide: mvn (2 unconstrained parameters), {a['steps']} steps: the ELBO converged"
    assert lines[1].startswith("Pareto k-hat: ") and "(good;" in lines[1] and lines[2] == "dtype: float64"


def test_mean_field_on_a_correlated_posterior_warns():
    """Mean-field VI is 7x too narrow here (sd sqrt(1 - 0.99^2)): its means look
    fine, and only k-hat says it is wrong."""
    post = fglang.compile(CORRELATED).fit({"rho": 0.99}, backend="vi", seed=0, guide="normal")
    assert post.attrs["guide"] == "normal" and post.attrs["khat"] > 0.7
    assert np.all(post.sd("x") < 0.3)
    (w,) = post.warnings()
    assert "Pareto k-hat" in w and "--backend mcmc" in w and "map" in w
    assert "(bad;" in post.report()[1]


def test_step_cap_warns_and_lr_overrides():
    post = fglang.compile(CORRELATED).fit({"rho": 0.5}, backend="vi", seed=0, steps=300, lr=0.001)
    assert post.attrs["steps"] == 300 and post.attrs["stop"] == "max_steps"
    assert post.attrs["options"]["lr"] == 0.001
    assert any("cap of 300 steps" in w and "--steps" in w for w in post.warnings())
    assert "the step cap was reached" in post.report()[0]


@pytest.mark.heavy  # 15 CPU-s; the low-rank guide's entropy is checked cheaply in test_vi_step_cost
def test_lowrank_above_500_parameters():
    src = "model big\ndata D: int\nvar w: real[D] ~ normal(0, 2)\n"
    post = fglang.compile(src).fit({"D": 520}, backend="vi", seed=0, steps=200, draws=300)
    assert post.attrs["guide"] == "lowrank" and post.attrs["dim"] == 520
    assert post.draws["w"].shape == (1, 300, 520)
    assert abs(float(post.sd("w").mean()) - 2.0) < 0.2


def test_resample_by_importance_weights():
    post = fglang.compile(CORRELATED).fit({"rho": 0.9}, backend="vi", seed=0, draws=500, resample=True)
    x = post.samples("x")
    assert x.shape == (500, 2) and len(np.unique(x[:, 0])) < 500  # drawn with replacement
    np.testing.assert_allclose(x.std(axis=0), 1.0, atol=0.15)


def test_cannot_start_is_an_error():
    src = "model z\nvar x: real ~ normal(0, 1)\nfactor f: potential log(0 * x)\n"
    with pytest.raises(FgError, match="no valid initial point: factor .f.: its potential is not finite"):
        fglang.compile(src).fit({}, backend="vi")


def test_diagnostics_in_the_file_and_the_summary(tmp_path):
    """k-hat, steps and stop reason survive the posterior file; ``fglang summary``
    prints them, and the advice needs no JAX (it runs on files)."""
    from fglang.cli import app

    model = tmp_path / "c.fg"
    model.write_text(CORRELATED)
    data = tmp_path / "c.json"
    data.write_text(json.dumps({"rho": 0.99}))
    out = tmp_path / "p.nc"
    r = CliRunner().invoke(app, ["fit", str(model), "--data", str(data), "--backend", "vi", "--guide", "normal",
                                 "--dtype", "float32", "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert "Pareto k-hat" in r.output and "guide: normal" in r.output and "dtype: float32" in r.output
    post = load_posterior(out)
    assert post.attrs["dtype"] == "float32" and post.attrs["khat"] > 0.7 and post.attrs["stop"] == "converged"
    r = CliRunner().invoke(app, ["summary", str(out)])
    assert r.exit_code == 0 and "Pareto k-hat" in r.output and "warning: Pareto k-hat" in r.output
    code = (
        "import sys; from fglang.runtime.posterior import load_posterior; "
        f"p = load_posterior({str(out)!r}); w = p.warnings(); lines = p.report(); "
        "assert 'jax' not in sys.modules, 'jax imported'; print(len(w), lines[1])"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("1 Pareto k-hat")


def test_mcmc_records_float64():
    post = fglang.compile(CORRELATED).fit({"rho": 0.5}, backend="mcmc", seed=0, chains=1, warmup=100, samples=100)
    assert post.attrs["dtype"] == "float64" and post.draws["x"].dtype == np.float64
    assert "dtype: float64" in post.report()


FUNNEL = """
model funnel
data J: int
data y[J]: real
data sigma[J]: real
var mu: real ~ normal(0, 5)
var tau: positive ~ half_cauchy(5)
var theta[J]: real ~ normal(mu, tau)
factor obs[j in 0:J]: y[j] ~ normal(theta[j], sigma[j])
"""


def test_newton_finishes_the_mode_where_lbfgs_ran_out_and_not_down_a_funnel(monkeypatch):
    """posteriordb's diamonds (24 correlated predictors) used L-BFGS's 300
    iterations and VI started unwhitened: 13 sd off after 43,400 steps. Newton
    from there converges on a proper posterior; down the centered eight
    schools' funnel it does not, and VI starts from the initial point."""
    from fglang.runtime.vi import mode

    monkeypatch.setattr(mode, "MODE_ITERS", 2)
    post = fglang.compile(CORRELATED).fit({"rho": 0.99}, backend="vi", seed=0, steps=400)
    assert "Laplace-whitened" in post.attrs["start"]
    eight = {"J": 8, "y": [28, 8, -3, 7, -1, 1, 18, 12], "sigma": [15, 10, 16, 11, 9, 11, 10, 18]}
    monkeypatch.setattr(mode, "MODE_ITERS", 40)
    post = fglang.compile(FUNNEL).fit(eight, backend="vi", seed=0, steps=400)
    assert post.attrs["start"] == "initial point"
