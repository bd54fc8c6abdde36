"""Which of a family's outputs are the same for every member.

``jax.vmap`` broadcasts an output that does not depend on the member axis
(``s`` in ``lik[n in 0:N]: y[n] ~ normal(X[n] @ w, s)``) to ``[M]``; under
a vmap over chains that is a ``[chains, M]`` array the density divides by,
which XLA cannot turn back into one reciprocal per chain (a division per
row where hand-written NumPyro has a multiplication, and one more pass over
the rows: 1.25x its gradient at N = 1e4). The sampling backends ask for such
outputs with a member axis of 1 instead, which broadcasts where it is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax.extend import core as jex_core


def member_dependent(fn: Callable, batched: tuple, unbatched: tuple) -> tuple[list[bool], Any]:
    """For each leaf of ``fn(*batched, *unbatched)``'s output, whether it
    depends on a leaf of ``batched`` (one member's values: arrays or shape
    structs), and the output's tree structure (from the same trace).
    Conservative: an equation whose inputs depend makes every output depend,
    sub-programs (a scan, a nested jit) included."""
    n_batched = len(jax.tree.leaves(batched))
    closed, shape = jax.make_jaxpr(fn, return_shape=True)(*batched, *unbatched)
    jaxpr = closed.jaxpr
    return _depends(jaxpr, [k < n_batched for k in range(len(jaxpr.invars))]), jax.tree.structure(shape)


def _depends(jaxpr, inputs: list[bool]) -> list[bool]:
    """Dependence of ``jaxpr``'s outputs on the inputs flagged True: through a
    nested jit position by position (``jnp.where`` and friends are jits),
    anything else (a scan, a cond) conservatively all-or-nothing."""
    dep = {v for v, d in zip(jaxpr.invars, inputs, strict=True) if d}

    def hit(v) -> bool:
        return not isinstance(v, jex_core.Literal) and v in dep

    for eqn in jaxpr.eqns:
        flags = [hit(v) for v in eqn.invars]
        if not any(flags):
            continue
        inner = eqn.params.get("jaxpr") if eqn.primitive.name in ("pjit", "jit", "closed_call") else None
        if inner is not None and len(getattr(inner, "jaxpr", inner).invars) == len(flags):
            out = _depends(getattr(inner, "jaxpr", inner), flags)
            dep.update(v for v, d in zip(eqn.outvars, out, strict=True) if d)
        else:
            dep.update(eqn.outvars)
    return [hit(v) for v in jaxpr.outvars]
