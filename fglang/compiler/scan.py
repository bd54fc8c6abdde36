"""The recurrence ``scan[t in lo:hi](init, prev -> step)``: its typing rules.

Why a construct of its own: a state carried from one step to the next
(GARCH's variance, ARMA's error, an HMM's forward log-probabilities) cannot
be written with factor families or reductions except by unrolling it, which
is quadratic in the length (and exponential if each step used the previous
one twice). A scan is evaluated by ``lax.scan`` (``compiler/scan_jax.py``),
so NUTS and VI differentiate through it in time linear in its length.

Its value is the ``hi - lo + 1`` states ``init, step(lo), ..., step(hi-1)``
stacked along a new first axis: with ``lo = 1`` the state at time ``t`` is
``h[t]``, as in a Stan program that sets ``h[1]`` before its loop. The range
must be fixed by the data's sizes (every step of a scan runs for every
member); the step reads the state before it through its own name (``prev``)
and must return a value of the state's shape.

A mixin of ``Checker``, like ``infer``: it reads the checker's scope and
reports through its sink. Lowering treats the scan's index like a
reduction's (``lower.Lowering.extract``), so a var indexed by it becomes a
slot with one block per step.
"""

from __future__ import annotations

from fglang.compiler import ast as A
from fglang.compiler.infer import Symbol
from fglang.compiler.infer_groups import describe, is_group
from fglang.compiler.types import ERROR, T, dims_differ, show_shape
from fglang.compiler.unparse import unparse

STATE_HINT = "the step returns the next state: scan[t in 1:T](h0, prev -> a + b * prev)"


class ScanTyping:
    """Needs from its host: ``scope``, ``err``, ``infer``, ``range_bounds``,
    ``sized``, ``dim``, ``defer`` and ``no_group`` (``check.Checker``)."""

    scope: dict[str, Symbol]

    def infer_Scan(self, e: A.Scan) -> T:
        r = e.index
        self.range_bounds(r, ())
        static = True
        for part in (r.lo, r.hi):
            if not self.sized(part):
                self.err(
                    "a scan's range must be fixed by the data's sizes (int data and constants)",
                    part.span,
                    "every step runs for every member of a factor; index the result instead: h[t]",
                )
                static = False
        it = self.infer(e.init)
        if not it.ok:
            self.infer_step(e, T("real", (), True))
            return ERROR
        if is_group(it):
            self.err(f"a scan's state must be numbers, got {describe(it)}", e.init.span, STATE_HINT)
            return ERROR
        if it.dtype == "bool":
            self.err("a scan's state must be numbers, got a comparison (bool)", e.init.span)
            return ERROR
        bt = self.infer_step(e, T("real", it.shape, it.var))
        if not bt.ok:
            return ERROR
        if is_group(bt) or bt.dtype == "bool":
            got = "a comparison (bool)" if bt.dtype == "bool" else describe(bt)
            self.err(f"a scan's step must return numbers, got {got}", e.body.span, STATE_HINT)
            return ERROR
        if len(bt.shape) != len(it.shape) or any(dims_differ(a, b) for a, b in zip(bt.shape, it.shape)):
            self.err(
                f"a scan's step must return the state's shape {show_shape(it.shape)}, got {show_shape(bt.shape)}",
                e.body.span,
                f"the initial state '{_short(e.init)}' fixes the state's shape; every step must keep it",
            )
            return ERROR
        if bt.shape != it.shape:
            self.defer(
                "same",
                (it.shape, bt.shape),
                "a scan's step must return the state's shape {0}, got {1}",
                e.body.span,
                e,
            )
        if not static:
            return ERROR
        length = A.BinOp(r.span, "+", A.BinOp(r.span, "-", r.hi, r.lo), A.Num(r.span, 1, True))
        return T("real", (self.dim(length),) + it.shape, it.var or bt.var)

    def infer_step(self, e: A.Scan, state: T) -> T:
        """The step's type, with the index and the state in scope."""
        saved = dict(self.scope)
        r = e.index
        for name, span in ((r.name, r.span), (e.state, e.state_span or e.span)):
            if name in self.scope and self.scope[name].kind not in ("index", "local"):
                self.err(f"'{name}' in this scan hides the declared name '{name}'", span, "choose another name")
        if r.name == e.state:
            self.err(f"the scan's index and its state are both called '{r.name}'", e.state_span or e.span)
        self.scope[r.name] = Symbol("index", T("int"))
        self.scope[e.state] = Symbol("local", state)
        try:
            return self.infer(e.body)
        finally:
            self.scope = saved


def _short(e: A.Expr) -> str:
    text = unparse(e)
    return text if len(text) <= 30 else text[:27] + "..."
