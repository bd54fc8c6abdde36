"""The ``vi`` backend's options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fglang.runtime.backend import BackendOptions, option

# the guide ``auto`` picks by the number D of unconstrained parameters
AUTO_MVN_MAX = 500  # full-rank normal up to here
AUTO_LOWRANK_MAX = 100_000  # low-rank plus diagonal up to here, mean-field above


@dataclass(frozen=True)
class ViOptions(BackendOptions):
    """Stochastic VI on the unconstrained parameters. Why these defaults: the
    guide follows the model's size (``auto``: a full-rank normal up to 500
    unconstrained parameters, which captures the correlations regressions and
    hierarchies have; low-rank plus diagonal up to 100000; mean-field above);
    the optimization starts at the mode, whitened by the Laplace approximation
    there, so that Adam's step means the same on every parameter; it runs until
    the smoothed ELBO stops improving (the learning rate falls on each plateau),
    with ``steps`` only a cap. Pareto-smoothed importance sampling then says
    whether to trust the result (k-hat, Yao et al. 2018)."""

    backend: ClassVar[str] = "vi"

    guide: str = option("auto", "auto | mvn | lowrank | normal | delta",
                        choices=("auto", "mvn", "lowrank", "normal", "delta"))
    steps: int = option(50_000, "most optimization steps (it stops earlier once the ELBO has converged)",
                        minimum=1, whole=True)
    lr: float | None = option(None, "Adam's initial learning rate (default 0.02; it falls on each ELBO plateau)",
                              minimum=0.0, open_minimum=True)
    elbo_tol: float = option(1e-5, "ELBO plateau: a window's mean improving by less than elbo_tol x |ELBO| (or its "
                        "standard error)", minimum=0.0, open_minimum=True)
    particles: int = option(4, "ELBO particles per step", minimum=1, whole=True)
    rank: int | None = option(None, "rank of the lowrank guide (default min(32, sqrt(D)))", minimum=1, whole=True)
    draws: int = option(1000, "draws sampled from the fitted guide", minimum=1, whole=True)
    resample: bool = option(False, "resample the draws by their Pareto-smoothed importance weights")
    dtype: str = option("auto", "auto (float64 on CPU, float32 on GPU) | float32 | float64",
                        choices=("auto", "float32", "float64"))


OPTIONS = ViOptions
