"""The ``vi`` backend's work: NumPyro SVI with an auto-guide on the lowered model."""

from __future__ import annotations

import jax
import numpy as np
import optax
from numpyro.infer import SVI, Predictive, Trace_ELBO, autoguide, init_to_uniform, init_to_value
from numpyro.optim import optax_to_numpyro

from fglang.compiler.bind import BoundModel
from fglang.errors import Diagnostic, FgError
from fglang.runtime.carry import CarriedMarginal
from fglang.runtime.numpyro_sites import init_sites, numpyro_model, site_draws
from fglang.runtime.posterior import Posterior
from fglang.runtime.vi.options import ViOptions

GUIDES = {
    "normal": autoguide.AutoNormal,
    "mvn": autoguide.AutoMultivariateNormal,
    "lowrank": autoguide.AutoLowRankMultivariateNormal,
    "delta": autoguide.AutoDelta,
}


def fit_vi(
    bm: BoundModel, o: ViOptions, *, seed: int, init: dict, carried: dict[str, CarriedMarginal], progress: bool = False
) -> Posterior:
    nm = numpyro_model(bm, carried)
    model = nm.model_fn()
    sites = init_sites(nm, init)
    init_fn = init_to_value(values=sites) if sites else init_to_uniform
    guide = GUIDES[o.guide](model, init_loc_fn=init_fn)
    optim = optax_to_numpyro(optax.adam(o.lr))
    svi = SVI(model, guide, optim, Trace_ELBO(num_particles=o.particles))
    key = jax.random.PRNGKey(seed)
    k_run, k_draw = jax.random.split(key)
    result = svi.run(k_run, o.steps, nm.data, progress_bar=progress)
    losses = np.asarray(result.losses)
    if not np.isfinite(losses[-1]):
        bad = int(np.argmax(~np.isfinite(losses)))
        raise FgError(
            [
                Diagnostic(
                    f"VI diverged: the ELBO became non-finite at step {bad}",
                    None,
                    "lower lr (e.g. --lr 0.001), give an init, or check the model's scales",
                )
            ]
        )
    k_guide, k_pred = jax.random.split(k_draw)
    latents = guide.sample_posterior(k_guide, result.params, nm.data, sample_shape=(o.draws,))
    # only the deterministic sites (lets, sparsity-prior vars): by default Predictive
    # would also draw every observed site, draws x data points of memory for nothing
    wanted = [k for k, s in guide.prototype_trace.items() if s["type"] == "deterministic" and k not in latents]
    derived = Predictive(model, posterior_samples=latents, return_sites=wanted)(k_pred, nm.data) if wanted else {}
    samples = {**latents, **derived}
    draws = site_draws(samples, bm, grouped=False)
    step = max(1, len(losses) // 200)
    return Posterior(
        bm.name,
        "vi",
        draws,
        observed=dict(bm.data),
        attrs={
            "options": o.as_dict(),
            "seed": seed,
            "final_loss": float(losses[-1]),
            "loss_history": losses[::step].tolist(),
        },
        node_shapes={v.name: v.node_shape for v in bm.variables.values()},
    )
