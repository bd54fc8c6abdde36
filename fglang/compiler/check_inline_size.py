"""An expression's size once its fn calls are inlined, known before inlining it.

Inlining (inline.py) expands each call's body afresh, so a chain of fns each
calling the one before twice (``fn f1(a) { return f0(a) + f0(a) }`` ...) did
2^n expansions before ``limits.measure`` could see the result and refuse it:
n = 16 took 14 s to say "too large", n = 18 over a minute, and every further
level doubled. Here each fn's inlined size is an affine form in its
parameters, ``base + sum(uses[p] * size(argument p))``, computed once per fn
from its body (calls to other fns compose their forms), so the size of any
expression is found in time linear in its source. ``Checker.inline`` refuses
an expression over ``MAX_EXPR_NODES`` at its span with this count, the same
count ``measure`` gives, before expanding anything.
"""

from __future__ import annotations

from fglang.compiler import ast as A
from fglang.compiler.expr import children

Form = tuple[float, dict[str, float]]  # (base nodes, per parameter: how many copies of its argument)


class InlineSize:
    """Needs from its host: ``fns`` and ``scope`` (a declared name hides a fn of the same name)."""

    fns: dict[str, A.FnDecl]
    scope: dict

    def inlined_size(self, e: A.Expr) -> float:
        """``e``'s node count once every call to a user fn is replaced by its body."""
        forms = self.__dict__.setdefault("_fn_forms", {})
        return self._form(e, frozenset(), {}, forms, self.scope)[0]

    def _fn_form(self, name: str, forms: dict[str, Form | None]) -> Form:
        if name in forms:
            return forms[name] or (1.0, {})  # None: being computed (a recursive fn is an error elsewhere)
        forms[name] = None
        fn = self.fns[name]
        params = frozenset(p.name for p in fn.params)
        local: dict[str, Form] = {}
        for let, e, _ in fn.lets:
            local[let] = self._form(e, params, local, forms, {})
        form = self._form(fn.body, params, local, forms, {}) if fn.body is not None else (1.0, {})
        forms[name] = form
        return form

    def _form(self, e, params: frozenset, local: dict[str, Form], forms: dict, scope: dict) -> Form:
        stack: list[tuple[object, bool]] = [(e, False)]  # explicit: a deep expression must not hit the recursion limit
        done: dict[int, Form] = {}
        keep = []
        while stack:
            x, ready = stack.pop()
            if x is None:
                continue
            kids = children(x)
            if not ready:
                stack.append((x, True))
                stack.extend((c, False) for c in kids)
                continue
            keep.append(x)
            if isinstance(x, A.Name):
                if x.id in local:
                    done[id(x)] = local[x.id]
                elif x.id in params:
                    done[id(x)] = (0.0, {x.id: 1.0})
                else:
                    done[id(x)] = (1.0, {})
                continue
            if isinstance(x, A.Call) and x.func in self.fns and x.func not in scope:
                fbase, fuses = self._fn_form(x.func, forms)
                base, uses = fbase, {}
                for p, a in zip(self.fns[x.func].params, x.args):
                    k = fuses.get(p.name, 0.0)
                    if k:
                        abase, auses = done[id(a)]
                        base += k * abase
                        for q, n in auses.items():
                            uses[q] = uses.get(q, 0.0) + k * n
                done[id(x)] = (base, uses)
                continue
            base, uses = 1.0, {}
            for c in kids:
                cb, cu = done[id(c)]
                base += cb
                for q, n in cu.items():
                    uses[q] = uses.get(q, 0.0) + n
            done[id(x)] = (base, uses)
        return done[id(e)]
