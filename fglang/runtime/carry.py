"""``--prior POST``: a stored posterior's marginals as this fit's priors.

One rule for every backend (GTSAM's and the GBP Learning paper's "the
posterior of one task is the prior of the next"):

- a var of this model that the stored posterior holds with the same shape
  is carried: its per-node Gaussian marginal (mean and covariance, exact for
  GBP, estimated from draws otherwise) replaces the var's written prior;
- a var whose shape differs (per-example activations of another data set)
  is re-inferred from this fit's data, with a warning that names it;
- per-example vars (whose first node axis is the model's ``batch`` size)
  describe other examples and are never carried;
- a posterior that holds none of the model's vars (another model's) is
  refused: it would carry nothing, silently.

Each backend turns the marginals into its own form: GBP into information
form (optionally tempered), NumPyro into independent normals.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fglang.compiler import ast as A
from fglang.compiler.bind import BoundModel
from fglang.compiler.groups import GROUPS
from fglang.compiler.ir import ModelIR
from fglang.errors import Diagnostic, FgError
from fglang.runtime.posterior import Posterior, load_posterior


class CarriedMarginal(NamedTuple):
    """Per-node Gaussian of one var: mean [n_nodes, d], cov [n_nodes, d, d]; of
    a group var, mean [n_nodes, *storage] and cov in the tangent space at it."""

    mean: np.ndarray
    cov: np.ndarray

    def mean_sd(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Independent normals (mean, sd), each of the var's full shape."""
        sd = np.sqrt(np.maximum(np.diagonal(self.cov, axis1=-2, axis2=-1), 0.0))
        return self.mean.reshape(shape), np.maximum(sd.reshape(shape), 1e-12)

    def information(self, temper: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(eta, lambda) per node; ``temper`` < 1 flattens the prior."""
        d = self.cov.shape[-1]
        lam = np.linalg.inv(self.cov + 1e-12 * np.eye(d)) * temper
        return np.einsum("nij,nj->ni", lam, self.mean), lam


def _carried_group(post: Posterior, name: str, v, mean: np.ndarray) -> CarriedMarginal:
    """A group var's marginal: its mean (stored values, [n_nodes, *storage]) and
    the covariance in the tangent space there ([n_nodes, dof, dof]), as map
    reports it; from the draws (intrinsic mean) when the file has only those."""
    g = GROUPS[v.domain.kind]
    gm = post.gaussian.get(name)
    if gm is not None and gm.group == g.name:
        mean, cov = np.asarray(gm.mean, np.float64), np.asarray(gm.cov, np.float64)
    else:
        from fglang.runtime.group_chart import frechet_mean

        mean, cov = frechet_mean(g.name, post.samples(name))
    cov = cov.reshape(v.n_nodes, g.tangent, g.tangent)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
        raise FgError([Diagnostic(
            f"the --prior posterior's marginal of '{name}' holds NaN or inf", None,
            "the posterior file is damaged, or its fit skipped the Laplace covariances "
            "(map marginals=none or auto on a large graph): fit it again with marginals=full")])
    return CarriedMarginal(mean.reshape((v.n_nodes,) + g.storage), cov)


def batch_size_name(ir: ModelIR) -> str | None:
    """The int size marked ``batch`` (``data N: int batch``), if any."""
    names = [d.name for d in ir.data.values() if d.batch]
    return names[0] if names else None


def _leading(exprs, name: str) -> bool:
    return bool(exprs) and isinstance(exprs[0], A.Name) and exprs[0].id == name


def per_example_vars(ir: ModelIR) -> list[str]:
    """Vars whose first node axis is the ``batch`` size (activations)."""
    n = batch_size_name(ir)
    return [] if n is None else [v.name for v in ir.variables.values() if _leading(v.node_dims, n)]


def per_example_data(ir: ModelIR) -> list[str]:
    """Data arrays whose first axis is the ``batch`` size (the rows a batch splits)."""
    n = batch_size_name(ir)
    return [] if n is None else [d.name for d in ir.data.values() if _leading(d.shape_exprs, n)]


def as_posterior(prior: Posterior | str | Path | None) -> Posterior | None:
    if prior is None or isinstance(prior, Posterior):
        return prior
    return load_posterior(prior)


def _listed(names: set[str], most: int = 6) -> str:
    shown = sorted(n for n in names if "__" not in n)
    return ", ".join(shown[:most]) + (f", ... ({len(shown)} in all)" if len(shown) > most else "") or "none"


def carried_marginals(bm: BoundModel, prior: Posterior | str | Path | None) -> dict[str, CarriedMarginal]:
    """The marginals of ``prior`` that this model carries (the module's rule)."""
    post = as_posterior(prior)
    if post is None:
        return {}
    never = set(per_example_vars(bm.ir))
    held = set(post.draws) | set(post.gaussian)
    if bm.variables and not held & set(bm.variables):
        raise FgError([Diagnostic(
            f"the --prior posterior (of model '{post.model}', vars {_listed(held)}) holds none of this model's "
            f"vars ({_listed(set(bm.variables))}), so it would carry nothing", None,
            "give the posterior of a fit of a model that declares these vars (matched by name), or drop --prior")])
    out: dict[str, CarriedMarginal] = {}
    for name, v in bm.variables.items():
        if name in never or (name not in post.draws and name not in post.gaussian):
            continue
        mean = np.asarray(post.mean(name), dtype=np.float64)
        if mean.shape != v.shape:
            warnings.warn(
                f"not carrying '{name}' from the prior posterior: its shape {list(mean.shape)} differs from "
                f"{list(v.shape)} here, so it is inferred from this fit's data",
                stacklevel=3,
            )
            continue
        if v.domain.kind in GROUPS:
            out[name] = _carried_group(post, name, v, mean)
            continue
        cov = np.asarray(post.cov(name), dtype=np.float64)
        if cov.size != v.n_nodes * v.node_dim * v.node_dim:  # stored with another node layout: keep the sds
            sd = np.asarray(post.sd(name), dtype=np.float64).reshape(v.n_nodes, v.node_dim)
            cov = np.einsum("ni,ij->nij", sd**2, np.eye(v.node_dim))
        cov = cov.reshape(v.n_nodes, v.node_dim, v.node_dim)
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):  # a damaged or hand-edited file
            raise FgError(
                [Diagnostic(f"the --prior posterior's marginal of '{name}' holds NaN or inf", None,
                            "the posterior file is damaged; fit it again")]
            )
        out[name] = CarriedMarginal(mean.reshape(v.n_nodes, v.node_dim), cov)
    return out


def carried_priors(bm: BoundModel, carried: dict[str, CarriedMarginal]
                   ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The carried marginals as the NumPyro lowering takes them: (var -> (mean,
    sd) of the var's shape, independent normals; group var -> (mean, tangent
    cov), its chart's base and tangent Gaussian). NumPyro-free, so that the
    program cache can key a sampler by them without importing NumPyro."""
    groups = {k for k in carried if bm.variables[k].domain.kind in GROUPS}
    priors = {k: c.mean_sd(bm.variables[k].shape) for k, c in carried.items() if k not in groups}
    return priors, {k: (carried[k].mean, carried[k].cov) for k in groups}
