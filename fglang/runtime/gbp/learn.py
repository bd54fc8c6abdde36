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

from typing import Any

import numpy as np

from fglang.compiler.bind import BoundModel
from fglang.errors import Diagnostic, FgError
from fglang.runtime.binding import bind_model
from fglang.runtime.carry import (
    CarriedMarginal,
    batch_size_name,
    carried_marginals,
    per_example_data,
    per_example_vars,
)
from fglang.runtime.gbp.fit import fit_gbp
from fglang.runtime.gbp.options import GbpOptions
from fglang.runtime.posterior import Posterior


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
    bm: BoundModel,
    o: GbpOptions,
    *,
    seed: int = 0,
    init: dict[str, np.ndarray] | None = None,
    carried: dict[str, CarriedMarginal] | None = None,
) -> Posterior:
    """Filter over batches of ``bm``'s examples: each batch is bound from the
    validated data's rows (no re-reading, no re-checking) and fitted with the
    previous batch's persistent marginals as its priors."""
    ir = bm.ir
    n_name = batch_size_name(ir)
    if n_name is None:
        raise FgError(
            [Diagnostic("--batch-size needs a size marked 'batch' in the model", None, "e.g. data N: int batch")]
        )
    rows, per_batch = per_example_data(ir), per_example_vars(ir)
    n = int(bm.sizes[n_name]) if n_name in bm.sizes else int(bm.data[n_name])
    persistent = [v for v in ir.variables if v not in per_batch]
    if not persistent:
        raise FgError([Diagnostic("every var is per-batch: nothing would be learned across batches", None)])
    batch_size, epochs = int(o.batch_size), o.epochs
    one = o.replace(batch_size=None, epochs=1, shuffle=False)
    raw: dict[str, Any] = dict(bm.observed)
    arrays = {k: np.asarray(raw[k]) for k in rows if k in raw}
    rng = np.random.default_rng(seed)
    init_persistent = {k: v for k, v in (init or {}).items() if k in persistent}
    history = []
    step = 0
    post: Posterior | None = None
    carried_post: Posterior | None = None
    for epoch in range(epochs):
        order = rng.permutation(n) if o.shuffle else np.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            batch = dict(raw)
            batch[n_name] = int(len(idx))
            for k, a in arrays.items():
                batch[k] = a[idx]
            bmb = bind_model(ir, batch, bm.data_file)
            priors = carried if carried_post is None else carried_marginals(bmb, carried_post)
            first = carried_post is None and not carried
            post = fit_gbp(bmb, one, seed=seed + step, init=init_persistent if first else None, carried=priors)
            history.append(
                {"epoch": epoch, "batch": start // batch_size, "iterations": post.attrs.get("iterations"),
                 "converged": post.attrs.get("converged")}
            )
            carried_post = restrict(post, persistent)
            step += 1
    assert carried_post is not None and post is not None
    carried_post.attrs.update(
        {"batch_size": batch_size, "epochs": epochs, "batches": history, "per_batch_vars": per_batch}
    )
    carried_post.attrs["options"] = o.as_dict()
    return carried_post
