"""Gaussian belief propagation (GBP) for fglang factor graphs: the ``gbp`` backend.

`run_gbp` runs loopy GBP on a `GaussianGraph` (variable blocks and batched
factor families, see `graph.py`) and returns per-node Gaussian marginals.
The engine's names are imported on first use: the CLI reads this package's
``options`` module to build its flags, and must not pay for JAX to do so.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DEFAULT_FLAT_REG": "engine",
    "DivergenceInfo": "engine",
    "GbpResult": "engine",
    "run_gbp": "engine",
    "GaussianFamily": "graph",
    "GaussianGraph": "graph",
    "Slot": "graph",
    "VariableBlock": "graph",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
