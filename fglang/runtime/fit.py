"""``fit``: validate, pick the device, dispatch to a backend, return a Posterior."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fglang.compiler.bind import BoundModel
from fglang.errors import Diagnostic, FgError
from fglang.runtime.device import device_context, enable_compilation_cache
from fglang.runtime.inits import check_init
from fglang.runtime.posterior import Posterior, load_posterior

BACKENDS = ("gbp", "vi", "mcmc")


def carried_priors(bm: BoundModel, prior: Posterior | str | Path | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A stored posterior's marginals as (mean, sd) per var present in both models."""
    if prior is None:
        return {}
    post = prior if isinstance(prior, Posterior) else load_posterior(prior)
    out = {}
    for name, v in bm.variables.items():
        if name in post.draws or name in post.gaussian:
            mean, sd = np.asarray(post.mean(name)), np.asarray(post.sd(name))
            if mean.shape != v.shape:
                raise FgError(
                    [
                        Diagnostic(
                            f"the prior posterior's '{name}' has shape {list(mean.shape)}, the model's var has "
                            f"{list(v.shape)}",
                            None,
                        )
                    ]
                )
            out[name] = (mean, np.maximum(sd, 1e-12))
    return out


def fit(
    bm: BoundModel,
    backend: str,
    *,
    seed: int = 0,
    init: dict[str, Any] | None = None,
    init_file: str = "init",
    prior: Posterior | str | Path | None = None,
    device: str | None = None,
    progress: bool = False,
    options: dict[str, Any] | None = None,
) -> Posterior:
    if backend not in BACKENDS:
        raise FgError([Diagnostic(f"unknown backend {backend!r}", None, f"backends: {', '.join(BACKENDS)}")])
    enable_compilation_cache()
    init_values = check_init(bm, init, init_file)
    options = dict(options or {})
    with device_context(device):
        if backend in ("vi", "mcmc"):
            from fglang.runtime.numpyro_fit import fit_mcmc, fit_vi

            priors = carried_priors(bm, prior)
            runner = fit_vi if backend == "vi" else fit_mcmc
            post = runner(bm, seed=seed, init=init_values, priors=priors, options=options, progress=progress)
        else:
            from fglang.runtime.gbp.fit import fit_gbp

            post = fit_gbp(bm, seed=seed, init=init_values, prior=prior, options=options, progress=progress)
    post.attrs.setdefault("source", bm.ir.sources.get(bm.ir.file, ""))
    return post
