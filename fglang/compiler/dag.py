"""Expressions as DAGs: a ``let`` is one node however often it is used.

Why: lowering expands every let into the expressions that use it. Done as a
tree, a chain of lets that each use the previous one twice doubles at every
link (20 links, a million nodes). Done as a DAG, a let's expansion is one
Python object referenced from every use, and every pass over the lowered
expressions (tagging, slot extraction, binding's scans, the JAX evaluator)
visits each distinct node once by caching on the node's identity.

``SharedMemo`` is that cache: keyed by ``id(node)`` (and whatever context a
pass adds), holding the node itself so that no id is reused while it lives.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import fields, is_dataclass, replace
from typing import Any

from fglang.compiler import ast as A
from fglang.compiler.expr import children, map_children


class SharedMemo:
    """Results of a pass per (node identity, context)."""

    def __init__(self) -> None:
        self._d: dict[tuple, tuple[Any, Any]] = {}

    def get(self, node: Any, context: Hashable = None) -> tuple[bool, Any]:
        hit = self._d.get((id(node), context))
        if hit is None:
            return False, None
        return True, hit[1]

    def put(self, node: Any, value: Any, context: Hashable = None) -> Any:
        self._d[(id(node), context)] = (node, value)
        return value

    def __call__(self, f: Callable[[Any], Any], node: Any, context: Hashable = None) -> Any:
        """``f(node)``, computed once per (node, context)."""
        found, value = self.get(node, context)
        if found:
            return value
        return self.put(node, f(node), context)


class StructuralKeys:
    """One small int per distinct structure of an expression (spans ignored),
    computed once per node identity: two index expressions written apart
    (``w[k[0]]`` twice) get the same key, so a pass keyed on it shares their work.

    Why not ``hash(node)``: a frozen dataclass hashes its children again at
    every use, exponential on a DAG; here each node is keyed from its
    children's keys (hash-consing), linear in the distinct nodes."""

    def __init__(self) -> None:
        self._memo = SharedMemo()
        self._table: dict[tuple, int] = {}

    def of(self, node: Any) -> int:
        return self._memo(self._key, node)

    def _key(self, x: Any) -> int:
        if x is None:
            return -1
        if isinstance(x, tuple):
            parts: tuple = ("tuple", tuple(self.of(c) for c in x))
        elif not is_dataclass(x):
            parts = ("leaf", type(x).__name__, x)  # a str, number or bool field
        else:  # every compared field, children by key (a range or kwarg field by its own fields)
            parts = (type(x).__name__,) + tuple(self.of(getattr(x, f.name)) for f in fields(x) if f.compare)
        return self._table.setdefault(parts, len(self._table))


def shared_map(e: Any, f: Callable[[Any], Any], memo: SharedMemo, context: Hashable = None) -> Any:
    """``map_children`` for a DAG: ``f`` is applied once per distinct child."""
    return map_children(e, lambda c: memo(f, c, context))


def rename_shared(e: A.Expr, names: Mapping[str, str], memo: SharedMemo | None = None) -> A.Expr:
    """Rename free names, keeping each use's own span (errors point at it) and a
    DAG a DAG (a shared node is renamed once); a reduction's or scan's own
    index (and a scan's state) hides the outer name."""
    memo = memo if memo is not None else SharedMemo()
    key = tuple(sorted(names.items()))

    def go(x: A.Expr) -> A.Expr:
        if isinstance(x, A.Name) and x.id in names:
            return replace(x, id=names[x.id])
        if isinstance(x, A.Reduce):
            inner = {k: v for k, v in names.items() if k not in {r.name for r in x.ranges}}
            ranges = tuple(
                A.IndexRange(r.name, rename_shared(r.lo, names, memo), rename_shared(r.hi, names, memo), r.span)
                for r in x.ranges
            )
            return replace(x, ranges=ranges, body=rename_shared(x.body, inner, memo))
        if isinstance(x, A.Scan):
            inner = {k: v for k, v in names.items() if k not in (x.index.name, x.state)}
            r = x.index
            index = A.IndexRange(r.name, rename_shared(r.lo, names, memo), rename_shared(r.hi, names, memo), r.span)
            return replace(x, index=index, init=rename_shared(x.init, names, memo),
                           body=rename_shared(x.body, inner, memo))
        return map_children(x, lambda c: memo(go, c, key))

    return memo(go, e, key)


def tree_size(e: Any) -> float:
    """How many nodes ``e`` would have written out as a tree (computed on the
    DAG, in linear time): what printing it would cost."""
    memo = SharedMemo()

    def go(x: Any) -> float:
        return 1.0 + sum(memo(go, c) for c in children(x))

    return memo(go, e) if e is not None else 0.0


PRINTABLE_NODES = 400  # a lowered expression larger than this as a tree is shown as written


def written(span: A.Span, sources: Mapping[str, str]) -> str | None:
    """The source text at ``span`` (one line; None when the source is not at hand)."""
    text = sources.get(span.file)
    if text is None:
        return None
    lines = text.splitlines()
    if not 0 < span.line <= len(lines):
        return None
    line = lines[span.line - 1]
    end = span.end_col - 1 if span.end_line == span.line else len(line)
    return line[span.col - 1 : end].strip()


def distinct_nodes(roots) -> list:
    """Every distinct node under any of ``roots`` once (lets share nodes with each other)."""
    seen: dict[int, Any] = {}
    stack = [r for r in roots if r is not None]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen[id(x)] = x
        stack.extend(c for c in children(x) if c is not None)
    return list(seen.values())
