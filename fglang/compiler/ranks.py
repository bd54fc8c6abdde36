"""Ranks (number of dims) and groups of expressions before slots exist:
what lowering needs to push an index through broadcasting and to name a
group call by its group (``tag``), without the full shapes of the checks."""

from __future__ import annotations

from dataclasses import replace

from fglang.compiler import ast as A
from fglang.compiler import builtins as B
from fglang.compiler.checked import CheckedModel
from fglang.compiler.dag import SharedMemo
from fglang.compiler.distributions import DISTRIBUTIONS, MATRIX_PARAMS
from fglang.compiler.expr import map_children
from fglang.compiler.groups import CONSTRUCTORS, EXPS, GROUPS, tagged, untag
from fglang.compiler.groups import FUNCS as GROUP_FUNCS
from fglang.compiler.ir import SlotRef
from fglang.compiler.linalg import rank as linalg_rank


class Ranks:
    """Ranks (number of dims) of expressions; enough to push an index through
    broadcasting without full shape information."""

    def __init__(self, model: CheckedModel):
        self.m = model
        self._memo = SharedMemo()

    def of(self, e: A.Expr) -> int:
        return self._memo(self._rank, e, "rank")

    def _rank(self, e: A.Expr) -> int:
        m = self.m
        if isinstance(e, A.Num | A.Bool):
            return 0
        if isinstance(e, A.Name):
            if e.id in m.data:
                return len(m.data[e.id].shape_exprs)
            if e.id in m.vars:
                v = m.vars[e.id]
                return len(v.node_dims) + len(v.value_shape)
            if e.id in m.lets:
                return len(m.lets[e.id].shape)
            return 0  # indices and constants
        if isinstance(e, SlotRef):
            raise AssertionError("ranks are taken before slots exist")
        if isinstance(e, A.Neg):
            return self.of(e.operand)
        if isinstance(e, A.BinOp):
            a, b = self.of(e.left), self.of(e.right)
            if e.op == "@":
                return a + b - 2
            return max(a, b)
        if isinstance(e, A.Index):
            base = self.of(e.base)
            extra = 0
            for a in e.args:
                if isinstance(a, A.Slice):
                    extra += 1
                else:
                    extra += self.of(a)
            return base - len(e.args) + extra
        if isinstance(e, A.Vector):
            return 1 + self.of(e.items[0])
        if isinstance(e, A.Reduce):
            return self.of(e.body)
        if isinstance(e, A.Scan):
            return 1 + self.of(e.init)
        if isinstance(e, A.Call) and (is_group_call(e, self) or untag(e.func)):
            return self.group_rank(self.tag(e))
        if isinstance(e, A.Call):
            f = e.func
            if (f in B.REDUCING and len(e.args) == 1) or f == "dot" or (f in ("min", "max") and len(e.args) == 1):
                return 0
            if f == "transpose":
                return 2
            if f in B.LINALG:
                return linalg_rank(f, [self.of(a) for a in e.args])
            if f in ("logp", "lcdf", "lccdf"):
                sig = DISTRIBUTIONS[e.args[0].func]
                ranks = [self.of(e.args[1]) - sig.event_ndim]
                for a in e.args[0].args:
                    ranks.append(self.of(a))
                for k in e.args[0].kwargs:
                    if k.name not in MATRIX_PARAMS | {"cutpoints"}:
                        ranks.append(self.of(k.value) - (sig.event_ndim if k.name in ("mu", "alpha") else 0))
                return max(ranks)
            return max((self.of(a) for a in e.args), default=0)
        raise AssertionError(f"no rank rule for {type(e).__name__}")

    # ----------------------------------------------------------- groups
    def kind(self, e: A.Expr) -> str | None:
        """The group of a group-valued expression (None for numbers)."""
        return self._memo(self._kind, e, "kind")

    def _kind(self, e: A.Expr) -> str | None:
        m = self.m
        if isinstance(e, A.Name):
            d = m.vars.get(e.id) or m.data.get(e.id)
            return d.domain.kind if d is not None and d.domain.kind in GROUPS else None
        if isinstance(e, A.Index):
            return self.kind(e.base)
        if isinstance(e, A.Call):
            tag = untag(e.func)
            if tag is None:
                return self.kind(self.tag(e)) if is_group_call(e, self) else None
            kind, op = tag
            if op in ("compose", "between", "inverse", "exp", "make"):
                return kind
            if op == "rotation":
                return GROUPS[kind].rotation
        return None

    def tag(self, e: A.Expr) -> A.Expr:
        """Group calls named with their group: ``log(between(a, b))`` on pose3
        values becomes ``pose3.log(pose3.between(a, b))``, which is what the JAX
        evaluator dispatches on (the storage alone cannot tell a pose2 from a
        rot3's neighbour). Lets must be expanded first."""
        return self._memo(self._tag, e, "tag")

    def _tag(self, e: A.Expr) -> A.Expr:
        e = map_children(e, self.tag)
        if not isinstance(e, A.Call) or not is_group_call(e, self):
            return e
        f = e.func
        if f in CONSTRUCTORS:
            return replace(e, func=tagged(f, "make"))
        if f in EXPS:
            return replace(e, func=tagged(EXPS[f], "exp"))
        return replace(e, func=tagged(self.kind(e.args[0]), f))

    def group_rank(self, e: A.Call) -> int:
        kind, op = untag(e.func)
        sr = len(GROUPS[kind].storage)
        r = [self.of(a) for a in e.args]
        if op in ("compose", "between", "inverse", "angle", "quaternion"):
            return max(r)
        if op in ("log", "translation"):
            return r[0] - sr + 1
        if op == "rotation":
            return r[0] - sr + len(GROUPS[GROUPS[kind].rotation].storage)
        if op == "exp":
            return r[0] - 1 + sr
        if op == "act":
            return max(r[0] - sr, r[1] - 1) + 1
        # constructors
        if kind == "rot2":
            return r[0]
        if kind == "rot3":
            return r[0] if len(r) == 1 else max(r) + 1
        if kind == "pose2":
            return max(r) + 1
        return max(r[0], r[1]) if len(r) == 2 else max([r[0] - 1] + r[1:]) + 1


def is_group_call(e: A.Call, ranks: Ranks) -> bool:
    """A built-in group call not yet tagged (fns are inlined: the names are the built-ins')."""
    if e.func == "inverse" and len(e.args) == 1:  # of a group, or Stan's of a matrix
        return ranks.kind(e.args[0]) is not None
    if e.func in GROUP_FUNCS:
        return True
    return e.func == "log" and len(e.args) == 1 and ranks.kind(e.args[0]) is not None
