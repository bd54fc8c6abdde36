"""Sparsity priors as iteratively reweighted Gaussian priors.

Every sparsity prior fglang offers is a Gaussian scale mixture: ``w ~ N(0, 1/l)``
with a hyper-prior on the precision ``l``. GBP cannot carry the hyper-prior's
non-Gaussian belief, so each prior element keeps a Gaussian factor ``N(w; 0,
1/l)`` whose precision is re-estimated every iteration by an EM / mean-field
step from the current Gaussian belief ``q(w)`` of the element:

    s = E_q[w^2] = mean^2 + var,        l <- E[l | s]  (rule per prior below).

Using ``E[w^2]`` (not ``mean^2``) matters: it keeps the update from collapsing
to an infinite precision at ``mean = 0`` (the belief's variance bounds it), so
the iteration has a finite fixed point for every prior. ``s`` and ``l`` are still
clamped (`S_MIN`, `LAM_MIN`, `LAM_MAX`) so precisions stay finite in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

S_MIN = 1e-20
"""Floor on ``E[w^2]`` before it is used as a divisor."""
LAM_MIN = 1e-10
"""Smallest prior precision produced (an essentially flat prior)."""
LAM_MAX = 1e10
"""Largest prior precision produced (an element pinned at zero)."""


def _clamp(lam: Array) -> Array:
    return jnp.clip(lam, LAM_MIN, LAM_MAX)


def laplace_precision(s: Array, b: Array | float) -> Array:
    """Laplace(0, b) prior: ``l = 1 / (b sqrt(E[w^2]))``.

    The Laplace is a normal scale mixture with exponential mixing on the
    variance (Andrews & Mallows 1974); the EM step for the latent precision given
    ``w`` is ``E[1/tau | w] = 1/(b |w|)`` (Figueiredo 2003, "Adaptive sparseness
    for supervised learning"); ``|w|`` becomes ``sqrt(E[w^2])`` under ``q``.
    """
    s = jnp.maximum(s, S_MIN)
    return _clamp(1.0 / (jnp.asarray(b, s.dtype) * jnp.sqrt(s)))


def ard_precision(s: Array, a: Array | float, b: Array | float) -> Array:
    """ARD with a Gamma(a, b) hyper-prior: ``l = (a + 1/2) / (b + E[w^2]/2)``.

    The mean of the conjugate Gamma posterior of one element's precision, the
    variational / EM update of sparse Bayesian learning (Tipping 2001; MacKay
    1994; Bishop & Tipping 2000).
    """
    s = jnp.maximum(s, S_MIN)
    return _clamp((jnp.asarray(a, s.dtype) + 0.5) / (jnp.asarray(b, s.dtype) + 0.5 * s))


def _horseshoe_local(s: Array, scale: Array | float) -> Array:
    """``E[1/lambda^2]`` of the horseshoe's local scale at its mean-field fixed point.

    With the auxiliary form of the half-Cauchy (Makalic & Schmidt 2016:
    ``lambda^2 | nu ~ IG(1/2, 1/nu)``, ``nu ~ IG(1/2, 1)``) and
    ``w ~ N(0, tau^2 lambda^2)`` (global scale ``tau`` fixed), the mean-field
    updates are ``E[1/lambda^2] = 1/(E[1/nu] + c)`` with ``c = E[w^2]/(2 tau^2)``
    and ``E[1/nu] = 1/(1 + E[1/lambda^2])`` (Neville, Ormerod & Wand 2014).
    Their joint fixed point solves ``c a^2 + c a - 1 = 0``:
    ``a = (sqrt(1 + 4/c) - 1)/2``, written cancellation-free as
    ``2 / (c (sqrt(1 + 4/c) + 1))``.
    """
    tau = jnp.asarray(scale, s.dtype)
    c = jnp.maximum(s, S_MIN) / (2.0 * tau * tau)
    return 2.0 / (c * (jnp.sqrt(1.0 + 4.0 / c) + 1.0))


def horseshoe_precision(s: Array, scale: Array | float) -> Array:
    """Horseshoe(scale) prior: ``l = E[1/lambda^2] / tau^2`` (see `_horseshoe_local`).

    Small elements get ``l ~ sqrt(2)/(tau |w|)`` (Laplace-like, strong shrinkage),
    large ones ``l ~ 2/w^2`` (the Cauchy tail: almost no shrinkage).
    """
    tau = jnp.asarray(scale, s.dtype)
    return _clamp(_horseshoe_local(s, scale) / (tau * tau))


def reg_horseshoe_precision(
    s: Array, scale: Array | float, slab_scale: Array | float, slab_df: Array | float
) -> Array:
    """Regularized horseshoe (Piironen & Vehtari 2017).

    Its conditional prior ``w ~ N(0, tau^2 lt^2)`` with ``lt^2 = c^2 lambda^2 /
    (c^2 + tau^2 lambda^2)`` has precision ``1/(tau^2 lambda^2) + 1/c^2``: the
    horseshoe's precision plus a slab precision. We update each term by its own
    EM rule: the local scale as in `horseshoe_precision`, and the slab's
    ``c^2 ~ Inv-Gamma(slab_df/2, slab_df slab_scale^2/2)``, shared by all elements
    of the family (one slab per var), by its conjugate posterior mean treating
    the slab as a Gaussian factor on every element::

        E[1/c^2] = (slab_df + K) / (slab_df slab_scale^2 + sum_k E[w_k^2]).

    The coupling of the two scales through the normalizing constant is dropped
    (exact in both limits: ``c -> inf`` is the horseshoe, ``lambda -> inf`` a
    Gaussian slab). ``s`` is the whole family's ``[M, R]`` array, since the slab
    update is a reduction over it.
    """
    s = jnp.maximum(s, S_MIN)
    nu = jnp.asarray(slab_df, s.dtype)
    c0 = jnp.asarray(slab_scale, s.dtype)
    k = s.size
    inv_c2 = (nu + k) / (nu * c0 * c0 + jnp.sum(s))
    tau = jnp.asarray(scale, s.dtype)
    return _clamp(_horseshoe_local(s, scale) / (tau * tau) + inv_c2)


def spike_slab_precision(
    s: Array, p: Array | float, slab_sd: Array | float, spike_sd: Array | float
) -> Array:
    """Spike-and-slab (two-normal mixture): ``l = r/slab_sd^2 + (1-r)/spike_sd^2``.

    ``r`` is the responsibility of the slab under ``q``: the mean-field update of
    the indicator (George & McCulloch 1993's continuous relaxation; Ročková &
    George 2014's EMVS), ``logit r = logit p + E_q[log N(w;0,slab^2) -
    log N(w;0,spike^2)]`` with ``E_q[w^2] = s``; the expected precision
    follows. It lies between ``1/slab_sd^2`` and ``1/spike_sd^2``.
    """
    s = jnp.maximum(s, S_MIN)
    p = jnp.asarray(p, s.dtype)
    v1 = jnp.asarray(slab_sd, s.dtype) ** 2
    v0 = jnp.asarray(spike_sd, s.dtype) ** 2
    logit = (
        jnp.log(p) - jnp.log1p(-p) + 0.5 * jnp.log(v0 / v1) - 0.5 * s * (1.0 / v1 - 1.0 / v0)
    )
    r = jax.nn.sigmoid(logit)
    return _clamp(r / v1 + (1.0 - r) / v0)


def sparsity_precision(kind: str, params: tuple[Array, ...], s: Array) -> Array:
    """Prior precision ``[M, R]`` of sparsity prior ``kind`` given ``s = E[w^2]``."""
    if kind == "laplace":
        return laplace_precision(s, *params)
    if kind == "ard":
        return ard_precision(s, *params)
    if kind == "horseshoe":
        return horseshoe_precision(s, *params)
    if kind == "reg_horseshoe":
        return reg_horseshoe_precision(s, *params)
    if kind == "spike_slab":
        return spike_slab_precision(s, *params)
    raise ValueError(f"unknown sparsity prior {kind!r}")
