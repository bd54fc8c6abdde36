"""VI's optimization: Adam in jitted chunks, each data set of a batch on its
own schedule decided on the host between chunks (the learning rate's warm-up
and its fall on a plateau, convergence, the back-off on a non-finite loss).

Why on the host: the decisions are a few comparisons per chunk of 200 steps,
and a chunk is one stored program (`vi.program`) whatever the schedule, so
``--steps``, ``--lr`` and ``--elbo-tol`` make no new program.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fglang.errors import Diagnostic, FgError
from fglang.runtime.device import fetch
from fglang.runtime.progress import progress_bar
from fglang.runtime.vi.options import ViOptions

DEFAULT_LR = 0.02
CHUNK = 200  # steps per jitted chunk, and the window of the smoothed ELBO
WARMUP = 100  # steps of linear learning-rate warm-up
PATIENCE = 2  # chunks without improvement make a plateau
DECAY = 0.3  # the learning rate's fall on a plateau
REDUCTIONS = 3  # falls before a plateau means convergence


@dataclass
class Runs:
    """Where each data set's optimization ended."""

    params: Any  # the batch's guide parameters, stacked
    losses: list[np.ndarray]
    stop: list[str]
    lr: list[float]


def optimize(o: ViOptions, chunk, params, states, keys, W, D, S0, fdt, progress: bool, n_real: int) -> Runs:
    """Adam in jitted chunks over the batch, each data set on its own schedule:
    its learning rate falls on its own plateaus and it stops when its own ELBO
    has converged (the chunk still runs over the whole batch; a finished data
    set's results are discarded, so its parameters stay where they stopped)."""
    n = int(S0.shape[0])
    lr0 = o.lr if o.lr is not None else DEFAULT_LR
    done = np.zeros(n, np.int64)
    lr = np.full(n, lr0)
    reductions, bad, failures = np.zeros(n, int), np.zeros(n, int), np.zeros(n, int)
    best = np.full(n, np.inf)
    stop = ["max_steps"] * n
    active = np.ones(n, bool)
    active[n_real:] = False  # padding
    history: list[list[np.ndarray]] = [[] for _ in range(n)]
    bar = progress_bar(progress, "vi", o.steps, "step", {"loss": (".4g", float("nan"))})
    p_, s_, k_ = params, states, keys
    try:
        while active.any():
            lengths = np.minimum(CHUNK, o.steps - done)
            for length in sorted(set(lengths[active].tolist())):
                group = active & (lengths == length)
                p2, s2, k2, losses = chunk(p_, s_, k_, np.asarray(done, fdt), np.asarray(lr, fdt), W, D, S0,
                                           int(length))
                losses = fetch(losses)
                accept = np.zeros(n, bool)
                for b in np.flatnonzero(group):
                    finite = np.isfinite(losses[b])
                    if finite.mean() < 0.5:  # mostly non-finite: back off and redo the chunk
                        failures[b] += 1
                        lr[b] *= DECAY
                        if failures[b] > 6:
                            bad_step = int(done[b]) + int(np.argmax(~finite))
                            which = f" of data set {b}" if n_real > 1 else ""
                            raise FgError(
                                [Diagnostic(f"VI diverged: the ELBO{which} became non-finite at step {bad_step}",
                                            None, "lower lr (e.g. --lr 0.001), give an init, or check the model's "
                                            "scales")]
                            )
                        continue
                    accept[b] = True
                    done[b] += length
                    history[b].append(losses[b])
                    m = float(np.mean(losses[b][finite]))
                    se = float(np.std(losses[b][finite]) / np.sqrt(finite.sum()))
                    if m < best[b] - max(se, o.elbo_tol * max(1.0, abs(m))):
                        best[b], bad[b] = m, 0
                    else:
                        bad[b] += 1
                    if bad[b] >= PATIENCE:
                        if reductions[b] >= REDUCTIONS:
                            stop[b], active[b] = "converged", False
                        else:
                            lr[b] *= DECAY
                            reductions[b] += 1
                            bad[b], best[b] = 0, m
                    if done[b] >= o.steps:
                        active[b] = False
                if accept.all():  # the common case: no array work (each jnp.where is a program of its own)
                    p_, s_, k_ = p2, s2, k2
                elif accept.any():
                    mask = jnp.asarray(accept)

                    def keep(old, new, mask=mask):
                        return jnp.where(mask.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)

                    p_, s_, k_ = (jax.tree.map(keep, a, b) for a, b in ((p_, p2), (s_, s2), (k_, k2)))
                if bar and accept.any():
                    bar.update(int(done[:n_real].max()), float(np.mean([h[-1].mean() for h in history[:n_real]
                                                                         if h])))
    finally:
        if bar:
            bar.close()
    return Runs(p_, [np.concatenate(h) if h else np.zeros(0) for h in history], stop, lr.tolist())
