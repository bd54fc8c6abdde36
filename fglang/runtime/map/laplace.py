"""Laplace marginals: each node's covariance block of ``H^{-1}`` at the
optimum, without forming the dense inverse.

Why selected inversion (Takahashi, Fagan & Chin 1973; Erisman & Tinney
1975): with ``H[P][:, P] = (I + L) D (I + L)^T``, the entries of ``Z =
H^{-1}`` on the pattern of ``L`` (which holds every node's own block, put
into the pattern on purpose) satisfy, for column ``j`` with sub-diagonal
rows ``S_j``::

    Z[i, j] = -sum_{k in S_j} Z[i, k] L[k, j]     (i in S_j)
    Z[j, j] = 1 / D[j] - sum_{k in S_j} L[k, j] Z[k, j]

and every ``Z[i, k]`` on the right lies in columns that are ancestors of
``j`` in the elimination tree. So the columns of one depth of the tree are
independent: one vectorized NumPy pass per depth (M3500: a few hundred),
none per column, costing ``sum_j |S_j|^2`` multiply-adds in all. The index
bookkeeping is symbolic and done once per pattern.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp


class _Level(NamedTuple):
    src: np.ndarray  # into [Z off-diagonal | Z diagonal]
    lpos: np.ndarray  # into L's data
    seg: np.ndarray  # reduceat starts (pairs sorted by target)
    tgt: np.ndarray  # target off-diagonal position per segment
    cols: np.ndarray  # columns at this depth
    cpos: np.ndarray  # L positions of those columns' entries, column-major
    cseg: np.ndarray  # reduceat starts per column


class Plan(NamedTuple):
    n: int
    nnz: int
    keys: np.ndarray  # col * n + row of every L entry, sorted
    levels: tuple[_Level, ...]


def _depths(parent: np.ndarray) -> np.ndarray:
    """Depth of every node of a forest given by ``parent`` (-1 at roots), by pointer jumping."""
    d = (parent >= 0).astype(np.int64)
    a = parent.copy()
    while np.any(a >= 0):
        live = a >= 0
        d = d + np.where(live, d[np.where(live, a, 0)], 0)
        a = np.where(live, a[np.where(live, a, 0)], -1)
    return d


def _position(keys: np.ndarray, row: np.ndarray, col: np.ndarray, n: int) -> np.ndarray:
    want = col.astype(np.int64) * n + row
    pos = np.searchsorted(keys, want)
    if pos.size and (np.any(pos >= keys.size) or np.any(keys[np.minimum(pos, keys.size - 1)] != want)):
        raise AssertionError("selected inversion: an entry is missing from the filled pattern")
    return pos


AUTO_WORK = 5e7
"""Most pair updates ``sum_j |S_j|^2`` that ``marginals=auto`` spends (the plan
keeps two int32 per pair, 0.4 GB here, and builds one tree level at a time).
M3500 needs ~2e6; sphere2500's fill ~4e8, which would take several GB and
minutes: its marginals are skipped unless asked for."""

PLAN_BYTES_PER_PAIR = 96.0
"""Peak bytes per pair update of one level while `plan` builds it (its int64
index temporaries): 95 measured by tracemalloc on 2-D grid Laplacians of 900
to 8,100 unknowns when the plan was built all at once
(tests/test_fit_memory_backends.py checks the estimate)."""

PLAN_KEPT_PER_PAIR = 8.0
"""Bytes kept per pair update in the plan (two int32 indices)."""


def work(lower: sp.csc_matrix) -> int:
    """The pair updates (and plan entries) selected inversion needs for ``lower``."""
    counts = np.diff(lower.tocsc().indptr).astype(np.int64)
    return int(np.sum(counts * counts))


def plan_bytes(lower: sp.csc_matrix) -> float:
    """What `plan` and `selected_inverse` allocate at their peak for ``lower``,
    known from the factor's pattern (its fill) before either runs: the kept
    index arrays (``PLAN_KEPT_PER_PAIR``) of every pair, and the temporaries
    (``PLAN_BYTES_PER_PAIR``) of the largest level's pairs, built one level at
    a time."""
    lower = lower.tocsc()
    lp, li = lower.indptr.astype(np.int64), lower.indices.astype(np.int64)
    counts = np.diff(lp)
    sq = (counts * counts).astype(np.float64)
    depth = _column_depths(lp, li, counts)
    per_level = np.bincount(depth, weights=sq) if depth.size else np.zeros(1)
    return (PLAN_KEPT_PER_PAIR * float(sq.sum()) + PLAN_BYTES_PER_PAIR * float(per_level.max(initial=0.0))
            + 40.0 * float(lower.nnz + lower.shape[0]))


def plan(lower: sp.csc_matrix) -> Plan:
    """The per-pattern bookkeeping of the recurrence (``lower``: strictly lower L).

    Columns are taken in order of depth, and each column's pairs ``(a, b)``
    of sub-diagonal entries ``a``-major, so the pairs arrive grouped by level
    and, within it, by target entry: no sort of the ``sum_j |S_j|^2`` pairs.
    Built one level at a time, so that the int64 temporaries of the index
    arithmetic (~96 bytes a pair) exist for one level's pairs only, and what
    is kept is 8 bytes a pair (on a 10,000-pose graph: 40M pairs, a peak of
    ~4 GB when all levels were built at once)."""
    lower = lower.tocsc()
    lower.sort_indices()
    n, lp, li = lower.shape[0], lower.indptr.astype(np.int64), lower.indices.astype(np.int64)
    nnz = li.size
    counts = np.diff(lp)
    colof = np.repeat(np.arange(n), counts)
    keys = colof * n + li
    depth = _column_depths(lp, li, counts)
    corder = np.argsort(depth, kind="stable")
    cdepth = depth[corder]
    levels = []
    for lev in range(1, int(depth.max(initial=0)) + 1):
        clo, chi = np.searchsorted(cdepth, [lev, lev + 1])
        levels.append(_level(corder[clo:chi], lp, li, keys, n))
    return Plan(n, nnz, keys, tuple(levels))


def _column_depths(lp: np.ndarray, li: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each column's depth in the elimination tree (its parent: its first sub-diagonal row)."""
    nnz = li.size
    if nnz == 0:  # a diagonal Hessian (one scalar unknown, or independent ones): no column has a parent
        return np.zeros(counts.size, np.int64)
    return _depths(np.where(counts > 0, li[np.minimum(lp[:-1], nnz - 1)], -1))


