"""Device choice and JAX's persistent compilation cache.

The cache makes a second ``fglang fit`` of the same model shape skip XLA
compilation; thresholds are lowered so that small models are cached too.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import jax

from fglang.errors import Diagnostic, FgError

_cache_ready = False


def enable_compilation_cache() -> None:
    global _cache_ready
    if _cache_ready or os.environ.get("FGLANG_NO_CACHE"):
        return
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fglang" / "jax"
    try:
        base.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(base))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except (OSError, AttributeError):
        pass  # a read-only home still runs, only without the cache
    _cache_ready = True


def device_context(device: str | None):
    """``jax.default_device`` for 'cpu' or 'gpu'; a clear error when no GPU exists."""
    if device in (None, "", "auto"):
        return contextlib.nullcontext()
    if device not in ("cpu", "gpu"):
        raise FgError([Diagnostic(f"--device takes 'cpu' or 'gpu', got {device!r}", None)])
    try:
        devs = jax.devices(device)
    except RuntimeError:
        devs = []
    if not devs:
        raise FgError(
            [
                Diagnostic(
                    f"no {device.upper()} is visible to JAX on this machine",
                    None,
                    "install the GPU build with: pip install 'fglang[gpu]' (CUDA 12), or run with --device cpu",
                )
            ]
        )
    return jax.default_device(devs[0])
