"""What the backends that run on the NumPyro lowering share behind the
``Backend`` interface: NumPyro's own check of what it can run, and
prediction by NumPyro ``Predictive`` over a posterior's draws (``vi``,
``mcmc``, and ``map``'s Laplace draws).

JAX-free at import, as every backend module must be (the CLI reads them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fglang.compiler.bind import BoundModel
    from fglang.runtime.backend import BackendOptions
    from fglang.runtime.posterior import Posterior


class NumpyroBackend:
    def validate(self, bm: BoundModel, options: BackendOptions, carried: set[str]) -> None:
        from fglang.runtime.numpyro_model import validate

        validate(bm)

    def predict(
        self, bm: BoundModel, posterior: Posterior, families: set[str], options: Mapping[str, Any], seed: int
    ) -> Posterior:
        """Each target member sampled given every draw of the vars."""
        from fglang.runtime.numpyro_predict import predict_sampling

        return predict_sampling(bm, posterior, families, seed)
