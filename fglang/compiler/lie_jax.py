"""The group algebra in JAX, on the storage arrays of ``fglang.compiler.groups``.

Why jaxlie (Yi et al., maintained, used by jaxls): its ``exp``/``log`` have
the small-angle branches written so that they stay accurate and
differentiable at the identity, which is exactly where the ``map`` backend
differentiates (the Jacobian of ``r(x compose exp(delta))`` at
``delta = 0``); and its batch axes broadcast, so a vmapped family member
and a whole var's nodes use the same code. fglang keeps its own storage
(g2o's order, quaternions ``xyzw``, poses' headings as angles) and converts
at every operation: a few multiplies, nothing to a factor's cost.

Every function takes and returns storage arrays with any leading batch axes
(broadcast between arguments as NumPy does).

``exp`` and ``log`` of the poses are written here (on jaxlie's SO2/SO3,
which are accurate): jaxlie 1.5's SE(2)/SE(3) ``V`` matrices switch to a
Taylor branch only below theta^2 ~ 1e-5 (float32) and above it compute
``(1 - cos t) / t``, ``(1 - (t/2) cot(t/2)) / t^2`` with cancellation (no
digits left at t = 1e-4 in float32), and its SE(3) branch stands in R for V
(wrong at first order in theta): the values are off by little, but the
second derivatives the NumPyro backends take (vi's Laplace whitening) were
garbage near the identity, where a concentrated posterior's chart lives.
Here every coefficient is a series in theta^2 near 0 and a cancellation-free
closed form elsewhere: smooth to every order, in float32 and float64.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jaxlie

from fglang.compiler.groups import GROUPS


def _quat(q):
    """[..., 4] xyzw -> jaxlie SO3 (normalized: data quaternions carry rounding)."""
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    return jaxlie.SO3(jnp.concatenate([q[..., 3:4], q[..., :3]], axis=-1))


def _xyzw(r: jaxlie.SO3):
    w = r.wxyz
    xyzw = jnp.concatenate([w[..., 1:], w[..., :1]], axis=-1)
    return xyzw * jnp.where(w[..., :1] < 0, -1.0, 1.0)  # q and -q are one rotation; report qw >= 0


def _float(x):
    """``x`` as a JAX array, its float dtype kept (a float32 fit in a process
    with x64 enabled stays float32: GBP's loop carries need one dtype); ints
    become the default float."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _even(t2, series, exact):
    """``f(t)`` for ``t2 = t^2``: ``series(t2)`` below 0.1, ``exact(t)`` above
    (a safe argument: the unused branch has no NaN gradient)."""
    small = t2 < 0.1
    return jnp.where(small, series(t2), exact(jnp.sqrt(jnp.where(small, 1.0, t2))))


def _sinc(t2):
    """``sin t / t``."""
    return _even(t2, lambda s: 1 - s / 6 + s * s / 120 - s**3 / 5040 + s**4 / 362880, lambda t: jnp.sin(t) / t)


def _half_cot(t):
    """``(t/2) cot(t/2) = cos(t/2) / sinc(t/2)`` (of the angle itself: through
    ``sqrt(t^2)`` its derivative at 0 would be 0 x inf)."""
    return jnp.cos(0.5 * t) / _sinc(0.25 * t * t)


def _so3_b(t2):
    """``(t - sin t) / t^3``."""
    return _even(t2, lambda s: 1 / 6 - s / 120 + s * s / 5040 - s**3 / 362880 + s**4 / 39916800,
                 lambda t: (1 - jnp.sin(t) / t) / (t * t))


def _so3_c(t2):
    """``(1 - (t/2) cot(t/2)) / t^2``."""
    return _even(t2, lambda s: 1 / 12 + s / 720 + s * s / 30240 + s**3 / 1209600 + s**4 / 47900160,
                 lambda t: (1 - _half_cot(t)) / (t * t))


def _pose_exp(kind: str, v):
    """SE(2)/SE(3) ``exp``: rotation by jaxlie, translation ``V rho``."""
    if kind == "pose2":
        th = v[..., 2]
        t2 = th * th
        s, c = _sinc(t2), 0.5 * th * _sinc(0.25 * t2) ** 2  # sin t / t, (1 - cos t) / t
        x, y = v[..., 0], v[..., 1]
        t = jnp.stack([s * x - c * y, c * x + s * y], axis=-1)
        return jaxlie.SE2.from_rotation_and_translation(jaxlie.SO2.from_radians(th), t)
    rho, w = v[..., :3], v[..., 3:]
    t2 = jnp.sum(w * w, axis=-1, keepdims=True)
    a = 0.5 * _sinc(0.25 * t2) ** 2  # (1 - cos t) / t^2
    wr = jnp.cross(w, rho)
    t = rho + a * wr + _so3_b(t2) * jnp.cross(w, wr)
    return jaxlie.SE3.from_rotation_and_translation(jaxlie.SO3.exp(w), t)


def _pose_log(kind: str, g):
    """SE(2)/SE(3) ``log``: rotation by jaxlie, translation ``V^-1 t``."""
    t = g.translation()
    if kind == "pose2":
        th = g.rotation().as_radians()
        h = _half_cot(th)
        x, y = t[..., 0], t[..., 1]
        return jnp.stack([h * x + 0.5 * th * y, -0.5 * th * x + h * y, th], axis=-1)
    w = g.rotation().log()
    t2 = jnp.sum(w * w, axis=-1, keepdims=True)
    wt = jnp.cross(w, t)
    return jnp.concatenate([t - 0.5 * wt + _so3_c(t2) * jnp.cross(w, wt), w], axis=-1)


def _exp(kind: str, v):
    v = _float(v)
    return _pose_exp(kind, v) if GROUPS[kind].is_pose else _CLASS[kind].exp(v)


def _log(kind: str, g):
    return _pose_log(kind, g) if GROUPS[kind].is_pose else g.log()


def to_lie(kind: str, s):
    s = _float(s)
    if kind == "rot2":
        return jaxlie.SO2.from_radians(s)
    if kind == "pose2":
        return jaxlie.SE2.from_xy_theta(s[..., 0], s[..., 1], s[..., 2])
    if kind == "rot3":
        return _quat(s)
    if kind == "pose3":
        return jaxlie.SE3.from_rotation_and_translation(_quat(s[..., 3:7]), s[..., 0:3])
    raise AssertionError(kind)


def from_lie(kind: str, g):
    if kind == "rot2":
        return g.as_radians()
    if kind == "pose2":
        return jnp.concatenate([g.translation(), g.rotation().as_radians()[..., None]], axis=-1)
    if kind == "rot3":
        return _xyzw(g)
    if kind == "pose3":
        return jnp.concatenate([g.translation(), _xyzw(g.rotation())], axis=-1)
    raise AssertionError(kind)


_CLASS = {"rot2": jaxlie.SO2, "rot3": jaxlie.SO3, "pose2": jaxlie.SE2, "pose3": jaxlie.SE3}


def compose(kind: str, a, b):
    return from_lie(kind, to_lie(kind, a) @ to_lie(kind, b))


def inverse(kind: str, a):
    return from_lie(kind, to_lie(kind, a).inverse())


def between(kind: str, a, b):
    """``inverse(a) compose b``: ``b`` seen from ``a`` (GTSAM's ``a.between(b)``)."""
    return from_lie(kind, to_lie(kind, a).inverse() @ to_lie(kind, b))


def log(kind: str, a):
    """The tangent vector (translation first for poses; see ``groups``)."""
    return _log(kind, to_lie(kind, a))


def exp(kind: str, v):
    return from_lie(kind, _exp(kind, v))


def act(kind: str, a, p):
    """``g`` applied to a point: ``R p + t``."""
    return to_lie(kind, a) @ _float(p)


def rotation(kind: str, a):
    g = GROUPS[kind]
    if not g.is_pose:
        return a
    return from_lie(g.rotation, to_lie(kind, a).rotation())


def translation(kind: str, a):
    return to_lie(kind, a).translation()


def angle(kind: str, a):
    return _float(a)  # rot2 is stored as its angle


def quaternion(kind: str, a):
    return _xyzw(_quat(_float(a)))


def construct(kind: str, *args):
    """``rot2(theta)``, ``rot3(q)``, ``rot3(roll, pitch, yaw)``, ``pose2(x, y, theta)``,
    ``pose3(t, q)``, ``pose3(t, r)`` (``r`` a rot3), ``pose3(t, roll, pitch, yaw)``;
    roll, pitch, yaw as TORO: ``R = Rz(yaw) Ry(pitch) Rx(roll)``. The checker has
    sorted out which form (the lowering tags ``pose3.make_rpy`` and so on)."""
    args = [_float(a) for a in args]
    if kind == "rot2":
        return from_lie(kind, jaxlie.SO2.from_radians(args[0]))
    if kind == "pose2":
        x, y, th = jnp.broadcast_arrays(*args)
        return from_lie(kind, jaxlie.SE2.from_xy_theta(x, y, th))
    if kind == "rot3":
        if len(args) == 1:
            return quaternion(kind, args[0])
        return _xyzw(jaxlie.SO3.from_rpy_radians(*jnp.broadcast_arrays(*args)))
    if kind == "pose3":
        t = args[0]
        rot = _quat(args[1]) if len(args) == 2 else jaxlie.SO3.from_rpy_radians(*jnp.broadcast_arrays(*args[1:]))
        batch = jnp.broadcast_shapes(t.shape[:-1], rot.get_batch_axes())
        t = jnp.broadcast_to(t, batch + (3,))
        rot = jaxlie.SO3(jnp.broadcast_to(rot.wxyz, batch + (4,)))
        return from_lie(kind, jaxlie.SE3.from_rotation_and_translation(rot, t))
    raise AssertionError(kind)


def retract(kind: str, s, delta):
    """``x compose exp(delta)``: the update every tangent-space backend takes."""
    return from_lie(kind, to_lie(kind, s) @ _exp(kind, delta))


def local(kind: str, s, ref):
    """``log(inverse(ref) compose x)``: the tangent vector of ``x`` at ``ref``."""
    return _log(kind, to_lie(kind, ref).inverse() @ to_lie(kind, s))


def _jit(f: Callable) -> Callable:
    """One compiled function per (op, group, shapes): a model evaluated eagerly
    (binding's data checks) would otherwise compile each of jaxlie's small
    jitted pieces on its own, hundreds per factor."""
    return jax.jit(f, static_argnums=0)


OPS: dict[str, Callable] = {
    name: _jit(f)
    for name, f in {
        "compose": compose,
        "inverse": inverse,
        "between": between,
        "log": log,
        "exp": exp,
        "act": act,
        "rotation": rotation,
        "translation": translation,
        "angle": angle,
        "quaternion": quaternion,
        "make": construct,
    }.items()
}
"""What a tagged call ``KIND.OP`` (see ``groups.tagged``) evaluates to."""
retract_jit = _jit(retract)
