"""The VI fit's jitted pieces as stored ``jax.export`` programs (issue 18).

Why: a warm VI fit paid tracing and lowering for every jitted piece of the fit
again (the SVI chunk and the guide's draws are most of it: each traces the
model through NumPyro, vmapped over particles and data sets), although XLA's
compile came from its persistent cache. Here each piece is exported once as a
StableHLO module in the program cache (`program_cache`), under a key of the
fit's structure (`fit_key`: fglang's code, the model and its bound shapes, the
options that shape the program, the guide, the platform) plus the piece's
name, its static arguments and its arguments' shapes; a warm fit loads it and
runs it without tracing. A cold fit runs the exported module too, so one seed
gives the same fit bit for bit cold, warm and with ``FGLANG_NO_CACHE``.

The start (the initial point, the mode search's potential, gradient and
Hessian) is stored too, under `start_key` (the model, not the options: every
guide starts from the same mode): a warm fit traces none of it either.

Why pieces and not one program: the host decides between chunks (the
learning rate's fall on a plateau, convergence, the back-off on non-finite
losses, `fit._optimize`) and the mode search is SciPy's L-BFGS; both stay in
Python, calling the stored programs. The arguments and results are flat lists
of arrays (and dicts of them): an optimizer state's named tuples are not
serializable by ``jax.export``, so callers flatten them (`ExportedJit`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax

from fglang.compiler.bind import BoundModel
from fglang.runtime import program_cache
from fglang.runtime.carry import CarriedMarginal, carried_priors
from fglang.runtime.dtypes import default_device, default_platform
from fglang.runtime.vi.options import ViOptions

_LOADED = program_cache.Recent(32)  # entry name -> jitted call


def fit_key(bm: BoundModel, o: ViOptions, dtype: str, carried: dict[str, CarriedMarginal], **structure: Any) -> str:
    """The part of every piece's key that the fit decides (a hex digest): the
    model, its bound structure and carried priors (`program_cache.add_model`),
    the options that shape a program (not the seed, the steps or the learning
    rate: arguments or host decisions), the dtype and platform, and
    ``structure`` (the guide, its rank, the dimension, whether the whitening
    scale is a matrix, ...)."""
    key = program_cache.Key("vi")
    key.add("platform", default_platform(), dtype, jax.config.jax_default_prng_impl)
    key.add("options", o.guide, o.particles, o.rank, o.draws)
    key.add("structure", structure)
    program_cache.add_model(key, bm)
    key.add("carried", carried_priors(bm, carried))
    return key.digest


def start_key(bm: BoundModel, dtype: str, carried: dict[str, CarriedMarginal]) -> str:
    """The key of the fit's start pieces (the initial point, the potential, its
    gradient and Hessian for the mode search and the Laplace whitening, a hex
    digest): the model, its bound structure and carried priors, the dtype and
    platform. Not the options: every guide starts from the same mode."""
    key = program_cache.Key("vi-start")
    key.add("platform", default_platform(), dtype, jax.config.jax_default_prng_impl)
    program_cache.add_model(key, bm)
    key.add("carried", carried_priors(bm, carried))
    return key.digest


class ExportedJit:
    """``jax.jit(fn)`` where every call runs ``fn`` as a stored exported
    program: loaded when one of this piece's key, static arguments and
    argument shapes is in the store, else exported, saved and run (the same
    module a later warm fit loads). ``fn``'s arguments and results must be
    arrays, lists, tuples and dicts of them. ``base`` None (a fit over a
    device mesh: its shardings are not exported) is plain ``jax.jit``."""

    def __init__(self, piece: str, base: str | None, fn: Callable, static_argnames: tuple[str, ...] = (),
                 once: bool = False) -> None:
        self.piece, self.base, self.fn, self.once = piece, base, fn, once
        self._plain = jax.jit(fn, static_argnames=static_argnames)

    def __call__(self, *args: Any, **static: Any) -> Any:
        if self.base is None:
            return self._plain(*args, **static)
        key = program_cache.Key(f"vi-{self.piece}")
        key.add(self.base, sorted(static.items()), program_cache.spec_signature(args))
        name = key.name
        call = _LOADED.get(name)
        # every argument committed to the one device: a module's arguments are
        # otherwise unplaced on the first call and placed (the last call's
        # results) on the next, two lowerings and two XLA compiles of one program
        # (the device a fit runs on: JAX's default, which ``--device`` decides)
        args = jax.device_put(args, default_device())
        if call is None:
            call = self._compiled(name, args, static)
            _LOADED.put(name, call)
        return call(*args)

    def _compiled(self, name: str, args: tuple, static: dict[str, Any]) -> Callable:
        """The piece for ``args``: its stored (or new) module compiled with
        fglang's XLA:CPU options (``once``: a piece run once per fit, the
        keys, the starts, the Hessian, the draws; else the level NUTS's
        sampler uses); a piece export refused: plain jit. Why options: at
        XLA's default level a cold fit spent most of its time compiling
        pieces whose speed hardly matters. Why not stored executables, as
        NUTS's: the SVI chunk's and the draws' executables, both deserialized
        in one process, crashed the draws (a segmentation fault when their
        result was read, on XLA:CPU of jaxlib 0.10); a warm fit lowers the
        modules and reads XLA's persistent cache instead."""
        platform = default_platform()
        loaded = program_cache.load(name)
        if loaded is None:
            loaded = program_cache.export_and_save(name, partial(self.fn, **static), args, platform)
        if loaded is None:
            return jax.jit(partial(self._plain, **static))
        options = program_cache.compiler_options(platform, once=self.once)
        return jax.jit(loaded).lower(*args).compile(compiler_options=options or None)
