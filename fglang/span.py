"""Source positions, below every other fglang module.

Errors (``fglang.errors``) and the syntax tree (``fglang.compiler.ast``)
both need a span; keeping it here lets errors name a position without
importing the compiler.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A half-open source region; lines and columns are 1-based as editors show them."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def cover(self, other: Span) -> Span:
        """The smallest span holding both (same file assumed)."""
        start = min((self.line, self.col), (other.line, other.col))
        end = max((self.end_line, self.end_col), (other.end_line, other.end_col))
        return Span(self.file, start[0], start[1], end[0], end[1])
