"""Stan's math library built-ins (``log_mix``, ``log1m_exp``, ``Phi``, ``quad_form``,
...; fglang.compiler.stanlib_jax) against NumPy and SciPy, their algebra as
hypothesis properties, their gradients against finite differences, and
their use from a model: shapes, broadcasting, Stan's names, located errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, special, stats

import fglang
from fglang.compiler.stanlib_jax import STANLIB
from fglang.errors import FgError

X = np.array([-2.3, -0.4, 0.0, 0.7, 3.1])
P = np.array([0.01, 0.2, 0.5, 0.77, 0.999])
POS = np.array([0.05, 0.6, 1.0, 2.5, 40.0])
NEG = np.array([-40.0, -3.0, -0.7, -0.01, -1e-8])

# name -> (arguments, the reference)
ELEMENTWISE = {
    "log1m": ((P,), lambda p: np.log(1 - p)),
    "log1m_exp": ((NEG,), lambda x: np.log(-np.expm1(x))),
    "log1p_exp": ((X,), lambda x: np.logaddexp(0, x)),
    "log_inv_logit": ((X,), lambda x: np.log(special.expit(x))),
    "log1m_inv_logit": ((X,), lambda x: np.log(special.expit(-x))),
    "Phi": ((X,), stats.norm.cdf),
    "Phi_approx": ((X,), lambda x: special.expit(0.07056 * x**3 + 1.5976 * x)),
    "inv_Phi": ((P,), stats.norm.ppf),
    "erf": ((X,), special.erf),
    "erfc": ((X,), special.erfc),
    "fabs": ((X,), np.abs),
    "inv": ((POS,), lambda x: 1 / x),
    "inv_sqrt": ((POS,), lambda x: 1 / np.sqrt(x)),
    "inv_square": ((POS,), lambda x: 1 / x**2),
    "cbrt": ((X,), np.cbrt),
    "exp2": ((X,), np.exp2),
    "log2": ((POS,), np.log2),
    "log10": ((POS,), np.log10),
    "sinh": ((X,), np.sinh),
    "cosh": ((X,), np.cosh),
    "asin": ((2 * P - 1,), np.arcsin),
    "acos": ((2 * P - 1,), np.arccos),
    "atan": ((X,), np.arctan),
    "asinh": ((X,), np.arcsinh),
    "acosh": ((1 + POS,), np.arccosh),
    "atanh": ((2 * P - 1,), np.arctanh),
    "digamma": ((POS,), special.digamma),
    "tgamma": ((np.array([-2.5, -0.5, 0.3, 1.0, 6.5]),), special.gamma),
    "pow": ((POS, X), np.power),
    "fmin": ((X, np.array([0.1, np.nan, -1.0, 0.7, 5.0])), np.fmin),
    "fmax": ((X, np.array([0.1, np.nan, -1.0, 0.7, 5.0])), np.fmax),
    "hypot": ((X, POS), np.hypot),
    "lbeta": ((POS, POS[::-1]), lambda a, b: special.betaln(a, b)),
    "lchoose": ((np.array([5.0, 10, 3.5, 40, 7]), np.array([2.0, 0, 1.5, 17, 7])),
                lambda n, k: np.log(special.binom(n, k))),
    "log_mix": ((P, X, X[::-1]), lambda t, a, b: np.log(t * np.exp(a) + (1 - t) * np.exp(b))),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_equals_the_reference(name):
    args, ref = ELEMENTWISE[name]
    with jax.enable_x64(True):
        got = np.asarray(STANLIB[name](*(jnp.asarray(a) for a in args)))
    np.testing.assert_allclose(got, ref(*args), rtol=1e-9, atol=1e-12)


def test_log1m_exp_is_accurate_at_both_ends():
    """Where ``log(1 - exp(x))`` written plainly loses everything: -1e-20 and -800."""
    with jax.enable_x64(True):
        near, far = (float(STANLIB["log1m_exp"](jnp.asarray(x))) for x in (-1e-20, -800.0))
    assert near == pytest.approx(np.log(1e-20), rel=1e-12)
    assert far == pytest.approx(-np.exp(-800.0), rel=1e-12, abs=0)


A = np.array([[2.0, 0.3, -0.1], [0.3, 1.5, 0.2], [-0.1, 0.2, 1.1]])
B = np.array([[1.0, -2.0, 0.5], [0.3, 0.0, 4.0]])
V = np.array([0.5, -1.0, 2.0])

MATRIX = {
    "prod": ((V,), np.prod),
    "dot_self": ((V,), lambda v: v @ v),
    "cumulative_sum": ((V,), np.cumsum),
    "squared_distance": ((V, V[::-1]), lambda a, b: np.sum((a - b) ** 2)),
    "distance": ((V, V[::-1]), lambda a, b: np.linalg.norm(a - b)),
    "log_softmax": ((B,), lambda b: b - special.logsumexp(b, axis=-1, keepdims=True)),
    "log_mix": ((np.array([0.2, 0.3, 0.5]), B),
                lambda t, lp: np.sum(special.logsumexp(np.log(t) + lp, axis=-1))),
    "quad_form": ((A, V), lambda a, v: v @ a @ v),
    "diag_pre_multiply": ((V, A), lambda v, a: np.diag(v) @ a),
    "diag_post_multiply": ((B, V), lambda b, v: b @ np.diag(v)),
    "append_row": ((A, B), lambda a, b: np.vstack([a, b])),
    "append_col": ((A, V), lambda a, v: np.hstack([a, v[:, None]])),
    "to_vector": ((B,), lambda b: b.flatten(order="F")),
    "reverse": ((V,), lambda v: v[::-1]),
    "tcrossprod": ((B,), lambda b: b @ b.T),
    "crossprod": ((B,), lambda b: b.T @ b),
    "mdivide_right": ((B, A), lambda b, a: b @ np.linalg.inv(a)),
}


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_vector_and_matrix_functions_equal_numpys(name):
    args, ref = MATRIX[name]
    with jax.enable_x64(True):
        got = np.asarray(STANLIB[name](*(jnp.asarray(a) for a in args)))
    np.testing.assert_allclose(got, ref(*args), rtol=1e-10, atol=1e-12)


def test_quad_form_of_a_matrix_is_a_matrix():
    with jax.enable_x64(True):
        got = np.asarray(STANLIB["quad_form"](jnp.asarray(A), jnp.asarray(B.T)))
    np.testing.assert_allclose(got, B @ A @ B.T, rtol=1e-12)


def _g(name: str, *args) -> np.ndarray:
    """``name`` of NumPy arguments, as NumPy."""
    return np.asarray(STANLIB[name](*(jnp.asarray(a) for a in args)))


def _f(name: str, *args) -> float:
    return float(_g(name, *args))


reals = st.floats(-30, 30, allow_nan=False)
units = st.floats(1e-6, 1 - 1e-6)
positives = st.floats(1e-3, 50)


@settings(max_examples=60, deadline=None)
@given(t=units, a=reals, b=reals, x=reals, p=units, n=positives, k=st.floats(0, 1))
def test_algebra(t, a, b, x, p, n, k):
    """Identities each function must satisfy, at random points (float64)."""
    with jax.enable_x64(True):
        assert _f("log_mix", t, a, b) == pytest.approx(_f("log_mix", 1 - t, b, a), rel=1e-9, abs=1e-9)
        assert _f("log_mix", t, a, a) == pytest.approx(a, rel=1e-9, abs=1e-9)
        assert _f("log1p_exp", x) - _f("log1p_exp", -x) == pytest.approx(x, abs=1e-9)
        assert _f("log_inv_logit", x) - _f("log1m_inv_logit", x) == pytest.approx(x, abs=1e-9)
        assert np.exp(_f("log_inv_logit", x)) + np.exp(_f("log1m_inv_logit", x)) == pytest.approx(1.0, rel=1e-12)
        assert _f("Phi", _f("inv_Phi", p)) == pytest.approx(p, rel=1e-9)
        assert _f("log1m_exp", -abs(x) - 1e-3) == pytest.approx(np.log(-np.expm1(-abs(x) - 1e-3)), rel=1e-9)
        assert _f("lchoose", n, k * n) == pytest.approx(_f("lchoose", n, n - k * n), rel=1e-9, abs=1e-9)
        assert _f("lbeta", n, p) == pytest.approx(_f("lbeta", p, n), rel=1e-12)
        assert _f("hypot", a, b) ** 2 == pytest.approx(a * a + b * b, rel=1e-9, abs=1e-12)
        assert _f("cbrt", x) ** 3 == pytest.approx(x, rel=1e-9, abs=1e-12)
        assert _f("exp2", _f("log2", n)) == pytest.approx(n, rel=1e-12)
        assert _f("pow", n, x / 10) == pytest.approx(n ** (x / 10), rel=1e-12)
        assert _f("erf", x) + _f("erfc", x) == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=6, max_size=6), st.lists(st.floats(-5, 5), min_size=3, max_size=3))
def test_matrix_algebra(m, v):
    """``quad_form``, ``diag_*_multiply``, ``tcrossprod`` and ``mdivide_right`` as products."""
    M = np.asarray(m).reshape(2, 3)
    S = M.T @ M + np.eye(3)  # symmetric positive definite
    v = np.asarray(v)
    with jax.enable_x64(True):
        assert _g("quad_form", S, v) == pytest.approx(v @ S @ v, rel=1e-9, abs=1e-9)
        np.testing.assert_allclose(_g("diag_pre_multiply", v[:2], M), np.diag(v[:2]) @ M, atol=1e-12)
        np.testing.assert_allclose(_g("diag_post_multiply", M, v), M @ np.diag(v), atol=1e-12)
        np.testing.assert_allclose(_g("tcrossprod", M), M @ M.T, atol=1e-9)
        np.testing.assert_allclose(_g("mdivide_right", M, S) @ S, M, atol=1e-9)
        assert _g("dot_self", v) == pytest.approx(v @ v, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(_g("append_row", v, 1.5), np.append(v, 1.5))


def _fd(f, x: float, h: float = 1e-6) -> float:
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("name, at", [
    ("log1m_exp", [-1e-3, -0.5, -0.69, -0.7, -5.0, -30.0]),
    ("Phi", [-6.0, -1.0, 0.0, 0.4, 3.0]),
    ("inv_Phi", [1e-4, 0.1, 0.5, 0.8, 0.999]),
    ("log_mix", [0.01, 0.3, 0.5, 0.9]),
])
def test_gradients_equal_finite_differences(name, at):
    """``jax.grad`` through each, against a central difference (float64)."""
    with jax.enable_x64(True):
        if name == "log_mix":  # in theta, and in each component's log density
            g = STANLIB[name]
            for t in at:
                for i in range(3):
                    def f(z, i=i, t=t):
                        args = [t, -1.3, 0.4]
                        args[i] = z
                        return float(g(*(jnp.asarray(a) for a in args)))
                    x0 = [t, -1.3, 0.4][i]
                    grad = jax.grad(lambda z, i=i, t=t: g(*[z if j == i else jnp.asarray(v)
                                                            for j, v in enumerate([t, -1.3, 0.4])]))
                    assert float(grad(jnp.asarray(x0))) == pytest.approx(_fd(f, x0, 1e-7), rel=1e-6, abs=1e-8)
            return
        g = STANLIB[name]
        for x in at:
            h = min(1e-6, abs(x) * 1e-3, (1 - x) * 1e-3) if name == "inv_Phi" else 1e-6 * max(1.0, abs(x))
            if name == "log1m_exp":
                h = min(h, abs(x) * 1e-3)
            got = float(jax.grad(g)(jnp.asarray(x)))
            assert got == pytest.approx(_fd(lambda z: float(g(jnp.asarray(z))), x, h), rel=1e-6)
            assert np.isfinite(got)


def _value(body: str, data: dict | None = None, decls: str = "") -> float:
    """A constant expression's value, as the potential of a one-var model."""
    m = fglang.compile(f"model c\n{decls}var u: real ~ normal(0, 1)\nfactor f: potential {body}\n")
    return m.log_density({"u": 0.0}, data or {}) - stats.norm.logpdf(0.0)


