"""Tests of fglang's NumPyro distribution layer against scipy and hand-written formulas.

Every parametrization the compiler can emit is checked against an independent
reference (scipy.stats, or the formula in the SPEC), because a wrong
parametrization (rate vs scale, NB2 vs NB, 0- vs 1-based ordinal outcomes) is
silent: the model still fits, to the wrong answer.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import scipy.integrate as si
import scipy.special as sp
import scipy.stats as ss
from hypothesis import given, settings
from hypothesis import strategies as st
from numpyro import handlers
from numpyro.infer import Predictive
from numpyro.infer.util import log_density

from fglang.runtime.numpyro_distributions import (
    AUX_SUFFIXES,
    DISTRIBUTION_PARAMS,
    DISTRIBUTIONS,
    PRIOR_AUX,
    SPARSITY_PRIORS,
    Huber,
    aux_site_names,
    distribution,
    huber_log_normalizer,
    init_aux,
    is_aux_site,
    sparsity_prior,
)

FAST = settings(max_examples=10, deadline=None)
pos = st.floats(0.2, 5.0)
real = st.floats(-5.0, 5.0)
seeds = st.integers(0, 2**31 - 1)


@functools.cache
def _jitted_log_prob(name: str) -> Callable[[dict, jax.Array], jax.Array]:
    # One XLA compile per (name, shapes) instead of one per eager op: most of this
    # file's run time is compilation.
    return jax.jit(lambda args, value: distribution(name, args).log_prob(value))


def lp(name: str, value: object, **args: object) -> np.ndarray:
    """log_prob of ``name(args)`` at ``value``, as a float64 numpy value."""
    jargs = {k: jnp.asarray(v) for k, v in args.items()}
    return np.asarray(_jitted_log_prob(name)(jargs, jnp.asarray(value)), dtype=np.float64)


def close(actual: object, expected: object) -> None:
    """float32 evaluation vs float64 reference."""
    np.testing.assert_allclose(actual, expected, rtol=2e-4, atol=2e-4)


# --------------------------------------------------------------------------- continuous


@FAST
@given(mu=real, sd=pos, x=real)
def test_normal(mu: float, sd: float, x: float) -> None:
    close(lp("normal", x, mu=mu, sd=sd), ss.norm(mu, sd).logpdf(x))


@FAST
@given(df=st.floats(0.5, 30.0), mu=real, sd=pos, x=real)
def test_student_t(df: float, mu: float, sd: float, x: float) -> None:
    close(lp("student_t", x, df=df, mu=mu, sd=sd), ss.t(df, mu, sd).logpdf(x))


@FAST
@given(mu=real, sd=pos, x=real)
def test_cauchy(mu: float, sd: float, x: float) -> None:
    close(lp("cauchy", x, mu=mu, sd=sd), ss.cauchy(mu, sd).logpdf(x))


@FAST
@given(mu=real, b=pos, x=real)
def test_laplace(mu: float, b: float, x: float) -> None:
    close(lp("laplace", x, mu=mu, b=b), ss.laplace(mu, b).logpdf(x))


@FAST
@given(sd=pos, x=pos)
def test_half_normal(sd: float, x: float) -> None:
    close(lp("half_normal", x, sd=sd), ss.halfnorm(scale=sd).logpdf(x))


@FAST
@given(sd=pos, x=pos)
def test_half_cauchy(sd: float, x: float) -> None:
    close(lp("half_cauchy", x, sd=sd), ss.halfcauchy(scale=sd).logpdf(x))


@FAST
@given(rate=pos, x=pos)
def test_exponential(rate: float, x: float) -> None:
    close(lp("exponential", x, rate=rate), ss.expon(scale=1 / rate).logpdf(x))


@FAST
@given(shape=pos, rate=pos, x=pos)
def test_gamma_is_shape_rate(shape: float, rate: float, x: float) -> None:
    close(lp("gamma", x, shape=shape, rate=rate), ss.gamma(shape, scale=1 / rate).logpdf(x))


@FAST
@given(shape=pos, scale=pos, x=pos)
def test_inv_gamma_is_shape_scale(shape: float, scale: float, x: float) -> None:
    close(lp("inv_gamma", x, shape=shape, scale=scale), ss.invgamma(shape, scale=scale).logpdf(x))


@FAST
@given(mu=st.floats(-2, 2), sd=pos, x=pos)
def test_lognormal(mu: float, sd: float, x: float) -> None:
    close(lp("lognormal", x, mu=mu, sd=sd), ss.lognorm(sd, scale=math.exp(mu)).logpdf(x))


@FAST
@given(a=pos, b=pos, x=st.floats(0.01, 0.99))
def test_beta(a: float, b: float, x: float) -> None:
    close(lp("beta", x, a=a, b=b), ss.beta(a, b).logpdf(x))


@FAST
@given(lo=real, width=pos, t=st.floats(0.01, 0.99))
def test_uniform(lo: float, width: float, t: float) -> None:
    hi = lo + width
    x = lo + t * width
    close(lp("uniform", x, lo=lo, hi=hi), ss.uniform(lo, width).logpdf(x))


def test_uniform_is_minus_inf_outside_its_bounds() -> None:
    """NumPyro's Uniform ignores the value; learning a bound needs -inf outside."""
    out = lp("uniform", [-0.5, 0.5, 2.5], lo=0.0, hi=2.0)
    assert out[0] == -np.inf and out[2] == -np.inf
    close(out[1], -math.log(2.0))


