"""The start search's batched draws (`mcmc.start_draws`) give NumPyro's own
values bit for bit: its ``find_valid_initial_params`` and its prototype trace,
over models of many sites of several shapes and supports, user starts, one or
several chains, and a search that needs retries. The oracle is NumPyro itself."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import random
from numpyro import handlers
from numpyro.infer import init_to_uniform, init_to_value
from numpyro.infer import util as infer_util
from numpyro.infer.util import initialize_model

from fglang.runtime.mcmc import start_draws

SUPPORTS = {
    "real": lambda: dist.Normal(0.0, 1.0),
    "positive": lambda: dist.LogNormal(0.0, 1.0),
    "unit": lambda: dist.Beta(2.0, 2.0),
    "simplex": lambda: dist.Dirichlet(jnp.ones(3)),
}


def make_model(sites: list[tuple[str, tuple[int, ...]]], hopeless_below: float | None = None):
    """Latent sites of the given supports and shapes, a plate, an observed site;
    ``hopeless_below``: the log density is -inf unless site 0's first element
    exceeds it (a search that must retry)."""

    def model(y):
        xs = []
        for i, (kind, shape) in enumerate(sites):
            xs.append(numpyro.sample(f"x{i}", SUPPORTS[kind]().expand(shape).to_event(len(shape))
                                     if kind != "simplex" else SUPPORTS[kind]()))
        with numpyro.plate("rows", y.shape[0]):
            numpyro.sample("y", dist.Normal(jnp.sum(jnp.ravel(xs[0])), 1.0), obs=y)
        if hopeless_below is not None:
            numpyro.factor("wall", jnp.where(jnp.ravel(xs[0])[0] > hopeless_below, 0.0, -jnp.inf))

    return model


site_lists = st.lists(
    st.tuples(st.sampled_from(sorted(SUPPORTS)), st.sampled_from([(), (2,), (3,), (2, 2)])),
    min_size=1, max_size=7,
).map(lambda xs: [(k, () if k == "simplex" else s) for k, s in xs])


def _numpyro_and_batched(fn):
    """``fn()`` with NumPyro's own search, then with the batched one."""
    original = infer_util.find_valid_initial_params
    theirs = fn()
    with start_draws.batched_start_search():
        assert infer_util.find_valid_initial_params is not original
        ours = fn()
    assert infer_util.find_valid_initial_params is original
    return theirs, ours


def _assert_same(a, b) -> None:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@settings(max_examples=6, deadline=None)
@given(sites=site_lists, chains=st.sampled_from([1, 3]), seed=st.integers(0, 2**16), jit=st.booleans())
def test_the_search_finds_numpyros_start_bit_for_bit(sites, chains, seed, jit):
    model = make_model(sites)
    y = jnp.linspace(-1.0, 1.0, 5)
    key = random.PRNGKey(seed)
    keys = random.split(key, chains) if chains > 1 else key

    def search(keys):
        info, _, _, _ = initialize_model(keys, model, init_strategy=init_to_uniform, dynamic_args=True,
                                         model_args=(y,))
        return info

    run = jax.jit(search) if jit else search
    theirs, ours = _numpyro_and_batched(lambda: run(keys))
    _assert_same(theirs, ours)


def test_a_search_that_retries_finds_the_same_start():
    model = make_model([("real", (2,)), ("positive", ())], hopeless_below=1.0)  # 3/4 of the box is -inf
    y = jnp.zeros(3)
    keys = random.split(random.PRNGKey(3), 4)

    def search(keys):
        return initialize_model(keys, model, init_strategy=init_to_uniform, dynamic_args=True, model_args=(y,))[0]

    theirs, ours = _numpyro_and_batched(lambda: jax.jit(search)(keys))
    _assert_same(theirs, ours)
    assert np.all(np.asarray(ours.z["x0"])[:, 0] > 1.0)  # every chain retried its way past the wall


