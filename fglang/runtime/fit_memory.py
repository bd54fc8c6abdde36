"""What a fit or a prediction will allocate, estimated before it starts.

Binding's own arrays are charged while they are made (``compiler/limits.Budget``);
this adds what a backend then holds: the draws it returns (chains x draws x
values, every backend), and the state a backend declares through an optional
``memory(bm, options, carried)`` method (GBP's messages and beliefs, one
batch's for a batched fit; map's sparse Hessian on its least-squares path,
its dense Hessian on the general one; VI's guide and Laplace Hessian,
runtime/vi/memory.py), and for ``fit_many`` all of it once per data set. A
model of 1e9 nodes then stops with a located error saying how many bytes and
what to change, instead of a MemoryError, an XLA abort or a machine swapping
for an hour. The rule itself (sum within the limit, refuse at the largest
part's source) is ``limits.refuse_over_limit``. What depends on a fit's own
results (map's Laplace marginals on the fill of its factor) is checked where
that is known (runtime/map/fit.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from typing import Any

import numpy as np

from fglang.compiler.bound import BoundModel
from fglang.compiler.limits import refuse_over_limit, show_count
from fglang.span import Span

Charge = tuple[float, str, Span | None]  # (bytes, what they hold, the source position of their size)
POSTERIOR_ITEMSIZE = 8  # draws are returned and saved as float64
DRAW_COPIES = 2  # the backend's own draws, then the NumPy arrays of the Posterior


def _values(bm: BoundModel, name: str) -> float:
    v = bm.variables[name]
    return float(v.n_nodes) * float(v.node_dim)


def draw_charges(bm: BoundModel, chains: int, draws: int) -> list[Charge]:
    """chains x draws x each var's values, as float64, twice."""
    out = []
    for name, v in bm.variables.items():
        n = float(chains) * float(draws) * _values(bm, name)
        out.append((n * POSTERIOR_ITEMSIZE * DRAW_COPIES,
                    f"{show_count(chains * draws, 'draw')} of var '{name}' ({show_count(_values(bm, name), 'value')})",
                    v.span))
    return out


def gaussian_message_charges(bm: BoundModel, itemsize: int, families: Mapping[str, float] | None = None,
                             variables: Mapping[str, float] | None = None, note: str = "") -> list[Charge]:
    """Gaussian messages (both directions, mean + precision of each slot's
    block), the family's joint linearization, and each var's belief and prior.
    ``families`` and ``variables``: the share of a name's members (nodes)
    held at once, where it is not all of them (``note`` says why)."""
    families, variables = families or {}, variables or {}
    out = []
    for name, f in bm.families.items():
        d_joint, per_member = 0.0, 0.0
        for s in f.slots:
            d = float(bm.variables[s.var].node_dim)
            block = 1.0
            for b in s.block_shape:
                block *= float(b)
            per_member += 2.0 * block * (d + d * d)
            d_joint += block * d
        per_member += d_joint + d_joint * d_joint
        share = families.get(name, 1.0)
        out.append((share * float(f.n_members) * per_member * itemsize,
                    f"GBP's messages of factor '{name}' ({show_count(f.n_members, 'member')}, "
                    f"{show_count(d_joint, 'value')} each{note if name in families else ''})", f.ir.span))
    for name, v in bm.variables.items():
        d = float(v.node_dim)
        share = variables.get(name, 1.0)
        out.append((share * 2.0 * float(v.n_nodes) * (d + d * d) * itemsize,
                    f"GBP's beliefs of var '{name}' ({show_count(v.n_nodes, 'node')}"
                    f"{note if name in variables else ''})", v.span))
    return out


def batched_message_charges(bm: BoundModel, itemsize: int, batch_size: int) -> list[Charge]:
    """GBP's messages and beliefs when it learns by filtering (``batch_size``):
    it holds one batch's graph at a time (runtime/gbp/learn.py), so the
    families over the ``batch`` size (whose range or whose vars run over it)
    and the per-example vars are charged for ``batch_size`` of its N examples;
    the persistent vars and their own factors whole."""
    from fglang.compiler.expr import names_in
    from fglang.runtime.carry import batch_size_name, per_example_vars

    n_name = batch_size_name(bm.ir)
    n = bm.sizes.get(n_name) if n_name else None
    if n is None and n_name in bm.data:
        n = int(np.asarray(bm.data[n_name]))
    if not n:
        return gaussian_message_charges(bm, itemsize)
    share = min(1.0, float(batch_size) / float(n))
    per_batch = set(per_example_vars(bm.ir))
    batched = [name for name, f in bm.families.items()
               if any(s.var in per_batch for s in f.slots)
               or any(x.id == n_name for r in f.ir.ranges for x in names_in(r.hi))]
    return gaussian_message_charges(bm, itemsize, dict.fromkeys(batched, share), dict.fromkeys(per_batch, share),
                                    f"; a batch of {show_count(min(batch_size, n))} of its {show_count(n)} examples")


def member_values(bm: BoundModel, f) -> float:
    """The var values one member of family ``f`` reads (its slots' blocks times their node sizes)."""
    d = 0.0
    for s in f.slots:
        block = 1.0
        for b in s.block_shape:
            block *= float(b)
        d += block * float(bm.variables[s.var].node_dim)
    return d


