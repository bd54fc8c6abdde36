"""Prediction: the learned posterior as prior, new inputs, targets left out.

Data that appear only on the left of ``~`` (the targets) may be missing in
prediction. Their factors are dropped from inference; each such family's
left side becomes a predicted quantity, reported under the family's name:

- ``gbp``: GBP runs with the stored per-node marginals as priors; the
  prediction of member m is Gaussian, mean ``mu_m(x̂)`` and variance
  ``J Σ Jᵀ + sd²`` (linearized at the means; Σ the per-node covariances);
- ``vi``/``mcmc``: the family's site is sampled (not observed) for every
  posterior draw of the vars (NumPyro ``Predictive``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fglang.compiler import ast as A
from fglang.compiler.bind import BoundModel
from fglang.compiler.dag import distinct_nodes
from fglang.compiler.expr import names_in, static_value
from fglang.compiler.groups import GROUPS
from fglang.compiler.ir import ModelIR
from fglang.errors import Diagnostic, FgError
from fglang.runtime.manifold import is_group, tangent_dim


def _used_outside_lhs(ir: ModelIR) -> set[str]:
    used: set[str] = set()
    for f in ir.families.values():
        exprs = [e for _, e in f.args] + [f.potential] + [r.lo for r in f.ranges] + [r.hi for r in f.ranges]
        for p in f.slots:
            exprs.extend(x for x in p.node_index)
        for e in exprs:
            if e is not None:
                used |= {n.id for n in names_in(e)}
    for v in ir.variables.values():
        for e in v.node_dims + v.value_shape:
            used |= {n.id for n in names_in(e)}
    for d in ir.data.values():
        for e in d.shape_exprs:
            used |= {n.id for n in names_in(e)}
    # the lets share nodes (compiler/dag.py): each distinct node once
    used |= {x.id for x in distinct_nodes(d.expr for d in ir.derived.values()) if isinstance(x, A.Name)}
    return used


def targets(ir: ModelIR, raw: dict[str, Any]) -> tuple[dict[str, Any], list[str], set[str]]:
    """Fill missing target data with zeros; return (data, missing names, target families)."""
    missing = [d for d, info in ir.data.items() if d not in raw and info.default is None]
    outside = _used_outside_lhs(ir)
    bad = [d for d in missing if d in outside]
    if bad:
        errs = [
            Diagnostic(
                f"predict needs data '{d}': it is used as an input (not only on the left of '~')",
                ir.data[d].span,
            )
            for d in bad
        ]
        raise FgError(errs, ir.sources)
    filled = dict(raw)
    sizes = {k: int(v) for k, v in raw.items() if k in ir.data and ir.data[k].dtype == "int" and np.ndim(v) == 0}
    for d in missing:
        info = ir.data[d]
        shape = tuple(int(static_value(e, sizes)) for e in info.shape_exprs)
        filled[d] = np.zeros(shape, dtype=np.int64 if info.dtype in ("int", "bool") else np.float64)
    fams = {
        f.name for f in ir.families.values() if f.lhs is not None and {n.id for n in names_in(f.lhs)} & set(missing)
    }
    return filled, missing, fams


def _retract(kind: str, x, d):
    from fglang.compiler.lie_jax import retract

    return retract(kind, x, d)


def family_moments(bm: BoundModel, fam, data: dict, means: dict, covs: dict) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of a family's ``mu`` per member, linearized at the means.

    ``[M, R]`` each: ``mu(m)`` and ``diag(J S J^T)`` with each var's per-node
    covariances ``S`` (GBP tracks no cross-node ones). Why per member: a
    member's ``mu`` reads only its own slots, so one vmapped Jacobian per
    member costs O(M); a Jacobian of the whole family with respect to every
    node was O(M x nodes) (digits: 8 GB and 48 s to predict 397 test images).
    Two slots of one member that read the same node are combined exactly.
    A group var's slot is differentiated in its tangent space at the mean
    (``mu(mean compose exp(e))`` at e = 0), where its covariance is.
    """
    idx = {k: jnp.asarray(v) for k, v in fam.idx.items()}
    vals = tuple(bm.gather(s, means) for s in fam.slots)
    kinds = tuple(bm.variables[s.var].domain.kind if is_group(bm.variables[s.var]) else None for s in fam.slots)

    def one(idx_m, sv, *steps):
        # each slot moved by a step in its tangent space (a group var's covariance
        # is in the tangent space at its mean: x = mean compose exp(e))
        moved = tuple(x + d if k is None else _retract(k, x, d) for x, d, k in zip(sv, steps, kinds))
        out = fam.evaluate_one(data, idx_m, moved)
        return jnp.ravel(jnp.asarray(out["args"]["mu"]) + 0.0 * jnp.asarray(out["lhs"]))

    steps = tuple(jnp.zeros(x.shape if k is None else x.shape[: x.ndim - len(GROUPS[k].storage)] +
                            (GROUPS[k].tangent,), x.dtype) for x, k in zip(vals, kinds))
    argnums = tuple(range(2, 2 + len(vals)))

    @jax.jit
    def moments(idx, vals, *steps):
        # one program: eagerly, the vmapped Jacobian ran operation by operation,
        # each a small program compiled of its own (seconds through a pose2 var)
        jacs = jax.vmap(jax.jacfwd(one, argnums=argnums))(idx, vals, *steps) if vals else ()
        return jax.vmap(one)(idx, vals, *steps), jacs

    mean, jacs = moments(idx, vals, *steps)
    mean = np.asarray(mean)
    m, r = mean.shape
    var = np.zeros((m, r))
    by_var: dict[str, list] = {}
    for s, j in zip(fam.slots, jacs):
        v = bm.variables[s.var]
        ids = np.asarray(s.node_ids).reshape(m, -1)
        by_var.setdefault(s.var, []).append((np.asarray(j).reshape(m, r, ids.shape[1], tangent_dim(v)), ids))
    for name, parts in by_var.items():
        v = bm.variables[name]
        dim = tangent_dim(v)
        jac = np.concatenate([np.moveaxis(j, 2, 1) for j, _ in parts], axis=1)  # [M, K, R, d]
        ids = np.concatenate([i for _, i in parts], axis=1)  # [M, K]
        # Sum the Jacobian columns of slots that read the same node (sort the
        # member's ids, number the runs of equal ids, add within a run): O(M K).
        order = np.argsort(ids, axis=1, kind="stable")
        ids = np.take_along_axis(ids, order, axis=1)
        jac = np.take_along_axis(jac, order[:, :, None, None], axis=1)
        run = np.cumsum(np.concatenate([np.ones((m, 1), bool), ids[:, 1:] != ids[:, :-1]], axis=1), axis=1) - 1
        rows = np.arange(m)[:, None]
        merged = np.zeros_like(jac)
        np.add.at(merged, (rows, run), jac)
        cov = np.zeros(jac.shape[:2] + (dim, dim))
        cov[rows, run] = np.asarray(covs[name]).reshape(v.n_nodes, dim, dim)[ids]
        var += np.einsum("mkrd,mkde,mkre->mr", merged, cov, merged)
    return mean, var
