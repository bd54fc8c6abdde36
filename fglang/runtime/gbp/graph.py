"""The GBP engine's input: a Gaussian factor graph as batched families.

This is the seam between the compiler and the GBP engine. The compiler lowers a
model to *variable blocks* (one per `var`: ``n_nodes`` nodes of dimension
``dim``) and *factor families* (one per `factor` statement: ``n_members``
factors that share one residual function, with per-member data). Everything the
engine touches per member is an array with a leading member axis, so a family
is evaluated with one ``vmap`` and never with a Python loop over its members.

Why families and slots rather than one flat factor list: members of one family
have the same arity and slot dimensions, so their messages are dense arrays
``[M, d]`` / ``[M, d, d]`` per slot; slots of different dimensions are kept
apart instead of padded, which wastes nothing for mixed graphs (e.g. a 3-dim
pose and a scalar bias in one factor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fglang.compiler.distributions import SPARSITY
from fglang.compiler.groups import GROUPS

ROBUST_KINDS: tuple[str, ...] = ("huber", "student_t")
"""Robust losses the engine can reweight (IRLS weights, see `robust.py`)."""

SPARSITY_KINDS: dict[str, int] = {name: len(p.scales) for name, p in SPARSITY.items()}
"""Sparsity priors and their number of parameters (see `sparsity.py`), from the compiler's one table."""


def normalize_grid_slice(
    grid_slice: tuple[slice, ...], grid_shape: tuple[int, ...]
) -> tuple[tuple[int, int, int], ...]:
    """Turn a tuple of slices into explicit ``(start, stop, step)`` per grid axis.

    Missing trailing axes mean the whole axis (NumPy semantics). ``stop`` is made
    tight (one past the last selected index) so the engine can compute pad widths
    directly. Only positive steps and non-empty selections are accepted, because
    the engine realises a grid slot as ``lax.slice`` (gather) and ``lax.pad``
    (scatter-add), which need both.
    """
    if len(grid_slice) > len(grid_shape):
        raise ValueError(
            f"grid_slice has {len(grid_slice)} entries but the grid has "
            f"{len(grid_shape)} axes"
        )
    full = tuple(grid_slice) + (slice(None),) * (len(grid_shape) - len(grid_slice))
    out = []
    for s, n in zip(full, grid_shape, strict=True):
        if not isinstance(s, slice):
            raise ValueError(f"grid_slice entries must be slices, got {s!r}")
        start, stop, step = s.indices(n)
        if step <= 0:
            raise ValueError("grid_slice steps must be positive")
        count = len(range(start, stop, step))
        if count == 0:
            raise ValueError("grid_slice selects no nodes")
        out.append((start, start + (count - 1) * step + 1, step))
    return tuple(out)


def grid_slice_shape(norm: tuple[tuple[int, int, int], ...]) -> tuple[int, ...]:
    """Shape of the block a normalized grid slice selects."""
    return tuple(len(range(a, b, c)) for a, b, c in norm)


@dataclass(frozen=True, eq=False)
class VariableBlock:
    """One fglang ``var``: ``n_nodes`` nodes, each a ``dim``-dimensional vector.

    ``grid_shape`` is the node-index shape (``(H, W)`` for ``var x[H, W]``; ``()``
    for a single node); its product must be ``n_nodes``. Node ``k`` is the C-order
    flat index into that shape. The grid shape only matters for slots that give a
    ``grid_slice`` (fast shifted-slice message passing on lattices).

    ``group``: a Lie group of `fglang.compiler.groups` (``"pose3"``, ...) for a
    group-valued var, None for a real one. Then ``dim`` is the group's tangent
    dimension (what the engine's messages are over, `charts.py`) and the
    residuals receive each node's stored value (``storage``, 7 numbers for a
    pose3); ``init`` gives stored values too.
    """

    name: str
    n_nodes: int
    dim: int
    grid_shape: tuple[int, ...] = ()
    group: str | None = None

    @property
    def storage(self) -> tuple[int, ...]:
        """Shape of one node's value as the residuals read it (``(dim,)`` for a real var)."""
        return GROUPS[self.group].storage if self.group is not None else (self.dim,)

    def __post_init__(self) -> None:
        if self.n_nodes < 1 or self.dim < 1:
            raise ValueError(f"var {self.name!r}: n_nodes and dim must be >= 1")
        gs = tuple(int(g) for g in self.grid_shape)
        if gs == ():
            gs = (self.n_nodes,)
        if int(np.prod(gs)) != self.n_nodes:
            raise ValueError(
                f"var {self.name!r}: grid_shape {self.grid_shape} does not hold "
                f"{self.n_nodes} nodes"
            )
        object.__setattr__(self, "grid_shape", gs)
        if self.group is not None and (self.group not in GROUPS or GROUPS[self.group].tangent != self.dim):
            raise ValueError(f"var {self.name!r}: group {self.group!r} needs dim = its tangent dimension")


