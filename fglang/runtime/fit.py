"""``fit`` and ``predict``: the one path from a bound model to a Posterior,
whatever the backend.

Every fit goes through the same steps, in this order, so that every mistake
is reported the same way and before anything compiles: the options are
parsed and validated (``BackendOptions``), the carried ``--prior`` marginals
are chosen by one rule (``carry``), the backend rejects what it cannot run,
the initial values are checked against the model, and only then does the
backend run, on the chosen device.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fglang.compiler import ast as A
from fglang.compiler.bind import BoundModel
from fglang.compiler.ir import ModelIR
from fglang.errors import Diagnostic, FgError
from fglang.runtime import backend as backends
from fglang.runtime.binding import bind_model
from fglang.runtime.cache import enable_compilation_cache
from fglang.runtime.carry import as_posterior, carried_marginals
from fglang.runtime.device import (
    device_context,
    device_mesh,
    device_names,
    join_processes,
    mesh_context,
)
from fglang.runtime.empty import empty_posterior, nothing_to_fit, prune, restore
from fglang.runtime.fit_memory import check_fit_memory, check_predict_memory
from fglang.runtime.inits import START_AT_MODE, ModeStart, check_init
from fglang.runtime.posterior import Posterior
from fglang.runtime.predict import targets
from fglang.runtime.timings import backend_run, phase
from fglang.runtime.values import check_values, explain_bad_start, is_bad_start, warn_saddle_start


def fit(
    bm: BoundModel,
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
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> Posterior:
    """``coordinator``, ``num_processes``, ``process_id``: join a run of several
    processes (`device.join_processes`); every process then runs this fit over
    the global mesh of all their devices (``devices`` 1 means all of them)."""
    with phase("import"):
        impl = backends.get(backend)
    opts = impl.Options.parse(options)
    check_seed(seed)
    full, bm = bm, prune(bm)  # empty vars and families are legal and fit as nothing (empty.py)
    refuse_several(impl, backend, "processes", coordinator is not None)  # before joining
    processes = join_processes(coordinator, num_processes, process_id)
    if processes > 1 and devices in (None, 1, "1"):
        devices = "all"
    mesh = device_mesh(devices, device)
    refuse_several(impl, backend, "devices", mesh is not None, devices)
    carried = carried_marginals(bm, prior)
    impl.validate(bm, opts, set(carried))
    check_fit_memory(impl, bm, opts, set(carried))
    check_values(bm)
    if isinstance(init, ModeStart):
        init, init_file = mode_init(bm, init, seed=seed, prior=prior, device=device), "the MAP start"
    init_values = check_init(bm, init, init_file, getattr(opts, "dtype", None))
    if getattr(impl, "linearizes_at_start", False) and not nothing_to_fit(bm):
        warn_saddle_start(bm, init_values or {})
    if nothing_to_fit(bm):
        post = empty_posterior(bm, backend)
    else:
        enable_compilation_cache()
        with device_context(device), mesh_context(mesh), backend_run():
            try:
                post = impl.fit(bm, opts, seed=seed, init=init_values, carried=carried, progress=progress)
            except (ValueError, RuntimeError) as err:
                if not is_bad_start(err):
                    raise
                raise explain_bad_start(bm, init_values or {}, err) from None
    post.attrs.setdefault("devices", device_names(mesh))
    post.attrs.setdefault("processes", processes)
    group_marginals(bm, post)
    post = restore(post, full, bm)
    _attach_data_lets(post, full)
    post.attrs.setdefault("source", bm.ir.sources.get(bm.ir.file, ""))
    post.attrs.setdefault("observations", observations(bm.ir))
    return post


def _attach_data_lets(post: Posterior, bm: BoundModel) -> None:
    """The lets of data only, computed once at bind: one value each, not a
    quantity per draw (see ``Posterior.constants``)."""
    for name, d in bm.derived.items():
        if d.data_only:
            post.draws.pop(name, None)
            post.gaussian.pop(name, None)
            post.constants[name] = d.value
    if post.constants:
        post.attrs["data_lets"] = list(post.constants)


def group_marginals(bm: BoundModel, post: Posterior) -> None:
    """A group var that a backend reports by draws only (vi, mcmc) gets the
    per-node marginal map reports: its intrinsic mean, and the covariance in
    the tangent space there. An average of stored numbers is not a group
    element (quaternions, and angles across the +-pi cut, do not average)."""
    from fglang.compiler.groups import GROUPS
    from fglang.runtime.posterior import GaussianMarginal

    for name, v in bm.variables.items():
        kind = v.domain.kind
        if kind not in GROUPS or name in post.gaussian or name not in post.draws or post.samples(name).shape[0] < 2:
            continue
        from fglang.runtime.group_chart import frechet_mean

        mean, cov = frechet_mean(kind, post.samples(name))
        post.gaussian[name] = GaussianMarginal(mean, cov, v.node_shape, v.value_shape, kind)


# what a run may ask of a backend -> (the backend's flag that it can, the refusal, its hint, how it joins the names)
_SEVERAL = {
    "processes": ("multi_process", "backend '{backend}' runs in one process; --coordinator is not supported for it yet",
                  "run it without --coordinator; the {takes} backends run over several processes", ", "),
    "devices": ("multi_device", "backend '{backend}' runs on one device; devices={shown!r} is not supported for it yet",
                "the {takes} backends take devices; leave devices at 1 for this one", " and "),
}


def refuse_several(impl: Any, backend: str, what: str, asked: bool, shown: object = None) -> None:
    """A run over several ``what`` ("processes" or "devices"; ``asked``: whether
    this run is one) for a backend that runs in one is an error naming the
    backends that can (``shown``: the option as the user gave it)."""
    flag, message, hint, sep = _SEVERAL[what]
    if asked and not getattr(impl, flag, False):
        takes = sep.join(n for n in backends.names() if getattr(backends.get(n), flag, False))
        raise FgError([Diagnostic(message.format(backend=backend, shown=shown), None, hint.format(takes=takes))])


def mode_init(
    bm: BoundModel, mode_start: ModeStart, *, seed: int, prior: Posterior | str | Path | None, device: str | None
) -> dict[str, Any]:
    """Initial values at the MAP (the mode), for any backend: a start in the
    typical set's neighbourhood for NUTS and VI, and for GBP the point its
    linearization is exact at. Non-convex models (pose graphs) need the mode's
    own start, as GTSAM needs initial Values: ``map:FILE``."""
    mode = fit(bm, START_AT_MODE, seed=seed, init=mode_start.start, init_file="the MAP's start", prior=prior,
               device=device)
    return {name: np.asarray(mode.mean(name)) for name in bm.variables if name in mode.draws or name in mode.gaussian}


def predict(
    ir: ModelIR,
    posterior: Posterior | str | Path,
    raw: dict[str, Any],
    file: str,
    *,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
) -> Posterior:
    """Predict the left sides of the factors whose data are absent, with the
    backend that wrote ``posterior``."""
    check_seed(seed)
    post = as_posterior(posterior)
    if post.model != ir.name:
        raise FgError(
            [Diagnostic(f"the posterior was fitted to model '{post.model}', not to '{ir.name}'", None,
                        f"predict with the posterior of a fit of {ir.name}")]
        )
    filled, _, fams = targets(ir, raw)
    bm = bind_model(ir, filled, file)
    first = next(iter(post.draws.values()), None)
    check_predict_memory(bm, int(first.shape[0] * first.shape[1]) if first is not None and first.ndim >= 2 else 1,
                         list(fams))
    enable_compilation_cache()
    return backends.get(post.backend).predict(bm, post, fams, dict(options or {}), seed)


MAX_SEED = 2**32 - 1


def check_seed(seed: Any) -> None:
    """Seeds feed both JAX's and NumPy's generators: whole numbers in [0, 2^32)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= int(seed) <= MAX_SEED:
        raise FgError([Diagnostic(f"the seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}", None)])


def observations(ir: ModelIR) -> dict[str, str]:
    """var -> the data it is observed through, where the model says so plainly
    (``y[i, j] ~ dist(x[i, j], ...)`` over the whole of both), so that a plot
    can show the data beside the posterior. Stored with the posterior; the
    plot checks that the shapes agree."""
    out: dict[str, str] = {}
    for fam in ir.families.values():
        idx = tuple(r.name for r in fam.ranges)
        lhs = fam.lhs
        if not idx or not isinstance(lhs, A.Index) or not isinstance(lhs.base, A.Name):
            continue
        d = lhs.base.id
        if d not in ir.data or tuple(a.id if isinstance(a, A.Name) else None for a in lhs.args) != idx:
            continue
        for slot in fam.slots:
            same = tuple(a.id if isinstance(a, A.Name) else None for a in slot.node_index) == idx
            if same and not slot.reductions and slot.var in ir.variables and slot.var not in out:
                out[slot.var] = d
    return out