def test_from_a_model_with_broadcasting_ints_and_stans_names():
    """Through the compiler: vectors broadcast against scalars, int data are
    read as reals, and Stan's names (``binomial_coefficient_log``,
    ``diag_matrix``, ``mdivide_left``, ``cholesky_decompose``) mean fglang's."""
    x = np.array([0.2, 0.5, 0.9])
    k = np.array([1, 2, 3])
    S = np.array([[2.0, 0.3], [0.3, 1.0]])
    body = ("sum(log_mix(x, -1.0, k)) + sum(pow(k, 2)) + sum(log1m(x)) + sum(Phi(x - 0.5))"
            " + binomial_coefficient_log(5, 2) + sum(diag_matrix(x)) + sum(mdivide_left(S, [1.0, 2.0]))"
            " + sum(cholesky_decompose(S)) + quad_form(S, [1.0, 2.0]) + sum(append_col(S, [3.0, 4.0]))"
            " + prod(k) + sum(to_vector(S)) + log_mix(softmax(x), log(x)) + fmax(2, 3) + sum(reverse(k))")
    decls = "data x[3]: real\ndata k[3]: int\ndata S[2, 2]: real\n"
    got = _value(body, {"x": x, "k": k, "S": S}, decls)
    ref = (np.sum(np.log(x * np.exp(-1.0) + (1 - x) * np.exp(k))) + np.sum(k**2.0) + np.sum(np.log1p(-x))
           + np.sum(stats.norm.cdf(x - 0.5)) + np.log(10) + np.sum(x) + np.sum(np.linalg.solve(S, [1, 2]))
           + np.sum(np.linalg.cholesky(S)) + np.array([1, 2]) @ S @ np.array([1, 2]) + np.sum(S) + 7 + 6
           + np.sum(S) + special.logsumexp(np.log(special.softmax(x)) + np.log(x)) + 3 + 6)
    assert got == pytest.approx(ref, rel=1e-9)


