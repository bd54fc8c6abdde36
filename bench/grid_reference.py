"""Speed references for the Gaussian grid MRF (``examples/denoise_normal.fg``).

fglang's general GBP engine compiles any ``.fg`` model into gathers and
batched message updates. To know what that generality costs, this module
solves the one model it is best at -- the denoise model with ``normal``
smoothness -- three ways that know the model by heart:

* :func:`exact_solve`: sparse direct solve of the precision system (the
  ground truth for the means);
* :func:`cg_solve`: conjugate gradients on the same system (what a
  linear-algebra user would do);
* :func:`hand_gbp`: scalar Gaussian BP written by hand for a 4-neighbour
  grid: messages kept as four directional [H, W] arrays and updated by
  shifted slices -- no gathers, no scatters, one fused XLA kernel per
  iteration. It is the ceiling fglang's compiled GBP is measured against.

The model: unary precision ``a = 1/s_obs^2`` pulling pixel x[i, j] to
img[i, j], and pairwise precision ``b = 1/s_smooth^2`` on x[p] - x[q] for
each pair of 4-neighbours, so the posterior precision is ``a I + b L``
(L the grid Laplacian) and the mean solves ``(a I + b L) x = a img``.
On this walk-summable model loopy GBP's fixed-point means are exact; its
variances are not (they miss the loops' contributions), so the variance
error is only reported.

Run ``python bench/grid_reference.py`` for the table; it writes
``bench/results/grid_reference.json``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from functools import partial
from pathlib import Path
from typing import NamedTuple

if __name__ == "__main__":
    # Multi-threaded OpenBLAS dot products made scipy's CG 50x slower (2.4 s
    # instead of 40 ms at 128x128) on a shared 2-core machine; the solvers
    # here are single-threaded references anyway. Must precede numpy's import.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import scipy.sparse.linalg as spla  # noqa: E402

__all__ = [
    "precision_matrix",
    "exact_solve",
    "exact_marginal_variances",
    "cg_solve",
    "GBPResult",
    "hand_gbp",
    "make_image",
    "best_time",
]


# ----------------------------------------------------------------------------
# Linear-algebra references (scipy, float64).


def precision_matrix(H: int, W: int, s_obs: float, s_smooth: float) -> sp.csr_matrix:
    """Posterior precision ``a I + b L`` of the grid model, pixels in row-major order."""
    a, b = 1.0 / s_obs**2, 1.0 / s_smooth**2

    def path_laplacian(n: int) -> sp.spmatrix:
        d = np.full(n, 2.0)
        if n > 0:
            d[0] = d[-1] = 1.0
        if n == 1:
            d[0] = 0.0
        return sp.diags([-np.ones(n - 1), d, -np.ones(n - 1)], [-1, 0, 1], shape=(n, n))

    lap = sp.kron(sp.identity(H), path_laplacian(W)) + sp.kron(path_laplacian(H), sp.identity(W))
    return (a * sp.identity(H * W) + b * lap).tocsr()


def exact_solve(img: np.ndarray, s_obs: float, s_smooth: float) -> np.ndarray:
    """Posterior mean by a sparse direct (SuperLU) solve; the ground truth.

    The time includes assembling the matrix, as a user of a direct solver
    pays for it too.
    """
    img = np.asarray(img, dtype=np.float64)
    H, W = img.shape
    A = precision_matrix(H, W, s_obs, s_smooth).tocsc()
    x = spla.spsolve(A, img.ravel() / s_obs**2)
    return x.reshape(H, W)


def exact_marginal_variances(H: int, W: int, s_obs: float, s_smooth: float) -> np.ndarray:
    """Exact marginal variances diag(A^-1) by a dense inverse (small grids only)."""
    if H * W > 10_000:
        raise ValueError(f"dense inverse of a {H * W}-pixel grid is too large; use <= 10000 pixels")
    A = precision_matrix(H, W, s_obs, s_smooth).toarray()
    return np.diag(np.linalg.inv(A)).reshape(H, W)


def cg_solve(
    img: np.ndarray, s_obs: float, s_smooth: float, tol: float = 1e-8, maxiter: int | None = None
) -> tuple[np.ndarray, int]:
    """Posterior mean by scipy's conjugate gradients (no preconditioner).

    ``tol`` is CG's relative residual tolerance. The diagonal of the system
    is constant away from the border, so Jacobi preconditioning would change
    little. Returns (mean [H, W], iterations).
    """
    img = np.asarray(img, dtype=np.float64)
    H, W = img.shape
    A = precision_matrix(H, W, s_obs, s_smooth)
    count = [0]

    def cb(_xk: np.ndarray) -> None:
        count[0] += 1

    x, info = spla.cg(A, img.ravel() / s_obs**2, rtol=tol, maxiter=maxiter, callback=cb)
    if info < 0:
        raise RuntimeError(f"scipy cg failed (info={info})")
    return x.reshape(H, W), count[0]


# ----------------------------------------------------------------------------
# Hand-specialized GBP in JAX.


class GBPResult(NamedTuple):
    """Output of :func:`hand_gbp`: belief means and variances [H, W], iterations run."""

    mean: np.ndarray
    var: np.ndarray
    iters: int


class _Msgs(NamedTuple):
    """Messages into each pixel from its left/right/up/down neighbour.

    Each field is a pair (eta, lam) of [H, W] arrays in information form.
    A message from a neighbour that does not exist (the border) is (0, 0),
    so the same formula covers every pixel with no masks.
    """

    l_eta: jax.Array
    l_lam: jax.Array
    r_eta: jax.Array
    r_lam: jax.Array
    u_eta: jax.Array
    u_lam: jax.Array
    d_eta: jax.Array
    d_lam: jax.Array


def _belief(m: _Msgs, eta0: jax.Array, a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Belief (eta, lam) = unary factor + the four incoming messages."""
    eta = eta0 + m.l_eta + m.r_eta + m.u_eta + m.d_eta
    lam = a + m.l_lam + m.r_lam + m.u_lam + m.d_lam
    return eta, lam


