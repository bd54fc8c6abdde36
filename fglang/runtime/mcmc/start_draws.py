"""NumPyro's search for a valid start with its per-site draws batched: the
same values, bit for bit, from a fraction of the code.

Why: NumPyro's ``find_valid_initial_params`` draws each site's uniform start
from its own key of a chain of ``random.split``s (``for k in params:
params[k] = uniform(subkey); key, subkey = split(key)``), two threefry hashes
per site. Eagerly (``MCMC.run``) each hash is one small program compiled once
and reused; inside fglang's one start program (`program.NutsPrograms.init`)
every hash is a loop of its own that XLA compiles: at K = 50 scalar vars,
those 100 hashes (and the prototype trace's 100) were most of the start
program's 20 s compile, where 150 splits and uniforms alone took 11 s. Here
the chain of splits is one ``lax.scan`` and the uniforms one vmapped draw per
shape, which give the same bits (threefry is elementwise in its key and
counter; a scan of splits is the same splits).

`batched_start_search` swaps this in for NumPyro's function while a start is
searched (`starts.find_start`); anything but its uniform-box path (an init
strategy other than ``init_to_uniform`` and ``init_to_value``, enumeration,
forward-mode differentiation) runs NumPyro's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax, random
from jax.flatten_util import ravel_pytree
from numpyro import handlers


def seed_chain(key: Any, n: int) -> tuple[Any, Any]:
    """(the ``n`` keys ``seed`` hands out, ``key, sub = split(key)`` in turn, as one scan; the key left)."""
    if n == 0:
        return jnp.zeros((0,) + jnp.shape(key), key.dtype), key

    def step(k: Any, _: None) -> tuple:
        k, sub = random.split(k)
        return k, sub

    key, subs = lax.scan(step, key, None, length=n)
    return subs, key


def key_chain(key: Any, n: int) -> tuple[Any, Any]:
    """(the ``n`` subkeys of ``key, subkey = split(key)`` taken in turn after a
    first split, the key left after them): the sequence NumPyro's loop walks,
    which is ``seed``'s chain of ``n + 1`` splits (the last subkey unused, as there)."""
    subs, key = seed_chain(key, n + 1)
    return subs[:n], key


def uniform_draws(subkeys: Any, shapes: list[tuple[int, ...]], radius: float) -> list[Any]:
    """``uniform(subkeys[i], shapes[i], -radius, radius)`` for every i, one
    vmapped draw per distinct shape."""
    out: list[Any] = [None] * len(shapes)
    for shape in dict.fromkeys(shapes):
        rows = [i for i, s in enumerate(shapes) if s == shape]
        draws = jax.vmap(lambda k, shape=shape: random.uniform(k, shape, minval=-radius, maxval=radius))(
            subkeys[jnp.asarray(rows)])
        for j, i in enumerate(rows):
            out[i] = draws[j]
    return out


def find_valid_initial_params(original: Callable, rng_key, model, *, init_strategy=None, enum=False,
                              model_args=(), model_kwargs=None, prototype_params=None,
                              forward_mode_differentiation=False, validate_grad=True):
    """NumPyro's function of this name (``original``), its uniform-box path batched."""
    from numpyro.infer.initialization import init_to_uniform
    from numpyro.infer.util import _init_to_unconstrained_value, potential_energy
    from numpyro.util import not_jax_tracer

    model_kwargs = {} if model_kwargs is None else model_kwargs
    strategy = init_strategy if isinstance(init_strategy, partial) else (init_strategy or init_to_uniform)()
    if strategy.func is init_to_uniform:
        radius, init_values = strategy.keywords.get("radius"), {}
    elif strategy.func is _init_to_unconstrained_value:
        radius, init_values = 2, strategy.keywords.get("values")
    else:
        radius = None
    if radius is None or prototype_params is None or enum or forward_mode_differentiation:
        return original(rng_key, model, init_strategy=init_strategy or init_to_uniform, enum=enum,
                        model_args=model_args, model_kwargs=model_kwargs, prototype_params=prototype_params,
                        forward_mode_differentiation=forward_mode_differentiation, validate_grad=validate_grad)
    drawn = [k for k in prototype_params if k not in init_values]
    shapes = [tuple(jnp.shape(prototype_params[k])) for k in drawn]
    potential_fn = partial(potential_energy, model, model_args, model_kwargs, enum=enum)

    def body_fn(state: tuple) -> tuple:
        i, key, _, _ = state
        subkeys, key = key_chain(key, len(drawn))
        draws = dict(zip(drawn, uniform_draws(subkeys, shapes, radius), strict=True))
        params = {k: init_values[k] if k in init_values else draws[k] for k in prototype_params}
        if validate_grad:
            pe, z_grad = jax.value_and_grad(potential_fn)(params)
            is_valid = jnp.isfinite(pe) & jnp.all(jnp.isfinite(ravel_pytree(z_grad)[0]))
        else:
            pe, z_grad = potential_fn(params), None
            is_valid = jnp.isfinite(pe)
        return i + 1, key, (params, pe, z_grad), is_valid

    def cond_fn(state: tuple) -> Any:
        i, _, _, is_valid = state
        return (i < 100) & (~is_valid)

    # the loop's first state is never returned (it runs at least once): zeros, not the prototype's
    # values, so that the prototype trace's draws (NumPyro's, unbatched) are dead code here
    zeros = jax.tree.map(jnp.zeros_like, prototype_params)

    def find(key: Any, exit_early: bool = False) -> tuple:
        state = (0, key, (zeros, 0.0, zeros if validate_grad else None), False)
        if exit_early and not_jax_tracer(key):
            _, _, found, is_valid = state = body_fn(state)
            if not_jax_tracer(is_valid) and bool(jax.device_get(is_valid)):
                return found, is_valid
        _, _, found, is_valid = lax.while_loop(cond_fn, body_fn, state)
        return found, is_valid

    from numpyro.util import is_prng_key

    if is_prng_key(rng_key):
        return find(rng_key, exit_early=True)
    return lax.map(find, rng_key)


