"""The NumPyro backends (``vi``, ``mcmc``) against oracles.

* conjugate models, whose posteriors are known exactly, for VI and NUTS;
* the SPEC's eight schools (reference values, divergences, the ``let``);
* the SPEC's sparse regression under every sparsity prior;
* the lowered model's log density against hand-written NumPyro models of
  every SPEC model these backends accept;
* posterior files (round trip, ArviZ, atomic writes) and ``init=``.

Sample sizes are modest (the suite runs on 2 cores); the long runs are
marked ``slow``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.optimize as so
import scipy.special as sp
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st
from numpy.polynomial.hermite_e import hermegauss
from numpyro.distributions import constraints
from numpyro.infer.util import log_density, potential_energy

import fglang
from fglang.errors import FgError
from fglang.runtime.posterior import load_posterior, rank_diagnostics

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# ---------------------------------------------------------------- conjugate models
NORMAL_NORMAL = """
model normal_normal
data N: int
data y[N]: real
data s: positive
var mu: real ~ normal(1, 2)
factor obs[i in 0:N]: y[i] ~ normal(mu, s)
"""

BETA_BINOMIAL = """
model beta_binomial
data n: int
data k: int
var p: unit ~ beta(2, 3)
factor obs: k ~ binomial(n, p=p)
"""

GAMMA_POISSON = """
model gamma_poisson
data N: int
data y[N]: int
var lam: positive ~ gamma(3, 0.5)
factor obs[i in 0:N]: y[i] ~ poisson(lam)
"""

_rng = np.random.default_rng(20240601)
_Y_NORMAL = _rng.normal(2.5, 1.5, size=15)
_Y_POISSON = _rng.poisson(4.0, size=20)


def _normal_normal():
    n, s, m0, s0 = len(_Y_NORMAL), 1.5, 1.0, 2.0
    prec = 1 / s0**2 + n / s**2
    mean = (m0 / s0**2 + _Y_NORMAL.sum() / s**2) / prec
    return {"N": n, "y": _Y_NORMAL.tolist(), "s": s}, mean, prec**-0.5


def _beta_binomial():
    n, k = 40, 13
    a, b = 2 + k, 3 + n - k
    return {"n": n, "k": k}, a / (a + b), np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))


def _gamma_poisson():
    a, b = 3 + _Y_POISSON.sum(), 0.5 + len(_Y_POISSON)
    return {"N": len(_Y_POISSON), "y": _Y_POISSON.tolist()}, a / b, np.sqrt(a) / b


# name: (source, var, data + exact posterior mean and sd,
#        unnormalized log posterior of the unconstrained u incl. the Jacobian, u -> value)
CONJUGATE = {
    "normal_normal": (
        NORMAL_NORMAL,
        "mu",
        _normal_normal,
        lambda u: -0.5 * ((u - _normal_normal()[1]) / _normal_normal()[2]) ** 2,
        lambda u: u,
    ),
    "beta_binomial": (
        BETA_BINOMIAL,
        "p",
        _beta_binomial,
        # Beta(a, b) in logit space: a log(sigmoid u) + b log(1 - sigmoid u)
        lambda u: (2 + 13) * -np.logaddexp(0, -u) + (3 + 27) * -np.logaddexp(0, u),
        sp.expit,
    ),
    "gamma_poisson": (
        GAMMA_POISSON,
        "lam",
        _gamma_poisson,
        # Gamma(a, b) in log space: a u - b e^u
        lambda u: (3 + _Y_POISSON.sum()) * u - (0.5 + len(_Y_POISSON)) * np.exp(u),
        np.exp,
    ),
}


def _vi_optimum(log_post, to_value) -> tuple[float, float]:
    """Mean and sd (of the value) of the KL(q||p)-optimal normal q on the unconstrained
    axis: what AutoNormal converges to, by Gauss-Hermite quadrature and Nelder-Mead."""
    x, w = hermegauss(80)
    w = w / w.sum()

    def neg_elbo(th):
        m, log_s = th
        return -(w @ log_post(m + np.exp(log_s) * x) + log_s)

    start = [0.0, -1.0]
    r = so.minimize(neg_elbo, start, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
    v = to_value(r.x[0] + np.exp(r.x[1]) * x)
    mean = float(w @ v)
    return mean, float(np.sqrt(w @ (v - mean) ** 2))


@pytest.mark.parametrize("name", list(CONJUGATE))
def test_conjugate_mcmc(name):
    src, var, make, _, _ = CONJUGATE[name]
    data, mean, sd = make()
    post = fglang.compile(src).fit(data, backend="mcmc", seed=1, chains=2, warmup=500, samples=1000)
    draws = post.draws[var]
    assert draws.shape == (2, 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess_mean = float(az.ess(draws, method="mean"))
        ess_sd = float(az.ess(draws, method="sd"))
        rhat = float(az.rhat(draws))
    assert ess_mean > 200 and ess_sd > 200, (ess_mean, ess_sd)
    assert rhat < 1.02
    assert post.sample_stats["diverging"].sum() == 0
    # The MC standard error of a mean is sd/sqrt(ESS); 4 of them is a 1-in-15000 false alarm.
    assert abs(post.mean(var) - mean) < 4 * sd / np.sqrt(ess_mean), (post.mean(var), mean)
    # The sample sd's standard error is sd*sqrt((kurtosis - 1)/(4 ESS)) <= sd/sqrt(ESS) for
    # these posteriors (kurtosis < 5): 4 of those is again far out in the tail.
    assert abs(post.sd(var) - sd) < 4 * sd / np.sqrt(ess_sd), (post.sd(var), sd)


@pytest.mark.parametrize("name", list(CONJUGATE))
def test_conjugate_vi(name):
    """Normal VI on the unconstrained axis of a 1-D conjugate model (the guide
    ``auto`` picks, ``mvn``, is one normal in 1-D).

    The tolerance is built from three parts:
    1. the guide's own bias: the KL-optimal normal on the unconstrained axis (computed
       here by quadrature) is asserted to reproduce the exact posterior mean within
       2% of an sd and its sd within 3% (the posteriors are near-Gaussian after the
       log/logit transform; for normal-normal it is exact);
    2. the Monte Carlo error of the 4000 reported draws: sd/sqrt(4000) = 0.016 sd for the
       mean, 0.011 sd for the sd;
    3. Adam's jitter around the optimum: the fit starts at the Laplace approximation and
       the learning rate (0.003 here) falls by 0.3x on each ELBO plateau, so the jitter
       is smaller than that of the constant-step AutoNormal fit this test was sized for
       (at most 0.13 sd on the mean and 6% on the sd over seeds 0..5).
    So mean within 0.25 sd and sd within 15% of the exact values is about 4 standard
    errors of (2)+(3), yet catches any wrong transform, Jacobian or parametrization
    (each of which moves these numbers by whole sds).
    """
    src, var, make, log_post, to_value = CONJUGATE[name]
    data, mean, sd = make()
    opt_mean, opt_sd = _vi_optimum(log_post, to_value)
    if name != "normal_normal":
        assert abs(opt_mean - mean) < 0.02 * sd and abs(opt_sd - sd) < 0.03 * sd
    post = fglang.compile(src).fit(data, backend="vi", seed=0, steps=4000, lr=0.003, particles=4, draws=4000)
    assert post.draws[var].shape == (1, 4000)
    assert abs(post.mean(var) - mean) < 0.25 * sd, (post.mean(var), mean, sd)
    assert abs(post.sd(var) - sd) < 0.15 * sd, (post.sd(var), sd)
    assert np.isfinite(post.attrs["final_loss"])


# ---------------------------------------------------------------- eight schools
EIGHT_SCHOOLS_DATA = {
    "J": 8,
    "y": [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0],
    "sigma": [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0],
}


@pytest.fixture(scope="module")
def eight_schools_mcmc():
    """Default settings (4 chains, 1000 warm-up, 1000 draws, target_accept 0.8), seed 0."""
    return fglang.load(EXAMPLES / "eight_schools.fg").fit(EIGHT_SCHOOLS_DATA, backend="mcmc", seed=0)


def test_eight_schools_divergences(eight_schools_mcmc):
    post = eight_schools_mcmc
    div = post.sample_stats["diverging"]
    assert div.shape == (4, 1000)
    assert div.mean() <= 0.005, f"{int(div.sum())} divergent draws"
    assert post.attrs["options"]["chains"] == 4 and post.attrs["options"]["warmup"] == 1000


def test_eight_schools_reference_values(eight_schools_mcmc):
    """mu ~ 4.4, tau ~ 3.6 (the reference values of Stan's and NumPyro's docs, rounded
    to 0.1: 0.05 of rounding is added to 4 Monte Carlo standard errors)."""
    post = eight_schools_mcmc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, ref in (("mu", 4.4), ("tau", 3.6)):
            ess = float(az.ess(post.draws[name], method="mean"))
            assert ess > 300, (name, ess)
            mcse = post.sd(name) / np.sqrt(ess)
            assert abs(post.mean(name) - ref) < 4 * mcse + 0.05, (name, post.mean(name), mcse)
            assert float(az.rhat(post.draws[name])) < 1.01


def test_eight_schools_theta_is_derived(eight_schools_mcmc):
    post = eight_schools_mcmc
    assert {"mu", "tau", "theta_raw", "theta"} <= set(post.names)
    theta = post.samples("theta")
    assert theta.shape == (4000, 8)
    expect = post.samples("mu")[:, None] + post.samples("tau")[:, None] * post.samples("theta_raw")
    np.testing.assert_allclose(theta, expect, rtol=1e-5, atol=1e-5)
    assert any(r["name"] == "theta[0]" for r in post.summary())


@pytest.mark.heavy
def test_eight_schools_vi_runs():
    post = fglang.load(EXAMPLES / "eight_schools.fg").fit(EIGHT_SCHOOLS_DATA, backend="vi", seed=0, steps=1500)
    assert post.samples("theta").shape == (1000, 8)
    assert 0 < post.mean("mu") < 9 and post.mean("tau") > 0


# ---------------------------------------------------------------- sparse regression
SPARSE_SRC = (EXAMPLES / "sparse_regression.fg").read_text()
NONZERO = [3, 11, 22, 30, 41]


def _sparse_data(n=200, d=50, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = np.zeros(d)
    w[NONZERO] = [2.0, -1.5, 1.0, 3.0, -2.5]
    y = x @ w + 0.5 + 0.5 * rng.normal(size=n)
    return {"N": n, "D": d, "X": x.tolist(), "y": y.tolist()}


def _separated(post) -> np.ndarray:
    mean, sd = post.mean("w"), post.sd("w")
    return np.flatnonzero(np.abs(mean) > 3 * sd)


@pytest.mark.heavy
def test_sparse_regression_horseshoe_separates():
    post = fglang.compile(SPARSE_SRC).fit(
        _sparse_data(), backend="mcmc", seed=0, chains=2, warmup=300, samples=300, target_accept=0.9
    )
    assert post.mean("w").shape == (50,)
    assert _separated(post).tolist() == NONZERO
    assert set(post.names) == {"w", "b", "sigma"}
    assert {"w__z", "w__local", "w__global"} <= set(post.draws)
    assert abs(post.mean("b") - 0.5) < 0.3 and abs(post.mean("sigma") - 0.5) < 0.15
    assert post.attrs["horseshoe_vars"] == ["w"]


def _diverging_posterior(attrs: dict):
    from fglang.runtime.posterior import Posterior

    rng = np.random.default_rng(0)
    div = np.zeros((2, 50), bool)
    div[0, :5] = True
    return Posterior("m", "mcmc", {"w": rng.normal(size=(2, 50, 3))}, sample_stats={"diverging": div},
                     attrs=attrs, node_shapes={"w": (3,)})


def test_divergence_advice_names_the_regularized_horseshoe_and_the_next_target_accept(tmp_path):
    plain = _diverging_posterior({"options": {"target_accept": 0.8}, "horseshoe_vars": []}).warnings()[0]
    assert "5 of 100 draws diverged (5.0%)" in plain
    assert "target_accept (now 0.8; try 0.95)" in plain and "non-centered" in plain
    hs = _diverging_posterior({"options": {"target_accept": 0.95}, "horseshoe_vars": ["w"]})
    msg = hs.warnings()[0]
    assert "try 0.99" in msg and "horseshoe on w" in msg and "reg_horseshoe(" in msg
    # the advice survives the posterior file
    assert load_posterior(hs.save(tmp_path / "p.nc")).warnings()[0] == msg


SPARSITY_PRIORS = {
    "laplace": "laplace(0, 0.5)",
    "reg_horseshoe": "reg_horseshoe(0.1, 2, 4)",
    "spike_slab": "spike_slab(0.1, 2, 0.01)",
    "ard": "ard()",
}


# laplace in every run; the others (15-30 s each) with the heavy tests
@pytest.mark.parametrize("prior", [p if p == "laplace" else pytest.param(p, marks=pytest.mark.heavy)
                                   for p in SPARSITY_PRIORS])
def test_sparse_regression_other_priors_vi(prior):
    src = SPARSE_SRC.replace("horseshoe(0.1)", SPARSITY_PRIORS[prior])
    assert SPARSITY_PRIORS[prior] in src
    post = fglang.compile(src).fit(_sparse_data(), backend="vi", seed=0)  # defaults: until the ELBO converges
    assert post.attrs["stop"] == "converged"
    mean = post.mean("w")
    assert mean.shape == (50,) and np.all(np.isfinite(mean)) and np.all(np.isfinite(post.sd("w")))
    assert sorted(np.argsort(-np.abs(mean))[:5].tolist()) == NONZERO
    assert set(post.names) == {"w", "b", "sigma"}  # aux sites hidden from summaries
    assert not any("__" in r["name"] for r in post.summary())


@pytest.mark.heavy
@pytest.mark.parametrize("prior", list(SPARSITY_PRIORS))
def test_sparse_regression_other_priors_short_mcmc(prior):
    src = SPARSE_SRC.replace("horseshoe(0.1)", SPARSITY_PRIORS[prior])
    post = fglang.compile(src).fit(_sparse_data(), backend="mcmc", seed=0, chains=1, warmup=200, samples=200)
    assert post.draws["w"].shape == (1, 200, 50)
    assert sorted(np.argsort(-np.abs(post.mean("w")))[:5].tolist()) == NONZERO


# ---------------------------------------------------------------- log density vs hand-written NumPyro
def _flat(shape, support=constraints.real):
    return dist.ImproperUniform(support, (), tuple(shape))


def random_walk_hw(d):
    x = numpyro.sample("x", _flat([d["T"]]))
    numpyro.sample("init", dist.Normal(0.0, 10.0), obs=x[0])
    numpyro.sample("step", dist.Normal(x[:-1], d["q"]).to_event(1), obs=x[1:])
    numpyro.sample("obs", dist.Normal(x, 0.5).to_event(1), obs=d["y"])


def eight_schools_hw(d):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    theta_raw = numpyro.sample("theta_raw", dist.Normal(0.0, 1.0).expand([d["J"]]).to_event(1))
    numpyro.sample("obs", dist.Normal(mu + tau * theta_raw, d["sigma"]).to_event(1), obs=d["y"])


def sparse_regression_hw(d):
    z = numpyro.sample("w__z", dist.Normal(0.0, 1.0).expand([d["D"]]).to_event(1))
    local = numpyro.sample("w__local", dist.HalfCauchy(1.0).expand([d["D"]]).to_event(1))
    glob = numpyro.sample("w__global", dist.HalfCauchy(0.1))
    b = numpyro.sample("b", dist.Normal(0.0, 10.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.sample("lik", dist.Normal(d["X"] @ (z * local * glob) + b, sigma).to_event(1), obs=d["y"])


def _huber_logpdf(x, mu, s, delta):
    """The normalized Huber density, written out: rho(u) = u^2/2 inside |u| <= delta,
    delta |u| - delta^2/2 outside; Z = sqrt(2 pi)(2 Phi(delta) - 1) + 2 exp(-delta^2/2)/delta."""
    u = jnp.abs((x - mu) / s)
    rho = jnp.where(u <= delta, 0.5 * u**2, delta * u - 0.5 * delta**2)
    z = np.sqrt(2 * np.pi) * (2 * sp.ndtr(delta) - 1) + 2 * np.exp(-0.5 * delta**2) / delta
    return -rho - jnp.log(s) - np.log(z)


def denoise_hw(d):
    x = numpyro.sample("x", _flat([d["H"], d["W"]]))
    numpyro.sample("obs", dist.Normal(x, d["s_obs"]).to_event(2), obs=d["img"])
    numpyro.factor("right", _huber_logpdf(x[:, 1:], x[:, :-1], d["s_smooth"], 1.345).sum())
    numpyro.factor("down", _huber_logpdf(x[1:, :], x[:-1, :], d["s_smooth"], 1.345).sum())


def pose_graph_hw(d):
    pose = numpyro.sample("pose", _flat([d["N"], 3]))
    numpyro.sample("anchor", dist.Normal(pose[0], 0.001).to_event(1), obs=jnp.zeros(3))
    a, b = pose[d["src"]], pose[d["dst"]]
    c, s = jnp.cos(a[:, 2]), jnp.sin(a[:, 2])
    dx, dy = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    pred = jnp.stack([c * dx + s * dy, -s * dx + c * dy, b[:, 2] - a[:, 2]], -1)
    err = d["z"] - pred
    err = err.at[:, 2].set(jnp.pi - jnp.mod(jnp.pi - err[:, 2], 2 * jnp.pi))
    numpyro.sample("odo", dist.Normal(err, d["sd"]).to_event(2), obs=jnp.zeros_like(err))


def _mlp_common(d):
    w1 = numpyro.sample("W1", dist.Normal(0.0, 1.0).expand([d["H"], d["D"]]).to_event(2))
    b1 = numpyro.sample("b1", dist.Normal(0.0, 1.0).expand([d["H"]]).to_event(1))
    w2 = numpyro.sample("w2", dist.Normal(0.0, 1.0).expand([d["H"]]).to_event(1))
    b2 = numpyro.sample("b2", dist.Normal(0.0, 1.0))
    h = numpyro.sample("h", _flat([d["N"], d["H"]]))
    numpyro.sample("layer1", dist.Normal(jax.nn.relu(d["X"] @ w1.T + b1), 0.1).to_event(2), obs=h)
    return h @ w2 + b2


def mlp_hw(d):
    numpyro.sample("out", dist.BernoulliLogits(_mlp_common(d)).to_event(1), obs=d["label"])


def mlp_gbp_hw(d):
    numpyro.sample("out", dist.Normal(_mlp_common(d), 0.5).to_event(1), obs=2.0 * d["label"] - 1.0)


def _data_for(name: str, rng) -> dict:
    if name == "random_walk":
        return {"T": 6, "y": rng.normal(size=6).tolist()}
    if name == "eight_schools":
        return EIGHT_SCHOOLS_DATA
    if name == "sparse_regression":
        return {"N": 12, "D": 5, "X": rng.normal(size=(12, 5)).tolist(), "y": rng.normal(size=12).tolist()}
    if name == "denoise":
        return {"H": 3, "W": 4, "img": rng.normal(size=(3, 4)).tolist()}
    if name == "pose_graph_2d":
        return {
            "N": 4,
            "M": 5,
            "src": [0, 1, 2, 0, 3],
            "dst": [1, 2, 3, 2, 0],
            "z": rng.normal(size=(5, 3)).tolist(),
            "sd": rng.uniform(0.1, 1.0, size=(5, 3)).tolist(),
        }
    if name in ("mlp_classifier", "mlp_classifier_gbp"):
        return {"N": 6, "D": 2, "H": 3, "X": rng.normal(size=(6, 2)).tolist(), "label": [0, 1, 1, 0, 1, 0]}
    raise AssertionError(name)


HAND_WRITTEN = {
    "random_walk": random_walk_hw,
    "eight_schools": eight_schools_hw,
    "sparse_regression": sparse_regression_hw,
    "denoise": denoise_hw,
    "pose_graph_2d": pose_graph_hw,
    "mlp_classifier": mlp_hw,
    "mlp_classifier_gbp": mlp_gbp_hw,
}
_MODELS: dict[str, fglang.Model] = {}


def _model(name: str) -> fglang.Model:
    if name not in _MODELS:
        _MODELS[name] = fglang.load(EXAMPLES / f"{name}.fg")
    return _MODELS[name]


def _hw_data(bm) -> dict:
    """The bound data (defaults filled in) as JAX arrays, sizes as Python ints (static shapes)."""
    return {k: int(v) if k in bm.sizes else jnp.asarray(v) for k, v in bm.data.items()}


def _random_point(bm, rng, aux: bool) -> dict[str, np.ndarray]:
    """A random value per var (aux sites for sparsity-prior vars), on each var's support."""
    out = {}
    for v in bm.variables.values():
        if aux and v.prior and bm.families[v.prior].ir.dist.sparsity:
            out[v.name + "__z"] = rng.normal(size=v.shape)
            out[v.name + "__local"] = rng.lognormal(size=v.shape)
            out[v.name + "__global"] = rng.lognormal(-2.0, 0.5)
            continue
        x = rng.normal(0.0, 1.5, size=v.shape)
        out[v.name] = np.exp(x) if v.domain.kind == "positive" else x
    return out


