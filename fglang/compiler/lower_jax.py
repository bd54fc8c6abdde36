"""IR expressions -> pure JAX functions, vectorized over a family's members.

Each family's expressions are written for one member (indices are scalars,
slots hold that member's nodes) and ``jax.vmap`` lifts them to all members at
once: a data access ``y[t]`` becomes one gather, a slot one batched array,
and no Python loop over members ever runs. Sizes are Python ints closed over
here, so a function is traced once per model shape; data arrive as
arguments, so new data of the same shape reuse the compiled code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fglang.compiler import ast as A
from fglang.compiler.bound import SharedSlot
from fglang.compiler.builtins import CONSTANTS
from fglang.compiler.distributions import DISTRIBUTIONS
from fglang.compiler.expr import static_value
from fglang.compiler.groups import untag
from fglang.compiler.ir import SlotRef
from fglang.compiler.member_axis_jax import member_dependent
from fglang.compiler.scan_jax import evaluate_scan
from fglang.compiler.sizes import Static
from fglang.compiler.stanlib_jax import STANLIB
from fglang.errors import recursion_headroom

# (distribution name, canonical arguments, value[, "lcdf" | "lccdf"]) -> log density
# (or log CDF, log complementary CDF). The backend
# supplies it (the NumPyro table), so `logp` and `~` agree under every backend
# and the compiler imports no backend.
LogDensity = Callable[[str, dict, Any], Any]


def wrap_angle(a):
    """Map an angle into (-pi, pi], as SPEC section 5 promises."""
    return jnp.pi - jnp.mod(jnp.pi - a, 2 * jnp.pi)


def _variance(x):
    """Stan's variance: the sample variance (N - 1), 0 for one element."""
    x = jnp.asarray(x, dtype=jnp.result_type(float))
    n = x.size
    return jnp.sum(jnp.square(x - jnp.mean(x))) / (n - 1) if n > 1 else jnp.zeros((), x.dtype)


def _logit(p):
    return jnp.log(p) - jnp.log1p(-p)


UNARY: dict[str, Callable] = {
    "exp": jnp.exp,
    "log": jnp.log,
    "log1p": jnp.log1p,
    "expm1": jnp.expm1,
    "sqrt": jnp.sqrt,
    "abs": jnp.abs,
    "sin": jnp.sin,
    "cos": jnp.cos,
    "tan": jnp.tan,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "inv_logit": jax.nn.sigmoid,
    "logit": _logit,
    "softplus": jax.nn.softplus,
    "relu": jax.nn.relu,
    "lgamma": jax.scipy.special.gammaln,
    "wrap_angle": wrap_angle,
    "square": jnp.square,
    "floor": jnp.floor,
    "ceil": jnp.ceil,
    "sum": jnp.sum,
    "mean": jnp.mean,
    "variance": _variance,
    "sd": lambda x: jnp.sqrt(_variance(x)),
    "log_sum_exp": jax.scipy.special.logsumexp,
    "norm": lambda x: jnp.sqrt(jnp.sum(jnp.square(x))),
    "transpose": jnp.transpose,
    "softmax": jax.nn.softmax,
}

def gp_exp_quad_cov(*args):
    """Stan's ``gp_exp_quad_cov(x, [x2,] alpha, rho)``: points [N] or [N, D]."""
    *points, alpha, rho = args
    x1 = points[0]
    x2 = points[-1]
    x1 = x1[:, None] if x1.ndim == 1 else x1
    x2 = x2[:, None] if x2.ndim == 1 else x2
    d2 = jnp.sum(jnp.square(x1[:, None, :] - x2[None, :, :]), axis=-1)
    return jnp.square(alpha) * jnp.exp(-0.5 * d2 / jnp.square(rho))


# linear algebra (fglang.compiler.linalg); eye(n) has its own rule (a static size)
UNARY.update({
    "diag": jnp.diag,
    "diagonal": jnp.diagonal,
    "cholesky": jnp.linalg.cholesky,
    "solve": jnp.linalg.solve,
    "log_determinant": lambda a: jnp.linalg.slogdet(a)[1],
    "gp_exp_quad_cov": gp_exp_quad_cov,
})
UNARY.update(STANLIB)  # Stan's math library: each casts its own int arguments

BINARY_OPS: dict[str, Callable] = {
    "+": jnp.add,
    "-": jnp.subtract,
    "*": jnp.multiply,
    "/": jnp.true_divide,
    "^": lambda a, b: jnp.power(jnp.asarray(a, dtype=jnp.result_type(float)), b),
    "@": jnp.matmul,
    "==": jnp.equal,
    "!=": jnp.not_equal,
    "<": jnp.less,
    "<=": jnp.less_equal,
    ">": jnp.greater,
    ">=": jnp.greater_equal,
}