@FAST
@given(seed=seeds)
def test_dirichlet(seed: int) -> None:
    k = 3
    rng = np.random.default_rng(seed)
    alpha = rng.uniform(0.5, 5.0, k)
    x = rng.dirichlet(alpha)
    x = x / x.sum()
    close(lp("dirichlet", x.astype(np.float32), alpha=alpha), ss.dirichlet(alpha).logpdf(x))


def _spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T + d * np.eye(d)


@FAST
@given(seed=seeds)
def test_mvnormal_cov_and_prec(seed: int) -> None:
    d = 3
    rng = np.random.default_rng(seed)
    mu, x, cov = rng.normal(size=d), rng.normal(size=d) * 2, _spd(rng, d)
    ref = ss.multivariate_normal(mu, cov).logpdf(x)
    close(lp("mvnormal", x, mu=mu, cov=cov), ref)
    close(lp("mvnormal", x, mu=mu, prec=np.linalg.inv(cov)), ref)


# --------------------------------------------------------------------------- discrete


@FAST
@given(p=st.floats(0.01, 0.99), y=st.integers(0, 1))
def test_bernoulli_p_and_logit(p: float, y: int) -> None:
    ref = ss.bernoulli(p).logpmf(y)
    close(lp("bernoulli", y, p=p), ref)
    close(lp("bernoulli", y, logit=sp.logit(p)), ref)


@FAST
@given(n=st.integers(0, 30), p=st.floats(0.01, 0.99), t=st.floats(0.0, 1.0))
def test_binomial_p_and_logit(n: int, p: float, t: float) -> None:
    y = round(t * n)
    ref = ss.binom(n, p).logpmf(y)
    close(lp("binomial", y, n=n, p=p), ref)
    close(lp("binomial", y, n=n, logit=sp.logit(p)), ref)


@FAST
@given(rate=st.floats(0.1, 50.0), y=st.integers(0, 100))
def test_poisson(rate: float, y: int) -> None:
    np.testing.assert_allclose(lp("poisson", y, rate=rate), ss.poisson(rate).logpmf(y), rtol=2e-4, atol=2e-3)


@FAST
@given(mu=st.floats(0.1, 50.0), phi=st.floats(0.1, 50.0), y=st.integers(0, 100))
def test_neg_binomial_is_stan_nb2(mu: float, phi: float, y: int) -> None:
    ref = ss.nbinom(n=phi, p=phi / (phi + mu)).logpmf(y)
    np.testing.assert_allclose(lp("neg_binomial", y, mu=mu, phi=phi), ref, rtol=2e-4, atol=2e-3)


def test_neg_binomial_moments() -> None:
    """mean mu, variance mu + mu^2/phi (Stan's neg_binomial_2)."""
    d = distribution("neg_binomial", {"mu": jnp.asarray(4.0), "phi": jnp.asarray(2.0)})
    close(d.mean, 4.0)
    close(d.variance, 4.0 + 16.0 / 2.0)


@FAST
@given(seed=seeds, y=st.integers(0, 3))
def test_categorical_logits_and_p(seed: int, y: int) -> None:
    k = 4
    logits = np.random.default_rng(seed).normal(size=k) * 2
    ref = logits[y] - sp.logsumexp(logits)
    close(lp("categorical", y, logits=logits), ref)
    close(lp("categorical", y, p=sp.softmax(logits)), ref)


