"""Bounds that read vars, data and lets (``real(lower=a)``, ``real(lower=L, upper=U)``
with arrays, Stan's ``offset=``/``multiplier=``), issue 20.

Oracles: for ``a ~ normal(0, 1); x: real(lower=a) ~ normal(0, 1)`` the joint
density is ``phi(a) phi(x) 1{x > a}`` (as in Stan, the prior is not
renormalized by the bound), so ``a``'s marginal is ``phi(a) (1 - Phi(a))`` and
``x``'s ``phi(x) Phi(x)``, whose moments scipy's quadrature gives; NUTS and VI
are compared with those, and ``map`` with scipy's optimum of the same
unconstrained density (``a = za``, ``x = a + exp(zx)``, log Jacobian ``zx``).
The unconstrained densities themselves are compared with closed forms through
NumPyro's potential energy. Errors are compared as the CLI prints them.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize as so
from scipy.integrate import quad
from scipy.stats import norm

import fglang
from fglang.errors import FgError

OUTSIDE = Path(__file__).resolve().parent / "outside"

TRUNC = """model trunc
var a: real ~ normal(0, 1)
var x: real(lower=a) ~ normal(0, 1)
"""


def _moments(density) -> tuple[float, float]:
    z = quad(density, -np.inf, np.inf)[0]
    m = quad(lambda t: t * density(t), -np.inf, np.inf)[0] / z
    v = quad(lambda t: (t - m) ** 2 * density(t), -np.inf, np.inf)[0] / z
    return m, float(np.sqrt(v))


# the exact marginals of TRUNC by quadrature
A_MOMENTS = _moments(lambda a: norm.pdf(a) * norm.sf(a))
X_MOMENTS = _moments(lambda x: norm.pdf(x) * norm.cdf(x))


def _potential(model: fglang.Model, z: dict[str, float], data: dict | None = None) -> float:
    from numpyro.infer.util import potential_energy

    fn, args = model.numpyro_model(data or {})
    with jax.enable_x64(True):
        return float(potential_energy(fn, (args,), {}, {k: jnp.asarray(v, jnp.float64) for k, v in z.items()}))


def test_the_unconstrained_density_has_the_bound_and_its_jacobian():
    model = fglang.compile(TRUNC)
    for za, zx in [(0.0, 0.0), (1.3, -0.4), (-2.0, 1.1)]:
        x = za + np.exp(zx)
        want = -(norm.logpdf(za) + norm.logpdf(x) + zx)
        assert _potential(model, {"a": za, "x": zx}) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("bounds, offset, multiplier", [("offset=1.5, multiplier=2", 1.5, 2.0),
                                                        ("multiplier=2", 0.0, 2.0), ("offset=1.5", 1.5, 1.0)])
def test_constant_offset_and_multiplier(bounds, offset, multiplier):
    """Stan's ``real<offset=1.5, multiplier=2>``: x = 1.5 + 2 u, the density of u
    with its log Jacobian log 2 per element; the constrained log density is x's.
    A constant evaluated to a Python number, and every density of such a var
    crashed with "'int' object has no attribute 'reshape'" (a fuzz finding)."""
    model = fglang.compile(f"model m\nvar v: real ~ normal(0, 1)\nvar x[3]: real({bounds}) ~ normal(v, 2)\n")
    u = np.array([0.3, -1.1, 0.8])
    x = offset + multiplier * u
    want = norm.logpdf(0.4) + norm.logpdf(x, 0.4, 2).sum()
    assert _potential(model, {"v": 0.4, "x": u}) == pytest.approx(-(want + 3 * np.log(multiplier)), rel=1e-12)
    assert model.log_density({"v": 0.4, "x": x}, {}) == pytest.approx(want, rel=1e-12)


def test_both_bounds_and_offset_multiplier_densities():
    src = ("model m\nvar tau: positive ~ exponential(1)\nvar lo: real ~ normal(0, 1)\n"
           "var x: real(lower=lo, upper=lo + tau) ~ normal(0, 1)\n"
           "var theta: real(offset=lo, multiplier=tau) ~ normal(lo, tau)\n")
    model = fglang.compile(src)
    zt, zl, zx, zth = 0.3, -0.5, 0.7, 1.2
    tau = np.exp(zt)
    s = 1 / (1 + np.exp(-zx))
    x = zl + tau * s
    theta = zl + tau * zth
    want = (-tau + zt + norm.logpdf(zl) + norm.logpdf(x) + np.log(tau * s * (1 - s))
            + norm.logpdf(theta, zl, tau) + np.log(tau))
    assert _potential(model, {"tau": zt, "lo": zl, "x": zx, "theta": zth}) == pytest.approx(-want, rel=1e-12)


def test_nuts_matches_the_exact_marginals():
    post = fglang.compile(TRUNC).fit({}, backend="mcmc", seed=1, chains=1, warmup=300, samples=2000)
    a, x = post.samples("a"), post.samples("x")
    assert np.all(x > a)
    for draws, (mean, sd) in ((a, A_MOMENTS), (x, X_MOMENTS)):
        assert draws.mean() == pytest.approx(mean, abs=0.08)  # about 3 Monte Carlo errors
        assert draws.std() == pytest.approx(sd, rel=0.08)


def test_map_is_the_mode_of_the_unconstrained_density():
    post = fglang.compile(TRUNC).fit({}, backend="map", draws=4000)
    assert post.attrs["path"] == "general" and post.attrs["converged"]

    def f(z):
        za, zx = z
        return -(norm.logpdf(za) + norm.logpdf(za + np.exp(zx)) + zx)

    ref = so.minimize(f, np.zeros(2), method="BFGS", options={"gtol": 1e-12})
    assert ref.x == pytest.approx([-np.sqrt(0.5), np.log(np.sqrt(2))], abs=1e-6)  # x (x - a) = 1, x = -a
    assert post.mean("a") == pytest.approx(ref.x[0], abs=1e-6)
    a, x = post.samples("a"), post.samples("x")
    assert np.all(x > a)
    zx = np.log(x - a)  # the Laplace draws are Gaussian in (za, zx) around the mode
    assert zx.mean() == pytest.approx(ref.x[1], abs=4 * zx.std() / np.sqrt(zx.size))


ARRAY = """model box
data N: int
data L[N]: real
data U[N]: real
var x[N]: real(lower=L, upper=U)
var y[N]: real(lower=L) ~ normal(U, 1)
"""


def test_elementwise_data_bounds():
    """x is flat on (L, U), so the unconstrained mode is the middle; y's is
    where its normal's gradient balances the log Jacobian: (y - L)(y - U) = 1."""
    lo, hi = np.array([-1.0, 0.0, 2.0]), np.array([1.0, 5.0, 2.5])
    post = fglang.compile(ARRAY).fit({"N": 3, "L": lo.tolist(), "U": hi.tolist()}, backend="map", draws=4000)
    assert post.attrs["converged"]
    x, y = post.samples("x"), post.samples("y")
    assert np.all((x > lo) & (x < hi)) and np.all(y > lo)
    # the Laplace draws are Gaussian in the unconstrained space, centred on its mode
    zx = np.log((x - lo) / (hi - x))
    zy = np.log(y - lo)
    want = np.log((hi - lo + np.sqrt((hi - lo) ** 2 + 4)) / 2)  # y - L = d with d^2 - (U - L) d - 1 = 0
    np.testing.assert_allclose(zx.mean(axis=0), 0.0, atol=4 * zx.std(axis=0).max() / np.sqrt(len(zx)))
    np.testing.assert_allclose(zy.mean(axis=0), want, atol=4 * zy.std(axis=0).max() / np.sqrt(len(zy)))


