"""User initial values (``init=`` / ``--init FILE``), checked against the model.

The same layout as data files: var name -> array of the var's full shape.
A var under a hierarchical sparsity prior (``horseshoe``, ``reg_horseshoe``,
``ard``) is a deterministic of auxiliary sample sites (``w__z``, ``w__local``,
``w__global``, ...): an init for ``w`` is mapped onto them (see
``numpyro_distributions.init_aux``), and the aux sites may also be given
directly by name, which then take precedence.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from fglang.compiler.bind import BoundModel
from fglang.compiler.bound import bound_values
from fglang.compiler.ir import bound_name
from fglang.compiler.matrix_types import MATRIX_TYPES, matrix_problem
from fglang.compiler.types import Domain
from fglang.errors import Diagnostic, FgError, did_you_mean

START_AT_MODE = "map"  # init="map": start at the posterior mode


class ModeStart(NamedTuple):
    """``init="map"``: start at the mode that the ``map`` backend finds from
    ``start`` (values, or None for its default start)."""

    start: dict[str, Any] | None


FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_init(bm: BoundModel, init: dict[str, Any] | None, file: str = "init",
               dtype: str | None = None) -> dict[str, np.ndarray]:
    """The init values as float64 arrays of each var's shape, or one FgError
    listing every mistake. ``dtype``: the fit's option; unless it is float64,
    the fit may compute in float32 (``auto`` does on GPUs, and GBP's flooding
    on any device), where a value past float32's range becomes inf: GBP raised
    a traceback, VI silently replaced it by a random start, NUTS and map said
    the start was inf."""
    if not init:
        return {}
    out: dict[str, np.ndarray] = {}
    errs = []
    aux = aux_sites(bm)
    for name, value in init.items():
        v = bm.variables.get(name)
        if v is not None:
            shape, domain = v.shape, v.domain
        elif name in aux:
            shape, domain = aux[name]
        else:
            guess = did_you_mean(name, bm.variables)
            errs.append(
                Diagnostic(
                    f"{file}: '{name}' is not a var of model {bm.name}"
                    + (f"; did you mean '{guess}'?" if guess else ""),
                    None,
                    f"vars: {', '.join(bm.variables)}",
                )
            )
            continue
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            errs.append(Diagnostic(f"{file}: init for '{name}' is not an array of numbers", None))
            continue
        if arr.shape != shape:
            if arr.size == 1:
                arr = np.broadcast_to(arr.reshape(()), shape)
            else:
                msg = f"{file}: init for '{name}' has shape {list(arr.shape)}, the var has {list(shape)}"
                errs.append(Diagnostic(msg, None))
                continue
        if not np.all(np.isfinite(arr)):
            errs.append(Diagnostic(f"{file}: init for '{name}' has NaN or inf", None))
            continue
        if dtype is not None and dtype != "float64" and arr.size and np.max(np.abs(arr)) > FLOAT32_MAX:
            errs.append(Diagnostic(
                f"{file}: init for '{name}' holds {np.max(np.abs(arr)):g}, past float32's range (+-{FLOAT32_MAX:.3g})"
                f" that this fit may compute in (dtype={dtype})", None,
                "give a smaller value, or fit in float64 (--dtype float64)"))
            continue
        why = _outside(arr, domain)
        if why:
            errs.append(Diagnostic(f"{file}: init for '{name}' is outside the var's support: {why}", None))
            continue
        out[name] = np.array(arr)
    errs += _outside_bounds(bm, out, file) if not errs else []
    if errs:
        raise FgError(errs)
    return out


def _outside_bounds(bm: BoundModel, init: dict[str, np.ndarray], file: str) -> list[Diagnostic]:
    """Init values outside bounds that read vars or data (``real(lower=a)``),
    with the bounds evaluated at the init values of the vars they read (a var
    whose bounds read a var without an init value is left to the sampler)."""
    import jax

    errs = []
    for name, v in bm.variables.items():
        if not v.bounds or v.domain.kind != "bounded" or name not in init:
            continue
        reads = set()
        for kw in v.bounds:
            d = bm.bounds[bound_name(name, kw)]
            reads |= {d.slots[i].var for i in d.reads}
        if not reads <= init.keys():
            continue
        with jax.enable_x64(True):
            got = {k: np.broadcast_to(np.asarray(b, np.float64), v.shape)
                   for k, b in bound_values(bm, v, dict(bm.data), init).items()}
        x = init[name]
        for side in ("lower", "upper"):
            if side not in got:
                continue
            bad = x <= got[side] if side == "lower" else x >= got[side]
            if np.any(bad):
                k = tuple(int(i) for i in np.argwhere(bad)[0])
                at = f" at [{', '.join(map(str, k))}]" if k else ""
                op = ">" if side == "lower" else "<"
                errs.append(Diagnostic(
                    f"{file}: init for '{name}' is outside the var's support: it must be {op} {side}="
                    f"{dict(v.domain.written)[side]} = {float(got[side][k]):g}{at} ({v.domain.describe()}), "
                    f"but holds {float(x[k]):g}", None))
                break
    return errs


def aux_sites(bm: BoundModel) -> dict[str, tuple[tuple[int, ...], Domain]]:
    """The sparsity priors' auxiliary sample sites: name -> (shape, support)."""
    from fglang.runtime.numpyro_distributions import PRIOR_AUX

    out = {}
    for v in bm.variables.values():
        fam = bm.families.get(v.prior) if v.prior else None
        if fam is None or fam.ir.dist is None or not fam.ir.dist.sparsity:
            continue
        for suffix in PRIOR_AUX.get(fam.ir.dist.name, ()):
            shape = () if suffix in ("__global", "__caux") else v.shape
            out[v.name + suffix] = (shape, Domain("real") if suffix == "__z" else Domain("positive", 0.0, None))
    return out


def _outside(arr: np.ndarray, d: Domain) -> str | None:
    """Why a value is not strictly inside a domain (a start on the boundary has an
    infinite unconstrained value, so bounds are open), or None."""
    if arr.size == 0:
        return None
    if d.lower is not None and np.any(arr <= d.lower):
        return f"it must be > {d.lower:g} ({d.describe()}), but holds {arr.min():g}"
    if d.upper is not None and np.any(arr >= d.upper):
        return f"it must be < {d.upper:g} ({d.describe()}), but holds {arr.max():g}"
    if d.kind in MATRIX_TYPES:
        return matrix_problem(arr, d.kind)
    if d.kind == "simplex" and (np.any(arr <= 0) or np.any(np.abs(arr.sum(-1) - 1) > 1e-6)):
        return "a simplex must be positive and sum to 1 along its last axis"
    if d.kind in ("ordered", "positive_ordered") and np.any(np.diff(arr, axis=-1) <= 0):
        return "it must be strictly increasing along its last axis"
    if d.kind == "positive_ordered" and np.any(arr <= 0):
        return f"it must be positive (positive_ordered), but holds {arr.min():g}"
    return None
