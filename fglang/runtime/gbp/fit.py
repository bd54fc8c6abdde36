"""The ``gbp`` backend: build the Gaussian graph, run the engine, report a Posterior.

Means and covariances are the engine's per-node Gaussian marginals (exact
on trees for linear Gaussian models); ``let`` quantities are reported by
linearization at the means; draws are sampled from the marginals so that
ArviZ tools and the summary table work as for the other backends.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fglang.compiler.bind import BoundModel
from fglang.errors import Diagnostic, FgError
from fglang.runtime.gbp.engine import run_gbp
from fglang.runtime.gbp.lowering import to_graph
from fglang.runtime.posterior import GaussianMarginal, Posterior, load_posterior

GBP_DEFAULTS: dict[str, Any] = {
    "iters": 1000,
    "tol": None,
    "damping": 0.0,
    "schedule": "flooding",
    "dropout": 0.0,
    "relinearize": 0.0,
    "dtype": "float32",
    "draws": 200,
    "temper": 1.0,
    "batch_size": None,
    "epochs": 1,
}


def _options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(GBP_DEFAULTS))
    if unknown:
        raise FgError(
            [Diagnostic(f"unknown option(s) for backend 'gbp': {', '.join(unknown)}", None,
                        f"gbp takes {', '.join(GBP_DEFAULTS)}")]
        )
    o = {**GBP_DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    if not 0.0 <= float(o["damping"]) < 1.0:
        raise FgError([Diagnostic(f"damping must be in [0, 1), got {o['damping']}", None)])
    if o["schedule"] not in ("flooding", "sequential"):
        raise FgError([Diagnostic(f"schedule must be 'flooding' or 'sequential', got {o['schedule']!r}", None)])
    if o["dtype"] not in ("float32", "float64"):
        raise FgError([Diagnostic(f"dtype must be 'float32' or 'float64', got {o['dtype']!r}", None)])
    if int(o["iters"]) < 1:
        raise FgError([Diagnostic("iters must be at least 1", None)])
    if not 0.0 < float(o["temper"]) <= 1.0:
        raise FgError([Diagnostic(f"temper must be in (0, 1], got {o['temper']}", None)])
    return o


def carried_gaussian(bm: BoundModel, prior: Posterior | str | Path | None, temper: float) -> dict[str, tuple]:
    """A stored posterior's per-node marginals as information-form priors.

    ``temper`` < 1 scales the carried precision down (a flatter prior), which
    the GBP Learning paper found some continual-learning runs need."""
    if prior is None:
        return {}
    post = prior if isinstance(prior, Posterior) else load_posterior(prior)
    out = {}
    per_batch = set()
    if any(d.batch for d in bm.ir.data.values()):
        from fglang.runtime.gbp.learn import batch_axes

        per_batch = set(batch_axes(bm.ir)[2])  # activations are re-inferred, never carried
    for name, v in bm.variables.items():
        if name in per_batch or (name not in post.draws and name not in post.gaussian):
            continue
        mean = np.asarray(post.mean(name), dtype=np.float64)
        if mean.shape != v.shape:
            # a per-example var (activations of a different number of examples):
            # re-inferred from the new data, not carried
            warnings.warn(
                f"not carrying '{name}' from the prior posterior: its shape {list(mean.shape)} differs from "
                f"{list(v.shape)} here",
                stacklevel=3,
            )
            continue
        cov = np.asarray(post.cov(name), dtype=np.float64).reshape(v.n_nodes, v.node_dim, v.node_dim)
        cov = cov + 1e-12 * np.eye(v.node_dim)
        lam = np.linalg.inv(cov) * temper
        eta = np.einsum("nij,nj->ni", lam, mean.reshape(v.n_nodes, v.node_dim))
        out[name] = (eta, lam)
    return out


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
    *,
    seed: int = 0,
    init: dict[str, np.ndarray] | None = None,
    prior: Posterior | str | Path | None = None,
    options: dict[str, Any] | None = None,
    progress: bool = False,
    skip_families: set[str] = frozenset(),
) -> Posterior:
    o = _options(dict(options or {}))
    carried = carried_gaussian(bm, prior, float(o["temper"]))
    graph = to_graph(bm, set(carried), set(skip_families))
    dtype = jnp.float64 if o["dtype"] == "float64" else jnp.float32
    start = {**default_init(bm, seed, set(carried)), **(init or {})}
    init_nodes = {k: np.asarray(v).reshape(bm.variables[k].n_nodes, bm.variables[k].node_dim) for k, v in
                  start.items()}
    bar = _progress(progress, int(o["iters"]))
    try:
        result = run_gbp(
            graph,
            init_nodes or None,
            prior=carried or None,
            iters=int(o["iters"]),
            tol=o["tol"],
            damping=float(o["damping"]),
            schedule=o["schedule"],
            dropout=float(o["dropout"]),
            relinearize_threshold=float(o["relinearize"]),
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
    draws = _draws(marg, int(o["draws"]), seed)
    history = np.asarray(result.history, dtype=np.float64)
    return Posterior(
        bm.name,
        "gbp",
        draws,
        gaussian=marg,
        observed=dict(bm.data),
        attrs={
            "options": {k: v for k, v in o.items()},
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