def _step(m: _Msgs, eta0: jax.Array, a: jax.Array, b: jax.Array, damping: float) -> _Msgs:
    """One synchronous (flooding) GBP iteration over the whole grid.

    For the pairwise factor b/2 (x_p - x_q)^2, the message p -> q given p's
    cavity (belief minus q's message to p), (eta_c, lam_c), is
        lam = b lam_c / (b + lam_c),  eta = b eta_c / (b + lam_c)
    (marginalize x_p out of the factor times the cavity). The factor node
    is folded into the edge: a scalar pairwise factor needs no separate
    factor-to-variable step. The message a pixel sends rightwards arrives
    at its right neighbour as that pixel's "from the left" message: a shift
    by one column, done by slicing and zero-padding the border.
    """
    eta_b, lam_b = _belief(m, eta0, a)

    def send(eta_c: jax.Array, lam_c: jax.Array) -> tuple[jax.Array, jax.Array]:
        k = b / (b + lam_c)
        return k * eta_c, k * lam_c

    # cavities: exclude the message that came from the destination
    to_r = send(eta_b - m.r_eta, lam_b - m.r_lam)  # p sends to its right neighbour
    to_l = send(eta_b - m.l_eta, lam_b - m.l_lam)
    to_d = send(eta_b - m.d_eta, lam_b - m.d_lam)
    to_u = send(eta_b - m.u_eta, lam_b - m.u_lam)

    def from_left(x: jax.Array) -> jax.Array:  # new[i, j] = x[i, j-1]
        return jnp.pad(x[:, :-1], ((0, 0), (1, 0)))

    def from_right(x: jax.Array) -> jax.Array:  # new[i, j] = x[i, j+1]
        return jnp.pad(x[:, 1:], ((0, 0), (0, 1)))

    def from_up(x: jax.Array) -> jax.Array:  # new[i, j] = x[i-1, j]
        return jnp.pad(x[:-1, :], ((1, 0), (0, 0)))

    def from_down(x: jax.Array) -> jax.Array:  # new[i, j] = x[i+1, j]
        return jnp.pad(x[1:, :], ((0, 1), (0, 0)))

    new = _Msgs(
        from_left(to_r[0]), from_left(to_r[1]),
        from_right(to_l[0]), from_right(to_l[1]),
        from_up(to_d[0]), from_up(to_d[1]),
        from_down(to_u[0]), from_down(to_u[1]),
    )  # fmt: skip
    if damping:
        new = _Msgs(*(damping * o + (1.0 - damping) * n for o, n in zip(m, new)))
    return new


