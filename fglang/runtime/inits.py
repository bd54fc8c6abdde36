"""User initial values (``init=`` / ``--init FILE``), checked against the model.

The same layout as data files: var name -> array of the var's full shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fglang.compiler.bind import BoundModel
from fglang.errors import Diagnostic, FgError, did_you_mean


def check_init(bm: BoundModel, init: dict[str, Any] | None, file: str = "init") -> dict[str, np.ndarray]:
    if not init:
        return {}
    out: dict[str, np.ndarray] = {}
    errs = []
    for name, value in init.items():
        v = bm.variables.get(name)
        if v is None:
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
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != v.shape:
            if arr.size == 1:
                arr = np.broadcast_to(arr.reshape(()), v.shape)
            else:
                errs.append(
                    Diagnostic(f"{file}: init for '{name}' has shape {list(arr.shape)}, the var has {list(v.shape)}", None)
                )
                continue
        if not np.all(np.isfinite(arr)):
            errs.append(Diagnostic(f"{file}: init for '{name}' has NaN or inf", None))
            continue
        out[name] = np.array(arr)
    if errs:
        raise FgError(errs)
    return out
