"""Linear solves for Levenberg-Marquardt: a sparse LDL^T with its symbolic
analysis done once per sparsity pattern, or a dense Cholesky.

Why qdldl: measured on M3500's normal equations (10,500 unknowns) on a
2-core machine, one numeric refactorization with the AMD ordering and
elimination tree kept costs 16 ms (170k non-zeros in L), against 125 ms for
SciPy's SuperLU (which redoes its ordering every call) and 140 ms for
cholespy (CHOLMOD, but no numeric-only refactorization). scikit-sparse has no
wheel here (it needs SuiteSparse from apt). qdldl also hands back its
factors, which the Laplace step's selected inversion needs.

Where it stops being enough: on sphere2500 (15,000 unknowns, 230k non-zeros
in the upper triangle of H, 1.5M in L) one numeric refactorization costs
0.33 s of CPU, about 3/4 of each LM iteration, against GTSAM's whole
iteration of ~0.1 s. qdldl is an up-looking scalar LDL^T (no dense kernels);
L has 1,877 fundamental supernodes (1,743 of them one pose wide), so a
supernodal or multifrontal factorization with BLAS on 6x6 blocks, as
GTSAM's, is what would close that gap.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp


class Pattern(NamedTuple):
    """The upper triangle of a symmetric matrix in CSC, fixed per model shape."""

    n: int
    indptr: np.ndarray
    indices: np.ndarray
    diag: np.ndarray  # position of each diagonal entry in the data array

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    def matrix(self, data: np.ndarray) -> sp.csc_matrix:
        # built from its arrays so explicit zeros stay in the pattern
        return sp.csc_matrix((data, self.indices, self.indptr), shape=(self.n, self.n))


def upper_pattern(rows: np.ndarray, cols: np.ndarray, n: int) -> tuple[Pattern, np.ndarray]:
    """The pattern of entries (rows, cols) (any triangle, repeats allowed; the
    diagonal always included) and, per entry, its position in the data array."""
    r, c = np.minimum(rows, cols), np.maximum(rows, cols)
    keys = np.concatenate([c.astype(np.int64) * n + r, np.arange(n, dtype=np.int64) * (n + 1)])
    uniq, inv = np.unique(keys, return_inverse=True)
    col, row = np.divmod(uniq, n)
    indptr = np.zeros(n + 1, np.int64)
    np.add.at(indptr, col + 1, 1)
    indptr = np.cumsum(indptr)
    diag = np.searchsorted(uniq, np.arange(n, dtype=np.int64) * (n + 1))
    pattern = Pattern(n, indptr.astype(np.int32), row.astype(np.int32), diag)
    return pattern, inv[: rows.size]


class SingularError(Exception):
    """The matrix is not positive definite (a zero or negative pivot)."""


class SparseLDL:
    """LDL^T of ``H + lam diag(D)`` on a fixed pattern; the first factorization
    does the symbolic analysis, later ones only the numeric work."""

    def __init__(self, pattern: Pattern):
        self.pattern = pattern
        self._solver = None

    def factor(self, data: np.ndarray) -> None:
        import qdldl

        m = self.pattern.matrix(data)
        try:
            if self._solver is None:
                self._solver = qdldl.Solver(m)
            else:
                self._solver.update(m)
        except Exception as err:  # qdldl raises ValueError on a zero pivot
            self._solver = None
            raise SingularError(str(err)) from None
        _, d, _ = self.factors()
        if not np.all(np.isfinite(d)) or np.any(d <= 0):
            raise SingularError("not positive definite")

    @property
    def factored(self) -> bool:
        """Whether a factorization (of this pattern) is held."""
        return self._solver is not None

    def factors(self) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray]:
        """(L strictly lower, D, P): H[P][:, P] = (I + L) D (I + L)^T."""
        return self._solver.factors()

    def solve(self, b: np.ndarray) -> np.ndarray:
        return self._solver.solve(np.asarray(b, np.float64))


class DenseCholesky:
    """Cholesky of a dense ``H + lam diag(D)`` (the general path's few unknowns)."""

    def __init__(self) -> None:
        self._c = None

    def factor(self, h: np.ndarray) -> None:
        if not np.all(np.isfinite(h)):
            raise SingularError("non-finite Hessian")
        try:
            self._c = sla.cho_factor(h, lower=True, check_finite=False)
        except np.linalg.LinAlgError as err:
            raise SingularError(str(err)) from None

    def solve(self, b: np.ndarray) -> np.ndarray:
        return sla.cho_solve(self._c, b, check_finite=False)

    def lower(self) -> np.ndarray:
        return np.tril(self._c[0])
