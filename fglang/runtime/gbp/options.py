"""The ``gbp`` backend's options: declared once, for the CLI and Python alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fglang.errors import Diagnostic, FgError
from fglang.runtime.backend import BackendOptions, option


@dataclass(frozen=True)
class GbpOptions(BackendOptions):
    """Gaussian belief propagation. Why these defaults: synchronous (flooding)
    updates with no damping converge on trees and well-observed loopy graphs
    in the fewest iterations; a nonlinear graph of one many-node var (a pose
    graph) gets the two-level ``multigrid`` schedule in float64 instead
    (``schedule=auto``, ``dtype=auto``), whose coarse solve moves the global
    modes flooding leaves for thousands of iterations; damping is chosen from
    the graph and is the first thing to raise on loopy, badly conditioned
    graphs (the divergence message says so)."""

    backend: ClassVar[str] = "gbp"

    iters: int = option(1000, "most iterations", minimum=1, whole=True)
    tol: float | None = option(
        None, "belief-change tolerance (default 1e-5 in float32, 1e-6 in float64)", minimum=0.0, open_minimum=True
    )
    damping: float | None = option(
        None, "message damping in [0, 1) (default: 0 if every factor is affine, 0.5 if one is nonlinear)",
        minimum=0.0, maximum=1.0, open_maximum=True,
    )
    undamped: int = option(0, "iterations a nonlinear factor runs undamped after re-linearizing", minimum=0,
                           whole=True)
    schedule: str = option("auto", "auto | flooding | sequential | multigrid (auto: multigrid for a nonlinear graph "
                           "of one var, e.g. a pose graph; flooding otherwise)",
                           choices=("auto", "flooding", "sequential", "multigrid"))
    dropout: float = option(0.0, "probability of skipping a factor's update", minimum=0.0, maximum=1.0,
                            open_maximum=True)
    relinearize: float = option(0.0, "relinearize a nonlinear factor when its beliefs moved more than this",
                                minimum=0.0)
    dtype: str = option("auto", "auto (float64 under the multigrid schedule, float32 otherwise) | float32 | float64",
                        choices=("auto", "float32", "float64"))
    draws: int = option(200, "draws sampled from the marginals for the summary and ArviZ", minimum=1, whole=True)
    temper: float = option(1.0, "scale a carried --prior's precision by this, in (0, 1]", minimum=0.0, maximum=1.0,
                           open_minimum=True)
    batch_size: int | None = option(None, "learn by filtering over batches of the model's `batch` size", minimum=1,
                                    whole=True)
    epochs: int = option(1, "passes over the batches", minimum=1, whole=True)
    shuffle: bool = option(False, "shuffle the examples before each pass over the batches")

    def check(self) -> None:
        if self.batch_size is None and (self.epochs != 1 or self.shuffle):
            raise FgError([Diagnostic("epochs and shuffle apply to batched fits", None, "give batch_size too")])


OPTIONS = GbpOptions
