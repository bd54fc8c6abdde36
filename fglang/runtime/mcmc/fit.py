"""The ``mcmc`` backend's work: NumPyro NUTS on the lowered model."""

from __future__ import annotations

import jax
import numpy as np
from numpyro.infer import MCMC, NUTS, init_to_uniform, init_to_value

from fglang.compiler.bind import BoundModel
from fglang.runtime.carry import CarriedMarginal
from fglang.runtime.mcmc.options import McmcOptions
from fglang.runtime.numpyro_sites import init_sites, numpyro_model, precision, resolve_dtype, site_draws
from fglang.runtime.posterior import Posterior


def fit_mcmc(
    bm: BoundModel, o: McmcOptions, *, seed: int, init: dict, carried: dict[str, CarriedMarginal],
    progress: bool = False,
) -> Posterior:
    dtype = resolve_dtype(o.dtype)
    with precision(dtype):  # float64 on CPU by default, as Stan; only for this fit
        post = _fit(bm, o, seed, init, carried, progress)
    post.attrs["dtype"] = dtype
    return post


def _fit(bm: BoundModel, o: McmcOptions, seed: int, init: dict, carried: dict[str, CarriedMarginal],
         progress: bool) -> Posterior:
    nm = numpyro_model(bm, carried)
    model = nm.model_fn()
    sites = init_sites(nm, init)
    init_fn = init_to_value(values=sites) if sites else init_to_uniform
    kernel = NUTS(model, target_accept_prob=o.target_accept, init_strategy=init_fn)
    chain_method = o.chain_method
    if chain_method == "parallel" and jax.local_device_count() < o.chains:
        chain_method = "sequential"
    mcmc = MCMC(
        kernel,
        num_warmup=o.warmup,
        num_samples=o.samples,
        num_chains=o.chains,
        chain_method=chain_method,
        progress_bar=progress,
    )
    mcmc.run(jax.random.PRNGKey(seed), nm.data, extra_fields=("diverging",))
    samples = mcmc.get_samples(group_by_chain=True)
    draws = site_draws(samples, bm, grouped=True)
    diverging = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"])
    return Posterior(
        bm.name,
        "mcmc",
        draws,
        sample_stats={"diverging": diverging},
        observed=dict(bm.data),
        attrs={"options": o.as_dict(), "seed": seed, "chain_method": chain_method,
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
