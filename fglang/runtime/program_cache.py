"""Whole programs kept on disk by ``jax.export``, so that a warm fit skips
tracing and lowering, not only XLA's compile.

Why: JAX's persistent cache (`cache.enable_compilation_cache`) keys XLA's
compiled code by the lowered module, so a warm fit still imports NumPyro,
traces the model through it (~2.4 s for eight schools) and lowers every
program (~1.5 s) before it can look anything up. Here a whole run (NUTS's
initialization, warm-up and sampling, `mcmc.program`) is exported once as a
StableHLO module and stored under a key of everything that decides the
program (and VI's optimization chunk and draws, `vi.program`): fglang's own
code, the model's source and bound structure (sizes,
data shapes and dtypes, the nodes each factor reads, the values of int and
bool data), the options, JAX's and NumPyro's versions and the platform. A
warm fit computes the key (milliseconds, no JAX tracing), reads the module
and runs it; new real-valued data of the same shapes reuse it (the data are
the program's arguments), anything else in the key gives a new entry.

Int and bool data are in the key by value: they may pick the nodes a factor
reads or a reduction's padded length (`Static.reduction_len`), both constants
of the program. Real data never are (they are only ever values).

Entries live in ``cache_root()/programs`` as ``<kind>-<key>.jaxexport``,
written whole (a temporary file renamed into place, `cache.AtomicFileStore`);
an entry that is missing, cut short or from another JAX is a miss, never an
error. ``FGLANG_NO_CACHE=1`` turns the store off (`load` misses, `save`
writes nothing). NumPyro-free.

Compiled executables too (`load_compiled`, `compile_and_save`): where the
platform can serialize XLA's executable, the one compiled from the exported
module is stored beside JAX's own entries (``cache_root()/jax``, counted and
cleared with them), keyed by the program's name, the argument shapes, the
compiler options and the machine (backend, its version, device kind and
count, the CPU's features), so that a warm fit neither lowers the module
(~0.4 s for NUTS, most of it SciPy's import for JAX's LAPACK set-up) nor
hashes it for XLA's cache. Where the executable is missing or does not load,
the exported module is compiled (from XLA's cache), with the same options:
the same code, so the same draws. The entry is a pickle (JAX's own format
for it): like JAX's cache, it trusts whoever can write the cache folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from fglang.compiler.bind import BoundModel
from fglang.runtime.cache import PROGRAM_SUFFIX, AtomicFileStore, cache_enabled, jax_cache_dir, programs_dir

FORMAT = 4
"""Bump when what an entry holds changes (the exported function's arguments or outputs)."""


class Recent:
    """The last ``keep`` programs loaded or built in this process (name ->
    value, least recently used dropped first): a second fit of one shape in a
    process reads no file and deserializes nothing."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._items: OrderedDict[str, Any] = OrderedDict()

    def get(self, name: str) -> Any:
        value = self._items.get(name)
        if value is not None:
            self._items.move_to_end(name)
        return value

    def put(self, name: str, value: Any) -> None:
        self._items[name] = value
        self._items.move_to_end(name)
        while len(self._items) > self.keep:
            self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget every program (as a fresh process would start)."""
        self._items.clear()


class _ProgramStore(AtomicFileStore):
    suffix = PROGRAM_SUFFIX


def _store() -> _ProgramStore | None:
    if not cache_enabled():
        return None
    try:
        return _ProgramStore(programs_dir())
    except OSError:
        return None  # a read-only home: run on without the store


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A digest of fglang's own source (every ``.py`` and ``.lark`` file of the
    package): a program exported by other code is never reused, whatever the
    version number says (a development tree changes without a release)."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.blake2b(digest_size=16)
    for p in sorted(root.rglob("*")):
        if p.suffix in (".py", ".lark") and p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@lru_cache(maxsize=1)
def library_versions() -> tuple[str, ...]:
    """JAX's, jaxlib's and NumPyro's versions, from their metadata (NumPyro is not imported)."""
    out = []
    for name in ("jax", "jaxlib", "numpyro"):
        try:
            out.append(f"{name}={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{name}=?")
    return tuple(out)


