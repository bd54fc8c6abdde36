"""``vi``/``mcmc`` prediction: NumPyro ``Predictive`` over the posterior draws."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import Predictive

from fglang.compiler.bind import BoundModel
from fglang.errors import Diagnostic, FgError
from fglang.runtime.numpyro_model import NumpyroModel
from fglang.runtime.posterior import Posterior


def predict_sampling(bm: BoundModel, posterior: Posterior, fams: set[str], seed: int) -> Posterior:
    """Sample every target family's site for each posterior draw of the vars, in
    the dtype of the fit (``attrs["dtype"]``; files from before it was recorded:
    float32, as they were fitted)."""
    from fglang.runtime.numpyro_sites import precision

    dtype = posterior.attrs.get("dtype")
    with precision(dtype if dtype in ("float32", "float64") else "float32"):
        return _predict(bm, posterior, fams, seed)


def _predict(bm: BoundModel, posterior: Posterior, fams: set[str], seed: int) -> Posterior:
    nm = NumpyroModel(bm, predict=fams)
    samples = {}
    for name in posterior.draws:
        if name in bm.variables or "__" in name:
            s = posterior.samples(name)
            samples[name] = jnp.asarray(s)
    wrong = [
        f"'{k}' is {list(np.shape(s)[1:])} in the posterior, {list(bm.variables[k].shape)} here"
        for k, s in samples.items() if k in bm.variables and tuple(np.shape(s)[1:]) != bm.variables[k].shape
    ]
    if wrong:
        raise FgError(
            [Diagnostic(f"the posterior's vars do not fit these data: {'; '.join(wrong)}", None,
                        "the data's sizes must be those of the fit for vi/mcmc prediction; per-example latent "
                        "vars are re-inferred only by gbp prediction")]
        )
    missing = [v for v in bm.variables if v not in samples]
    if missing:
        raise FgError(
            [
                Diagnostic(
                    f"the posterior has no draws of {', '.join(missing)}; per-example latent vars must be "
                    "re-inferred, which only gbp prediction does",
                    None,
                )
            ]
        )
    out = Predictive(nm.model_fn(), posterior_samples=samples)(jax.random.PRNGKey(seed), nm.data)
    draws = {k: np.asarray(v)[None] for k, v in out.items() if k in fams}
    draws.update({k: np.asarray(v).reshape((1,) + np.shape(v)) for k, v in samples.items() if "__" not in k})
    return Posterior(
        bm.name,
        posterior.backend,
        draws,
        observed=bm.observed,
        attrs={"predicted": sorted(fams)},
        node_shapes={v.name: v.node_shape for v in bm.variables.values()},
    )
