"""Which residuals are affine in the node values (a static jaxpr analysis).

Why: GBP re-linearizes every family at every iteration, which for a nonlinear
factor is the point of the method but for a linear one (``x[i, j+1] ~
normal(x[i, j], s)``, an observation ``img[i, j] ~ normal(x[i, j], s)``)
recomputes the same Jacobians and data gathers each time -- most of an
iteration's cost on a lattice. An affine residual ``r(x) = J x - c`` has a
constant ``J`` and ``c``, so the engine evaluates them once per run and an
iteration only does the message algebra.

The analysis traces the residual of one member to a jaxpr and propagates a
three-point lattice through it: *constant* (does not depend on any node
value), *affine*, *nonlinear*. It is conservative: a primitive it does not
know is affine only if none of its operands depends on the nodes, so a wrong
"affine" cannot happen, only a missed one (which costs speed, not accuracy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax.extend import core as jex_core

CONST, AFFINE, NONLINEAR = 0, 1, 2

# Primitives linear in every operand (the result's class is the max of theirs).
_LINEAR = frozenset(
    {
        "add", "add_any", "sub", "neg", "reduce_sum", "reshape", "broadcast_in_dim", "squeeze",
        "expand_dims", "slice", "transpose", "rev", "concatenate", "pad", "copy", "copy_p",
        "convert_element_type", "cumsum", "real", "reduce_precision", "optimization_barrier",
    }
)
# Linear in the operands listed; the others are indices or predicates that
# must not depend on the nodes.
_LINEAR_IN_FIRST = {"dynamic_slice": 1, "gather": 1, "dynamic_update_slice": 2, "scatter-add": None,
                    "scatter_add": None}
# Bilinear: affine when at most one operand depends on the nodes.
_PRODUCT = frozenset({"mul", "dot_general"})
_SUBJAXPR_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def _is_literal(v: Any) -> bool:
    return isinstance(v, jex_core.Literal)


def _classify(jaxpr: Any, in_classes: Sequence[int]) -> list[int]:
    env: dict[Any, int] = {}
    for v, c in zip(jaxpr.invars, in_classes, strict=True):
        env[v] = c
    for v in getattr(jaxpr, "constvars", ()):
        env[v] = CONST

    def cls(v: Any) -> int:
        return CONST if _is_literal(v) else env.get(v, CONST)

    for eqn in jaxpr.eqns:
        ins = [cls(v) for v in eqn.invars]
        name = eqn.primitive.name
        top = max(ins, default=CONST)
        sub = next((eqn.params[p] for p in _SUBJAXPR_PARAMS if p in eqn.params), None)
        if top == CONST:
            outs = [CONST] * len(eqn.outvars)
        elif sub is not None and name not in ("custom_vjp_call", "custom_vjp_call_jaxpr"):
            inner = getattr(sub, "jaxpr", sub)
            n_in = len(inner.invars)
            outs = _classify(inner, ins[len(ins) - n_in :] if len(ins) >= n_in else ins + [CONST] * (n_in - len(ins)))
        elif name in _LINEAR:
            outs = [top] * len(eqn.outvars)
        elif name in _LINEAR_IN_FIRST:
            n_lin = _LINEAR_IN_FIRST[name]
            if name.startswith("scatter"):
                lin, idx = [ins[0], ins[2]], [ins[1]]
            else:
                lin, idx = ins[:n_lin], ins[n_lin:]
            outs = [NONLINEAR if max(idx, default=CONST) > CONST else max(lin)] * len(eqn.outvars)
        elif name in _PRODUCT:
            outs = [top if sum(c > CONST for c in ins) <= 1 else NONLINEAR] * len(eqn.outvars)
        elif name == "div":
            outs = [ins[0] if ins[1] == CONST else NONLINEAR]
        elif name == "select_n":
            outs = [NONLINEAR if ins[0] > CONST else max(ins[1:])]
        elif name == "integer_pow" and eqn.params.get("y") == 1:
            outs = [top]
        else:
            outs = [NONLINEAR] * len(eqn.outvars)
        for v, c in zip(eqn.outvars, outs, strict=True):
            env[v] = c
    return [cls(v) for v in jaxpr.outvars]


def _result_class(
    fn: Callable[..., Any], consts: Any, xs: Sequence[Any], consts_class: int, xs_class: int
) -> int | None:
    """The lattice class of ``fn(consts, *xs)`` with its inputs marked as given;
    None when tracing fails."""
    try:
        closed = jax.make_jaxpr(fn)(consts, *xs)
    except Exception:  # noqa: BLE001 - any trace failure just means "unknown"
        return None
    n_const = len(jax.tree_util.tree_leaves(consts))
    jaxpr = closed.jaxpr
    classes = [consts_class] * n_const + [xs_class] * (len(jaxpr.invars) - n_const)
    return max(_classify(jaxpr, classes), default=CONST)


def is_affine(fn: Callable[..., Any], consts: Any, xs: Sequence[Any]) -> bool:
    """Whether ``fn(consts, *xs)`` is affine in ``xs`` (``consts`` held fixed).

    ``consts`` and ``xs`` may be arrays or ``jax.ShapeDtypeStruct``s (only shapes
    are traced). Returns False when tracing fails: the caller then takes the
    general (re-linearizing) path.
    """
    cls = _result_class(fn, consts, xs, CONST, AFFINE)
    return cls is not None and cls <= AFFINE


def reads_consts(fn: Callable[..., Any], consts: Any, xs: Sequence[Any]) -> bool:
    """Whether the value of ``fn(consts, *xs)`` depends on ``consts`` at all.

    The same lattice, with ``consts`` marked instead of ``xs``: a result still
    *constant* does not read them. An affine residual that does not (``x[i, j+1]
    ~ normal(x[i, j], s)``: the member's indices only choose the nodes) has the
    same Jacobian and target for every member, which the engine then keeps as
    one row. True (the safe answer) when tracing fails.
    """
    cls = _result_class(fn, consts, xs, AFFINE, CONST)
    return cls is None or cls > CONST