def prototype_trace(model: Callable, key: Any, strategy: Callable, args: tuple,
                    around: contextlib.AbstractContextManager | None = None) -> dict:
    """NumPyro's prototype trace, ``trace(substitute(seed(model, key),
    substitute_fn=strategy)).get_trace(*args)``, its keys from one scan of
    splits and ``init_to_uniform``'s draws one vmapped draw per shape (the
    same values). A first, abstract run of the model (its ops are dead code)
    finds which messages take a key, in order, and the shapes drawn.
    ``around``: entered for the traced run only (not the first run)."""
    from numpyro.distributions.transforms import biject_to
    from numpyro.infer.initialization import init_to_uniform, init_to_value

    base = strategy if isinstance(strategy, partial) else strategy()
    if base.func is init_to_uniform:
        radius, given = base.keywords.get("radius", 2), {}
    elif base.func is init_to_value:
        radius, given = 2, base.keywords.get("values", {})
    else:
        with around or contextlib.nullcontext():
            return handlers.trace(handlers.substitute(handlers.seed(model, key), substitute_fn=strategy)
                                  ).get_trace(*args)
    taken: list[str] = []
    # as context managers: a seed called as a function runs a plain copy of itself (`seed.__call__`)
    with handlers.trace() as dry, handlers.substitute(substitute_fn=strategy), \
            _KeyTaking(lambda msg: taken.append(msg["name"]), rng_seed=key):
        model(*args)
    subs, _ = seed_chain(key, len(taken))
    drawn = {n: i for i, n in enumerate(taken) if _uniform_site(dry.get(n), given)}
    shapes = [tuple(dry[n]["kwargs"]["sample_shape"])
              + tuple(biject_to(dry[n]["fn"].support).inverse_shape(dry[n]["fn"].shape())) for n in drawn]
    table = dict(zip(drawn, uniform_draws(subs[jnp.asarray(list(drawn.values()), jnp.int32)], shapes, radius)
                     if drawn else [], strict=True))
    keys = iter(subs)

    def drawn_or_given(site: dict) -> Any:
        if site["name"] in table and site["value"] is None:
            return biject_to(site["fn"].support)(table[site["name"]])
        return strategy(site)

    with around or contextlib.nullcontext(), handlers.trace() as tr, \
            handlers.substitute(substitute_fn=drawn_or_given), \
            _KeyTaking(lambda msg: msg["kwargs"].update(rng_key=next(keys)), rng_seed=key):
        model(*args)
    return tr


class _KeyTaking(handlers.seed):
    """``seed`` calling ``on_take(msg)`` after each message it hands a key (the
    first run records them, the traced run replaces the key by the chain's)."""

    def __init__(self, on_take: Callable[[Any], None], rng_seed: Any) -> None:
        super().__init__(rng_seed=rng_seed)
        self.on_take = on_take

    def process_message(self, msg: Any) -> None:
        before = self.rng_key
        super().process_message(msg)
        if self.rng_key is not before:
            self.on_take(msg)


def _uniform_site(site: dict | None, given: dict) -> bool:
    """Whether ``init_to_uniform`` draws this site's start (as init_to_value defers to it)."""
    return (site is not None and site["type"] == "sample" and not site["is_observed"]
            and not site["fn"].support.is_discrete and site["name"] not in given)


@contextlib.contextmanager
def batched_start_search() -> Iterator[None]:
    """NumPyro's ``initialize_model`` calling `find_valid_initial_params` (the
    batched one) while the block runs."""
    from numpyro.infer import util

    original = util.find_valid_initial_params
    util.find_valid_initial_params = partial(find_valid_initial_params, original)
    try:
        yield
    finally:
        util.find_valid_initial_params = original
