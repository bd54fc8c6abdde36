"""Typing of the Lie-group built-ins (``compose``, ``between``, ``log``, ``act``,
the constructors, ...) and the one rule that keeps group values out of
arithmetic.

A mixin of ``Checker``, next to ``ExprTyping``. A group value's type is
``T(kind, batch shape)``: its dtype is the group's name (``pose3``) and its
shape the batch axes only (``pose[0:3]`` is ``T("pose3", (3,))``); the
storage axes (``[7]`` for a pose3) are not part of the type, so a pose
cannot be indexed into, added or passed where a number is expected. Each
misuse is an error at the argument, with a hint that names the built-in
that gives the numbers (``log``, ``translation``).
"""

from __future__ import annotations

from fglang.compiler import ast as A
from fglang.compiler.groups import EXPS, GROUPS
from fglang.compiler.types import ERROR, Dim, Shape, ShapeError, Sym, T, show_shape

GROUP_NAMES = ", ".join(GROUPS)
NUMBERS_HINT = "a group value is not a number: take its tangent vector with log(...), or translation(...)"


def is_group(t: T) -> bool:
    return t.dtype in GROUPS


def describe(t: T) -> str:
    """``pose3``, ``pose3 [N]``, ``real [3]``: as messages name a type."""
    if t.dtype in GROUPS:
        return t.dtype if not t.shape else f"{t.dtype} {show_shape(t.shape)}"
    return f"{t.dtype} {show_shape(t.shape)}" if t.shape else t.dtype


def _last_is(shape: Shape, n: int) -> bool | None:
    """Whether the last axis is ``n`` (None when only the data can say)."""
    if not shape:
        return False
    d: Dim = shape[-1]
    if isinstance(d, Sym):
        return None
    return d == n


