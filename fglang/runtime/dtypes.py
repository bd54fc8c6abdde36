"""The float width a NumPyro-backed fit runs in (``vi``, ``mcmc``), NumPyro-free.

Why a module of its own: the ``mcmc`` backend's warm path (a sampler loaded
from the program cache, `mcmc.exported`) runs without importing NumPyro,
and it needs these two as much as the cold path does.
"""

from __future__ import annotations

import jax
import numpy as np


def resolve_dtype(choice: str) -> str:
    """``auto`` -> float64 on a CPU (as Stan; x64 costs little there), float32 on
    an accelerator; ``float32``/``float64`` as given. The device is JAX's default
    one, so ``--device`` (``jax.default_device``) decides."""
    if choice != "auto":
        return choice
    return "float64" if default_platform() == "cpu" else "float32"


def default_platform() -> str:
    """The platform of the device a fit runs on (JAX's default device: ``--device`` decides)."""
    return default_device().platform


def default_device():
    """The device a fit runs on: where JAX puts an array by default (``--device``,
    ``jax.default_device``, decides). A transfer, not ``jnp.zeros``: that
    compiles a program (a warm fit pays each program's lowering and cache lookup)."""
    return next(iter(jax.device_put(np.zeros((), np.float32)).devices()))


def precision(dtype: str):
    """The context a fit runs in: JAX's x64 mode on for float64, off for float32,
    for this fit only (the flag is process-global; a context restores it, so a
    float32 gbp fit after a float64 vi fit in one process is still float32)."""
    return jax.enable_x64(dtype == "float64")
