"""The ``gbp`` backend behind the one ``Backend`` interface.

JAX is imported only inside ``fit`` and ``predict``: ``advice`` and the
rest run on posteriors read back from files, in commands that never fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from fglang.runtime.gbp.options import GbpOptions

if TYPE_CHECKING:
    from fglang.compiler.bind import BoundModel
    from fglang.runtime.carry import CarriedMarginal
    from fglang.runtime.posterior import Posterior


class GbpBackend:
    name: ClassVar[str] = "gbp"
    Options: ClassVar[type[GbpOptions]] = GbpOptions
    summary: ClassVar[str] = "Gaussian belief propagation (fglang's engine)"
    markov_chains: ClassVar[bool] = False
    linearizes_at_start: ClassVar[bool] = True  # a zero-Jacobian start is warned of (values.warn_saddle_start)
    multi_device: ClassVar[bool] = True  # devices=N: families sharded along their members (engine.run_gbp)
    multi_process: ClassVar[bool] = True  # --coordinator: the same sharded program over every process's devices

    def validate(self, bm: BoundModel, options: GbpOptions, carried: set[str]) -> None:
        from fglang.runtime.gbp.lowering import validate

        validate(bm, carried)

    def memory(self, bm: BoundModel, options: GbpOptions, carried: set[str]) -> list:
        """Messages and beliefs (``fit_memory``); a batched fit's of one batch."""
        from fglang.runtime.fit_memory import batched_message_charges, gaussian_message_charges

        itemsize = 4 if options.dtype == "float32" else 8
        if options.batch_size is not None:
            return batched_message_charges(bm, itemsize, options.batch_size)
        return gaussian_message_charges(bm, itemsize)

    def fit(
        self,
        bm: BoundModel,
        options: GbpOptions,
        *,
        seed: int,
        init: dict[str, Any],
        carried: dict[str, CarriedMarginal],
        progress: bool,
    ) -> Posterior:
        if options.batch_size is not None:
            from fglang.runtime.gbp.learn import fit_batched

            return fit_batched(bm, options, seed=seed, init=init, carried=carried)
        from fglang.runtime.gbp.fit import fit_gbp

        return fit_gbp(bm, options, seed=seed, init=init, carried=carried, progress=progress)

    def predict(
        self, bm: BoundModel, posterior: Posterior, families: set[str], options: Mapping[str, Any], seed: int
    ) -> Posterior:
        from fglang.runtime.gbp.predict import predict_gbp

        return predict_gbp(bm, posterior, families, GbpOptions.parse(options), seed)

    def advice(self, post: Posterior) -> list[str]:
        out = []
        if post.attrs.get("converged", True) is False:
            change = post.attrs.get("final_change")
            change = f"{change:.3g}" if isinstance(change, int | float) else "unknown"
            out.append(f"GBP did not converge in {post.attrs.get('iterations')} iterations "
                       f"(last belief change {change}): raise iters or damping")
        bad = post.attrs.get("indefinite_nodes")
        if isinstance(bad, dict) and bad:
            what = ", ".join(f"{k} ({v} node{'s' if v != 1 else ''})" for k, v in bad.items())
            out.append(f"the marginal covariance is not positive definite for {what}: its sds and draws are not "
                       "a posterior's (drawn from the nearest valid covariance); run GBP to convergence "
                       "(raise iters or damping) or use --backend map")
        return out

    def report(self, post: Posterior) -> list[str]:
        if not post.attrs.get("loopy"):
            return []
        return ["the factor graph has loops: GBP's means are its fixed point's, its sds approximate "
                "(on a loopy graph usually too small); --backend map gives the Laplace marginals of the joint"]

    def title(self, post: Posterior) -> list[str]:
        it = post.attrs.get("iterations")
        if it is None:
            return []
        return [f"{'converged' if post.attrs.get('converged') else 'not converged'} in {it} iterations"]


BACKEND = GbpBackend()
