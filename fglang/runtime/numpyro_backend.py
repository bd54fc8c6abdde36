"""What the backends that run on the NumPyro lowering share behind the
``Backend`` interface: NumPyro's own check of what it can run, and
prediction by NumPyro ``Predictive`` over a posterior's draws (``vi``,
``mcmc``, and ``map``'s Laplace draws).

JAX-free at import, as every backend module must be (the CLI reads them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fglang.compiler.groups import GROUPS
from fglang.errors import Diagnostic, FgError

if TYPE_CHECKING:
    from fglang.compiler.bind import BoundModel
    from fglang.runtime.backend import BackendOptions
    from fglang.runtime.posterior import Posterior


class NumpyroBackend:
    def validate(self, bm: BoundModel, options: BackendOptions, carried: set[str]) -> None:
        validate(bm)

    def predict(
        self, bm: BoundModel, posterior: Posterior, families: set[str], options: Mapping[str, Any], seed: int
    ) -> Posterior:
        """Each target member sampled given every draw of the vars."""
        from fglang.runtime.numpyro_predict import predict_sampling

        return predict_sampling(bm, posterior, families, seed)


def validate(bm: BoundModel) -> None:
    """What VI and NUTS cannot run, found before anything is compiled."""
    errs = []
    for v in bm.variables.values():
        if v.domain.kind in GROUPS:
            continue  # sampled in the exponential chart at a base point (group_chart)
        if not v.domain.continuous:
            errs.append(
                Diagnostic(
                    f"var '{v.name}' is {v.domain.kind}: discrete latent vars are not supported by vi or mcmc",
                    v.span,
                    "make it observed data, or marginalize it out in a potential with log_sum_exp",
                )
            )
    if errs:
        raise FgError(errs, bm.ir.sources)