def _ordered_logistic_ref(eta: float, cut: np.ndarray, y: int) -> float:
    """Stan's formula, 0-based: P(y=k) = σ(η - c_{k-1}) - σ(η - c_k), c_{-1}=-∞, c_K=+∞."""
    c = np.concatenate([[-np.inf], cut, [np.inf]])
    return math.log(sp.expit(eta - c[y]) - sp.expit(eta - c[y + 1]))


@FAST
@given(seed=seeds, eta=real, y=st.integers(0, 3))
def test_ordered_logistic(seed: int, eta: float, y: int) -> None:
    k = 3
    cut = np.sort(np.random.default_rng(seed).normal(size=k) * 2)
    close(lp("ordered_logistic", y, eta=eta, cutpoints=cut), _ordered_logistic_ref(eta, cut, y))


def test_ordered_logistic_sums_to_one_batched_and_stable() -> None:
    cut = jnp.asarray([-1.0, 0.5, 2.0])
    eta = jnp.asarray([-0.7, 0.0, 1.3])

    @jax.jit
    def logp(eta: jax.Array, y: jax.Array) -> jax.Array:
        return distribution("ordered_logistic", {"eta": eta, "cutpoints": cut}).log_prob(y)

    probs = jnp.exp(logp(eta, jnp.arange(4)[:, None]))  # (4 outcomes, 3 etas)
    close(probs.sum(0), np.ones(3))
    # Extreme predictors: exp underflows in float32, the log mass must not.
    out = np.asarray(logp(jnp.asarray([-100.0, 100.0]), jnp.asarray([3, 0])))
    np.testing.assert_allclose(out, [-102.0, -101.0], rtol=1e-4)


# --------------------------------------------------------------------------- huber


@pytest.mark.parametrize("delta", [0.1, 0.5, 1.345, 3.0, 10.0])
def test_huber_integrates_to_one(delta: float) -> None:
    density = jax.jit(lambda y: jnp.exp(Huber(0.7, 1.9, delta).log_prob(y)))
    kink = (0.7 - 1.9 * delta, 0.7 + 1.9 * delta)
    pieces = [(-np.inf, kink[0]), kink, (kink[1], np.inf)]
    total = sum(si.quad(lambda y: float(density(y)), a, b)[0] for a, b in pieces)
    assert abs(total - 1.0) < 1e-5


def test_huber_normalizer_formula() -> None:
    for delta in (0.3, 1.345, 4.0):
        z = math.sqrt(2 * math.pi) * (2 * ss.norm.cdf(delta) - 1) + 2 * math.exp(-(delta**2) / 2) / delta
        close(huber_log_normalizer(jnp.asarray(delta)), math.log(z))


@FAST
@given(mu=real, sd=pos, delta=st.floats(0.3, 4.0), t=st.floats(-1.0, 1.0))
def test_huber_is_normal_shaped_inside_delta_and_linear_outside(mu: float, sd: float, delta: float, t: float) -> None:
    h = distribution("huber", {"mu": jnp.asarray(mu), "sd": jnp.asarray(sd), "delta": jnp.asarray(delta)})
    at_mu = float(h.log_prob(jnp.asarray(mu)))
    u_in = t * delta
    close(float(h.log_prob(jnp.asarray(mu + sd * u_in))) - at_mu, -0.5 * u_in**2)
    u_out = delta * (1.5 + abs(t))
    close(float(h.log_prob(jnp.asarray(mu - sd * u_out))) - at_mu, -(delta * u_out - 0.5 * delta**2))


def test_huber_infinite_delta_is_normal_with_finite_gradients() -> None:
    h = Huber(0.3, 2.0, jnp.inf)
    ys = jnp.asarray([-3.0, 0.3, 5.0])
    close(h.log_prob(ys), ss.norm(0.3, 2.0).logpdf(np.asarray(ys)))
    grad = jax.jit(jax.grad(lambda m, d: Huber(m, 2.0, d).log_prob(jnp.asarray(0.3)), argnums=(0, 1)))
    # At the mode (the kink of |u|) both gradients are finite; in the normal limit
    # delta = inf is a constant, and the gradient in mu must stay finite.
    assert np.all(np.isfinite(np.asarray(grad(jnp.asarray(0.3), jnp.asarray(1.345)))))
    assert np.isfinite(np.asarray(grad(jnp.asarray(0.3), jnp.asarray(jnp.inf))[0]))


