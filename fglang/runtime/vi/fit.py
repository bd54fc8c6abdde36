"""The ``vi`` backend's work: stochastic VI on the lowered NumPyro model.

The guide is a normal distribution on the model's unconstrained parameters
``z`` (NumPyro's transforms and Jacobians, as Stan's ADVI), fitted in a
whitened space: ``z = m + L u``, with ``m`` the mode and ``L L^T`` the inverse
Hessian there (the Laplace approximation), so that the posterior of ``u`` is
close to a standard normal and one Adam learning rate suits every parameter
whatever its scale or correlations (a slope of 0.01 sd next to an intercept of
30 sd). Where no mode is found (a funnel, an improper posterior) or the model
is too large for a dense Hessian, ``m`` is the initial point and ``L`` the
identity (or the Hessian's diagonal for ``normal``).

Steps run in jitted chunks (``lax.scan``), no Python loop per step; after each
chunk the mean loss of the chunk is the smoothed ELBO: when it has not improved
for ``PATIENCE`` chunks the learning rate falls by ``DECAY``; after
``REDUCTIONS`` falls and another plateau the fit has converged. Then the guide
is checked against the model by Pareto-smoothed importance sampling (k-hat).
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
from jax.flatten_util import ravel_pytree
from numpyro.infer import init_to_median, init_to_uniform, init_to_value

from fglang.compiler.bind import BoundModel
from fglang.errors import Diagnostic, FgError
from fglang.runtime.carry import CarriedMarginal
from fglang.runtime.numpyro_sites import init_sites, numpyro_model, precision, resolve_dtype, site_draws
from fglang.runtime.posterior import Posterior
from fglang.runtime.progress import progress_bar
from fglang.runtime.vi.options import AUTO_LOWRANK_MAX, AUTO_MVN_MAX, ViOptions
from fglang.runtime.vi.psis import ess as psis_ess
from fglang.runtime.vi.psis import psis

DEFAULT_LR = 0.02
CHUNK = 200  # steps per jitted chunk, and the window of the smoothed ELBO
WARMUP = 100  # steps of linear learning-rate warm-up
PATIENCE = 2  # chunks without improvement make a plateau
DECAY = 0.3  # the learning rate's fall on a plateau
REDUCTIONS = 3  # falls before a plateau means convergence
DENSE_MAX = 2000  # largest D whose Hessian is formed (Laplace whitening)
MODE_ITERS = 300  # L-BFGS iterations to find the mode (well-posed models take 10-100)
PSIS_DRAWS = 1000  # at least this many guide draws weighted for k-hat


def choose_guide(requested: str, dim: int) -> str:
    if requested != "auto":
        return requested
    if dim <= AUTO_MVN_MAX:
        return "mvn"
    return "lowrank" if dim <= AUTO_LOWRANK_MAX else "normal"


def fit_vi(
    bm: BoundModel, o: ViOptions, *, seed: int, init: dict, carried: dict[str, CarriedMarginal], progress: bool = False
) -> Posterior:
    dtype = resolve_dtype(o.dtype)
    with precision(dtype):
        return _fit(bm, o, dtype, seed, init, carried, progress)


def _start(model, data, init_fn, key, fallback=None):
    """The unconstrained initial point ``z`` (a dict of sites), the potential
    (minus the log density of ``z``, Jacobians included) and ``z`` -> constrained
    values and lets. As NumPyro's ``initialize_model``, but jitted whole: its
    eager first trace dispatches (and compiles) every operation of the model and
    its gradient one by one, seconds on a small model."""
    from numpyro.distributions.transforms import biject_to
    from numpyro.handlers import seed, substitute, trace
    from numpyro.infer.util import constrain_fn, potential_energy

    def potential_fn(z):
        return potential_energy(model, (data,), {}, z)

    def postprocess_fn(z):
        return constrain_fn(model, (data,), {}, z, return_deterministic=True)

    @jax.jit
    def init_z(k):
        tr = trace(substitute(seed(model, k), substitute_fn=init_fn)).get_trace(data)
        z = {name: biject_to(site["fn"].support).inv(site["value"]) for name, site in tr.items()
             if site["type"] == "sample" and not site["is_observed"]}
        # a prior median on a boundary (gamma(1e-3, 1e-3)'s is ~0): that element
        # starts uniform in (-2, 2) instead, as NUTS's starts do
        z = {name: jnp.where(jnp.isfinite(v), v, jax.random.uniform(jax.random.fold_in(k, i), jnp.shape(v),
                                                                    minval=-2.0, maxval=2.0))
             for i, (name, v) in enumerate(z.items())}
        v, g = jax.value_and_grad(potential_fn)(z)
        ok = jnp.isfinite(v) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(g)] or
                                                 [jnp.asarray(True)]))
        return z, ok

    for attempt in range(20):
        z, ok = init_z(jax.random.fold_in(key, attempt))
        if bool(ok):
            return z, potential_fn, postprocess_fn
    if fallback is not None:  # a prior median can be a boundary (gamma(1e-3, 1e-3)'s is ~0)
        return _start(model, data, fallback, key, None)
    raise FgError(
        [Diagnostic("VI cannot start: the model's density or its gradient is not finite at any of 20 initial "
                    "points", None, "give --init values where the model's density is finite, or check its data "
                    "and scales")]
    )


def _fit(bm, o: ViOptions, dtype: str, seed: int, init: dict, carried, progress: bool) -> Posterior:
    t0 = time.perf_counter()
    nm = numpyro_model(bm, carried)
    model = nm.model_fn()
    data = nm.data
    sites = init_sites(nm, init)
    # the prior medians (and a uniform start, below)
    init_fn = init_to_value(values=sites) if sites else init_to_median(num_samples=15)
    key = jax.random.PRNGKey(seed)
    k_init, k_fit, k_draw = jax.random.split(key, 3)
    z_init, potential_fn, postprocess_fn = _start(model, data, init_fn, k_init, fallback=init_to_uniform)
    flat0, unravel = ravel_pytree(z_init)
    dim = int(flat0.size)
    if dim == 0:
        raise FgError([Diagnostic("the model has no vars to infer", None)])
    guide = choose_guide(o.guide, dim)
    phases = {"start": time.perf_counter() - t0}

    @jax.jit
    def potential(flat):
        return potential_fn(unravel(flat))

    # -------------------------------------------------------------- whitening
    # Two starts for the mode search, as no one start suits every model: the prior
    # medians (one optimization from the middle of the prior finds the mode the
    # data pull it to: a spike-and-slab coefficient started in the slab stays
    # there) and, as NUTS starts, uniform(-2, 2) on the unconstrained axes (at the
    # medians a neural network's weights are all 0, a saddle it cannot leave). The
    # better mode wins; with none, the fit starts from the uniform point. A given
    # init is the only start.
    starts = [flat0]
    if not sites:
        u0 = jax.random.uniform(jax.random.fold_in(k_init, 99), (dim,), flat0.dtype, -2.0, 2.0)
        if bool(jnp.isfinite(potential(u0))):
            starts.append(u0)
    center, scale, start = starts[-1], None, "initial point"
    if guide != "delta":
        best = None
        for x0 in starts:
            mode, found, mode_iters, hess = _mode(potential, x0, dense=dim <= DENSE_MAX)
            if found:
                value = float(potential(mode))
                if best is None or value < best[0]:
                    best = (value, mode, mode_iters, hess)
        if best is not None:
            _, mode, mode_iters, hess = best
            center, start = mode, f"mode (L-BFGS, {mode_iters} iterations)"
            if hess is not None:
                scale = _laplace_scale(hess, mode.dtype, diagonal=guide == "normal")
                if scale is not None:
                    start += ", Laplace-whitened"
    else:
        center = flat0
    phases["mode"] = time.perf_counter() - t0 - sum(phases.values())
    scale_is_matrix = scale is not None and scale.ndim == 2
    if scale is None:
        scale = jnp.ones(dim, flat0.dtype)

    # the whitening (center, scale) is an argument of the jitted functions, not a
    # constant in them: a dense scale would bloat the program, and a constant that
    # differs between fits would miss the persistent compilation cache
    white = (center, scale)

    def to_z(u, w):
        c, sc = w
        return c + (sc @ u if scale_is_matrix else sc * u)

    # -------------------------------------------------------------- the guide in u
    rank = o.rank or max(1, min(32, int(round(np.sqrt(dim)))))
    # unit scale where whitened (the posterior of u is near a standard normal);
    # elsewhere NumPyro's 0.1, as the unknown scales may be small
    scale0 = 1.0 if start.endswith("whitened") else 0.1
    params = _init_params(guide, dim, rank, flat0.dtype, jax.random.fold_in(k_fit, 1), scale0)

    def q_of(p):
        return _q(guide, p, scale0)

    def loss_fn(p, k, w):
        if guide == "delta":
            return potential(to_z(p["loc"], w))
        q = q_of(p)
        u = q.rsample(k, (o.particles,))
        return jnp.mean(jax.vmap(lambda v: potential(to_z(v, w)))(u)) - q.entropy()

    lr0 = o.lr if o.lr is not None else DEFAULT_LR
    opt = optax.scale_by_adam()

    def step(carry, lr, w):
        p, s, k, n = carry
        k, sub = jax.random.split(k)
        loss, g = jax.value_and_grad(loss_fn)(p, sub, w)
        upd, s2 = opt.update(g, s, p)
        rate = -lr * jnp.minimum(1.0, (n + 1.0) / WARMUP)  # linear warm-up, then lr
        p2 = jax.tree.map(lambda x, d: x + rate * d, p, upd)
        ok = jnp.isfinite(loss) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(g)]))
        # a step whose loss or gradient is not finite is skipped
        p2 = jax.tree.map(lambda a, b: jnp.where(ok, b, a), p, p2)
        s2 = jax.tree.map(lambda a, b: jnp.where(ok, b, a), s, s2)
        return (p2, s2, k, n + 1), loss

    @partial(jax.jit, static_argnames="length")
    def chunk(p, s, k, n, lr, w, length):
        lrs = jnp.full(length, lr, flat0.dtype)
        (p, s, k, _), losses = jax.lax.scan(lambda c, r: step(c, r, w), (p, s, k, n), lrs)
        return p, s, k, losses

    losses_all: list[np.ndarray] = []
    done, lr, reductions, bad, best = 0, lr0, 0, 0, np.inf
    stop, failures = "max_steps", 0
    bar = progress_bar(progress, "vi", o.steps, "step", {"loss": (".4g", float("nan"))})
    rng = k_fit
    p_, s_ = params, opt.init(params)
    try:
        while done < o.steps:
            n_run = min(CHUNK, o.steps - done)
            p2, s2, rng2, losses = chunk(p_, s_, rng, jnp.asarray(done, flat0.dtype), lr, white, n_run)
            losses = np.asarray(losses)
            finite = np.isfinite(losses)
            if finite.mean() < 0.5:  # mostly non-finite: back off and redo the chunk
                failures += 1
                lr *= DECAY
                if failures > 6:
                    bad_step = done + int(np.argmax(~finite))
                    raise FgError(
                        [Diagnostic(f"VI diverged: the ELBO became non-finite at step {bad_step}", None,
                                    "lower lr (e.g. --lr 0.001), give an init, or check the model's scales")]
                    )
                continue
            p_, s_, rng = p2, s2, rng2
            done += n_run
            losses_all.append(losses)
            m = float(np.mean(losses[finite]))
            if bar:
                bar.update(done, m)
            se = float(np.std(losses[finite]) / np.sqrt(finite.sum()))
            if m < best - max(se, o.elbo_tol * max(1.0, abs(m))):
                best, bad = m, 0
            else:
                bad += 1
            if bad >= PATIENCE:
                if reductions >= REDUCTIONS:
                    stop = "converged"
                    break
                lr *= DECAY
                reductions += 1
                bad, best = 0, m
    finally:
        if bar:
            bar.close()
    params = p_
    phases["optimize"] = time.perf_counter() - t0 - sum(phases.values())
    losses = np.concatenate(losses_all) if losses_all else np.zeros(0)

    # -------------------------------------------------------------- draws and PSIS
    batch = 250
    n_draw = -(-max(o.draws, PSIS_DRAWS) // batch) * batch  # whole batches: the mapped body compiles once

    @jax.jit
    def draw(p, k, w):
        if guide == "delta":
            u = jnp.broadcast_to(p["loc"], (n_draw, dim))
            log_q = jnp.zeros(n_draw, flat0.dtype)
        else:
            q = q_of(p)
            u = q.sample(k, (n_draw,))
            log_det = jnp.linalg.slogdet(w[1])[1] if scale_is_matrix else jnp.sum(jnp.log(w[1]))
            log_q = q.log_prob(u) - log_det
        z = jax.vmap(lambda v: to_z(v, w))(u)
        samples, pot = jax.lax.map(lambda f: (postprocess_fn(unravel(f)), potential(f)), z, batch_size=batch)
        return samples, -pot - log_q

    samples, log_w = draw(params, k_draw, white)
    log_w = np.asarray(log_w)
    phases["draws"] = time.perf_counter() - t0 - sum(phases.values())
    khat = lw = None
    if guide != "delta":
        lw, khat = psis(np.asarray(log_w))
    keep = np.arange(o.draws)
    if o.resample and lw is not None:
        keep = np.random.default_rng([seed, 19]).choice(
            n_draw, size=o.draws, replace=True, p=np.exp(lw) / np.exp(lw).sum()
        )
    samples = {k: np.asarray(v)[keep] for k, v in samples.items()}
    draws = site_draws(samples, bm, grouped=False)
    step_every = max(1, len(losses) // 200)
    attrs: dict[str, Any] = {
        "options": o.as_dict(),
        "seed": seed,
        "dtype": dtype,
        "guide": guide,
        "dim": dim,
        "steps": int(len(losses)),
        "stop": stop,
        "lr_final": float(lr),
        "start": start,
        "final_loss": float(np.mean(losses[-min(CHUNK, len(losses)):])) if len(losses) else float("nan"),
        "loss_history": losses[::step_every].tolist(),
        "seconds": round(time.perf_counter() - t0, 3),
        "phase_seconds": {k: round(v, 3) for k, v in phases.items()},
    }
    if khat is not None:
        attrs["khat"] = float(khat) if np.isfinite(khat) else 1e9
        attrs["psis_ess"] = psis_ess(lw)
        attrs["psis_draws"] = int(n_draw)
    return Posterior(
        bm.name,
        "vi",
        draws,
        observed=dict(bm.data),
        attrs=attrs,
        node_shapes={v.name: v.node_shape for v in bm.variables.values()},
    )


# ------------------------------------------------------------------ guides
def _init_params(guide: str, dim: int, rank: int, dtype, key, scale0: float) -> dict:
    zeros = jnp.zeros(dim, dtype)
    one = jnp.full(dim, _softplus_inv(scale0), dtype)
    if guide == "delta":
        return {"loc": zeros}
    if guide == "normal":
        return {"loc": zeros, "scale": one}
    if guide == "mvn":
        return {"loc": zeros, "diag": one, "lower": jnp.zeros((dim, dim), dtype)}
    if guide == "lowrank":
        factor = 0.01 * jax.random.normal(key, (dim, rank), dtype)
        return {"loc": zeros, "scale": one, "factor": factor}
    raise AssertionError(guide)


def _softplus_inv(y: float) -> float:
    return float(np.log(np.expm1(y)))


def _q(guide: str, p: dict, scale0: float):
    """The guide's distribution of u. The off-diagonal parameters (the Cholesky
    factor's lower part, the low-rank factor) are in units of ``scale0``: Adam
    moves every parameter by about the learning rate, and where the fit is not
    whitened the covariances must move as slowly as the small initial scales."""
    if guide == "normal":
        return dist.Normal(p["loc"], jax.nn.softplus(p["scale"])).to_event(1)
    if guide == "mvn":
        tril = scale0 * jnp.tril(p["lower"], -1) + jnp.diag(jax.nn.softplus(p["diag"]))
        return dist.MultivariateNormal(p["loc"], scale_tril=tril)
    if guide == "lowrank":
        return dist.LowRankMultivariateNormal(p["loc"], scale0 * p["factor"], jax.nn.softplus(p["scale"]) ** 2)
    raise AssertionError(guide)


# ------------------------------------------------------------------ the mode and its Hessian
def _mode(potential, x0, dense: bool) -> tuple[jnp.ndarray, bool, int, np.ndarray | None]:
    """The minimum of the potential (the mode of the posterior of z) by L-BFGS from
    ``x0`` (SciPy's, on one jitted value-and-gradient: one small compilation), then,
    for a dense Hessian, up to 8 Newton steps. ``found`` only when it converged: a
    Newton decrement below 1e-6 nats (affine invariant: a slope in units of 0.01
    sd next to an intercept of 30 sd is judged alike), or without the Hessian,
    SciPy's success; a funnel has no mode, and then ``x0`` is returned. With the
    Hessian at the mode where it was formed."""
    from scipy.optimize import minimize

    vg = jax.jit(jax.value_and_grad(potential))
    dtype = x0.dtype

    def f(x):
        v, g = vg(jnp.asarray(x, dtype))
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
    if not np.isfinite(v) or nit >= MODE_ITERS:  # still going: a funnel's neck, not a mode
        return x0, False, nit, None
    if not dense:
        return (jnp.asarray(x, dtype) if r.success else x0), bool(r.success), nit, None
    hess = jax.jit(partial(_hessian, potential))
    tol = 1e-6 if dtype == jnp.float64 else 1e-2
    for _ in range(8):
        h = _sym(hess(jnp.asarray(x, dtype)))
        try:
            step = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            return x0, False, nit, None
        decrement = float(g @ step)
        if not np.isfinite(decrement) or decrement < 0:  # not positive definite: a saddle or no mode
            return x0, False, nit, None
        if decrement < tol:
            return jnp.asarray(x, dtype), True, nit, h
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


def _hessian(potential, x):
    """Forward-over-reverse, in batches of 64 directions: the memory of 64
    gradients, not of D (a model with much data and D near ``DENSE_MAX``)."""
    grad = jax.grad(potential)
    eye = jnp.eye(x.shape[0], dtype=x.dtype)
    return jax.lax.map(lambda v: jax.jvp(grad, (x,), (v,))[1], eye, batch_size=min(64, x.shape[0]))


def _sym(h) -> np.ndarray:
    h = np.asarray(h, dtype=np.float64)
    return 0.5 * (h + h.T)


def _laplace_scale(hess: np.ndarray, dtype, diagonal: bool):
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
        return jnp.asarray(1.0 / np.sqrt(d), dtype)
    lam, vec = np.linalg.eigh(hess)
    if lam[-1] <= 0 or lam[0] < -1e-6 * lam[-1]:
        return None
    lam = np.maximum(lam, (1e-14 if dtype == jnp.float64 else 1e-6) * lam[-1])
    return jnp.asarray((vec / np.sqrt(lam)) @ vec.T, dtype)

