"""The least-squares path over several devices (``devices=N``): every
residual block's members split into equal blocks, one per device of the 1-D
mesh (`device.current_mesh`), the sparse factorization on the host.

Why members: a block's members are independent (each its own residual and
``[R, K]`` Jacobian, `assemble`), so a device that holds a slice of them
computes that slice's residuals, Jacobians and their ``J^T W r`` and ``J^T
W J`` contributions alone, scattered into its own copy of the gradient and
of the Hessian's data; one all-reduce (``psum``) of ``n + nnz`` numbers an
iteration sums the copies (M3500: 10,500 + 70,000 float64, 630 KiB). The
estimate ``x`` is replicated: a member's unknowns may be anywhere.

Why padding: a block of ``M`` members becomes ``ceil(M / N) * N`` (shard_map
needs equal blocks). A padded member repeats member 0 (its inputs and its
unknowns' columns), so it evaluates to the finite numbers member 0 does;
its scatter targets are out of range (``mode="drop"``) and its cost weight
is 0, so it adds nothing.

Why the factorization stays on the host: qdldl (`solve`) is a CPU library
with its symbolic analysis kept per pattern; the devices hand back the
Hessian's data on the pattern, the host factors it and takes the step. So
several devices speed up the linearization (the Jacobians), not the solve.

Several processes (``--coordinator``): the mesh is the global one, the
arrays are placed on it from every process's own (identical) copy of the
data, and every process runs the host loop and qdldl itself. That stays in
step because the all-reduced cost, gradient and Hessian are the same numbers
on every process, and qdldl and LM's decisions are deterministic functions
of them: every process takes the same steps and calls the same compiled
functions in the same order, as the collectives need.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def padded(m: int, n_dev: int) -> int:
    """Members per block after padding to a whole number per device (at least one each)."""
    return max(-(-m // n_dev), 1) * n_dev


def pad_rows(a: np.ndarray, rows: int, fill: int | None = None) -> np.ndarray:
    """``a`` [M, ...] to ``rows`` rows: the new rows repeat row 0, or hold ``fill``."""
    a = np.asarray(a)
    extra = rows - a.shape[0]
    if extra <= 0:
        return a
    tail = np.broadcast_to(a[:1], (extra,) + a.shape[1:]) if fill is None else np.full((extra,) + a.shape[1:], fill,
                                                                                           a.dtype)
    return np.concatenate([a, tail.astype(a.dtype)], axis=0)


def specs(mesh: Any) -> tuple[Any, Any]:
    """(replicated, split along the members) shardings of ``mesh``."""
    from jax.sharding import NamedSharding, PartitionSpec

    return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))


def over_members(mesh: Any, fn: Any, n_split: int, n_rep: int) -> Any:
    """``fn(*replicated, *split) -> (cost, g, h)`` run per device on its slice
    of the members, the partial results summed over the mesh (one ``psum``)."""
    from jax.sharding import PartitionSpec

    axis = mesh.axis_names[0]

    def local(*args):
        return jax.tree.map(lambda t: jax.lax.psum(t, axis), fn(*args))

    return jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec(),) * n_rep + (PartitionSpec(axis),) * n_split,
                         out_specs=PartitionSpec())
