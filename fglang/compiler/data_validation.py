"""Data against their declarations: keys, shapes, dtypes, finiteness, domains.

Every mistake in the data is reported here, at the declaration it breaks,
before any index is built or any inference starts; the int scalars that
pass are the model's sizes.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from fglang.compiler.datafile import to_array
from fglang.compiler.expr import names_in, static_value
from fglang.compiler.ir import DataInfo, ModelIR
from fglang.compiler.limits import Budget, elements, show_count
from fglang.compiler.matrix_types import MATRIX_TYPES, matrix_problem
from fglang.compiler.types import Domain, make_domain
from fglang.errors import DiagnosticSink, FgError

_FLOAT = np.float64


def _declared_shape(info: DataInfo, sizes: dict[str, int]) -> tuple[int, ...] | None:
    out = []
    for e in info.shape_exprs:
        v = static_value(e, sizes)
        if v is None:
            return None
        out.append(int(v))
    return tuple(out)


def validate_data(
    ir: ModelIR, raw: dict[str, Any], file: str, sink: DiagnosticSink, budget: Budget | None = None
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    data: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    scalars: dict[str, int | float] = {}  # the scalar data validated so far: what data bounds read
    extra = sorted(set(raw) - set(ir.data))
    if extra:
        warnings.warn(f"{file}: ignoring keys the model does not declare: {', '.join(extra)}", stacklevel=3)
    for name, info in ir.data.items():
        decl = f"'{name}' (declared here)"
        if name in raw:
            try:
                arr = to_array(name, raw[name], file)
            except FgError as err:
                sink.error(err.diagnostics[0].message, info.span)
                continue
        elif info.default is not None:
            arr = np.asarray(static_value(info.default))
        else:
            sink.error(f"missing data {decl}: {file} has no key '{name}'", info.span)
            continue
        shape = _declared_shape(info, sizes)
        if shape is None:
            # a size that is missing or malformed has been reported already
            if all(n.id in data for e in info.shape_exprs for n in names_in(e) if n.id in ir.data):
                sink.error(f"cannot size '{name}': a size it uses is missing or invalid", info.span)
            continue
        if any(s < 0 for s in shape):
            sink.error(f"cannot size '{name}': its declared shape {show_sizes(shape)} is negative", info.span)
            continue
        if budget is not None:
            budget.charge(elements(shape) * 8, f"data '{name}' ({show_count(elements(shape), 'value')})", info.span)
        if info.default is not None and name not in raw and arr.shape == () and shape:
            arr = np.broadcast_to(arr, shape)
        if arr.shape != shape:
            sink.error(
                f"data '{name}' in {file} has shape {show_sizes(arr.shape)} but the model declares {show_sizes(shape)}",
                info.span,
            )
            continue
        if arr.dtype == bool:
            arr = arr.astype(np.int64 if info.dtype in ("int", "bool") else _FLOAT)
        if info.dtype in ("int", "bool"):
            if arr.dtype.kind == "f":
                if not np.all(np.isfinite(arr)):
                    sink.error(f"data '{name}' in {file} has NaN or inf but is declared {info.dtype}", info.span)
                    continue
                if not np.all(arr == np.round(arr)):
                    bad = np.argwhere(arr != np.round(arr))[0]
                    sink.error(
                        f"data '{name}' in {file} is declared {info.dtype} but holds {float(arr[tuple(bad)]):g}"
                        f"{_at(bad)}",
                        info.span,
                    )
                    continue
            big = _outside_int64(arr)
            if big is not None:
                sink.error(
                    f"data '{name}' in {file} is declared {info.dtype} but holds {_show(arr[tuple(big)])}{_at(big)}, "
                    "outside the 64-bit int range",
                    info.span,
                    "ints lie within +-9223372036854775807; a real quantity should be declared real",
                )
                continue
            arr = arr.astype(np.int64)
            if info.dtype == "bool" and not np.all((arr == 0) | (arr == 1)):
                sink.error(f"data '{name}' in {file} is declared bool but holds values other than 0/1", info.span)
                continue
        else:
            arr = arr.astype(_FLOAT)
            bad = ~np.isfinite(arr)
            if np.any(bad):
                where = np.argwhere(bad)[0]
                sink.error(
                    f"data '{name}' in {file} has {float(arr[tuple(where)])}{_at(where)}",
                    info.span,
                    "fglang needs finite data; drop or impute missing values first",
                )
                continue
        folded = _with_data_bounds(info, scalars)
        msg = _domain_violation(arr, info.domain) or (
            _domain_violation(arr, folded) if folded is not None and info.bounds else None)
        if msg:
            sink.error(f"data '{name}' in {file} {msg}", info.span)
            continue
        data[name] = arr
        if arr.shape == () and info.dtype in ("int", "real"):
            scalars[name] = arr.item()
        if info.dtype == "int" and arr.shape == ():
            sizes[name] = int(arr)
    return data, sizes


def _with_data_bounds(info: DataInfo, scalars: dict[str, int | float]) -> Domain | None:
    """The declared domain with its bounds read from scalar data folded in
    (None: a bound reads data that failed, already reported)."""
    if not info.bounds:
        return info.domain
    side = {"lower": info.domain.lower, "upper": info.domain.upper}
    for kw, e in info.bounds:
        v = static_value(e, scalars)
        if v is None:
            return None
        side[kw] = float(v)
    if info.dtype == "int":
        return Domain("int", side["lower"], side["upper"])
    return make_domain("real", side["lower"], side["upper"])


def _domain_violation(arr: np.ndarray, d: Domain) -> str | None:
    if arr.size == 0:
        return None
    if d.kind in ("positive",) and np.any(arr <= 0):
        return f"must be positive, but holds {arr.min():g}"
    if d.kind == "unit" and np.any((arr <= 0) | (arr >= 1)):
        return "must lie in (0, 1)"
    if d.lower is not None and d.kind not in ("positive", "unit") and np.any(arr < d.lower):
        return f"must be >= {d.lower:g}, but holds {arr.min():g}"
    if d.upper is not None and d.kind not in ("unit",) and np.any(arr > d.upper):
        return f"must be <= {d.upper:g}, but holds {arr.max():g}"
    if d.kind == "simplex" and np.any(np.abs(arr.sum(-1) - 1) > 1e-6):
        return "must be a simplex (non-negative, summing to 1 along its last axis)"
    if d.kind in ("ordered", "positive_ordered") and np.any(np.diff(arr, axis=-1) <= 0):
        return "must be strictly increasing along its last axis"
    if d.kind == "positive_ordered" and np.any(arr <= 0):
        return f"must be positive, but holds {arr.min():g}"
    if d.kind in MATRIX_TYPES:
        return matrix_problem(arr, d.kind)
    if d.kind in ("rot3", "pose3"):
        # a unit quaternion, up to a file's rounding (it is normalized where used)
        norm = np.linalg.norm(arr[..., -4:], axis=-1)
        bad = np.abs(norm - 1) > 1e-3
        if np.any(bad):
            where = np.argwhere(bad)[0]
            return (f"is declared {d.kind}, but its quaternion [qx, qy, qz, qw]{_at(where)} has norm "
                    f"{float(norm[tuple(where)]):g}, not 1")
    return None


def _outside_int64(arr: np.ndarray):
    """The first index of a value that casting to int64 would wrap, or None."""
    if arr.dtype.kind == "u":
        bad = arr > np.uint64(2**63 - 1)
    elif arr.dtype.kind == "f":
        bad = np.abs(arr) >= 2.0**63
    else:
        return None
    if not np.any(bad):
        return None
    return np.argwhere(bad)[0] if bad.ndim else ()


def _show(v) -> str:
    return f"{int(v)}" if np.asarray(v).dtype.kind in "iu" else f"{float(v):g}"


def show_sizes(shape) -> str:
    return "scalar" if shape == () else "[" + ", ".join(str(s) for s in shape) + "]"


def _at(idx) -> str:
    """' at [i, j]' for an array element; nothing for a scalar."""
    return " at [" + ", ".join(str(int(i)) for i in idx) + "]" if len(idx) else ""
