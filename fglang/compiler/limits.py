"""Limits before work: how big a model may get, checked before anything is allocated.

A size of 1e12, a fn nested thirty levels that uses its argument twice, or
reductions nested twenty deep would each run a stage out of memory or time
(a ``MemoryError``, an ``OverflowError`` from NumPy, an abort inside XLA, or
an hour of checking). Each is refused here, at its source position, with
the estimate in the message:

* ``measure`` gives an expression's size once fn calls are inlined (a DAG
  walk with shared bodies counted per use, so computing it is linear); a
  let counts as one node, since it is computed once and shared by its uses
  (compiler/dag.py), but its reductions still nest inside the user's;
* ``Budget`` adds up what binding allocates (data defaults, var nodes,
  family members, reduction pads, slot indices) and stops at the memory
  limit: a fraction of this machine's memory (or of the process's
  address-space limit), or ``FGLANG_MAX_BYTES`` to set it.
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Mapping

from fglang.compiler import ast as A
from fglang.compiler.expr import children
from fglang.errors import Diagnostic, FgError

MAX_DIMS = 32  # dimensions of one data or var declaration (NumPy's limit is 64, and members add axes)
MAX_REDUCTION_NESTING = 16  # each nested reduction is one more axis of every padded index array
MAX_EXPR_NODES = 100_000  # an expression's size after inlining fns
FRACTION = 0.25  # of the machine's memory (or the address-space limit) that binding may allocate
ENV = "FGLANG_MAX_BYTES"


def show_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}" if n < 1e15 else f"{n:.3g} bytes"
    return f"{int(n)} bytes"


def show_count(n: float, noun: str | None = None, plural: str | None = None) -> str:
    """``1,000,000 members``; past 1e15, ``1e+20 members``."""
    text = f"{int(n):,}" if n < 1e15 else f"{n:.3g}"
    if noun is None:
        return text
    return f"{text} {noun if n == 1 else plural or noun + 's'}"


def memory_limit() -> tuple[float, str]:
    """(bytes binding may allocate, where that number comes from)."""
    text = os.environ.get(ENV)
    if text:
        try:
            v = float(text)
        except ValueError:
            hint = "e.g. FGLANG_MAX_BYTES=64e9"
            raise FgError([Diagnostic(f"{ENV}={text!r} is not a number of bytes", None, hint)]) from None
        if not v > 0:
            raise FgError([Diagnostic(f"{ENV}={text!r} must be a positive number of bytes", None)])
        return v, f"{ENV}={text}"
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 16 << 30
    what = "this machine's memory"
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY and 0 < soft < total:
        total, what = soft, "this process's address-space limit"
    return FRACTION * total, f"{int(FRACTION * 100)}% of {what}"


class Budget:
    """The running estimate of what one bind allocates; ``charge`` before each allocation."""

    def __init__(self, sources: Mapping[str, str] | None = None, limit: tuple[float, str] | None = None):
        self.limit, self.source = limit if limit is not None else memory_limit()
        self.used = 0.0
        self.sources = dict(sources or {})

    def charge(self, nbytes: float, what: str, span: A.Span | None, hint: str | None = None) -> None:
        """``what`` says what is allocated ('var 'w': 1e10 nodes of 1 value, 8 bytes each')."""
        self.used += float(nbytes)
        if self.used > self.limit:
            raise FgError(
                [
                    Diagnostic(
                        f"this model is too large to bind: {what} needs about {show_bytes(nbytes)}"
                        f" ({show_bytes(self.used)} in all), over fglang's memory limit",
                        span,
                        hint or f"the limit is {show_bytes(self.limit)} ({self.source}); make the sizes smaller,"
                        f" or if the machine has the memory raise it with {ENV}=<bytes>",
                    )
                ],
                self.sources,
            )


def elements(shape) -> float:
    """A shape's element count as a float (a product of huge sizes must not wrap around in int64)."""
    return math.prod(float(s) for s in shape)


def measure(root: A.Expr, lets: Mapping[str, tuple[float, int]]) -> tuple[float, int]:
    """(node count once fn calls are inlined, depth of nested reductions).

    ``lets`` holds each let's own measure: a use of a let is one node (the let
    is computed once and shared) that nests the let's reductions. Fn calls are
    already inlined, with their argument expressions shared, so each distinct
    node is visited once."""
    memo: dict[int, tuple[float, int]] = {}
    stack: list[tuple[A.Expr, bool]] = [(root, False)]
    keep = []  # keeps every node alive while its id() is a key
    while stack:
        e, ready = stack.pop()
        if id(e) in memo:
            continue
        kids = children(e)
        if not ready:
            stack.append((e, True))
            stack.extend((c, False) for c in kids if id(c) not in memo)
            continue
        keep.append(e)
        size = 1.0 + sum(memo[id(c)][0] for c in kids)
        depth = max((memo[id(c)][1] for c in kids), default=0)
        if isinstance(e, A.Reduce | A.Scan):
            depth += 1
        if isinstance(e, A.Name) and e.id in lets:
            size, depth = 1.0, lets[e.id][1]
        memo[id(e)] = (size, depth)
    return memo[id(root)]


def too_large(m: tuple[float, int], span: A.Span) -> list[Diagnostic]:
    """The limits an inlined expression of measure ``m`` (see ``measure``) breaks, at ``span``."""
    size, depth = m
    out = []
    if size > MAX_EXPR_NODES:
        out.append(
            Diagnostic(
                f"this expression is too large: with its fn calls and lets inlined it has {show_count(size)} nodes"
                f" (at most {MAX_EXPR_NODES:,})",
                span,
                "a fn (or let) that uses its argument more than once doubles the size at every level of nesting;"
                " compute the repeated value once, in a let that is not nested, or use a reduction",
            )
        )
    if depth > MAX_REDUCTION_NESTING:
        out.append(
            Diagnostic(
                f"reductions are nested {depth} deep here (at most {MAX_REDUCTION_NESTING}): every level is one more"
                " axis of the padded index arrays",
                span,
                "sum over several indices in one reduction, sum[i in 0:N, j in 0:M](...), or split it into lets",
            )
        )
    return out


def too_many_dims(n: int, what: str, span: A.Span) -> list[Diagnostic]:
    if n <= MAX_DIMS:
        return []
    return [Diagnostic(f"{what} has {n} dimensions; fglang allows at most {MAX_DIMS}", span,
                       "flatten some dimensions into one, indexing it with i * M + j")]


def refuse_over_limit(charges: list[tuple[float, str, A.Span | None]], stage: str, sources: Mapping[str, str],
                      hint: str, limit: tuple[float, str] | None = None) -> None:
    """The one rule for memory a stage is about to allocate: the sum of
    ``charges`` (bytes, what, where) within ``memory_limit``, else an
    ``FgError`` at the largest charge's source position with the estimate,
    the limit, what to make smaller (``hint``) and how to raise the limit."""
    limit_bytes, source = limit if limit is not None else memory_limit()
    total = sum(c[0] for c in charges)
    if total <= limit_bytes:
        return
    nbytes, what, span = max(charges, key=lambda c: c[0])
    raise FgError(
        [
            Diagnostic(
                f"this {stage} would need about {show_bytes(total)}, over fglang's memory limit of"
                f" {show_bytes(limit_bytes)} ({source}); the largest part: {what}, about {show_bytes(nbytes)}",
                span,
                f"{hint}; or, if the machine has the memory, raise the limit with {ENV}=<bytes>",
            )
        ],
        sources,
    )