def test_huber_samples_match_density() -> None:
    delta = 1.345
    d = Huber(1.0, 2.0, delta)
    x = np.asarray(jax.jit(lambda key: d.sample(key, (100_000,)))(jax.random.PRNGKey(0)))
    density = jax.jit(lambda u: jnp.exp(Huber(0.0, 1.0, delta).log_prob(u)))
    pieces = [(-np.inf, -delta), (-delta, delta), (delta, np.inf)]
    var_u = sum(si.quad(lambda u: u * u * float(density(u)), a, b)[0] for a, b in pieces)
    assert abs(x.mean() - 1.0) < 0.03
    assert abs(x.var() / 4.0 - var_u) / var_u < 0.03


# --------------------------------------------------------------------------- names and errors


def test_every_name_and_parametrization_builds() -> None:
    assert set(DISTRIBUTIONS) >= {
        "normal", "mvnormal", "student_t", "cauchy", "laplace", "half_normal", "half_cauchy",
        "exponential", "gamma", "inv_gamma", "lognormal", "beta", "uniform", "dirichlet",
        "bernoulli", "binomial", "poisson", "neg_binomial", "categorical", "ordered_logistic", "huber",
    }  # fmt: skip
    special = {"cov": jnp.eye(2), "prec": jnp.eye(2), "alpha": jnp.ones(3), "logits": jnp.zeros(3),
               "cutpoints": jnp.asarray([-1.0, 1.0]), "n": jnp.asarray(5), "chol": jnp.eye(2),
               "S": jnp.eye(2)}  # fmt: skip
    for name, alts in DISTRIBUTION_PARAMS.items():
        for params in alts:
            args = {p: special.get(p, jnp.asarray(0.5)) for p in params}
            if name == "mvnormal":
                args["mu"] = jnp.zeros(2)
            if name == "categorical" and "p" in args:
                args["p"] = jnp.ones(3) / 3
            built: list[dist.Distribution] = []

            def build(args: dict, name: str = name, built: list = built) -> jax.Array:
                d = distribution(name, args)
                built.append(d)
                dtype = jnp.int32 if d.support.is_discrete else jnp.float32
                return d.log_prob(jnp.ones(d.batch_shape + d.event_shape, dtype))

            # Abstract evaluation: checks construction and log_prob shapes without compiling.
            out = jax.eval_shape(build, args)
            assert isinstance(built[0], dist.Distribution)
            assert out.shape == built[0].batch_shape


def test_unknown_name_and_wrong_params_raise_value_error() -> None:
    with pytest.raises(ValueError, match="Known: .*normal"):
        distribution("nromal", {"mu": jnp.asarray(0.0), "sd": jnp.asarray(1.0)})
    with pytest.raises(ValueError, match="sparsity_prior"):
        distribution("horseshoe", {"scale": jnp.asarray(1.0)})
    with pytest.raises(ValueError, match=r"bernoulli\(p\) or bernoulli\(logit\)"):
        distribution("bernoulli", {"p": jnp.asarray(0.5), "logit": jnp.asarray(0.0)})
    with pytest.raises(ValueError, match="unknown sparsity prior"):
        sparsity_prior("w", "lasso", {}, (3,))


def test_integer_arguments_are_accepted() -> None:
    close(lp("normal", 1.0, mu=0, sd=10), ss.norm(0, 10).logpdf(1.0))


# --------------------------------------------------------------------------- sparsity priors

PRIOR_ARGS: dict[str, dict[str, float]] = {
    "laplace": {"b": 0.5},
    "horseshoe": {"scale": 0.1},
    "reg_horseshoe": {"scale": 0.1, "slab_scale": 2.0, "slab_df": 4.0},
    "spike_slab": {"p": 0.2, "slab_sd": 1.0, "spike_sd": 0.01},
    "ard": {"a": 2.0, "b": 1.0},  # the 1e-3 defaults underflow float32 draws to precision 0
}


@jax.jit
def _site_log_prob(fn: dist.Distribution, value: jax.Array) -> jax.Array:
    # Distributions are pytrees: one compile per family and shape, not one per eager op.
    return fn.log_prob(value).sum()