INT32_MAX = 2**31 - 1


class Evaluator:
    """Evaluates one member's expression; everything is traced by JAX.

    A node shared by several parents (a let's expansion, compiler/dag.py) is
    evaluated once per evaluator, so a chain of lets traces in linear time
    and the traced program computes each let once."""

    def __init__(
        self,
        static: Static,
        data: dict,
        idx: dict,
        slots: tuple,
        pos: dict | None = None,
        log_density: LogDensity | None = None,
    ):
        self.static = static
        self.data = data
        self.idx = idx
        self.slots = slots
        self.pos = pos or {}
        self.log_density = log_density
        self.slot_reds: dict[int, tuple[str, ...]] = {}
        self._values: dict[int, tuple[A.Expr, object]] = {}  # id(node) -> (node, value)

    def child(self, idx: dict, pos: dict) -> Evaluator:
        e = Evaluator(self.static, self.data, idx, self.slots, pos, self.log_density)
        e.slot_reds = self.slot_reds
        return e

    def static_int(self, e: A.Expr) -> int:
        """Slice bounds must be known per model shape (not per member)."""
        v = static_value(e, self.static.sizes)
        if v is None:
            raise _StaticError(e)
        return int(v)

    def ev(self, e: A.Expr):
        hit = self._values.get(id(e))
        if hit is not None and hit[0] is e:
            return hit[1]
        value = self._ev(e)
        self._values[id(e)] = (e, value)
        return value

    def _ev(self, e: A.Expr):
        if isinstance(e, A.Num):
            if e.is_int and abs(e.value) > INT32_MAX and not jax.config.jax_enable_x64:
                # past JAX's 32-bit integers (a float32 fit): as a real, which is
                # what arithmetic with a real var wants (an overflow traceback before)
                return float(e.value)
            return e.value
        if isinstance(e, A.Bool):
            return e.value
        if isinstance(e, SlotRef):
            v = self.slots[e.slot]
            for r in self.slot_reds.get(e.slot, ()):
                v = v[self.pos[r]]
            return v
        if isinstance(e, A.Name):
            if e.id in self.idx:
                return self.idx[e.id]
            if e.id in self.data:
                return self.data[e.id]
            if e.id in CONSTANTS:
                return CONSTANTS[e.id]
            raise KeyError(f"unbound name {e.id}")  # the checker makes this unreachable
        if isinstance(e, A.Neg):
            return -jnp.asarray(self.ev(e.operand))
        if isinstance(e, A.BinOp):
            a, b = self.ev(e.left), self.ev(e.right)
            if e.op in "+-*" and isinstance(a, bool | int | float) and isinstance(b, bool | int | float):
                return {"+": a + b, "-": a - b, "*": a * b}[e.op]
            return BINARY_OPS[e.op](jnp.asarray(a), jnp.asarray(b))
        if isinstance(e, A.Index):
            args = e.args
            row = _row_key(e)
            if row is not None and row in self.data:  # X[n] of a row-aligned family: the member's own row
                base, args = jnp.asarray(self.data[row]), args[1:]
            else:
                base = jnp.asarray(self.ev(e.base))
            key = []
            for a in args:
                if isinstance(a, A.Slice):
                    lo = 0 if a.lo is None else self.static_int(a.lo)
                    hi = None if a.hi is None else self.static_int(a.hi)
                    key.append(slice(lo, hi))
                else:  # a literal int is a static index: a slice, not a gather
                    v = self.ev(a)
                    key.append(v if type(v) is int else jnp.asarray(v))
            return base[tuple(key)] if key else base
        if isinstance(e, A.Vector):
            items = [jnp.asarray(self.ev(x)) for x in e.items]
            items = jnp.broadcast_arrays(*items)
            return jnp.stack(items)
        if isinstance(e, A.Reduce):
            return self.reduce(e, 0, self.idx, self.pos)
        if isinstance(e, A.Scan):
            return evaluate_scan(self, e)
        if isinstance(e, A.Call):
            return self.call(e)
        raise AssertionError(f"cannot evaluate {type(e).__name__}")

    def reduce(self, e: A.Reduce, k: int, idx: dict, pos: dict):
        if k == len(e.ranges):
            return jnp.asarray(self.child(idx, pos).ev(e.body))
        r = e.ranges[k]
        here = self.child(idx, pos)
        lo = jnp.asarray(here.ev(r.lo))
        hi = jnp.asarray(here.ev(r.hi))
        length = self.static.reduction_len[id(r)]

        def body(j):
            i2 = dict(idx)
            i2[r.name] = lo + j
            p2 = dict(pos)
            p2[r.name] = j
            return self.reduce(e, k + 1, i2, p2)

        if length == 0:
            vals = jnp.zeros((0,))
        else:
            vals = jax.vmap(body)(jnp.arange(length))
        mask = (lo + jnp.arange(length)) < hi
        mask = mask.reshape(mask.shape + (1,) * (vals.ndim - 1))
        if e.op == "sum":
            return jnp.sum(jnp.where(mask, vals, 0), axis=0)
        if e.op == "prod":
            return jnp.prod(jnp.where(mask, vals, 1), axis=0)
        if e.op == "log_sum_exp":  # stable: the max is taken out (an all-masked reduction is -inf)
            return jax.scipy.special.logsumexp(jnp.where(mask, vals, -jnp.inf), axis=0)
        if e.op == "max":
            return jnp.max(jnp.where(mask, vals, -jnp.inf), axis=0, initial=-jnp.inf)
        return jnp.min(jnp.where(mask, vals, jnp.inf), axis=0, initial=jnp.inf)

    def call(self, e: A.Call):
        f = e.func
        if f in ("logp", "lcdf", "lccdf"):
            return self.logp(e.args[0], e.args[1], f)
        if f == "eye":
            return jnp.eye(self.static_int(e.args[0]))
        if f in ("rep", "rep_vector", "rep_array"):
            x = jnp.asarray(self.ev(e.args[0]))
            return jnp.broadcast_to(x, (self.static_int(e.args[1]), *x.shape))
        args = [jnp.asarray(self.ev(a)) for a in e.args]
        tag = untag(f)
        if tag is not None:  # a group call, tagged by the lowering (groups.tagged)
            from fglang.compiler.lie_jax import OPS

            return OPS[tag[1]](tag[0], *args)
        if f == "inverse":  # of a matrix (a group's is tagged above)
            return jnp.linalg.inv(args[0].astype(float) if not jnp.issubdtype(args[0].dtype, jnp.floating) else args[0])
        if f == "log_sum_exp" and len(args) == 2:  # Stan's binary form: log(exp(a) + exp(b)), stable
            return jnp.logaddexp(*(x.astype(float) if not jnp.issubdtype(x.dtype, jnp.floating) else x for x in args))
        if f in UNARY:
            if f != "abs" and not jnp.issubdtype(args[0].dtype, jnp.floating):
                args[0] = args[0].astype(float)  # the checker types these real: sigmoid(k) of an int k is a real
            return UNARY[f](*args)
        if f == "leaky_relu":
            slope = args[1] if len(args) > 1 else (self.ev(e.kwargs[0].value) if e.kwargs else 0.01)
            return jnp.where(args[0] >= 0, args[0], slope * args[0])
        if f == "atan2":
            return jnp.arctan2(args[0], args[1])
        if f == "log_diff_exp":  # log(exp(a) - exp(b)), stable for b well below a (a truncation's log(F(U) - F(L)))
            a, b = (x.astype(float) if not jnp.issubdtype(x.dtype, jnp.floating) else x for x in args)
            return a + jnp.log1p(-jnp.exp(b - a))
        if f == "dot":
            return jnp.dot(args[0], args[1])
        if f in ("min", "max"):
            if len(args) == 1:
                return jnp.min(args[0]) if f == "min" else jnp.max(args[0])
            return jnp.minimum(*args) if f == "min" else jnp.maximum(*args)
        if f == "where":
            return jnp.where(args[0], args[1], args[2])
        raise AssertionError(f"no JAX rule for {f}")

    def logp(self, d: A.Call, value: A.Expr, kind: str = "logp"):
        if self.log_density is None:
            raise TypeError(f"this model calls {kind}(); bind it with a log_density (fglang.Model.bind does)")
        sig = DISTRIBUTIONS[d.func]
        names = [p.name for p in sig.params] + [g[0].name for g in sig.alternatives]
        args = {}
        for n, a in zip(names, d.args):
            args[n] = jnp.asarray(self.ev(a))
        for k in d.kwargs:
            args[k.name] = jnp.asarray(self.ev(k.value))
        for p in sig.params:
            if p.name not in args and p.default is not None:
                args[p.name] = jnp.asarray(p.default)
        value = jnp.asarray(self.ev(value))
        if kind == "logp":
            return self.log_density(d.func, args, value)
        return self.log_density(d.func, args, value, kind)


