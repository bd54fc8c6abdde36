"""The one public exception type, and the SPEC section 8 error format.

A user's mistake (in a model, its data, or the options of a fit) is an
``FgError`` carrying located diagnostics; anything else that escapes is a
bug in fglang and stays a traceback so that it gets reported and fixed.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fglang.span import Span


@dataclass(frozen=True)
class Diagnostic:
    """One located message. ``span`` is None for errors with no source position
    (a data file that cannot be read, a bad command-line option)."""

    message: str
    span: Span | None = None
    hint: str | None = None
    severity: str = "error"


class FgError(Exception):
    """Raised for every mistake in a model, its data or its options.

    ``str(err)`` is the full report in SPEC section 8's format, so Python
    users see exactly what the CLI prints.
    """

    def __init__(self, diagnostics: Iterable[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics = sorted(
            diagnostics,
            key=lambda d: (d.span.file, d.span.line, d.span.col) if d.span else ("", 0, 0),
        )
        self.sources = dict(sources or {})
        super().__init__(self.format())

    def format(self) -> str:
        return "\n".join(format_diagnostic(d, self.sources) for d in self.diagnostics)


def format_diagnostic(diag: Diagnostic, sources: dict[str, str]) -> str:
    """``file:line:col: message``, the source line, carets under the span, a hint."""
    prefix = "" if diag.severity == "error" else f"{diag.severity}: "
    if diag.span is None or diag.span.line <= 0:
        where = f"{diag.span.file}: " if diag.span is not None else ""
        out = [f"{where}{prefix}{diag.message}"]
    else:
        s = diag.span
        out = [f"{s.file}:{s.line}:{s.col}: {prefix}{diag.message}"]
        text = sources.get(s.file)
        if text is not None:
            lines = source_lines(text)
            if 1 <= s.line <= len(lines):
                out.extend(_quote(lines[s.line - 1], s))
    if diag.hint:
        out.append(f"  hint: {diag.hint}")
    return "\n".join(out)


_SHOWN = 160  # longest source excerpt quoted under a message (a generated line may be megabytes)


def _quote(raw: str, s: Span) -> list[str]:
    """The source line (or a window of a long one) and carets under the span."""
    # a form feed or U+2028 would move the terminal's cursor: shown as a space, one column each
    line = "".join(c if c == "\t" or c.isprintable() else " " for c in raw)
    end = s.end_col if s.end_line == s.line and s.end_col > s.col else len(line) + 1
    col = s.col
    if len(line) > _SHOWN:
        lo = max(0, min(col - 1 - 40, len(line) - _SHOWN))
        shown = line[lo : lo + _SHOWN]
        left, right = ("..." if lo > 0 else ""), ("..." if lo + _SHOWN < len(line) else "")
        line = left + shown + right
        col, end = col - lo + len(left), min(end - lo, _SHOWN + 1) + len(left)
    width = max(1, min(end, len(line) + 1) - col)
    # keep the line's tabs under it, so the caret lines up in a terminal
    pad = "".join(c if c == "\t" else " " for c in line[: col - 1])
    return ["    " + line, "    " + pad + "^" * width]


def source_lines(text: str) -> list[str]:
    """The lines of ``text`` as error positions count them: Lark counts ``\\n``
    alone, so split there only (``str.splitlines`` also breaks at a form feed,
    a vertical tab or U+2028 and would quote the wrong line after one); a
    ``\\r`` before the ``\\n`` belongs to the line break."""
    return [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """The closest known name, for 'unknown name' errors."""
    match = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return match[0] if match else None


TOO_DEEP = "this expression is nested too deeply for fglang (thousands of levels)"
TOO_DEEP_HINT = "split a long chain such as a + b + c + ... into lets, or write it as a reduction sum[k in a:b](...)"


@contextmanager
def recursion_headroom(limit: int = 20_000) -> Iterator[None]:
    """Parsing, checking, lowering and tracing recurse once per level of an
    expression; a generated sum of a thousand terms needs more than Python's
    default 1000 frames."""
    old = sys.getrecursionlimit()
    if old < limit:
        sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        if old < limit:
            sys.setrecursionlimit(old)


class DiagnosticSink:
    """Collects diagnostics so that a whole file is reported at once, not only
    its first mistake."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []

    def error(self, message: str, span: Span | None, hint: str | None = None) -> None:
        self.items.append(Diagnostic(message, span, hint))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, sources: dict[str, str]) -> None:
        if self.items:
            raise FgError(self.items, sources)
