"""How many non-zeros the sparse LDL^T's factor L will hold, known before it is allocated.

qdldl (solve.py) orders the matrix with AMD and allocates L inside its first
factorization; it exposes no symbolic-only step, so a model whose fill is
too large would otherwise first be noticed as a MemoryError (or the machine
swapping) inside it. The fill of a Cholesky factor depends only on the
sparsity pattern and the ordering, and is computed here exactly, in
O(nnz(A) alpha(n)) time, without forming L: the elimination tree, a
postorder of it and the Gilbert-Ng-Peyton column counts (Davis, *Direct
Methods for Sparse Linear Systems*, cs_etree / cs_post / cs_counts).

AMD itself is not available outside qdldl, so ``estimate_fill`` counts the
fill under orderings that can be computed here: SciPy's reverse
Cuthill-McKee and the natural order, and takes the smaller. AMD usually
fills less than either, so the estimate errs on the high side. To keep the
common case free, a bound is tried first: no factor holds more than the
ordering's envelope (vectorized), nor more than n(n-1)/2 entries; only when
those exceed the limit are the exact counts computed (a loop over the
pattern's entries, ~1 s per million).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# what one entry of L costs: qdldl's own L (int64 index + float64 value) and
# the scipy copy ``SparseLDL.factors`` makes of it (int32 + float64)
BYTES_PER_ENTRY = 16 + 12


def etree(indptr: np.ndarray, indices: np.ndarray, n: int) -> list[int]:
    """The elimination tree of a symmetric matrix from its upper triangle in CSC (cs_etree)."""
    ap, ai = indptr.tolist(), indices.tolist()
    parent, ancestor = [-1] * n, [-1] * n
    for k in range(n):
        for p in range(ap[k], ap[k + 1]):
            i = ai[p]
            while i != -1 and i < k:
                inext = ancestor[i]
                ancestor[i] = k
                if inext == -1:
                    parent[i] = k
                i = inext
    return parent


def postorder(parent: list[int]) -> list[int]:
    """A postorder of the forest ``parent`` (cs_post)."""
    n = len(parent)
    head, nxt = [-1] * n, [-1] * n
    for j in range(n - 1, -1, -1):
        if parent[j] != -1:
            nxt[j] = head[parent[j]]
            head[parent[j]] = j
    post, stack = [], []
    for j in range(n):
        if parent[j] != -1:
            continue
        stack.append(j)
        while stack:
            p = stack[-1]
            i = head[p]
            if i == -1:
                stack.pop()
                post.append(p)
            else:
                head[p] = nxt[i]
                stack.append(i)
    return post


def column_counts(upper: sp.csc_matrix) -> np.ndarray:
    """Non-zeros of each column of the Cholesky factor L (diagonal included) of
    the symmetric matrix whose upper triangle (in its given order) is ``upper``:
    cs_counts with ata=0."""
    upper = sp.csc_matrix(upper)
    n = upper.shape[0]
    parent = etree(upper.indptr, upper.indices, n)
    post = postorder(parent)
    at = upper.T.tocsc()  # column j: the rows i >= j of row j of the upper triangle
    atp, ati = at.indptr.tolist(), at.indices.tolist()
    first, maxfirst, prevleaf = [-1] * n, [-1] * n, [-1] * n
    ancestor = list(range(n))
    delta = [0] * n
    for k in range(n):
        j = post[k]
        delta[j] = 1 if first[j] == -1 else 0
        while j != -1 and first[j] == -1:
            first[j] = k
            j = parent[j]
    for k in range(n):
        j = post[k]
        if parent[j] != -1:
            delta[parent[j]] -= 1
        fj = first[j]
        for p in range(atp[j], atp[j + 1]):
            i = ati[p]
            if i <= j or fj <= maxfirst[i]:  # cs_leaf: not a leaf of row i's subtree
                continue
            maxfirst[i] = fj
            jprev = prevleaf[i]
            prevleaf[i] = j
            delta[j] += 1
            if jprev != -1:  # j is a later leaf: the least common ancestor with the previous one
                q = jprev
                while q != ancestor[q]:
                    q = ancestor[q]
                s = jprev
                while s != q:
                    sparent = ancestor[s]
                    ancestor[s] = q
                    s = sparent
                delta[q] -= 1
        if parent[j] != -1:
            ancestor[j] = parent[j]
    counts = delta
    for j in post:  # children before parents
        if parent[j] != -1:
            counts[parent[j]] += counts[j]
    return np.asarray(counts, np.int64)


def factor_nnz(sym: sp.spmatrix, perm: np.ndarray | None = None) -> int:
    """Exact non-zeros of L strictly below the diagonal (as qdldl's ``factors`` counts them)
    of the symmetric pattern ``sym`` (either triangle or both) ordered by ``perm``."""
    a = _symmetric(sym)
    if perm is not None:
        a = a[perm][:, perm]
    return int(column_counts(sp.triu(a, format="csc")).sum()) - a.shape[0]


def envelope(sym: sp.spmatrix, perm: np.ndarray | None = None) -> int:
    """The envelope (profile) of ``sym`` ordered by ``perm``: sum over rows of the
    distance from the first non-zero to the diagonal. L's fill stays inside it."""
    a = _symmetric(sym)
    if perm is not None:
        a = a[perm][:, perm]
    low = sp.tril(a, format="csr")
    n = a.shape[0]
    nonempty = np.diff(low.indptr) > 0
    firsts = np.arange(n)
    firsts[nonempty] = low.indices[low.indptr[:-1][nonempty]]  # sorted rows: first column per row
    return int(np.sum(np.arange(n) - np.minimum(firsts, np.arange(n))))


def estimate_fill(sym: sp.spmatrix, limit_entries: float) -> tuple[int, str]:
    """(an estimate of nnz(L), how it was found): exact only when the cheap bounds exceed ``limit_entries``."""
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    a = _symmetric(sym)
    n = a.shape[0]
    dense = n * (n - 1) // 2
    if dense <= limit_entries:
        return dense, "at most n(n-1)/2"
    rcm = reverse_cuthill_mckee(a.tocsr(), symmetric_mode=True)
    bound = envelope(a, rcm)
    if bound <= limit_entries:
        return bound, "at most the envelope of the reverse Cuthill-McKee ordering"
    exact = min(factor_nnz(a, rcm), factor_nnz(a))
    return exact, "exactly, under the reverse Cuthill-McKee or natural ordering"


def _symmetric(sym: sp.spmatrix) -> sp.csc_matrix:
    """The pattern of sym + sym^T with the diagonal, values 1 (so nothing cancels)."""
    a = sp.csc_matrix(sym, dtype=np.float64, copy=True)
    a.data = np.ones_like(a.data)
    n = a.shape[0]
    a = (abs(a) + abs(a.T) + sp.identity(n, format="csc")).tocsc()
    a.sum_duplicates()
    a.sort_indices()
    a.data[:] = 1.0
    return a
