"""The sparse factorization behind map's LM step, measured on the real normal
equations of sphere2500 (3-D, 15,000 unknowns) and M3500 (2-D, 10,500):
qdldl (what runtime/map/solve.py uses: scalar up-looking LDL^T, numeric-only
refactorization), CHOLMOD's supernodal Cholesky through cvxopt (a manylinux
wheel that bundles SuiteSparse and OpenBLAS: no system library; optional
here, ``pip install cvxopt``), and SciPy's SuperLU in symmetric mode (which
redoes its ordering every call). The matrix is the first ``H + lam D`` that
map factors (captured from ``SparseLDL.factor``); CPU seconds per numeric
factorization, best of 5, one BLAS thread.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice python bench/map_factorization.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
GRAPHS = (("sphere2500.toro", "pose_graph_3d.fg"), ("m3500.g2o", "m3500_pose2.fg"))


def normal_equations(name: str, model: str) -> sp.csc_matrix:
    """The upper triangle of the first matrix map's LM factors on this graph."""
    import fglang
    from fglang.io import read_pose_graph
    from fglang.runtime.map import solve

    caught: list[sp.csc_matrix] = []
    original = solve.SparseLDL.factor

    def factor(self, data):
        if not caught:
            caught.append(self.pattern.matrix(np.array(data)))
        return original(self, data)

    solve.SparseLDL.factor = factor
    try:
        data, init = read_pose_graph(DATA / name)
        fglang.load(ROOT / "examples" / model).fit(data, backend="map", init=init, iters=1)
    finally:
        solve.SparseLDL.factor = original
    return caught[0].tocsc()


def best_cpu(f, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t = time.process_time()
        f()
        times.append(time.process_time() - t)
    return min(times)


def main() -> None:
    import qdldl

    for name, model in GRAPHS:
        upper = normal_equations(name, model)
        n = upper.shape[0]
        full = (upper + sp.triu(upper, 1).T).tocsc()
        b = np.random.default_rng(0).normal(size=n)
        q = qdldl.Solver(upper)
        x = q.solve(b)
        row = {"qdldl": best_cpu(lambda q=q, u=upper: q.update(u)), "nnz(L) qdldl": q.factors()[0].nnz}
        try:
            from cvxopt import cholmod, matrix, spmatrix

            lo = sp.tril(full).tocoo()
            m = spmatrix(lo.data.tolist(), lo.row.tolist(), lo.col.tolist(), (n, n))
            cholmod.options["supernodal"] = 2
            f = cholmod.symbolic(m, uplo="L")
            row["cholmod supernodal"] = best_cpu(lambda m=m, f=f: cholmod.numeric(m, f))
            rhs = matrix(b)
            cholmod.solve(f, rhs)
            row["cholmod |dx|/|x|"] = float(np.abs(np.array(rhs).ravel() - x).max() / np.abs(x).max())
        except ImportError:
            row["cholmod supernodal"] = "cvxopt not installed"

        def superlu(a=full):
            return sla.splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})

        row["superlu (with its ordering)"] = best_cpu(superlu, 3)
        print(f"{name}: n = {n}, nnz(upper H) = {upper.nnz}")
        for k, v in row.items():
            print(f"  {k:32} {v:.4g}" if isinstance(v, float) else f"  {k:32} {v}")


if __name__ == "__main__":
    main()
