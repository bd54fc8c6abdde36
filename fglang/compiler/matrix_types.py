"""The matrix types of Stan's correlated hierarchical models: what each
holds, and how binding (data) and a user's start (``--init``) check a
concrete value against it.

``cholesky_factor_corr[K]``, ``corr_matrix[K]``, ``cov_matrix[K]`` and
``cholesky_factor_cov[K]`` take one size and hold a ``[K, K]`` value (the
type's size is the matrix's side, as Stan's). They live here, not in
``types.py``, because a value check is numerical work (a Cholesky per
matrix) that the checker's symbolic types never do; the runtime maps each
kind to NumPyro's constraint (``runtime/numpyro_model.domain_constraint``),
whose bijection vi, mcmc and map's general path sample through.
"""

from __future__ import annotations

import numpy as np

#: kind -> what a value of it is, as messages say it
MATRIX_TYPES: dict[str, str] = {
    "cholesky_factor_corr": "the Cholesky factor of a correlation matrix (lower triangular, positive diagonal, "
                            "rows of unit length)",
    "corr_matrix": "a correlation matrix (symmetric positive definite, unit diagonal)",
    "cov_matrix": "a covariance matrix (symmetric positive definite)",
    "cholesky_factor_cov": "the Cholesky factor of a covariance matrix (lower triangular, positive diagonal)",
}

#: tolerance of a value read from a file (a JSON round trip of a matrix computed elsewhere)
_TOL = 1e-8


def matrix_problem(arr: np.ndarray, kind: str, strict: bool = True) -> str | None:
    """What is wrong with ``arr`` (``[..., K, K]``, one matrix per trailing pair of
    axes) as a value of matrix type ``kind``, with the first matrix it happens
    at, or None. ``strict``: also refuse a matrix on the boundary of the type
    (a correlation of exactly 1, a zero on the diagonal), where the
    unconstrained value a sampler starts from is infinite."""
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
        return f"must be square [K, K], got shape [{', '.join(str(s) for s in arr.shape)}]"
    if arr.size == 0:
        return None
    k = arr.shape[-1]
    mats = arr.reshape((-1, k, k)).astype(np.float64)
    scale = np.maximum(np.abs(mats).max(axis=(1, 2)), 1.0)[:, None, None]
    checks = []
    if kind in ("cholesky_factor_corr", "cholesky_factor_cov"):
        upper = np.abs(np.triu(mats, 1)) > _TOL * scale
        checks.append((upper.any(axis=(1, 2)), "is not lower triangular (its upper triangle holds non-zeros)"))
        diag = np.diagonal(mats, axis1=1, axis2=2)
        checks.append(((diag <= 0).any(axis=1) if strict else (diag < 0).any(axis=1),
                       "has a diagonal entry that is not positive"))
        if kind == "cholesky_factor_corr":
            norms = np.sqrt(np.sum(np.tril(mats) ** 2, axis=2))
            checks.append(((np.abs(norms - 1) > 1e-6).any(axis=1), "has a row whose length is not 1"))
    else:
        asym = np.abs(mats - np.swapaxes(mats, 1, 2)) > _TOL * scale
        checks.append((asym.any(axis=(1, 2)), "is not symmetric"))
        if kind == "corr_matrix":
            diag = np.diagonal(mats, axis1=1, axis2=2)
            checks.append(((np.abs(diag - 1) > 1e-6).any(axis=1), "has a diagonal entry that is not 1"))
        sym = 0.5 * (mats + np.swapaxes(mats, 1, 2))
        low = np.linalg.eigvalsh(sym)[:, 0] if k else np.ones(len(mats))
        bad = low <= (1e-12 * scale[:, 0, 0] if strict else -_TOL * scale[:, 0, 0])
        checks.append((bad, "is not positive definite (its smallest eigenvalue is "
                            + (f"{low[np.argmax(bad)]:.3g})" if bad.any() else "")))
    for bad, what in checks:
        if bad.any():
            first = int(np.argmax(bad))
            where = "" if arr.ndim == 2 else " (matrix " + _index(first, arr.shape[:-2]) + ")"
            return f"must be {MATRIX_TYPES[kind]}, but it {what}{where}"
    return None


def _index(flat: int, shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(int(i)) for i in np.unravel_index(flat, shape)) + "]"


def identity_start(shape: tuple[int, ...]) -> np.ndarray:
    """The centre of every matrix type: the identity (correlation 0, unit scales)."""
    k = shape[-1] if shape else 0
    return np.broadcast_to(np.eye(k), shape).copy()
