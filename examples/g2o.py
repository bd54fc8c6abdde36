"""Read 2-D g2o pose graphs into the data layout of the ``pose_graph_2d`` model.

The SPEC's ``pose_graph_2d`` (and ``m3500``) model takes a pose graph as plain
arrays -- ``N``, ``M``, ``src[M]``, ``dst[M]``, ``z[M, 3]``, ``sd[M, 3]`` --
so that any backend can bind it without knowing about g2o. This module is the
bridge: :func:`read_g2o` turns a g2o file into that dict (plus the file's
initial guess) with the package's reader, :func:`fglang.io.read_pose_graph`
(which also reads TORO and 3-D graphs; ``fglang import`` is its command
line), and :func:`pose_graph_cost` scores poses exactly as GTSAM
reports its error, so fglang's results can be compared with the published
M3500 numbers (GTSAM LM: 68.957) without GTSAM installed.

Command line::

    python examples/g2o.py /work/shared/data/m3500.g2o \
        --out examples/data/m3500.json --init-out examples/data/m3500_init.json
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fglang.errors import FgError
from fglang.io.pose_graph import parse_pose_graph, read_pose_graph, to_json

__all__ = [
    "G2OError",
    "parse_g2o",
    "read_g2o",
    "between",
    "pose_error",
    "pose_graph_residuals",
    "pose_graph_cost",
    "solve_least_squares",
    "solve_levenberg_marquardt",
    "LMResult",
    "to_json_text",
]

ANCHOR_SD = 0.001
"""Standard deviation of the SPEC model's ``anchor`` prior on pose 0."""


class G2OError(ValueError):
    """A g2o file this reader cannot represent faithfully (says file, line and column)."""


def _two_d(read, source: str) -> tuple[dict, dict]:
    """Run the package reader as g2o, vertex ids in increasing order (this
    module's convention), and keep to 2-D graphs; its FgError becomes a
    :class:`G2OError` with the same located text."""
    try:
        data, init = read()
    except FgError as err:
        raise G2OError(str(err)) from None
    if "sd" not in data:
        raise G2OError(f"{source}: a 3-D pose graph; this module handles 2-D VERTEX_SE2/EDGE_SE2 only")
    return data, init


def parse_g2o(lines: Iterable[str], source: str = "<g2o>") -> tuple[dict, dict]:
    """Parse the text of a 2-D g2o file; see :func:`read_g2o`.

    Separated from :func:`read_g2o` so tests (and callers holding a string)
    need no file on disk.
    """
    text = "".join(ln if ln.endswith("\n") else ln + "\n" for ln in lines)
    return _two_d(lambda: parse_pose_graph(text, source, format="g2o", order="id"), source)


def read_g2o(path: str | Path) -> tuple[dict, dict]:
    """Read a 2-D g2o file (``VERTEX_SE2`` / ``EDGE_SE2``) with fglang's reader.

    Returns ``(data, init)``: ``data`` in the pose_graph_2d model's layout
    (``N``, ``M``, ``src``, ``dst``, ``z`` [M, 3], ``sd`` [M, 3] with
    ``sd = 1/sqrt(diagonal information)``), and ``init = {"pose": [[x, y,
    theta], ...]}`` from the vertices. Vertex ids are remapped to 0..N-1 in
    increasing id order. A non-zero off-diagonal information entry raises
    :class:`G2OError`, because per-axis sds cannot represent it. This is
    :func:`fglang.io.read_pose_graph` (``format="g2o", order="id"``), its
    located errors turned into :class:`G2OError`.
    """
    return _two_d(lambda: read_pose_graph(path, format="g2o", order="id"), str(path))


# ----------------------------------------------------------------------------
# The SPEC model's residuals in numpy (vectorized over edges).


def wrap_angle(a: np.ndarray) -> np.ndarray:
    """Map angles into (-pi, pi], as the SPEC's ``wrap_angle``."""
    w = np.mod(a + np.pi, 2.0 * np.pi) - np.pi  # in [-pi, pi)
    return np.where(w == -np.pi, np.pi, w)


def between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The SPEC's ``between``: pose b seen from pose a, batched over leading axes.

    The angle is the plain difference (unwrapped), exactly as the model
    writes it; :func:`pose_error` wraps.
    """
    c, s = np.cos(a[..., 2]), np.sin(a[..., 2])
    dx, dy = b[..., 0] - a[..., 0], b[..., 1] - a[..., 1]
    return np.stack([c * dx + s * dy, -s * dx + c * dy, b[..., 2] - a[..., 2]], axis=-1)


def pose_error(meas: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The SPEC's ``pose_error``: meas - pred with the angle wrapped."""
    d = meas - pred
    return np.concatenate([d[..., :2], wrap_angle(d[..., 2:3])], axis=-1)


