"""The ``mcmc`` backend behind the one ``Backend`` interface (JAX only inside ``fit``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from fglang.runtime.mcmc.options import McmcOptions
from fglang.runtime.numpyro_backend import NumpyroBackend

if TYPE_CHECKING:
    from fglang.compiler.bind import BoundModel
    from fglang.runtime.carry import CarriedMarginal
    from fglang.runtime.posterior import Posterior


class McmcBackend(NumpyroBackend):
    name: ClassVar[str] = "mcmc"
    Options: ClassVar[type[McmcOptions]] = McmcOptions
    summary: ClassVar[str] = "NumPyro NUTS"
    markov_chains: ClassVar[bool] = True
    multi_device: ClassVar[bool] = True  # devices=N: one chain per device
    multi_process: ClassVar[bool] = True  # --coordinator: a block of the chains per process (processes.py)


    def fit(
        self,
        bm: BoundModel,
        options: McmcOptions,
        *,
        seed: int,
        init: dict[str, Any],
        carried: dict[str, CarriedMarginal],
        progress: bool,
    ) -> Posterior:
        from fglang.runtime.timings import phase

        with phase("import"):
            from fglang.runtime.mcmc.fit import fit_mcmc

        return fit_mcmc(bm, options, seed=seed, init=init, carried=carried, progress=progress)


    def advice(self, post: Posterior) -> list[str]:
        """Divergences (with the next target_accept to try, or the regularized
        horseshoe when a plain horseshoe's funnel is the likely cause) and
        R-hat above 1.01, and chains that settled in different places
        (``chains.py``: which ones, where, and what to change)."""
        from fglang.runtime.posterior import element_label, rank_diagnostics

        out = []
        note = post.attrs.get("chain_method_note")
        if isinstance(note, str) and note:
            out.append(note)
        div = post.sample_stats.get("diverging")
        if div is not None and div.sum() > 0:
            opts = post.attrs.get("options")
            ta = opts.get("target_accept", 0.8) if isinstance(opts, dict) else 0.8
            ta = float(ta) if isinstance(ta, int | float) else 0.8
            if ta >= 0.99:
                advice = f"target_accept is already {ta:g}: reparametrize"
            else:
                advice = f"raise target_accept (now {ta:g}; try {0.99 if ta >= 0.95 else 0.95})"
            hs = post.attrs.get("horseshoe_vars")
            hs = hs if isinstance(hs, list) else []
            if hs:
                # Piironen & Vehtari (2017): the slab bounds the largest
                # weights, which removes the funnel NUTS diverges in.
                advice += (f"; the horseshoe on {', '.join(map(str, hs))} has a funnel NUTS diverges in: "
                           "reg_horseshoe(scale, slab_df, slab_scale) (the regularized horseshoe) "
                           "usually removes it")
            else:
                advice += " or reparametrize (non-centered)"
            out.append(f"{int(div.sum())} of {div.size} draws diverged ({100 * div.mean():.1f}%): {advice}")
        bad: list[tuple[float, str]] = []
        for name in post.report_order:
            d = post.draws[name]
            if d.shape[1] >= 4:
                rhat, _ = rank_diagnostics(d.reshape(d.shape[0], d.shape[1], -1))
                shape = d.shape[2:]
                high = np.flatnonzero(rhat > 1.01)
                bad += [(float(rhat[k]), name if not shape else f"{name}[{element_label(shape, k)}]") for k in high]
        apart = _disagreeing_chains(post)
        if bad:
            # the worst first: in name order a latent series' 200 elements hid the
            # one scalar (a volatility model's phi, r_hat 1.05) past the eighth
            bad.sort(key=lambda b: -b[0])
            todo = "see which chains disagree below" if apart else "run more draws"
            worst = ", ".join(f"{label} ({r:.3g})" for r, label in bad[:8])
            more = f" and {len(bad) - 8} more" if len(bad) > 8 else ""
            out.append(f"r_hat > 1.01 for {worst}{more}: {todo}")
        if apart:
            out.append(apart)
        return out

    def report(self, post: Posterior) -> list[str]:
        div = post.sample_stats.get("diverging")
        out = [] if div is None else [f"divergences: {int(div.sum())} of {div.size} draws"]
        if isinstance(post.attrs.get("dtype"), str):
            out.append(f"dtype: {post.attrs['dtype']}")
        return out

    def title(self, post: Posterior) -> list[str]:
        d = next(iter(post.draws.values()))
        out = [f"{d.shape[0]} chains \u00d7 {d.shape[1]} draws"]
        div = post.sample_stats.get("diverging")
        if div is not None:
            out.append(f"{int(np.sum(div))} divergent")
        return out


def _disagreeing_chains(post: Posterior) -> str:
    """The warning about chains that disagree on the vars (lets follow from
    them), or "" when they agree."""
    from fglang.runtime.mcmc.chains import chain_groups, chain_moments, disagreement_warning
    from fglang.runtime.posterior import element_label

    names = [n for n in post.names if n in post.node_shapes] or post.names
    names = [n for n in names if post.draws[n].size and post.draws[n].shape[1] >= 2]
    if not names or post.draws[names[0]].shape[0] < 2:
        return ""
    moments = [chain_moments(post.draws[n]) for n in names]
    m = np.concatenate([a for a, _ in moments], axis=1)
    v = np.concatenate([b for _, b in moments], axis=1)
    lp = post.sample_stats.get("lp")
    found = chain_groups(m, v, None if lp is None or np.shape(lp)[0] != m.shape[0] else np.asarray(lp, np.float64))
    if found is None:
        return ""
    starts = np.cumsum([0] + [a.shape[1] for a, _ in moments])

    def label(k: int) -> str:
        i = int(np.searchsorted(starts, k, side="right")) - 1
        shape = post.draws[names[i]].shape[2:]
        return names[i] if not shape else f"{names[i]}[{element_label(shape, k - int(starts[i]))}]"

    step = post.attrs.get("step_size")
    step = [float(a) for a in step] if isinstance(step, list) and all(isinstance(a, int | float) for a in step) \
        else None
    return disagreement_warning(found, label, step)


BACKEND = McmcBackend()
