"""Reading data files: JSON in CmdStan's layout (as posteriordb uses) and .npz.

Errors here have no model position, so they name the file and the key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fglang.errors import Diagnostic, FgError
from fglang.span import Span


def read_data(path: str | Path) -> dict[str, Any]:
    """A dict of name -> number or array; JSON nulls and strings are refused."""
    path = Path(path)
    here = Span(str(path), 0, 0, 0, 0)
    if not path.exists():
        raise FgError([Diagnostic(f"data file not found: {path}", None)])
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        text = path.read_text()
    except (OSError, ValueError) as err:
        raise FgError([Diagnostic(f"cannot read data file: {err}", here)]) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        span = Span(str(path), err.lineno, err.colno, err.lineno, err.colno + 1)
        raise FgError([Diagnostic(f"malformed JSON: {err.msg}", span)], {str(path): text}) from None
    if not isinstance(obj, dict):
        raise FgError([Diagnostic("a data file must hold a JSON object of name: value pairs", here)])
    return obj


def to_array(name: str, value: Any, file: str) -> np.ndarray:
    """Strict conversion: ragged lists and non-numbers are errors, not object arrays."""
    try:
        arr = np.asarray(value)
    except ValueError:
        raise FgError(
            [Diagnostic(f"'{name}' in {file} is a ragged list; every row must have the same length", None)]
        ) from None
    if arr.dtype == object or arr.dtype.kind in "USV":
        raise FgError([Diagnostic(f"'{name}' in {file} must hold numbers, got {_kind(value)}", None)])
    return arr


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    if value is None:
        return "null"
    return "non-numeric or ragged values"
