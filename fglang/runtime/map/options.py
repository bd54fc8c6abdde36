"""The ``map`` backend's options: declared once, for the CLI and Python alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fglang.runtime.backend import BackendOptions, option


@dataclass(frozen=True)
class MapOptions(BackendOptions):
    """MAP by Levenberg-Marquardt. Why these defaults: LM with GTSAM's initial
    lambda (1e-5) is Gauss-Newton on well-posed problems (a handful of
    iterations on a pose graph) and still backs off where Gauss-Newton would
    overshoot; float64 because pose graphs and hierarchical models are badly
    conditioned (M3500's normal equations: condition number ~3e8); the
    relative-decrease tolerance stops one iteration after quadratic
    convergence has reached float64's floor, and robust (IRLS) fits, which
    converge linearly, are still accurate to ~1e-8."""

    backend: ClassVar[str] = "map"

    method: str = option("lm", "lm | gn (Levenberg-Marquardt or plain Gauss-Newton/Newton)", choices=("lm", "gn"))
    iters: int = option(100, "most iterations", minimum=1, whole=True)
    tol: float = option(1e-14, "stop when the cost's relative decrease is below this (or at rounding)", minimum=0.0)
    lambda_init: float = option(1e-5, "initial LM damping", minimum=0.0, open_minimum=True)
    path: str = option(
        "auto", "auto | lsq | general (sparse least squares, or Newton on the log density)",
        choices=("auto", "lsq", "general"),
    )
    max_dense: int = option(3000, "most unknowns for the general path's dense Hessian", minimum=1, whole=True)
    dtype: str = option("float64", "float32 | float64", choices=("float32", "float64"))
    draws: int = option(200, "draws sampled from the Laplace approximation", minimum=1, whole=True)
    marginals: str = option(
        "auto", "auto | full | none: the Laplace node covariances (auto skips them when the selected "
        "inversion would need more than 5e7 pair updates, as a large 3-D pose graph's fill does)",
        choices=("auto", "full", "none"),
    )


OPTIONS = MapOptions
