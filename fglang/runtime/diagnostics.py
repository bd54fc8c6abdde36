"""Rank-normalized split R-hat and bulk ESS of MCMC draws, in NumPy alone.

Why NumPy alone: the summary every ``fglang fit`` prints runs these, and
SciPy's import (``scipy.special``, ``scipy.fft``) was ~0.4 s CPU of a warm
eight-schools fit of ~4 s. The two SciPy functions used are small: the
inverse normal CDF (`ndtri`, Wichura's AS 241, accurate to about 1e-16
relative) and FFT's fast length (`next_fast_len`).
"""

from __future__ import annotations

import numpy as np

# Wichura (1988), Algorithm AS 241 (PPND16): rational approximations of the normal quantile,
# coefficients in increasing powers
_A = (3.387132872796366608, 133.14166789178437745, 1971.5909503065514427, 13731.693765509461125,
      45921.953931549871457, 67265.770927008700853, 33430.575583588128105, 2509.0809287301226727)
_B = (1.0, 42.313330701600911252, 687.1870074920579083, 5394.1960214247511077,
      21213.794301586595867, 39307.89580009271061, 28729.085735721942674, 5226.495278852545925)
_C = (1.42343711074968357734, 4.6303378461565452959, 5.7694972214606914055, 3.64784832476320460504,
      1.27045825245236838258, 0.24178072517745061177, 0.0227238449892691845833, 7.7454501427834140764e-4)
_D = (1.0, 2.05319162663775882187, 1.6763848301838038494, 0.68976733498510000455,
      0.14810397642748007459, 0.0151986665636164571966, 5.475938084995344946e-4, 1.05075007164441684324e-9)
_E = (6.6579046435011037772, 5.4637849111641143699, 1.7848265399172913358, 0.29656057182850489123,
      0.026532189526576123093, 0.0012426609473880784386, 2.71155556874348757815e-5, 2.01033439929228813265e-7)
_F = (1.0, 0.59983220655588793769, 0.13692988092273580531, 0.0148753612908506148525,
      7.868691311456132591e-4, 1.8463183175100546818e-5, 1.4215117583164458887e-7, 2.04426310338993978564e-15)


def _poly(coefs: tuple[float, ...], r: np.ndarray) -> np.ndarray:
    out = np.full_like(r, coefs[-1])
    for c in coefs[-2::-1]:
        out = out * r + c
    return out


def ndtri(p: np.ndarray) -> np.ndarray:
    """The standard normal quantile of ``p`` (``scipy.special.ndtri``): -inf at
    0, inf at 1, nan outside [0, 1]."""
    p = np.asarray(p, dtype=np.float64)
    q = p - 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        r = 0.180625 - q * q
        central = q * _poly(_A, r) / _poly(_B, r)
        s = np.sqrt(-np.log(np.minimum(p, 1.0 - p)))
        near = _poly(_C, s - 1.6) / _poly(_D, s - 1.6)
        far = _poly(_E, s - 5.0) / _poly(_F, s - 5.0)
        tail = np.where(s <= 5.0, near, far)
        out = np.where(np.abs(q) <= 0.425, central, np.where(q < 0, -tail, tail))
    out = np.where(p == 0.0, -np.inf, np.where(p == 1.0, np.inf, out))
    return np.where((p < 0.0) | (p > 1.0) | np.isnan(p), np.nan, out)


def next_fast_len(target: int) -> int:
    """The least n >= ``target`` whose prime factors are all <= 11 (``scipy.fft.next_fast_len``)."""
    n = max(int(target), 1)
    while True:
        m = n
        for f in (2, 3, 5, 7, 11):
            while m % f == 0:
                m //= f
        if m == 1:
            return n
        n += 1


def _split_chains(x: np.ndarray) -> np.ndarray:
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks along axis 0, ties averaged (``scipy.stats.rankdata``, whose
    import alone costs a CLI run two seconds)."""
    n = x.shape[0]
    order = np.argsort(x, axis=0, kind="stable")
    sx = np.take_along_axis(x, order, axis=0)
    pos = np.arange(n).reshape((n,) + (1,) * (x.ndim - 1))
    first = np.ones(sx.shape, bool)
    first[1:] = sx[1:] != sx[:-1]
    last = np.ones(sx.shape, bool)
    last[:-1] = first[1:]
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=0)
    end = np.flip(np.minimum.accumulate(np.flip(np.where(last, pos, n - 1), axis=0), axis=0), axis=0)
    ranks = np.empty(sx.shape)
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=0)
    return ranks


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Rank-normalize [chain, draw, k] per k (Blom's offsets, ties averaged)."""
    c, n = x.shape[:2]
    r = _average_ranks(x.reshape((c * n,) + x.shape[2:]))
    return ndtri((r - 0.375) / (c * n + 0.25)).reshape(x.shape)


def _rhat(x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    between = n * np.var(x.mean(axis=1), axis=0, ddof=1)
    within = np.mean(np.var(x, axis=1, ddof=1), axis=0)
    return np.sqrt((between / within + n - 1) / n)


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS of [chain, draw, k] per k: Geyer's initial monotone sequence, as ArviZ's ``_ess``."""
    c, n = x.shape[:2]
    f = np.fft.rfft(x - x.mean(axis=1, keepdims=True), n=next_fast_len(2 * n), axis=1)
    acov = np.fft.irfft(f * np.conjugate(f), n=next_fast_len(2 * n), axis=1)[:, :n] / n
    mean_var = acov[:, 0].mean(axis=0) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n + (np.var(x.mean(axis=1), axis=0, ddof=1) if c > 1 else 0.0)
    rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    k = max((n - 3) // 2 + 1, 1)  # the pairs (rho[2i], rho[2i+1]) the sequence may use
    pairs = rho[0 : 2 * k : 2] + rho[1 : 2 * k : 2]
    positive = pairs > 0
    positive[0] = True
    stop = np.where(np.all(positive, axis=0), k - 1, np.argmin(positive, axis=0))  # the first pair <= 0
    keep = np.arange(len(pairs)).reshape((-1,) + (1,) * (pairs.ndim - 1)) < stop
    mono = np.minimum.accumulate(np.where(keep, pairs, np.inf), axis=0)
    tau = -1.0 + 2.0 * np.sum(np.where(keep, mono, 0.0), axis=0)
    tau = tau + np.maximum(np.take_along_axis(rho, np.minimum(2 * stop, n - 1)[None], axis=0)[0], 0.0)
    tau = np.maximum(tau, 1.0 / np.log10(c * n))
    constant = np.ptp(x, axis=(0, 1)) < np.finfo(float).resolution
    return np.where(constant, float(c * n), c * n / tau)


def rank_diagnostics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank-normalized split R-hat and bulk ESS of draws [chain, draw, k], per k
    (Vehtari, Gelman, Simpson, Carpenter, Buerkner 2021; equal to ArviZ's
    ``rhat`` and ``ess(method="bulk")``)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = _split_chains(x)
        z = _z_scale(s)
        folded = _z_scale(np.abs(s - np.median(s, axis=(0, 1))))
        rhat = np.maximum(_rhat(z), _rhat(folded)) if x.shape[0] > 1 else np.full(x.shape[2:], np.nan)
        return rhat, _ess(z)
