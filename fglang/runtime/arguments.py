"""Wrong Python types passed to the public API, reported as fglang errors.

``fglang.load(3)`` or ``model.fit(data, backend=None)`` used to fail deep
inside pathlib, difflib or Lark with a TypeError that named none of the
user's arguments. Each public entry point checks its arguments' types
first with ``expect`` and raises ``ArgumentError``: an ``FgError`` (what
every other mistake raises, so one ``except FgError`` catches them all)
that is also a ``TypeError`` (what Python code expects of a wrong type).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fglang.errors import Diagnostic, FgError


class ArgumentError(FgError, TypeError):
    """A public function's argument of the wrong Python type."""

    def __init__(self, message: str, hint: str | None = None):
        FgError.__init__(self, [Diagnostic(message, None, hint)])


def expect(value: Any, types: type | tuple[type, ...], what: str, expected: str, hint: str | None = None) -> None:
    """Raise ``ArgumentError`` unless ``value`` is an instance of ``types``
    (``bool`` never passes for ``int``: ``seed=True`` is a mistake)."""
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in _tuple(types))
    if not ok:
        raise ArgumentError(f"{what} must be {expected}, got {_show(value)}", hint)


def expect_path(value: Any, what: str) -> None:
    expect(value, (str, Path), what, "a path (a str or pathlib.Path)")


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}" if not isinstance(value, type(None)) else "None"
