"""The ``vi`` backend behind the one ``Backend`` interface (JAX only inside ``fit``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from fglang.runtime.numpyro_backend import NumpyroBackend
from fglang.runtime.vi.options import ViOptions
from fglang.runtime.vi.psis import KHAT_BAD

if TYPE_CHECKING:
    from fglang.compiler.bind import BoundModel
    from fglang.runtime.carry import CarriedMarginal
    from fglang.runtime.posterior import Posterior


class ViBackend(NumpyroBackend):
    name: ClassVar[str] = "vi"
    Options: ClassVar[type[ViOptions]] = ViOptions
    summary: ClassVar[str] = "NumPyro stochastic variational inference"
    markov_chains: ClassVar[bool] = False
    multi_device: ClassVar[bool] = True  # devices=N: data rows split over the devices (fit_vi's _Placement)
    multi_process: ClassVar[bool] = True  # --coordinator: the same data-parallel fit over every process's devices

    def memory(self, bm: BoundModel, options: ViOptions, carried: set[str]) -> list:
        """The guide, the Laplace whitening's dense Hessian and the draws PSIS weighs (``fit_memory``)."""
        from fglang.runtime.vi.memory import vi_charges

        return vi_charges(bm, options)

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
        from fglang.runtime.timings import phase

        with phase("import"):
            from fglang.runtime.vi.fit import fit_vi

        return fit_vi(bm, options, seed=seed, init=init, carried=carried, progress=progress)

    def fit_many(
        self,
        bms: list[BoundModel],
        options: ViOptions,
        *,
        seed: int,
        init: dict[str, Any],
        carried: dict[str, CarriedMarginal],
        progress: bool,
    ) -> list[Posterior]:
        """Many data sets of one shape as one compiled batch (`fglang.runtime.many`)."""
        from fglang.runtime.vi.fit import fit_vi_many

        return fit_vi_many(bms, options, seed=seed, init=init, carried=carried, progress=progress)


    def advice(self, post: Posterior) -> list[str]:
        """k-hat above 0.7 (the guide is not the posterior: Yao et al. 2018) and a
        fit that hit its step cap before the ELBO converged."""
        a = post.attrs
        out = []
        khat = _number(a.get("khat"))
        if khat is not None and khat > KHAT_BAD:
            shown = f"{khat:.2f}" if khat < 1e8 else "inf"
            ess, n = _number(a.get("psis_ess")), _number(a.get("psis_draws"))
            if ess is not None and n and ess >= EVEN_WEIGHTS * n:
                # k-hat reads the shape of the weights' largest few, whatever their size: weights that
                # vary by a few percent (a changepoint model's log weights, sd 0.08) can still have a
                # heavy-looking top; the bulk is then matched and only the far tails are in question
                out.append(
                    f"Pareto k-hat {shown} > {KHAT_BAD}, but the importance weights barely vary (ESS {ess:.0f} "
                    f"of {n:.0f}): the VI guide ({a.get('guide', '?')}) matches the posterior's bulk, and its "
                    "tails may be too light (far quantiles, rare events); check them with --backend mcmc"
                )
            else:
                out.append(
                    f"Pareto k-hat {shown} > {KHAT_BAD}: the VI guide ({a.get('guide', '?')}) is far from the "
                    "posterior in ways its means and sds may not show (Pareto-smoothed importance sampling, Yao et "
                    "al. 2018); do not trust these numbers: fit with --backend mcmc (or map for a point estimate)"
                )
        if a.get("stop") == "max_steps":
            steps = a.get("steps", "?")
            out.append(f"VI stopped at its cap of {steps} steps before the ELBO converged: raise --steps")
        return out

    def report(self, post: Posterior) -> list[str]:
        """The guide, the steps and why they stopped, k-hat, the dtype."""
        a = post.attrs
        if "guide" not in a:
            return []
        why = {"converged": "the ELBO converged", "max_steps": "the step cap was reached"}.get(a.get("stop"),
                                                                                             str(a.get("stop")))
        lines = [f"guide: {a['guide']} ({a.get('dim', '?')} unconstrained parameters), "
                 f"{a.get('steps', '?')} steps: {why}"]
        khat = _number(a.get("khat"))
        if khat is not None:
            verdict = "good" if khat < 0.5 else ("ok" if khat <= KHAT_BAD else "bad")
            shown = f"{khat:.2f}" if khat < 1e8 else "inf"
            ess = _number(a.get("psis_ess"))
            lines.append(f"Pareto k-hat: {shown} ({verdict}; > {KHAT_BAD} is unreliable)"
                         + (f", importance-sampling ESS {ess:.0f} of {a.get('psis_draws', '?')}" if ess else ""))
        if "dtype" in a:
            lines.append(f"dtype: {a['dtype']}")
        return lines

    def title(self, post: Posterior) -> list[str]:
        a = post.attrs
        out = []
        if "guide" in a:
            out.append(f"{a['guide']} guide, {a.get('steps', '?')} steps")
        khat = _number(a.get("khat"))
        if khat is not None:
            out.append(f"k-hat {khat:.2f}" if khat < 1e8 else "k-hat inf")
        return out


EVEN_WEIGHTS = 0.9
"""Importance-sampling ESS (as a share of the draws) from which the weights
count as nearly even: k-hat's warning then names the tails, not the bulk."""


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


BACKEND = ViBackend()