def _trace(
    kind: str, shape: tuple[int, ...], args: dict | None = None, seed: int = 0, sample: bool = True
) -> tuple[dict[str, dict], np.ndarray]:
    """Run the prior once; returns ``{site: {"type", "value", "log_prob"}}`` and the var's value.

    With ``sample=False`` every sample site is set to a fixed random value in
    (0.2, 2) instead of drawn: the site structure and the value's formula are the
    same, and it skips compiling NumPyro's samplers for each shape (the gamma
    sampler alone costs seconds), which keeps this file fast.
    """
    args = PRIOR_ARGS[kind] if args is None else args

    def model() -> jax.Array:
        return sparsity_prior("w", kind, {k: jnp.asarray(v) for k, v in args.items()}, shape)

    run = handlers.seed(model, seed)
    if not sample:
        rng = np.random.default_rng(seed)

        def fixed(site: dict) -> jax.Array | None:
            if site["type"] != "sample":
                return None
            return jnp.asarray(rng.uniform(0.2, 2.0, site["fn"].shape()), dtype=jnp.float32)

        run = handlers.substitute(run, substitute_fn=fixed)
    tr = handlers.trace(run).get_trace()
    sites = {
        n: {
            "type": site["type"],
            "value": np.asarray(site["value"]),
            "log_prob": _site_log_prob(site["fn"], site["value"]) if site["type"] == "sample" else None,
        }
        for n, site in tr.items()
    }
    return sites, sites["w"]["value"]


@pytest.mark.parametrize("kind", SPARSITY_PRIORS)
@pytest.mark.parametrize("shape", [(), (3, 2)])
def test_sparsity_prior_sites_and_shapes(kind: str, shape: tuple[int, ...]) -> None:
    tr, value = _trace(kind, shape, sample=False)
    assert value.shape == shape
    aux = set(aux_site_names("w", kind))
    samples = {n for n, s in tr.items() if s["type"] == "sample"}
    if PRIOR_AUX[kind]:
        assert samples == aux
        assert tr["w"]["type"] == "deterministic"
    else:
        assert samples == {"w"}
    assert tr["w"]["value"].shape == shape
    for name in aux:
        assert is_aux_site(name) and name.removeprefix("w") in AUX_SUFFIXES
        expect = () if name.endswith(("__global", "__caux")) else shape
        assert tr[name]["value"].shape == expect
    assert not is_aux_site("w")
    assert all(np.isfinite(float(site["log_prob"])) for site in tr.values() if site["type"] == "sample")


def test_hierarchical_values_follow_their_formulas() -> None:
    tr, v = _trace("horseshoe", (3, 2), sample=False)
    close(v, tr["w__z"]["value"] * tr["w__local"]["value"] * tr["w__global"]["value"])

    tr, v = _trace("reg_horseshoe", (3, 2), sample=False)
    z, lam, tau, caux = (tr[f"w__{s}"]["value"] for s in ("z", "local", "global", "caux"))
    c2 = 2.0**2 * caux
    close(v, z * tau * np.sqrt(c2 * lam**2 / (c2 + tau**2 * lam**2)))
    assert np.all(np.abs(v) <= np.sqrt(c2) * np.abs(z) * (1 + 1e-5))
    # caux ~ InvGamma(slab_df/2, slab_df/2) with slab_df = 4.
    close(tr["w__caux"]["log_prob"], ss.invgamma(2.0, scale=2.0).logpdf(caux))
    close(tr["w__global"]["log_prob"], ss.halfcauchy(scale=0.1).logpdf(tau))

    tr, v = _trace("ard", (3, 2), sample=False)
    close(v, tr["w__z"]["value"] / np.sqrt(tr["w__precision"]["value"]))


@pytest.mark.parametrize("kind", SPARSITY_PRIORS)
def test_sparsity_prior_can_be_sampled(kind: str) -> None:
    """Prior-predictive draws work for every kind and land on the var's shape."""
    tr, value = _trace(kind, (3, 2), seed=1)
    assert value.shape == (3, 2) and np.all(np.isfinite(value))
    assert all(np.isfinite(float(site["log_prob"])) for site in tr.values() if site["type"] == "sample")


def test_horseshoe_prior_scale_is_linear_in_scale() -> None:
    """Median |w| of the prior predictive is proportional to ``scale`` (global shrinkage)."""

    def model(scale: jax.Array) -> None:
        sparsity_prior("w", "horseshoe", {"scale": scale}, (5,))

    # One compile for both scales: the scale is a traced argument.
    predict = jax.jit(lambda key, scale: Predictive(model, num_samples=4000)(key, scale)["w"])
    medians = {}
    for scale in (0.1, 1.0):
        draws = predict(jax.random.PRNGKey(int(scale * 10)), jnp.asarray(scale))
        medians[scale] = float(np.median(np.abs(np.asarray(draws))))
    rng = np.random.default_rng(0)
    n = 400_000
    ref = np.median(np.abs(rng.normal(size=n) * np.abs(rng.standard_cauchy(n)) * np.abs(rng.standard_cauchy(n))))
    assert abs(medians[1.0] / ref - 1) < 0.1
    assert abs(medians[0.1] / (0.1 * ref) - 1) < 0.1


