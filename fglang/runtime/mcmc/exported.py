"""The ``mcmc`` backend's exported path: one NUTS program per model shape,
loaded from the program cache when a fit of that shape has run before.

A warm fit here computes the program's key (`program_cache.add_model` and the
options), loads the two executables compiled from the exported modules and
runs them: no NumPyro import, no model trace, no lowering, no lookup in XLA's
cache. Where an executable is missing (or the platform cannot serialize one)
the stored module is lowered (the few-line call into it) and compiled, from
XLA's persistent cache. A cold fit builds the program (`mcmc.program`),
exports and stores it, and compiles and runs the exported module too, so that
one seed draws the same chains cold, warm or with no cache. Each is compiled
with `program_cache.compiler_options`.

The program runs all iterations in one call: there is no per-iteration
progress bar (``progress`` shows one bar for the whole run).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from fglang.compiler.bind import BoundModel
from fglang.compiler.groups import GROUPS
from fglang.runtime import program_cache
from fglang.runtime.carry import CarriedMarginal, carried_priors
from fglang.runtime.dtypes import default_platform
from fglang.runtime.mcmc.options import McmcOptions
from fglang.runtime.progress import progress_bar
from fglang.runtime.timings import phase

_LOADED = program_cache.Recent(8)  # key -> jitted init and sample calls


def run_nuts_program(
    bm: BoundModel, o: McmcOptions, dtype: str, *, seed: int, init: dict[str, Any],
    carried: dict[str, CarriedMarginal], progress: bool = False, chain_keys: Any = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(draws ``{site: [chain, draw, ...]}``, stats: ``diverging`` and
    ``potential_energy`` ``[chain, draw]``, the adapted ``step_size``) of the
    whole NUTS fit, from the stored programs where they are (two:
    `program.NutsPrograms`, the start and then the sampler). ``chain_keys``:
    the ``o.chains`` chains' own keys (a block of a larger run's, which the
    seed's key split; one chain: its key) instead of the seed's."""
    fixed, args = program_args(bm, seed, init)
    if chain_keys is not None:
        args = (jax.device_put(np.asarray(chain_keys)),) + args[1:]
    platform = default_platform()
    key = program_key(bm, o, dtype, carried, fixed, args, platform)
    names = (f"nuts-init-{key}", f"nuts-sample-{key}")
    options = (program_cache.compiler_options(platform, once=True), program_cache.compiler_options(platform))
    programs = _LOADED.get(key)
    build = None
    if programs is None:
        programs = _load(names, args, options)
    if programs is None:
        with phase("cache load"):
            calls = [program_cache.load(n) for n in names]
        if calls[0] is None or calls[1] is None:  # both built anew: sample needs init traced first
            with phase("import"):
                from fglang.runtime.mcmc.program import NutsPrograms
            build = NutsPrograms(bm, o, carried, fixed)
            calls = [_exported(build.init, names[0], args, platform), None]
        programs = (_compile(names[0], calls[0], args, options[0]), calls[1])
    bar = progress_bar(progress, f"mcmc: {o.chains} chains x {o.warmup + o.samples} iterations in one program",
                       1, "run", {})
    try:
        state, (arguments_ok, start_ok) = programs[0](*args)
        # NumPyro's own words (see mcmc.program), so that fit.py's explain_bad_start locates the factor at fault
        if not bool(arguments_ok):
            raise ValueError("a distribution got invalid arguments at the sampler's first initial values")
        if not bool(start_ok):
            raise RuntimeError("Cannot find valid initial parameters. Please check your model again.")
        sample = programs[1]
        if not isinstance(sample, jax.stages.Compiled | _Jitted):  # a stored module (or a new one) to compile
            if sample is None:
                assert build is not None
                sample = _exported(build.sample, names[1], (state, args[1]), platform)
            sample = _compile(names[1], sample, (state, args[1]), options[1])
            programs = (programs[0], sample)
        _LOADED.put(key, programs)
        draws, stats = jax.block_until_ready(sample(state, args[1]))
    finally:
        if bar is not None:
            bar.close()
    return {k: np.asarray(v) for k, v in draws.items()}, {k: np.asarray(v) for k, v in stats.items()}


def _load(names: tuple[str, str], args: tuple, options: tuple[dict[str, Any], dict[str, Any]]) -> tuple | None:
    """Both programs' stored executables, or None (then the modules are compiled).
    The sampler's arguments are the start's outputs: their specs are the init
    executable's output avals, with the data."""
    with phase("cache load"):
        init_call = program_cache.load_compiled(names[0], args, options[0])
        if init_call is None:
            return None
        state_specs = init_call.out_info[0]
        sample_call = program_cache.load_compiled(names[1], (state_specs, args[1]), options[1])
    return None if sample_call is None else (init_call, sample_call)


def program_args(bm: BoundModel, seed: int, init: dict[str, Any]) -> tuple[dict[str, np.ndarray], tuple]:
    """(the starts that are constants of the program: group vars', the chart
    bases; the program's arguments: the seed, the data, the other starts).
    The seed, not its key: ``PRNGKey`` runs inside the program (eagerly it is
    two small programs of its own, each lowered and looked up on a warm fit)."""
    # transfers, not ``jnp.asarray``: that stages each NumPy array through a
    # small compiled program (a lowering and a cache lookup each, on a warm fit)
    data = jax.device_put({k: np.asarray(v) for k, v in bm.data.items()})
    fixed = {k: np.asarray(v) for k, v in init.items() if k in bm.variables and bm.variables[k].domain.kind in GROUPS}
    start = jax.device_put({k: np.asarray(v) for k, v in init.items() if k not in fixed})
    return fixed, (jax.device_put(np.int64(seed)), data, start)


class _Unexported(NamedTuple):
    """A program ``jax.export`` refused: run as a plain jit, never compiled
    ahead and stored, since its closed-over constants (a group var's fixed
    start) become hoisted arguments of the ``Compiled``, which then refuses the
    call ("compiled for 35 inputs but called with 28")."""

    fn: Callable


def _exported(fn: Callable, name: str, args: tuple, platform: str) -> Callable | _Unexported:
    """The cold path: ``fn`` exported and stored, as the module a warm fit
    will load (``fn`` itself, marked, where it cannot be exported)."""
    call = program_cache.export_and_save(name, fn, args, platform)
    return _Unexported(fn) if call is None else call


class _Jitted(NamedTuple):
    """An unexported program's plain jit: ready to run, as a ``Compiled`` is."""

    fn: Callable

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


def _compile(name: str, call: Callable | _Unexported, args: tuple, options: dict[str, Any]) -> Callable:
    if isinstance(call, _Unexported):
        return _Jitted(jax.jit(call.fn))
    return program_cache.compile_and_save(name, call, args, options)


def program_key(bm: BoundModel, o: McmcOptions, dtype: str, carried: dict[str, CarriedMarginal],
                fixed: dict[str, np.ndarray], args: tuple, platform: str) -> str:
    """The programs' key (a hex digest): fglang's code, the library versions, the model
    and its bound structure, the options (not the seed: an argument), the
    carried priors and fixed starts (constants of the program), the arguments'
    shapes and dtypes, the platform."""
    key = program_cache.Key("nuts")
    key.add("platform", platform, dtype, jax.config.jax_default_prng_impl)
    key.add("options", o.chains, o.warmup, o.samples, float(o.target_accept))
    program_cache.add_model(key, bm)
    priors, group_priors = carried_priors(bm, carried)
    key.add("carried", priors, group_priors, "fixed", fixed)
    key.add("args", program_cache.spec_signature(args))
    return key.digest
