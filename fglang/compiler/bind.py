"""IR + data -> BoundModel: validated data, concrete sizes, index arrays.

Everything that can go wrong with data is found here, before any inference:
missing keys, wrong shapes or dtypes, NaN/inf, values outside a declared
domain, and any index (into data or into a var's nodes) outside its array.
Index arrays are made with NumPy in one vectorized pass per family; the JAX
function that evaluates a family is made here too, closed over the sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from fglang.compiler import ast as A
from fglang.compiler.bound import BoundDerived, BoundFamily, BoundModel, BoundSlot, BoundVariable
from fglang.compiler.data_validation import show_sizes, validate_data
from fglang.compiler.expr import names_in, static_value, walk
from fglang.compiler.indices import (
    BadIndex,
    NpIndex,
    Reduction,
    bind_slot,
    check_data_indices,
    check_expr_indices,
    check_slot_indices,
    check_static_slices,
    enumerate_members,
    scan_reductions,
    slot_value_shape,
)
from fglang.compiler.ir import Derived, FactorFamily, ModelIR, Variable
from fglang.compiler.limits import Budget, elements, show_count
from fglang.compiler.sizes import Static, check_sizes, shape_value
from fglang.compiler.var_bounds_data import check_bounds
from fglang.errors import TOO_DEEP, TOO_DEEP_HINT, DiagnosticSink, recursion_headroom

if TYPE_CHECKING:
    from fglang.compiler.lower_jax import Evaluator, LogDensity  # JAX: imported only when a model is bound

# the bound types are part of this module's surface: backends import them from here
__all__ = ["BoundDerived", "BoundFamily", "BoundModel", "BoundSlot", "BoundVariable", "bind", "walk_all"]


def _slot_reds(slots: tuple[BoundSlot, ...]) -> dict[int, tuple[str, ...]]:
    return {i: s.reductions for i, s in enumerate(slots) if s.reductions}


def _family_outputs(fam: FactorFamily) -> Callable[[Evaluator], dict]:
    if fam.kind == "potential":
        return lambda ev: {"value": ev.ev(fam.potential)}

    def out(ev: Evaluator) -> dict:
        return {"lhs": ev.ev(fam.lhs), "args": {k: ev.ev(e) for k, e in fam.args}}

    return out


def _bind_family(
    fam: FactorFamily, variables, npi: NpIndex, lengths: dict[int, int], log_density: LogDensity | None
) -> BoundFamily:
    idx, rect = enumerate_members(fam.ranges, npi)
    exprs = [fam.lhs, fam.potential] + [e for _, e in fam.args]
    reds: dict[str, Reduction] = {}
    chain_of = scan_reductions(exprs, idx, npi, reds, lengths)
    check_expr_indices(exprs, npi, chain_of)  # first: a let's name, not its var's, where both are out
    check_data_indices(exprs, idx, npi, reds, chain_of)
    check_static_slices(exprs, npi.sizes)
    slots = tuple(bind_slot(p, variables[p.var], idx, npi, reds, chain_of, rect) for p in fam.slots)
    check_slot_indices(exprs, npi, chain_of, {i: slot_value_shape(p, s, variables[s.var])
                                              for i, (p, s) in enumerate(zip(fam.slots, slots, strict=True))})
    static = Static(dict(npi.sizes), lengths)
    one, fn = _member_functions(fam, static, _slot_reds(slots), log_density, aligned_rows(fam, idx, npi.sizes))
    return BoundFamily(fam, len(idx["__m"]), dict(idx), rect, slots, fn, one)


def aligned_rows(fam: FactorFamily, idx: dict[str, np.ndarray], sizes: dict) -> tuple[tuple[str, str], ...]:
    """The ``(data, index)`` pairs of a family that reads data row by row in
    member order (``X[n]`` in ``factor lik[n in 0:N]``: the index is
    ``0, 1, ..., M-1``). The sampling backends hand such data to the members'
    vmap as a batched argument, so each member's row is a slice of ``X``,
    not a gather from it on every call (the gather, and its copy of ``X``, was
    half of a per-member family's gradient at N = 1e4..1e5). Whether the
    data's first axis has M rows is checked when the function is traced."""
    m = len(idx["__m"])
    if m < 2:
        return ()
    rebound = {r.name for x in walk_all(fam) if isinstance(x, A.Reduce | A.Scan) for r in _ranges_of(x)}
    rebound |= {x.state for x in walk_all(fam) if isinstance(x, A.Scan)}
    names = {r.name for r in fam.ranges if r.name not in rebound and r.name in idx
             and np.array_equal(idx[r.name], np.arange(m))}
    if not names:
        return ()
    pairs = {
        (x.base.id, x.args[0].id) for x in walk_all(fam)
        if isinstance(x, A.Index) and isinstance(x.base, A.Name) and x.args and isinstance(x.args[0], A.Name)
        and x.args[0].id in names and x.base.id not in sizes
    }
    return tuple(sorted(pairs))


def _ranges_of(x: A.Reduce | A.Scan) -> tuple[A.IndexRange, ...]:
    return tuple(x.ranges) if isinstance(x, A.Reduce) else ((x.index,) if x.index is not None else ())


# (family, sizes, reduction lengths, slot reductions, log density, aligned rows) -> (one, all_members).
# Binding new data of the same shape returns the *same* function objects, so
# every jit downstream (GBP's plan, NumPyro's kernels) is reused, not retraced.
_FUNCTION_CACHE: dict[tuple, tuple[FactorFamily, Callable, Callable, Any]] = {}


def _member_functions(
    fam: FactorFamily, static: Static, slot_reds: dict[int, tuple[str, ...]], log_density: LogDensity | None,
    aligned: tuple[tuple[str, str], ...] = (),
):
    red_ids = {id(r) for x in walk_all(fam) if isinstance(x, A.Reduce) for r in x.ranges}
    key = (
        id(fam),
        tuple(sorted(static.sizes.items())),
        tuple(sorted((k, v) for k, v in static.reduction_len.items() if k in red_ids)),
        tuple(sorted(slot_reds.items())),
        id(log_density),
        aligned,
    )
    hit = _FUNCTION_CACHE.get(key)
    if hit is not None and hit[0] is fam and hit[3] is log_density:
        return hit[1], hit[2]
    from fglang.compiler.lower_jax import member_function  # JAX: imported when a model is bound

    one, fn = member_function(_family_outputs(fam), static, slot_reds, log_density, aligned)
    if len(_FUNCTION_CACHE) > 4096:
        _FUNCTION_CACHE.clear()
    _FUNCTION_CACHE[key] = (fam, one, fn, log_density)
    return one, fn


def walk_all(fam: FactorFamily):
    """Every node of a family's expressions."""
    for e in [fam.lhs, fam.potential] + [e for _, e in fam.args]:
        if e is not None:
            yield from walk(e)


def data_read(fam: FactorFamily) -> set[str]:
    """The names a family reads (its expressions and index bounds): a backend
    hands a compiled family only the data it uses, so that a change to any
    other data array does not change the family's compiled program."""
    names = {x.id for x in walk_all(fam) if isinstance(x, A.Name)}
    for r in fam.ranges:
        names |= {x.id for x in (r.lo, r.hi) if isinstance(x, A.Name)}
    return names


def _bind_lets(lets: dict[str, Derived], variables, npi: NpIndex, lengths, log_density: LogDensity | None,
               what: str = "let") -> dict[str, BoundDerived]:
    """All lets at once: they share their slots and their expressions' nodes
    (compiler/dag.py), so each shared node is scanned, and evaluated, once."""
    if not lets:
        return {}
    idx = {"__m": np.zeros(1, np.int64)}
    reds: dict[str, Reduction] = {}
    exprs = [d.expr for d in lets.values()]
    chain_of = scan_reductions(exprs, idx, npi, reds, lengths)
    check_expr_indices(exprs, npi, chain_of)  # first: a let's name, not its var's, where both are out
    check_data_indices(exprs, idx, npi, reds, chain_of)
    patterns = next(iter(lets.values())).slots
    slots = tuple(bind_slot(p, variables[p.var], idx, npi, reds, chain_of, ()) for p in patterns)
    check_slot_indices(exprs, npi, chain_of, {i: slot_value_shape(p, s, variables[s.var])
                                              for i, (p, s) in enumerate(zip(patterns, slots, strict=True))})
    static = Static(dict(npi.sizes), lengths)
    slot_reds = _slot_reds(slots)
    from fglang.compiler.lower_jax import member_function

    def evaluate_all(data, slot_values, names):
        """slot_values hold one member's blocks (no leading member axis); None for a slot no named let reads."""
        one, _ = member_function(lambda ev: {n: ev.ev(lets[n].expr) for n in names}, static, slot_reds, log_density)
        return one(data, {"__m": 0}, slot_values)

    out = {}
    for name, d in lets.items():
        def evaluate(data, slot_values, name=name):
            return evaluate_all(data, slot_values, (name,))[name]

        shape = shape_value(d.shape, npi.sizes)
        if shape is None:  # the checker gives every top-level let a shape of sizes
            raise AssertionError(f"let '{d.name}' has no concrete shape {d.shape}")
        npi.charge(elements(shape) * 8, f"{what} '{d.name}' ({show_count(elements(shape), 'value')})", d.span)
        value = None
        if d.reads == ():
            value = _data_only_value(evaluate, npi.data, shape, len(slots))
        out[name] = BoundDerived(d, shape, slots, evaluate, value, evaluate_all)
    return out


def _data_only_value(evaluate: Callable, data: dict[str, np.ndarray], shape: tuple[int, ...], n_slots: int
                     ) -> np.ndarray:
    """A let that reads no var, computed once here in float64 (whatever dtype a
    fit runs in), so that no backend computes or stores it per draw."""
    import jax

    with jax.enable_x64(True):
        return np.asarray(evaluate(dict(data), (None,) * n_slots), np.float64).reshape(shape)


# ---------------------------------------------------------------- entry point
def bind(
    ir: ModelIR, raw: dict[str, Any], file: str = "<data>", *, log_density: LogDensity | None = None
) -> BoundModel:
    """Validate ``raw`` against the model and build every index array.

    ``log_density(name, args, value)`` is the density that ``logp(...)`` in a
    model's expressions calls; the compiler has none of its own, so that the
    one a backend uses for ``~`` is the one ``logp`` uses too."""
    with recursion_headroom():
        return _bind(ir, raw, file, log_density)


def _bind(ir: ModelIR, raw: dict[str, Any], file: str, log_density: LogDensity | None) -> BoundModel:
    sink = DiagnosticSink()
    budget = Budget(ir.sources)
    data, sizes = validate_data(ir, raw, file, sink, budget)
    sink.raise_if_any(ir.sources)
    # the shape rules only sizes decide (N-vs-D), with the values these data give
    scalars = {k: float(v) for k, v in data.items() if np.ndim(v) == 0 and k not in sizes}
    sink.items.extend(check_sizes(ir.size_checks, sizes, file, scalars))
    sink.raise_if_any(ir.sources)
    for name in sizes:
        if sizes[name] < 0 and any(_uses(name, v) for v in ir.variables.values()):
            sink.error(f"size '{name}' is {sizes[name]}; sizes cannot be negative", ir.data[name].span)
    sink.raise_if_any(ir.sources)
    variables = {}
    for name, v in ir.variables.items():
        node = tuple(int(static_value(e, sizes)) for e in v.node_dims)
        val = tuple(int(static_value(e, sizes)) for e in v.value_shape)
        if any(s < 0 for s in node + val):
            sink.error(f"var '{name}' has a negative size {show_sizes(node + val)}", v.span)
            continue
        n_nodes, n_vals = elements(node), elements(val)
        # a backend holds at least a value and a scale (or a mean and a precision) per node
        budget.charge(n_nodes * n_vals * 16, f"var '{name}' ({show_count(n_nodes, 'node')} of "
                      f"{show_count(n_vals, 'value')})", v.span)
        variables[name] = BoundVariable(name, node, val, v.domain, v.prior, v.span, v.bounds)
    sink.raise_if_any(ir.sources)
    npi = NpIndex(data, sizes, budget)
    families: dict[str, BoundFamily] = {}
    derived: dict[str, BoundDerived] = {}
    lengths: dict[int, int] = {}
    try:
        derived = _bind_lets(ir.derived, variables, npi, lengths, log_density)
    except BadIndex as err:
        sink.error(err.message, err.span, err.hint)
    except RecursionError:
        sink.error(TOO_DEEP, next(iter(ir.derived.values())).span, TOO_DEEP_HINT)
    sink.raise_if_any(ir.sources)
    # the data-only lets a factor reads by name (lower.data_let): computed once, read as data
    let_data = tuple(sorted({x.id for fam in ir.families.values() for x in walk_all(fam)
                             if isinstance(x, A.Name) and x.id in derived and derived[x.id].data_only}))
    for name in let_data:
        data[name] = derived[name].value
    for name, fam in ir.families.items():
        try:
            families[name] = _bind_family(fam, variables, npi, lengths, log_density)
            if fam.members is not None:
                members = _bind_family(fam.members, variables, npi, lengths, log_density)
                families[name] = replace(families[name], members=members)
        except BadIndex as err:
            sink.error(err.message, err.span, err.hint)
        except RecursionError:
            sink.error(TOO_DEEP, fam.span, TOO_DEEP_HINT)
    sink.raise_if_any(ir.sources)
    bounds: dict[str, BoundDerived] = {}
    try:
        bounds = _bind_lets(ir.bounds, variables, npi, lengths, log_density, "bound")
    except BadIndex as err:
        sink.error(err.message, err.span, err.hint)
    sink.items.extend(check_bounds(variables, bounds, file))
    sink.raise_if_any(ir.sources)
    return BoundModel(ir, data, sizes, variables, families, derived, file, bounds, let_data)


def _uses(name: str, v: Variable) -> bool:
    return any(n.id == name for e in v.node_dims + v.value_shape for n in names_in(e))
