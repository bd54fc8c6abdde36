"""Per-node Gaussian marginals -> what a Posterior reports, for every backend
whose answer is a Gaussian per node (``gbp``, ``map``'s Laplace marginals).

A ``let`` gets mean ``f(m)`` and variance ``diag(J S J^T)`` with the
per-node covariances ``S`` (no cross-node covariances are tracked); draws
are sampled from each node's Gaussian so that the summary table, ArviZ,
plots and ``--prior`` work as for the sampling backends. And where such a
backend starts when no ``init`` is given. A group var's Gaussian is in the
tangent space at its mean: its draws are ``mean compose exp(e)``, and a
``let`` is linearized in the tangent steps.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fglang.compiler.bind import BoundModel
from fglang.compiler.bound import let_values
from fglang.compiler.groups import GROUPS
from fglang.runtime.manifold import tangent_dim, tangent_draws
from fglang.runtime.posterior import GaussianMarginal


def linearized_moments(bm: BoundModel, f, names: list[str], means: dict, covs: dict) -> tuple[np.ndarray, np.ndarray]:
    """Mean f(m) and variance diag(J S J^T) of a function of vars, linearized at
    the means (in the tangent space, for group vars)."""
    from fglang.compiler.lie_jax import retract

    kinds = [bm.variables[n].domain.kind for n in names]

    def g(*steps):  # f at each var's mean moved by a step in its tangent space
        vals = []
        for n, k, d in zip(names, kinds, steps):
            m = jnp.asarray(means[n])
            vals.append(m + d if k not in GROUPS else retract(k, m, d))
        return f(*vals)

    steps = [jnp.zeros(bm.variables[n].node_shape + (tangent_dim(bm.variables[n]),)) if k in GROUPS
             else jnp.zeros(np.shape(means[n])) for n, k in zip(names, kinds)]
    mean = np.asarray(g(*steps), np.float64)
    var = np.zeros_like(mean)
    jacs = jax.jacfwd(g, argnums=tuple(range(len(names))))(*steps) if names else ()
    for n, j in zip(names, jacs):
        v = bm.variables[n]
        d = tangent_dim(v)
        j = np.asarray(j).reshape(mean.size, v.n_nodes, d)
        c = np.asarray(covs[n]).reshape(v.n_nodes, d, d)
        var += np.einsum("knd,nde,kne->k", j, c, j)
    return mean, var


def derived_marginals(
    bm: BoundModel, means: dict[str, np.ndarray], covs: dict[str, np.ndarray]
) -> dict[str, GaussianMarginal]:
    """Linearized marginals of the lets that read vars (a let of data only is
    computed once at bind and reported by fit as a constant). The lets that
    read overlapping vars are linearized together, in one pass over their
    shared nodes, so a chain of lets costs its length, not its square."""
    groups = _let_groups(bm)
    if not groups:  # (each eager jnp.asarray below is a program lowered and looked up: issue 18)
        return {}
    data = {k: jnp.asarray(v) for k, v in bm.data.items()}
    out = {}
    for group in groups:
        names = sorted({d.slots[i].var for d in group for i in d.reads})

        def f(*vals, group=group, names=names):
            got = let_values(bm, data, dict(zip(names, vals)), {d.ir.name for d in group})
            return jnp.concatenate([jnp.ravel(got[d.ir.name]) for d in group])

        mean, var = linearized_moments(bm, f, names, means, covs)
        at = 0
        for d in group:
            n = int(np.prod(d.shape, dtype=np.int64))
            m, v = mean[at : at + n], var[at : at + n]
            at += n
            out[d.ir.name] = GaussianMarginal(m.reshape(d.shape), v.reshape(d.shape + (1, 1)), d.shape, ())
    return out


def _let_groups(bm: BoundModel) -> list[list]:
    """The lets that read vars, grouped by the vars they read (connected
    through shared vars), in declaration order: one Jacobian per group."""
    lets = [d for d in bm.derived.values() if not d.data_only]
    root = {}

    def find(v):
        while root.setdefault(v, v) != v:
            v = root[v]
        return v

    for d in lets:
        vs = [d.slots[i].var for i in d.reads]
        for v in vs[1:]:
            root[find(v)] = find(vs[0])
    groups: dict[str, list] = {}
    for d in lets:
        groups.setdefault(find(d.slots[d.reads[0]].var), []).append(d)
    return list(groups.values())


class NodeDraws(NamedTuple):
    """Draws of every quantity, and how many nodes per quantity had a
    covariance that is not positive semi-definite (an unconverged GBP's
    marginals can be: their draws use the nearest one, and the fit says so)."""

    draws: dict[str, np.ndarray]
    indefinite: dict[str, int]


def node_draws(marg: dict[str, GaussianMarginal], n: int, seed: int) -> NodeDraws:
    """[1, n, *shape] per quantity, each node from its own Gaussian."""
    rng = np.random.default_rng(seed)
    total = sum(g.mean.size for g in marg.values())
    n = int(max(4, min(n, 2e7 // max(total, 1))))
    out: dict[str, np.ndarray] = {}
    indefinite: dict[str, int] = {}
    for name, g in marg.items():
        d = int(np.prod(g.value_shape, dtype=np.int64)) if g.value_shape else 1
        if g.mean.size == 0 or d == 0:  # an empty quantity (a let or var of size 0): no values to draw
            out[name] = np.zeros((1, n) + g.mean.shape)
            continue
        nodes = g.mean.size // d
        if g.group is not None:
            d = GROUPS[g.group].tangent
        e, bad = _correlated_normals(rng, g.cov.reshape(nodes, d, d), n)
        if bad:
            indefinite[name] = bad
        if g.group is not None:
            x = tangent_draws(g.group, g.mean.reshape((nodes,) + GROUPS[g.group].storage), e)
        else:
            x = e
            x += g.mean.reshape(nodes, d)
        out[name] = x.reshape((1, n) + g.mean.shape)
    return NodeDraws(out, indefinite)


def _correlated_normals(rng: np.random.Generator, cov: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """[n, nodes, d] draws, node k's from N(0, cov[k]): a factor of cov
    applied one column at a time, in place (a batched matmul of 2^16 tiny
    [d, d] @ [d, 1] products, numpy's gufunc loop, took seconds on a 256^2
    image; d is a node's dimension, 1 for a pixel, at most a pose's 6), and
    the number of nodes whose cov was not positive semi-definite: those are
    drawn from the nearest one (negative eigenvalues set to 0) instead of a
    LinAlgError reaching the user."""
    nodes, d = cov.shape[0], cov.shape[-1]
    z = rng.standard_normal((n, nodes, d))
    if d == 1:
        var = cov[:, 0, 0]
        bad = int(np.count_nonzero(~(var >= 0)))
        z *= np.sqrt(np.where(var >= 0, var, 0.0) + 1e-12)[None, :, None]
        return z, bad
    bad = 0
    try:
        factor = np.linalg.cholesky(cov + 1e-12 * np.eye(d))
    except np.linalg.LinAlgError:
        finite = np.where(np.isfinite(cov), cov, 0.0)
        w, v = np.linalg.eigh(0.5 * (finite + np.swapaxes(finite, -1, -2)))
        bad = int(np.count_nonzero((w < -1e-12 * np.maximum(1.0, np.abs(w).max(axis=-1, keepdims=True))).any(axis=-1)
                                   | ~np.isfinite(cov).all(axis=(-1, -2))))
        factor = v * np.sqrt(np.maximum(w, 0.0) + 1e-12)[:, None, :]
    e = z[:, :, :1] * factor[None, :, :, 0]
    for j in range(1, d):  # d <= 6 columns, vectorized over draws and nodes
        e += z[:, :, j : j + 1] * factor[None, :, :, j]
    return e, bad


def default_start(bm: BoundModel, seed: int, skip: set[str]) -> dict[str, np.ndarray]:
    """Where a Gaussian backend starts without ``init``: a seeded draw from a
    var's prior when it is a normal with known arguments (so the hidden units
    of a network do not start at the symmetric saddle), 0 otherwise. A linear
    model's answer does not depend on it; a pose graph needs ``init``, as in
    GTSAM."""
    rng = np.random.default_rng(seed)
    data = zeros = None  # made where a var has such a prior (each eager jnp.asarray is a program: issue 18)
    out = {}
    for v in bm.variables.values():
        fam = bm.families.get(v.prior) if v.prior else None
        if v.name in skip or fam is None or fam.ir.dist.name != "normal" or fam.ir.arg_uses_vars("mu") or \
                fam.ir.arg_uses_vars("sd"):
            continue
        if data is None:
            data = {k: jnp.asarray(a) for k, a in bm.data.items()}
            zeros = {u.name: jnp.zeros(u.shape) for u in bm.variables.values()}
        res = fam.evaluate(data, {k: jnp.asarray(a) for k, a in fam.idx.items()},
                           tuple(bm.gather(s, zeros) for s in fam.slots))
        mu = np.broadcast_to(np.asarray(res["args"]["mu"]).reshape(fam.n_members, -1), (fam.n_members, v.node_dim))
        sd = np.broadcast_to(np.asarray(res["args"]["sd"]).reshape(fam.n_members, -1), (fam.n_members, v.node_dim))
        if fam.n_members != v.n_nodes:
            continue
        out[v.name] = (mu + sd * rng.standard_normal(mu.shape)).reshape(v.shape)
    return out
