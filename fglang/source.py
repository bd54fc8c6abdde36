"""Source text: decoding a file's bytes, and the one rule for what a line is.

Lark counts lines by ``\\n`` alone, so every error position is in those
lines; ``str.splitlines`` also breaks at form feeds, vertical tabs, U+2028
and others, and would quote the wrong line after one of them (even in a
comment). Everything that turns a position back into a source line uses
``source_lines`` (defined in ``fglang.errors``, which formats them). A file
that is not UTF-8 is a located error at its first bad byte, not a
``UnicodeDecodeError``.
"""

from __future__ import annotations

from pathlib import Path

from fglang.errors import Diagnostic, FgError, source_lines
from fglang.span import Span

__all__ = ["decode_source", "read_source", "source_lines"]


def decode_source(raw: bytes, file: str) -> str:
    """UTF-8 text of a model file; a byte that is not UTF-8 is an error at its line and column."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        start = raw.rfind(b"\n", 0, err.start) + 1
        col = len(raw[start : err.start].decode("utf-8", errors="replace")) + 1
        byte = raw[err.start : err.start + 1].hex()
        raise FgError(
            [
                Diagnostic(
                    f"this file is not UTF-8: byte 0x{byte} cannot start or continue a character",
                    Span(file, line, col, line, col + 1),
                    "save the file as UTF-8 (a Latin-1 'é' is the byte 0xe9; in UTF-8 it is 0xc3 0xa9)",
                )
            ],
            {file: raw.decode("utf-8", errors="replace")},
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def read_source(path: Path, file: str | None = None) -> str:
    """Read and decode a model file (OSError is left to the caller, which knows where to report it)."""
    return decode_source(path.read_bytes(), str(path) if file is None else file)
