"""Gaussian belief propagation (GBP) for fglang factor graphs.

`run_gbp` runs loopy GBP on a `GaussianGraph` (variable blocks and batched
factor families, see `graph.py`) and returns per-node Gaussian marginals.
"""

from .engine import DEFAULT_FLAT_REG, DivergenceInfo, GbpResult, run_gbp
from .graph import GaussianFamily, GaussianGraph, Slot, VariableBlock

__all__ = [
    "DEFAULT_FLAT_REG",
    "DivergenceInfo",
    "GaussianFamily",
    "GaussianGraph",
    "GbpResult",
    "Slot",
    "VariableBlock",
    "run_gbp",
]
