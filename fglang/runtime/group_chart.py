"""Lie-group vars (``rot2``, ``rot3``, ``pose2``, ``pose3``) for the NumPyro
backends (``vi``, ``mcmc``): sampled in the exponential chart at a base point.

Why a chart: NUTS and VI need an unconstrained vector, and a group is not one
(a quaternion must keep norm 1; 7 stored numbers hold 6 degrees of freedom).
Each node is written ``x = base compose exp(delta)``, ``base`` the fit's
start for that var (its ``--init``, e.g. the MAP from ``--init map:FILE``;
a carried ``--prior``'s mean; else the identity). The sampler's free vector
``u`` in R^dof (the tangent dimension) is ``delta`` with its rotation part
``w`` squashed into the ball of radius pi, ``delta_w = pi tanh(|w| / pi) w /
|w|`` (``delta = u`` to first order): ``exp`` is one-to-one on that ball, so
the chart covers the group once and the density in ``u`` is proper (with an
unbounded ``delta`` it is periodic: NUTS could drift from one copy of the
group to the next).
This is NumPyro's own mechanism for constrained sites: the var keeps one
sample site of its storage shape whose support is a ``GroupValued``
constraint, and ``biject_to`` of it is the chart (``GroupChart``), so
``init``, Predictive, and the draws all hold the stored values.

The density: every factor on a group var is read as a density with respect
to the group's Haar measure (the one that does not depend on the chart or
the base point). In ``delta`` it gains ``|det J_r(delta)|``, the right
Jacobian of ``exp``, which the chart's ``log_abs_det_jacobian`` supplies:

- ``rot2``: 1;
- ``rot3`` and ``pose2``: ``2 (1 - cos t) / t^2`` (``t`` the rotation angle);
- ``pose3``: the square of ``rot3``'s (SE(3)'s Jacobian is block triangular
  with ``J_r`` of SO(3) twice on its diagonal).

The squashing adds ``log |det|`` of the radial map, ``log sech^2(r / pi) +
(k - 1) log(pi tanh(r / pi) / r)`` (``r = |w|``, ``k`` its dimension). The
chart is best (nearly linear) for a posterior concentrated near its base, as
a pose graph's is near the MAP, which is why the MAP makes a good ``--init``;
a diffuse one is still sampled correctly, in a more curved geometry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints
from numpyro.distributions.transforms import Transform, biject_to

from fglang.compiler.groups import GROUPS


def _log_sinc_half_sq(t2):
    """``log(2 (1 - cos t) / t^2)`` from ``t2 = t^2``, written ``2 log(sin(t/2) /
    (t/2))`` (``1 - cos t`` loses every digit in float32 at t ~ 1e-3), and a
    series below ``t2 = 1e-2``: finite, exact derivatives of every order at 0."""
    small = t2 < 1e-2
    half = 0.5 * jnp.sqrt(jnp.where(small, 1.0, t2))
    exact = 2.0 * jnp.log(jnp.sin(half) / half)
    return jnp.where(small, -t2 / 12.0 - t2 * t2 / 1440.0 - t2 * t2 * t2 / 90720.0, exact)


# Below y^2 = SERIES_MAX the radial map's pieces are their series in s = y^2
# (y = r / pi): they are even in y, and through r = sqrt(s) autodiff gives
# 0 / 0 at the origin -- a NaN Hessian there, where every fit started at its
# base (its init, or the MAP) begins, so VI lost its Laplace whitening and
# fitted an anchored pose 2x too wide. Truncation error ~ s^4 / 50 (< 1e-13).
SERIES_MAX = 1e-3


def _even(s, series, exact):
    """``f(y)`` for ``s = y^2``: ``series(s)`` near 0, ``exact(y)`` elsewhere
    (with a safe argument, so the unused branch has no NaN gradient)."""
    small = s < SERIES_MAX
    y = jnp.sqrt(jnp.where(small, 1.0, s))
    return jnp.where(small, series(s), exact(y))


def _tanh_over_y(s):
    return _even(s, lambda s: 1.0 - s / 3.0 + 2.0 * s * s / 15.0 - 17.0 * s * s * s / 315.0,
                 lambda y: jnp.tanh(y) / y)


def _log_tanh_over_y(s):
    return _even(s, lambda s: -s / 3.0 + 7.0 * s * s / 90.0 - 62.0 * s * s * s / 2835.0,
                 lambda y: jnp.log(jnp.tanh(y) / y))


def _log_cosh(s):
    """``log cosh y`` without the cancellation of ``logaddexp(y, -y) - log 2``
    (``log1p(2 sinh(y/2)^2)``; ``y - log 2`` where cosh would overflow)."""
    def exact(y):
        y_ = jnp.minimum(y, 20.0)
        return jnp.where(y < 20.0, jnp.log1p(2.0 * jnp.sinh(0.5 * y_) ** 2), y - jnp.log(2.0))
    return _even(s, lambda s: s / 2.0 - s * s / 12.0 + s * s * s / 45.0, exact)


def _atanh_over_y(s):
    return _even(s, lambda s: 1.0 + s / 3.0 + s * s / 5.0 + s * s * s / 7.0, lambda y: jnp.arctanh(y) / y)


def _rotation_part(kind: str) -> slice:
    return {"rot2": slice(0, 1), "pose2": slice(2, 3), "rot3": slice(0, 3), "pose3": slice(3, 6)}[kind]


def _y2(w):
    """``(|w| / pi)^2`` over the last axis (kept: [..., 1])."""
    return jnp.sum(w * w, axis=-1, keepdims=True) / jnp.pi**2


def squash(kind: str, u):
    """``u -> delta``: the rotation part into the open ball of radius pi; and
    ``log |det d delta / d u|`` per node. Smooth (every derivative finite) at
    ``u = 0``, the chart's base."""
    part = _rotation_part(kind)
    w = u[..., part]
    s = _y2(w)
    k = w.shape[-1]
    log_det = -2.0 * _log_cosh(s) + (k - 1) * _log_tanh_over_y(s)
    return u.at[..., part].set(_tanh_over_y(s) * w), log_det[..., 0]


