"""Models with nothing to fit are legal and fit as nothing, on every backend
(issue 16): no vars, vars of size zero, a family with no members, a factor
that touches no var. On 29fd021 each was a traceback in at least one backend.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import fglang
from fglang.runtime.posterior import load_posterior

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

OPTS = {
    "gbp": {"iters": 3},
    "vi": {"steps": 3, "draws": 4},
    "mcmc": {"chains": 1, "warmup": 3, "samples": 3},
    "map": {"iters": 3},
}
MODELS = {
    "no_vars": ("model m\ndata y: real\nfactor f: y ~ normal(0, 1)\n", {"y": 1.0}),
    "zero_size_var": ("model m\nvar w: real[0] ~ normal(0, 1)\nvar m: real ~ normal(0, 1)\n", {}),
    "zero_nodes": ("model m\ndata N: int\nvar w[N]: real ~ normal(0, 1)\n", {"N": 0}),
    "factor_without_vars": ("model m\nvar m: real ~ normal(0, 1)\ndata y: real\nfactor f: y ~ normal(0, 1)\n",
                            {"y": 1.0}),
}


@pytest.mark.parametrize("backend", list(OPTS))
@pytest.mark.parametrize("name", list(MODELS))
def test_fits_as_nothing(name, backend):
    src, data = MODELS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = fglang.compile(src, "m.fg").fit(data, backend=backend, **OPTS[backend])
    rows = post.summary()
    if name in ("zero_size_var", "factor_without_vars"):
        assert [r["name"] for r in rows] == ["m"]
    if name == "zero_nodes":
        assert rows == [] and post.samples("w").shape[1:] == (0,)


def test_an_empty_posterior_saves_and_loads(tmp_path):
    post = fglang.compile(MODELS["no_vars"][0], "m.fg").fit(MODELS["no_vars"][1], backend="gbp", iters=3)
    post.save(tmp_path / "p.nc")
    back = load_posterior(tmp_path / "p.nc")
    assert back.names == [] and back.summary() == []


def test_a_var_of_size_zero_round_trips(tmp_path):
    src, data = MODELS["zero_size_var"]
    post = fglang.compile(src, "m.fg").fit(data, backend="vi", **OPTS["vi"])
    post.save(tmp_path / "p.nc")
    assert load_posterior(tmp_path / "p.nc").mean("w").shape == (0,)


def test_a_real_builtin_of_an_int():
    """``inv_logit(k)`` of int data was a JAX TypeError in every backend."""
    m = fglang.compile("model m\ndata k: int\nvar x: real ~ normal(inv_logit(k), 1)\n", "m.fg")
    post = m.fit({"k": 2}, backend="map", iters=5)
    assert np.isclose(post.mean("x"), 1 / (1 + np.exp(-2)), atol=1e-4)


def test_map_with_a_zero_width_vector_var_in_a_live_factor():
    """Found by the fits campaign (docs/cli.md's batched regression with D = 0): a ZeroDivisionError in
    the Laplace draws of the empty var."""
    src = ("model lr\ndata N: int\ndata D: int\ndata X[N, D]: real\ndata y[N]: real\nvar w: real[D] ~ normal(0, 10)\n"
           "var b: real ~ normal(0, 10)\nfactor lik[n in 0:N]: y[n] ~ normal(dot(X[n], w) + b, 0.5)\n")
    post = fglang.compile(src, "lr.fg").fit({"N": 3, "D": 0, "X": [[], [], []], "y": [1.0, 2.0, 3.0]},
                                            backend="map", iters=5, draws=20)
    assert abs(float(post.mean("b")) - 2.0) < 0.1


@pytest.mark.parametrize("backend, options", [("vi", {"steps": 300}), ("mcmc", {"chains": 1, "warmup": 50,
                                                                             "samples": 50})])
def test_numpyro_with_an_empty_sparsity_var_in_a_live_factor(backend, options):
    """Found by the fits campaign: vi on the sparse regression with D = 0 was KeyError 'w__prior' (the
    empty var's prior family is pruned, its sample site was still looked up). The posterior of b is
    the regression without X: y ~ normal(b, sigma)."""
    src = (EXAMPLES / "sparse_regression.fg").read_text()
    y = np.random.default_rng(0).normal(3.0, 0.5, size=20)
    post = fglang.compile(src, "sparse_regression.fg").fit(
        {"N": 20, "D": 0, "X": np.zeros((20, 0)), "y": y}, backend=backend, seed=0, **options)
    assert post.mean("w").shape == (0,)
    assert abs(float(post.mean("b")) - y.mean()) < 0.3