_LOG_DENSITIES: dict[str, tuple] = {}


def _log_densities(name: str, m: fglang.Model, data: dict, hand_written) -> tuple:
    """(lowered, hand-written) log density functions of the site values, each compiled
    once per model: evaluated op by op, a NumPyro model with many distributions
    spends tens of seconds compiling tiny kernels."""
    if name not in _LOG_DENSITIES:
        fn, d = m.numpyro_model(data)
        hw_data = _hw_data(m.bind(data))
        _LOG_DENSITIES[name] = (
            jax.jit(lambda v: log_density(fn, (d,), {}, v)[0]),
            jax.jit(lambda v: log_density(hand_written, (hw_data,), {}, v)[0]),
        )
    return _LOG_DENSITIES[name]


@pytest.mark.parametrize("name", list(HAND_WRITTEN))
@settings(max_examples=3, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate])
@example(seed=0)
@given(seed=st.integers(1, 2**32 - 1))
def test_log_density_matches_hand_written(name, seed):
    m = _model(name)
    data = _data_for(name, np.random.default_rng(7))
    bm = m.bind(data)
    values = _random_point(bm, np.random.default_rng(seed), aux=name == "sparse_regression")
    jvalues = {k: jnp.asarray(v) for k, v in values.items()}
    lowered, hand_written = _log_densities(name, m, data, HAND_WRITTEN[name])
    expect = float(hand_written(jvalues))
    np.testing.assert_allclose(float(lowered(jvalues)), expect, rtol=1e-5, atol=1e-3)
    if seed == 0:  # the API, once per model (explicit example below; op by op, so slow)
        # (the horseshoe's w is a deterministic of its aux sites, which are given by name)
        np.testing.assert_allclose(m.log_density(values, data), expect, rtol=1e-5, atol=1e-3)