def unsquash(kind: str, delta):
    """``delta -> u`` (``delta``'s rotation part in the closed ball of radius pi: log's principal value)."""
    part = _rotation_part(kind)
    w = delta[..., part]
    s = jnp.minimum(_y2(w), (1.0 - 1e-7) ** 2)
    return delta.at[..., part].set(_atanh_over_y(s) * w)


def log_det_jacobian(kind: str, delta):
    """``log |det J_r(delta)|`` per node (``delta`` [..., dof]): Haar measure in the chart."""
    if kind == "rot2":
        return jnp.zeros(delta.shape[:-1], delta.dtype)
    if kind == "pose2":
        return _log_sinc_half_sq(delta[..., 2] ** 2)
    w = delta[..., -3:]
    one = _log_sinc_half_sq(jnp.sum(w * w, axis=-1))
    return one if kind == "rot3" else 2.0 * one


def _lie(name: str):
    from fglang.compiler import lie_jax

    return getattr(lie_jax, name)


def _chart_log_det(kind: str, u):
    """``log |det|`` of ``u -> base compose exp(squash(u))`` against Haar measure, per node."""
    delta, radial = squash(kind, u)
    return radial + log_det_jacobian(kind, delta)


_retract = jax.jit(lambda kind, s, d: _lie("retract")(kind, s, d), static_argnums=0)
_local = jax.jit(lambda kind, s, ref: _lie("local")(kind, s, ref), static_argnums=0)
_forward = jax.jit(lambda kind, base, u: _lie("retract")(kind, base, squash(kind, u)[0]), static_argnums=0)
_inverse = jax.jit(lambda kind, x, base: unsquash(kind, _lie("local")(kind, x, base)), static_argnums=0)
_log_det = jax.jit(_chart_log_det, static_argnums=0)


class GroupValued(constraints.Constraint):
    """A var's stored group values (all its nodes: one event), with the base
    point of its chart."""

    def __init__(self, kind: str, base, event_dim: int):
        self.kind, self.base, self._event_dim = kind, base, event_dim

    @property
    def event_dim(self) -> int:
        return self._event_dim

    def __call__(self, x):
        ok = jnp.isfinite(x)
        return jnp.all(ok.reshape(ok.shape[: ok.ndim - self._event_dim] + (-1,)), axis=-1)

    def feasible_like(self, prototype):
        return jnp.broadcast_to(jnp.asarray(self.base, prototype.dtype), jnp.shape(prototype))

    def tree_flatten(self):
        return (self.base,), (("base",), {"kind": self.kind, "_event_dim": self._event_dim})

    def eq(self, other, static: bool = False):
        return isinstance(other, GroupValued) and other.kind == self.kind and other.base is self.base


