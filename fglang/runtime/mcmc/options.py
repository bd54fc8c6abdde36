"""The ``mcmc`` backend's options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fglang.runtime.backend import BackendOptions, option


@dataclass(frozen=True)
class McmcOptions(BackendOptions):
    """NUTS. Why 4 x (1000 + 1000) by default: Stan's defaults, enough chains for
    a split R-hat and enough draws for a bulk ESS in the hundreds on most models.
    Why float64 on a CPU: as Stan; float32 round-off in the leapfrog integrator
    shows up as spurious divergences on stiff posteriors (GPs), and x64 costs
    little on a CPU (float32 stays the default on GPUs)."""

    backend: ClassVar[str] = "mcmc"

    chains: int = option(4, "chains", minimum=1, whole=True)
    warmup: int = option(1000, "warm-up iterations", minimum=0, whole=True)
    samples: int = option(1000, "draws per chain", minimum=1, whole=True)
    target_accept: float = option(0.8, "NUTS target acceptance", minimum=0.0, maximum=1.0, open_minimum=True,
                                  open_maximum=True)
    chain_method: str = option("auto", "auto (one chain per device when there are as many devices as chains, "
                               "else vectorized) | vectorized | parallel | sequential",
                               choices=("auto", "vectorized", "parallel", "sequential"))
    dtype: str = option("auto", "auto (float64 on CPU, float32 on GPU) | float32 | float64",
                        choices=("auto", "float32", "float64"))


OPTIONS = McmcOptions