ZOO = """
model zoo
data N: int
data x[N]: real
data y_mv[N]: real[2]
data S[2, 2]: real
data cat[N]: int
data ord[N]: int
data counts[N]: int
var m: real[2] ~ normal(0, 1)
var p: simplex[3] ~ dirichlet([1, 2, 3])
var c: ordered[2] ~ normal(0, 3)
var b: real ~ cauchy(0, 2)
var phi: positive ~ exponential(1)
var s: real(lower=-1, upper=2) ~ uniform(-1, 2)
factor mv[i in 0:N]: y_mv[i] ~ mvnormal(m, cov=S)
factor vec[i in 0:N]: y_mv[i] ~ normal(m, exp(x[i]))
factor cc[i in 0:N]: cat[i] ~ categorical(p=p)
factor oo[i in 0:N]: ord[i] ~ ordered_logistic(x[i] * b, c)
factor nb[i in 0:N]: counts[i] ~ neg_binomial(exp(s + x[i]), phi)
factor pot: potential logp(student_t(3, 0, 1), b) + logp(lognormal(0, 1), phi)
"""


def _zoo_model() -> fglang.Model:
    if "zoo" not in _MODELS:
        _MODELS["zoo"] = fglang.compile(ZOO)
    return _MODELS["zoo"]


