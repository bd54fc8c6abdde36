"""Pareto-smoothed importance sampling (Vehtari, Simpson, Gelman, Yao, Gabry
2024) of a VI guide against the model: the k-hat diagnostic of Yao, Vehtari,
Simpson & Gelman (2018), "Yes, but did it work?: evaluating variational
inference". NumPy only (importing ArviZ costs seconds); the generalized Pareto
fit is Zhang & Stephens (2009) with the weakly informative prior on k of
ArviZ's ``psislw`` and loo's ``psis``, so the numbers match those.

k-hat < 0.5: the guide is close enough that importance sampling works;
0.5-0.7: usable with care; > 0.7: the guide is far from the posterior in
ways its mean and sd do not show (Yao et al. 2018, section 2).
"""

from __future__ import annotations

import numpy as np

KHAT_BAD = 0.7
"""k-hat past which the guide is unreliable (Yao, Vehtari, Simpson & Gelman 2018)."""


def _gpd_fit(x: np.ndarray) -> tuple[float, float]:
    """Generalized Pareto (k, sigma) of exceedances ``x`` > 0, sorted ascending."""
    n = len(x)
    prior_bs, prior_k = 3, 10
    m = 30 + int(np.sqrt(n))
    bs = 1 - np.sqrt(m / (np.arange(1, m + 1, dtype=float) - 0.5))
    bs /= prior_bs * x[int(n / 4 + 0.5) - 1]
    bs += 1 / x[-1]
    ks = np.log1p(-bs[:, None] * x).mean(axis=1)
    len_scale = n * (np.log(-(bs / ks)) - ks - 1)
    weights = 1 / np.exp(len_scale - len_scale[:, None]).sum(axis=1)
    keep = weights >= 10 * np.finfo(float).eps
    bs, weights = bs[keep], weights[keep] / weights[keep].sum()
    b_post = float(np.sum(bs * weights))
    k_post = float(np.log1p(-b_post * x).mean())
    sigma = -k_post / b_post
    k_post = (n * k_post + prior_k * 0.5) / (n + prior_k)  # weakly informative prior, as loo and ArviZ
    return k_post, sigma


def psis(log_w: np.ndarray) -> tuple[np.ndarray, float]:
    """Smoothed normalized log weights and k-hat of raw log weights [S] (as
    ArviZ's ``psislw``, except that equal weights give k-hat 0, not inf). A NaN
    weight counts as 0; an infinite one makes k-hat inf."""
    x = np.asarray(log_w, dtype=np.float64).copy()
    n = x.size
    x[np.isnan(x)] = -np.inf
    if n == 0 or not np.isfinite(x).any() or np.isposinf(x).any():
        return np.full(n, -np.log(max(n, 1))), float("inf")
    x -= x.max()
    if np.all(x > -1e-12):  # equal weights (the guide is the posterior): nothing to smooth
        return np.full(n, -np.log(n)), 0.0
    order = np.argsort(x)
    cutoff_ind = -int(np.ceil(min(0.2 * n, 3 * np.sqrt(n)))) - 1
    cutoff = max(x[order[cutoff_ind]], np.log(np.finfo(float).tiny))
    (tail,) = np.nonzero(x > cutoff)
    k = float("inf")
    if len(tail) > 4:
        tail_order = np.argsort(x[tail])
        exceed = np.exp(x[tail]) - np.exp(cutoff)
        k, sigma = _gpd_fit(exceed[tail_order])
        if np.isfinite(k) and sigma > 0:
            p = np.arange(0.5, len(tail)) / len(tail)
            q = -np.log1p(-p) if abs(k) < np.finfo(float).eps else np.expm1(-k * np.log1p(-p)) / k
            x[tail[tail_order]] = np.log(sigma * q + np.exp(cutoff))
            x[x > 0] = 0.0
    x -= np.logaddexp.reduce(x)
    return x, float(k)


def ess(log_w_normalized: np.ndarray) -> float:
    """Effective sample size of normalized importance weights: 1 / sum(w^2)."""
    w = np.exp(log_w_normalized)
    return float(1.0 / np.sum(w**2))
