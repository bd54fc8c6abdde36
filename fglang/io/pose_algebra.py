"""Poses of a pose-graph file composed in plain Python floats (no JAX):
the reader's initial guess along a chain of edges, and TORO's Euler angles
as quaternions. Per file line and per edge, so there is nothing to batch."""

from __future__ import annotations

import math


def euler_to_quaternion(roll: float, pitch: float, yaw: float) -> list[float]:
    """``[qx, qy, qz, qw]`` of ``R = Rz(yaw) Ry(pitch) Rx(roll)`` (TORO's convention), ``qw >= 0``."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    q = [
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
        cr * cp * cy + sr * sp * sy,
    ]
    return canonical(q)


def canonical(q: list[float]) -> list[float]:
    """Unit length (left as written when it is unit to 1e-12) and ``qw >= 0``."""
    n = math.sqrt(sum(c * c for c in q))
    s = (-1.0 if q[3] < 0 else 1.0) / (1.0 if abs(n - 1.0) < 1e-12 else n)
    return [c * s for c in q]


def qmul(a: list[float], b: list[float]) -> list[float]:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return [
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ]


def cross(a: list[float], b: list[float]) -> list[float]:
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def qrotate(q: list[float], v: list[float]) -> list[float]:
    """v rotated by the unit quaternion q: v + w t + u x t with t = 2 u x v."""
    u, w = q[:3], q[3]
    t = [2.0 * c for c in cross(u, v)]
    ut = cross(u, t)
    return [v[i] + w * t[i] + ut[i] for i in range(3)]


def wrap(a: float) -> float:
    w = (a + math.pi) % (2 * math.pi) - math.pi
    return math.pi if w == -math.pi else w


def compose2(a: list[float], d: list[float]) -> list[float]:
    c, s = math.cos(a[2]), math.sin(a[2])
    return [a[0] + c * d[0] - s * d[1], a[1] + s * d[0] + c * d[1], wrap(a[2] + d[2])]


def inverse2(d: list[float]) -> list[float]:
    c, s = math.cos(d[2]), math.sin(d[2])
    return [-c * d[0] - s * d[1], s * d[0] - c * d[1], -d[2]]


def compose3(a: list[float], d: list[float]) -> list[float]:
    t = [x + y for x, y in zip(a[:3], qrotate(a[3:], d[:3]))]
    return t + canonical(qmul(a[3:], d[3:]))


def inverse3(d: list[float]) -> list[float]:
    qi = [-d[3], -d[4], -d[5], d[6]]
    return [-x for x in qrotate(qi, d[:3])] + canonical(qi)