def zoo_hw(d):
    m = numpyro.sample("m", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    p = numpyro.sample("p", dist.Dirichlet(jnp.array([1.0, 2.0, 3.0])))
    c = numpyro.sample("c", _flat([2], constraints.ordered_vector))
    numpyro.factor("c_prior", dist.Normal(0.0, 3.0).log_prob(c).sum())
    b = numpyro.sample("b", dist.Cauchy(0.0, 2.0))
    phi = numpyro.sample("phi", dist.Exponential(1.0))
    s = numpyro.sample("s", dist.Uniform(-1.0, 2.0))
    n = d["x"].shape[0]
    numpyro.sample("mv", dist.MultivariateNormal(m, covariance_matrix=d["S"]).expand([n]).to_event(1), obs=d["y_mv"])
    numpyro.sample("vec", dist.Normal(m, jnp.exp(d["x"])[:, None]).to_event(2), obs=d["y_mv"])
    numpyro.sample("cc", dist.CategoricalProbs(p).expand([n]).to_event(1), obs=d["cat"])
    numpyro.sample("oo", dist.OrderedLogistic(d["x"] * b, c).to_event(1), obs=d["ord"])
    numpyro.sample("nb", dist.NegativeBinomial2(jnp.exp(s + d["x"]), phi).to_event(1), obs=d["counts"])
    numpyro.factor("pot", dist.StudentT(3.0, 0.0, 1.0).log_prob(b) + dist.LogNormal(0.0, 1.0).log_prob(phi))


ZOO_DATA = {
    "N": 5,
    "x": [0.3, -1.2, 0.8, 0.1, -0.4],
    "y_mv": [[0.5, -0.2], [1.1, 0.4], [-0.7, 0.9], [0.0, 0.3], [2.0, -1.0]],
    "S": [[1.0, 0.3], [0.3, 2.0]],
    "cat": [0, 2, 1, 1, 0],
    "ord": [1, 0, 2, 2, 0],
    "counts": [0, 4, 2, 7, 1],
}


@settings(max_examples=3, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate])
@given(seed=st.integers(0, 2**32 - 1))
def test_log_density_distribution_zoo(seed):
    """mvnormal, dirichlet, categorical, ordered_logistic, neg_binomial, bounds, an
    ordered var under a normal prior (truncation), logp() in a potential, and a
    family whose members are vectors with a per-member scalar scale."""
    rng = np.random.default_rng(seed)
    values = {
        "m": rng.normal(size=2),
        "p": rng.dirichlet([1.0, 1.0, 1.0]),
        "c": np.sort(rng.normal(size=2)),
        "b": rng.normal(),
        "phi": rng.lognormal(),
        "s": rng.uniform(-0.9, 1.9),
    }
    jvalues = {k: jnp.asarray(v) for k, v in values.items()}
    lowered, hand_written = _log_densities("zoo", _zoo_model(), ZOO_DATA, zoo_hw)
    np.testing.assert_allclose(float(lowered(jvalues)), float(hand_written(jvalues)), rtol=1e-5, atol=1e-3)