def test_gbp_and_map_differentiate_through_them():
    """A nonlinear Gaussian likelihood through ``log1p_exp``, ``Phi`` and ``atan``:
    GBP's relinearized fixed point and map's mode are the posterior mode, which
    SciPy finds from the same log posterior written in NumPy."""
    rng = np.random.default_rng(1)
    x = np.linspace(-1, 2, 12)
    y = x * np.logaddexp(0, 0.4) + rng.normal(0, 0.5, 12)
    src = ("model g\ndata N: int\ndata x[N]: real\ndata y[N]: real\nvar a: real ~ normal(0, 1)\n"
           "factor obs[n in 0:N]: y[n] ~ normal(x[n] * log1p_exp(a) + 0.3 * Phi(a) - 0.1 * atan(a), 0.5)\n")

    def neg(a):
        mean = x * np.logaddexp(0, a) + 0.3 * stats.norm.cdf(a) - 0.1 * np.arctan(a)
        return -(np.sum(stats.norm.logpdf(y, mean, 0.5)) + stats.norm.logpdf(a))

    mode = optimize.minimize_scalar(neg, bounds=(-3, 3), method="bounded", options={"xatol": 1e-10}).x
    m = fglang.compile(src)
    data = {"N": len(x), "x": x, "y": y}
    assert m.fit(data, "map").mean("a") == pytest.approx(mode, abs=1e-6)
    assert m.fit(data, "gbp").mean("a") == pytest.approx(mode, abs=1e-4)