class Key:
    """An incremental digest of the parts that decide a program."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._h = hashlib.blake2b(digest_size=20)
        self.add("format", FORMAT, kind, code_fingerprint(), library_versions())

    def add(self, *parts: Any) -> Key:
        for p in parts:
            self._add(p)
        return self

    def _add(self, p: Any) -> None:
        h = self._h
        if isinstance(p, np.ndarray) or (hasattr(p, "dtype") and hasattr(p, "shape")):
            a = np.ascontiguousarray(np.asarray(p))
            h.update(f"<array {a.dtype.str} {a.shape}>".encode())
            h.update(a.tobytes())
        elif isinstance(p, Mapping):
            h.update(f"<map {len(p)}>".encode())
            for k in sorted(p, key=str):
                self._add(str(k))
                self._add(p[k])
        elif isinstance(p, list | tuple):
            h.update(f"<seq {len(p)}>".encode())
            for x in p:
                self._add(x)
        else:
            h.update(f"<{type(p).__name__} {p!r}>".encode())

    @property
    def digest(self) -> str:
        return self._h.hexdigest()

    @property
    def name(self) -> str:
        """The entry's file stem: ``<kind>-<hex digest>``."""
        return f"{self.kind}-{self.digest}"


def add_model(key: Key, bm: BoundModel) -> Key:
    """The model's part of a key: its source text and everything binding fixed
    that the program holds as constants (see the module docstring); of the
    data, the shapes and dtypes (they are arguments) and int/bool values."""
    key.add("model", bm.ir.name, dict(bm.ir.sources), dict(bm.sizes))
    for name in sorted(bm.data):
        a = np.asarray(bm.data[name])
        structural = a.dtype.kind in "biu"
        key.add("data", name, a.dtype.str, a.shape, a if structural else None)
    for v in bm.variables.values():
        key.add("var", v.name, v.node_shape, v.value_shape, repr(v.domain), v.prior, v.bounds)
    for fam in bm.families.values():
        _add_family(key, fam)
    for group, lets in (("let", bm.derived), ("bound", bm.bounds)):
        for name, d in lets.items():
            key.add(group, name, d.shape, d.data_only)
            _add_slots(key, d.slots)
    return key


def _add_family(key: Key, fam: Any) -> None:
    key.add("family", fam.name, fam.n_members, fam.member_grid, dict(fam.idx))
    _add_slots(key, fam.slots)
    if fam.members is not None:
        _add_family(key, fam.members)


def _add_slots(key: Key, slots: Iterable[Any]) -> None:
    for s in slots:
        key.add("slot", s.var, s.node_ids, s.block_shape, s.reductions, s.mask, repr(s.grid_slice))


def arg_specs(args: Any) -> Any:
    """The arguments' shapes and dtypes as ``jax.ShapeDtypeStruct`` (what ``jax.export`` exports for)."""
    import jax

    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), args)


def spec_signature(args: Any) -> list:
    """The arguments' tree, shapes and dtypes, for a key."""
    import jax

    leaves, tree = jax.tree.flatten(args)
    return [str(tree), [(tuple(np.shape(a)), str(a.dtype)) for a in leaves]]


def load(name: str) -> Callable | None:
    """The stored program ``name`` as a callable (``Exported.call``), or None:
    no entry, the store off, or an entry that does not deserialize (cut short,
    another JAX), which is then removed so that the next `save` replaces it."""
    store = _store()
    if store is None:
        return None
    blob = store.get(name)
    if blob is None:
        return None
    try:
        from jax import export

        exported = export.deserialize(bytearray(blob))
    except Exception:  # noqa: BLE001  (any corrupt entry is a miss)
        with contextlib.suppress(OSError):
            os.unlink(programs_dir() / f"{name}{PROGRAM_SUFFIX}")
        return None
    return exported.call


