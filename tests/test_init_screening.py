"""Screened NUTS starts (fglang/runtime/mcmc/starts.py): on a model with a
hopeless region (a cliff of -1e5 nats over a quarter of the uniform box), no
chain ever starts there, over many seeds; the starts still differ across
chains and spread over the rest of the box; a chain whose NumPyro start
passes keeps it exactly; the potential and gradient handed to NUTS are those
of the chosen point; a start the user gave is never redrawn. The truth is by
construction (where the cliff is, what NumPyro's own start was)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import init_to_uniform, init_to_value
from numpyro.infer.util import initialize_model

from fglang.runtime.mcmc.starts import CANDIDATES, init_keys, screened_start, threshold

CHAINS, SEEDS = 4, 200


def _cliff():
    """x ~ N(0, 3) with a drop of 1e5 nats where x > 1 (a quarter of the box
    (-2, 2)), as ARMA's |theta| > 1; y ~ N(0, 1) is benign."""
    x = numpyro.sample("x", dist.Normal(0.0, 3.0))
    numpyro.sample("y", dist.Normal(0.0, 1.0))
    numpyro.factor("cliff", jnp.where(x > 1.0, -1e5, 0.0))


def _starts(strategy, given: set[str], chains: int = CHAINS):
    """(screened start, NumPyro's own start) for seeds 0 .. SEEDS - 1, as NUTS gets them
    (one vmapped call)."""

    def one(seed):
        keys = jax.random.split(jax.random.PRNGKey(seed), chains) if chains > 1 else jax.random.PRNGKey(seed)
        start = screened_start(_cliff, keys, chains, strategy, given, ())
        own = initialize_model(init_keys(keys, chains), _cliff, init_strategy=strategy, model_args=())[0]
        return start, own

    return jax.tree.map(np.asarray, jax.jit(jax.vmap(one))(jnp.arange(SEEDS)))


@pytest.fixture(scope="module")
def uniform_starts():
    return _starts(init_to_uniform, set())


def test_no_chain_starts_in_the_hopeless_region_and_starts_stay_dispersed(uniform_starts):
    start, own = uniform_starts
    x, x0 = start.z["x"], own.z["x"]  # [seed, chain]
    assert np.mean(x0 > 1.0) > 0.15  # NumPyro alone starts a quarter of the chains on the cliff
    assert np.all(x <= 1.0) and np.all(x >= -2.0)
    keep = x0 <= 1.0  # a start that passes is NumPyro's own, bit for bit
    np.testing.assert_array_equal(x[keep], x0[keep])
    np.testing.assert_array_equal(start.z["y"][keep], own.z["y"][keep])
    # dispersion: four distinct starts per seed, spread as uniform(-2, 1) (sd 3 / sqrt(12))
    assert all(len(np.unique(x[s])) == CHAINS for s in range(SEEDS))
    assert np.std(x) == pytest.approx(3 / np.sqrt(12), rel=0.1)
    assert np.std(start.z["y"]) == pytest.approx(4 / np.sqrt(12), rel=0.1)  # the benign var: uniform(-2, 2)
    replaced = ~keep
    assert np.all(x[replaced] != x0[replaced])


