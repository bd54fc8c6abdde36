"""Angles in a summary: spread and quantiles around the mean, on the circle.

A ``rot2`` is stored as its angle and a ``pose2`` as ``[x, y, theta]``, each
angle in ``(-pi, pi]``. A heading near pi whose draws straddle the cut holds
values near -pi and near +pi: their plain sd is ~pi and their 5%/95% span
the whole circle, though the draws lie within a few degrees of each other.
The draws are read instead as ``mean + wrap(draw - mean)`` (``wrap`` into
``[-pi, pi)``), the mean being the posterior's (intrinsic) mean of the
group var, so the sd is the spread of the angle about it and the quantiles
lie around it (they may pass pi: a heading of 3.1 with a 95% of 3.2 rather
than -3.08).
"""

from __future__ import annotations

import numpy as np

from fglang.compiler.groups import GROUPS


def angle_elements(group: str | None) -> tuple[int, ...] | None:
    """Where the angle sits in one stored value of ``group``: ``()`` for the
    whole (scalar) value, ``(i,)`` for element i of the value's last axis;
    None for a group without a planar angle (or no group)."""
    if group is None or group not in GROUPS or GROUPS[group].rotation != "rot2":
        return None
    return () if GROUPS[group].storage == () else (GROUPS[group].storage[0] - 1,)


def wrap(a: np.ndarray) -> np.ndarray:
    """``a`` mapped into ``[-pi, pi)``."""
    return (np.asarray(a) + np.pi) % (2.0 * np.pi) - np.pi


def around_mean(draws: np.ndarray, mean: np.ndarray, group: str | None) -> np.ndarray:
    """``draws`` [..., *shape] with every angle element replaced by ``mean +
    wrap(draw - mean)`` (``mean`` [*shape]); the other elements, and the draws
    of a var with no angle, as they are."""
    where = angle_elements(group)
    if where is None or np.size(draws) == 0:
        return draws
    mean = np.asarray(mean, np.float64)
    if where == ():
        return mean + wrap(draws - mean)
    out = np.array(draws, np.float64, copy=True)
    i = where[0]
    out[..., i] = mean[..., i] + wrap(out[..., i] - mean[..., i])
    return out