@dataclass(frozen=True, eq=False)
class Slot:
    """Which node each member of a family touches in one argument position.

    ``node_ids[m]`` is the flat node index (into ``var``'s block) that member ``m``
    passes as this argument. If ``grid_slice`` is given, ``node_ids`` must equal
    ``arange(n).reshape(grid_shape)[grid_slice].ravel()`` (it is computed when
    ``node_ids`` is None): the engine then uses static slices and pads instead of
    a gather and a segment-sum, which is several times faster on lattices.
    """

    var: str
    node_ids: np.ndarray | None = None
    grid_slice: tuple[slice, ...] | None = None

    def resolve(self, block: VariableBlock) -> Slot:
        """Return a copy with ``node_ids`` filled in and checked against ``block``."""
        ids = self.node_ids
        if self.grid_slice is not None:
            norm = normalize_grid_slice(self.grid_slice, block.grid_shape)
            sl = tuple(slice(a, b, c) for a, b, c in norm)
            from_grid = np.arange(block.n_nodes).reshape(block.grid_shape)[sl].ravel()
            if ids is None:
                ids = from_grid
            elif not np.array_equal(np.asarray(ids).ravel(), from_grid):
                raise ValueError(
                    f"slot on {self.var!r}: node_ids disagree with grid_slice "
                    f"{self.grid_slice} (member order must be the C-order ravel)"
                )
        if ids is None:
            raise ValueError(f"slot on {self.var!r}: give node_ids or grid_slice")
        ids = np.asarray(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"slot on {self.var!r}: node_ids must be a 1-D int array")
        if ids.size and (ids.min() < 0 or ids.max() >= block.n_nodes):
            raise ValueError(
                f"slot on {self.var!r}: node id out of range [0, {block.n_nodes})"
            )
        return Slot(self.var, ids.astype(np.int32), self.grid_slice)


@dataclass(frozen=True, eq=False)
class GaussianFamily:
    """``n_members`` factors sharing one residual function.

    The energy of member ``m`` is ``0.5 * r_m(x)^T Lambda_m r_m(x)`` with
    ``r_m(x) = residual(inputs[m], x[slot 0 node], x[slot 1 node], ...)``, a
    vector of length R (a scalar return counts as R = 1).

    precision
        ``[M, R]`` (diagonal noise precision, e.g. ``1/sd**2``), ``[M, R, R]``
        (full information matrix), or a scalar (same for every element). Unused
        (may be None) for sparsity families, whose precision the engine
        re-estimates.
    robust
        ``None``, ``("huber", k)`` with ``k`` in units of the noise sd (GTSAM's
        Huber k), or ``("student_t", df)``. ``k``/``df`` may be arrays of shape
        ``[M]``.
    sparsity
        For unary prior families (one slot, residual ``x - 0``): ``("laplace",
        b)``, ``("horseshoe", scale)``, ``("reg_horseshoe", scale, slab_scale,
        slab_df)``, ``("ard", a, b)`` or ``("spike_slab", p, slab_sd,
        spike_sd)``; parameters broadcast against ``[M, R]``.
    """

    name: str
    n_members: int
    slots: tuple[Slot, ...]
    residual: Callable[..., Any]
    inputs: Any = None
    precision: Any = None
    robust: tuple[Any, ...] | None = None
    sparsity: tuple[Any, ...] | None = None
    # Unbatched data every member reads (a whole data array, say). When given,
    # the residual receives ``(inputs_m, shared)`` as its first argument. It
    # travels as a jit argument, not a constant, so a new batch of data with
    # the same shapes reuses the compiled iteration.
    shared: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "slots", tuple(self.slots))
        if self.n_members < 1:
            raise ValueError(f"family {self.name!r}: n_members must be >= 1")
        if not self.slots:
            raise ValueError(f"family {self.name!r}: a factor needs at least one slot")
        if self.robust is not None:
            if self.robust[0] not in ROBUST_KINDS or len(self.robust) != 2:
                raise ValueError(
                    f"family {self.name!r}: robust must be ('huber', k) or "
                    f"('student_t', df), got {self.robust!r}"
                )
        if self.sparsity is not None:
            kind = self.sparsity[0]
            if kind not in SPARSITY_KINDS:
                raise ValueError(
                    f"family {self.name!r}: unknown sparsity prior {kind!r}; "
                    f"expected one of {sorted(SPARSITY_KINDS)}"
                )
            if len(self.sparsity) != 1 + SPARSITY_KINDS[kind]:
                raise ValueError(
                    f"family {self.name!r}: {kind} takes "
                    f"{SPARSITY_KINDS[kind]} parameters, got {self.sparsity[1:]!r}"
                )
            if len(self.slots) != 1:
                raise ValueError(
                    f"family {self.name!r}: sparsity priors must be unary factors"
                )
            if self.robust is not None:
                raise ValueError(
                    f"family {self.name!r}: a factor cannot be both robust and sparse"
                )
        elif self.precision is None:
            raise ValueError(f"family {self.name!r}: precision is required")


@dataclass(frozen=True, eq=False)
class GaussianGraph:
    """A whole Gaussian factor graph: variable blocks and factor families."""

    variables: tuple[VariableBlock, ...]
    families: tuple[GaussianFamily, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "variables", tuple(self.variables))
        object.__setattr__(self, "families", tuple(self.families))
        names = [v.name for v in self.variables]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate variable names in {names}")
        fnames = [f.name for f in self.families]
        if len(set(fnames)) != len(fnames):
            raise ValueError(f"duplicate family names in {fnames}")

    def var(self, name: str) -> VariableBlock:
        """The block called ``name`` (KeyError naming the known vars otherwise)."""
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(f"no variable {name!r}; known: {[v.name for v in self.variables]}")

    def var_index(self, name: str) -> int:
        """Position of the block called ``name`` in ``variables``."""
        for i, v in enumerate(self.variables):
            if v.name == name:
                return i
        raise KeyError(f"no variable {name!r}; known: {[v.name for v in self.variables]}")
