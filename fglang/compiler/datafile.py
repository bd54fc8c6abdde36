"""Reading data files: JSON in CmdStan's layout (as posteriordb uses) and .npz.

Errors here have no model position, so they name the file and the key (or
the file's own line and column). A damaged file is always an ``FgError``:
a truncated or empty ``.npz``, JSON nested deeper than Python's recursion,
an int of thousands of digits, bytes that are not UTF-8.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from fglang.errors import Diagnostic, FgError
from fglang.source import decode_source
from fglang.span import Span

INT_MAX = 2**63 - 1
_LONG_INT = re.compile(r"-?\d{41,}")


class _LongInt(Exception):
    """An int literal too long to be a 64-bit int (and maybe past Python's 4300-digit limit)."""


def _parse_int(text: str) -> int:
    if len(text) > 40:
        raise _LongInt(text)
    return int(text)


def read_data(path: str | Path) -> dict[str, Any]:
    """A dict of name -> number or array; JSON nulls and strings are refused."""
    path = Path(path)
    here = Span(str(path), 0, 0, 0, 0)
    if not path.exists():
        raise FgError([Diagnostic(f"data file not found: {path}", None)])
    if path.suffix.lower() == ".npz":
        return _read_npz(path, here)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise FgError([Diagnostic(f"cannot read data file: {err.strerror or err}", here)]) from None
    text = decode_source(raw, str(path))
    try:
        obj = json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as err:
        span = Span(str(path), err.lineno, err.colno, err.lineno, err.colno + 1)
        raise FgError([Diagnostic(f"malformed JSON: {err.msg}", span)], {str(path): text}) from None
    except _LongInt as err:
        m = _LONG_INT.search(text)
        span = here if m is None else _offset_span(str(path), text, m.start(), m.end())
        raise FgError(
            [Diagnostic(f"an int of {len(str(err).lstrip('-'))} digits does not fit in a 64-bit int", span,
                        "ints in data must lie within +-9223372036854775807")],
            {str(path): text},
        ) from None
    except RecursionError:
        raise FgError(
            [Diagnostic("the JSON is nested too deeply (thousands of levels)", here,
                        "data arrays have at most 32 dimensions")]
        ) from None
    if not isinstance(obj, dict):
        raise FgError([Diagnostic("a data file must hold a JSON object of name: value pairs", here)])
    return obj


def _offset_span(file: str, text: str, start: int, end: int) -> Span:
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    return Span(file, line, col, line, col + (end - start))


def _read_npz(path: Path, here: Span) -> dict[str, Any]:
    """Every array of an ``.npz``; any failure to decode it is the file's fault, not fglang's."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ValueError("it holds one array, not named arrays (write it with numpy.savez)")
            return {k: z[k] for k in z.files}
    except OSError as err:
        raise FgError([Diagnostic(f"cannot read data file: {err.strerror or err}", here)]) from None
    except MemoryError:
        raise FgError([Diagnostic("an array in this .npz is too large to load", here)]) from None
    except Exception as err:  # noqa: BLE001 - zipfile, zlib and numpy.format each raise their own kinds
        why = str(err) or type(err).__name__
        raise FgError(
            [Diagnostic(f"cannot read data file: not a valid .npz archive ({why})", here,
                        "write it with numpy.savez(path, name=array, ...)")]
        ) from None


def to_array(name: str, value: Any, file: str) -> np.ndarray:
    """Strict conversion: ragged lists and non-numbers are errors, not object arrays."""
    try:
        arr = np.asarray(value)
    except (ValueError, OverflowError) as err:
        deep = "number of dimension" in str(err) or "maximum supported dimension" in str(err)
        what = ("nested too deeply (NumPy arrays have at most 64 dimensions)" if deep
                else "a ragged list; every row must have the same length")
        raise FgError([Diagnostic(f"'{name}' in {file} is {what}", None)]) from None
    if arr.dtype == object and _has_huge_int(value):
        raise FgError(
            [Diagnostic(f"'{name}' in {file} holds an int outside the 64-bit range (+-9223372036854775807)", None)]
        )
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise FgError([Diagnostic(f"'{name}' in {file} must hold numbers, got {_kind(value, arr)}", None)])
    return arr


def _has_huge_int(value: Any) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, list | tuple):
            stack.extend(v)
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > INT_MAX:
            return True
    return False


def _kind(value: Any, arr: np.ndarray) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    if value is None:
        return "null"
    if arr.dtype.kind == "c":
        return "complex numbers"
    return "non-numeric or ragged values"
