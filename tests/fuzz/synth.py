"""Data for whatever a (possibly mutated) model declares: small sizes, indices
in range, values inside each declared domain; so that binding, not a missing
key, is what a mutated model meets."""

from __future__ import annotations

import random
from typing import Any

import numpy as np


def synth_data(ir, rnd: random.Random, keep: dict[str, Any] | None = None) -> dict[str, Any]:
    """``keep``: values to use where they are declared (the seed's data)."""
    out: dict[str, Any] = {}
    sizes: dict[str, int] = {}
    for name, info in ir.data.items():
        try:
            _one(name, info, rnd, keep, out, sizes)
        except Exception:  # noqa: BLE001 - data the synthesizer cannot make are left out (binding says so)
            out.pop(name, None)
    return out


def _one(name, info, rnd: random.Random, keep, out: dict[str, Any], sizes: dict[str, int]) -> None:
    """Synthesize (or keep) one data declaration's value, recording int sizes."""
    from fglang.compiler.expr import static_value

    if keep and name in keep and rnd.random() < 0.7:
        out[name] = keep[name]
        if isinstance(keep[name], int) and not isinstance(keep[name], bool):
            sizes[name] = keep[name]
        return
    shape = []
    for e in info.shape_exprs:
        try:
            v = static_value(e, sizes)
        except Exception:  # noqa: BLE001 - a hostile size is the model's problem, not the synthesizer's
            v = None
        shape.append(int(v) if isinstance(v, int | float) and abs(v) < 50 else 2)
    shape = [max(s, 0) for s in shape][:32]
    if info.default is not None and rnd.random() < 0.5:
        return
    d = info.domain
    if info.dtype in ("int", "bool"):
        if not shape:
            v = rnd.choice((0, 1, 2, 3, 4)) if info.dtype == "int" else rnd.choice((0, 1))
            if d.lower is not None:
                v = max(v, int(np.ceil(d.lower)))
            if d.upper is not None:
                v = min(v, int(np.floor(d.upper)))
            out[name] = v
            sizes[name] = v
            return
        hi = 2 if info.dtype == "bool" else max(1, min(sizes.values(), default=2))
        arr = np.asarray([rnd.randrange(hi) for _ in range(int(np.prod(shape)))], np.int64).reshape(shape)
        out[name] = arr.tolist()
        return
    n = int(np.prod(shape)) if shape else 1
    vals = np.asarray([rnd.gauss(0, 1) for _ in range(n)], float)
    if d.kind == "positive" or (d.lower is not None and d.lower >= 0):
        vals = np.abs(vals) + 0.1 + (d.lower or 0)
    if d.kind == "unit":
        vals = 1 / (1 + np.exp(-vals))
    if d.kind == "simplex" and shape:
        vals = np.abs(vals).reshape(shape) + 0.1
        vals = (vals / vals.sum(-1, keepdims=True)).ravel()
    if d.kind == "ordered" and shape:
        vals = np.cumsum(np.abs(vals.reshape(shape)) + 0.1, axis=-1).ravel()
    out[name] = vals.reshape(shape).tolist() if shape else float(vals[0])
