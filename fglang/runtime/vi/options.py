"""The ``vi`` backend's options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fglang.runtime.backend import BackendOptions, option


@dataclass(frozen=True)
class ViOptions(BackendOptions):
    """Stochastic VI with Adam. Why a mean-field ``normal`` guide by default: it
    runs on every model and scales with the number of vars; ``mvn`` or
    ``lowrank`` capture correlations when the posterior has them."""

    backend: ClassVar[str] = "vi"

    guide: str = option("normal", "normal | mvn | lowrank | delta", choices=("normal", "mvn", "lowrank", "delta"))
    steps: int = option(5000, "optimization steps", minimum=1, whole=True)
    lr: float = option(0.01, "Adam learning rate", minimum=0.0, open_minimum=True)
    particles: int = option(1, "ELBO particles", minimum=1, whole=True)
    draws: int = option(1000, "draws sampled from the fitted guide", minimum=1, whole=True)


OPTIONS = ViOptions