def _error(src: str, data: dict | None = None) -> str:
    model = None
    with pytest.raises(FgError) as info:
        model = fglang.compile(src, "m.fg")
        model.bind(data or {})
    del model
    return str(info.value)


def test_a_bound_that_reads_a_later_var_is_the_cycle_error():
    src = "model m\nvar x: real(lower=b) ~ normal(0, 1)\nvar b: real(upper=x) ~ normal(0, 1)\n"
    assert _error(src) == (
        "m.fg:2:19: the bounds of 'x' read var 'b', declared after 'x' (line 3): bounds are evaluated in "
        "declaration order and cannot form a cycle\n"
        "    var x: real(lower=b) ~ normal(0, 1)\n"
        "                      ^\n"
        "  hint: a var's bounds may read data, lets and the vars declared before it: declare 'b' first"
    )


def test_a_bound_that_reads_its_own_var():
    err = _error("model m\nvar x: real(lower=2 * x)\n")
    assert err.startswith("m.fg:2:23: the bounds of 'x' cannot read 'x' itself\n")


def test_shape_mismatch_is_located_at_check_and_at_bind():
    src = "model m\ndata L: real[3]\nvar y[4]: real(lower=L)\n"
    assert _error(src) == (
        "m.fg:3:22: the bound 'lower=' of 'y' has shape [3], which does not broadcast to the var's shape [4]\n"
        "    var y[4]: real(lower=L)\n"
        "                         ^\n"
        "  hint: a bound is a scalar or an array of the var's shape (one bound per element)"
    )
    src = "model m\ndata N: int\ndata L[N]: real\nvar y[4]: real(lower=L)\n"
    err = _error(src, {"N": 3, "L": [0.0, 1.0, 2.0]})
    assert err.startswith("m.fg:4:22: the bound 'lower=' of 'y' has shape [3] with the data in <data>, which "
                          "does not broadcast to the var's shape [4]\n")


