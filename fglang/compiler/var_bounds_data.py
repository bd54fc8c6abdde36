"""A var's non-constant bounds against the data (``compiler/var_bounds.py``
checks them against the model): every bound broadcasts to its var's shape,
and a bound of data only is finite and leaves the var room (``lower <
upper``, ``multiplier > 0``), each a located error at bind, before any fit.

A bound that reads vars is checked where it is evaluated: the sampler's
density is ``-inf`` where such a lower bound is not below its upper one
(``runtime/numpyro_bounds.py``).
"""

from __future__ import annotations

import numpy as np

from fglang.compiler.bound import BoundDerived, BoundVariable
from fglang.compiler.ir import bound_name
from fglang.compiler.types import show_shape
from fglang.errors import Diagnostic


def check_bounds(variables: dict[str, BoundVariable], bounds: dict[str, BoundDerived], file: str
                 ) -> list[Diagnostic]:
    errs: list[Diagnostic] = []
    for v in variables.values():
        got = {kw: bounds[bound_name(v.name, kw)] for kw in v.bounds if bound_name(v.name, kw) in bounds}
        ok = True
        for kw, b in got.items():
            if _broadcasts(b.shape, v.shape):
                continue
            ok = False
            errs.append(Diagnostic(
                f"the bound '{kw}=' of '{v.name}' has shape {show_shape(b.shape)} with the data in {file}, which "
                f"does not broadcast to the var's shape {show_shape(v.shape)}", b.ir.span,
                "a bound is a scalar or an array of the var's shape (one bound per element)"))
        if ok:
            errs += _room(v, got, file)
    return errs


def _broadcasts(bound: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    try:
        return np.broadcast_shapes(bound, shape) == shape
    except ValueError:
        return False


def _room(v: BoundVariable, got: dict[str, BoundDerived], file: str) -> list[Diagnostic]:
    """Data-only bounds that are not finite, or leave the var no values."""
    errs = []
    sides = {}
    for kw, b in got.items():
        if not b.data_only:
            continue
        value = np.broadcast_to(b.value, v.shape)
        bad = ~np.isfinite(value)
        if kw == "multiplier":
            bad |= ~(value > 0)
        if np.any(bad):
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            need = "positive and finite" if kw == "multiplier" else "finite"
            errs.append(Diagnostic(
                f"the bound '{kw}=' of '{v.name}' must be {need}, but with the data in {file} it is "
                f"{float(value[where]):g}{_at(where)}", b.ir.span,
                "leave out a side that has no bound: real(lower=a) has no upper one"))
            continue
        sides[kw] = (value, b.ir.span)
    lo = sides.get("lower", (None if v.domain.lower is None else np.full(v.shape, v.domain.lower), None))
    hi = sides.get("upper", (None if v.domain.upper is None else np.full(v.shape, v.domain.upper), None))
    if lo[0] is not None and hi[0] is not None and (lo[1] or hi[1]) is not None:
        empty = ~(lo[0] < hi[0])
        if np.any(empty):
            where = tuple(int(i) for i in np.argwhere(empty)[0])
            errs.append(Diagnostic(
                f"the bounds of '{v.name}' are empty with the data in {file}: lower={float(lo[0][where]):g} is not "
                f"below upper={float(hi[0][where]):g}{_at(where)}", lo[1] or hi[1],
                "every element of a var needs lower < upper"))
    return errs


def _at(where: tuple[int, ...]) -> str:
    return f" at element [{', '.join(map(str, where))}]" if where else ""
