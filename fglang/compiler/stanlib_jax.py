"""The JAX meaning of Stan's math library built-ins (docs/language.md section 7).

Why a table of their own: a Stan user translating a posteriordb model
writes ``log1m_exp``, ``Phi``, ``log_mix`` or ``quad_form`` without
thinking, and each is a one-line JAX function here. Every entry takes the
evaluated arguments (JAX arrays) and is merged into ``lower_jax.UNARY``;
the shape rules live in ``builtins`` (elementwise, reducing, broadcast) and
``linalg`` (the rest). Each is written so that its gradient is finite where
Stan's is (``log1m_exp`` switches formula at ``-log 2``, ``log_mix`` is a
``logaddexp``), which the tests check against finite differences.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy import special as jsp


def _real(x):
    """As the default float type (an int argument of a real function)."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def log1m_exp(x):
    """``log(1 - exp(x))`` for ``x < 0``: ``log(-expm1(x))`` near 0, ``log1p(-exp(x))``
    below ``-log 2`` (Maechler's switch), each branch fed only values where it is
    finite so the unused branch puts no NaN into the gradient."""
    x = _real(x)
    near = x > -math.log(2.0)
    a = jnp.log(-jnp.expm1(jnp.where(near, x, -1.0)))
    b = jnp.log1p(-jnp.exp(jnp.where(near, -1.0, x)))
    return jnp.where(near, a, b)


def inv_phi(p):
    """Stan's ``inv_Phi``: the standard normal quantile."""
    return jsp.ndtri(_real(p))


def phi_approx(x):
    """Stan's ``Phi_approx``: ``inv_logit(0.07056 x^3 + 1.5976 x)``."""
    x = _real(x)
    return jax.nn.sigmoid(0.07056 * x**3 + 1.5976 * x)


def log_mix(theta, a, b=None):
    """Stan's ``log_mix``. Three arguments: ``log(theta exp(a) + (1 - theta) exp(b))``
    elementwise. Two: ``theta`` [K] mixing weights, ``a`` [K] (or [N, K], the sum of
    the N mixtures) component log densities: ``log_sum_exp(log(theta) + a)``."""
    theta, a = _real(theta), _real(a)
    if b is None:
        return jnp.sum(jsp.logsumexp(jnp.log(theta) + a, axis=-1))
    b = _real(b)
    return jnp.logaddexp(jnp.log(theta) + a, jnp.log1p(-theta) + b)


def lchoose(n, k):
    """``log C(n, k)`` for real ``n >= k >= 0`` (Stan's ``lchoose``)."""
    n, k = _real(n), _real(k)
    return jsp.gammaln(n + 1) - jsp.gammaln(k + 1) - jsp.gammaln(n - k + 1)


def lbeta(a, b):
    a, b = _real(a), _real(b)
    return jsp.gammaln(a) + jsp.gammaln(b) - jsp.gammaln(a + b)


def _hypot(a, b):
    a, b = _real(a), _real(b)
    return jnp.hypot(a, b)


def _pow(a, b):
    return jnp.power(_real(a), b)


def _cumulative_sum(x):
    return jnp.cumsum(x, axis=0)


def _squared_distance(a, b):
    return jnp.sum(jnp.square(_real(a) - b))


def _distance(a, b):
    return jnp.sqrt(_squared_distance(a, b))


def _quad_form(a, x):
    """``x' A x``: a scalar for a vector ``x``, ``[m, m]`` for ``x`` [n, m]."""
    return x @ a @ x if x.ndim == 1 else x.T @ a @ x


def _to_vector(x):
    """Stan's ``to_vector``: a matrix in column-major order (Stan's), a vector unchanged."""
    return jnp.ravel(x, order="F")


def _append_row(a, b):
    """Stacked by rows; a scalar is a one-element vector, and a vector beside a
    matrix is one row (Stan's row_vector)."""
    a, b = jnp.atleast_1d(a), jnp.atleast_1d(b)
    if a.ndim == 1 and b.ndim == 2:
        a = a[None, :]
    if b.ndim == 1 and a.ndim == 2:
        b = b[None, :]
    return jnp.concatenate(_promote(a, b), axis=0)


