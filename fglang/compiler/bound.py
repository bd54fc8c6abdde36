"""What binding produces: the IR with concrete sizes, index arrays and the
JAX functions that evaluate each family. The backends read only these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from fglang.compiler import ast as A
from fglang.compiler.ir import Derived, FactorFamily, ModelIR, bound_name
from fglang.compiler.types import Domain


@dataclass(frozen=True)
class BoundVariable:
    name: str
    node_shape: tuple[int, ...]
    value_shape: tuple[int, ...]
    domain: Domain
    prior: str | None
    span: A.Span = field(repr=False)
    bounds: tuple[str, ...] = ()  # keywords whose value is an expression: BoundModel.bounds (bound_values)

    @property
    def n_nodes(self) -> int:
        return int(np.prod(self.node_shape, dtype=np.int64))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.node_shape + self.value_shape

    @property
    def node_dim(self) -> int:
        return int(np.prod(self.value_shape, dtype=np.int64))


@dataclass(frozen=True)
class BoundSlot:
    """``node_ids[m, *block]`` is the flat node index each member reads.

    ``grid_slice`` is set when the slot is a plain strided view of the var's
    node grid in member order, so a backend can use slices instead of
    gathers and scatter-adds.
    """

    var: str
    node_ids: np.ndarray
    block_shape: tuple[int, ...]
    reductions: tuple[str, ...]
    mask: np.ndarray | None  # [M, *reduction axes]: False where a padded reduction position
    grid_slice: tuple[slice, ...] | None
    span: A.Span = field(repr=False)


class SharedSlot(NamedTuple):
    """A slot value every member of a family reads whole (a var outside the
    family's index: ``W1`` in ``factor out[n in 0:N]: Y[n] ~ normal(W1 @ X[n], s)``),
    handed to ``BoundFamily.evaluate`` as one member's block instead of
    broadcast over the members. Broadcast, ``W1 @ X[n]`` becomes M products
    of a matrix with a vector, and its gradient M outer products summed (an
    ``[M, H, D]`` array); shared, it is one matrix product and its transpose."""

    value: Any


@dataclass(frozen=True)
class BoundFamily:
    ir: FactorFamily
    n_members: int
    idx: dict[str, np.ndarray]  # family index arrays [M], plus "__m"
    member_grid: tuple[int, ...] | None  # rectangular families: the member grid (C order)
    slots: tuple[BoundSlot, ...]
    # evaluate(data, idx, slot_values) -> dict of [M, ...] arrays; a slot value is [M, ...] or a SharedSlot
    evaluate: Callable = field(repr=False)
    evaluate_one: Callable = field(repr=False)  # the same for one member (scalar indices, one slot block each)
    members: BoundFamily | None = field(default=None, repr=False)  # the IR's split into members (GBP runs it)

    @property
    def name(self) -> str:
        return self.ir.name


@dataclass(frozen=True)
class BoundDerived:
    ir: Derived
    shape: tuple[int, ...]
    slots: tuple[BoundSlot, ...]
    evaluate: Callable = field(repr=False)  # evaluate(data, slot_values) -> array
    # a let of data and constants only: its value, computed once at bind (float64);
    # backends report it once instead of storing it with every draw
    value: np.ndarray | None = field(default=None, repr=False)
    # evaluate_all(data, slot_values, names) -> {name: value}: the named lets in one
    # pass over their shared nodes (the same function for every let of a model)
    evaluate_all: Callable | None = field(default=None, repr=False)

    @property
    def data_only(self) -> bool:
        return self.value is not None

    @property
    def reads(self) -> tuple[int, ...]:
        """The numbers of the slots this let reads (``slots`` are all lets' slots)."""
        return tuple(range(len(self.slots))) if self.ir.reads is None else self.ir.reads

    def gathered(self, bm: BoundModel, values: dict[str, Any]) -> tuple:
        """Slot values for ``evaluate``: the slots it reads, None for the others."""
        reads = set(self.reads)
        return tuple(bm.gather(s, values)[0] if i in reads else None for i, s in enumerate(self.slots))


def let_values(bm: BoundModel, data: dict[str, Any], values: dict[str, Any], names=None) -> dict[str, Any]:
    """The lets that read vars (or those of ``names``), from the vars' full
    arrays in ``values``, evaluated in one pass: a node shared by several lets
    (a chain of lets) is computed once."""
    lets = [d for n, d in bm.derived.items() if not d.data_only and (names is None or n in names)]
    if not lets:
        return {}
    need = set().union(*(d.reads for d in lets))
    sv = tuple(bm.gather(s, values)[0] if i in need else None for i, s in enumerate(lets[0].slots))
    out = lets[0].evaluate_all(data, sv, tuple(d.ir.name for d in lets))
    return {d.ir.name: _shaped(out[d.ir.name], d.shape) for d in lets}


def _shaped(x: Any, shape: tuple) -> Any:
    """An evaluated value in its declared shape; a constant evaluates to a
    Python number (``real(offset=1.5)``, ``multiplier=2``: they crashed here
    with "'int' object has no attribute 'reshape'", a fuzz finding)."""
    return x.reshape(shape) if hasattr(x, "reshape") else np.full(shape, x, dtype=np.float64)


def bound_values(bm: BoundModel, var: BoundVariable, data: dict[str, Any], values: dict[str, Any]
                 ) -> dict[str, Any]:
    """A var's non-constant bounds (keyword -> array broadcastable to the var's
    shape), from ``data`` and the full arrays of the vars declared before it in
    ``values``. A bound of data only is evaluated from ``data`` too, not taken
    from ``BoundDerived.value``: a batch over data sets (``fit_many``) passes
    each set's data to one program."""
    if not var.bounds:
        return {}
    ds = [(kw, bm.bounds[bound_name(var.name, kw)]) for kw in var.bounds]
    need = set().union(*(d.reads for _, d in ds))
    first = ds[0][1]
    sv = tuple(bm.gather(s, values)[0] if i in need else None for i, s in enumerate(first.slots))
    got = first.evaluate_all(data, sv, tuple(d.ir.name for _, d in ds))
    return {kw: _shaped(got[d.ir.name], d.shape) for kw, d in ds}


@dataclass(frozen=True)
class BoundModel:
    ir: ModelIR
    data: dict[str, np.ndarray]
    sizes: dict[str, int]
    variables: dict[str, BoundVariable]
    families: dict[str, BoundFamily]
    derived: dict[str, BoundDerived]
    data_file: str = "<data>"
    # the vars' non-constant bounds (ModelIR.bounds), bound as lets of one slot list
    bounds: dict[str, BoundDerived] = field(default_factory=dict)
    # data-only lets a factor reads by name, their values in ``data`` (bind computes them once)
    let_data: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.ir.name

    @property
    def observed(self) -> dict[str, np.ndarray]:
        """The data as the user gave them (``data`` less the lets bind added)."""
        return {k: v for k, v in self.data.items() if k not in self.let_data}

    def gather(self, slot: BoundSlot, values: dict[str, Any]):
        """Slot values [M, *block, *value] from full var arrays (NumPy or JAX).

        A strided-slice slot is read as a slice, not a gather: same values,
        and several times faster for grids and chains."""
        v = self.variables[slot.var]
        full = values[slot.var]
        if slot.grid_slice is not None:
            grid = full.reshape(v.node_shape + v.value_shape)
            return grid[slot.grid_slice].reshape(slot.node_ids.shape + v.value_shape)
        flat = full.reshape((v.n_nodes,) + v.value_shape)
        return flat[slot.node_ids]