@partial(jax.jit, static_argnames=("iters", "damping"))
def _run_fixed(eta0, a, b, iters, damping):
    zeros = jnp.zeros_like(eta0)
    m0 = _Msgs(*([zeros] * 8))
    # A static trip count lets XLA unroll 4 iterations per loop trip, which
    # measured ~1.5x faster per iteration on CPU at 256x256.
    unroll = 4 if iters >= 4 else 1
    m = jax.lax.fori_loop(0, iters, lambda _, m: _step(m, eta0, a, b, damping), m0, unroll=unroll)
    eta, lam = _belief(m, eta0, a)
    return eta / lam, 1.0 / lam, iters


@partial(jax.jit, static_argnames=("damping",))
def _run_to_target(eta0, a, b, iters, damping, target, tol):
    zeros = jnp.zeros_like(eta0)
    m0 = _Msgs(*([zeros] * 8))

    def err(m):
        eta, lam = _belief(m, eta0, a)
        return jnp.max(jnp.abs(eta / lam - target))

    def cond(state):
        k, _, e = state
        return (k < iters) & (e >= tol)

    def body(state):
        k, m, _ = state
        m = _step(m, eta0, a, b, damping)
        return k + 1, m, err(m)

    k, m, _ = jax.lax.while_loop(cond, body, (jnp.asarray(0), m0, err(m0)))
    eta, lam = _belief(m, eta0, a)
    return eta / lam, 1.0 / lam, k


def hand_gbp(
    img: np.ndarray,
    s_obs: float,
    s_smooth: float,
    iters: int,
    damping: float = 0.0,
    target: np.ndarray | None = None,
    tol: float = 1e-4,
) -> GBPResult:
    """Hand-written synchronous GBP for the grid model, jitted with JAX.

    Runs ``iters`` iterations from zero messages (``lax.fori_loop``, compiled
    once per ``iters`` value); if
    ``target`` (e.g. ``exact_solve``'s mean) is given, stops as soon as
    max |mean - target| < ``tol`` (``lax.while_loop``), so ``iters`` is
    then a cap. Computes in ``img``'s dtype: pass float64 with
    ``jax_enable_x64`` on for exactness checks, float32 for speed.
    ``damping`` mixes each new message with the old one (0 = undamped,
    which converges on this walk-summable model).
    Returns means, belief variances (approximate: loopy GBP) and the
    number of iterations run.
    """
    img = jnp.asarray(img)
    if not jnp.issubdtype(img.dtype, jnp.floating):
        img = img.astype(jnp.float32)
    dt = img.dtype
    a = jnp.asarray(1.0 / s_obs**2, dtype=dt)
    b = jnp.asarray(1.0 / s_smooth**2, dtype=dt)
    eta0 = a * img
    if target is None:
        mean, var, k = _run_fixed(eta0, a, b, int(iters), float(damping))
    else:
        tgt = jnp.asarray(target, dtype=dt)
        mean, var, k = _run_to_target(eta0, a, b, iters, float(damping), tgt, jnp.asarray(tol, dtype=dt))
    return GBPResult(np.asarray(mean), np.asarray(var), int(k))


def make_image(H: int, W: int, s_obs: float = 0.1, seed: int = 0, dtype=np.float64) -> np.ndarray:
    """A smooth test image plus N(0, s_obs) noise, for benchmarks and tests."""
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.linspace(0, 1, H), np.linspace(0, 1, W), indexing="ij")
    clean = 0.5 + 0.25 * np.sin(2 * np.pi * i) * np.cos(np.pi * j)
    return (clean + rng.normal(0.0, s_obs, (H, W))).astype(dtype)


# ----------------------------------------------------------------------------
# Benchmark table.