class GroupTyping:
    """Needs from its host: ``err``, ``infer``, ``broadcast``."""

    def no_group(self, t: T, e: A.Expr, where: str) -> bool:
        """Report a group value used where numbers are needed; True if it was one."""
        if t.ok and is_group(t):
            self.err(f"{where} needs numbers, got a {describe(t)} value", e.span, NUMBERS_HINT)
            return True
        return False

    def _group_arg(self, f: str, t: T, e: A.Expr, kinds: tuple[str, ...] = tuple(GROUPS)) -> bool:
        if is_group(t) and t.dtype in kinds:
            return True
        want = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " or " + kinds[-1]
        if is_group(t):
            self.err(f"'{f}' needs a {want}, got a {describe(t)}", e.span)
            return False
        self.err(
            f"'{f}' needs a {want} value, got {describe(t)}",
            e.span,
            "declare the var or data with a group type (var pose[N]: pose2, data z[M]: pose3), "
            "or build one: pose2(x, y, theta), pose3(t, q), rot2(theta), rot3(q)",
        )
        return False

    def _real_arg(self, f: str, t: T, e: A.Expr, last: int | None = None, what: str = "") -> bool:
        if is_group(t):
            self.err(f"'{f}' needs {what or 'numbers'} here, got a {describe(t)}", e.span, NUMBERS_HINT)
            return False
        if t.dtype == "bool":
            self.err(f"'{f}' needs numbers, got a comparison (bool)", e.span)
            return False
        if last is not None and _last_is(t.shape, last) is False:
            self.err(f"'{f}' needs {what}, got {describe(t)}", e.span)
            return False
        return True

    def _batch(self, f: str, e: A.Call, *shapes: Shape) -> Shape | None:
        out: Shape = ()
        try:
            for s in shapes:
                out = self.broadcast(out, s, f"shape mismatch in '{f}': {{err}}", e)
        except ShapeError as err:
            self.err(f"shape mismatch in '{f}': {err}", e.span)
            return None
        return out

    def group_call(self, e: A.Call, f: str, ts: list[T] | None = None) -> T:
        """The type of a call to a group built-in (``log`` only when its argument is
        a group; ``ts``: the arguments' types when the caller has them already)."""
        if e.kwargs:
            self.err(f"'{f}' takes no keyword arguments", e.kwargs[0].span)
            return ERROR
        if ts is None:
            ts = [self.infer(a) for a in e.args]
        if not all(t.ok for t in ts):
            return ERROR
        var = any(t.var for t in ts)
        n, args = len(ts), e.args
        arities = _ARITIES.get(f, (1,))
        if n not in arities:
            want = " or ".join(str(a) for a in arities)
            self.err(f"'{f}' takes {want} argument{'s' * (arities != (1,))}, got {n}", e.span, _USAGE.get(f))
            return ERROR
        if f in ("compose", "between"):
            if not (self._group_arg(f, ts[0], args[0]) and self._group_arg(f, ts[1], args[1])):
                return ERROR
            if ts[0].dtype != ts[1].dtype:
                self.err(f"'{f}' of a {ts[0].dtype} and a {ts[1].dtype}: both must be one group", e.span)
                return ERROR
            batch = self._batch(f, e, ts[0].shape, ts[1].shape)
            return ERROR if batch is None else T(ts[0].dtype, batch, var)
        if f == "inverse":
            if not is_group(ts[0]):  # Stan's inverse of a matrix
                if len(ts[0].shape) != 2:
                    kinds = list(GROUPS)
                    self.err(f"'inverse' needs a square matrix or a {', '.join(kinds[:-1])} or {kinds[-1]} value, "
                             f"got {describe(ts[0])}", args[0].span)
                    return ERROR
                square = self._square(f, args[0], ts[0])
                return ERROR if square is None else T("real", square, var)
            return T(ts[0].dtype, ts[0].shape, var) if self._group_arg(f, ts[0], args[0]) else ERROR
        if f == "log":
            g = GROUPS[ts[0].dtype]
            return T("real", ts[0].shape + (g.tangent,), var)
        if f in EXPS:
            g = GROUPS[EXPS[f]]
            if not self._real_arg(f, ts[0], args[0], g.tangent, f"a tangent vector [{g.tangent}]"):
                return ERROR
            return T(g.name, ts[0].shape[:-1], var)
        if f == "act":
            if not self._group_arg(f, ts[0], args[0]):
                return ERROR
            g = GROUPS[ts[0].dtype]
            if not self._real_arg(f, ts[1], args[1], g.point, f"a point [{g.point}]"):
                return ERROR
            batch = self._batch(f, e, ts[0].shape, ts[1].shape[:-1])
            return ERROR if batch is None else T("real", batch + (g.point,), var)
        if f == "rotation":
            if not self._group_arg(f, ts[0], args[0]):
                return ERROR
            return T(GROUPS[ts[0].dtype].rotation, ts[0].shape, var)
        if f == "translation":
            if not self._group_arg(f, ts[0], args[0], ("pose2", "pose3")):
                return ERROR
            return T("real", ts[0].shape + (GROUPS[ts[0].dtype].translation,), var)
        if f == "angle":
            return T("real", ts[0].shape, var) if self._group_arg(f, ts[0], args[0], ("rot2",)) else ERROR
        if f == "quaternion":
            return T("real", ts[0].shape + (4,), var) if self._group_arg(f, ts[0], args[0], ("rot3",)) else ERROR
        return self._construct(e, f, ts, var)

    def _construct(self, e: A.Call, f: str, ts: list[T], var: bool) -> T:
        args, n = e.args, len(ts)
        if f == "rot2" or f == "pose2" or (f == "rot3" and n == 3):
            for t, a in zip(ts, args):
                if not self._real_arg(f, t, a, what="a number"):
                    return ERROR
            batch = self._batch(f, e, *(t.shape for t in ts))
            return ERROR if batch is None else T(f, batch, var)
        if f == "rot3":  # rot3(q)
            if not self._real_arg(f, ts[0], args[0], 4, "a quaternion [qx, qy, qz, qw]"):
                return ERROR
            return T(f, ts[0].shape[:-1], var)
        # pose3(t, q), pose3(t, r), pose3(t, roll, pitch, yaw)
        if not self._real_arg(f, ts[0], args[0], 3, "a translation [3]"):
            return ERROR
        shapes = [ts[0].shape[:-1]]
        if n == 2:
            if is_group(ts[1]):
                if not self._group_arg(f, ts[1], args[1], ("rot3",)):
                    return ERROR
                shapes.append(ts[1].shape)
            elif self._real_arg(f, ts[1], args[1], 4, "a quaternion [qx, qy, qz, qw] or a rot3"):
                shapes.append(ts[1].shape[:-1])
            else:
                return ERROR
        else:
            for t, a in zip(ts[1:], args[1:]):
                if not self._real_arg(f, t, a, what="roll, pitch and yaw as numbers"):
                    return ERROR
                shapes.append(t.shape)
        batch = self._batch(f, e, *shapes)
        return ERROR if batch is None else T(f, batch, var)


_ARITIES: dict[str, tuple[int, ...]] = {
    "compose": (2,),
    "between": (2,),
    "act": (2,),
    "pose2": (3,),
    "rot3": (1, 3),
    "pose3": (2, 4),
}
_USAGE: dict[str, str] = {
    "compose": "usage: compose(a, b), two values of one group",
    "between": "usage: between(a, b) = compose(inverse(a), b)",
    "act": "usage: act(pose, point)",
    "pose2": "usage: pose2(x, y, theta)",
    "rot3": "usage: rot3([qx, qy, qz, qw]) or rot3(roll, pitch, yaw)",
    "pose3": "usage: pose3(t, [qx, qy, qz, qw]), pose3(t, rot3) or pose3(t, roll, pitch, yaw)",
    "rot2": "usage: rot2(theta)",
}
