"""NumPyro distribution layer of fglang (SPEC section 6, sparsity priors of section 3).

The compiler resolves every ``DIST(ARGS)`` of a ``.fg`` model to a call of
:func:`distribution` with *canonical* parameter names (``normal(mu, sd)``,
``gamma(shape, rate)``, ...), and every ``var ... ~ PRIOR(ARGS)`` whose prior
is a hierarchical sparsity prior to a call of :func:`sparsity_prior` inside the
NumPyro model. Keeping the name -> NumPyro mapping in one table here means the
VI and MCMC backends agree on every parametrization, and tests can check each
one against scipy.

Two densities are written here rather than taken from NumPyro because
NumPyro's version is not what a ``.fg`` user expects:

* ``uniform``: NumPyro's ``Uniform.log_prob`` ignores the value, so a model
  that *learns* the bounds (``y ~ uniform(0, theta)``) would be silently wrong.
  :class:`BoundedUniform` returns ``-inf`` outside ``[lo, hi]``.
* ``ordered_logistic``: NumPyro takes ``log`` of differences of sigmoids,
  which underflows to ``-inf`` for extreme linear predictors.
  :class:`StableOrderedLogistic` uses Stan's log-space formula.

and one is new: :class:`Huber`, a normalized Huber density, so that a model
written for GBP's robust reweighting (GTSAM's Huber ``k``) is also a proper
probabilistic model under VI/MCMC.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import erf, log_ndtr, ndtr, ndtri
from numpyro.distributions import constraints
from numpyro.distributions.util import promote_shapes, validate_sample

from fglang.compiler.distributions import AUX_SUFFIXES, SPARSITY
from fglang.runtime import stan_distributions
from fglang.runtime.numpyro_matrix import InverseWishart, Lkj, LkjCholesky

__all__ = [
    "AUX_SUFFIXES",
    "DISTRIBUTIONS",
    "DISTRIBUTION_PARAMS",
    "PRIOR_AUX",
    "PRIOR_DEFAULTS",
    "SPARSITY_PRIORS",
    "BoundedUniform",
    "Huber",
    "StableOrderedLogistic",
    "aux_site_names",
    "distribution",
    "huber_log_normalizer",
    "huber_rho",
    "init_aux",
    "is_aux_site",
    "log_density",
    "sparsity_prior",
]

Array = jax.Array

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------
# Custom distributions
# ---------------------------------------------------------------------------


def huber_rho(u: Array, delta: Array) -> Array:
    """Huber's loss ``rho_delta(u)``: ``u^2/2`` for ``|u| <= delta``, else ``delta|u| - delta^2/2``.

    Written as ``m * (|u| - m/2)`` with ``m = min(|u|, delta)``: no ``where``
    branch, so gradients stay finite for ``delta = inf`` (the normal limit) and
    at the kink.
    """
    a = jnp.abs(u)
    m = jnp.minimum(a, delta)
    return m * (a - 0.5 * m)


def huber_log_normalizer(delta: Array) -> Array:
    """``log ∫ exp(-rho_delta(u)) du = log(sqrt(2π)(2Φ(δ)-1) + 2 exp(-δ²/2)/δ)``.

    The Gaussian core and the two exponential tails are combined with
    ``logaddexp`` so that neither tiny nor huge ``delta`` overflows.
    """
    delta = jnp.asarray(delta)
    core = _LOG_SQRT_2PI + jnp.log(erf(delta / math.sqrt(2.0)))
    tails = math.log(2.0) - 0.5 * delta**2 - jnp.log(delta)
    return jnp.logaddexp(core, tails)


class Huber(dist.Distribution):
    """Normalized Huber density of the standardized residual ``u = (y - loc)/scale``.

    ``p(y) = exp(-rho_delta(u)) / (scale * Z(delta))`` with ``delta`` in units of
    ``scale`` (GTSAM's Huber ``k``; 1.345 gives 95% efficiency at the normal).
    Inside ``|u| <= delta`` it has the normal's shape; outside, Laplace tails,
    which is what makes it robust to outliers. ``delta -> inf`` is the normal.
    """

    arg_constraints = {
        "loc": constraints.real,
        "scale": constraints.positive,
        "delta": constraints.positive,
    }
    support = constraints.real
    reparametrized_params = ["loc", "scale"]

    def __init__(
        self,
        loc: Array | float = 0.0,
        scale: Array | float = 1.0,
        delta: Array | float = 1.345,
        *,
        validate_args: bool | None = None,
    ) -> None:
        self.loc, self.scale, self.delta = promote_shapes(loc, scale, delta)
        batch_shape = jax.lax.broadcast_shapes(jnp.shape(loc), jnp.shape(scale), jnp.shape(delta))
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    @validate_sample
    def log_prob(self, value: Array) -> Array:
        u = (value - self.loc) / self.scale
        return -huber_rho(u, self.delta) - jnp.log(self.scale) - huber_log_normalizer(self.delta)

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        """Exact sampling: pick core or tail by their masses, then invert each part's CDF.

        Core: a standard normal truncated to ``[-delta, delta]``; tail:
        ``|u| = delta + Exponential(delta)`` with a random sign.
        """
        shape = sample_shape + self.batch_shape
        k_part, k_core, k_tail, k_sign = jax.random.split(key, 4)
        delta = jnp.broadcast_to(self.delta, shape)
        log_core = _LOG_SQRT_2PI + jnp.log(erf(delta / math.sqrt(2.0)))
        p_core = jnp.exp(log_core - huber_log_normalizer(delta))
        in_core = jax.random.uniform(k_part, shape) < p_core
        # Truncated normal by inverse CDF on [Φ(-δ), Φ(δ)].
        lo = ndtr(-delta)
        v = jax.random.uniform(k_core, shape, minval=0.0, maxval=1.0)
        core = ndtri(lo + v * (1.0 - 2.0 * lo))
        core = jnp.clip(core, -delta, delta)
        tail = delta + jax.random.exponential(k_tail, shape) / delta
        sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, shape), 1.0, -1.0)
        u = jnp.where(in_core, core, sign * tail)
        return self.loc + self.scale * u

    @property
    def mean(self) -> Array:
        return jnp.broadcast_to(self.loc, self.batch_shape)


class BoundedUniform(dist.Uniform):
    """``Uniform(low, high)`` whose log density is ``-inf`` outside ``[low, high]``.

    NumPyro's ``Uniform.log_prob`` returns ``-log(high - low)`` for any value;
    that is harmless for a constrained latent (it never leaves its support)
    but wrong when the bounds are learned from observations.
    """

    def log_prob(self, value: Array) -> Array:
        inside = (value >= self.low) & (value <= self.high)
        lp = -jnp.log(self.high - self.low)
        return jnp.where(inside, lp, -jnp.inf)


def _log1m_exp(x: Array) -> Array:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate near 0 and for very negative x."""
    return jnp.where(
        x > -math.log(2.0),
        jnp.log(-jnp.expm1(jnp.minimum(x, -1e-30))),
        jnp.log1p(-jnp.exp(jnp.minimum(x, -math.log(2.0)))),
    )


class StableOrderedLogistic(dist.OrderedLogistic):
    """Stan's ``ordered_logistic`` with 0-based outcomes ``y ∈ {0, ..., K}``.

    ``P(y = k) = σ(η - c_{k-1}) - σ(η - c_k)`` with ``c_{-1} = -∞``,
    ``c_K = +∞``. The log mass is computed in log space as
    ``log σ(a) + log(1 - exp(b - a)) + log σ(-b)`` (``a = η - c_{k-1}``,
    ``b = η - c_k``), which stays finite where the probability differences of
    NumPyro's implementation underflow.
    """

    @validate_sample
    def log_prob(self, value: Array) -> Array:
        cut = self.cutpoints
        eta = self.predictor
        k = cut.shape[-1]
        shape = jax.lax.broadcast_shapes(jnp.shape(value), self.batch_shape)
        y = jnp.broadcast_to(jnp.asarray(value).astype(jnp.int32), shape)
        eta = jnp.broadcast_to(eta, shape)
        cut = jnp.broadcast_to(cut, shape + (k,))
        pad_lo = jnp.full(shape + (1,), -jnp.inf, cut.dtype)
        pad_hi = jnp.full(shape + (1,), jnp.inf, cut.dtype)
        padded = jnp.concatenate([pad_lo, cut, pad_hi], axis=-1)  # c_{-1}, c_0..c_{K-1}, c_K
        y = jnp.clip(y, 0, k)
        c_lo = jnp.take_along_axis(padded, y[..., None], axis=-1)[..., 0]
        c_hi = jnp.take_along_axis(padded, y[..., None] + 1, axis=-1)[..., 0]
        a = eta - c_lo
        b = eta - c_hi
        return jax.nn.log_sigmoid(a) + _log1m_exp(c_lo - c_hi) + jax.nn.log_sigmoid(-b)


# ---------------------------------------------------------------------------
# distribution(name, args)
# ---------------------------------------------------------------------------


def _f(x: Array | float) -> Array:
    """Cast to the default float dtype, so that integer literals (``normal(0, 10)``) work."""
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _spike_slab(p: Array, slab_sd: Array, spike_sd: Array) -> dist.Distribution:
    """``p·N(0, slab_sd) + (1-p)·N(0, spike_sd)`` elementwise, as a ``MixtureSameFamily``."""
    p, slab_sd, spike_sd = (_f(v) for v in (p, slab_sd, spike_sd))
    shape = jax.lax.broadcast_shapes(jnp.shape(p), jnp.shape(slab_sd), jnp.shape(spike_sd))
    p = jnp.broadcast_to(p, shape)
    probs = jnp.stack([p, 1.0 - p], axis=-1)
    sds = jnp.stack([jnp.broadcast_to(slab_sd, shape), jnp.broadcast_to(spike_sd, shape)], axis=-1)
    return dist.MixtureSameFamily(dist.Categorical(probs=probs), dist.Normal(0.0, sds))


_Builder = Callable[..., dist.Distribution]

# name -> list of (parameter-name tuple, builder taking those args in order).
# Alternatives (``bernoulli(p)`` / ``bernoulli(logit)``) are separate entries.
_TABLE: dict[str, list[tuple[tuple[str, ...], _Builder]]] = {
    "normal": [(("mu", "sd"), lambda mu, sd: dist.Normal(_f(mu), _f(sd)))],
    "mvnormal": [
        (("mu", "cov"), lambda mu, cov: dist.MultivariateNormal(_f(mu), covariance_matrix=_f(cov))),
        (("mu", "prec"), lambda mu, prec: dist.MultivariateNormal(_f(mu), precision_matrix=_f(prec))),
        # Stan's multi_normal_cholesky: only the lower triangle of `chol` is read, as in Stan
        (("mu", "chol"), lambda mu, chol: dist.MultivariateNormal(_f(mu), scale_tril=jnp.tril(_f(chol)))),
    ],
    "student_t": [(("df", "mu", "sd"), lambda df, mu, sd: dist.StudentT(_f(df), _f(mu), _f(sd)))],
    "cauchy": [(("mu", "sd"), lambda mu, sd: dist.Cauchy(_f(mu), _f(sd)))],
    "laplace": [(("mu", "b"), lambda mu, b: dist.Laplace(_f(mu), _f(b)))],
    "half_normal": [(("sd",), lambda sd: dist.HalfNormal(_f(sd)))],
    "half_cauchy": [(("sd",), lambda sd: dist.HalfCauchy(_f(sd)))],
    "exponential": [(("rate",), lambda rate: dist.Exponential(_f(rate)))],
    "gamma": [(("shape", "rate"), lambda shape, rate: dist.Gamma(_f(shape), _f(rate)))],
    # NumPyro's InverseGamma "rate" is the scale beta of x^{-a-1} exp(-beta/x).
    "inv_gamma": [(("shape", "scale"), lambda shape, scale: dist.InverseGamma(_f(shape), _f(scale)))],
    "lognormal": [(("mu", "sd"), lambda mu, sd: dist.LogNormal(_f(mu), _f(sd)))],
    "beta": [(("a", "b"), lambda a, b: dist.Beta(_f(a), _f(b)))],
    "uniform": [(("lo", "hi"), lambda lo, hi: BoundedUniform(_f(lo), _f(hi)))],
    "dirichlet": [(("alpha",), lambda alpha: dist.Dirichlet(_f(alpha)))],
    "bernoulli": [
        (("p",), lambda p: dist.BernoulliProbs(_f(p))),
        (("logit",), lambda logit: dist.BernoulliLogits(_f(logit))),
    ],
    "binomial": [
        (("n", "p"), lambda n, p: dist.BinomialProbs(_f(p), total_count=jnp.asarray(n))),
        (("n", "logit"), lambda n, logit: dist.BinomialLogits(_f(logit), total_count=jnp.asarray(n))),
    ],
    "poisson": [(("rate",), lambda rate: dist.Poisson(_f(rate)))],
    # Stan's neg_binomial_2: mean mu, variance mu + mu^2/phi.
    "neg_binomial": [(("mu", "phi"), lambda mu, phi: dist.NegativeBinomial2(_f(mu), _f(phi)))],
    "categorical": [
        (("logits",), lambda logits: dist.CategoricalLogits(_f(logits))),
        (("p",), lambda p: dist.CategoricalProbs(_f(p))),
    ],
    "ordered_logistic": [(("eta", "cutpoints"), lambda eta, cutpoints: StableOrderedLogistic(_f(eta), _f(cutpoints)))],
    "huber": [(("mu", "sd", "delta"), lambda mu, sd, delta: Huber(_f(mu), _f(sd), _f(delta)))],
    # The one hierarchical-free sparsity prior with a closed-form density, so it can be
    # used in factors as well (``0 ~ spike_slab(...)`` on an expression).
    "spike_slab": [(("p", "slab_sd", "spike_sd"), _spike_slab)],
}
# Stan's further scalar distributions, in Stan's parametrizations (runtime/stan_distributions.py)
_TABLE.update(stan_distributions.TABLE)

# The matrix distributions (compiler/distributions.py's block of them). Wishart's
# NumPyro parameters are Stan's: concentration nu, scale matrix S (density
# proportional to |W|^((nu-K-1)/2) exp(-tr(S^-1 W)/2)); the inverse Wishart's
# |W|^(-(nu+K+1)/2) exp(-tr(S W^-1)/2), as Stan's inv_wishart.
_TABLE.update({
    "wishart": [(("nu", "S"), lambda nu, S: dist.Wishart(_f(nu), scale_matrix=_f(S)))],
    "inv_wishart": [(("nu", "S"), lambda nu, S: InverseWishart(_f(nu), _f(S)))],
})

# The LKJ priors take their dimension K from the value they are a density of
# (Stan's `L ~ lkj_corr_cholesky(eta)` has no K): built by `distribution` from
# its `value_shape`.
_SIZED: dict[str, Callable[[int, Array], dist.Distribution]] = {
    "lkj_corr_cholesky": lambda k, eta: LkjCholesky(k, _f(eta)),
    "lkj_corr": lambda k, eta: Lkj(k, _f(eta)),
}


#: Every name :func:`distribution` accepts.
DISTRIBUTIONS: tuple[str, ...] = tuple(_TABLE) + tuple(_SIZED)

#: name -> the accepted parameter-name sets (one per alternative parametrization),
#: for the compiler's checker and its error messages.
DISTRIBUTION_PARAMS: dict[str, tuple[tuple[str, ...], ...]] = {
    name: tuple(params for params, _ in alts) for name, alts in _TABLE.items()
}


def distribution(name: str, args: Mapping[str, Array | float],
                 value_shape: tuple[int, ...] | None = None) -> dist.Distribution:
    """The NumPyro distribution for a ``.fg`` ``name(args)``, by canonical parameter names.

    ``args`` must match exactly one of ``DISTRIBUTION_PARAMS[name]`` (e.g.
    ``bernoulli`` takes ``{"p"}`` or ``{"logit"}``); arrays are expected to be
    broadcast-compatible already. Unknown names or parameter sets raise
    ``ValueError`` listing what is accepted: the compiler checks first, this is
    a backstop that must not surface as a bare ``KeyError``. ``value_shape``:
    the shape of the value the density is of, which the LKJ priors read their
    dimension from (``[..., K, K]``); the other distributions ignore it.
    """
    if name in _SIZED:
        if value_shape is None or len(value_shape) < 2:
            raise ValueError(f"distribution '{name}' needs the [K, K] shape of its value")
        if set(args) != {"eta"}:
            raise ValueError(f"distribution '{name}' got parameters ({', '.join(sorted(args))}); expected {name}(eta)")
        return _SIZED[name](int(value_shape[-1]), args["eta"])
    alts = _TABLE.get(name)
    if alts is None:
        hint = ""
        if name in _HIERARCHICAL:
            hint = (
                f" '{name}' is a hierarchical sparsity prior with no closed-form density;"
                " use sparsity_prior() on a var."
            )
        raise ValueError(f"unknown distribution '{name}'.{hint} Known: {', '.join(sorted(DISTRIBUTIONS))}")
    given = set(args)
    for params, build in alts:
        if given == set(params):
            return build(*(args[p] for p in params))
    expected = " or ".join(f"{name}({', '.join(p)})" for p, _ in alts)
    raise ValueError(f"distribution '{name}' got parameters ({', '.join(sorted(given))}); expected {expected}")


def log_density(name: str, args: Mapping[str, Array | float], value: Array, kind: str = "logp") -> Array:
    """``logp(name(args), value)`` of a ``.fg`` model: the density ``~`` uses too;
    ``kind`` "lcdf" / "lccdf": log P(X <= value) / log P(X > value).
    The backends hand this to the compiler's JAX lowering (``bind(log_density=...)``)."""
    if kind == "logp":
        return distribution(name, args, jnp.shape(value)).log_prob(value)
    if name == "normal":  # in log space (log_ndtr): a far tail is a finite log, not log 0
        z = (value - args["mu"]) / args["sd"]
        return log_ndtr(z if kind == "lcdf" else -z)
    d = distribution(name, args)
    closed = stan_distributions.log_cdf(d, value, kind)
    if closed is not None:  # in log space: a far tail is a finite log
        return closed
    cdf = d.cdf(value)
    # clipped into [0, 1]: a CDF rounded a hair past 1 would give a NaN log1p
    cdf = jnp.clip(cdf, 0.0, 1.0)
    return jnp.log(cdf) if kind == "lcdf" else jnp.log1p(-cdf)


# ---------------------------------------------------------------------------
# Sparsity priors
# ---------------------------------------------------------------------------

# The sparsity priors are described once, in the compiler's table
# (fglang.compiler.distributions.SPARSITY); these are views of it.

#: Auxiliary-site suffix of each sparsity prior; site names are ``f"{site}{suffix}"``.
PRIOR_AUX: dict[str, tuple[str, ...]] = {name: p.aux for name, p in SPARSITY.items()}

#: Defaults for parameters a ``.fg`` user may omit.
PRIOR_DEFAULTS: dict[str, dict[str, float]] = {name: dict(p.defaults) for name, p in SPARSITY.items()}

_PRIOR_PARAMS: dict[str, tuple[str, ...]] = {name: p.params for name, p in SPARSITY.items()}

#: Names :func:`sparsity_prior` accepts.
SPARSITY_PRIORS: tuple[str, ...] = tuple(SPARSITY)

_HIERARCHICAL = tuple(name for name, p in SPARSITY.items() if p.hierarchical)


def aux_site_names(site: str, kind: str) -> tuple[str, ...]:
    """The auxiliary sample-site names that ``sparsity_prior(site, kind, ...)`` creates."""
    return tuple(site + s for s in PRIOR_AUX[kind])


def is_aux_site(name: str) -> bool:
    """Whether a site name is a sparsity prior's auxiliary site (to hide in summaries)."""
    return name.endswith(AUX_SUFFIXES)


def _prior_args(kind: str, args: Mapping[str, Array | float]) -> dict[str, Array]:
    if kind not in _PRIOR_PARAMS:
        raise ValueError(f"unknown sparsity prior '{kind}'. Known: {', '.join(SPARSITY_PRIORS)}")
    full = {**PRIOR_DEFAULTS[kind], **args}
    want = set(_PRIOR_PARAMS[kind])
    if set(full) != want:
        raise ValueError(
            f"sparsity prior '{kind}' got parameters ({', '.join(sorted(args))});"
            f" expected {kind}({', '.join(_PRIOR_PARAMS[kind])})"
        )
    return {k: _f(v) for k, v in full.items()}


def _scalar(kind: str, name: str, x: Array) -> Array:
    """Global hyper-parameters are one per var (SPEC §3); reject per-element values."""
    if jnp.size(x) != 1:
        raise ValueError(
            f"{kind}: '{name}' sets the var's single global scale and must be a scalar, got shape {jnp.shape(x)}"
        )
    return jnp.reshape(x, ())


def _iid(d: dist.Distribution, shape: tuple[int, ...]) -> dist.Distribution:
    """``d`` expanded to ``shape`` as one event, so no plate is needed around the site."""
    return d.expand(shape).to_event(len(shape))


def _reg_hs_scale(tau: Array, lam: Array, caux: Array, slab_scale: Array) -> Array:
    """``tau * lambda_tilde`` of the regularized horseshoe, ``lambda_tilde² = c²λ²/(c² + τ²λ²)``."""
    c2 = slab_scale**2 * caux
    lam2 = lam**2
    return tau * jnp.sqrt(c2 * lam2 / (c2 + tau**2 * lam2))


def sparsity_prior(
    site: str,
    kind: str,
    args: Mapping[str, Array | float],
    shape: tuple[int, ...],
) -> Array:
    """Sample a var of the given ``shape`` under a sparsity prior; call inside a NumPyro model.

    Returns the var's value. Hierarchical priors sample auxiliary sites named
    ``f"{site}{suffix}"`` (suffixes in ``PRIOR_AUX[kind]``) and register the
    value as ``numpyro.deterministic(site, value)``; priors with a closed-form
    density (``laplace``, ``spike_slab``) are a single sample site named
    ``site`` (a deterministic of the same name would clash), so either way the
    posterior holds the value under ``site``.

    Hierarchical priors are **non-centered** (value = standard normal ``z``
    times a scale built from the hyper-parameters): for sparsity priors most
    elements are prior-dominated and near zero, where the centered form is a
    funnel in (value, log scale) that NUTS cannot traverse. NUTS samples
    positive aux sites as logs, so a fixed scale argument is only a shift.

    Kinds and what an ``init`` value ``v`` of the var means (see :func:`init_aux`):

    * ``laplace(mu=0, b)``: site ``site ~ Laplace(mu, b)``. Init: the site is ``v``.
    * ``horseshoe(scale)``: ``__z ~ N(0,1)[shape]``, ``__local ~ HalfCauchy(1)[shape]``,
      ``__global ~ HalfCauchy(scale)`` (scalar); value ``z·local·global``.
      Init: ``global = scale`` (its prior median), ``local = max(1, |v|/global)``,
      ``z = v/(local·global)`` (so ``|z| <= 1``).
    * ``reg_horseshoe(scale, slab_scale, slab_df)``: Piironen & Vehtari (2017).
      Adds ``__caux ~ InvGamma(slab_df/2, slab_df/2)`` (scalar), ``c² = slab_scale²·caux``,
      ``λ̃² = c²λ²/(c² + τ²λ²)``; value ``z·τ·λ̃`` with ``τ = global``, ``λ = local``.
      Init: ``caux = 1``, ``global = scale``, ``local`` the λ whose ``τλ̃`` equals
      ``|v|`` clipped to ``[τλ̃(λ=1), 0.9c]``, ``z = v/(τλ̃)``.
    * ``spike_slab(p, slab_sd, spike_sd)``: site ``site`` with the marginal density
      ``p·N(0, slab_sd) + (1-p)·N(0, spike_sd)`` (the indicator is summed out, so
      NUTS sees a smooth density). Init: the site is ``v``.
    * ``ard(a=1e-3, b=1e-3)``: ``__precision ~ Gamma(a, b)[shape]`` (rate ``b``),
      ``__z ~ N(0,1)[shape]``; value ``z/sqrt(precision)``, i.e. ``value ~ N(0, 1/precision)``
      per element. Init: ``precision = min(a/b, 1/v²)``, ``z = v·sqrt(precision)``.
    """
    p = _prior_args(kind, args)
    shape = tuple(int(s) for s in shape)
    if kind == "laplace":
        b_mu = jnp.broadcast_shapes(jnp.shape(p["mu"]), jnp.shape(p["b"]), shape)
        if b_mu != shape:
            raise ValueError(f"laplace: parameters do not broadcast to the var's shape {shape}")
        return numpyro.sample(site, _iid(dist.Laplace(p["mu"], p["b"]), shape))
    if kind == "spike_slab":
        d = _spike_slab(p["p"], p["slab_sd"], p["spike_sd"])
        if jnp.broadcast_shapes(d.batch_shape, shape) != shape:
            raise ValueError(f"spike_slab: parameters do not broadcast to the var's shape {shape}")
        return numpyro.sample(site, _iid(d, shape))
    if kind == "horseshoe":
        scale = _scalar(kind, "scale", p["scale"])
        z = numpyro.sample(f"{site}__z", _iid(dist.Normal(0.0, 1.0), shape))
        local = numpyro.sample(f"{site}__local", _iid(dist.HalfCauchy(1.0), shape))
        glob = numpyro.sample(f"{site}__global", dist.HalfCauchy(scale))
        value = z * local * glob
    elif kind == "reg_horseshoe":
        scale = _scalar(kind, "scale", p["scale"])
        slab_scale = _scalar(kind, "slab_scale", p["slab_scale"])
        slab_df = _scalar(kind, "slab_df", p["slab_df"])
        z = numpyro.sample(f"{site}__z", _iid(dist.Normal(0.0, 1.0), shape))
        local = numpyro.sample(f"{site}__local", _iid(dist.HalfCauchy(1.0), shape))
        glob = numpyro.sample(f"{site}__global", dist.HalfCauchy(scale))
        caux = numpyro.sample(f"{site}__caux", dist.InverseGamma(0.5 * slab_df, 0.5 * slab_df))
        value = z * _reg_hs_scale(glob, local, caux, slab_scale)
    else:  # ard
        a = jnp.broadcast_to(p["a"], shape)
        b = jnp.broadcast_to(p["b"], shape)
        precision = numpyro.sample(f"{site}__precision", dist.Gamma(a, b).to_event(len(shape)))
        z = numpyro.sample(f"{site}__z", _iid(dist.Normal(0.0, 1.0), shape))
        value = z * jax.lax.rsqrt(precision)
    return numpyro.deterministic(site, value)


def init_aux(kind: str, args: Mapping[str, Array | float], value: Array | float) -> dict[str, Array]:
    """Initial values of a sparsity prior's aux sites that reproduce a requested var value.

    Returns ``{suffix: array}`` (site name ``f"{site}{suffix}"``), such that the
    value :func:`sparsity_prior` computes from them equals ``value`` (up to
    rounding). Scales are set at or near their prior medians and the rest is
    absorbed so that ``|z| <= 1`` where possible, which keeps the initial point
    in a region of high prior density (a bad start makes NUTS adaptation slow).
    For ``laplace`` and ``spike_slab`` there are no aux sites: ``{}``; the var's own
    site is initialized to ``value``. Per-kind rules are in :func:`sparsity_prior`.
    """
    p = _prior_args(kind, args)
    v = _f(value)
    if kind in ("laplace", "spike_slab"):
        return {}
    if kind == "horseshoe":
        glob = _scalar(kind, "scale", p["scale"])
        local = jnp.maximum(1.0, jnp.abs(v) / glob)
        z = v / (local * glob)
        return {"__z": z, "__local": local, "__global": glob}
    if kind == "reg_horseshoe":
        tau = _scalar(kind, "scale", p["scale"])
        slab_scale = _scalar(kind, "slab_scale", p["slab_scale"])
        caux = jnp.ones(())
        c = slab_scale * jnp.sqrt(caux)
        s1 = _reg_hs_scale(tau, jnp.ones(()), caux, slab_scale)
        t = jnp.maximum(s1, jnp.minimum(jnp.abs(v), 0.9 * c))
        # Invert t = τλc/sqrt(c² + τ²λ²) for λ (valid since t < c).
        local = t * c / (tau * jnp.sqrt(c**2 - t**2))
        local = jnp.where(t > s1, local, 1.0)
        z = v / _reg_hs_scale(tau, local, caux, slab_scale)
        return {"__z": z, "__local": local, "__global": tau, "__caux": caux}
    # ard
    prec0 = jnp.broadcast_to(p["a"] / p["b"], jnp.shape(v))
    precision = jnp.where(v * v * prec0 > 1.0, 1.0 / jnp.maximum(v * v, 1e-30), prec0)
    z = v * jnp.sqrt(precision)
    return {"__z": z, "__precision": precision}