def test_the_start_carries_its_own_potential_and_gradient(uniform_starts):
    start, _ = uniform_starts
    x, y = start.z["x"], start.z["y"]
    # -log N(x; 0, 3) - log N(y; 0, 1) (no cliff: x <= 1), and its gradient
    pe = x**2 / 18 + y**2 / 2 + np.log(3.0) + np.log(2 * np.pi)
    np.testing.assert_allclose(start.potential_energy, pe, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(start.z_grad["x"], x / 9, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(start.z_grad["y"], y, rtol=1e-5, atol=1e-6)


def test_a_start_the_user_gave_is_kept_and_one_chain_gets_an_unbatched_start():
    strategy = init_to_value(values={"y": jnp.asarray(0.7)})
    start, own = _starts(strategy, {"y"}, chains=1)
    assert start.z["x"].shape == (SEEDS,) and start.potential_energy.shape == (SEEDS,)
    np.testing.assert_allclose(start.z["y"], 0.7)
    assert np.all(start.z["x"] <= 1.0) and np.mean(own.z["x"] > 1.0) > 0.15
    full = init_to_value(values={"x": jnp.asarray(1.5), "y": jnp.asarray(0.0)})
    keys = jax.random.split(jax.random.PRNGKey(0), CHAINS)
    assert screened_start(_cliff, keys, CHAINS, full, {"x", "y"}, ()) is None  # all given: NUTS uses them as given


def test_the_threshold_is_the_typical_set_spread():
    """D/2 + 4 (sqrt(D) + 1): above what a Gaussian posterior's draws span
    below its mode (chi2_D / 2, its 0.9999 quantile) for every D, and never
    far above it (ARMA's hopeless starts are 3e5 nats down)."""
    from scipy.stats import chi2

    d = np.concatenate([np.arange(1, 2000), [10_000, 100_000, 1_000_000]])
    q = chi2.ppf(0.9999, d) / 2
    cut = np.array([threshold(int(k)) for k in d])
    assert np.all(q < cut) and np.all(cut < q + 4 + d ** 0.5 * 2)
    assert CANDIDATES >= 8


def _start_program_size(k: int, monkeypatch, batched: bool = True, own_keys: bool = False) -> int:
    """Instructions of NUTS's compiled start program (`mcmc.program`) for k
    families; ``batched``: its start search and prototype trace with their
    draws batched (`mcmc.start_draws`), else NumPyro's own; ``own_keys``: the
    screening's start keys derived by its own operations (``[:, 1]``), not NumPyro's."""
    import contextlib

    import fglang
    from fglang.runtime import program_cache
    from fglang.runtime.mcmc import program, starts
    from fglang.runtime.mcmc.exported import program_args
    from fglang.runtime.mcmc.options import McmcOptions

    rng = np.random.default_rng(0)
    lines = ["model k_families", "data N: int"] + [f"data y{i}[N]: real" for i in range(k)]
    lines += [f"var a{i}: real ~ normal(0, 1)" for i in range(k)]
    lines += [f"factor f{i}[n in 0:N]: y{i}[n] ~ normal(a{i}, 1)" for i in range(k)]
    data = {"N": 5, **{f"y{i}": rng.normal(0, 1, 5) for i in range(k)}}
    bm = fglang.compile("\n".join(lines) + "\n").bind(data)
    if not batched:
        from numpyro import handlers

        def numpyros_trace(model, key, strategy, args, around=None):
            with around or contextlib.nullcontext():
                return handlers.trace(handlers.substitute(handlers.seed(model, key), substitute_fn=strategy)
                                      ).get_trace(*args)

        monkeypatch.setattr(starts, "batched_start_search", contextlib.nullcontext)
        monkeypatch.setattr(program, "prototype_trace", numpyros_trace)
    if own_keys:
        monkeypatch.setattr(starts, "init_keys", lambda keys, chains: jax.vmap(jax.random.split)(keys)[:, 1])
    with jax.enable_x64(True):
        fixed, args = program_args(bm, 0, {})
        nuts = program.NutsPrograms(bm, McmcOptions(chains=4, warmup=10, samples=10), {}, fixed)
        compiled = jax.jit(nuts.init).lower(*args).compile(program_cache.compiler_options("cpu"))
    monkeypatch.undo()
    return compiled.as_text().count("\n")


def test_the_start_programs_draws_are_batched(monkeypatch):
    """NumPyro's start search draws every site's start from its own key of a
    sequential chain of splits (two threefry hashes per site, in the search's
    loop and again in the prototype trace): inside one compiled start program
    that was most of its size and of its compile at K = 50 (16 s of 20). Batched
    (`mcmc.start_draws`: one scan of splits, one vmapped draw per shape) the
    program stops growing with a hash per site. Measured at K = 8: 8,360
    instructions batched against 14,079 NumPyro's way; the screening deriving
    its keys its own way no longer costs a second copy (K = 2: 6,150 against
    6,165), as it did (800 more) before the batching."""
    batched = _start_program_size(8, monkeypatch)
    numpyros = _start_program_size(8, monkeypatch, batched=False)
    assert batched < 0.7 * numpyros, (batched, numpyros)


def _nan_slope():
    """x ~ N(0, 3), 1e5 nats better where x > 1 (three quarters of the box
    (-2, 2) is below it), but there the gradient is NaN (``0 * sqrt'(0)``, as
    posteriordb accel_gp's ``sqrt`` of an underflowed spectral density):
    NumPyro's own search never starts there, and NUTS cannot start there."""
    x = numpyro.sample("x", dist.Normal(0.0, 3.0))
    numpyro.factor("slope", jnp.where(x > 1.0, 0.0, -1e5) + 0.0 * jnp.sqrt(jnp.maximum(1.0 - x, 0.0)))


def test_a_candidate_with_a_nan_gradient_is_never_chosen():
    def one(seed):
        keys = jax.random.split(jax.random.PRNGKey(seed), CHAINS)
        start = screened_start(_nan_slope, keys, CHAINS, init_to_uniform, set(), ())
        own = initialize_model(init_keys(keys, CHAINS), _nan_slope, init_strategy=init_to_uniform, model_args=())[0]
        return start, own

    start, own = jax.tree.map(np.asarray, jax.jit(jax.vmap(one))(jnp.arange(50)))
    assert np.all(own.z["x"] <= 1.0)  # NumPyro's own start: finite gradient
    # before the fix: a candidate past 1 (density 1e5 nats better) replaced it in nearly every chain
    assert np.all(np.isfinite(start.z_grad["x"])) and np.all(np.isfinite(start.potential_energy))
    np.testing.assert_array_equal(start.z["x"], own.z["x"])  # the only usable candidates are as bad as NumPyro's


def test_kept_and_recomputed_gradients_give_the_same_start(monkeypatch):
    """The chosen start's gradient comes from the candidates' evaluations when
    they fit in ``KEPT_GRADIENT_BYTES`` (no second gradient program), else it
    is computed again: the same start, potential and gradient either way."""
    from fglang.runtime.mcmc import starts

    def run():  # 20 seeds: a quarter of NumPyro's starts are on the cliff, so many chains take a candidate
        def one(seed):
            return screened_start(_cliff, jax.random.split(jax.random.PRNGKey(seed), CHAINS), CHAINS,
                                  init_to_uniform, set(), ())

        return jax.tree.map(np.asarray, jax.jit(jax.vmap(one))(jnp.arange(20)))

    kept = run()
    monkeypatch.setattr(starts, "KEPT_GRADIENT_BYTES", 0)
    again = run()
    for a, b in zip(jax.tree.leaves(kept), jax.tree.leaves(again), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    x, y = kept.z["x"], kept.z["y"]
    np.testing.assert_allclose(kept.z_grad["x"], x / 9, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(kept.z_grad["y"], y, rtol=1e-5, atol=1e-6)