def export_and_save(name: str, fn: Callable, args: Any, platform: str) -> Callable | None:
    """Export ``fn`` (a function of ``args``) for ``platform``, store it under
    ``name`` (where the store is on) and return the exported program as a
    callable: the same module a later warm fit loads, so that one seed gives the
    same draws cold or warm. None where JAX cannot export it (a custom call
    with no stability guarantee): the caller then runs ``fn`` itself."""
    import jax
    from jax import export

    try:
        exported = export.export(jax.jit(fn), platforms=_export_platforms(platform))(*arg_specs(args))
        blob = exported.serialize()
    except Exception:  # noqa: BLE001  (not exportable: run unexported, store nothing)
        return None
    store = _store()
    if store is not None:
        store.put(name, bytes(blob), replace=True)
    return export.deserialize(blob).call


CPU_COMPILER_OPTIONS: dict[str, Any] = {
    "xla_backend_optimization_level": 1,
    "xla_llvm_disable_expensive_passes": True,
}
"""XLA:CPU options for fglang's stored programs (NUTS's start and sampler).

Why: XLA's LLVM back end at its default level 3 spent ~16-19 s CPU of a
cold fit compiling the two programs (eight schools; a horseshoe regression of
N = 1000, D = 100); at level 1 without LLVM's expensive passes ~11-15 s,
while sampling did not get slower (0.35-0.46 against 0.40-0.46 s CPU at
eight schools, 40 against 44 s at the regression; `bench/first_posterior.py`
and ``README.md``'s first-posterior table). Eight schools draws the same
chains bit for bit; the regression's chains part by round-off (NUTS's
trajectories amplify a last-bit difference), the same posterior.
``FGLANG_KEEP_XLA_FLAGS=1`` keeps XLA's defaults (as for `xla_options`)."""


CPU_ONCE_COMPILER_OPTIONS: dict[str, Any] = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}
"""XLA:CPU options for a program that runs once per fit (NUTS's start:
the start search, the screening, NUTS's init and its step-size search).

Why: its compile is paid on every cold fit and its run is a few dozen
evaluations of the log density, so its code's speed matters far less than
its compile. Measured on the start program of K factor families (compile
CPU s at LLVM level 1 -> these options): K = 10 3.3 -> 1.6, K = 50
17.6-19.3 -> 13.4; the same start, bit for bit, is not guaranteed (the
sampler's first state may part from level 1's by round-off)."""


def compiler_options(platform: str, once: bool = False) -> dict[str, Any]:
    """The XLA compiler options fglang's stored programs are compiled with on
    ``platform``; ``once``: for a program run once per fit (a start)."""
    if platform != "cpu" or os.environ.get("FGLANG_KEEP_XLA_FLAGS"):
        return {}
    return dict(CPU_ONCE_COMPILER_OPTIONS if once else CPU_COMPILER_OPTIONS)


class _ExecutableStore(AtomicFileStore):
    pass  # JAX's entry suffix: `cache.cache_info` and `clear_cache` count and remove these with JAX's


def _executable_store() -> _ExecutableStore | None:
    if not cache_enabled():
        return None
    try:
        return _ExecutableStore(jax_cache_dir())
    except OSError:
        return None


@lru_cache(maxsize=1)
def _machine() -> tuple:
    """What an executable is compiled for: the default backend, its version,
    the device kind and count, and on CPU the processor's features (XLA:CPU
    compiles for the host: an executable made on one machine of a shared
    cache folder must not run on another)."""
    import platform

    import jax

    devices = jax.devices()
    flags = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            flags = next((ln for ln in f if ln.startswith(("flags", "Features"))), "")
    backend = devices[0].client
    return (backend.platform, backend.platform_version, devices[0].device_kind, len(devices),
            platform.machine(), flags)


def compiled_name(name: str, args: Any, options: Mapping[str, Any]) -> str:
    """The executable's entry name: ``fglang-<name>-<digest of the arguments' specs, options, machine>``."""
    key = Key("executable").add(name, spec_signature(args), dict(options), _machine())
    return f"fglang-{name}-{key.digest}"


