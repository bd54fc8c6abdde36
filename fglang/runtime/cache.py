"""fglang's on-disk cache: where it lives, what is in it, clearing it, and
JAX's persistent compilation cache kept inside it.

Why a cache: a second ``fglang fit`` of a model of the same shapes reuses
XLA's compiled programs instead of compiling them again (most of a small
model's first-posterior time). Why our own file store under JAX: JAX's
default store writes an entry in place, so a second process reading it at
that moment reads half a file (JAX then warns and compiles again), and a
``fglang cache clear`` racing a fit did the same; here every entry is
written to a private temporary file and renamed into place (readers see the
whole entry or none), and a vanished entry is a miss, never an error.

Where: ``$FGLANG_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/fglang`` (default
``~/.cache/fglang``); JAX's programs in its ``jax/`` folder, and whole
exported programs (a NUTS run as one StableHLO module, `program_cache`, so
that a warm fit skips tracing and lowering too) in its ``programs/`` folder.
``FGLANG_NO_CACHE=1`` turns both off. Nothing here
imports JAX until a fit turns the cache on (`enable_compilation_cache`), so
``fglang cache info`` is instant.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fglang.cache_location import cache_enabled, cache_root  # re-exported: the cache's folder and switch

ENTRY_SUFFIX = "-cache"
"""JAX names every compiled program's file ``<module>-<key>-cache``."""
PROGRAM_SUFFIX = ".jaxexport"
"""An exported program's file: ``<kind>-<key>.jaxexport`` (`program_cache`)."""
TEMP_PREFIX = ".fglang-tmp-"


def jax_cache_dir() -> Path:
    """Where JAX's persistent compilation cache lives: ``cache_root()/jax``."""
    return cache_root() / "jax"


def programs_dir() -> Path:
    """Where whole exported programs live: ``cache_root()/programs`` (`program_cache`)."""
    return cache_root() / "programs"


@dataclass(frozen=True)
class CacheInfo:
    path: Path
    entries: int
    bytes: int
    enabled: bool
    programs_path: Path | None = None
    programs: int = 0  # whole exported programs (a NUTS run each)
    programs_bytes: int = 0


def cache_info() -> CacheInfo:
    """How many compiled programs (and exported programs) the cache holds and their size on disk."""
    entries, size = _count(jax_cache_dir(), ENTRY_SUFFIX)
    programs, programs_size = _count(programs_dir(), PROGRAM_SUFFIX)
    return CacheInfo(jax_cache_dir(), entries, size, cache_enabled(), programs_dir(), programs, programs_size)


def _count(path: Path, suffix: str) -> tuple[int, int]:
    entries = size = 0
    for f in _entry_files(path):
        try:
            size += f.stat().st_size
        except OSError:
            continue  # removed meanwhile by another process
        entries += f.name.endswith(suffix)
    return entries, size


def clear_cache() -> tuple[int, int]:
    """Remove every compiled program (and leftover temporary file) from the
    cache; (programs removed, bytes freed). Safe while a fit runs: the fit
    finds the entries gone and compiles again."""
    return _clear(jax_cache_dir(), ENTRY_SUFFIX)


def clear_programs() -> tuple[int, int]:
    """Remove every exported program (`program_cache`); (programs removed, bytes
    freed). Safe while a fit runs, as `clear_cache`."""
    return _clear(programs_dir(), PROGRAM_SUFFIX)


def _clear(path: Path, suffix: str) -> tuple[int, int]:
    removed = freed = 0
    for f in _entry_files(path):
        try:
            n = f.stat().st_size
            f.unlink()
        except OSError:
            continue
        removed += f.name.endswith(suffix)
        freed += n
    return removed, freed


def _entry_files(path: Path) -> list[Path]:
    """The cache's own files: JAX's entries and access-time stamps, exported
    programs, and our temporaries."""
    try:
        return [f for f in path.iterdir() if f.is_file() and (
            f.name.endswith((ENTRY_SUFFIX, "-atime", PROGRAM_SUFFIX)) or f.name.startswith(TEMP_PREFIX))]
    except OSError:
        return []


class AtomicFileStore:
    """JAX's cache interface (``get``/``put`` of bytes by key) over a folder,
    each entry written whole by a rename (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        path.mkdir(parents=True, exist_ok=True)

    suffix = ENTRY_SUFFIX

    def get(self, key: str) -> bytes | None:
        try:
            return (self._path / f"{key}{self.suffix}").read_bytes()
        except OSError:
            return None

    def put(self, key: str, value: bytes, *, replace: bool = False) -> None:
        """Write ``value`` whole under ``key``; an entry already there is kept
        (another process wrote the same program) unless ``replace`` (it was
        found corrupt)."""
        target = self._path / f"{key}{self.suffix}"
        if target.exists() and not replace:
            return
        try:
            fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self._path)
        except OSError:
            return  # a full or read-only disk: run on without caching this one
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(value)
            os.replace(tmp, target)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


_cache_ready = False


def enable_compilation_cache() -> None:
    """Turn on JAX's persistent compilation cache in `jax_cache_dir` (once per
    process; thresholds at zero so small models are cached too), with
    `AtomicFileStore` as its store where this JAX lets us choose it. A folder
    that cannot be made (a read-only home) runs without the cache."""
    global _cache_ready
    if _cache_ready or not cache_enabled():
        return
    import jax

    base = jax_cache_dir()
    try:
        base.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(base))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except (OSError, AttributeError):
        pass  # a read-only home still runs, only without the cache
    _use_atomic_store()
    _cache_ready = True


def _use_atomic_store() -> None:
    """Give JAX `AtomicFileStore` in place of its in-place file store, unless
    the user asked for JAX's size-limited (locked, evicting) store. JAX looks
    its store up through ``compilation_cache.get_file_cache``, a private
    function: where it is missing (another JAX) the default store is kept."""
    try:
        import jax
        from jax._src import compilation_cache as cc
        from jax._src.compilation_cache_interface import CacheInterface
    except ImportError:
        return
    if not hasattr(cc, "get_file_cache") or jax.config.jax_compilation_cache_max_size not in (-1, None):
        return

    class _Store(AtomicFileStore, CacheInterface):
        pass

    def get_file_cache(path: str):
        return _Store(Path(path)), path

    cc.get_file_cache = get_file_cache
