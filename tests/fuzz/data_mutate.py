"""Mutations of a data file: values swapped for hostile ones (huge ints,
``1e20`` for an int, NaN, strings, ragged or deep lists), keys dropped or
added, the JSON text damaged, and the same data as a (damaged) ``.npz``.

``mutate_data(rnd, data) -> (file name, file body)``.
"""

from __future__ import annotations

import copy
import io
import json
import random
import re
from typing import Any

import numpy as np

HOSTILE_VALUES: tuple[Any, ...] = (
    0, -1, 1, 2, 10**10, 10**12, 2**31, 2**63, 2**63 - 1, -(2**63) - 1, 2**64, None,
    1e20, 1e300, -1e300, 1e-320, 0.5, float("nan"), float("inf"), -float("inf"), True, False, "x", "", [],
    [[]], {}, [1, [2]], [None], [1e999], [[1, 2], [3]],
)


def _hostile(rnd: random.Random) -> Any:
    k = rnd.randrange(10)
    if k == 0:
        return int("9" * rnd.choice((20, 400, 4000)))
    if k == 1:
        v: Any = 1
        for _ in range(rnd.choice((10, 100, 500))):
            v = [v]
        return v
    return rnd.choice(HOSTILE_VALUES)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, list):
        for i, x in enumerate(obj[:50]):
            out.extend(_paths(x, prefix + (i,)))
    return out


def _set(obj: dict, key: str, path: tuple, value: Any) -> None:
    if not path:
        obj[key] = value
        return
    target = obj[key]
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value


def mutate_structure(rnd: random.Random, data: dict) -> dict:
    d = copy.deepcopy(data)
    for _ in range(rnd.choice((1, 1, 2, 3))):
        if not d:
            d["extra"] = _hostile(rnd)
            continue
        key = rnd.choice(sorted(d))
        op = rnd.randrange(10)
        if op == 0:
            del d[key]
        elif op == 1:
            d[key + "_x"] = _hostile(rnd)
        elif op == 2 and isinstance(d[key], list) and d[key]:
            d[key] = d[key][: rnd.randrange(len(d[key]))] if rnd.random() < 0.5 else d[key] + d[key][:1]
        elif op == 3 and isinstance(d[key], int | float) and not isinstance(d[key], bool):
            d[key] = rnd.choice((d[key] * 10**rnd.choice((3, 6, 9, 12)), float(d[key]) * 1e18, -d[key], d[key] + 1))
        else:
            path = rnd.choice(_paths(d[key]))
            _set(d, key, path, _hostile(rnd))
    return d


def _json_text(rnd: random.Random, d: dict) -> str:
    text = json.dumps(d, allow_nan=True)
    k = rnd.randrange(8)
    if k == 0 and text:
        return text[: rnd.randrange(len(text))]
    if k == 1:
        return rnd.choice(("", "null", "[]", "1", '"x"', "\ufeff" + text, "[" * 100_000, '{"N": ' + "9" * 5000 + "}"))
    if k == 2:  # an int written as a float in the text
        return text.replace(": 3", ": 1e20", 1).replace(": 8", ": 9.3e18", 1)
    if k == 3:  # a value replaced by text no encoder writes: 5000 digits, 100000 brackets
        keys = [m.end() for m in re.finditer(r'": ', text)]
        if keys:
            i = rnd.choice(keys)
            j = i + len(re.match(r"[-0-9.eE+a-zA-Z]*", text[i:]).group())
            bad = rnd.choice(("9" * 5000, "[" * 100_000 + "1" + "]" * 100_000, "1" + "0" * 400, "-0", "1E400"))
            return text[:i] + bad + text[j:]
    return text


def _npz(rnd: random.Random, d: dict) -> bytes:
    arrays = {}
    for k, v in d.items():
        try:
            a = np.asarray(v)
        except ValueError:
            continue
        if a.dtype == object:
            continue
        r = rnd.random()
        if r < 0.15 and a.dtype.kind in "if":
            a = a.astype(rnd.choice((np.int8, np.uint64, np.float16, np.complex128, np.bool_, "U3", np.uint8)))
        elif r < 0.2:
            a = a.reshape((1,) + a.shape)
        arrays[k] = a
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    raw = bytearray(buf.getvalue())
    k = rnd.randrange(6)
    if k == 0:
        raw = raw[: rnd.randrange(len(raw) + 1)]
    elif k == 1:
        for _ in range(rnd.choice((1, 4, 32))):
            raw[rnd.randrange(len(raw))] = rnd.randrange(256)
    elif k == 2:
        raw = bytearray()
    return bytes(raw)


def mutate_data(rnd: random.Random, data: dict) -> tuple[str, str | bytes]:
    d = mutate_structure(rnd, data) if rnd.random() < 0.85 else copy.deepcopy(data)
    if rnd.random() < 0.25:
        return "data.npz", _npz(rnd, d)
    return "data.json", _json_text(rnd, d)


# values that parse, have the declared type and bind, and are wrong only once a fit reads them
RUNTIME_VALUES: tuple[Any, ...] = (0, 0.0, -1, -1.0, 1e-30, -1e-30, 1e-300, 1e30, 1e300, -1e300, 3.4e38, 1e-45)


def _number_paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, int | float):
        return [prefix]
    if isinstance(obj, list):
        return [p for i, x in enumerate(obj[:50]) for p in _number_paths(x, prefix + (i,))]
    return []


def _square(obj: Any) -> bool:
    return (isinstance(obj, list) and len(obj) > 1 and all(isinstance(r, list) and len(r) == len(obj) for r in obj)
            and all(isinstance(x, int | float) for r in obj for x in r))


def _squares(obj: Any, prefix: tuple = ()) -> list[tuple]:
    if _square(obj):
        return [prefix]
    if isinstance(obj, list):
        return [p for i, x in enumerate(obj[:20]) for p in _squares(x, prefix + (i,))]
    return []


def mutate_values(rnd: random.Random, data: dict) -> dict:
    """A few numbers set to ones invalid at run time (a zero or tiny scale, an outcome past K, a value
    float32 cannot hold), or a square matrix made singular, indefinite or asymmetric."""
    d = copy.deepcopy(data)
    for _ in range(rnd.choice((1, 1, 2, 3))):
        keys = [k for k in sorted(d) if _number_paths(d[k])]
        if not keys:
            break
        key = rnd.choice(keys)
        mats = _squares(d[key])
        if mats and rnd.random() < 0.5:
            path = rnd.choice(mats)
            m = d[key]
            for p in path:
                m = m[p]
            how = rnd.randrange(3)
            if how == 0:
                m[1] = list(m[0])  # singular
            elif how == 1:
                m[0][0] = -abs(m[0][0]) - 1.0  # indefinite
            else:
                m[0][1] = m[0][1] + 0.5  # asymmetric
            continue
        path = rnd.choice(_number_paths(d[key]))
        old = d[key]
        for p in path:
            old = old[p]
        value = rnd.choice(RUNTIME_VALUES + (old + 1, old * 2 + 1, -old))
        if isinstance(old, int) and rnd.random() < 0.7:
            value = rnd.choice((-1, 0, old + 1, max(_ints(d[key]), default=0) + 1))
        _set(d, key, path, value)
    return d


def _ints(obj: Any) -> list[int]:
    return [obj] if isinstance(obj, int) and not isinstance(obj, bool) else (
        [y for x in obj for y in _ints(x)] if isinstance(obj, list) else [])