def test_user_starts_keep_their_values_and_the_others_are_numpyros():
    model = make_model([("real", (3,)), ("positive", (2,)), ("unit", ())])
    y = jnp.ones(4)
    strategy = init_to_value(values={"x1": jnp.array([0.5, 2.0])})
    keys = random.split(random.PRNGKey(11), 2)

    def search(keys):
        return initialize_model(keys, model, init_strategy=strategy, dynamic_args=True, model_args=(y,))[0]

    theirs, ours = _numpyro_and_batched(lambda: jax.jit(search)(keys))
    _assert_same(theirs, ours)
    np.testing.assert_allclose(np.exp(np.asarray(ours.z["x1"])), [[0.5, 2.0]] * 2, rtol=1e-6)


def test_other_strategies_run_numpyros_own_search():
    from numpyro.infer import init_to_median

    model = make_model([("real", ())])
    y = jnp.ones(2)
    calls = []
    original = infer_util.find_valid_initial_params

    def spy(*a, **k):
        calls.append(1)
        return original(*a, **k)

    infer_util.find_valid_initial_params = spy
    try:
        with start_draws.batched_start_search():
            initialize_model(random.PRNGKey(0), model, init_strategy=init_to_median(num_samples=5),
                             model_args=(y,))
    finally:
        infer_util.find_valid_initial_params = original
    assert calls == [1]


@settings(max_examples=6, deadline=None)
@given(sites=site_lists, seed=st.integers(0, 2**16), user=st.booleans())
def test_the_prototype_trace_is_numpyros(sites, seed, user):
    model = make_model(sites)
    y = jnp.linspace(0.0, 1.0, 3)
    key = random.PRNGKey(seed)
    strategy = init_to_value(values={"x0": _first_value(model, y)}) if user else init_to_uniform
    theirs = handlers.trace(handlers.substitute(handlers.seed(model, key), substitute_fn=strategy)).get_trace(y)
    ours = jax.jit(lambda k: {n: s["value"] for n, s in start_draws.prototype_trace(model, k, strategy, (y,)).items()
                              if s["type"] == "sample"})(key)
    assert list(ours) == [n for n, s in theirs.items() if s["type"] == "sample"]
    for name, value in ours.items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(theirs[name]["value"]), err_msg=name)


def _first_value(model, y):
    return handlers.trace(handlers.seed(model, 7)).get_trace(y)["x0"]["value"]


def test_the_start_program_is_unchanged_by_the_batching(monkeypatch):
    """fglang's start (the screened starts NUTS begins from) with and without the batching."""
    import contextlib

    import fglang
    from fglang.runtime.mcmc import starts
    from fglang.runtime.numpyro_sites import numpyro_model

    source = "\n".join(["model m", "data N: int", "data y[N]: real"]
                       + [f"var a{i}: real ~ normal(0, 1)" for i in range(4)]
                       + ["var s: real(lower=0) ~ exponential(1)", "var v[3]: real ~ normal(0, 2)"]
                       + [f"factor f{i}[n in 0:N]: y[n] ~ normal(a{i} + v[{i % 3}], s)" for i in range(4)]) + "\n"
    bm = fglang.compile(source, "m.fg").bind({"N": 6, "y": [0.1, -0.3, 0.8, 1.2, -0.5, 0.0]})
    model = numpyro_model(bm, {}).model_fn()
    data = {k: jnp.asarray(v) for k, v in bm.data.items()}
    keys = random.split(random.PRNGKey(5), 4)

    def start(keys):
        found = starts.find_start(model, keys, 4, init_to_uniform, (data,))
        return starts.screened_start(model, keys, 4, init_to_uniform, set(), (data,), found=found)

    ours = jax.jit(start)(keys)
    monkeypatch.setattr(starts, "batched_start_search", contextlib.nullcontext)
    theirs = jax.jit(lambda k: start(k))(keys)  # a new function: traced anew, without the batching
    _assert_same(theirs, ours)


@pytest.mark.parametrize("n", [0, 1, 5])
def test_the_key_chains_are_the_loops(n):
    key = random.PRNGKey(42)
    subs, left = start_draws.key_chain(key, n)
    k, sub = random.split(key)
    expected = []
    for _ in range(n):
        expected.append(sub)
        k, sub = random.split(k)
    np.testing.assert_array_equal(np.asarray(subs).reshape(n, 2), np.asarray(expected).reshape(n, 2))
    np.testing.assert_array_equal(np.asarray(left), np.asarray(k))