@pytest.mark.slow
# both heavy (vi 41 CPU-s): the CI budget; the outside models fit vi by default
@pytest.mark.parametrize("backend", [pytest.param("vi", marks=pytest.mark.heavy),
                                     pytest.param("mcmc", marks=pytest.mark.heavy)])
def test_distribution_zoo_fits(backend):
    """Both backends run it (briefly) and keep every var on its support."""
    opts = {"steps": 50} if backend == "vi" else {"chains": 1, "warmup": 30, "samples": 20}
    post = _zoo_model().fit(ZOO_DATA, backend=backend, **opts)
    assert np.allclose(post.samples("p").sum(-1), 1.0, atol=1e-4)
    assert np.all(np.diff(post.samples("c"), axis=-1) > 0)
    assert np.all((post.samples("s") > -1) & (post.samples("s") < 2))


FLAT = """
model flat
data N: int
data y[N]: real
var m: real
var s: positive
factor obs[i in 0:N]: y[i] ~ normal(m, s)
"""


def test_flat_priors_improper():
    """``var x`` with no prior: 0 in constrained space; in unconstrained space NumPyro
    adds the transform's log-Jacobian (log s for a positive var), as Stan does."""
    y = np.array([0.3, -1.2, 2.0, 0.7])
    data = {"N": 4, "y": y.tolist()}
    m = fglang.compile(FLAT)
    lik = float(np.sum(dist.Normal(0.4, 1.3).log_prob(jnp.asarray(y))))
    assert m.log_density({"m": 0.4, "s": 1.3}, data) == pytest.approx(lik, rel=1e-5)
    fn, d = m.numpyro_model(data)
    pe = potential_energy(fn, (d,), {}, {"m": jnp.asarray(0.4), "s": jnp.log(1.3)})
    assert float(pe) == pytest.approx(-(lik + np.log(1.3)), rel=1e-5)


