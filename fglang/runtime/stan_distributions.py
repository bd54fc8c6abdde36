"""Stan's scalar distributions beyond fglang's core table, in Stan's
parametrizations (docs/language.md section 8).

Why here and not in ``numpyro_distributions``: a posteriordb model
translated from Stan names ``weibull``, ``gumbel``, ``skew_normal`` or
``exp_mod_normal`` without thinking, and each must mean what it means in
Stan, which is not always NumPyro's order of arguments (``weibull(alpha,
sigma)`` is NumPyro's ``Weibull(sigma, alpha)``). ``TABLE`` is merged into
``numpyro_distributions._TABLE``, so VI, NUTS, map and ``logp`` read one
parametrization, which ``tests/test_stan_distributions.py`` checks against
SciPy.

NumPyro has no skew normal, exponentially modified normal, Rayleigh or
Fréchet; they are written here, each with an exact sampler (VI's start
draws from priors). Where the log CDF has a closed form it is a method
``log_cdf`` / ``log_ccdf`` in log space, which ``log_density`` prefers to
``log(cdf)``: a far tail stays a finite number.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax.scipy.special import gammaln, log_ndtr
from numpyro.distributions import constraints
from numpyro.distributions.util import promote_shapes, validate_sample

Array = jax.Array

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _f(x) -> Array:
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _log1m_exp(x: Array) -> Array:
    """``log(1 - exp(x))`` for ``x <= 0`` (each branch fed only where it is finite)."""
    near = x > -math.log(2.0)
    return jnp.where(near, jnp.log(-jnp.expm1(jnp.where(near, x, -1.0))),
                     jnp.log1p(-jnp.exp(jnp.where(near, -1.0, x))))


class _Scalar(dist.Distribution):
    """A scalar distribution of broadcast parameters ``names``."""

    names: tuple[str, ...] = ()

    def __init__(self, *params, validate_args: bool | None = None) -> None:
        values = promote_shapes(*(_f(p) for p in params))
        for n, v in zip(self.names, values, strict=True):
            setattr(self, n, v)
        batch = jax.lax.broadcast_shapes(*(jnp.shape(v) for v in values))
        super().__init__(batch_shape=batch, validate_args=validate_args)

    def _u(self, key: Array, sample_shape: tuple[int, ...]) -> Array:
        """Uniform draws in (0, 1) of the sample's shape, 0 and 1 excluded."""
        tiny = jnp.finfo(jnp.result_type(float)).tiny
        return jax.random.uniform(key, sample_shape + self.batch_shape, minval=tiny, maxval=1.0)


class SkewNormal(_Scalar):
    """Stan's ``skew_normal(xi, omega, alpha)``: ``2/omega phi(z) Phi(alpha z)``, ``z = (y - xi)/omega``."""

    names = ("xi", "omega", "alpha")
    arg_constraints = {"xi": constraints.real, "omega": constraints.positive, "alpha": constraints.real}
    support = constraints.real

    @validate_sample
    def log_prob(self, value: Array) -> Array:
        z = (value - self.xi) / self.omega
        return math.log(2.0) - _LOG_SQRT_2PI - 0.5 * z * z - jnp.log(self.omega) + log_ndtr(self.alpha * z)

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        """Azzalini's: ``delta |u0| + sqrt(1 - delta^2) u1``, ``delta = alpha / sqrt(1 + alpha^2)``."""
        k0, k1 = jax.random.split(key)
        shape = sample_shape + self.batch_shape
        delta = self.alpha / jnp.sqrt(1.0 + self.alpha**2)
        u0, u1 = jax.random.normal(k0, shape), jax.random.normal(k1, shape)
        return self.xi + self.omega * (delta * jnp.abs(u0) + jnp.sqrt(1.0 - delta**2) * u1)

    @property
    def mean(self) -> Array:
        delta = self.alpha / jnp.sqrt(1.0 + self.alpha**2)
        return jnp.broadcast_to(self.xi + self.omega * delta * math.sqrt(2.0 / math.pi), self.batch_shape)


