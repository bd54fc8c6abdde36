"""Binding as the runtime does it: ``logp(...)`` in a model means the same
NumPyro densities that ``~`` uses.

The compiler knows no densities (it never imports the runtime); whoever
binds hands it one. Every bind in fglang goes through here so that a model
binds the same way for a fit, a batch of a fit and a prediction.
"""

from __future__ import annotations

from typing import Any

from fglang.compiler.bind import BoundModel, bind
from fglang.compiler.ir import ModelIR


def _log_density(name: str, args: dict, value: Any, kind: str = "logp") -> Any:
    from fglang.runtime.numpyro_distributions import log_density  # NumPyro only when a model uses logp

    return log_density(name, args, value, kind)


def bind_model(ir: ModelIR, raw: dict[str, Any], file: str = "<data>") -> BoundModel:
    return bind(ir, raw, file, log_density=_log_density)