def test_numpyro_model_usable_with_any_inference():
    """``model.numpyro_model(data)`` is a plain NumPyro model: Predictive and a trace work."""
    from numpyro import handlers
    from numpyro.infer import Predictive

    fn, d = fglang.load(EXAMPLES / "eight_schools.fg").numpyro_model(EIGHT_SCHOOLS_DATA)
    tr = handlers.trace(handlers.seed(fn, 0)).get_trace(d)
    assert tr["mu"]["type"] == "sample" and not tr["mu"]["is_observed"]
    assert tr["theta"]["type"] == "deterministic"
    assert tr["obs"]["is_observed"]
    prior = Predictive(fn, num_samples=7)(jax.random.PRNGKey(0), d)
    assert prior["theta"].shape == (7, 8)


# ---------------------------------------------------------------- posterior files
@pytest.fixture(scope="module")
def small_mcmc():
    data, _, _ = _normal_normal()
    return fglang.compile(NORMAL_NORMAL).fit(data, backend="mcmc", seed=3, chains=2, warmup=150, samples=150)


def test_posterior_round_trip(small_mcmc, eight_schools_mcmc, tmp_path):
    for post in (small_mcmc, eight_schools_mcmc):
        p = post.save(tmp_path / f"{post.model}.nc")
        back = load_posterior(p)
        assert back.model == post.model and back.backend == "mcmc"
        assert back.names == post.names
        for name in post.draws:
            np.testing.assert_array_equal(back.samples(name), post.samples(name))
            np.testing.assert_allclose(back.mean(name), post.mean(name), rtol=1e-6)
            np.testing.assert_allclose(back.sd(name), post.sd(name), rtol=1e-6)
        np.testing.assert_array_equal(back.sample_stats["diverging"], post.sample_stats["diverging"])
        np.testing.assert_array_equal(back.sample_stats["lp"], post.sample_stats["lp"])
        assert back.attrs["options"] == post.attrs["options"]
        assert back.summary() == post.summary()