def sparse_hessian_charges(bm: BoundModel, itemsize: int) -> list[Charge]:
    """The blocks each member adds to J^T W J (values and int32 indices); fill-in comes on top."""
    out = []
    for name, f in bm.families.items():
        d = member_values(bm, f)
        out.append((float(f.n_members) * d * d * (itemsize + 8),
                    f"factor '{name}''s blocks of the sparse Hessian ({show_count(f.n_members, 'member')} x "
                    f"{show_count(d * d, 'entry', 'entries')})", f.ir.span))
    return out


DENSE_COPIES = 9  # float64 n x n, measured (peak RSS, n = 1,000 and 2,000): see dense_hessian_charges
HESSIAN_EVAL_COPIES = 1  # per direction and value read: measured at n = 500 x 100,000 members (0.75)


def dense_hessian_charges(bm: BoundModel, itemsize: int) -> list[Charge]:
    """map's general path: Newton on the log density with its exact dense
    Hessian over the n unconstrained values (one per stored value of a var:
    an upper bound for simplexes and covariances). It holds ``DENSE_COPIES``
    float64 n x n matrices (JAX's Hessian, its float64 symmetrized copy, the
    damped system and its Cholesky factor, then the Laplace covariance's
    identity, solve and symmetrization), and ``jax.hessian`` pushes all n
    directions through one evaluation at once: n times each member's value
    and the values it reads. The copy counts are measured, not derived (peak
    RSS of a fresh process: 9.0 copies at n = 1,000 and 2,000, and 0.75 of a
    copy per direction and value at n = 500 with 100,000 members)."""
    n, best, span = 0.0, -1.0, None
    for v in bm.variables.values():
        k = float(v.n_nodes) * float(v.node_dim)
        n += k
        if k > best:
            best, span = k, v.span
    if n == 0:
        return []
    shown = show_count(n, "unconstrained value")
    out: list[Charge] = [(DENSE_COPIES * n * n * 8.0, f"map's dense Hessian of {shown} on its general path "
                          f"({show_count(n)} x {show_count(n)}, float64, its copies and the Laplace covariance)",
                          span)]
    for name, f in bm.families.items():
        values = 1.0 + float(len(f.slots))
        out.append((HESSIAN_EVAL_COPIES * n * float(f.n_members) * values * itemsize,
                    f"factor '{name}' evaluated along each of the Hessian's {show_count(n, 'direction')} at once "
                    f"({show_count(f.n_members, 'member')})", f.ir.span))
    return out


FIT_HINT = "make the sizes smaller, or ask for fewer draws (draws=, samples=, chains=)"


def fit_charges(impl: Any, bm: BoundModel, options: Any, carried: Set[str] = frozenset()) -> list[Charge]:
    """What one fit holds: its draws and the backend's declared state
    (``carried``: the vars whose prior is a carried posterior, which can
    change how a backend runs the model, e.g. map's path)."""
    draws = getattr(options, "samples", None) or getattr(options, "draws", None)
    charges = draw_charges(bm, getattr(options, "chains", 1), draws) if draws else []
    memory = getattr(impl, "memory", None)
    if memory is not None:
        charges += memory(bm, options, set(carried))
    return charges


def check_fit_memory(impl: Any, bm: BoundModel, options: Any, carried: Set[str] = frozenset()) -> None:
    """Refuse a fit whose draws and backend state exceed the memory limit."""
    charges = fit_charges(impl, bm, options, carried)
    if charges:
        refuse_over_limit(charges, "fit", bm.ir.sources, FIT_HINT)


def data_bytes(bm: BoundModel) -> float:
    """The bytes of a bound data set's arrays."""
    total = 0.0
    for x in bm.data.values():
        a = np.asarray(x)
        total += float(a.size) * float(a.dtype.itemsize)
    return total


def check_fit_many_memory(impl: Any, bms: Sequence[BoundModel], options: Any,
                          carried: Set[str] = frozenset()) -> None:
    """Refuse a ``fit_many`` whose B data sets exceed the memory limit together.

    The batch runs as one program, so every data set's state is held at once:
    each charge of one fit (the data sets bind alike, so the first one's
    serve) B times, and the data sets' data once more, stacked into the
    batch's arrays. Each bind was charged alone (its own ``Budget``); this is
    where their sum is."""
    b = len(bms)
    charges = [(n * b, f"{what}, for each of the {b} data sets", span)
               for n, what, span in fit_charges(impl, bms[0], options, carried)]
    charges.append((sum(data_bytes(bm) for bm in bms), f"the {b} data sets' data, stacked into one batch", None))
    refuse_over_limit(charges, "fit_many", bms[0].ir.sources,
                      f"fit fewer data sets per call (several calls of fewer than {b}), {FIT_HINT}")


def check_predict_memory(bm: BoundModel, n_draws: int, families: list[str]) -> None:
    """Refuse a prediction whose draws of the predicted families exceed the memory limit."""
    charges: list[Charge] = []
    for name in families:
        f = bm.families.get(name)
        if f is not None:
            charges.append((float(n_draws) * float(f.n_members) * POSTERIOR_ITEMSIZE * DRAW_COPIES,
                            f"{show_count(n_draws, 'draw')} of the {show_count(f.n_members, 'member')} of '{name}'",
                            f.ir.span))
    for name in bm.variables:
        charges.append((float(n_draws) * _values(bm, name) * POSTERIOR_ITEMSIZE, f"the draws of var '{name}'",
                        bm.variables[name].span))
    refuse_over_limit(charges, "prediction", bm.ir.sources, "predict for fewer members, or from fewer draws")
