"""The ``vi`` and ``mcmc`` backends: NumPyro SVI and NUTS on the lowered model."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO, autoguide, init_to_uniform, init_to_value
from numpyro.optim import optax_to_numpyro

from fglang.compiler.bind import BoundModel
from fglang.errors import Diagnostic, FgError
from fglang.runtime.numpyro_distributions import init_aux
from fglang.runtime.numpyro_model import NumpyroModel
from fglang.runtime.posterior import Posterior

VI_DEFAULTS = {"guide": "normal", "steps": 5000, "lr": 0.01, "particles": 1, "draws": 1000}
MCMC_DEFAULTS = {"chains": 4, "warmup": 1000, "samples": 1000, "target_accept": 0.8, "chain_method": "vectorized"}
GUIDES = {
    "normal": autoguide.AutoNormal,
    "mvn": autoguide.AutoMultivariateNormal,
    "lowrank": autoguide.AutoLowRankMultivariateNormal,
    "delta": autoguide.AutoDelta,
}


def options_for(backend: str, options: dict[str, Any]) -> dict[str, Any]:
    defaults = VI_DEFAULTS if backend == "vi" else MCMC_DEFAULTS
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise FgError(
            [
                Diagnostic(
                    f"unknown option{'s' * (len(unknown) > 1)} for backend '{backend}': {', '.join(unknown)}",
                    None,
                    f"{backend} takes {', '.join(defaults)}",
                )
            ]
        )
    out = {**defaults, **{k: v for k, v in options.items() if v is not None}}
    if backend == "vi" and out["guide"] not in GUIDES:
        raise FgError([Diagnostic(f"unknown guide {out['guide']!r}", None, f"guides: {', '.join(GUIDES)}")])
    if backend == "mcmc" and out["chain_method"] not in ("vectorized", "parallel", "sequential"):
        raise FgError([Diagnostic(f"unknown chain_method {out['chain_method']!r}", None)])
    for k in ("steps", "particles", "draws", "chains", "warmup", "samples"):
        if k in out and (int(out[k]) != out[k] or out[k] < (0 if k == "warmup" else 1)):
            raise FgError([Diagnostic(f"option {k} must be a positive whole number, got {out[k]!r}", None)])
    return out


def _init_sites(nm: NumpyroModel, init: dict[str, np.ndarray]) -> dict[str, Any]:
    """Var initial values -> sample-site initial values (aux sites for sparsity priors;
    aux sites given by name win over those derived from their var's value)."""
    sites: dict[str, Any] = {}
    bm = nm.bm
    for name, value in init.items():
        v = bm.variables.get(name)
        if v is None:  # an aux site, set below
            continue
        fam = bm.families.get(v.prior) if v.prior else None
        if fam is not None and fam.ir.dist.sparsity and name not in nm.priors:
            out = fam.evaluate(nm.data, nm.idx[fam.name], nm._slot_values(fam, {}, own=name))
            args = {k: jnp.reshape(a, (-1,))[0] for k, a in out["args"].items()}
            aux = init_aux(fam.ir.dist.name, args, jnp.asarray(value))
            if not aux:
                sites[name] = jnp.asarray(value)
            for suffix, a in aux.items():
                sites[name + suffix] = a
        else:
            sites[name] = jnp.asarray(value)
    sites.update({k: jnp.asarray(a) for k, a in init.items() if k not in bm.variables})
    return sites


def _draws(samples: dict[str, Any], bm: BoundModel, grouped: bool) -> dict[str, np.ndarray]:
    """Drop observed sites; shape every draw array [chain, draw, *shape]."""
    observed = {f.name for f in bm.families.values()}
    out = {}
    for k, v in samples.items():
        if k in observed or k.endswith("__members"):
            continue
        arr = np.asarray(v)
        out[k] = arr if grouped else arr[None]
    return out


def fit_vi(
    bm: BoundModel, *, seed: int, init: dict, priors: dict | None, options: dict, progress: bool = False
) -> Posterior:
    o = options_for("vi", options)
    nm = NumpyroModel(bm, priors)
    model = nm.model_fn()
    sites = _init_sites(nm, init)
    init_fn = init_to_value(values=sites) if sites else init_to_uniform
    guide = GUIDES[o["guide"]](model, init_loc_fn=init_fn)
    optim = optax_to_numpyro(optax.adam(o["lr"]))
    svi = SVI(model, guide, optim, Trace_ELBO(num_particles=int(o["particles"])))
    key = jax.random.PRNGKey(seed)
    k_run, k_draw = jax.random.split(key)
    result = svi.run(k_run, int(o["steps"]), nm.data, progress_bar=progress)
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
    latents = guide.sample_posterior(k_guide, result.params, nm.data, sample_shape=(int(o["draws"]),))
    # only the deterministic sites (lets, sparsity-prior vars): by default Predictive
    # would also draw every observed site, draws x data points of memory for nothing
    wanted = [k for k, s in guide.prototype_trace.items() if s["type"] == "deterministic" and k not in latents]
    derived = Predictive(model, posterior_samples=latents, return_sites=wanted)(k_pred, nm.data) if wanted else {}
    samples = {**latents, **derived}
    draws = _draws(samples, bm, grouped=False)
    step = max(1, len(losses) // 200)
    return Posterior(
        bm.name,
        "vi",
        draws,
        observed=dict(bm.data),
        attrs={
            "options": {k: v for k, v in o.items()},
            "seed": seed,
            "final_loss": float(losses[-1]),
            "loss_history": losses[::step].tolist(),
        },
        node_shapes={v.name: v.node_shape for v in bm.variables.values()},
    )


def fit_mcmc(
    bm: BoundModel, *, seed: int, init: dict, priors: dict | None, options: dict, progress: bool = False
) -> Posterior:
    o = options_for("mcmc", options)
    nm = NumpyroModel(bm, priors)
    model = nm.model_fn()
    sites = _init_sites(nm, init)
    init_fn = init_to_value(values=sites) if sites else init_to_uniform
    kernel = NUTS(model, target_accept_prob=float(o["target_accept"]), init_strategy=init_fn)
    chain_method = o["chain_method"]
    if chain_method == "parallel" and jax.local_device_count() < int(o["chains"]):
        chain_method = "sequential"
    mcmc = MCMC(
        kernel,
        num_warmup=int(o["warmup"]),
        num_samples=int(o["samples"]),
        num_chains=int(o["chains"]),
        chain_method=chain_method,
        progress_bar=progress,
    )
    mcmc.run(jax.random.PRNGKey(seed), nm.data, extra_fields=("diverging",))
    samples = mcmc.get_samples(group_by_chain=True)
    draws = _draws(samples, bm, grouped=True)
    diverging = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"])
    return Posterior(
        bm.name,
        "mcmc",
        draws,
        sample_stats={"diverging": diverging},
        observed=dict(bm.data),
        attrs={"options": {k: v for k, v in o.items()}, "seed": seed, "chain_method": chain_method,
               "horseshoe_vars": _horseshoe_vars(bm)},
        node_shapes={v.name: v.node_shape for v in bm.variables.values()},
    )


def _horseshoe_vars(bm: BoundModel) -> list[str]:
    """Vars with a plain horseshoe prior: its funnel is the usual source of NUTS
    divergences, and the divergence warning names the regularized horseshoe."""
    return sorted(
        v.name for v in bm.variables.values()
        if v.prior and (fam := bm.families.get(v.prior)) is not None and fam.ir.dist is not None
        and fam.ir.dist.name == "horseshoe"
    )
