"""The ``vi`` backend behind the one ``Backend`` interface (JAX only inside ``fit``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from fglang.runtime.vi.options import ViOptions

if TYPE_CHECKING:
    from fglang.compiler.bind import BoundModel
    from fglang.runtime.carry import CarriedMarginal
    from fglang.runtime.posterior import Posterior


class ViBackend:
    name: ClassVar[str] = "vi"
    Options: ClassVar[type[ViOptions]] = ViOptions
    summary: ClassVar[str] = "NumPyro stochastic variational inference"
    markov_chains: ClassVar[bool] = False

    def validate(self, bm: BoundModel, options: ViOptions, carried: set[str]) -> None:
        from fglang.runtime.numpyro_model import validate

        validate(bm)

    def fit(
        self,
        bm: BoundModel,
        options: ViOptions,
        *,
        seed: int,
        init: dict[str, Any],
        carried: dict[str, CarriedMarginal],
        progress: bool,
    ) -> Posterior:
        from fglang.runtime.vi.fit import fit_vi

        return fit_vi(bm, options, seed=seed, init=init, carried=carried, progress=progress)

    def predict(
        self, bm: BoundModel, posterior: Posterior, families: set[str], options: Mapping[str, Any], seed: int
    ) -> Posterior:
        from fglang.runtime.numpyro_predict import predict_sampling

        return predict_sampling(bm, posterior, families, seed)

    def advice(self, post: Posterior) -> list[str]:
        return []

    def report(self, post: Posterior) -> list[str]:
        return []

    def title(self, post: Posterior) -> list[str]:
        return []


BACKEND = ViBackend()
