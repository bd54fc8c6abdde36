"""``gbp`` prediction: re-infer the vars with the fitted marginals as priors."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from fglang.compiler.bind import BoundModel
from fglang.runtime.carry import carried_marginals
from fglang.runtime.gbp.fit import fit_gbp
from fglang.runtime.gbp.options import GbpOptions
from fglang.runtime.manifold import is_group
from fglang.runtime.posterior import GaussianMarginal, Posterior
from fglang.runtime.predict import family_moments


def predict_gbp(bm: BoundModel, posterior: Posterior, fams: set[str], o: GbpOptions, seed: int) -> Posterior:
    """GBP with the stored marginals as priors and the target families left
    out; each target member is Gaussian, mean ``mu_m(x)`` and variance
    ``J S J^T + sd^2`` (linearized at the means; S the per-node covariances)."""
    # a group var starts at its fitted mean (its carried prior's), not at the identity
    init = {k: np.asarray(g.mean).reshape(bm.variables[k].shape) for k, g in posterior.gaussian.items()
            if k in bm.variables and is_group(bm.variables[k])}
    post = fit_gbp(bm, o, seed=seed, init=init, carried=carried_marginals(bm, posterior), skip_families=fams)
    data = {k: jnp.asarray(v) for k, v in bm.data.items()}
    means = {k: jnp.asarray(g.mean) for k, g in post.gaussian.items() if k in bm.variables}
    for name in sorted(fams):
        fam = bm.families[name]
        idx = {k: jnp.asarray(v) for k, v in fam.idx.items()}
        covs = {n: post.gaussian[n].cov for n in {s.var for s in fam.slots}}
        # An unindexed factor split into members predicts member by member; its
        # members run over the residual's elements in C order, as ravel does.
        mean, var = family_moments(bm, fam.members or fam, data, means, covs)
        mean, var = mean.ravel(), var.ravel()
        zeros = {v.name: jnp.zeros(v.shape) for v in bm.variables.values()}
        out0 = fam.evaluate(data, idx, tuple(bm.gather(s, zeros) for s in fam.slots))
        shape = np.broadcast_shapes(np.shape(out0["lhs"]), np.shape(out0["args"]["mu"]))
        if "sd" in out0["args"]:
            sd = np.asarray(out0["args"]["sd"], dtype=np.float64)
            if 0 < sd.ndim < len(shape) and sd.shape == shape[: sd.ndim]:  # one sd per member of a vector lhs
                sd = sd.reshape(sd.shape + (1,) * (len(shape) - sd.ndim))
            var = var + np.broadcast_to(sd**2, shape).ravel()
        if not fam.ir.ranges:  # an unindexed factor: its one member's shape (the data's), no member axis
            shape = shape[1:]
        mean = mean.reshape(shape)
        post.gaussian[name] = GaussianMarginal(mean, var.reshape(shape + (1, 1)), shape, ())
        rng = np.random.default_rng(seed)
        n = next(iter(post.draws.values())).shape[1] if post.draws else 200
        post.draws[name] = (mean + np.sqrt(var.reshape(shape)) * rng.standard_normal((n,) + shape))[None]
    post.attrs["predicted"] = sorted(fams)
    return post