def _as_arrays(data: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.asarray(data["src"], dtype=np.int64),
        np.asarray(data["dst"], dtype=np.int64),
        np.asarray(data["z"], dtype=np.float64).reshape(-1, 3),
        np.asarray(data["sd"], dtype=np.float64).reshape(-1, 3),
    )


def pose_graph_residuals(
    data: dict,
    poses: np.ndarray,
    anchor: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0),
    anchor_sd: float = ANCHOR_SD,
) -> np.ndarray:
    """Whitened residuals of the model: 3 for the anchor, then 3 per edge.

    Flat, in the order least-squares solvers want. The anchor residual is
    ``(pose[0] - anchor) / anchor_sd`` with no angle wrapping, as the model's
    ``pose[0] ~ normal([0, 0, 0], 0.001)`` reads.
    """
    src, dst, z, sd = _as_arrays(data)
    p = np.asarray(poses, dtype=np.float64).reshape(-1, 3)
    r_edges = pose_error(z, between(p[src], p[dst])) / sd
    r_anchor = (p[0] - np.asarray(anchor, dtype=np.float64)) / anchor_sd
    return np.concatenate([r_anchor, r_edges.ravel()])


def pose_graph_cost(
    data: dict,
    poses: np.ndarray,
    anchor: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0),
    anchor_sd: float = ANCHOR_SD,
) -> float:
    """GTSAM's cost ``0.5 * sum ||whitened residual||^2`` for the SPEC model.

    The anchor prior sits at ``anchor`` (default the origin, as the SPEC
    model writes it). GTSAM's published M3500 number (68.957) puts its prior
    at the initial value of pose 0, which in m3500.g2o *is* the origin; for
    a graph whose first vertex is elsewhere pass ``anchor=init["pose"][0]``
    to compare with GTSAM. At an optimum the anchor term is ~0 either way,
    since one prior only fixes the gauge.
    """
    r = pose_graph_residuals(data, poses, anchor, anchor_sd)
    return float(0.5 * np.dot(r, r))


def _jacobian(data: dict, poses: np.ndarray, anchor_sd: float):
    """Sparse analytic Jacobian of :func:`pose_graph_residuals` (CSR)."""
    from scipy import sparse

    src, dst, z, sd = _as_arrays(data)
    p = np.asarray(poses, dtype=np.float64).reshape(-1, 3)
    n, m = p.shape[0], src.shape[0]
    a, b = p[src], p[dst]
    c, s = np.cos(a[:, 2]), np.sin(a[:, 2])
    dx, dy = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    # residual e = z - between(a, b) (angle wrap has derivative 1 a.e.)
    # between_x = c dx + s dy ; between_y = -s dx + c dy ; between_t = tb - ta
    zero, one = np.zeros(m), np.ones(m)
    # d between / d a  (rows: x, y, t; cols: ax, ay, at)
    ja = np.stack(
        [
            np.stack([-c, -s, -s * dx + c * dy], -1),
            np.stack([s, -c, -c * dx - s * dy], -1),
            np.stack([zero, zero, -one], -1),
        ],
        1,
    )
    jb = np.stack(
        [np.stack([c, s, zero], -1), np.stack([-s, c, zero], -1), np.stack([zero, zero, one], -1)], 1
    )
    ja = -ja / sd[:, :, None]
    jb = -jb / sd[:, :, None]
    rows = 3 + 3 * np.arange(m)[:, None, None] + np.arange(3)[None, :, None]  # [m,3,1]
    rows = np.broadcast_to(rows, (m, 3, 3))
    cols_a = np.broadcast_to(3 * src[:, None, None] + np.arange(3)[None, None, :], (m, 3, 3))
    cols_b = np.broadcast_to(3 * dst[:, None, None] + np.arange(3)[None, None, :], (m, 3, 3))
    r = np.concatenate([np.arange(3), rows.ravel(), rows.ravel()])
    col = np.concatenate([np.arange(3), cols_a.ravel(), cols_b.ravel()])
    v = np.concatenate([np.full(3, 1.0 / anchor_sd), ja.ravel(), jb.ravel()])
    return sparse.csr_matrix((v, (r, col)), shape=(3 + 3 * m, 3 * n))