def load_compiled(name: str, args: Any, options: Mapping[str, Any]) -> Callable | None:
    """The stored executable of program ``name`` for ``args``' shapes (a
    ``jax.stages.Compiled``), or None: none stored, the store off, or one
    that does not load (cut short, another jaxlib, another machine), which is
    removed."""
    store = _executable_store()
    if store is None:
        return None
    entry = compiled_name(name, args, options)
    blob = store.get(entry)
    if blob is None:
        return None
    try:
        import pickle

        from jax.experimental.serialize_executable import deserialize_and_load

        payload, in_tree, out_tree = pickle.loads(blob)
        return deserialize_and_load(payload, in_tree, out_tree)
    except Exception:  # noqa: BLE001  (any entry that does not load is a miss)
        with contextlib.suppress(OSError):
            os.unlink(jax_cache_dir() / f"{entry}{_ExecutableStore.suffix}")
        return None


_XLA_CACHE_HITS = threading.local()  # .n: XLA persistent-cache hits in this thread
_listening = False


def _listen_for_xla_cache_hits() -> None:
    """Count (per thread, once registered) the programs XLA loads from its persistent cache."""
    global _listening
    if _listening:
        return
    import jax

    def on_event(event: str, **_: object) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            _XLA_CACHE_HITS.n = getattr(_XLA_CACHE_HITS, "n", 0) + 1

    jax.monitoring.register_event_listener(on_event)
    _listening = True


def compile_and_save(name: str, call: Callable, args: Any, options: Mapping[str, Any]) -> Callable:
    """``call`` (an exported program's ``call``) compiled for ``args`` with
    XLA ``options``, its executable stored where the platform can serialize
    it and XLA compiled it anew (`load_compiled` reads it); the compiled
    program either way."""
    import jax

    _listen_for_xla_cache_hits()
    store = _executable_store()
    def compile_as(program_name: str) -> Any:
        return jax.jit(_named(call, program_name)).lower(*args).compile(compiler_options=dict(options) or None)

    hits = getattr(_XLA_CACHE_HITS, "n", 0)
    compiled = compile_as(name)
    if store is not None and getattr(_XLA_CACHE_HITS, "n", 0) != hits:
        # XLA's persistent cache had it (its executable lost, or this process's XLA cache is another
        # folder's): one loaded from there cannot be re-serialized (an XLA:CPU executable loses kernels,
        # "Function ... not found" when it runs), so compile it afresh, under a name XLA's cache has not
        # seen, once, for the store (a later fit loads that instead of lowering the module every time)
        import secrets

        hits = getattr(_XLA_CACHE_HITS, "n", 0)
        compiled = compile_as(f"{name}-{secrets.token_hex(4)}")
    if store is not None and getattr(_XLA_CACHE_HITS, "n", 0) == hits:
        try:
            import pickle

            from jax.experimental.serialize_executable import serialize

            blob = pickle.dumps(serialize(compiled))
        except Exception:  # noqa: BLE001  (a platform or program that cannot serialize: run on, store nothing)
            return compiled
        store.put(compiled_name(name, args, options), blob, replace=True)
    return compiled


def _named(call: Callable, name: str) -> Callable:
    """``call`` under a name of the program's own (``name`` holds its key).

    Why: XLA's persistent-cache key is the module's name and a hash of its
    contents, and ``jax.jit(call)`` names every module ``jit_call``. A program
    of a new key whose HLO another key compiled before (the same model under
    another name, an fglang upgrade that left the program alone) was then
    loaded from XLA's cache, and an executable loaded from there cannot be
    stored (see `compile_and_save`): every later process lowered the module
    and read XLA's cache again (~0.35 s CPU of a warm eight-schools fit) instead
    of loading the executable. Named by its key, a program meets XLA's cache
    only under its own key, so its first compile is a fresh one and is stored."""
    def program(*a: Any) -> Any:
        return call(*a)

    program.__name__ = program.__qualname__ = "fglang_" + "".join(c if c.isalnum() else "_" for c in name)
    return program


def _export_platforms(platform: str) -> tuple[str, ...] | None:
    """``jax.export``'s name for the platform the fit runs on (JAX's devices say
    ``gpu``; export says ``cuda`` or ``rocm``: then the default backend's)."""
    return (platform,) if platform in ("cpu", "tpu") else None