class ExpModNormal(_Scalar):
    """Stan's ``exp_mod_normal(mu, sigma, lambda)``: a normal plus an exponential of rate ``lambda``."""

    names = ("mu", "sigma", "lam")
    arg_constraints = {"mu": constraints.real, "sigma": constraints.positive, "lam": constraints.positive}
    support = constraints.real

    def _tail(self, value: Array) -> tuple[Array, Array]:
        z = (value - self.mu) / self.sigma
        ls = self.lam * self.sigma
        return z, -self.lam * (value - self.mu) + 0.5 * ls * ls + log_ndtr(z - ls)

    @validate_sample
    def log_prob(self, value: Array) -> Array:
        _, tail = self._tail(value)
        return jnp.log(self.lam) + tail

    def log_cdf(self, value: Array) -> Array:
        z, tail = self._tail(value)  # F = Phi(z) - exp(tail)
        lz = log_ndtr(z)
        return lz + _log1m_exp(jnp.minimum(tail - lz, 0.0))

    def log_ccdf(self, value: Array) -> Array:
        z, tail = self._tail(value)
        return jnp.logaddexp(log_ndtr(-z), tail)

    def cdf(self, value: Array) -> Array:
        return jnp.exp(self.log_cdf(value))

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        k0, k1 = jax.random.split(key)
        shape = sample_shape + self.batch_shape
        return self.mu + self.sigma * jax.random.normal(k0, shape) + jax.random.exponential(k1, shape) / self.lam

    @property
    def mean(self) -> Array:
        return jnp.broadcast_to(self.mu + 1.0 / self.lam, self.batch_shape)


class Rayleigh(_Scalar):
    """Stan's ``rayleigh(sigma)``: ``y / sigma^2 exp(-y^2 / (2 sigma^2))`` on ``y >= 0``."""

    names = ("sigma",)
    arg_constraints = {"sigma": constraints.positive}
    support = constraints.positive

    @validate_sample
    def log_prob(self, value: Array) -> Array:
        return jnp.log(value) - 2.0 * jnp.log(self.sigma) - 0.5 * (value / self.sigma) ** 2

    def log_ccdf(self, value: Array) -> Array:
        return -0.5 * (value / self.sigma) ** 2

    def log_cdf(self, value: Array) -> Array:
        return _log1m_exp(self.log_ccdf(value))

    def cdf(self, value: Array) -> Array:
        return -jnp.expm1(self.log_ccdf(value))

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        return self.sigma * jnp.sqrt(-2.0 * jnp.log(self._u(key, sample_shape)))

    @property
    def mean(self) -> Array:
        return jnp.broadcast_to(self.sigma * math.sqrt(math.pi / 2.0), self.batch_shape)


class Frechet(_Scalar):
    """Stan's ``frechet(alpha, sigma)``: ``alpha/sigma (y/sigma)^(-1-alpha) exp(-(y/sigma)^-alpha)``."""

    names = ("alpha", "sigma")
    arg_constraints = {"alpha": constraints.positive, "sigma": constraints.positive}
    support = constraints.positive

    @validate_sample
    def log_prob(self, value: Array) -> Array:
        lr = jnp.log(value / self.sigma)
        return jnp.log(self.alpha) - jnp.log(self.sigma) - (1.0 + self.alpha) * lr - jnp.exp(-self.alpha * lr)

    def log_cdf(self, value: Array) -> Array:
        return -((value / self.sigma) ** -self.alpha)

    def log_ccdf(self, value: Array) -> Array:
        return _log1m_exp(self.log_cdf(value))

    def cdf(self, value: Array) -> Array:
        return jnp.exp(self.log_cdf(value))

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        return self.sigma * (-jnp.log(self._u(key, sample_shape))) ** (-1.0 / self.alpha)


class Weibull(dist.Weibull):
    """NumPyro's Weibull with Stan's log CDFs: ``log P(Y > y) = -(y/sigma)^alpha``."""

    def log_ccdf(self, value: Array) -> Array:
        return -((value / self.scale) ** self.concentration)

    def log_cdf(self, value: Array) -> Array:
        return _log1m_exp(self.log_ccdf(value))


class Logistic(dist.Logistic):
    def log_cdf(self, value: Array) -> Array:
        return jax.nn.log_sigmoid((value - self.loc) / self.scale)

    def log_ccdf(self, value: Array) -> Array:
        return jax.nn.log_sigmoid(-(value - self.loc) / self.scale)

    def cdf(self, value: Array) -> Array:
        return jax.nn.sigmoid((value - self.loc) / self.scale)


class Gumbel(dist.Gumbel):
    def log_cdf(self, value: Array) -> Array:
        return -jnp.exp(-(value - self.loc) / self.scale)

    def log_ccdf(self, value: Array) -> Array:
        return _log1m_exp(self.log_cdf(value))


