"""The ``mcmc`` backend's work: NumPyro NUTS on the lowered model.

Two paths. Vectorized chains on one device (the default there) and a single
chain run the whole fit as one exported program (`mcmc.program`, stored by
`program_cache`): a warm fit loads it and runs it without importing NumPyro
or tracing the model, and without a per-iteration progress bar. Chains one
per device (``parallel``, a ``pmap``), ``sequential`` chains and a mesh of
several devices run NumPyro's ``MCMC`` as before (its pmap and its Python
map over chains have no one function to export).

NumPyro is imported only where a path needs it (cold, or ``MCMC``).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from fglang.compiler.bind import BoundModel
from fglang.runtime.carry import CarriedMarginal
from fglang.runtime.device import current_mesh, device_names, mesh_processes
from fglang.runtime.dtypes import precision, resolve_dtype
from fglang.runtime.mcmc.options import McmcOptions
from fglang.runtime.posterior import Posterior


def fit_mcmc(
    bm: BoundModel, o: McmcOptions, *, seed: int, init: dict, carried: dict[str, CarriedMarginal],
    progress: bool = False,
) -> Posterior:
    dtype = resolve_dtype(o.dtype)
    mesh = current_mesh()
    with precision(dtype):  # float64 on CPU by default, as Stan; only for this fit
        if mesh_processes(mesh) > 1:  # --coordinator: a block of the chains per process (mcmc.processes)
            from fglang.runtime.mcmc.processes import run_processes

            draws, stats, chain_method, note, devices = run_processes(
                bm, o, dtype, mesh, seed=seed, init=init, carried=carried, progress=progress)
        else:
            chain_method, note = _chain_method(o)
            devices = [str(d) for d in jax.local_devices()[:o.chains]] if chain_method == "parallel" \
                else device_names(None)
            if exported_path(o, chain_method):
                from fglang.runtime.mcmc.exported import run_nuts_program

                draws, stats = run_nuts_program(bm, o, dtype, seed=seed, init=init, carried=carried,
                                                progress=progress)
            else:
                draws, stats = _run_mcmc(bm, o, chain_method, seed, init, carried, progress)
    # lp: the log density NUTS moved on (unconstrained, Jacobian included, as
    # Stan's lp__): which of two modes chains disagree on is better supported
    lp = -np.asarray(stats["potential_energy"], np.float64)
    step = np.ravel(np.asarray(stats["step_size"], np.float64))  # per chain: a frozen one's is tiny
    post = Posterior(
        bm.name,
        "mcmc",
        draws,
        sample_stats={"diverging": np.asarray(stats["diverging"]), "lp": lp},
        observed=bm.observed,
        attrs={"options": o.as_dict(), "seed": seed, "chain_method": chain_method,
               "chain_method_note": note, "horseshoe_vars": _horseshoe_vars(bm),
               "step_size": step.tolist() if step.size == o.chains else None, "devices": devices},
        node_shapes={v.name: v.node_shape for v in bm.variables.values()},
    )
    post.attrs["dtype"] = dtype
    return post


def exported_path(o: McmcOptions, chain_method: str) -> bool:
    """Whether the fit runs as one exported program: vectorized chains (or one
    chain) on one device; ``parallel``, ``sequential`` and meshes run ``MCMC``."""
    return current_mesh() is None and (chain_method == "vectorized" or o.chains == 1)


def _run_mcmc(bm: BoundModel, o: McmcOptions, chain_method: str, seed: int, init: dict,
              carried: dict[str, CarriedMarginal], progress: bool,
              chain_keys: Any = None) -> tuple[dict[str, np.ndarray], dict]:
    """NumPyro's ``MCMC.run`` (its progress bar, its pmap or map over chains):
    (draws, {diverging, potential_energy: [chain, draw]; step_size: the last state's}).
    ``chain_keys``: the chains' own keys (a block of a larger run's, `mcmc.processes`)
    instead of the split of the seed's."""
    from fglang.runtime.timings import phase

    with phase("import"):
        from numpyro.infer import MCMC, NUTS, init_to_uniform, init_to_value

        from fglang.runtime.mcmc.starts import screened_start
        from fglang.runtime.numpyro_sites import init_sites, numpyro_model, site_draws
    nm = numpyro_model(bm, carried)
    model = nm.model_fn()
    sites = init_sites(nm, init)
    init_fn = init_to_value(values=sites) if sites else init_to_uniform
    kernel = NUTS(model, target_accept_prob=o.target_accept, init_strategy=init_fn)
    mcmc = MCMC(
        kernel,
        num_warmup=o.warmup,
        num_samples=o.samples,
        num_chains=o.chains,
        chain_method=chain_method,
        progress_bar=progress,
    )
    if chain_keys is None:
        key = jax.random.PRNGKey(seed)
        chain_keys = jax.random.split(key, o.chains) if o.chains > 1 else key  # as MCMC.run splits it
    else:  # MCMC.run takes keys already split as they are
        key = chain_keys = jax.numpy.asarray(chain_keys)
    start = screened_start(model, chain_keys, o.chains, init_fn, set(sites), (nm.data,))
    mcmc.run(key, nm.data, init_params=start, extra_fields=("diverging", "potential_energy"))
    draws = site_draws(mcmc.get_samples(group_by_chain=True), bm, grouped=True)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    return draws, {"diverging": np.asarray(extra["diverging"]),
                   "potential_energy": np.asarray(extra["potential_energy"]),
                   "step_size": np.asarray(mcmc.last_state.adapt_state.step_size)}


def _chain_method(o: McmcOptions) -> tuple[str, str]:
    """The chain method NumPyro runs and, where it is not the one asked for,
    why (shown as advice). ``auto`` (the default) runs the chains one per
    device (NumPyro's ``parallel``, a ``pmap``) when there are at least as
    many devices as chains, the devices of ``devices=N`` or, without it, every
    local device of the platform (a GPU box, or a CPU with forced host
    devices: 1.5-2.2x faster than vectorized on 4 CPU devices); on one device
    they run vectorized. ``parallel`` asked for without a device per chain
    runs the chains sequentially (NumPyro's own fallback), and says so."""
    mesh = current_mesh()
    if mesh is not None:
        n_dev = mesh.size
    else:  # a device chosen with device= is one device; pmap would take the default platform's
        n_dev = 1 if jax.config.jax_default_device is not None else jax.local_device_count()
    asked = o.chain_method
    if asked == "auto":
        if n_dev > 1 and 1 < o.chains <= n_dev:
            return "parallel", ""
        if mesh is not None and o.chains > n_dev:
            return "vectorized", (
                f"{o.chains} chains on {n_dev} devices: NUTS runs one chain per device, so the chains ran "
                f"vectorized on one device; use chains <= {n_dev} or devices >= {o.chains}")
        return "vectorized", ""
    if asked == "parallel" and o.chains > n_dev:
        return "sequential", (
            f"chain_method parallel needs a device per chain ({o.chains} chains, {n_dev} device(s)): the chains "
            f"ran sequentially; run with devices={o.chains} (on CPU: "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={o.chains} before the process starts)"
        )
    if mesh is not None and asked in ("sequential", "vectorized"):
        return asked, f"chain_method {asked} runs on one device: the other {n_dev - 1} device(s) were idle"
    return asked, ""


def _horseshoe_vars(bm: BoundModel) -> list[str]:
    """Vars with a plain horseshoe prior: its funnel is the usual source of NUTS
    divergences, and the divergence warning names the regularized horseshoe."""
    return sorted(
        v.name for v in bm.variables.values()
        if v.prior and (fam := bm.families.get(v.prior)) is not None and fam.ir.dist is not None
        and fam.ir.dist.name == "horseshoe"
    )
