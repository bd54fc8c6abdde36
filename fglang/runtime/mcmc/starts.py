"""Screened starting points for NUTS: overdispersed, never hopeless.

Why: NumPyro (as Stan) starts each chain at a uniform(-2, 2) draw in the
unconstrained space. Where part of that box is a region the sampler cannot
leave, a chain that starts there is lost. ARMA(1,1) (posteriordb ``arma11``,
four default chains, seed 0) is the case: half the box has ``|theta| > 1``,
where the moving-average recursion explodes (log density about -3e5 against
about 65 at the mode); warm-up shrinks that chain's step size to 1e-16 and it
never moves. PyMC starts every chain near one point (jitter of +-1) and never
meets this, but gives up the dispersion R-hat and the chain-disagreement
check (`chains`) rely on to see a second mode.

What this does instead (``screened_start``): per chain, ``CANDIDATES``
candidate starts, the first NumPyro's own start (from the key NumPyro would
use, so the chain's start is what it always was whenever it passes), the
others fresh uniform(-2, 2) draws of the vars the user gave no start for. The
potential is evaluated at all of them in one traced call; a candidate whose log
density is more than ``threshold(D)`` nats below the best of its chain's
candidates is dropped; the chain keeps NumPyro's start if it survives, else a
survivor drawn at random. Each chain screens its own candidates, so starts
stay distinct and spread over the box (minus the hopeless part).

The threshold, ``D/2 + SPREAD * sqrt(D) + SPREAD`` nats (``SPREAD = 4``)
for ``D`` unconstrained dimensions: for a posterior close to a
D-dimensional Gaussian, the log density of a draw sits ``chi2_D / 2`` below
the mode (mean ``D/2``, sd ``sqrt(D/2)``), and this bound is above the
0.9999 quantile of ``chi2_D / 2`` for every D (7.6 nats at D = 1, 81 at
D = 100; the test checks it), so a candidate that could be a typical draw is
never dropped (the best candidate is itself at most the mode), while one
thousands of nats down (an exploding recursion, a scale at 1e-30) always is.
On a model whose whole box is benign the candidates lie within a few sqrt(D)
of each other and nothing changes (eight schools keeps NumPyro's start in
every chain of seeds 0 to 4).

A candidate whose gradient is not finite is dropped too, as NumPyro's own
search drops it (NUTS cannot take a step from it): posteriordb ``accel_gp``
(seed 0) has a corner of the box where a length scale near 7 makes brms's
``sqrt(sdgp^2 * ... * exp(-0.5 * lscale^2 * lambda^2))`` underflow to
``sqrt(0)``: the log density there is finite and better than NumPyro's start,
its gradient NaN (``inf * 0``), and screening by the density alone picked it
and refused the fit ("no valid initial point").

Cost: ``chains * CANDIDATES`` evaluations of the log density and its
gradient (one candidate index at a time, vectorized over the chains: the
memory of one NUTS step) and one more gradient per chain, once, inside the
start program (or eagerly before ``MCMC.run``).
A chain all of whose candidates are hopeless keeps the best of them: with
half the box hopeless (ARMA) that is a chance of 2^-16 per chain, and the
disagreement check still names it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import random
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import ParamInfo, initialize_model

from fglang.runtime.mcmc.start_draws import batched_start_search

CANDIDATES = 16  # per chain, NumPyro's own start included
SPREAD = 4.0  # the threshold: D/2 + SPREAD * (sqrt(D) + 1) nats (see the module docstring)
RADIUS = 2.0  # the uniform box in the unconstrained space, as NumPyro's init_to_uniform and Stan
KEPT_GRADIENT_BYTES = 64 << 20  # the candidates' gradients are kept (for the chosen one) up to this size
_SALT = 0x5C2EE4  # folded into NumPyro's init key: the candidates' own stream, NumPyro's is untouched


def threshold(dim: int) -> float:
    """How far (nats) below the chain's best candidate a candidate is dropped."""
    return dim / 2 + SPREAD * (dim ** 0.5 + 1)


def init_keys(chain_keys, chains: int):
    """The keys NumPyro's ``HMC.init`` hands ``initialize_model``: the second
    half of ``split`` of each chain's key ([chains, ...]; one chain: its key)."""
    # the very operations ``HMC.init`` and the prototype trace use (a
    # transpose, not ``[:, 1]``): XLA then merges the three key derivations and
    # the uniform draws made from them (threefry is unrolled: at K = 10
    # families, 4,000 of the start program's 18,000 instructions were a second copy)
    if chains > 1:
        return jnp.swapaxes(jax.vmap(random.split)(chain_keys), 0, 1)[1]
    return random.split(chain_keys)[1]


def find_start(model: Callable, chain_keys, chains: int, strategy: Callable, args: tuple) -> tuple:
    """NumPyro's ``initialize_model`` for the chains, with the keys ``HMC.init``
    would hand it: its start, potential, post-processing and model trace,
    which `screened_start` and NUTS's own init (`program.PreparedNUTS`) share."""
    with batched_start_search():  # the same start, from a smaller program (see `start_draws`)
        return initialize_model(init_keys(chain_keys, chains), model, init_strategy=strategy, dynamic_args=True,
                                model_args=args)