def solve_least_squares(
    data: dict,
    init: np.ndarray,
    anchor: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0),
    anchor_sd: float = ANCHOR_SD,
    **kwargs,
):
    """Minimize :func:`pose_graph_cost` with ``scipy.optimize.least_squares``.

    A reference optimum for the pose graph without GTSAM: trust-region
    reflective with the analytic sparse Jacobian and an LSMR inner solver.
    scipy's default LSMR settings (few, regularized inner iterations) crawl
    on M3500 (cost ~107 after 17 outer iterations); solving each trust-region
    step accurately (``atol = btol = 1e-10``, up to 20000 LSMR iterations,
    no regularization) makes it Gauss-Newton-like: 68.956 in 8 evaluations.
    Keyword arguments override these settings. Returns scipy's
    ``OptimizeResult`` (``x`` reshaped to [N, 3] in ``result.poses``).
    """
    from scipy.optimize import least_squares

    x0 = np.asarray(init, dtype=np.float64).ravel()
    opts = dict(
        method="trf",
        tr_solver="lsmr",
        tr_options=dict(atol=1e-10, btol=1e-10, maxiter=20000, regularize=False),
        x_scale="jac",
        xtol=1e-8,
        ftol=1e-8,
        gtol=1e-8,
    )
    opts.update(kwargs)
    res = least_squares(
        lambda x: pose_graph_residuals(data, x, anchor, anchor_sd),
        x0,
        jac=lambda x: _jacobian(data, x, anchor_sd),
        **opts,
    )
    res.poses = res.x.reshape(-1, 3)
    return res


class LMResult(NamedTuple):
    """Output of :func:`solve_levenberg_marquardt`."""

    poses: np.ndarray
    cost: float
    iterations: int
    history: list[float]


def solve_levenberg_marquardt(
    data: dict,
    init: np.ndarray,
    anchor: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0),
    anchor_sd: float = ANCHOR_SD,
    max_iters: int = 100,
    rel_tol: float = 1e-10,
    lam0: float = 1e-5,
) -> LMResult:
    """Levenberg-Marquardt with a sparse direct solve, as GTSAM does it.

    scipy's ``least_squares`` has no sparse direct solver (its ``trf``
    with ``lsmr`` is an iterative inner solve), so this small loop is the
    fast reference for pose graphs: normal equations ``J^T J + lam
    diag(J^T J)`` solved by SuperLU, lam divided by 10 on success and
    multiplied by 10 on failure, stop when the relative cost decrease is
    below ``rel_tol``.
    """
    from scipy import sparse
    from scipy.sparse import linalg as spla

    x = np.asarray(init, dtype=np.float64).ravel().copy()
    r = pose_graph_residuals(data, x, anchor, anchor_sd)
    cost = 0.5 * float(r @ r)
    history = [cost]
    lam = lam0
    it = 0
    for it in range(1, max_iters + 1):
        J = _jacobian(data, x, anchor_sd)
        g = J.T @ r
        A = (J.T @ J).tocsc()
        D = sparse.diags(A.diagonal())
        while True:
            dx = spla.spsolve(A + lam * D, -g)
            xn = x + dx
            rn = pose_graph_residuals(data, xn, anchor, anchor_sd)
            cn = 0.5 * float(rn @ rn)
            if cn <= cost:
                lam = max(lam / 10.0, 1e-12)
                break
            lam *= 10.0
            if lam > 1e12:
                return LMResult(x.reshape(-1, 3), cost, it, history)
        rel = (cost - cn) / max(cost, 1e-300)
        x, r, cost = xn, rn, cn
        history.append(cost)
        if rel < rel_tol:
            break
    return LMResult(x.reshape(-1, 3), cost, it, history)


def to_json_text(obj: dict) -> str:
    """Stan-style JSON, one top-level key per line; floats as Python reprs (exact)."""
    return to_json(obj)


def _dump(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json_text(obj))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: convert a g2o file to model data (and optionally solve it)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("g2o", type=Path, help="input .g2o file (2-D)")
    ap.add_argument("--out", type=Path, help="write the model data JSON here")
    ap.add_argument("--init-out", type=Path, help='write {"pose": initial guess} JSON here')
    ap.add_argument("--solve", action="store_true", help="also run scipy least_squares and print the cost")
    args = ap.parse_args(argv)
    try:
        data, init = read_g2o(args.g2o)
    except (OSError, G2OError) as exc:
        ap.exit(2, f"error: {exc}\n")
    print(f"{args.g2o}: N={data['N']} poses, M={data['M']} edges")
    if args.out:
        _dump(data, args.out)
        print(f"wrote {args.out}")
    if args.init_out:
        _dump(init, args.init_out)
        print(f"wrote {args.init_out}")
    p0 = np.asarray(init["pose"])
    print(f"cost at initial guess: {pose_graph_cost(data, p0, anchor=p0[0]):.6g}")
    if args.solve:
        import time

        t0, c0 = time.perf_counter(), time.process_time()
        lm = solve_levenberg_marquardt(data, p0, anchor=p0[0])
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        print(f"sparse Levenberg-Marquardt: cost {lm.cost:.6f} in {dt:.2f} s wall, {dc:.2f} s CPU "
              f"({lm.iterations} iterations)")  # fmt: skip
        t0, c0 = time.perf_counter(), time.process_time()
        res = solve_least_squares(data, p0, anchor=p0[0])
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        cost = pose_graph_cost(data, res.poses, anchor=p0[0])
        print(f"scipy least_squares: cost {cost:.6f} in {dt:.2f} s wall, {dc:.2f} s CPU "
              f"({res.nfev} evaluations, status {res.status})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
