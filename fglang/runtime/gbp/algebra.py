"""Gaussian information-form algebra for GBP, batched over family members.

Every function here works on arrays with a leading member axis ``M`` (or any
leading batch axes) and contains no Python loop over members: the only Python
loops are over matrix dimensions or slots, which are static and small, and are
unrolled at trace time.

Conventions: a Gaussian in information form is ``(eta, lam)`` with
``lam = Sigma^{-1}`` and ``eta = lam @ mu``. A factor's information form is over
the concatenation of its slot vectors (slot 0 first).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array

UNROLL_MAX_DIM = 6
"""Largest matrix size solved by the unrolled LDL^T (elementwise ops only).

Batched LAPACK calls on tiny matrices are slow on CPU and GPU alike, while an
unrolled factorization of a <= 6x6 matrix is a few dozen fused elementwise ops.
Larger systems use a batched Cholesky (LAPACK on CPU, cuSOLVER on GPU).
"""


class _SolveOrder(threading.local):
    last: Array | None = None
    active: bool = False


_solve_order = _SolveOrder()


@contextlib.contextmanager
def sequential_lapack_solves() -> Iterator[None]:
    """Make every large `spd_solve` traced inside the block wait for the previous one.

    Why: jaxlib's CPU LAPACK kernels (``potrf``, ``trsm``) split a batch over
    XLA's intra-op thread pool and block the calling pool thread until the
    pieces finish. XLA:CPU runs independent thunks concurrently on that same
    pool, so two independent batched solves in one program (a node's belief
    solve and a family's message solve, say) can each occupy a pool thread
    while waiting for pieces queued behind the other: with as many such calls
    as pool threads (2 on a 2-core machine), the program deadlocks, every
    thread parked in a futex (seen on the digits MLP: a 480 x 64x64 and a
    16 x 64x64 Cholesky in one GBP iteration). Threading a data dependency
    (a term that is exactly zero) from each solve's result into the next
    solve's operands runs them one at a time; their own batch parallelism is
    kept. Enter it inside every traced function that solves (a ``while_loop``
    body is traced on its own), so no tracer leaks between traces.
    """
    saved = (_solve_order.last, _solve_order.active)
    _solve_order.last, _solve_order.active = None, True
    try:
        yield
    finally:
        _solve_order.last, _solve_order.active = saved


def _after_previous_solve(a: Array) -> Array:
    if not (_solve_order.active and _solve_order.last is not None):
        return a
    # A true data dependency: XLA:CPU's thunk executor orders work by buffers,
    # so `optimization_barrier` (lowered to control edges) did not order the
    # calls. The added term is exactly zero (a finite number times 0.0, which
    # XLA does not fold for floats) and fuses into the jitter add.
    v = _solve_order.last.reshape(-1)[0]
    return a + (jnp.where(jnp.isfinite(v), v, 0.0) * 0.0).astype(a.dtype)


def _record_solve(x: Array) -> Array:
    if _solve_order.active:
        _solve_order.last = x
    return x


def _pivot_floor(diag: Array, floor: Array | float) -> Array:
    """Smallest pivot accepted for a matrix whose diagonal entry is ``diag``.

    Round-off can make a PSD sum or a ``belief - message`` difference slightly
    indefinite; clamping pivots at a tiny fraction of the diagonal (and at the
    caller's absolute ``floor``) keeps the solve finite where an exact answer is
    ill-defined anyway. NaN inputs still propagate (``maximum`` keeps NaN), so
    genuine divergence is still detected downstream.
    """
    eps = jnp.finfo(diag.dtype).eps
    return jnp.maximum(jnp.maximum(10.0 * eps * jnp.abs(diag), floor), jnp.finfo(diag.dtype).tiny)


def spd_solve(a: Array, b: Array, floor: Array | float = 0.0) -> Array:
    """Solve ``a @ x = b`` for symmetric positive (semi-)definite ``a``.

    ``a``: ``[..., n, n]``; ``b``: ``[..., n, k]``. For ``n <= UNROLL_MAX_DIM`` an
    unrolled LDL^T factorization with pivots clamped at ``floor`` (see
    `_pivot_floor`) is used; above that, Cholesky of ``a`` plus a floor-sized jitter.
    """
    n = a.shape[-1]
    if n == 1:
        d = a[..., 0, 0]
        d = jnp.maximum(d, _pivot_floor(d, floor))
        return b / d[..., None, None]
    if n > UNROLL_MAX_DIM:
        # LU has no pivot clamp: regularize with the floor and a round-off-level
        # jitter instead, so a singular PSD system (a rank-1 factor seen
        # through flat messages) still gives a finite answer.
        eye = jnp.eye(n, dtype=a.dtype)
        diag = jnp.diagonal(a, axis1=-2, axis2=-1)
        jitter = _pivot_floor(jnp.max(jnp.abs(diag), axis=-1), floor)
        # Cholesky, not LU: the matrix is SPD after the jitter, Cholesky is half
        # the work, and XLA:CPU's batched LU inside a while loop stalled for
        # n >= 48 (the digits MLP's 64-weight neurons never finished an iteration).
        # Solves are serialized inside `sequential_lapack_solves` (a deadlock).
        a = _after_previous_solve(a + jitter[..., None, None] * eye)
        chol = jnp.linalg.cholesky(a)
        y = jax.lax.linalg.triangular_solve(chol, b, left_side=True, lower=True)
        x = jax.lax.linalg.triangular_solve(chol, y, left_side=True, lower=True, transpose_a=True)
        return _record_solve(x)
    # Structure-of-arrays layout: each matrix entry becomes one contiguous
    # [batch] vector, so every step below is a plain elementwise op (this
    # compiled ~1.5x faster and ran ~1.4x faster than slicing [..., i, j]).
    at = jnp.moveaxis(a, (-2, -1), (0, 1))
    bt = jnp.moveaxis(b, (-2, -1), (0, 1))
    # All pivot floors in one vectorized op (fewer HLO ops: compile time).
    pfloor = _pivot_floor(jnp.stack([at[j, j] for j in range(n)]), floor)
    lo: list[list[Array | None]] = [[None] * n for _ in range(n)]
    piv: list[Array] = []
    inv_piv: list[Array] = []
    for j in range(n):
        d = at[j, j]
        for k in range(j):
            d = d - lo[j][k] ** 2 * piv[k]
        d = jnp.maximum(d, pfloor[j])
        piv.append(d)
        inv_piv.append(1.0 / d)
        for i in range(j + 1, n):
            v = at[i, j]
            for k in range(j):
                v = v - lo[i][k] * lo[j][k] * piv[k]
            lo[i][j] = v * inv_piv[j]
    y: list[Array] = []
    for i in range(n):
        yi = bt[i]
        for k in range(i):
            yi = yi - lo[i][k][None] * y[k]
        y.append(yi)
    x: list[Array | None] = [None] * n
    for i in reversed(range(n)):
        xi = y[i] * inv_piv[i][None]
        for k in range(i + 1, n):
            xi = xi - lo[k][i][None] * x[k]
        x[i] = xi
    return jnp.moveaxis(jnp.stack(x), (0, 1), (-2, -1))  # type: ignore[arg-type]


def spd_inv(a: Array, floor: Array | float = 0.0) -> Array:
    """Inverse of a batch of SPD matrices (via `spd_solve` with the identity)."""
    n = a.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(n, dtype=a.dtype), a.shape)
    inv = spd_solve(a, eye, floor)
    return 0.5 * (inv + jnp.swapaxes(inv, -1, -2))


def info_to_moments(eta: Array, lam: Array, floor: Array | float = 0.0) -> Array:
    """Mean ``lam^{-1} eta`` of a batch of Gaussians in information form."""
    return spd_solve(lam, eta[..., None], floor)[..., 0]


# ---------------------------------------------------------------------------
# Linearization


def _as_vector(residual: Callable[..., Any]) -> Callable[..., Array]:
    """Wrap a residual so a scalar return becomes a length-1 vector."""

    def f(inputs: Any, *xs: Array) -> Array:
        return jnp.reshape(residual(inputs, *xs), (-1,))

    return f


def linearize(
    residual: Callable[..., Any],
    inputs: Any,
    xs: Sequence[Array],
    *,
    batched_inputs: bool = True,
) -> tuple[Array, tuple[Array, ...]]:
    """Residuals and per-slot Jacobians of a family at the points ``xs``.

    ``xs[s]``: ``[M, d_s]`` values of slot ``s``. Returns ``r0`` ``[M, R]`` and
    ``J_s`` ``[M, R, d_s]``. One ``vmap`` of a forward-mode Jacobian per family
    (forward mode because ``d_s`` is small; the residual value comes out as the
    auxiliary output of the same evaluation, so the residual is not run twice).
    """
    f = _as_vector(residual)
    n = len(xs)

    def one(inp: Any, *x: Array) -> tuple[tuple[Array, ...], Array]:
        def g(*xx: Array) -> tuple[Array, Array]:
            r = f(inp, *xx)
            return r, r

        jac, r = jax.jacfwd(g, argnums=tuple(range(n)), has_aux=True)(*x)
        return jac, r

    in_axes = (0 if batched_inputs else None,) + (0,) * n
    jacs, r0 = jax.vmap(one, in_axes=in_axes)(inputs, *xs)
    return r0, tuple(jacs)


def whiten_sq(r: Array, precision: Array) -> Array:
    """Squared Mahalanobis norm ``r^T Lambda r`` per member (diag or full)."""
    if precision.ndim == r.ndim:
        return jnp.sum(precision * r * r, axis=-1)
    return jnp.einsum("mi,mij,mj->m", r, precision, r)


def affine_target(jac: Array, x0: Array, r0: Array) -> Array:
    """``c = J x0 - r0``: the linearized residual ``r0 + J (x - x0)`` is ``J x - c``."""
    return jnp.einsum("mrd,md->mr", jac, x0) - r0


def information_from_target(jac: Array, precision: Array, c: Array) -> tuple[Array, Array]:
    """Information form of the affine residual ``J x - c`` over the concatenated slots.

    The energy ``0.5 (J x - c)^T Lambda (J x - c)`` is the Gaussian
    ``lam_f = J^T Lambda J``, ``eta_f = J^T Lambda c``; a residual linearized
    at ``x0``, ``r(x) ~= r0 + J (x - x0)``, has ``c = J x0 - r0``
    (`affine_target`). ``jac``: ``[M, R, D]``, ``precision``: ``[M, R]``
    (diagonal) or ``[M, R, R]``, ``c``: ``[M, R]``.
    """
    if precision.ndim == 2:
        lj = precision[..., None] * jac
        lam_f = jnp.einsum("mri,mrj->mij", jac, lj)
        eta_f = jnp.einsum("mri,mr->mi", lj, c)
    else:
        lj = jnp.einsum("mrs,msd->mrd", precision, jac)
        lam_f = jnp.einsum("mri,mrj->mij", jac, lj)
        eta_f = jnp.einsum("mri,mr->mi", lj, c)
    lam_f = 0.5 * (lam_f + jnp.swapaxes(lam_f, -1, -2))
    return eta_f, lam_f


# ---------------------------------------------------------------------------
# Factor -> variable messages


def _offsets(dims: Sequence[int]) -> list[int]:
    out = [0]
    for d in dims:
        out.append(out[-1] + d)
    return out


def _others(a: Array, lo: int, hi: int, axes: tuple[int, ...]) -> Array:
    """Drop the index range ``[lo, hi)`` along each axis in ``axes`` (static slices)."""
    for ax in axes:
        n = a.shape[ax]
        parts = []
        if lo > 0:
            parts.append(jax.lax.slice_in_dim(a, 0, lo, axis=ax))
        if hi < n:
            parts.append(jax.lax.slice_in_dim(a, hi, n, axis=ax))
        a = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=ax)
    return a


def schur_messages(
    eta_f: Array,
    lam_f: Array,
    in_eta: Sequence[Array],
    in_lam: Sequence[Array],
    floor: Array | float = 0.0,
) -> tuple[tuple[Array, Array], ...]:
    """Factor-to-variable messages by Schur complement (the general path).

    For slot ``s`` the factor's joint is multiplied by the incoming
    variable-to-factor messages of every *other* slot, and everything but slot
    ``s`` is marginalized out::

        lam_s = L_ss - L_so (L_oo + B_o)^{-1} L_os
        eta_s = e_s  - L_so (L_oo + B_o)^{-1} (e_o + b_o)

    where ``B_o``/``b_o`` are the block-diagonal incoming precisions / etas.
    ``in_eta[t]``: ``[M, d_t]``, ``in_lam[t]``: ``[M, d_t, d_t]``. Returns one
    ``(eta_s, lam_s)`` per slot. Cost per member is one ``(D - d_s)``-sized SPD
    solve per slot.
    """
    dims = [e.shape[-1] for e in in_eta]
    off = _offsets(dims)
    n_slots = len(dims)
    if n_slots == 1:
        return ((eta_f, lam_f),)
    # The joint with *all* incoming messages: its "others" block for slot s is
    # exactly L_oo + B_o, because slot s's own block is not in it.
    lam_all = lam_f
    eta_all = eta_f
    big = off[-1]
    lead = [(0, 0)] * (lam_f.ndim - 2)
    for t in range(n_slots):
        lo, hi = off[t], off[t + 1]
        # Zero-padding into place (not a scatter) so XLA fuses the block-diagonal add.
        lam_all = lam_all + jnp.pad(in_lam[t], lead + [(lo, big - hi), (lo, big - hi)])
        eta_all = eta_all + jnp.pad(in_eta[t], lead + [(lo, big - hi)])
    out = []
    for s in range(n_slots):
        lo, hi = off[s], off[s + 1]
        a_oo = _others(lam_all, lo, hi, (-2, -1))
        l_os = _others(lam_f[..., :, lo:hi], lo, hi, (-2,))
        e_o = _others(eta_all, lo, hi, (-1,))
        rhs = jnp.concatenate([l_os, e_o[..., None]], axis=-1)
        sol = spd_solve(a_oo, rhs, floor)
        l_so = jnp.swapaxes(l_os, -1, -2)
        corr = jnp.einsum("...ij,...jk->...ik", l_so, sol)
        lam_s = lam_f[..., lo:hi, lo:hi] - corr[..., :, :-1]
        lam_s = 0.5 * (lam_s + jnp.swapaxes(lam_s, -1, -2))
        eta_s = eta_f[..., lo:hi] - corr[..., :, -1]
        out.append((eta_s, lam_s))
    return tuple(out)


EXCLUSIVE_UNROLL_MAX = 16
"""Up to this many slots, exclusive sums are unrolled adds (fused elementwise)."""


def _exclusive_sums(x: Array | Sequence[Array]) -> Array | list[Array]:
    """``out[s] = sum_{t != s} x[t]`` along axis 0, without ``total - x[s]``.

    The subtraction form cancels catastrophically when one term dominates (a
    slot whose incoming message is nearly flat has a huge ``q``), so the sums are
    built from prefix and suffix sums instead. A list of up to
    `EXCLUSIVE_UNROLL_MAX` arrays gets a list back, built from unrolled adds
    that XLA fuses with their neighbours (a stacked ``cumsum`` is a separate
    reduce-window pass over memory per call).
    """
    if not isinstance(x, jax.Array) and len(x) <= EXCLUSIVE_UNROLL_MAX:
        n = len(x)
        pre: list[Array | None] = [None] * n
        suf: list[Array | None] = [None] * n
        for s in range(1, n):
            pre[s] = x[s - 1] if pre[s - 1] is None else pre[s - 1] + x[s - 1]
        for s in range(n - 2, -1, -1):
            suf[s] = x[s + 1] if suf[s + 1] is None else suf[s + 1] + x[s + 1]
        out = []
        for p, q in zip(pre, suf, strict=True):
            if p is None and q is None:
                out.append(jnp.zeros_like(x[0]))
            else:
                out.append(q if p is None else p if q is None else p + q)
        return out
    x = jnp.stack(list(x)) if not isinstance(x, jax.Array) else x
    zero = jnp.zeros_like(x[:1])
    prefix = jnp.concatenate([zero, jnp.cumsum(x[:-1], axis=0)], axis=0)
    suffix = jnp.concatenate([jnp.cumsum(x[::-1][:-1], axis=0)[::-1], zero], axis=0)
    return prefix + suffix


def rank1_messages(
    jac: Sequence[Array],
    lam: Array,
    c: Array,
    in_eta: Sequence[Array],
    in_lam: Sequence[Array],
    floor: Array | float = 0.0,
) -> tuple[tuple[Array, Array], ...]:
    """Factor-to-variable messages of a scalar-residual factor (Sherman-Morrison).

    A factor with one residual row ``j^T x - c`` (``j = J^T``, ``c = J x0 - r0``)
    and precision ``lam`` has ``lam_f = lam j j^T``. Marginalizing the other slots
    with their incoming messages ``(b_t, B_t)`` gives, by Sherman-Morrison,

        lam_s = lam_eff j_s j_s^T,   eta_s = lam_eff (c - m) j_s,
        lam_eff = lam / (1 + lam q),  q = sum_{t != s} j_t^T B_t^{-1} j_t,
        m = sum_{t != s} j_t^T B_t^{-1} b_t,

    i.e. the residual's variance ``1/lam`` is inflated by the others' predicted
    variance ``q`` and its target shifted by their predicted mean ``m``. Cost is
    O(D) per member plus one tiny solve per slot instead of an O(D^3) Schur
    complement -- the form the GBP Learning paper uses for scalar factors.

    ``jac[s]``: ``[M, d_s]``; ``lam``, ``c``: ``[M]``.
    """
    n_slots = len(jac)
    if n_slots == 1:
        j = jac[0]
        return ((lam[..., None] * c[..., None] * j, lam[..., None, None] * j[..., :, None] * j[..., None, :]),)
    if n_slots == 2 and all(j.shape[-1] == 1 for j in jac):
        return _pairwise_scalar_messages(jac, lam, c, in_eta, in_lam, floor)
    qs, ms = [], []
    for t in range(n_slots):
        if jac[t].shape[-1] == 1:
            # Scalar slot: B^{-1} is a division (elementwise, fuses).
            d = in_lam[t][..., 0, 0]
            inv = 1.0 / jnp.maximum(d, _pivot_floor(d, floor))
            j = jac[t][..., 0]
            qs.append(j * j * inv)
            ms.append(j * in_eta[t][..., 0] * inv)
            continue
        rhs = jnp.stack([jac[t], in_eta[t]], axis=-1)
        sol = spd_solve(in_lam[t], rhs, floor)
        qs.append(jnp.sum(jac[t] * sol[..., 0], axis=-1))
        ms.append(jnp.sum(jac[t] * sol[..., 1], axis=-1))
    q_ex = _exclusive_sums(qs)
    m_ex = _exclusive_sums(ms)
    out = []
    for s in range(n_slots):
        lam_eff = lam / (1.0 + lam * q_ex[s])
        j = jac[s]
        eta_s = (lam_eff * (c - m_ex[s]))[..., None] * j
        lam_s = lam_eff[..., None, None] * j[..., :, None] * j[..., None, :]
        out.append((eta_s, lam_s))
    return tuple(out)


def _pairwise_scalar_messages(
    jac: Sequence[Array],
    lam: Array,
    c: Array,
    in_eta: Sequence[Array],
    in_lam: Sequence[Array],
    floor: Array | float,
) -> tuple[tuple[Array, Array], ...]:
    """`rank1_messages` for two scalar slots, with no division shared between outputs.

    With ``t`` the other slot and ``b_t, B_t`` its incoming message,
    ``lam_s = lam j_s^2 / (1 + lam j_t^2 / B_t)`` and
    ``eta_s = lam j_s ((c B_t - j_t b_t) / (B_t + lam j_t^2))``. Each output is
    then one elementwise expression of the inputs, so XLA fuses each message --
    damping included -- into a single pass over memory (a division shared by
    two outputs is "expensive" to XLA and gets a pass of its own). Every
    quotient is bounded by its inputs' magnitudes: multiplying out first
    (``lam j_s^2 B_t / ...``) overflowed float32 for precisions near 1e19. This
    is the grid/chain case, where the engine's speed is measured.
    """
    out = []
    for s, t in ((0, 1), (1, 0)):
        d = in_lam[t][..., 0, 0]
        d = jnp.maximum(d, _pivot_floor(d, floor))
        js, jt = jac[s][..., 0], jac[t][..., 0]
        pt = lam * jt * jt
        eta_s = (lam * js * ((c * d - jt * in_eta[t][..., 0]) / (d + pt)))[..., None]
        lam_s = (lam * js * js / (1.0 + pt / d))[..., None, None]
        out.append((eta_s, lam_s))
    return tuple(out)


def woodbury_messages(
    jac: Sequence[Array],
    precision: Array,
    c: Array,
    in_eta: Sequence[Array],
    in_lam: Sequence[Array],
    floor: Array | float = 0.0,
) -> tuple[tuple[Array, Array], ...]:
    """Factor-to-variable messages in the noise-inflation (Woodbury) form.

    For a linearized factor ``c = J x + e``, ``e ~ N(0, Lambda^{-1})`` (``c = J x0
    - r0``), the message to slot ``s`` is the likelihood of ``x_s`` once the other
    slots, distributed as their incoming messages ``N(mu_t, B_t^{-1})``, are
    integrated out::

        S_s   = Lambda^{-1} + sum_{t != s} J_t B_t^{-1} J_t^T          (R x R)
        lam_s = J_s^T S_s^{-1} J_s
        eta_s = J_s^T S_s^{-1} (c - sum_{t != s} J_t mu_t)

    This equals the Schur complement of `schur_messages` (matrix inversion
    lemma) but is numerically safer when ``R < D``: a rank-deficient factor
    with nearly flat incoming messages makes the Schur form a difference of two
    large, nearly equal matrices (its result is tiny), whereas here the large
    incoming covariance simply inflates ``S_s``. That cancellation made plain
    GBP blow up in the first iterations of the M3500 pose graph. Also cheaper:
    R x R solves instead of (D - d_s) x (D - d_s) ones. The scalar case R = 1
    is `rank1_messages`.

    ``jac[s]``: ``[M, R, d_s]``; ``precision``: ``[M, R]`` (diagonal) or
    ``[M, R, R]``; ``c``: ``[M, R]``.
    """
    dt = c.dtype
    tiny = jnp.sqrt(jnp.finfo(dt).tiny)
    r = c.shape[-1]
    if precision.ndim == 2:
        noise = jax.vmap(jnp.diag)(1.0 / jnp.maximum(precision, tiny)) if r > 1 else (
            1.0 / jnp.maximum(precision, tiny))[..., None]
    else:
        noise = spd_inv(precision, tiny)
    n_slots = len(jac)
    covs, means = [], []
    for t in range(n_slots):
        jt = jnp.swapaxes(jac[t], -1, -2)  # [M, d, R]
        sol = spd_solve(in_lam[t], jnp.concatenate([jt, in_eta[t][..., None]], axis=-1), floor)
        covs.append(jnp.einsum("mrd,mdk->mrk", jac[t], sol[..., :-1]))  # J_t B_t^{-1} J_t^T
        means.append(jnp.einsum("mrd,md->mr", jac[t], sol[..., -1]))  # J_t mu_t
    cov_ex = _exclusive_sums(covs)
    mean_ex = _exclusive_sums(means)
    out = []
    for s in range(n_slots):
        big_s = noise + cov_ex[s]
        big_s = 0.5 * (big_s + jnp.swapaxes(big_s, -1, -2))
        rhs = jnp.concatenate([jac[s], (c - mean_ex[s])[..., None]], axis=-1)
        sol = spd_solve(big_s, rhs, tiny)
        jst = jnp.swapaxes(jac[s], -1, -2)
        lam_s = jnp.einsum("mdr,mrk->mdk", jst, sol[..., :-1])
        lam_s = 0.5 * (lam_s + jnp.swapaxes(lam_s, -1, -2))
        eta_s = jnp.einsum("mdr,mr->md", jst, sol[..., -1])
        out.append((eta_s, lam_s))
    return tuple(out)


def factor_messages(
    jacs: Sequence[Array],
    precision: Array,
    r0: Array,
    x0: Sequence[Array],
    in_eta: Sequence[Array],
    in_lam: Sequence[Array],
    floor: Array | float = 0.0,
    c: Array | None = None,
) -> tuple[tuple[Array, Array], ...]:
    """All factor-to-variable messages of a linearized family, by the safest path.

    * one slot: the factor's own information form;
    * scalar residual on scalar slots: `rank1_messages` (exact and robust);
    * residual dimension ``R >= D`` (full-rank factor): `schur_messages`;
    * ``R < D`` (rank-deficient factor, e.g. a 3-row pose edge between two 3-dim
      poses): both `schur_messages` and the noise-inflation form
      (`woodbury_messages`, or `rank1_messages` for R = 1), chosen per member and
      slot. Schur is accurate unless its output is tiny next to the factor's own
      block (incoming messages nearly flat: early iterations, far from any
      anchor), where it is a difference of nearly equal numbers; there the
      noise-inflation form is exact instead. Where Schur's output is
      substantial it is kept, because the noise-inflation form leaks round-off
      from nearly flat directions of an incoming message into its informative
      ones. The switch is at a ratio of ``sqrt(eps)`` of the traces (a
      non-finite Schur result always switches). Factors too big for the
      unrolled solver (``D - d_s > UNROLL_MAX_DIM``) use the noise-inflation
      form alone: O(D) per member where Schur costs O(D^3).

    ``jacs[s]``: ``[M, R, d_s]``; ``precision``: ``[M, R]`` or ``[M, R, R]``
    (robust weights applied); ``r0``: ``[M, R]``; ``x0[s]``: ``[M, d_s]``. An
    affine family may pass its constant target ``c`` (``r(x) = J x - c``)
    instead, with ``r0`` and ``x0`` None: its messages do not depend on where it
    is linearized.
    """
    jac = jnp.concatenate(jacs, axis=-1)
    dims = [j.shape[-1] for j in jacs]
    if c is None:
        c = affine_target(jac, jnp.concatenate(x0, axis=-1), r0)
    big, r = sum(dims), c.shape[-1]
    if r == 1 and len(jacs) > 1 and all(d == 1 for d in dims):
        lam = precision.reshape(precision.shape[0])
        return rank1_messages([j[:, 0, :] for j in jacs], lam, c[:, 0], in_eta, in_lam, floor)
    if len(jacs) > 1 and r < big:
        if r == 1:
            lam = precision.reshape(precision.shape[0])
            alt = rank1_messages([j[:, 0, :] for j in jacs], lam, c[:, 0], in_eta, in_lam, floor)
        else:
            alt = woodbury_messages(jacs, precision, c, in_eta, in_lam, floor)
        if max(big - d for d in dims) > UNROLL_MAX_DIM:
            # Too big for the unrolled solver (a neuron's factor over many
            # weights, say): Schur would cost O(D^3) per member, the
            # noise-inflation form O(D); use the latter alone.
            return alt
    eta_f, lam_f = information_from_target(jac, precision, c)
    schur = schur_messages(eta_f, lam_f, in_eta, in_lam, floor)
    if len(jacs) == 1 or r >= big:
        return schur
    dt = c.dtype
    kappa = jnp.sqrt(jnp.finfo(dt).eps)
    off = _offsets(dims)
    out = []
    for s, ((es, ls), (ea, la)) in enumerate(zip(schur, alt, strict=True)):
        own = jnp.trace(lam_f[..., off[s] : off[s + 1], off[s] : off[s + 1]], axis1=-2, axis2=-1)
        # NaN-safe: a Schur output that is not finite (a singular joint when the
        # incoming messages are flat) falls back to the noise-inflation form
        schur_ok = jnp.all(jnp.isfinite(es), axis=-1) & jnp.all(jnp.isfinite(ls), axis=(-2, -1))
        use_alt = ~(jnp.trace(ls, axis1=-2, axis2=-1) >= kappa * own) | ~schur_ok
        out.append((jnp.where(use_alt[:, None], ea, es), jnp.where(use_alt[:, None, None], la, ls)))
    return tuple(out)
