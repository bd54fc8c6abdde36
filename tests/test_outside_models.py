"""Models from outside sources against their reference posteriors.

``tests/outside/`` holds 12 posteriors of posteriordb (Magnusson et al.,
github.com/stan-dev/posteriordb: Gelman & Hill's regressions, eight schools,
AR(K), a GP, a normal mixture, ...) written in fglang, their data, and a
summary of posteriordb's reference draws (10 x 1000 thinned Stan draws: per
parameter mean and sd; ``make_reference.py`` writes them from the repository).

Agreement means: every parameter's mean within 0.25 reference sds of the
reference mean and its sd within 0.7-1.3x the reference sd. For ``vi`` that is
asked where its Pareto k-hat is below 0.7; where k-hat is above, the fit must
warn instead (Yao et al. 2018: the guide is then not to be trusted).

The per-model tests use ``vi``'s defaults on every model (it stops when its
ELBO converges) and a short NUTS run (2 chains x (300 + 500), float64 as by
default on a CPU) on four; ``test_true_defaults`` (slow) runs NUTS's real
defaults on the whole set.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fglang

OUTSIDE = Path(__file__).resolve().parent / "outside"
MODELS = sorted(p.stem for p in OUTSIDE.glob("*.fg"))
MEAN_TOL = 0.25
SD_RATIO = (0.7, 1.3)
KHAT_BAD = 0.7


def load(name: str):
    ref = json.loads((OUTSIDE / f"{name}.reference.json").read_text())
    data = json.loads((OUTSIDE / f"{name}.data.json").read_text())
    return fglang.load(OUTSIDE / f"{name}.fg"), data, ref


def compare(post, ref: dict) -> dict[str, tuple[float, float]]:
    """parameter -> (|mean - reference mean| / reference sd, sd / reference sd)."""
    out = {}
    for label, r in ref["params"].items():
        name, _, idx = label.partition("[")
        x = post.samples(name)
        if idx:
            x = x[(slice(None),) + tuple(int(i) for i in idx[:-1].split(","))]
        out[label] = (abs(float(x.mean()) - r["mean"]) / r["sd"], float(x.std(ddof=1)) / r["sd"])
    return out


def disagreements(post, ref: dict) -> list[str]:
    return [
        f"{k}: mean off by {e:.2f} sd, sd ratio {s:.2f}"
        for k, (e, s) in compare(post, ref).items()
        if e > MEAN_TOL or not SD_RATIO[0] <= s <= SD_RATIO[1]
    ]


def check_vi(post, ref: dict) -> None:
    khat = post.attrs["khat"]
    warned = [w for w in post.warnings() if "k-hat" in w]
    if khat < KHAT_BAD:
        assert not disagreements(post, ref), (khat, disagreements(post, ref))
        assert not warned
    else:
        assert warned and "mcmc" in warned[0], post.warnings()


def test_the_set():
    assert len(MODELS) >= 10
    for name in MODELS:
        ref = json.loads((OUTSIDE / f"{name}.reference.json").read_text())
        assert ref["posteriordb"] and ref["draws"] == 10000 and ref["params"]
        assert (OUTSIDE / f"{name}.data.json").stat().st_size < 50_000


# two in every run (about 10 s each), all twelve with the heavy tests
EVERY_RUN = {"eight_schools_noncentered", "blr"}


@pytest.mark.parametrize("name", [n if n in EVERY_RUN else pytest.param(n, marks=pytest.mark.heavy) for n in MODELS])
def test_vi_defaults(name):
    model, data, ref = load(name)
    post = model.fit(data, backend="vi", seed=0)
    assert post.attrs["stop"] == "converged" and post.attrs["dtype"] == "float64"
    assert post.attrs["guide"] == "mvn"  # all are small: the full-rank guide
    check_vi(post, ref)


# NUTS's compilation dominates a short run: four models here, all of them in
# test_true_defaults (slow)
MCMC_SHORT = ["eight_schools_noncentered", "gp_regr", "low_dim_gauss_mix", "arK"]


@pytest.mark.heavy
@pytest.mark.parametrize("name", MCMC_SHORT)
def test_mcmc_short(name):
    model, data, ref = load(name)
    post = model.fit(data, backend="mcmc", seed=0, chains=2, warmup=300, samples=500)
    assert post.attrs["dtype"] == "float64"
    assert not disagreements(post, ref), disagreements(post, ref)


@pytest.mark.heavy
def test_x64_is_per_fit():
    """vi fits in float64 on a CPU without leaving x64 on: gbp's float32 and
    JAX's default dtype are unchanged after it in the same process."""
    model = fglang.compile("model s\ndata y: real\nvar sigma: positive ~ half_normal(1)\n"
                           "factor o: y ~ normal(0, sigma)\n")
    data = {"y": 0.7}
    was = bool(jax.config.jax_enable_x64)
    post = model.fit(data, backend="vi", seed=0, steps=300)
    assert post.draws["sigma"].dtype == np.float64 and post.attrs["dtype"] == "float64"
    assert bool(jax.config.jax_enable_x64) == was
    post32 = model.fit(data, backend="vi", seed=0, steps=300, dtype="float32")
    assert post32.draws["sigma"].dtype == np.float32 and post32.attrs["dtype"] == "float32"
    if not was:
        assert jnp.zeros(2).dtype == jnp.float32
    gbp = fglang.compile("model g\ndata y: real\nvar x: real ~ normal(0, 1)\nfactor o: y ~ normal(x, 1)\n")
    gpost = gbp.fit({"y": 1.0}, backend="gbp")
    assert gpost.mean("x") == pytest.approx(0.5, abs=1e-5)
    assert bool(jax.config.jax_enable_x64) == was


@pytest.mark.heavy
def test_true_defaults():
    """NUTS with every default (4 x (1000 + 1000), float64) on the whole set
    (``test_vi_defaults`` already runs vi's defaults on it), and vi's with
    another seed."""
    failed = []
    for name in MODELS:
        model, data, ref = load(name)
        try:
            check_vi(model.fit(data, backend="vi", seed=1), ref)
        except AssertionError as err:
            failed.append(f"vi {name}: {err}")
        bad = disagreements(model.fit(data, backend="mcmc", seed=1), ref)
        if bad:
            failed.append(f"mcmc {name}: {bad}")
    assert not failed, failed