def screened_start(model: Callable, chain_keys, chains: int, strategy: Callable, given: set[str],
                   args: tuple, found: tuple | None = None) -> ParamInfo | None:
    """The chains' starts (``ParamInfo``, batched over chains when ``chains >
    1``, as ``HMC.init`` takes ``init_params``), screened as the module
    docstring says; None when the user gave every latent site a start (their
    start is used as it is). ``chain_keys``: each chain's key as ``HMC.init``
    gets it (``split(key, chains)``; one chain: the key); ``given``: the sites
    the init strategy sets from the user's values (kept in every candidate);
    ``found``: `find_start`'s result when the caller has it already."""
    keys = init_keys(chain_keys, chains)
    info, potential_gen, _, _ = found if found is not None else find_start(model, chain_keys, chains, strategy, args)
    free = [s for s in info.z if s not in given]
    if not free:
        return None
    potential = potential_gen(*args)
    z0, pe0, g0 = (info.z, info.potential_energy, info.z_grad) if chains > 1 else \
        jax.tree.map(lambda x: x[None], (info.z, info.potential_energy, info.z_grad))
    keys = keys if chains > 1 else keys[None]
    one = jax.tree.map(lambda x: x[0], z0)
    flat0, unravel = ravel_pytree(one)
    dim = int(flat0.size)
    mask, _ = ravel_pytree({s: jnp.full(jnp.shape(v), s in free) for s, v in one.items()})
    z0_flat = jax.vmap(lambda z: ravel_pytree(z)[0])(z0)  # [chains, D]

    def candidates(key, start):  # [CANDIDATES - 1, D]: the free dims drawn anew, the given ones kept
        u = random.uniform(random.fold_in(key, _SALT), (CANDIDATES - 1, dim), start.dtype, -RADIUS, RADIUS)
        return jnp.where(mask, u, start)

    cand = jax.vmap(candidates)(keys, z0_flat)  # [chains, K - 1, D]
    # the candidates' gradients kept for the chosen one (no second gradient program) where they are
    # small; else only the verdicts are kept and the chosen start's gradient is computed again
    keep_grads = chains * (CANDIDATES - 1) * dim * flat0.dtype.itemsize <= KEPT_GRADIENT_BYTES

    def usable(x):  # the potential where it and its gradient are finite (NUTS refuses either), else inf
        pe, g = jax.value_and_grad(lambda y: potential(unravel(y)))(x)
        pe = jnp.where(jnp.all(jnp.isfinite(g)), pe, jnp.inf)
        return (pe, g) if keep_grads else pe

    # over the chains, as NUTS runs them; one candidate index at a time (lax.map): the memory of one
    # NUTS step, not K - 1 of them at once
    mapped = jax.lax.map(jax.vmap(usable), jnp.swapaxes(cand, 0, 1))  # [K - 1, chains] (and [K - 1, chains, D])
    pe = jnp.swapaxes(mapped[0] if keep_grads else mapped, 0, 1)  # [chains, K - 1]
    pe_all = jnp.concatenate([pe0[:, None], pe], axis=1)  # [chains, K]
    lp = jnp.where(jnp.isfinite(pe_all), -pe_all, -jnp.inf)
    best = jnp.max(lp, axis=1, keepdims=True)
    survive = lp >= best - threshold(dim)
    u = jax.vmap(lambda k: random.uniform(random.fold_in(k, _SALT + 1), (CANDIDATES,)))(keys)
    priority = jnp.where(survive, u + 2.0 * (jnp.arange(CANDIDATES) == 0), -jnp.inf)  # NumPyro's start first
    pick = jnp.argmax(priority, axis=1)  # [chains]
    is0 = pick == 0
    rows, col = jnp.arange(pick.shape[0]), jnp.maximum(pick - 1, 0)
    chosen = jnp.where(is0[:, None], z0_flat, cand[rows, col])
    if keep_grads:
        pe_c, g_c = pe[rows, col], mapped[1][col, rows]
    else:
        pe_c, g_c = jax.vmap(jax.value_and_grad(lambda x: potential(unravel(x))))(chosen)

    def keep0(a, b):  # NumPyro's own start, energy and gradient, bit for bit, where the chain keeps it
        return jnp.where(jnp.reshape(is0, (-1,) + (1,) * (jnp.ndim(a) - 1)), a, b)

    z = jax.tree.map(keep0, z0, jax.vmap(unravel)(chosen))
    pe_c = keep0(pe0, pe_c)
    g_c = jax.tree.map(keep0, g0, jax.vmap(unravel)(g_c))
    out: Any = ParamInfo(z, pe_c, g_c)
    return out if chains > 1 else jax.tree.map(lambda x: x[0], out)