def test_empty_data_bounds_are_a_located_data_error():
    err = _error(ARRAY, {"N": 2, "L": [0.0, 3.0], "U": [1.0, 2.0]})
    assert err.startswith("m.fg:5:22: the bounds of 'x' are empty with the data in <data>: lower=3 is not below "
                          "upper=2 at element [1]\n")


@pytest.mark.parametrize("src, message", [
    ("model m\ndata L: real\nvar k: int(lower=L)\n", "m.fg:3:8: an int var's bounds must be constant numbers"),
    ("model m\nvar a: real\nvar x: unit(lower=a)\n", "m.fg:3:8: 'unit' takes no bounds"),
    ("model m\nvar a: real\nvar x: real(lower=a > 0)\n",
     "m.fg:3:19: the bound 'lower=' of 'x' is a comparison; a bound is a number"),
    ("model m\ndata L[2]: real\ndata y: real(lower=L)\n", "m.fg:3:20: a type bound must be a constant number"),
    ("model m\ndata y: int(upper=K)\ndata K: int\n", "m.fg:2:19: a type bound must be a constant number"),
    ("model m\nvar mu: real\nvar x: real(lower=0, offset=mu)\n",
     "m.fg:3:8: offset= and multiplier= take a real var without lower= or upper= (as in Stan)"),
    ("model m\nvar a: real\nvar x: real(lower=a, upper=a)\n", "m.fg:3:8: empty bounds: lower=a is not below upper=a"),
    ("model m\nvar x: real(multiplier=-2)\n", "m.fg:2:24: multiplier= of 'x' must be positive, got -2"),
    ("model m\nvar a: real\nvar x: positive(lower=a)\n", "m.fg:3:23: positive(lower=...) needs a constant lower"),
])
def test_bound_mistakes_are_located(src, message):
    assert _error(src).startswith(message)


def test_gbp_refuses_naming_the_bound_and_the_backends():
    with pytest.raises(FgError) as info:
        fglang.compile(TRUNC, "m.fg").fit({}, backend="gbp")
    assert str(info.value).startswith("m.fg:3:19: gbp cannot run var 'x': its bound lower=a reads vars, data or lets")
    assert "use --backend vi, mcmc or map" in str(info.value)


def test_gbp_refuses_a_constant_offset_and_multiplier_saying_what_they_do():
    src = "model m\nvar v: real ~ normal(0, 1)\nvar x[3]: real(offset=1.5, multiplier=2) ~ normal(v, 2)\n"
    with pytest.raises(FgError) as info:
        fglang.compile(src, "m.fg").fit({}, backend="gbp")
    assert str(info.value).startswith("m.fg:3:23: gbp cannot run var 'x': its offset=1.5, multiplier=2 "
                                      "reparameterize it (gbp needs unconstrained real vars)\n")
    assert "hint: declare it plain real for gbp" in str(info.value)


