"""The ``map`` backend behind the one ``Backend`` interface.

JAX is imported only inside ``fit`` and ``predict``: ``advice`` and the
rest run on posteriors read back from files, in commands that never fit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from fglang.errors import Diagnostic, FgError
from fglang.runtime.map.options import MapOptions
from fglang.runtime.numpyro_backend import NumpyroBackend

if TYPE_CHECKING:
    from fglang.compiler.bind import BoundModel
    from fglang.runtime.carry import CarriedMarginal
    from fglang.runtime.posterior import Posterior


class MapBackend(NumpyroBackend):
    name: ClassVar[str] = "map"
    Options: ClassVar[type[MapOptions]] = MapOptions
    summary: ClassVar[str] = "MAP by Levenberg-Marquardt, with its Laplace approximation"
    markov_chains: ClassVar[bool] = False
    # devices=N: the least-squares path's residual blocks split along their members, the
    # factorization on the host (shard.py); the general path runs on one device
    multi_device: ClassVar[bool] = True
    # --coordinator: the same sharded program over every process's devices (a global mesh);
    # every process runs the host loop (and qdldl) on the same numbers, process 0 writes
    multi_process: ClassVar[bool] = True
    linearizes_at_start: ClassVar[bool] = True  # a zero-Jacobian start is warned of (values.warn_saddle_start)

    def validate(self, bm: BoundModel, options: MapOptions, carried: set[str]) -> None:
        errs = [
            Diagnostic(f"map needs continuous vars; '{v.name}' is {v.domain.describe()}", v.span,
                       "make it observed data, or marginalize it out in a potential with log_sum_exp")
            for v in bm.variables.values() if not v.domain.continuous
        ]
        if errs:
            raise FgError(errs, bm.ir.sources)
        from fglang.runtime.map.fit import choose_path

        choose_path(bm, options, carried)

    def memory(self, bm: BoundModel, options: MapOptions, carried: set[str]) -> list:
        """The path's Hessian (``fit_memory``): the sparse one's blocks before
        fill-in on the least-squares path, the dense n x n one and its
        evaluation along n directions on the general path."""
        from fglang.runtime.fit_memory import dense_hessian_charges, sparse_hessian_charges
        from fglang.runtime.map.fit import choose_path

        itemsize = 4 if options.dtype == "float32" else 8
        if choose_path(bm, options, carried) == "general":
            return dense_hessian_charges(bm, itemsize)
        return sparse_hessian_charges(bm, itemsize)

    def fit(
        self,
        bm: BoundModel,
        options: MapOptions,
        *,
        seed: int,
        init: dict[str, Any],
        carried: dict[str, CarriedMarginal],
        progress: bool,
    ) -> Posterior:
        from fglang.runtime.map.fit import fit_map

        return fit_map(bm, options, seed=seed, init=init, carried=carried, progress=progress)


    def advice(self, post: Posterior) -> list[str]:
        out = []
        if not post.attrs.get("marginals", True):
            out.append("the Laplace covariances were not computed (marginals=auto skips them when the sparse "
                       "factor's fill makes selected inversion costly): sd and cov are NaN, the draws are the "
                       "mode; pass marginals=full to compute them")
        if post.attrs.get("laplace_curvature") == "irls":
            out.append("the robust cost's curvature (rho'') at the mode leaves some unknown undetermined (every "
                       "residual on it is past the Huber delta or far in a Student-t tail), so the Laplace "
                       "covariance uses the IRLS weights instead and its sd is only a rough guide: check those "
                       "residuals, or use --backend mcmc for the posterior's spread")
        out += _local_minimum(post.attrs)
        devices = post.attrs.get("devices", [])
        if post.attrs.get("path") == "general" and len(devices) > 1:
            out.append(f"map's general path (a dense Hessian of the whole density) runs on one device: the other "
                       f"{len(devices) - 1} device(s) were idle; devices=N splits the least-squares path only")
        if post.attrs.get("converged", True):
            return out
        return out + [
            f"MAP did not converge in {post.attrs.get('iterations')} iterations (cost "
            f"{post.attrs.get('cost', float('nan')):.6g}): raise iters, or give --init closer to the mode"
        ]

    def report(self, post: Posterior) -> list[str]:
        a = post.attrs
        if "cost" not in a:
            return []
        return [f"MAP ({a.get('path')} path): cost {a['cost']:.6g} after {a.get('iterations')} iterations"
                f"{'' if a.get('converged') else ' (not converged)'}"]

    def title(self, post: Posterior) -> list[str]:
        it = post.attrs.get("iterations")
        if it is None:
            return []
        return [f"MAP {'converged' if post.attrs.get('converged') else 'not converged'} in {it} iterations"]


LOCAL_MINIMUM_LOG10_P = -6.0
"""The chi-square tail (log10) below which the optimum's cost is called too
high for the model: a well-fitted model gets there once in a million fits."""


def _local_minimum(a: dict[str, Any]) -> list[str]:
    """The warning that the optimum's cost is far above a Gaussian model's chi-square (fit.py's test)."""
    logp = a.get("chi2_log10_p")
    if logp is None or not logp < LOCAL_MINIMUM_LOG10_P:
        return []
    p = f"1e{logp:.0f}" if logp > -300 else "below 1e-300"
    return [f"MAP's optimum has cost {a['cost']:.6g}, far above what the model's Gaussian scales allow: 2 x cost = "
            f"{2 * a['cost']:.6g} against a chi-square with {a['chi2_dof']} degrees of freedom ({a['residuals']} "
            f"residuals less the unknowns), tail probability {p}. Either LM stopped in a local minimum, not the "
            "mode: start closer to it with --init FILE (for a pose graph: the odometry chained from the first pose, "
            "or a g2o file's own vertices as fglang import --init-out writes them, not the identity), or fit with "
            "--backend gbp, whose fixed point is the same mode and which often reaches it from starts that trap LM; "
            "or the factors' sd are too small for the data's spread: check their units"]


BACKEND = MapBackend()