class GroupChart(Transform):
    """``u [..., *nodes, dof] -> base compose exp(squash(u)) [..., *nodes, *storage]``."""

    def __init__(self, kind: str, base, event_dim: int):
        self.kind, self.base, self._event_dim = kind, base, event_dim
        self.group = GROUPS[kind]

    @property
    def domain(self):
        nodes = self._event_dim - len(self.group.storage)
        return constraints.independent(constraints.real, nodes + 1)

    @property
    def codomain(self):
        return GroupValued(self.kind, self.base, self._event_dim)

    def _nodes(self, shape) -> int:
        return self._event_dim - len(self.group.storage)

    # jitted: NumPyro runs the model eagerly to set up (its prototype trace),
    # where each of jaxlie's small jitted pieces would compile on its own
    def __call__(self, x):
        base = jnp.broadcast_to(jnp.asarray(self.base, x.dtype), x.shape[:-1] + self.group.storage)
        return _forward(self.kind, base, x)

    def _inverse(self, y):
        base = jnp.asarray(self.base, y.dtype)
        return _inverse(self.kind, y, jnp.broadcast_to(base, y.shape))

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        per_node = _log_det(self.kind, x)
        nodes = self._nodes(x.shape)
        return jnp.sum(per_node.reshape(per_node.shape[: per_node.ndim - nodes] + (-1,)), axis=-1)

    def forward_shape(self, shape):
        return tuple(shape[:-1]) + self.group.storage

    def inverse_shape(self, shape):
        return tuple(shape[: len(shape) - len(self.group.storage)]) + (self.group.tangent,)

    def tree_flatten(self):
        return (self.base,), (("base",), {"kind": self.kind, "_event_dim": self._event_dim,
                                          "group": self.group})

    def eq(self, other, static: bool = False):
        return isinstance(other, GroupChart) and other.kind == self.kind and other.base is self.base


@biject_to.register(GroupValued)
def _chart(constraint: GroupValued) -> GroupChart:
    return GroupChart(constraint.kind, constraint.base, constraint.event_dim)


def support(kind: str, base: np.ndarray, shape: tuple[int, ...]) -> GroupValued:
    """The support of a group var of ``shape`` (nodes + storage), charted at ``base``.

    The base stays a NumPy array: the NUTS sampler's program reuses the
    transforms its start program set up, and a ``jnp`` array made while that
    program was traced is a tracer of it (a leaked tracer in the sampler)."""
    return GroupValued(kind, np.asarray(base), len(shape))


def frechet_mean(kind: str, draws: np.ndarray, iters: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Per node: the intrinsic (Karcher) mean of group-valued draws
    ``[S, *nodes, *storage]`` and the tangent covariance there
    ``[*nodes, dof, dof]`` (the layout of ``map``'s Laplace marginals: the
    node is ``mean compose exp(e)``, ``e ~ N(0, cov)``)."""
    with jax.enable_x64(True):
        return _frechet_mean(kind, np.asarray(draws, np.float64), iters)


def _frechet_mean(kind: str, draws: np.ndarray, iters: int) -> tuple[np.ndarray, np.ndarray]:
    g = GROUPS[kind]
    x = jnp.asarray(draws)
    mean = x[0]
    for _ in range(iters):
        e = _local(kind, x, jnp.broadcast_to(mean, x.shape))  # [S, *nodes, dof]
        step = jnp.mean(e, axis=0)
        mean = _retract(kind, mean, step)
        if float(jnp.max(jnp.abs(step))) < 1e-12:
            break
    e = np.asarray(_local(kind, x, jnp.broadcast_to(mean, x.shape)), np.float64)
    e = e.reshape(e.shape[0], -1, g.tangent)
    c = e - e.mean(axis=0)
    cov = np.einsum("snd,sne->nde", c, c) / max(e.shape[0] - 1, 1)
    nodes = draws.shape[1 : draws.ndim - len(g.storage)]
    return np.asarray(mean, np.float64), cov.reshape(tuple(nodes) + (g.tangent, g.tangent))