def test_a_positive_prior_takes_a_bound_from_zero_to_a_var():
    src = "model m\nvar tau: positive ~ exponential(1)\nvar x: real(lower=0, upper=tau) ~ exponential(1)\n"
    model = fglang.compile(src)
    assert model.ir.variables["x"].domain.describe() == "real(lower=0, upper=tau)"
    zt, zx = 0.2, -0.3
    tau, s = np.exp(zt), 1 / (1 + np.exp(0.3))
    want = -tau + zt - tau * s + np.log(tau * s * (1 - s))
    assert _potential(model, {"tau": zt, "x": zx}) == pytest.approx(-want, rel=1e-12)


@pytest.mark.parametrize("decls", [
    "var tau: positive ~ exponential(1)\nvar x: real(lower=tau) ~ exponential(1)",
    "data L: real(lower=0)\nvar x: real(lower=L) ~ exponential(1)",
    "data L: positive\nvar x: real(lower=2 * L + 1) ~ gamma(2, 1)",
    "var a: real ~ normal(0, 1)\nvar x: real(lower=exp(a)) ~ exponential(1)",
    "var a: real ~ normal(0, 1)\nvar x: real(lower=a^2) ~ half_normal(1)",
    "var a: real ~ normal(0, 1)\nlet s = softplus(a) + 1\nvar x: real(lower=s) ~ exponential(1)",
    "var tau: positive ~ exponential(1)\nvar y: real(lower=tau) ~ normal(0, 1)\nvar x: real(lower=y) ~ exponential(1)",
    "var p: unit ~ beta(2, 2)\nvar x: real(lower=0, upper=p) ~ beta(2, 2)",
    "var x: real(lower=1) ~ exponential(1)",
    "var x: real(lower=pi) ~ exponential(1)",
    "var x: real(lower=0.2, upper=0.7) ~ beta(2, 2)",
])
def test_a_bound_the_types_prove_inside_the_support_is_accepted(decls):
    """A prior's support [0, inf) (or [0, 1]) holds a var whose bounds the
    types they read keep inside it: a positive var, data with lower=0, a
    constant >= 0, exp, softplus, squares, sums and products of those."""
    fglang.compile(f"model m\n{decls}\n", "m.fg")


@pytest.mark.parametrize("decls, message", [
    ("var a: real ~ normal(0, 1)\nvar x: real(lower=a) ~ exponential(1)",
     "m.fg:3:24: 'exponential' has support positive but 'x' is declared real(lower=a): its bound lower=a is not "
     "provably >= 0 ('a' is declared real)"),
    ("data L: real\nvar x: real(lower=L) ~ exponential(1)",
     "m.fg:3:24: 'exponential' has support positive but 'x' is declared real(lower=L): its bound lower=L is not "
     "provably >= 0 ('L' is declared real)"),
    ("var a: real ~ normal(0, 1)\nlet s = a + 1\nvar x: real(lower=s) ~ exponential(1)",
     "m.fg:4:24: 'exponential' has support positive but 'x' is declared real(lower=s): its bound lower=s is not "
     "provably >= 0 ('a' is declared real)"),
    ("var t: positive ~ exponential(1)\nvar b: positive ~ exponential(1)\nvar x: real(lower=t - b) ~ exponential(1)",
     "m.fg:4:28: 'exponential' has support positive but 'x' is declared real(lower=t - b): its bound lower=t - b "
     "is not provably >= 0\n"),
    ("var q: positive ~ exponential(1)\nvar x: real(lower=0, upper=q) ~ beta(2, 2)",
     "m.fg:3:33: 'beta' has support unit but 'x' is declared real(lower=0, upper=q): its bound upper=q is not "
     "provably <= 1 ('q' is declared positive)"),
    ("var a: real ~ normal(0, 1)\nvar x: real(lower=-1, upper=exp(a)) ~ exponential(1)",
     "m.fg:3:39: 'exponential' has support positive but 'x' is declared real(lower=-1, upper=exp(a)): its lower "
     "bound -1 is below 0"),
    ("var x: real(lower=0.2, upper=1.5) ~ beta(2, 2)",
     "m.fg:2:37: 'beta' has support unit but 'x' is declared real(lower=0.2, upper=1.5): its upper bound 1.5 is "
     "above 1"),
])
def test_a_bound_that_may_leave_the_support_is_a_located_error_with_a_hint(decls, message):
    text = _error(f"model m\n{decls}\n")
    assert text.startswith(message)
    assert "hint: declare 'x' with a type inside the distribution's support (a bound is inside when" in text


