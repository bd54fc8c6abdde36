"""The mode of a VI fit's potential (L-BFGS, then Newton) and the Laplace
whitening there: where the optimization starts and in which units it moves."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

MODE_ITERS = 300  # L-BFGS iterations to find the mode (well-posed models take 10-100)
NEWTON_ITERS = 8  # Newton steps after L-BFGS converged
NEWTON_MORE = 30  # Newton steps after L-BFGS ran out of iterations


def find_mode(vg, hess, x0, dense: bool) -> tuple[np.ndarray, bool, int, np.ndarray | None]:
    """``vg(x)``: the potential's jitted value and gradient; ``hess(x)``: its
    jitted Hessian (`hessian`); one compilation serves every data set of a
    ``fit_many``, the data being an argument of both.

    The minimum of the potential (the mode of the posterior of z) by L-BFGS from
    ``x0`` (SciPy's, on one jitted value-and-gradient: one small compilation), then,
    for a dense Hessian, up to 8 Newton steps. ``found`` only when it converged: a
    Newton decrement below 1e-6 nats (affine invariant: a slope in units of 0.01
    sd next to an intercept of 30 sd is judged alike), or without the Hessian,
    SciPy's success; a funnel has no mode, and then ``x0`` is returned. With the
    Hessian at the mode where it was formed. ``vg`` and ``hess`` are called at
    NumPy points and the mode is one (a ``jnp.asarray`` per call would be a
    conversion program of its own, each lowered and looked up on a warm fit)."""
    from scipy.optimize import minimize

    dtype = x0.dtype

    def f(x):
        v, g = vg(np.asarray(x, dtype))
        v, g = float(v), np.asarray(g, dtype=np.float64)
        if not np.isfinite(v) or not np.all(np.isfinite(g)):
            return np.inf, np.zeros_like(g)
        return v, g

    try:
        r = minimize(f, np.asarray(x0, dtype=np.float64), jac=True, method="L-BFGS-B",
                     options={"maxiter": MODE_ITERS, "gtol": 1e-9, "ftol": 1e-15})
    except (ValueError, FloatingPointError):
        return x0, False, 0, None
    x, nit = r.x, int(r.nit)
    v, g = f(x)
    unfinished = nit >= MODE_ITERS
    if not np.isfinite(v) or (unfinished and not dense):  # still going: a funnel's neck, or no way to tell
        return x0, False, nit, None
    if not dense:
        return (np.asarray(x, dtype) if r.success else x0), bool(r.success), nit, None
    # Newton decides where L-BFGS ran out of iterations: on a badly conditioned
    # but proper posterior (24 correlated predictors) it converges in a few
    # steps, as it is affine invariant; down a funnel's neck it does not
    tol = 1e-6 if dtype == jnp.float64 else 1e-2
    for _ in range(NEWTON_MORE if unfinished else NEWTON_ITERS):
        h = _sym(hess(np.asarray(x, dtype)))
        try:
            step = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            return x0, False, nit, None
        decrement = float(g @ step)
        if not np.isfinite(decrement) or decrement < 0:  # not positive definite: a saddle or no mode
            return x0, False, nit, None
        if decrement < tol:
            return np.asarray(x, dtype), True, nit, h
        t = 1.0
        while t > 1e-4:  # backtracking: the full step, or less where it does not descend
            v2, g2 = f(x - t * step)
            if v2 <= v - 0.25 * t * decrement:
                break
            t *= 0.5
        else:
            return x0, False, nit, None
        x, v, g = x - t * step, v2, g2
        nit += 1
    return x0, False, nit, None


def hessian(potential, x):
    """Forward-over-reverse, in batches of 64 directions: the memory of 64
    gradients, not of D (a model with much data and D near ``DENSE_MAX``)."""
    grad = jax.grad(potential)
    eye = jnp.eye(x.shape[0], dtype=x.dtype)
    return jax.lax.map(lambda v: jax.jvp(grad, (x,), (v,))[1], eye, batch_size=min(64, x.shape[0]))


def _sym(h) -> np.ndarray:
    h = np.asarray(h, dtype=np.float64)
    return 0.5 * (h + h.T)


def laplace_scale(hess: np.ndarray, dtype, diagonal: bool):
    """L with L L^T the inverse Hessian at the mode (symmetric square root,
    eigenvalues floored at 1e-14 (float64; 1e-6 float32) of the largest); the
    diagonal version for a mean-field guide. None where the Hessian is not finite
    or not positive definite."""
    if not np.all(np.isfinite(hess)):
        return None
    if diagonal:
        d = np.diag(hess)
        if np.any(d <= 0):
            return None
        return np.asarray(1.0 / np.sqrt(d), dtype)
    lam, vec = np.linalg.eigh(hess)
    if lam[-1] <= 0 or lam[0] < -1e-6 * lam[-1]:
        return None
    lam = np.maximum(lam, (1e-14 if dtype == jnp.float64 else 1e-6) * lam[-1])
    return np.asarray((vec / np.sqrt(lam)) @ vec.T, dtype)
