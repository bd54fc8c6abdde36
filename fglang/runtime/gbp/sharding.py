"""GBP's iteration chunk over several devices: where each array of the
engine goes (`device_placement`) and the chunk run with its inputs constrained to
that placement, which XLA's partitioner propagates (`run_chunk_sharded`)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from .iteration import run_chunk
from .plan import Plan
from .state import ChunkResult, EngineData, EngineState


def device_placement(plan: Plan, data: EngineData, state: EngineState, mesh: Any, *, uneven: bool) -> tuple[Any, Any]:
    """Shardings for ``(data, state)`` over a 1-D ``mesh``: every array of a
    family along its member axis (its per-member data and its messages; a
    grid slot's message block ``[H, W-1, ...]`` along its rows, which are
    blocks of consecutive members) is split into blocks, one per device;
    everything else (data every member shares, var priors, beliefs,
    linearization points, settings, counters) is replicated.

    ``uneven=False`` gives what ``jax.device_put`` can place (an axis the
    devices do not divide is replicated there); ``uneven=True`` what the
    chunk constrains its inputs to inside ``jit`` (`run_chunk_sharded`),
    where XLA pads the last block, so a family of 125 members is split too.

    Why beliefs are replicated: a belief is a sum of messages over all
    families, and every family reads the beliefs of its members' nodes, which
    may be anywhere; replicated beliefs let XLA choose the collectives (on
    the denoise grid it all-gathers the split message blocks: about 770 KiB
    an iteration at 128^2 in float32, `bench/scale_out.py`). A graph partition
    with halo exchange, for beliefs that do not fit one device or to cut
    that traffic to the partition's boundary, is not built."""
    from jax.sharding import NamedSharding, PartitionSpec

    n = mesh.size
    rep = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))

    def along(rows: int) -> Any:
        return split if rows >= n and (uneven or rows % n == 0) else rep

    def members(fp: Any, tree: Any) -> Any:
        return jax.tree.map(lambda x: along(fp.n_members) if np.shape(x)[:1] == (fp.n_members,) else rep, tree)

    def messages(tree: Any) -> Any:
        # [M, ...] for a gathered slot, [H, W-1, ...] for a grid slot
        return jax.tree.map(lambda x: along(np.shape(x)[0]) if np.ndim(x) else rep, tree)

    def replicated(tree: Any) -> Any:
        return jax.tree.map(lambda _: rep, tree)

    d = data._replace(
        families=tuple(
            members(fp, fd)._replace(shared=replicated(fd.shared), floor=replicated(fd.floor))
            for fp, fd in zip(plan.families, data.families, strict=True)
        ),
        variables=replicated(data.variables),
        settings=replicated(data.settings),
    )
    s = replicated(state)._replace(families=tuple(messages(fs) for fs in state.families))
    return d, s


@functools.partial(jax.jit, static_argnums=(0, 1))
def run_chunk_sharded(plan: Plan, constraint: Any, data: EngineData, state: EngineState) -> ChunkResult:
    """`iteration.run_chunk` over several devices: the same program, its
    inputs constrained to ``constraint`` (`device_placement` with ``uneven``), which
    XLA's partitioner propagates through the chunk."""
    leaves, treedef = constraint
    data, state = jax.lax.with_sharding_constraint((data, state), jax.tree.unflatten(treedef, leaves))
    return run_chunk(plan, data, state)


def run_chunk_sharded_of(constraint: Any, plan: Plan, data: EngineData, state: EngineState) -> ChunkResult:
    return run_chunk_sharded(plan, constraint, data, state)