def _append_col(a, b):
    """Side by side; a vector is one column."""
    a = a[:, None] if a.ndim == 1 else a
    b = b[:, None] if b.ndim == 1 else b
    return jnp.concatenate(_promote(a, b), axis=1)


def _promote(a, b):
    t = jnp.result_type(a, b)
    return a.astype(t), b.astype(t)


def _mdivide_right(b, a):
    """``B A^-1`` (Stan's ``B / A``) as a solve: ``(A' \\ B')'``."""
    return jnp.linalg.solve(a.T, _real(b).T).T


STANLIB: dict[str, Callable] = {
    # elementwise, one argument
    "log1m": lambda x: jnp.log1p(-_real(x)),
    "log1m_exp": log1m_exp,
    "log1p_exp": lambda x: jax.nn.softplus(_real(x)),
    "log_inv_logit": lambda x: jax.nn.log_sigmoid(_real(x)),
    "log1m_inv_logit": lambda x: jax.nn.log_sigmoid(-_real(x)),
    "Phi": lambda x: jsp.ndtr(_real(x)),
    "Phi_approx": phi_approx,
    "inv_Phi": inv_phi,
    "erf": lambda x: jsp.erf(_real(x)),
    "erfc": lambda x: jsp.erfc(_real(x)),
    "fabs": lambda x: jnp.abs(_real(x)),
    "inv": lambda x: 1.0 / _real(x),
    "inv_sqrt": lambda x: jax.lax.rsqrt(_real(x)),
    "inv_square": lambda x: 1.0 / jnp.square(_real(x)),
    "cbrt": lambda x: jnp.cbrt(_real(x)),
    "exp2": lambda x: jnp.exp2(_real(x)),
    "log2": lambda x: jnp.log2(_real(x)),
    "log10": lambda x: jnp.log10(_real(x)),
    "sinh": lambda x: jnp.sinh(_real(x)),
    "cosh": lambda x: jnp.cosh(_real(x)),
    "asin": lambda x: jnp.arcsin(_real(x)),
    "acos": lambda x: jnp.arccos(_real(x)),
    "atan": lambda x: jnp.arctan(_real(x)),
    "asinh": lambda x: jnp.arcsinh(_real(x)),
    "acosh": lambda x: jnp.arccosh(_real(x)),
    "atanh": lambda x: jnp.arctanh(_real(x)),
    "digamma": lambda x: jsp.digamma(_real(x)),
    "tgamma": lambda x: jnp.exp(jsp.gammaln(_real(x))) * jsp.gammasgn(_real(x)),
    # elementwise, broadcasting two (log_mix: three) arguments
    "pow": _pow,
    "fmin": lambda a, b: jnp.fmin(_real(a), _real(b)),
    "fmax": lambda a, b: jnp.fmax(_real(a), _real(b)),
    "hypot": _hypot,
    "lbeta": lbeta,
    "lchoose": lchoose,
    "log_mix": log_mix,
    # array -> scalar
    "prod": lambda x: jnp.prod(x),
    "dot_self": lambda x: jnp.sum(jnp.square(_real(x))),
    # vectors and matrices (shape rules in fglang.compiler.linalg)
    "cumulative_sum": _cumulative_sum,
    "squared_distance": _squared_distance,
    "distance": _distance,
    "log_softmax": lambda x: jax.nn.log_softmax(_real(x), axis=-1),
    "quad_form": _quad_form,
    "diag_pre_multiply": lambda v, m: v[:, None] * m,
    "diag_post_multiply": lambda m, v: m * v[None, :],
    "append_row": _append_row,
    "append_col": _append_col,
    "to_vector": _to_vector,
    "reverse": lambda x: jnp.flip(x, axis=0),
    "tcrossprod": lambda a: a @ a.T,
    "crossprod": lambda a: a.T @ a,
    "mdivide_right": _mdivide_right,
}
