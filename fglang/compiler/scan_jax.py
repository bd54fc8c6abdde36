"""A recurrence ``scan[t in lo:hi](init, prev -> step)`` in JAX: one ``lax.scan``.

Why ``lax.scan`` and not a Python loop: the step is traced once whatever
the length, and reverse-mode differentiation through it costs one more pass
of the same length, so NUTS and VI run a recurrence of T steps in O(T) time
and compile it in O(1) (an unrolled loop would be a T-deep graph).
The checker's rules are in ``compiler/scan.py``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fglang.compiler import ast as A


def evaluate_scan(ev: Any, e: A.Scan):
    """The stacked states of ``e`` for one member; ``ev`` is the member's
    ``lower_jax.Evaluator``. The index is ``lo + j`` at step ``j`` and a slot
    read through the index is one block per step (``pos``), as in a reduction."""
    r = e.index
    lo, hi = ev.static_int(r.lo), ev.static_int(r.hi)
    n = max(hi - lo, 0)
    init = jnp.asarray(ev.ev(e.init), dtype=jnp.result_type(float))

    def step(carry, j):
        idx = dict(ev.idx)
        idx[r.name] = lo + j
        idx[e.state] = carry
        pos = dict(ev.pos)
        pos[r.name] = j
        new = jnp.asarray(ev.child(idx, pos).ev(e.body), dtype=carry.dtype)
        new = jnp.broadcast_to(new, carry.shape)
        return new, new

    if n == 0:
        return init[None]
    _, states = jax.lax.scan(step, init, jnp.arange(n))
    return jnp.concatenate([init[None], states])
