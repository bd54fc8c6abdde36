"""A whole NUTS run as jittable functions of (rng key, data, init values).

Why: ``jax.export`` can store them as StableHLO modules (`program_cache`),
which a warm fit runs without importing NumPyro, tracing the model or
lowering anything (two: the start, then warm-up and sampling; `NutsPrograms`).
Why not ``MCMC.run`` itself: it orchestrates in Python (eager
initialization, several jitted pieces), so there is nothing to export; this
is its vectorized path rebuilt from the same parts, in the same order, so
that a seed draws the same chains:

* the per-chain keys: ``random.split(key, chains)`` (one chain: the key);
* the chains' starts screened (`mcmc.starts`: NumPyro's own start unless
  its log density is hopeless, then another uniform draw), as ``init_params``;
* ``NUTS.init`` (NumPyro's ``initialize_model`` with the init strategy, then
  ``hmc``'s init kernel: step size 1, diagonal mass matrix, Stan's windowed
  adaptation over ``warmup`` iterations, NUTS's defaults), vectorized over
  the chains as ``MCMC`` does;
* NumPyro's ``fori_collect`` from 0 to ``warmup + samples`` collecting
  ``samples`` post-processed states (constrained values and ``let``s, as
  ``MCMC.get_samples`` returns) and ``diverging`` from ``warmup`` on;
* draws grouped by chain: ``[chain, draw, ...]``.

Under a trace NumPyro refuses nothing (its checks need concrete values):
eagerly, its first trace of the model (the "prototype", at the first
chain's initial values) raises where a distribution's argument is invalid
(a scale computed from a var, negative there), and its search for a start
raises where no chain finds a finite log density. So the first program
returns both verdicts, computed from the same values (`_recording_arguments` records
the argument checks NumPyro skips under the trace), and the caller raises
NumPyro's own errors for `values.explain_bad_start`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import random
from numpyro.distributions import constraints
from numpyro.distributions.distribution import Distribution
from numpyro.infer import NUTS, init_to_uniform, init_to_value
from numpyro.util import fori_collect, not_jax_tracer

from fglang.compiler.bind import BoundModel
from fglang.runtime.carry import CarriedMarginal
from fglang.runtime.mcmc.options import McmcOptions
from fglang.runtime.mcmc.start_draws import prototype_trace
from fglang.runtime.mcmc.starts import find_start, init_keys, screened_start
from fglang.runtime.numpyro_sites import init_sites, numpyro_model


class NutsPrograms:
    """The fit as two jittable functions, traced in this order:

    * ``init(seed, data, init) -> (state, (arguments_ok, start_ok))``: the
      chains' initial NUTS states from ``PRNGKey(seed)``, the key ``MCMC.run``
      is handed, or from the chains' own keys (``seed`` then ``[chains, 2]``,
      or ``[2]`` for one chain: a block of a larger run's, `mcmc.processes`)
      (``state``: the leaves of NumPyro's ``HMCState``), and the two verdicts
      on the start (see the module docstring). ``init`` holds the initial values that are arguments;
      ``fixed_init`` those that are constants of the program (a group var's
      start is its chart's base).
    * ``sample(state, data) -> (draws, stats)``: warm-up and sampling; ``stats``
      as ``MCMC``'s extra fields ``diverging`` and ``potential_energy``
      (``[chain, draw]``) and the last state's adapted ``step_size``.

    Why two: a bad start is refused after the small first program, before the
    sampler is traced or compiled. ``sample`` uses the kernel that tracing
    ``init`` set up (as ``MCMC`` runs its jitted loop with the kernel its
    ``init`` set up), so ``init`` must have been traced first."""

    def __init__(self, bm: BoundModel, o: McmcOptions, carried: dict[str, CarriedMarginal],
                 fixed_init: dict[str, Any]) -> None:
        self.nm = numpyro_model(bm, carried)
        self.model = self.nm.model_fn()
        self.o = o
        self.fixed_init = fixed_init
        self.dropped = {f.name for f in bm.families.values()} | set(bm.bounds)  # as site_draws drops them
        self._kernel: NUTS | None = None
        self._tree: Any = None

    def init(self, seed, data: dict[str, Any], init: dict[str, Any]):
        o, chains = self.o, self.o.chains
        sites = init_sites(self.nm, {**init, **self.fixed_init}, data)
        strategy = init_to_value(values=sites) if sites else init_to_uniform
        kernel = PreparedNUTS(self.model, target_accept_prob=o.target_accept, init_strategy=strategy)
        if jnp.ndim(seed) == 0:  # the seed: its key inside the program, split as MCMC.run splits it
            rng_key = random.PRNGKey(seed)
            keys = random.split(rng_key, chains) if chains > 1 else rng_key
        else:  # the chains' own keys, already split (a block of a run's chains, `mcmc.processes`)
            keys = seed
        args: tuple = (data,)
        arguments_ok = _prototype_arguments_ok(self.model, keys, chains, strategy, args)
        kernel.found = find_start(self.model, keys, chains, strategy, args)
        start = screened_start(self.model, keys, chains, strategy, set(sites), args, found=kernel.found)
        state = kernel.init(keys, o.warmup, start, model_args=args, model_kwargs={})
        start_ok = jnp.all(jnp.isfinite(state.potential_energy))
        for g in jax.tree.leaves(state.z_grad):
            start_ok = start_ok & jnp.all(jnp.isfinite(g))
        leaves, self._tree = jax.tree.flatten(state)
        self._kernel = kernel
        return leaves, (arguments_ok, start_ok)

    def sample(self, leaves: list, data: dict[str, Any]):
        kernel, o, chains = self._kernel, self.o, self.o.chains
        if kernel is None:
            raise AssertionError("NutsPrograms.init must be traced before sample")
        state = jax.tree.unflatten(self._tree, leaves)
        args: tuple = (data,)
        constrain = kernel.postprocess_fn(args, {})
        if chains > 1:
            constrain = _vmap_chains(constrain, chains)

        def step(val):
            return (kernel.sample(val[0], args, {}),)

        def collect(val):
            return [constrain(val[0].z), val[0].diverging, val[0].potential_energy]

        (z, diverging, energy), (last,) = fori_collect(
            o.warmup, o.warmup + o.samples, step, (state,), transform=collect, progbar=False,
            return_last_val=True, collection_size=o.samples,
        )
        if chains > 1:  # [draw, chain] -> [chain, draw]
            z, diverging, energy = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), (z, diverging, energy))
        else:
            z, diverging, energy = jax.tree.map(lambda x: x[None], (z, diverging, energy))
        draws = {k: v for k, v in z.items() if k not in self.dropped and not k.endswith("__members")}
        return draws, {"diverging": diverging, "potential_energy": energy, "step_size": last.adapt_state.step_size}


class PreparedNUTS(NUTS):
    """NUTS whose ``init`` reuses the start search the screening ran
    (``found``: `starts.find_start`, from the same keys ``HMC.init`` derives)
    instead of running NumPyro's ``initialize_model`` a second time. XLA
    removes the unused second search, but it was traced and lowered: at K = 50
    families 2.5-2.8 -> 2.1 s CPU of the start program's trace and lower
    (same instructions, the same draws as NumPyro's ``MCMC.run``)."""

    found: tuple | None = None

    def _init_state(self, rng_key, model_args, model_kwargs, init_params):
        if self.found is None or self._model is None:
            return super()._init_state(rng_key, model_args, model_kwargs, init_params)
        from numpyro.infer.hmc import hmc
        from numpyro.infer.util import _transforms_from_trace

        new_init_params, potential_fn, postprocess_fn, model_trace = self.found
        if init_params is None:
            init_params = new_init_params
        if self._init_fn is None:
            self._init_fn, self._sample_fn = hmc(potential_fn_gen=potential_fn, kinetic_fn=self._kinetic_fn,
                                                 algo=self._algo)
        self._potential_fn_gen = potential_fn
        self._postprocess_fn = postprocess_fn
        transforms = _transforms_from_trace(model_trace, raise_warnings=False)
        self._inv_transforms = transforms.inv_transforms
        self._dynamic_support = transforms.dynamic_support
        return init_params


def _prototype_arguments_ok(model: Callable, keys, chains: int, strategy: Callable, args: tuple):
    """Whether every distribution argument is valid in NumPyro's prototype trace
    of the model: the first chain's initial values, from the key NumPyro's
    ``HMC.init`` hands ``initialize_model`` (``split`` of the chain's key)."""
    numpyros = init_keys(keys, chains)
    first = numpyros[0] if chains > 1 else numpyros
    found: list = []
    prototype_trace(model, first, strategy, args, around=_recording_arguments(found, first))
    ok = jnp.asarray(True)
    for f in found:
        ok = ok & f
    return ok


@contextlib.contextmanager
def _recording_arguments(found: list, outer) -> Iterator[None]:
    """NumPyro's ``Distribution.validate_args``, which skips traced arguments,
    made to record their verdicts in ``found`` instead (for this trace only).
    Only verdicts of the trace ``outer`` (a tracer of it) belongs to: a
    distribution built inside a nested jit (``logp(...)`` in a potential, in the
    families' jitted batch) would leak that trace's tracer; a bad argument there
    makes the start's log density non-finite, which the start check refuses."""
    outer_trace = getattr(outer, "_trace", None)
    original = Distribution.validate_args

    def validate_args(self, strict: bool = True) -> None:
        for param, value in self.get_args().items():
            constraint = self.arg_constraints[param]
            if constraints.is_dependent(constraint):
                continue
            valid = constraint(value)
            if not_jax_tracer(valid):
                if not np.all(valid):
                    raise ValueError(f"{type(self).__name__} distribution got invalid {param} parameter.")
            elif outer_trace is None or getattr(valid, "_trace", None) is outer_trace:
                found.append(jnp.all(valid))

    Distribution.validate_args = validate_args
    try:
        yield
    finally:
        Distribution.validate_args = original


def _vmap_chains(fn: Callable, chains: int) -> Callable:
    """``MCMC``'s ``ensure_vmap``: the post-processing over the chain axis (a
    state with no arrays is broadcast)."""

    def wrapper(x):
        if jax.tree.leaves(x):
            return jax.vmap(fn)(x)
        return jax.tree.map(lambda y: jnp.broadcast_to(y, (chains,) + jnp.shape(y)), fn(x))

    return wrapper
