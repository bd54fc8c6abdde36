"""``fn`` inlining (SPEC 5): a call to a user fn becomes its body, so that no
later stage knows fns exist.

A mixin of ``Checker`` (it reads the checker's ``fns`` and ``scope``).
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from fglang.compiler import ast as A
from fglang.compiler.expr import map_children, substitute


class Inlining:
    """Needs from its host: ``fns``, ``scope`` (a declared name hides a fn of the
    same name) and ``_fresh``, a counter for renamed indices (one per model, so
    that the names are the same whenever a model is compiled)."""

    fns: dict[str, A.FnDecl]
    scope: dict
    _fresh: itertools.count

    def inline(self, e):
        """Replace calls to user fns by their bodies (SPEC 5: fns are inlined)."""
        if e is None:
            return None
        if isinstance(e, A.Call):
            args = tuple(self.inline(a) for a in e.args)
            kwargs = tuple(A.Kwarg(k.name, self.inline(k.value), k.span) for k in e.kwargs)
            if e.func in self.fns and e.func not in self.scope:
                return self._expand_fn(self.fns[e.func], args, e.span)
            return replace(e, args=args, kwargs=kwargs)
        return map_children(e, self.inline)

    def _expand_fn(self, fn: A.FnDecl, args: tuple[A.Expr, ...], span: A.Span) -> A.Expr:
        env: dict[str, A.Expr] = {p.name: a for p, a in zip(fn.params, args)}
        for name, e, _ in fn.lets:
            env[name] = substitute(self.inline(self._freshen(e)), env)
        return substitute(self.inline(self._freshen(fn.body)), env)

    def _freshen(self, e: A.Expr) -> A.Expr:
        """Rename reduction indices inside a fn body so that inlining cannot
        capture a caller's index of the same name."""
        if isinstance(e, A.Reduce):
            ren = {r.name: f"{r.name}__{next(self._fresh)}" for r in e.ranges}
            sub = {old: A.Name(e.span, new) for old, new in ren.items()}
            ranges = tuple(
                A.IndexRange(ren[r.name], substitute(r.lo, sub), substitute(r.hi, sub), r.span) for r in e.ranges
            )
            return replace(e, ranges=ranges, body=self._freshen(substitute(e.body, sub)))
        if isinstance(e, A.Scan):
            k = next(self._fresh)
            t, state = f"{e.index.name}__{k}", f"{e.state}__{k}"
            sub = {e.index.name: A.Name(e.index.span, t), e.state: A.Name(e.state_span or e.span, state)}
            index = A.IndexRange(t, self._freshen(e.index.lo), self._freshen(e.index.hi), e.index.span)
            body = self._freshen(substitute(e.body, sub))
            return replace(e, index=index, init=self._freshen(e.init), state=state, body=body)
        return map_children(e, self._freshen)