def test_a_var_bounded_by_a_positive_var_has_the_prior_and_jacobian_density():
    """x in [tau, inf) ~ exponential(1): x = tau + exp(zx), the density as
    written (not renormalized, as Stan's) plus both Jacobians."""
    src = "model m\nvar tau: positive ~ exponential(1)\nvar x: real(lower=tau) ~ exponential(1)\n"
    zt, zx = 0.3, -0.4
    tau = np.exp(zt)
    x = tau + np.exp(zx)
    assert _potential(fglang.compile(src), {"tau": zt, "x": zx}) == pytest.approx(-(-tau + zt - x + zx), rel=1e-12)


def test_constant_bounds_inside_the_support_have_the_prior_and_jacobian_density():
    """real(lower=1) ~ exponential(2) and real(lower=0.2, upper=0.7) ~ beta(2, 3):
    x = 1 + exp(z) and x = 0.2 + 0.5 sigmoid(z), the density as written plus the
    log Jacobian (scipy's beta for the second)."""
    from scipy.stats import beta

    z = 0.3
    x = 1 + np.exp(z)
    model = fglang.compile("model m\nvar x: real(lower=1) ~ exponential(2)\n")
    assert _potential(model, {"x": z}) == pytest.approx(-(np.log(2) - 2 * x + z), rel=1e-12)
    z = -0.4
    s = 1 / (1 + np.exp(-z))
    x = 0.2 + 0.5 * s
    model = fglang.compile("model m\nvar x: real(lower=0.2, upper=0.7) ~ beta(2, 3)\n")
    want = beta.logpdf(x, 2, 3) + np.log(0.5 * s * (1 - s))
    assert _potential(model, {"x": z}) == pytest.approx(-want, rel=1e-12)


GARCH = (OUTSIDE / "recurrences" / "garch11.fg").read_text()
GARCH_BOUNDED = GARCH.replace(
    "var beta1_raw: unit\nlet beta1 = (1 - alpha1) * beta1_raw\nfactor beta1_jacobian: potential log1p(-alpha1)\n",
    "var beta1: real(lower=0, upper=1 - alpha1)\n")


def test_garch_with_a_bound_of_a_var_is_the_hand_written_transform():
    """Stan's ``real<lower=0, upper=1-alpha1> beta1`` written as a bound has the
    unconstrained density of the hand-written unit var plus log Jacobian."""
    assert GARCH_BOUNDED != GARCH
    data = json.loads((OUTSIDE / "recurrences" / "garch11.data.json").read_text())
    z = {"mu": 4.9, "alpha0": 0.2, "alpha1": -0.3}
    hand = _potential(fglang.compile(GARCH), {**z, "beta1_raw": 0.4}, data)
    bounded = _potential(fglang.compile(GARCH_BOUNDED), {**z, "beta1": 0.4}, data)
    assert bounded == pytest.approx(hand, rel=1e-12)


@pytest.mark.heavy
def test_garch_with_bounds_matches_posteriordb():
    """NUTS on GARCH(1,1) with ``beta1: real(lower=0, upper=1 - alpha1)``
    against posteriordb's reference draws (means within 0.1 sd, sds within 20%)."""
    from test_outside_models import compare

    data = json.loads((OUTSIDE / "recurrences" / "garch11.data.json").read_text())
    ref = json.loads((OUTSIDE / "recurrences" / "garch11.reference.json").read_text())
    post = fglang.compile(GARCH_BOUNDED).fit(data, backend="mcmc", seed=0, chains=2, warmup=300, samples=600)
    for label, (err, ratio) in compare(post, ref).items():
        assert err < 0.1 and 0.8 < ratio < 1.2, (label, err, ratio)