@pytest.mark.parametrize("body, message", [
    ("log_mix(0.5, 1.0)", "'log_mix' needs a vector of mixing weights"),
    ("log_mix(1.0)", "'log_mix' takes 2 or 3 arguments, got 1"),
    ("pow(2.0)", "'pow' takes 2 arguments, got 1"),
    ("log1m_exp(1.0, 2.0)", "'log1m_exp' takes 1 argument, got 2"),
    ("quad_form(c, v3)", "shape mismatch in 'quad_form': A is 2 x 2 but x has 3 rows"),
    ("sum(diag_pre_multiply(v3, c))", "shape mismatch in 'diag_pre_multiply'"),
    ("sum(append_row(c, v3))", "shape mismatch in 'append_row': 2 and 3 columns"),
    ("squared_distance(v3, [1.0, 2.0])", "shape mismatch in 'squared_distance': 3 and 2 elements"),
    ("sum(mdivide_right(v3, c))", "'mdivide_right': B has 3 columns but A is 2 x 2"),
    ("sum(cumulative_sum(c))", "'cumulative_sum' needs a vector, got [2, 2]"),
    ("sum(pow(v3, [1.0, 2.0]))", "shape mismatch in 'pow'"),
    ("Phi(1.0, 2.0)", "'Phi' takes 1 argument, got 2"),
])
def test_misuse_is_a_located_error(body, message):
    src = ("model c\ndata c[2, 2]: real\ndata v3[3]: real\nvar u: real ~ normal(0, 1)\n"
           f"factor f: potential {body}\n")
    with pytest.raises(FgError) as err:
        fglang.compile(src, "c.fg")
    text = str(err.value)
    assert message in text and "c.fg:5:" in text and "^" in text, text


