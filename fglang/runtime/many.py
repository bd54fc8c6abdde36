"""``fit_many``: one model fitted to many data sets of one shape in one
compiled program.

A GPU is wasted on one eight-schools fit but not on a thousand: the data sets
run as one batch (``jax.vmap`` over a leading axis; over several devices the
batch is split between them). That needs the data sets to bind alike: the
same sizes, the same data shapes and the same index data (the int data that
pick which nodes a factor reads), so that one program serves every one; they
may differ in every other value. The steps are those of `fit.fit`, each
posterior the one a separate fit with the same seed gives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fglang.compiler.bind import BoundModel
from fglang.errors import Diagnostic, FgError
from fglang.runtime import backend as backends
from fglang.runtime.cache import enable_compilation_cache
from fglang.runtime.carry import carried_marginals
from fglang.runtime.device import device_context, device_mesh, device_names, mesh_context
from fglang.runtime.empty import empty_posterior, nothing_to_fit, prune, restore
from fglang.runtime.fit import check_seed, observations, refuse_several
from fglang.runtime.fit_memory import check_fit_many_memory
from fglang.runtime.inits import ModeStart, check_init
from fglang.runtime.posterior import Posterior
from fglang.runtime.values import check_values, explain_bad_start, is_bad_start

SAME_SHAPE_HINT = ("fit_many fits data sets that differ in their values only; fit data sets of other sizes "
                   "in a fit_many call of their own (one call per shape), or with fit")


def fit_many(
    bms: Sequence[BoundModel],
    backend: str,
    *,
    seed: int = 0,
    init: dict[str, Any] | None = None,
    init_file: str = "init",
    prior: Posterior | str | Path | None = None,
    device: str | None = None,
    devices: int | str | None = 1,
    progress: bool = False,
    options: Mapping[str, Any] | None = None,
) -> list[Posterior]:
    """Fit the bound data sets ``bms`` (one model, one shape) as one batch;
    a posterior per data set, in order, each recording ``attrs["fit_many"]``
    (its index and the batch's size) and the devices."""
    impl = backends.get(backend)
    opts = impl.Options.parse(options)
    check_seed(seed)
    if not hasattr(impl, "fit_many"):
        takes = [n for n in backends.names() if hasattr(backends.get(n), "fit_many")]
        raise FgError([Diagnostic(f"backend '{backend}' has no fit_many yet", None,
                                  f"fit_many runs with --backend {' or '.join(takes)}; fit each data set with fit")])
    if not bms:
        raise FgError([Diagnostic("fit_many needs at least one data set, got none", None)])
    if isinstance(init, ModeStart):
        raise FgError([Diagnostic("fit_many takes init values, not init='map'", None,
                                  "give the values (a dict or a file), or fit the data sets one by one "
                                  "with init='map'")])
    check_same_shape(bms)
    full, ran = list(bms), [prune(bm) for bm in bms]
    mesh = device_mesh(devices, device)
    refuse_several(impl, backend, "devices", mesh is not None, devices)
    carried = carried_marginals(ran[0], prior)
    impl.validate(ran[0], opts, set(carried))
    check_fit_many_memory(impl, ran, opts, set(carried))
    for bm in ran:
        check_values(bm)
    init_values = check_init(ran[0], init, init_file, getattr(opts, "dtype", None))
    if nothing_to_fit(ran[0]):
        posts = [empty_posterior(bm, backend) for bm in ran]
    else:
        enable_compilation_cache()
        with device_context(device), mesh_context(mesh):
            try:
                posts = impl.fit_many(ran, opts, seed=seed, init=init_values, carried=carried, progress=progress)
            except (ValueError, RuntimeError) as err:
                if not is_bad_start(err):
                    raise
                raise _explain_bad_start(ran, init_values or {}, err) from None
    out = []
    for k, (post, f, r) in enumerate(zip(posts, full, ran, strict=True)):
        post.attrs.setdefault("devices", device_names(mesh))
        post.attrs["fit_many"] = {"index": k, "of": len(bms)}
        post = restore(post, f, r)
        post.attrs.setdefault("source", r.ir.sources.get(r.ir.file, ""))
        post.attrs.setdefault("observations", observations(r.ir))
        out.append(post)
    return out


def _explain_bad_start(bms: Sequence[BoundModel], init: dict[str, Any], err: BaseException) -> FgError:
    """As `fit.fit`'s "no valid initial point", for the first data set where a
    factor is found at fault (the start is the same for all; the data differ)."""
    errors = (explain_bad_start(bm, init, err) for bm in bms)
    first = next(errors)
    if any(d.span is not None for d in first.diagnostics):
        return first
    return next((e for e in errors if any(d.span is not None for d in e.diagnostics)), first)


def check_same_shape(bms: Sequence[BoundModel]) -> None:
    """One located `FgError` listing how each data set's binding differs from the
    first one's: a size, a data array's shape or kind, or the nodes a factor
    reads (index data). Only values may differ."""
    first = bms[0]
    ir = first.ir
    problems: list[Diagnostic] = []
    for k, bm in enumerate(bms[1:], start=1):
        where = _name(bm, k)
        for name, size in first.sizes.items():
            if bm.sizes.get(name) != size:
                span = ir.data[name].span if name in ir.data else None
                problems.append(Diagnostic(f"size '{name}' is {bm.sizes.get(name)} in {where} but {size} in "
                                           f"{_name(first, 0)}", span, SAME_SHAPE_HINT))
        for name, x in first.data.items():
            y = bm.data.get(name)
            if y is None:
                continue  # binding checks that every data set has its data
            a, b = np.asarray(x), np.asarray(y)
            if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
                span = ir.data[name].span if name in ir.data else None
                problems.append(Diagnostic(f"data '{name}' has shape {b.shape} ({b.dtype}) in {where} but {a.shape} "
                                           f"({a.dtype}) in {_name(first, 0)}", span, SAME_SHAPE_HINT))
        if problems:
            continue  # the structure below differs wherever the sizes do
        for name, fam in first.families.items():
            if not _same_family(fam, bm.families.get(name)):
                problems.append(Diagnostic(
                    f"factor '{name}' reads other nodes in {where} than in {_name(first, 0)}: its index data differ",
                    fam.ir.span, "fit_many fits data sets whose index data (the int data that pick a factor's "
                    "nodes) are the same; the other data may differ"))
        for name, d in first.derived.items():
            other = bm.derived.get(name)
            if other is None or not all(_same_slot(s, t) for s, t in zip(d.slots, other.slots, strict=True)):
                problems.append(Diagnostic(f"let '{name}' reads other nodes in {where} than in {_name(first, 0)}",
                                           d.ir.span, SAME_SHAPE_HINT))
    if problems:
        raise FgError(problems, ir.sources)


def _name(bm: BoundModel, k: int) -> str:
    file = bm.data_file
    return f"data set {k}" + (f" ({file})" if file and not file.startswith("<") else "")


def _same_family(a, b) -> bool:
    if b is None or a.n_members != b.n_members or a.member_grid != b.member_grid or set(a.idx) != set(b.idx):
        return False
    if any(not np.array_equal(a.idx[k], b.idx[k]) for k in a.idx):
        return False
    return len(a.slots) == len(b.slots) and all(_same_slot(s, t) for s, t in zip(a.slots, b.slots, strict=True))


def _same_slot(s, t) -> bool:
    masks_equal = (s.mask is None) == (t.mask is None) and (s.mask is None or np.array_equal(s.mask, t.mask))
    return (s.var == t.var and s.grid_slice == t.grid_slice and s.node_ids.shape == t.node_ids.shape
            and np.array_equal(s.node_ids, t.node_ids) and masks_equal)