TRUNC_AND_BOX = TRUNC + "data N: int\ndata L[N]: real\ndata U[N]: real\nvar b[N]: real(lower=L, upper=U)\n"


def test_vi_matches_the_exact_marginals_and_each_data_sets_bounds():
    """One VI program (fit_many) over two data sets: a and x match the exact
    marginals, and b lies in, and is centred on, its own data set's bounds (b is
    flat on (L, U)): the data-only bounds are read from each set's data."""
    sets = [{"N": 2, "L": [0.0, -3.0], "U": [1.0, -1.0]}, {"N": 2, "L": [10.0, 5.0], "U": [14.0, 5.5]}]
    posts = fglang.compile(TRUNC_AND_BOX).fit_many(sets, backend="vi", seed=0, steps=2000, draws=4000)
    for data, post in zip(sets, posts):
        a, x = post.samples("a"), post.samples("x")
        assert np.all(x > a)
        for draws, (mean, sd) in ((a, A_MOMENTS), (x, X_MOMENTS)):
            assert draws.mean() == pytest.approx(mean, abs=0.1)
            assert draws.std() == pytest.approx(sd, rel=0.15)
        lo, hi, b = np.array(data["L"]), np.array(data["U"]), post.samples("b")
        assert np.all((b > lo) & (b < hi))
        np.testing.assert_allclose(b.mean(axis=0), (lo + hi) / 2, atol=0.05 * np.max(hi - lo))


def test_an_init_outside_a_bound_of_vars_is_refused_and_one_inside_starts():
    model = fglang.compile(TRUNC)
    with pytest.raises(FgError) as info:
        model.fit({}, backend="map", init={"a": 1.0, "x": 0.5})
    assert str(info.value) == ("<data>: init for 'x' is outside the var's support: it must be > lower=a = 1 "
                               "(real(lower=a)), but holds 0.5")
    post = model.fit({}, backend="map", init={"a": 1.0, "x": 1.5})
    assert post.mean("a") == pytest.approx(-np.sqrt(0.5), abs=1e-6)


EIGHT = (OUTSIDE / "eight_schools_noncentered.fg").read_text()
EIGHT_AFFINE = """model eight_schools_affine
data J: int
data y[J]: real
data sigma[J]: positive
var mu: real ~ normal(0, 5)
var tau: positive ~ cauchy(0, 5)
var theta[J]: real(offset=mu, multiplier=tau) ~ normal(mu, tau)
factor obs[j in 0:J]: y[j] ~ normal(theta[j], sigma[j])
"""


def test_offset_multiplier_is_the_non_centered_parameterization():
    """Stan's ``offset=mu, multiplier=tau`` on the centered eight schools has,
    in its unconstrained space, the density of posteriordb's non-centered one."""
    data = json.loads((OUTSIDE / "eight_schools_noncentered.data.json").read_text())
    rng = np.random.default_rng(3)
    for _ in range(2):
        z = {"mu": float(rng.normal()), "tau": float(rng.normal())}
        raw = rng.normal(size=8)
        affine = _potential(fglang.compile(EIGHT_AFFINE), {**z, "theta": raw}, data)
        hand = _potential(fglang.compile(EIGHT), {**z, "theta_trans": raw}, data)
        assert affine == pytest.approx(hand, rel=1e-12)


def monte_carlo_errors(x: np.ndarray, ref_draws: int) -> tuple[float, float]:
    """(se of the mean / sd, relative se of the sd) of the comparison of draws
    ``x`` ([chain, draw]) with a reference of ``ref_draws`` independent draws:
    both samples' Monte Carlo errors. The sd's, by the delta method: ``var(s^2)
    = var((x - mean)^2) / ESS`` of the squares, and for the reference ``(kurtosis
    - 1) s^4 / n``, with the kurtosis of ``x`` (posteriordb keeps no draws here)."""
    from numpyro.diagnostics import effective_sample_size

    sq = (x - x.mean()) ** 2
    kurtosis = float(np.mean(sq ** 2) / np.mean(sq) ** 2)
    fit = 0.5 * float(sq.std()) / float(sq.mean()) / np.sqrt(float(effective_sample_size(sq)))
    ref = 0.5 * np.sqrt((kurtosis - 1) / ref_draws)
    mean = np.hypot(1 / np.sqrt(float(effective_sample_size(x))), 1 / np.sqrt(ref_draws))
    return float(mean), float(np.hypot(fit, ref))