def test_mcmc_lp_is_the_log_density_of_each_draw(small_mcmc):
    """sample_stats['lp'] (what the chain-disagreement warning compares) is the
    model's log density at the draw (mu is unconstrained: no Jacobian)."""
    data, _, _ = _normal_normal()
    model = fglang.compile(NORMAL_NORMAL)
    lp = small_mcmc.sample_stats["lp"]
    assert lp.shape == (2, 150)
    for c, i in [(0, 0), (1, 77), (1, 149)]:
        mu = small_mcmc.draws["mu"][c, i]
        assert lp[c, i] == pytest.approx(model.log_density({"mu": mu}, data), rel=1e-10, abs=1e-10)
    step = small_mcmc.attrs["step_size"]
    assert len(step) == 2 and all(0 < s < 10 for s in step)


def test_posterior_file_opens_in_arviz(small_mcmc, tmp_path):
    p = small_mcmc.save(tmp_path / "post.nc")
    idata = az.from_netcdf(p)
    assert {"posterior", "sample_stats", "observed_data"} <= set(idata.groups())
    assert idata.posterior["mu"].shape == (2, 150)
    np.testing.assert_allclose(idata.observed_data["y"].values, _Y_NORMAL, rtol=1e-6)
    attrs = idata.posterior.attrs
    assert attrs["fglang_backend"] == "mcmc" and attrs["fglang_version"] == fglang.__version__
    extra = json.loads(attrs["fglang_attrs"])
    assert "model normal_normal" in extra["source"]
    assert extra["options"]["chains"] == 2 and extra["seed"] == 3
    az.summary(idata, var_names=["mu"])  # ArviZ's own diagnostics run on it


def test_posterior_vi_round_trip(tmp_path):
    data, _, _ = _normal_normal()
    post = fglang.compile(NORMAL_NORMAL).fit(data, backend="vi", seed=0, steps=200, draws=50)
    back = load_posterior(post.save(tmp_path / "vi.nc"))
    assert back.backend == "vi"
    np.testing.assert_array_equal(back.samples("mu"), post.samples("mu"))
    assert back.attrs["loss_history"] == pytest.approx(post.attrs["loss_history"])


def test_posterior_save_is_atomic(small_mcmc, tmp_path, monkeypatch):
    target = tmp_path / "post.nc"
    small_mcmc.save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["post.nc"]  # no temp file left
    before = target.read_bytes()

    def crash(path, *args, **kwargs):
        Path(path).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    from fglang.io import inference_data

    monkeypatch.setattr(inference_data, "write_groups", crash)  # the writer Posterior.save calls
    with pytest.raises(FgError, match="cannot write .*No space left"):
        small_mcmc.save(target)
    assert target.read_bytes() == before  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["post.nc"]
    monkeypatch.undo()
    load_posterior(target)


