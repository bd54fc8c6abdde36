"""The ``gbp`` backend: build the Gaussian graph, run the engine, report a Posterior.

Means and covariances are the engine's per-node Gaussian marginals (exact
on trees for linear Gaussian models); ``let`` quantities are reported by
linearization at the means; draws are sampled from the marginals so that
ArviZ tools and the summary table work as for the other backends.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fglang.compiler.bind import BoundModel
from fglang.errors import Diagnostic, FgError
from fglang.runtime.carry import CarriedMarginal
from fglang.runtime.gbp.engine import run_gbp
from fglang.runtime.gbp.lowering import to_graph
from fglang.runtime.gbp.options import GbpOptions
from fglang.runtime.posterior import GaussianMarginal, Posterior


def linearized_moments(bm: BoundModel, f, names: list[str], means: dict, covs: dict) -> tuple[np.ndarray, np.ndarray]:
    """Mean f(m) and variance diag(J S J^T) of a function of vars, linearized at
    the means, with the per-node covariances S (GBP tracks no cross-node ones)."""
    args = [jnp.asarray(means[n]) for n in names]
    mean = np.asarray(f(*args))
    var = np.zeros_like(mean)
    jacs = jax.jacfwd(f, argnums=tuple(range(len(names))))(*args) if names else ()
    for n, j in zip(names, jacs):
        v = bm.variables[n]
        j = np.asarray(j).reshape(mean.size, v.n_nodes, v.node_dim)
        c = np.asarray(covs[n]).reshape(v.n_nodes, v.node_dim, v.node_dim)
        var += np.einsum("knd,nde,kne->k", j, c, j)
    return mean, var


def _derived(bm: BoundModel, means: dict[str, np.ndarray], covs: dict[str, np.ndarray]) -> dict[str, GaussianMarginal]:
    """``let`` quantities by linearization: mean f(m), variance diag(J S J^T) with
    the per-node covariances S (cross-node covariances are not tracked by GBP)."""
    data = {k: jnp.asarray(v) for k, v in bm.data.items()}
    out = {}
    for d in bm.derived.values():
        names = sorted({s.var for s in d.slots})

        def f(*vals, d=d, names=names):
            values = dict(zip(names, vals))
            sv = tuple(bm.gather(s, values)[0] for s in d.slots)
            return jnp.ravel(d.evaluate(data, sv))

        mean, var = linearized_moments(bm, f, names, means, covs)
        shape = d.shape
        out[d.ir.name] = GaussianMarginal(mean.reshape(shape), var.reshape(shape + (1, 1)), shape, ())
    return out


def _draws(marg: dict[str, GaussianMarginal], n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    total = sum(g.mean.size for g in marg.values())
    n = int(max(4, min(n, 2e7 // max(total, 1))))
    out = {}
    for name, g in marg.items():
        d = int(np.prod(g.value_shape, dtype=np.int64)) if g.value_shape else 1
        nodes = g.mean.size // d
        cov = g.cov.reshape(nodes, d, d)
        chol = np.linalg.cholesky(cov + 1e-12 * np.eye(d))
        z = rng.standard_normal((n, nodes, d))
        x = g.mean.reshape(nodes, d) + np.einsum("nij,snj->sni", chol, z)
        out[name] = x.reshape((1, n) + g.mean.shape)
    return out


def default_init(bm: BoundModel, seed: int, skip: set[str]) -> dict[str, np.ndarray]:
    """Where GBP starts when no ``init`` is given: a seeded draw from the var's
    prior when that prior is a normal with known arguments (this breaks the
    symmetry of hidden units in a network; for linear models the fixed point
    does not depend on it), and 0 otherwise (give ``init`` for nonlinear
    models such as pose graphs, as GTSAM users do)."""
    rng = np.random.default_rng(seed)
    data = {k: jnp.asarray(v) for k, v in bm.data.items()}
    zeros = {v.name: jnp.zeros(v.shape) for v in bm.variables.values()}
    out = {}
    for v in bm.variables.values():
        fam = bm.families.get(v.prior) if v.prior else None
        if v.name in skip or fam is None or fam.ir.dist.name != "normal" or fam.ir.arg_uses_vars("mu") or \
                fam.ir.arg_uses_vars("sd"):
            continue
        res = fam.evaluate(data, {k: jnp.asarray(a) for k, a in fam.idx.items()},
                           tuple(bm.gather(s, zeros) for s in fam.slots))
        per_member = (fam.n_members,) + v.value_shape
        mu = np.broadcast_to(np.asarray(res["args"]["mu"]).reshape(fam.n_members, -1), (fam.n_members, v.node_dim))
        sd = np.broadcast_to(np.asarray(res["args"]["sd"]).reshape(fam.n_members, -1), (fam.n_members, v.node_dim))
        out[v.name] = (mu + sd * rng.standard_normal(mu.shape)).reshape(per_member)
    return out


def fit_gbp(
    bm: BoundModel,
    o: GbpOptions,
    *,
    seed: int = 0,
    init: dict[str, np.ndarray] | None = None,
    carried: dict[str, CarriedMarginal] | None = None,
    progress: bool = False,
    skip_families: set[str] = frozenset(),
) -> Posterior:
    """One GBP fit; ``carried`` marginals replace the written priors of their vars."""
    carried = carried or {}
    prior = {k: c.information(o.temper) for k, c in carried.items()}
    graph = to_graph(bm, set(carried), set(skip_families))
    dtype = jnp.float64 if o.dtype == "float64" else jnp.float32
    start = {**default_init(bm, seed, set(carried)), **(init or {})}
    init_nodes = {k: np.asarray(v).reshape(bm.variables[k].n_nodes, bm.variables[k].node_dim) for k, v in
                  start.items()}
    bar = _progress(progress, o.iters)
    try:
        result = run_gbp(
            graph,
            init_nodes or None,
            prior=prior or None,
            iters=o.iters,
            tol=o.tol,
            damping=o.damping,
            schedule=o.schedule,
            dropout=o.dropout,
            relinearize_threshold=o.relinearize,
            dtype=dtype,
            seed=seed,
            callback=bar.update if bar else None,
        )
    finally:
        if bar:
            bar.close()
    if result.diverged is not None:
        info = result.diverged
        fam = bm.families.get(info.family) if info.family else None
        raise FgError(
            [
                Diagnostic(
                    f"GBP diverged at iteration {info.iteration}"
                    + (f" in factor '{info.family}'" if info.family else "")
                    + f" ({info.reason.replace('_', ' ')})",
                    fam.ir.span if fam is not None else None,
                    "raise --damping (e.g. 0.5 -> 0.9; Python: damping=0.9), check the factor's scales "
                    "(a sd far from the data's units conditions messages badly), use --dtype float64, or give --init",
                )
            ],
            bm.ir.sources,
        )
    marg: dict[str, GaussianMarginal] = {}
    means, covs = {}, {}
    for name, v in bm.variables.items():
        mean = np.asarray(result.means[name], dtype=np.float64).reshape(v.shape)
        cov = np.asarray(result.covs[name], dtype=np.float64).reshape(v.node_shape + (v.node_dim, v.node_dim))
        marg[name] = GaussianMarginal(mean, cov, v.node_shape, v.value_shape)
        means[name], covs[name] = mean, cov
    marg.update(_derived(bm, means, covs))
    draws = _draws(marg, o.draws, seed)
    history = np.asarray(result.history, dtype=np.float64)
    return Posterior(
        bm.name,
        "gbp",
        draws,
        gaussian=marg,
        observed=dict(bm.data),
        attrs={
            "options": o.as_dict(),
            "seed": seed,
            "iterations": int(result.iterations),
            "converged": bool(result.converged),
            "final_change": float(history[-1]) if history.size else float("nan"),
            "history": history[np.isfinite(history)].tolist()[-500:],
            "wall_time_s": float(result.wall_time_s),
        },
        node_shapes={v.name: v.node_shape for v in bm.variables.values()},
    )


class _Bar:
    def __init__(self, total: int):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.p = Progress(
            TextColumn("gbp"), BarColumn(), TextColumn("iter {task.completed}/{task.total}"),
            TextColumn("belief change {task.fields[change]:.2e}"), TimeElapsedColumn(), transient=True,
        )
        self.task = self.p.add_task("gbp", total=total, change=float("inf"))
        self.p.start()

    def update(self, iteration: int, change: float) -> None:
        self.p.update(self.task, completed=iteration, change=change)

    def close(self) -> None:
        self.p.stop()


def _progress(enabled: bool, total: int) -> _Bar | None:
    return _Bar(total) if enabled else None
