"""XLA options fglang sets before JAX starts its CPU backend.

Why: from jaxlib 0.10 XLA:CPU hands reductions to YNNPACK fusions, which on
the x86 machines we measured made every ``max``/``sum`` over a 65k-element
array take ~1 ms instead of ~0.05 ms. GBP reduces over all nodes every
iteration (belief change, precision change, divergence checks), so this one
default made a 256^2 grid iteration 2x slower. We keep YNNPACK for dot
products (where it helps) and turn it off for the rest.

Only applied when ``XLA_FLAGS`` does not already mention the option, the
installed jaxlib is one that knows it (an unknown flag aborts XLA), and
``FGLANG_KEEP_XLA_FLAGS`` is unset. XLA reads the flags once, when the first
backend starts: a program that ran JAX computations before importing fglang
keeps its own settings.
"""

from __future__ import annotations

import os
from importlib import metadata

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=dot"
_MIN_JAXLIB = (0, 10)


def _jaxlib_version() -> tuple[int, ...]:
    try:
        parts = metadata.version("jaxlib").split(".")[:2]
        return tuple(int("".join(ch for ch in p if ch.isdigit()) or 0) for p in parts)
    except (metadata.PackageNotFoundError, ValueError):
        return (0,)


def configure() -> None:
    """Add fglang's XLA:CPU defaults to ``XLA_FLAGS`` (see the module docstring)."""
    if os.environ.get("FGLANG_KEEP_XLA_FLAGS"):
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "ynn_fusion_type" in flags or _jaxlib_version() < _MIN_JAXLIB:
        return
    os.environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}".strip()
