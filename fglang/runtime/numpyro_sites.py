"""What the ``vi`` and ``mcmc`` backends share around NumPyro: initial values
mapped onto sample sites, and NumPyro's samples as a Posterior's draws."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np

from fglang.compiler.bind import BoundModel
from fglang.compiler.groups import GROUPS
from fglang.runtime.carry import CarriedMarginal, carried_priors
from fglang.runtime.dtypes import precision, resolve_dtype  # noqa: F401  (re-exported: the backends import them here)
from fglang.runtime.manifold import normalized

if TYPE_CHECKING:  # NumPyro is imported where a model is built: a warm VI fit builds none
    from fglang.runtime.numpyro_model import NumpyroModel


def numpyro_model(bm: BoundModel, carried: dict[str, CarriedMarginal]) -> NumpyroModel:
    """The lowered model, carried marginals as independent normal priors (a
    group var's as its tangent Gaussian at the carried mean, also its chart's base)."""
    from fglang.runtime.numpyro_model import NumpyroModel

    priors, group_priors = carried_priors(bm, carried)
    return NumpyroModel(bm, priors, group_priors=group_priors)


def init_sites(nm: NumpyroModel, init: dict[str, Any], data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Var initial values -> sample-site initial values (aux sites for sparsity priors;
    aux sites given by name win over those derived from their var's value).
    ``data``: the model's data (default the bound ones); a traced program
    passes its data argument, so that its aux starts follow new data. A group
    var's value must be concrete: it is the base of the var's chart."""
    data = nm.data if data is None else data
    sites: dict[str, Any] = {}
    bm = nm.bm
    for name, value in init.items():
        v = bm.variables.get(name)
        if v is None:  # an aux site, set below
            continue
        if v.domain.kind in GROUPS:  # the start is the base of the var's chart (delta = 0 there)
            nm.bases[name] = normalized(v, np.asarray(value, np.float64))
            sites[name] = jnp.asarray(nm.bases[name])
            continue
        fam = bm.families.get(v.prior) if v.prior else None
        if fam is not None and fam.ir.dist.sparsity and name not in nm.priors:
            from fglang.runtime.numpyro_distributions import init_aux

            out = fam.evaluate(data, nm.idx[fam.name], nm._slot_values(fam, {}, own=name))
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


def site_draws(samples: dict[str, Any], bm: BoundModel, grouped: bool) -> dict[str, np.ndarray]:
    """Drop observed sites; shape every draw array [chain, draw, *shape]."""
    observed = {f.name for f in bm.families.values()} | set(bm.bounds)  # bounds: sites only to replay the model
    out = {}
    for k, v in samples.items():
        if k in observed or k.endswith("__members"):
            continue
        arr = np.asarray(v)
        out[k] = arr if grouped else arr[None]
    return out