def _row_key(e: A.Index) -> str | None:
    """The name a row-aligned ``X[n, ...]`` is handed to the members under
    (``X@n``: no fglang name has an ``@``), see ``bind.aligned_rows``."""
    if isinstance(e.base, A.Name) and e.args and isinstance(e.args[0], A.Name):
        return f"{e.base.id}@{e.args[0].id}"
    return None


class _StaticError(Exception):
    def __init__(self, expr: A.Expr):
        self.expr = expr


def member_function(
    outputs: Callable[[Evaluator], dict],
    static: Static,
    slot_reds: dict[int, tuple[str, ...]],
    log_density: LogDensity | None = None,
    aligned: tuple[tuple[str, str], ...] = (),
) -> tuple[Callable, Callable]:
    """A one-member evaluation ``one(data, idx_m, slots_m)`` and its lift to all
    members ``all_members(data, idx[M], slots[M, ...])``. GBP linearizes ``one``
    (vmapped Jacobians); the sampling backends call ``all_members``.
    ``aligned`` (``bind.aligned_rows``): data read row by row in member order,
    handed to the vmap batched (``X@n``) so a member's row is a slice."""

    def one(data, idx, slots):
        ev = Evaluator(static, data, idx, slots, log_density=log_density)
        ev.slot_reds = slot_reds
        with recursion_headroom():  # one level of Python per level of the expression
            return outputs(ev)

    def all_members(data, idx, slots, *, lean: bool = False):
        """``lean``: an output the same for every member comes with a member
        axis of 1, not broadcast to M (compiler/member_axis_jax.py); only for
        consumers that broadcast (the NumPyro model)."""
        axes = tuple(None if isinstance(s, SharedSlot) else 0 for s in slots)
        blocks = tuple(s.value if isinstance(s, SharedSlot) else s for s in slots)
        if "__m" in idx and idx["__m"].shape[0] == 1:
            # one member (an unindexed factor, `y ~ normal(X @ w, s)`): evaluated
            # without a member axis, which under a vmap over chains would put a
            # size-1 axis between the chains and the rows (copies and transposes
            # of every [chains, 1, N] array: 1.9x the hand-written gradient)
            # as jax.vmap would hand them: JAX arrays (a NumPy block indexed by a traced position fails)
            first = {k: jnp.asarray(v)[0] for k, v in idx.items()}
            one_blocks = tuple(jax.tree.map(jnp.asarray, b if ax is None else jax.tree.map(lambda x: x[0], b))
                               for b, ax in zip(blocks, axes, strict=True))
            return jax.tree.map(lambda x: jnp.expand_dims(x, 0), one(data, first, one_blocks))
        m = jnp.shape(idx["__m"])[0]
        rows = {f"{d}@{n}": data[d] for d, n in aligned
                if d in data and jnp.ndim(data[d]) >= 1 and jnp.shape(data[d])[0] == m}
        batched = tuple(b for b, ax in zip(blocks, axes, strict=True) if ax == 0)
        shared = tuple(b for b, ax in zip(blocks, axes, strict=True) if ax is None)

        def member(r, i, bb, sb):
            it_b, it_s = iter(bb), iter(sb)
            return one({**data, **r}, i, tuple(next(it_b) if ax == 0 else next(it_s) for ax in axes))

        if not lean:
            return jax.vmap(member, in_axes=(0, 0, 0, None))(rows, idx, batched, shared)
        at = (rows, idx, batched)
        one_struct = jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x)[1:], jnp.result_type(x)), at)
        dep, out_tree = member_dependent(member, one_struct, (shared,))

        def dependent(r, i, bb, sb):
            return [x for x, d in zip(jax.tree.leaves(member(r, i, bb, sb)), dep, strict=True) if d]

        varying = iter(jax.vmap(dependent, in_axes=(0, 0, 0, None))(rows, idx, batched, shared))
        if all(dep):
            return jax.tree.unflatten(out_tree, list(varying))
        first = jax.tree.map(lambda x: jnp.asarray(x)[0], at)
        fixed = iter(jnp.expand_dims(jnp.asarray(x), 0)
                     for x, d in zip(jax.tree.leaves(member(*first, shared)), dep, strict=True) if not d)
        return jax.tree.unflatten(out_tree, [next(varying) if d else next(fixed) for d in dep])

    return one, all_members