def test_sizes_only_the_data_fix_are_checked_when_bound():
    """``quad_form(S, x)`` with ``S`` [N, N] and ``x`` [M]: an error once N != M is known."""
    src = ("model q\ndata N: int\ndata M: int\ndata S[N, N]: real\ndata x[M]: real\n"
           "var u: real ~ normal(0, 1)\nfactor f: potential quad_form(S, x) + sum(append_row(x, x))\n")
    m = fglang.compile(src, "q.fg")
    ok = {"N": 2, "M": 2, "S": np.eye(2), "x": np.array([1.0, 2.0])}
    assert m.log_density({"u": 0.0}, ok) - stats.norm.logpdf(0.0) == pytest.approx(5.0 + 6.0)
    with pytest.raises(FgError) as err:
        m.log_density({"u": 0.0}, {**ok, "M": 3, "x": np.ones(3)})
    assert "quad_form" in str(err.value) and "q.fg:7:" in str(err.value), str(err.value)


def test_inverse_of_a_matrix_beside_the_group_inverse():
    """``inverse`` of a matrix is Stan's (indexed, it is read per member); of a group, the group's."""
    S = np.array([[2.0, 0.3], [0.3, 1.0]])
    src = ("model c\ndata S[2, 2]: real\nvar u: real[2] ~ normal(0, 1)\nvar g: pose2\n"
           "factor f[i in 0:2]: u[i] ~ normal(inverse(S)[i, 0] + sum(inverse(S)), 1)\n"
           "factor h: potential -1000 * sum(square(log(inverse(g)) + log(g)))\n")  # log(g^-1) = -log(g)
    got = fglang.compile(src).log_density({"u": np.zeros(2), "g": np.array([0.5, -0.2, 0.3])}, {"S": S})
    inv = np.linalg.inv(S)
    ref = 2 * stats.norm.logpdf(0.0) + np.sum(stats.norm.logpdf(0.0, inv[:, 0] + inv.sum(), 1))
    assert got == pytest.approx(ref, rel=1e-9)
    with pytest.raises(FgError) as err:
        fglang.compile("model c\ndata R[2, 3]: real\nvar u: real ~ normal(0, 1)\nfactor f: potential sum(inverse(R))\n",
                       "c.fg")
    assert "c.fg:4:33: 'inverse' needs a square matrix, got [2, 3]" in str(err.value), str(err.value)
    with pytest.raises(FgError) as err:
        fglang.compile("model c\ndata v[3]: real\nvar u: real ~ normal(0, 1)\nfactor f: potential sum(inverse(v))\n",
                       "c.fg")
    assert "c.fg:4:33: 'inverse' needs a square matrix or a rot2, rot3, pose2 or pose3 value" in str(err.value)


def test_a_fn_may_not_take_a_stan_function_name():
    with pytest.raises(FgError) as err:
        fglang.compile("model c\nfn diag_matrix(x: real) -> real { return x }\nvar u: real ~ normal(0, 1)\n", "c.fg")
    assert "'diag_matrix' is Stan's name for diag(v)" in str(err.value) and "c.fg:2:" in str(err.value)
