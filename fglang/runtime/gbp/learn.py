"""Learning by filtering (GBP Learning, Nabarro et al. 2024, Sec. 3.2).

A model marks one int size ``batch`` (``data N: int batch``). Data arrays
whose first axis is that size are split into batches; vars whose first node
axis is that size are per-batch nodes (activations); every other var is
persistent (weights). GBP runs on one batch at a time and the per-node
Gaussian marginals of the persistent vars become the next batch's priors.

Carrying per-node marginals drops the cross-covariances between nodes (as
the paper's method does): for a single persistent node the filter is exact
(it equals one fit on all the data); with several nodes it is the usual
assumed-density-filtering approximation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fglang.compiler import ast as A
from fglang.compiler.bind import BoundModel
from fglang.compiler.ir import ModelIR
from fglang.errors import Diagnostic, FgError
from fglang.runtime.posterior import Posterior


def batch_size_name(ir: ModelIR) -> str:
    names = [d.name for d in ir.data.values() if d.batch]
    if not names:
        raise FgError(
            [Diagnostic("--batch-size needs a size marked 'batch' in the model", None, "e.g. data N: int batch")]
        )
    return names[0]


def _leading(exprs, name: str) -> bool:
    return bool(exprs) and isinstance(exprs[0], A.Name) and exprs[0].id == name


def batch_axes(ir: ModelIR) -> tuple[str, list[str], list[str]]:
    """(batch size name, data split along it, per-batch vars)."""
    n = batch_size_name(ir)
    rows = [d.name for d in ir.data.values() if _leading(d.shape_exprs, n)]
    per_batch = [v.name for v in ir.variables.values() if _leading(v.node_dims, n)]
    return n, rows, per_batch


def restrict(post: Posterior, names: list[str]) -> Posterior:
    """The posterior of the persistent vars only (what is carried forward)."""
    keep = set(names)
    return Posterior(
        post.model,
        post.backend,
        {k: v for k, v in post.draws.items() if k in keep},
        gaussian={k: g for k, g in post.gaussian.items() if k in keep},
        attrs=dict(post.attrs),
        node_shapes={k: v for k, v in post.node_shapes.items() if k in keep},
    )


def fit_batched(
    ir: ModelIR,
    raw: dict[str, Any],
    bind: Callable[[dict[str, Any]], BoundModel],
    fit_one: Callable[..., Posterior],
    *,
    batch_size: int,
    epochs: int = 1,
    seed: int = 0,
    init: dict[str, np.ndarray] | None = None,
    prior: Posterior | None = None,
    shuffle: bool = False,
    callback: Callable[[int, int, Posterior], None] | None = None,
) -> Posterior:
    n_name, rows, per_batch = batch_axes(ir)
    if n_name not in raw:
        raise FgError([Diagnostic(f"the data have no batch size '{n_name}'", ir.data[n_name].span)], ir.sources)
    n = int(raw[n_name])
    if batch_size < 1 or epochs < 1:
        raise FgError([Diagnostic("batch_size and epochs must be at least 1", None)])
    persistent = [v for v in ir.variables if v not in per_batch]
    if not persistent:
        raise FgError([Diagnostic("every var is per-batch: nothing would be learned across batches", None)])
    arrays = {k: np.asarray(raw[k]) for k in rows}
    rng = np.random.default_rng(seed)
    carried = prior
    init_persistent = {k: v for k, v in (init or {}).items() if k in persistent}
    history = []
    step = 0
    post: Posterior | None = None
    for epoch in range(epochs):
        order = rng.permutation(n) if shuffle else np.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            batch = dict(raw)
            batch[n_name] = int(len(idx))
            for k, a in arrays.items():
                batch[k] = a[idx]
            bm = bind(batch)
            post = fit_one(bm, seed=seed + step, init=init_persistent if carried is None else None, prior=carried)
            history.append(
                {"epoch": epoch, "batch": start // batch_size, "iterations": post.attrs.get("iterations"),
                 "converged": post.attrs.get("converged")}
            )
            carried = restrict(post, persistent)
            if callback is not None:
                callback(epoch, start // batch_size, post)
            step += 1
    assert carried is not None and post is not None
    carried.attrs.update(
        {"batch_size": batch_size, "epochs": epochs, "batches": history, "per_batch_vars": per_batch}
    )
    return carried