@FAST
@given(seed=seeds, p=st.floats(0.05, 0.95), slab=st.floats(0.5, 3.0), spike=st.floats(0.01, 0.2))
def test_spike_slab_density_is_the_mixture(seed: int, p: float, slab: float, spike: float) -> None:
    x = np.random.default_rng(seed).normal(size=4) * 0.5
    ref = np.logaddexp(np.log(p) + ss.norm(0, slab).logpdf(x), np.log1p(-p) + ss.norm(0, spike).logpdf(x))
    close(lp("spike_slab", x, p=p, slab_sd=slab, spike_sd=spike), ref)

    args = {"p": jnp.asarray(p), "slab_sd": jnp.asarray(slab), "spike_sd": jnp.asarray(spike)}
    close(_spike_slab_site_log_prob(args, jnp.asarray(x, dtype=jnp.float32)), ref.sum())


@jax.jit
def _spike_slab_site_log_prob(args: dict, x: jax.Array) -> jax.Array:
    """The log density NumPyro sees at the var's site when the var equals ``x``."""

    def model() -> jax.Array:
        return sparsity_prior("w", "spike_slab", args, x.shape)

    tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), {"w": x})).get_trace()
    return tr["w"]["fn"].log_prob(tr["w"]["value"])


@pytest.mark.parametrize("kind", ["horseshoe", "reg_horseshoe", "ard"])
@FAST
@given(seed=seeds, big=st.floats(0.0, 50.0))
def test_init_aux_round_trips(kind: str, seed: int, big: float) -> None:
    rng = np.random.default_rng(seed)
    want = np.concatenate([[0.0, big, -big], rng.normal(size=3) * rng.choice([1e-3, 0.1, 3.0])])
    args = {k: jnp.asarray(v) for k, v in PRIOR_ARGS[kind].items()}
    inits = init_aux(kind, args, jnp.asarray(want))
    assert set(inits) == set(PRIOR_AUX[kind])
    sites = {f"w{s}": v for s, v in inits.items()}

    def model() -> jax.Array:
        return sparsity_prior("w", kind, args, want.shape)

    got = handlers.substitute(handlers.seed(model, 0), sites)()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if kind != "reg_horseshoe":
        assert np.all(np.abs(np.asarray(inits["__z"])) <= 1 + 1e-6)
    for s, val in inits.items():
        if s != "__z":
            assert np.all(np.asarray(val) > 0)


def test_init_aux_is_a_valid_nuts_start() -> None:
    """The aux inits give a finite potential energy, so NUTS can start there."""
    want = jnp.asarray([0.0, 0.05, -2.0, 8.0])
    args = {k: jnp.asarray(v) for k, v in PRIOR_ARGS["reg_horseshoe"].items()}

    def model() -> None:
        sparsity_prior("w", "reg_horseshoe", args, (4,))

    values = {f"w{s}": v for s, v in init_aux("reg_horseshoe", args, want).items()}
    log_joint, _ = log_density(model, (), {}, values)
    assert np.isfinite(float(log_joint))
    assert init_aux("laplace", {"b": jnp.asarray(1.0)}, want) == {}
    assert init_aux("spike_slab", {k: jnp.asarray(v) for k, v in PRIOR_ARGS["spike_slab"].items()}, want) == {}


def test_non_scalar_global_scale_is_rejected() -> None:
    with pytest.raises(ValueError, match="scalar"):
        _trace("horseshoe", (3,), {"scale": np.ones(3)})


def test_ard_defaults_and_prior_args_broadcast() -> None:
    def model() -> jax.Array:
        return sparsity_prior("w", "ard", {}, (3,))

    fixed = {"w__precision": jnp.ones(3), "w__z": jnp.ones(3)}  # no sampling: skip the gamma sampler
    tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), fixed)).get_trace()
    close(tr["w__precision"]["fn"].base_dist.concentration, np.full(3, 1e-3))
    _, v = _trace(
        "spike_slab", (2, 3), {"p": np.asarray([0.1, 0.5, 0.9]), "slab_sd": 1.0, "spike_sd": 0.01}, sample=False
    )
    assert v.shape == (2, 3)
