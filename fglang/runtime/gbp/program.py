"""GBP's iteration chunk as a stored program, loaded by a warm fit instead of traced (issue 18).

Why: the chunk (`iteration.run_chunk`: up to ``plan.chunk`` iterations in a
``lax.while_loop``, and the final beliefs) is the one large program of a GBP
fit. A plain ``jax.jit`` of it is traced and lowered again in every process,
and only XLA's compile comes from the persistent cache: on the 256 x 256
denoise grid the trace, lowering and cache lookup were ~0.3-0.4 s of a
~2 s warm `fglang fit`. Here the chunk is exported once (``jax.export``)
into the program cache (`program_cache`) and the executable XLA compiles
from it is stored beside XLA's own entries (`program_cache.compile_and_save`),
under a key of everything that decides the program:

* `model_key` (computed by `fit.fit_gbp`): fglang's code and the library
  versions (`program_cache.Key`), the platform and JAX's PRNG, the model and
  its bound structure (`model_digest`, `program_cache.add_model`: its source,
  sizes, data shapes and dtypes, the values of its int and bool data, the
  nodes each factor reads), the dtype, the vars whose priors a carried
  ``--prior`` replaces and the families a prediction leaves out (both change
  the graph);
* `chunk_name` (per run): the plan's static part (`plan_signature`: the
  schedule, the chunk length, which families are affine, folded, robust...)
  and the shapes and dtypes of every argument (the data, priors, settings
  and state; a precision the same for every member is one row, another
  shape: `plan._precision_array`).

Real-valued data, priors, settings (damping, tolerance, iterations, seed)
and starts are the program's arguments, never in the key: new data of the
same shapes reuse it. A warm fit loads the executable (no trace, no
lowering, no lookup in XLA's cache); where it is missing or does not load
(another machine, a corrupt entry: removed), the stored module is compiled;
where that is missing or corrupt, the chunk is exported again. A cold fit
runs the module it exported too, so one seed gives the same fit cold and
warm. Where ``jax.export`` refuses the chunk (a custom call with no
stability guarantee), it runs as the plain jit, and the fit says so once
(a warning). With the store off (``FGLANG_NO_CACHE=1``), over a device mesh
and for a chunk replayed checked after a failure (`engine._run_chunks`), the
chunk is the plain jit, as before.

The graph's setup stores one program the same way (`stored_call`): every
family evaluated at zero, which gives its scales (`lowering._args_at_zero`),
keyed by `model_digest`, the families and the arguments' shapes.

The chunk's arguments and results are flat lists of arrays: the engine's
NamedTuples are rebuilt around it from tree structures the host knows
(`_result_tree`), so nothing is registered with ``jax.export``'s serializer.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import jax

from fglang.compiler.bind import BoundModel
from fglang.runtime import program_cache
from fglang.runtime.cache import cache_enabled
from fglang.runtime.dtypes import default_platform
from fglang.runtime.timings import phase

from .iteration import run_chunk, run_chunk_jit
from .plan import Plan
from .state import Beliefs, ChunkResult, EngineData, EngineState

_LOADED = program_cache.Recent(16)  # program name -> its Compiled (or `_REFUSED`)
_REFUSED_SAID = False

EXECUTABLE, MODULE, EXPORTED, MEMORY, JIT = "executable", "module", "exported", "memory", "jit"
"""How a run got its chunk (`StoredChunk.source`): the stored executable loaded, the stored
module compiled, exported now (a cold fit), already loaded in this process, or the plain jit."""


def model_digest(bm: BoundModel) -> str:
    """The model's part of every GBP program's key (a hex digest; see the
    module docstring): the platform and JAX's PRNG, the model and its bound
    structure. Computed once per fit (it hashes every slot's node ids)."""
    key = program_cache.Key("gbp-model")
    key.add("platform", default_platform(), jax.config.jax_default_prng_impl)
    return program_cache.add_model(key, bm).digest


def model_key(model: str, bm: BoundModel, dtype: str, carried: set[str], skip_families: set[str]) -> str:
    """The part of the chunk's key that the model (``model``: `model_digest`)
    and the fit decide (a hex digest): ``dtype`` is the run's (``float32`` or
    ``float64``), ``carried`` the vars whose written prior a carried one
    replaces, ``skip_families`` the families left out."""
    key = program_cache.Key("gbp")
    key.add(model, dtype, "carried", sorted((k, bm.variables[k].domain.kind) for k in carried),
            "skip", sorted(skip_families))
    return key.digest


def plan_signature(plan: Plan) -> list:
    """Everything static in ``plan`` except the residual functions (the model's
    part of the key stands for them): its options and every var's and family's layout."""
    return [
        ["plan", plan.sequential, plan.use_dropout, plan.chunk, plan.conv_patience, plan.checked],
        [[vp.name, vp.n, vp.dim, vp.grid_shape, vp.affine_only, vp.group, vp.storage] for vp in plan.variables],
        [[fp.name, fp.n_members, [[sp.var, sp.dim, sp.grid] for sp in fp.slots], fp.res_dim, fp.full_precision,
          fp.robust, fp.sparsity, fp.batched_inputs, fp.affine, fp.uniform] for fp in plan.families],
    ]


def chunk_name(base: str, plan: Plan, data: EngineData, state: EngineState) -> str:
    """The stored chunk's entry name: ``gbp-chunk-<digest>`` of ``base`` (`model_key`), the plan and the shapes."""
    key = program_cache.Key("gbp-chunk")
    key.add(base, plan_signature(plan), program_cache.spec_signature((data, state)))
    return key.name


def _result_tree(plan: Plan, state: EngineState) -> Any:
    """The chunk's result structure (`state.ChunkResult`), known without tracing: its
    state has the input state's structure, its beliefs one ``eta`` and ``lam`` per var."""
    per_var = tuple(0 for _ in plan.variables)
    return jax.tree.structure(ChunkResult(state, 0, 0, Beliefs(per_var, per_var)))


def _flat_chunk(plan: Plan, in_tree: Any, out_tree: Any, leaves: list) -> list:
    """`iteration.run_chunk` on a flat list of arrays, returning a flat list (what is exported)."""
    data, state = jax.tree.unflatten(in_tree, leaves)
    out = run_chunk(plan, data, state)
    got = jax.tree.structure(out)
    if got != out_tree:  # the host could not rebuild the result: refuse to export (a plain jit runs)
        raise TypeError(f"GBP chunk result {got} is not the expected {out_tree}")
    return jax.tree.leaves(out)


class StoredChunk:
    """`iteration.run_chunk_jit`'s stand-in for one run (`engine._run_chunks`):
    called as ``chunk(plan, data, state)``, it runs an unchecked plan's chunk as
    the stored program (see the module docstring) and a checked one as the plain jit."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.source: str | None = None
        """How the unchecked chunk came (`EXECUTABLE`, `MODULE`, `EXPORTED`, `MEMORY` or `JIT`)."""
        self._run: Callable[[EngineData, EngineState], ChunkResult] | None = None

    def __call__(self, plan: Plan, data: EngineData, state: EngineState) -> ChunkResult:
        if plan.checked:
            return run_chunk_jit(plan, data, state)
        if self._run is None:
            self._run = self._prepare(plan, data, state)
        return self._run(data, state)

    def _prepare(self, plan: Plan, data: EngineData, state: EngineState) -> Callable:
        plain = partial(run_chunk_jit, plan)
        if not cache_enabled():
            self.source = JIT
            return plain
        name = chunk_name(self.base, plan, data, state)
        leaves, in_tree = jax.tree.flatten((data, state))
        out_tree = _result_tree(plan, state)
        call = _LOADED.get(name)
        self.source = MEMORY
        if call is None:
            call, self.source = _load_or_build(name, partial(_flat_chunk, plan, in_tree, out_tree), (leaves,),
                                               say=True)
            _LOADED.put(name, call)
        if call is _REFUSED:
            self.source = JIT
            return plain

        def run(data: EngineData, state: EngineState) -> ChunkResult:
            leaves, tree = jax.tree.flatten((data, state))
            if tree != in_tree:  # (not within one run: every chunk sees the same structures)
                return plain(data, state)
            return jax.tree.unflatten(out_tree, call(leaves))

        return run


_REFUSED = object()
"""`_LOADED`'s mark of a program ``jax.export`` refused (the process runs it as a plain jit)."""


def _load_or_build(name: str, fn: Callable, args: tuple, *, say: bool = False) -> tuple[Any, str]:
    """(the compiled program ``name`` of ``fn(*args)``, how it came): the stored
    executable, else the stored module compiled, else ``fn`` exported, stored
    and compiled; `_REFUSED` where it cannot be exported (``say``: with the
    chunk's warning, once per process)."""
    platform = default_platform()
    options = program_cache.compiler_options(platform)
    with phase("cache load"):
        call = program_cache.load_compiled(name, args, options)
        module = None if call is not None else program_cache.load(name)
    if call is not None:
        return call, EXECUTABLE
    source = MODULE
    if module is None:
        source = EXPORTED
        module = program_cache.export_and_save(name, fn, args, platform)
    if module is None:
        if say:
            _say_refused()
        return _REFUSED, JIT
    return program_cache.compile_and_save(name, module, args, options), source


def stored_call(piece: str, base: Any, fn: Callable, args: tuple) -> Any:
    """``fn(*args)`` run as the stored program ``gbp-<piece>-<digest of base and
    the arguments' shapes>`` (``base`` must stand for everything else that
    decides ``fn``), loaded or built as the chunk is; None where the store is
    off or ``jax.export`` refuses (the caller runs ``fn`` its own way).
    ``args``: arrays in lists, tuples and dicts, of the dtypes JAX makes of them."""
    if not cache_enabled():
        return None
    name = program_cache.Key(f"gbp-{piece}").add(base, program_cache.spec_signature(args)).name
    call = _LOADED.get(name)
    if call is None:
        call, _ = _load_or_build(name, fn, args)
        _LOADED.put(name, call)
    return None if call is _REFUSED else call(*args)


def _say_refused() -> None:
    global _REFUSED_SAID
    if not _REFUSED_SAID:
        _REFUSED_SAID = True
        warnings.warn("GBP's iteration chunk could not be exported (jax.export refused it): it runs as a plain "
                      "jit, traced and lowered again in every process (the same fit, not stored in the cache)",
                      stacklevel=2)