def best_time(fn, repeat: int = 7) -> float:
    """Best wall time of ``repeat`` calls of ``fn`` (as timeit reports: the least disturbed run)."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _bench_size(n: int, s_obs: float, s_smooth: float, dtype, tol: float = 1e-4) -> dict:
    img = make_image(n, n, s_obs, dtype=np.float64)
    t_direct = best_time(lambda: exact_solve(img, s_obs, s_smooth), repeat=3)
    exact = exact_solve(img, s_obs, s_smooth)

    cg_tol = 1e-6
    t_cg = best_time(lambda: cg_solve(img, s_obs, s_smooth, cg_tol), repeat=3)
    x_cg, it_cg = cg_solve(img, s_obs, s_smooth, cg_tol)

    img_d = img.astype(dtype)
    fixed = 200
    hand_gbp(img_d, s_obs, s_smooth, fixed)  # compile
    t_fixed = best_time(lambda: hand_gbp(img_d, s_obs, s_smooth, fixed))
    hand_gbp(img_d, s_obs, s_smooth, 10_000, target=exact, tol=tol)  # compile
    res = hand_gbp(img_d, s_obs, s_smooth, 10_000, target=exact, tol=tol)
    t_conv = best_time(lambda: hand_gbp(img_d, s_obs, s_smooth, 10_000, target=exact, tol=tol))
    return {
        "size": f"{n}x{n}",
        "pixels": n * n,
        "gbp_dtype": np.dtype(dtype).name,
        "gbp_ms_per_iter": 1e3 * t_fixed / fixed,
        "gbp_iters_to_tol": res.iters,
        "gbp_tol": tol,
        "gbp_wall_ms_to_tol": 1e3 * t_conv,
        "gbp_max_err": float(np.max(np.abs(res.mean - exact))),
        "cg_rtol": cg_tol,
        "cg_iters": it_cg,
        "cg_ms": 1e3 * t_cg,
        "cg_max_err": float(np.max(np.abs(x_cg - exact))),
        "direct_ms": 1e3 * t_direct,
    }


def _variance_check(n: int, s_obs: float, s_smooth: float) -> dict:
    img = make_image(n, n, s_obs)
    exact = exact_solve(img, s_obs, s_smooth)
    res = hand_gbp(img, s_obs, s_smooth, 2000)
    var = exact_marginal_variances(n, n, s_obs, s_smooth)
    return {
        "size": f"{n}x{n}",
        "mean_max_abs_err": float(np.max(np.abs(res.mean - exact))),
        "var_max_rel_err": float(np.max(np.abs(res.var - var) / var)),
    }


def main() -> None:
    """Print the reference table and save it as JSON."""
    jax.config.update("jax_enable_x64", True)
    s_obs, s_smooth = 0.1, 0.05
    checks = [_variance_check(n, s_obs, s_smooth) for n in (16, 32, 64)]
    print("float64 fixed point vs exact (2000 iterations):")
    for c in checks:
        print(f"  {c['size']:>7}: max |mean err| {c['mean_max_abs_err']:.2e}, "
              f"max rel var err {c['var_max_rel_err']:.3f}")  # fmt: skip

    rows = []
    for dtype in (np.float32, np.float64):
        for n in (64, 128, 256):
            rows.append(_bench_size(n, s_obs, s_smooth, dtype))
    hdr = (f"{'size':>8} {'dtype':>7} {'ms/iter':>8} {'iters':>6} {'GBP ms':>8} {'err':>8} | "
           f"{'CG it':>5} {'CG ms':>8} {'CG err':>8} | {'direct ms':>9}")  # fmt: skip
    print(f"\nGrid denoise (s_obs={s_obs}, s_smooth={s_smooth}); GBP to max |mean - exact| < 1e-4")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['size']:>8} {r['gbp_dtype']:>7} {r['gbp_ms_per_iter']:8.4f} {r['gbp_iters_to_tol']:6d} "
              f"{r['gbp_wall_ms_to_tol']:8.2f} {r['gbp_max_err']:8.1e} | {r['cg_iters']:5d} {r['cg_ms']:8.2f} "
              f"{r['cg_max_err']:8.1e} | {r['direct_ms']:9.2f}")  # fmt: skip
    out = Path(__file__).resolve().parent / "results" / "grid_reference.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "jax_version": jax.__version__,
        "s_obs": s_obs,
        "s_smooth": s_smooth,
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "load_average": os.getloadavg(),
        "note": "times are best of several runs after compilation; GBP from zero messages, synchronous, undamped",
    }
    out.write_text(json.dumps({"meta": meta, "variance_checks": checks, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