def _level(cols: np.ndarray, lp: np.ndarray, li: np.ndarray, keys: np.ndarray, n: int) -> _Level:
    """The pairs of the columns ``cols`` (one depth of the tree)."""
    nnz = li.size
    cc = lp[cols + 1] - lp[cols]
    sq = cc * cc
    pstart = np.concatenate([[0], np.cumsum(sq)])
    c = np.repeat(cc, sq)
    t = np.arange(pstart[-1]) - np.repeat(pstart[:-1], sq)
    a, b = t // np.maximum(c, 1), t % np.maximum(c, 1)
    del t, c
    base = np.repeat(lp[cols], sq)
    tgt, lpos = base + a, base + b
    del base, a, b
    i, k = li[tgt], li[lpos]
    src = nnz + i  # the diagonal Z[i, i] where i == k
    off = np.flatnonzero(i != k)
    src[off] = _position(keys, np.maximum(i[off], k[off]), np.minimum(i[off], k[off]), n)
    del i, k, off
    # one segment per (column, a): cc[j] segments of cc[j] pairs for column j
    seg_len = np.repeat(cc, cc)
    seg = np.concatenate([[0], np.cumsum(seg_len)[:-1]]) if seg_len.size else np.zeros(0, np.int64)
    seg_tgt = tgt[seg] if seg.size else np.zeros(0, np.int64)
    cpos = np.repeat(lp[cols], cc) + (np.arange(int(cc.sum())) - np.repeat(np.cumsum(cc) - cc, cc))
    cseg = np.cumsum(cc) - cc
    return _Level(src.astype(np.int32), lpos.astype(np.int32), seg, seg_tgt, cols, cpos, cseg)


def selected_inverse(p: Plan, lower: sp.csc_matrix, d: np.ndarray) -> np.ndarray:
    """``[Z on L's pattern | diag(Z)]`` for ``(I + L) D (I + L)^T``."""
    lower = lower.tocsc()
    lower.sort_indices()
    lx = lower.data
    z = np.zeros(p.nnz + p.n)
    z[p.nnz:] = 1.0 / d  # roots (depth 0): no sub-diagonal entries
    for lev in p.levels:
        if lev.src.size:
            z[lev.tgt] = -np.add.reduceat(z[lev.src] * lx[lev.lpos], lev.seg)
        z[p.nnz + lev.cols] = 1.0 / d[lev.cols] - np.add.reduceat(lx[lev.cpos] * z[lev.cpos], lev.cseg)
    return z


def node_blocks(p: Plan, z: np.ndarray, perm: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Covariance blocks ``[nodes, d, d]`` of the unknowns ``index [nodes, d]`` (original order)."""
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size)
    q = inv[index]
    qa, qb = q[:, :, None], q[:, None, :]
    qa, qb = np.broadcast_arrays(qa, qb)
    hi, lo = np.maximum(qa, qb), np.minimum(qa, qb)
    where = np.where(hi == lo, p.nnz + hi, 0)
    off = hi != lo
    where[off] = _position(p.keys, hi[off], lo[off], p.n)
    return z[where]