def test_posterior_save_unwritable(small_mcmc, tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(FgError, match="cannot write"):
        small_mcmc.save(tmp_path / "a_file" / "post.nc")


def test_rank_diagnostics_match_arviz(eight_schools_mcmc):
    """The summary's r_hat and ess_bulk are ArviZ's numbers (computed without ArviZ)."""
    rng = np.random.default_rng(0)
    x = np.zeros((3, 301, 4))
    for t in range(1, 301):  # AR(1) chains of different persistence, one shifted chain
        x[:, t] = np.array([0.0, 0.5, 0.9, 0.99]) * x[:, t - 1] + rng.normal(size=(3, 4))
    x[1, :, 0] += 0.3
    x[:, :, 3] = np.round(x[:, :, 3])  # ties: ranks are averaged, as scipy's rankdata does
    rhat, ess = rank_diagnostics(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(rhat, [float(az.rhat(x[:, :, k])) for k in range(4)], rtol=1e-10)
        np.testing.assert_allclose(ess, [float(az.ess(x[:, :, k], method="bulk")) for k in range(4)], rtol=1e-10)
        rows = {r["name"]: r for r in eight_schools_mcmc.summary()}
        tau = eight_schools_mcmc.draws["tau"]
        assert rows["tau"]["r_hat"] == pytest.approx(float(az.rhat(tau)), rel=1e-10)
        assert rows["tau"]["ess_bulk"] == pytest.approx(float(az.ess(tau, method="bulk")), rel=1e-10)


def test_load_posterior_errors(tmp_path):
    with pytest.raises(FgError, match="not found"):
        load_posterior(tmp_path / "missing.nc")
    bad = tmp_path / "bad.nc"
    bad.write_text("not netcdf")
    with pytest.raises(FgError, match="not a readable"):
        load_posterior(bad)


# ---------------------------------------------------------------- init=
@pytest.mark.parametrize("backend", ["vi", "mcmc"])
def test_init_validated(backend):
    m = fglang.load(EXAMPLES / "eight_schools.fg")
    with pytest.raises(FgError, match="'tua' is not a var.*did you mean 'tau'"):
        m.fit(EIGHT_SCHOOLS_DATA, backend=backend, init={"tua": 1.0})
    with pytest.raises(FgError, match=r"'theta_raw' has shape \[3\], the var has \[8\]"):
        m.fit(EIGHT_SCHOOLS_DATA, backend=backend, init={"theta_raw": [0.0, 0.0, 0.0]})
    with pytest.raises(FgError, match="tau"):
        m.fit(EIGHT_SCHOOLS_DATA, backend=backend, init={"tau": -1.0})  # outside the var's support
    with pytest.raises(FgError, match="NaN"):
        m.fit(EIGHT_SCHOOLS_DATA, backend=backend, init={"mu": float("nan")})


def test_init_is_used_vi():
    """A delta guide that barely moves stays at the init, also through a sparsity prior's aux sites."""
    m = fglang.load(EXAMPLES / "eight_schools.fg")
    post = m.fit(
        EIGHT_SCHOOLS_DATA, backend="vi", guide="delta", steps=1, lr=1e-6, draws=2, init={"mu": 3.0, "tau": 2.0}
    )
    assert post.mean("mu") == pytest.approx(3.0, abs=1e-3)
    assert post.mean("tau") == pytest.approx(2.0, abs=1e-3)
    w0 = np.linspace(-1.0, 1.0, 5)
    data = _data_for("sparse_regression", np.random.default_rng(0))
    post = fglang.compile(SPARSE_SRC).fit(
        data, backend="vi", guide="delta", steps=1, lr=1e-6, draws=2, init={"w": w0, "sigma": 0.7}
    )
    np.testing.assert_allclose(post.mean("w"), w0, atol=1e-3)
    assert post.mean("sigma") == pytest.approx(0.7, abs=1e-3)


def test_init_mcmc_accepted():
    m = fglang.compile(NORMAL_NORMAL)
    data, mean, sd = _normal_normal()
    post = m.fit(data, backend="mcmc", seed=0, chains=1, warmup=50, samples=50, init={"mu": 2.0})
    assert post.draws["mu"].shape == (1, 50)
    assert abs(post.mean("mu") - mean) < 1.0


@pytest.mark.parametrize("backend", ["vi", "mcmc"])
def test_discrete_latent_var_rejected(backend):
    src = "model d\ndata y: real\nvar k: int\nvar mu: real ~ normal(0, 1)\nfactor obs: y ~ normal(mu + k, 1)\n"
    with pytest.raises(FgError, match=r"d.fg:3:1: var 'k' is int: discrete latent vars are not supported"):
        fglang.compile(src, "d.fg").fit({"y": 0.5}, backend=backend)


def test_bad_options():
    m = fglang.compile(NORMAL_NORMAL)
    data, _, _ = _normal_normal()
    with pytest.raises(FgError, match="unknown option.*chains"):
        m.fit(data, backend="vi", chains=2)
    with pytest.raises(FgError, match="guide"):
        m.fit(data, backend="vi", guide="flow")
    with pytest.raises(FgError, match="samples"):
        m.fit(data, backend="mcmc", samples=0)
    with pytest.raises(FgError, match="backend"):
        m.fit(data, backend="nuts")