class Pareto(dist.Pareto):
    """Stan's ``pareto(y_min, alpha)``; ``log P(Y > y) = alpha log(y_min / y)`` for ``y >= y_min``.
    The density is ``-inf`` below ``y_min`` (NumPyro's formula runs on there) and
    finite at ``y_min`` itself (NumPyro's validation masks it: its support is ``y > y_min``)."""

    def log_prob(self, value: Array) -> Array:
        y = jnp.maximum(value, self.scale)
        lp = jnp.log(self.alpha) + self.alpha * jnp.log(self.scale) - (self.alpha + 1.0) * jnp.log(y)
        return jnp.where(value < self.scale, -jnp.inf, lp)

    def log_ccdf(self, value: Array) -> Array:
        return jnp.where(value < self.scale, 0.0, self.alpha * jnp.log(self.scale / jnp.maximum(value, self.scale)))

    def log_cdf(self, value: Array) -> Array:
        return _log1m_exp(self.log_ccdf(value))

    def cdf(self, value: Array) -> Array:
        return -jnp.expm1(self.log_ccdf(value))


class BetaBinomial(dist.BetaBinomial):
    """NumPyro's, with the exact log mass ``log C(n, k) + lbeta(k + a, n - k + b) - lbeta(a, b)``
    (NumPyro's is an approximation, 1e-6 off)."""

    @validate_sample
    def log_prob(self, value: Array) -> Array:
        a, b, n = self.concentration1, self.concentration0, self.total_count
        k = jnp.asarray(value, dtype=jnp.result_type(a))
        return (gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
                + _lbeta(k + a, n - k + b) - _lbeta(a, b))


def _lbeta(a: Array, b: Array) -> Array:
    return gammaln(a) + gammaln(b) - gammaln(a + b)


class VonMises(dist.VonMises):
    """NumPyro's von Mises density on the whole line, as Stan's: a real var under it
    is unconstrained (NumPyro's circle would map it into [-pi, pi] through a
    transform whose Jacobian moves map's mode off ``mu``); a var on one turn is
    declared so, ``real(lower=-pi, upper=pi)``."""

    support = constraints.real


def _inv_gamma(shape: Array, scale: Array) -> dist.Distribution:
    return dist.InverseGamma(shape, scale)


_Builder = Callable[..., dist.Distribution]

#: name -> [(Stan's parameter names, builder taking them in that order)], as ``numpyro_distributions._TABLE``
TABLE: dict[str, list[tuple[tuple[str, ...], _Builder]]] = {
    "beta_binomial": [(("n", "a", "b"), lambda n, a, b: BetaBinomial(_f(a), _f(b), total_count=jnp.asarray(n)))],
    "chi_square": [(("nu",), lambda nu: dist.Chi2(_f(nu)))],
    "exp_mod_normal": [(("mu", "sigma", "lambda"), lambda mu, sigma, lam: ExpModNormal(mu, sigma, lam))],
    "frechet": [(("alpha", "sigma"), lambda alpha, sigma: Frechet(alpha, sigma))],
    "gumbel": [(("mu", "beta"), lambda mu, beta: Gumbel(_f(mu), _f(beta)))],
    # 1/y of a chi-square: an inverse gamma of shape nu/2, scale 1/2
    "inv_chi_square": [(("nu",), lambda nu: _inv_gamma(0.5 * _f(nu), 0.5))],
    "logistic": [(("mu", "sigma"), lambda mu, sigma: Logistic(_f(mu), _f(sigma)))],
    "pareto": [(("y_min", "alpha"), lambda y_min, alpha: Pareto(_f(y_min), _f(alpha)))],
    "rayleigh": [(("sigma",), lambda sigma: Rayleigh(sigma))],
    # an inverse gamma of shape nu/2, scale nu s^2 / 2
    "scaled_inv_chi_square": [(("nu", "s"), lambda nu, s: _inv_gamma(0.5 * _f(nu), 0.5 * _f(nu) * _f(s) ** 2))],
    "skew_normal": [(("xi", "omega", "alpha"), lambda xi, omega, alpha: SkewNormal(xi, omega, alpha))],
    "von_mises": [(("mu", "kappa"), lambda mu, kappa: VonMises(_f(mu), _f(kappa)))],
    # NumPyro's Weibull(scale, concentration) is Stan's weibull(alpha = concentration, sigma = scale)
    "weibull": [(("alpha", "sigma"), lambda alpha, sigma: Weibull(_f(sigma), _f(alpha)))],
}


def log_cdf(d: dist.Distribution, value: Array, kind: str) -> Array | None:
    """The closed-form ``log P(X <= x)`` (``kind`` "lcdf") or ``log P(X > x)`` ("lccdf")
    of one of these distributions, or None where it has none (then ``log(cdf)``)."""
    method = getattr(d, "log_cdf" if kind == "lcdf" else "log_ccdf", None)
    return None if method is None else method(value)