@pytest.mark.heavy
def test_offset_multiplier_matches_posteriordb():
    """Within 4 Monte Carlo standard errors of posteriordb's means and sds, the
    errors computed from these draws and the reference's 10000. Why not a fixed
    0.8-1.2 on the sd ratio: tau's posterior has a Cauchy tail (kurtosis 8.4 over
    100000 draws, whose sd matches the reference's to 0.1%), so its sample sd is
    noisy and skewed. Over seeds 0-399 at 2 x 1000 draws the ratio had sd 0.046 and
    exceeded 1.2 in 0.75% of fits (max 1.25; a run once failed at 1.22), though
    never past 2.3 of its own computed errors at 4 x 2000 (seeds 0-199: ratio sd
    0.028; the 1.22 of seed 125 came with kurtosis 62 and a relative error of 0.24).
    Over seeds 0-149 the worst of the 20 checks was 3.8 errors; a reference tau sd
    15% off fails 87% of the seeds."""
    data = json.loads((OUTSIDE / "eight_schools_noncentered.data.json").read_text())
    ref = json.loads((OUTSIDE / "eight_schools_noncentered.reference.json").read_text())
    post = fglang.compile(EIGHT_AFFINE).fit(data, backend="mcmc", seed=0, chains=4, warmup=500, samples=2000)
    for label, r in ref["params"].items():
        name, _, idx = label.partition("[")
        x = np.asarray(post.draws[name], np.float64)
        x = x[:, :, int(idx[:-1])] if idx else x
        mean_se, sd_rel_se = monte_carlo_errors(x, ref["draws"])
        err, ratio = (x.mean() - r["mean"]) / r["sd"], x.std(ddof=1) / r["sd"]
        assert abs(err) < 4 * mean_se and abs(ratio - 1) < 4 * ratio * sd_rel_se, (label, err, mean_se, ratio,
                                                                                   sd_rel_se)


def test_crossed_bounds_of_vars_reject_the_draw():
    """Where a lower bound read from vars is not below the upper one, the
    density is -inf (as Stan rejects the draw); elsewhere the flat x on (a, b)
    contributes its log Jacobian log((b - a) s (1 - s))."""
    src = "model m\nvar a: real ~ normal(0, 1)\nvar b: real ~ normal(0, 1)\nvar x: real(lower=a, upper=b)\n"
    model = fglang.compile(src)
    assert _potential(model, {"a": 1.0, "b": 0.0, "x": 0.3}) == np.inf
    s = 1 / (1 + np.exp(-0.3))
    want = norm.logpdf(-1.0) + norm.logpdf(0.5) + np.log(1.5 * s * (1 - s))
    assert _potential(model, {"a": -1.0, "b": 0.5, "x": 0.3}) == pytest.approx(-want, rel=1e-12)


def test_data_bounds_read_earlier_scalar_data():
    """Stan's ``int<lower=1, upper=K> z[N]``: checked against the data's K."""
    src = "model m\ndata N: int\ndata K: int\ndata T: real\ndata z[N]: int(lower=1, upper=K)\n" \
          "data t[N]: positive(upper=T / 2)\n"
    model = fglang.compile(src, "m.fg")
    good = {"N": 3, "K": 2, "T": 4.0, "z": [1, 2, 2], "t": [0.5, 1.0, 2.0]}
    model.bind(good)
    for bad, message in [({"z": [1, 3, 2]}, "m.fg:5:1: data 'z' in <data> must be <= 2, but holds 3"),
                         ({"t": [0.5, 2.5, 1.0]}, "m.fg:6:1: data 't' in <data> must be <= 2, but holds 2.5"),
                         ({"t": [0.0, 1.0, 1.0]}, "m.fg:6:1: data 't' in <data> must be positive, but holds 0")]:
        with pytest.raises(FgError) as info:
            model.bind({**good, **bad})
        assert str(info.value).startswith(message + "\n")
