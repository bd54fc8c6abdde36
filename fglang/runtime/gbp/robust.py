"""Robust (M-estimator) reweighting of Gaussian factors.

A robust factor keeps its Gaussian form but its information is scaled per member
by a weight ``w(r~)`` of the whitened residual norm ``r~ = sqrt(r^T Lambda r)``
at the linearization point. The weights are the IRLS weights ``rho'(r~)/r~`` of
the M-estimator, as in GTSAM's ``noiseModel::mEstimator`` and the robust GBP of
Davison & Ortiz ("FutureMapping 2", 2019) and Nabarro et al. (GBP Learning,
2024): at a GBP fixed point with re-linearization the means then satisfy the
robust estimator's stationarity condition, so the fixed point is the robust
optimum (not merely a reweighted Gaussian one).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def huber_weight(r2: Array, k: Array | float) -> Array:
    """Huber IRLS weight from the squared whitened residual ``r2``.

    ``w = 1`` for ``|r~| <= k`` and ``k / |r~|`` beyond, with ``k`` in units of the
    noise sd (GTSAM's Huber ``k``; 1.345 gives 95% efficiency under Gaussian
    noise). Always in ``(0, 1]``: inside ``k`` the factor is plain Gaussian,
    outside its energy grows linearly, so an outlier's pull is bounded.
    """
    k = jnp.asarray(k, r2.dtype)
    inside = r2 <= k * k
    safe = jnp.where(inside, 1.0, r2)
    return jnp.where(inside, 1.0, k / jnp.sqrt(safe))


def student_t_weight(r2: Array, df: Array | float, dim: int = 1) -> Array:
    """Student-t EM weight ``(df + dim) / (df + r2)`` (a Gaussian scale mixture).

    This is the posterior mean of the mixing precision of a (multivariate,
    ``dim``-dimensional) Student-t written as a Gaussian scale mixture (Lange,
    Little & Taylor 1989); for a scalar residual it is ``(df+1)/(df+r~^2)``. It
    is positive and decreasing in ``r2``; unlike Huber it exceeds 1 near zero
    (the t density is more peaked than the Gaussian with the same scale).
    """
    df = jnp.asarray(df, r2.dtype)
    return (df + dim) / (df + r2)


def robust_weight(kind: str, param: Array, r2: Array, dim: int) -> Array:
    """Dispatch to the weight of ``kind`` (``"huber"`` or ``"student_t"``)."""
    if kind == "huber":
        return huber_weight(r2, param)
    if kind == "student_t":
        return student_t_weight(r2, param, dim)
    raise ValueError(f"unknown robust kind {kind!r}")
