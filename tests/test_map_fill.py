"""map's fill of L is known before qdldl allocates it (issue 16, "Limits before work").

qdldl has no symbolic-only step, so runtime/map/fill.py counts L's non-zeros
itself (elimination tree + Gilbert-Ng-Peyton column counts). Oracles: a dense
Cholesky of random sparse SPD matrices (any ordering), and qdldl's own L
under qdldl's own ordering. A model whose fill exceeds the limit is refused
at its var before the first factorization.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import fglang
from fglang.compiler.limits import ENV
from fglang.errors import FgError
from fglang.runtime.map.fill import envelope, estimate_fill, factor_nnz

DENOISE = Path(__file__).resolve().parents[1] / "examples" / "denoise_normal.fg"


def _dense_count(m: np.ndarray) -> int:
    """Non-zeros strictly below the diagonal of a dense Cholesky factor."""
    return int(np.count_nonzero(np.tril(np.linalg.cholesky(m), -1)))


@st.composite
def spd(draw):
    n = draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**32 - 1))
    density = draw(st.floats(0.0, 0.4))
    rng = np.random.default_rng(seed)
    m = sp.random(n, n, density=density, random_state=rng, data_rvs=lambda k: rng.uniform(0.1, 1.0, k)).toarray()
    m = m + m.T
    m += np.diag(np.abs(m).sum(1) + 1.0)  # diagonally dominant: SPD, and no exact cancellation in the factor
    return m, rng.permutation(n)


@settings(max_examples=150, deadline=None)
@given(spd())
def test_exact_fill_equals_a_dense_cholesky(case):
    m, perm = case
    assert factor_nnz(sp.csc_matrix(m)) == _dense_count(m)
    mp = m[perm][:, perm]
    count = _dense_count(mp)
    assert factor_nnz(sp.csc_matrix(m), perm) == count
    assert envelope(sp.csc_matrix(m), perm) >= count  # the cheap bound is a bound
    assert factor_nnz(sp.triu(sp.csc_matrix(m))) == _dense_count(m)  # one triangle is enough


def _grid(k: int) -> sp.csc_matrix:
    g = sp.diags([1.0] * (k - 1), 1, shape=(k, k))
    eye = sp.identity(k)
    lap = sp.kron(g, eye) + sp.kron(eye, g)
    return (lap + lap.T + 5 * sp.identity(k * k)).tocsc()


def test_fill_under_qdldls_ordering_is_qdldls_fill():
    import qdldl

    m = _grid(40)
    lower, _, perm = qdldl.Solver(sp.triu(m, format="csc")).factors()
    assert factor_nnz(m, perm) == lower.nnz
    # the estimate (RCM or natural ordering) errs high against AMD here, as fill.py says
    estimate, how = estimate_fill(m, 0)
    assert estimate >= lower.nnz and how.startswith("exactly")
    assert estimate_fill(m, 1e12) == (m.shape[0] * (m.shape[0] - 1) // 2, "at most n(n-1)/2")


def test_a_fill_past_the_limit_is_refused_at_the_var(monkeypatch):
    """900 unknowns on a grid: 18,415 entries of L under RCM, 516 kB; the other
    charges (data, draws=1) fit in 500 kB, so the fill is what is refused."""
    monkeypatch.setenv(ENV, "5e5")
    img = np.random.default_rng(0).normal(size=(30, 30))
    model = fglang.compile(DENOISE.read_text(), "denoise_normal.fg")
    with pytest.raises(FgError) as e:
        model.fit({"H": 30, "W": 30, "img": img}, backend="map", draws=1)
    text = str(e.value)
    assert text.startswith("denoise_normal.fg:11:1: this fit would need about 516 kB"), text
    assert "over fglang's memory limit of 500 kB (FGLANG_MAX_BYTES=5e5)" in text
    assert "the sparse factor L of the 900-unknown Gauss-Newton system, 18,415 entries" in text
    assert "var x[H, W]: real" in text and f"raise the limit with {ENV}=<bytes>" in text
