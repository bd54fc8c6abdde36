"""The Lie groups of the language (``rot2``, ``rot3``, ``pose2``, ``pose3``): what
the checker and the backends need to know about them, without JAX.

Why one table: the checker types the group built-ins from it, the lowering
tags each group call with its group (``pose3.log``) from it, binding stores
a group value as a plain real array of its ``storage`` shape, and every
backend reads ``tangent`` to size its linearization. The algebra itself is
in ``fglang.compiler.lie_jax`` (JAX, imported only when a model is bound).

Storage (what data, init and the posterior's mean hold; g2o's order):

- ``rot2``: the angle ``theta`` (a scalar), in ``(-pi, pi]`` when computed.
- ``pose2``: ``[x, y, theta]``.
- ``rot3``: the unit quaternion ``[qx, qy, qz, qw]`` (``qw >= 0`` when computed).
- ``pose3``: ``[x, y, z, qx, qy, qz, qw]``.

Tangent vectors (what ``log`` returns and ``exp_*`` takes; translation first,
as jaxlie, g2o and TORO order their information matrices): ``rot2`` ``[theta]``,
``pose2`` ``[vx, vy, omega]`` (GTSAM's Pose2 order), ``rot3`` ``[wx, wy, wz]``,
``pose3`` ``[vx, vy, vz, wx, wy, wz]`` (GTSAM's Pose3 is ``[w, v]``: rotation
first). ``log`` is the true group logarithm (SE(n)'s includes the ``V^-1``
coupling of translation and rotation), as GTSAM's ``Logmap``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Group:
    name: str
    storage: tuple[int, ...]  # shape of one stored value
    tangent: int  # dimension of the tangent space
    point: int  # dimension of the points it acts on (act(g, p))
    rotation: str  # the rotation part's group (itself for a rotation)
    translation: int  # dimension of the translation (0 for a rotation)
    storage_doc: str

    @property
    def is_pose(self) -> bool:
        return self.translation > 0

    @property
    def storage_size(self) -> int:
        n = 1
        for s in self.storage:
            n *= s
        return n


GROUPS: dict[str, Group] = {
    "rot2": Group("rot2", (), 1, 2, "rot2", 0, "theta"),
    "rot3": Group("rot3", (4,), 3, 3, "rot3", 0, "[qx, qy, qz, qw]"),
    "pose2": Group("pose2", (3,), 3, 2, "rot2", 2, "[x, y, theta]"),
    "pose3": Group("pose3", (7,), 6, 3, "rot3", 3, "[x, y, z, qx, qy, qz, qw]"),
}

# group -> group operations (the group is the first group argument's)
SAME_GROUP = ("compose", "between")  # (g, g) -> g
UNARY_GROUP = ("inverse",)  # g -> g
# operations whose result is real: log(g) -> tangent, act(g, p) -> point,
# translation(pose) -> vector, angle(rot2) -> scalar, quaternion(rot3) -> [4]
# exp_<group>(v): tangent -> group; constructors named after the group
EXPS = {f"exp_{g}": g for g in GROUPS}
CONSTRUCTORS = tuple(GROUPS)
FUNCS = frozenset(
    SAME_GROUP + UNARY_GROUP + ("act", "rotation", "translation", "angle", "quaternion") + tuple(EXPS) + CONSTRUCTORS
)
"""Group built-ins. Unlike the other built-ins, a user ``fn`` of the same
name hides them (SPEC's pose graph defines its own ``between`` on real[3])."""

SEP = "."
"""The lowering tags a group call ``KIND.OP`` (``pose3.log``, ``rot2.exp``):
names the user cannot write, so the tag cannot clash with a fn."""


def tagged(kind: str, op: str) -> str:
    return f"{kind}{SEP}{op}"


def untag(func: str) -> tuple[str, str] | None:
    """``pose3.log`` -> ("pose3", "log"); None for an untagged name."""
    kind, sep, op = func.partition(SEP)
    return (kind, op) if sep and kind in GROUPS else None


def kind_of_domain(kind: str) -> Group | None:
    return GROUPS.get(kind)
