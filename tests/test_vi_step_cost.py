"""What a VI step costs: the pieces that once made the digits MLP's step 40x
its model's cost, each checked against its plain formula."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import fglang
from fglang.runtime.numpyro_sites import numpyro_model
from fglang.runtime.vi.guides import LowRankNormal

MLP = """model shared_mlp
data N: int
data D: int
data H: int
data X[N, D]: real
data Y[N]: real
var W1: real[H, D] ~ normal(0, 0.3)
var b1: real[H] ~ normal(0, 1)
var w2: real[H] ~ normal(0, 0.3)
factor out[n in 0:N]: Y[n] ~ normal(w2 @ leaky_relu(W1 @ X[n] + b1), 0.5)
"""


@pytest.mark.parametrize("dim, rank, seed, zero", [(2, 1, 0, True), (6, 3, 1, False), (9, 4, 2, True),
                                                   (9, 4, 3, False)])
def test_lowrank_entropy_and_its_gradient_equal_numpyros(dim, rank, seed, zero):
    with jax.enable_x64(True):
        k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
        w = jnp.zeros((dim, rank)) if zero else jax.random.normal(k1, (dim, rank))
        d = jnp.exp(jax.random.normal(k2, (dim,)))
        loc = jnp.zeros(dim)

        def ours(w, d):
            return LowRankNormal(loc, w, d).entropy()

        def numpyros(w, d):
            return dist.LowRankMultivariateNormal(loc, w, d).entropy()

        np.testing.assert_allclose(jax.jit(ours)(w, d), jax.jit(numpyros)(w, d), rtol=1e-12)
        grads = [jax.jit(jax.grad(f, (0, 1)))(w, d) for f in (ours, numpyros)]
        for a, b in zip(*grads, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def _mlp(n=7, d=5, h=3, seed=0):
    rng = np.random.default_rng(seed)
    data = {"N": n, "D": d, "H": h, "X": rng.normal(size=(n, d)), "Y": rng.normal(size=n)}
    nm = numpyro_model(fglang.compile(MLP).bind(data), {})
    values = {"W1": rng.normal(size=(h, d)), "b1": rng.normal(size=h), "w2": rng.normal(size=h)}
    return data, nm, values


def test_a_var_outside_the_index_is_shared_not_broadcast():
    """``W1 @ X[n]`` over ``n``: the density equals the plain formula, and
    neither it nor its gradient holds an ``[N, H, D]`` array (M copies of W1,
    or M outer products summed)."""
    from numpyro.infer.util import log_density

    with jax.enable_x64(True):
        data, nm, values = _mlp()
        model = nm.model_fn()

        def logp(v):
            return log_density(model, (nm.data,), {}, v)[0]

        X, Y = data["X"], data["Y"]
        hidden = X @ values["W1"].T + values["b1"]
        mean = np.where(hidden >= 0, hidden, 0.01 * hidden) @ values["w2"]
        ref = (dist.Normal(0, 0.5).log_prob(Y - mean).sum() + dist.Normal(0, 0.3).log_prob(values["W1"]).sum()
               + dist.Normal(0, 1).log_prob(values["b1"]).sum() + dist.Normal(0, 0.3).log_prob(values["w2"]).sum())
        np.testing.assert_allclose(logp(values), ref, rtol=1e-12)
        text = str(jax.make_jaxpr(jax.grad(logp))(values))
        assert "f64[7,3,5]" not in text and "f64[7,5,3]" not in text, "W1 broadcast over the family's members"
        assert re.search(r"f64\[3,5\] = dot_general", text), "W1's gradient is one matrix product"


def test_a_shared_slot_gives_the_gathered_models_density():
    """The same model with W1 read through an index that every member gives
    the same value (``W1[z[n]]`` with ``z = 0``: a gather, not a shared slot)
    has the same density at every point."""
    from numpyro.infer.util import log_density

    src = MLP.replace("var W1: real[H, D]", "data z[N]: int\nvar W1: real[1, H, D]").replace(
        "W1 @ X[n]", "W1[z[n]] @ X[n]")
    with jax.enable_x64(True):
        data, nm, values = _mlp(seed=3)
        gathered = numpyro_model(fglang.compile(src).bind({**data, "z": np.zeros(data["N"], int)}), {})
        a = log_density(nm.model_fn(), (nm.data,), {}, values)[0]
        b = log_density(gathered.model_fn(), (gathered.data,), {}, {**values, "W1": values["W1"][None]})[0]
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_an_unindexed_factor_has_no_member_axis_under_a_vmap_over_chains():
    """``y ~ normal(X @ w, s)`` is one member: evaluated without a member
    axis, so 4 vectorized chains' product is ``[N, 4]``, not ``[N, 4, 1]``,
    which XLA copied and transposed (1.9x the hand-written gradient)."""
    from numpyro.infer.util import log_density

    src = ("model dense\ndata N: int\ndata D: int\ndata X[N, D]: real\ndata y[N]: real\n"
           "var w: real[D] ~ normal(0, 1)\nvar s: positive ~ exponential(1)\nfactor lik: y ~ normal(X @ w, s)\n")
    rng = np.random.default_rng(1)
    data = {"N": 7, "D": 3, "X": rng.normal(size=(7, 3)), "y": rng.normal(size=7)}
    with jax.enable_x64(True):
        nm = numpyro_model(fglang.compile(src).bind(data), {})
        model = nm.model_fn()

        def logp(w, s):
            return log_density(model, (nm.data,), {}, {"w": w, "s": s})[0]

        w, s = rng.normal(size=(4, 3)), np.exp(rng.normal(size=4))
        want = [dist.Normal(data["X"] @ w[c], s[c]).log_prob(data["y"]).sum() + dist.Normal(0, 1).log_prob(w[c]).sum()
                + dist.Exponential(1.0).log_prob(s[c]) for c in range(4)]
        np.testing.assert_allclose(jax.jit(jax.vmap(logp))(w, s), want, rtol=1e-12)
        text = str(jax.make_jaxpr(jax.vmap(jax.grad(logp, (0, 1))))(w, s))
        products = re.findall(r"(f64\[[0-9,]+\]) = dot_general", text)
        assert sorted(products) == ["f64[4,3]", "f64[7,4]"], products  # X @ w for 4 chains, and its transpose


def test_log_density_is_float64_by_default():
    """A sum over 20,000 rows: float64 matches the closed form to 1e-9 relative;
    float32 (asked for) is not."""
    from scipy.stats import norm

    rng = np.random.default_rng(2)
    y = rng.normal(3.0, 2.0, size=20_000)
    m = fglang.compile("model big\ndata N: int\ndata y[N]: real\nvar mu: real ~ normal(0, 10)\n"
                       "factor obs[n in 0:N]: y[n] ~ normal(mu, 2)\n")
    want = norm.logpdf(y, 3.1, 2.0).sum() + norm.logpdf(3.1, 0, 10)
    got = m.log_density({"mu": 3.1}, {"N": y.size, "y": y})
    assert abs(got - want) < 1e-9 * abs(want)
    assert abs(m.log_density({"mu": 3.1}, {"N": y.size, "y": y}, dtype="float32") - want) > 1e-9 * abs(want)


def test_an_integer_literal_past_32_bits_is_a_real_in_a_float32_fit():
    """``m + 9223372036854775807`` overflowed JAX's int32 into a traceback (a fuzz finding)."""
    m = fglang.compile("model big_int\ndata y: real\nvar m: real ~ normal(0, 1)\n"
                       "let z = m + 9223372036854775807\nfactor f: y ~ normal(z, 1e19)\n")
    assert np.isfinite(m.log_density({"m": 0.5}, {"y": 1.0}, dtype="float32"))


PER_ROW = ("model rows\ndata N: int\ndata D: int\ndata X[N, D]: real\ndata y[N]: real\n"
           "var w: real[D] ~ normal(0, 1)\nvar s: positive ~ exponential(1)\n"
           "factor lik[n in LO:N]: y[n] ~ normal(X[n] @ w + X[n, 0], s)\n")


@pytest.mark.parametrize("lo", [0, 1])
def test_data_read_row_by_row_is_a_slice_not_a_gather(lo):
    """``X[n]`` in ``lik[n in 0:N]`` reads the rows in member order: the
    members' vmap takes ``X`` batched, so no gather (a copy of ``X`` on every
    gradient, half a per-member family's cost at N = 1e5) is left in the
    gradient; from ``n in 1:N`` the rows are a gather still. Both give the
    plain formula's density."""
    from numpyro.infer.util import log_density

    rng = np.random.default_rng(4)
    data = {"N": 9, "D": 3, "X": rng.normal(size=(9, 3)), "y": rng.normal(size=9)}
    with jax.enable_x64(True):
        nm = numpyro_model(fglang.compile(PER_ROW.replace("LO", str(lo))).bind(data), {})
        model = nm.model_fn()

        def logp(w, s):
            return log_density(model, (nm.data,), {}, {"w": w, "s": s})[0]

        w, s = rng.normal(size=3), 0.7
        X, y = data["X"][lo:], data["y"][lo:]
        want = (dist.Normal(X @ w + X[:, 0], s).log_prob(y).sum() + dist.Normal(0, 1).log_prob(w).sum()
                + dist.Exponential(1.0).log_prob(s))
        np.testing.assert_allclose(logp(w, s), want, rtol=1e-12)
        text = str(jax.make_jaxpr(jax.grad(logp))(w, s))
        assert ("gather" in text) == (lo == 1), text


def test_an_output_the_same_for_every_member_keeps_a_member_axis_of_one():
    """``s`` in ``lik[n]: y[n] ~ normal(X[n] @ w, s)`` is one value, not M
    (lean evaluation, compiler/member_axis_jax.py): broadcast, 4 chains divided
    by a [4, M] array (1.25x hand-written's gradient). The lean outputs
    broadcast to the plain ones."""
    from fglang.compiler.bound import SharedSlot
    from fglang.compiler.member_axis_jax import member_dependent

    rng = np.random.default_rng(5)
    data = {"N": 9, "D": 3, "X": rng.normal(size=(9, 3)), "y": rng.normal(size=9)}
    bm = fglang.compile(PER_ROW.replace("LO", "0")).bind(data)
    fam = bm.families["lik"]
    values = {"w": rng.normal(size=3), "s": np.asarray(0.7)}
    slots = tuple(SharedSlot(jnp.asarray(values[s.var])) for s in fam.slots)
    jdata = {k: jnp.asarray(v) for k, v in bm.data.items()}
    idx = {k: jnp.asarray(v) for k, v in fam.idx.items()}
    plain = fam.evaluate(jdata, idx, slots)
    lean = fam.evaluate(jdata, idx, slots, lean=True)
    assert plain["args"]["sd"].shape == (9,) and lean["args"]["sd"].shape == (1,)
    assert lean["args"]["mu"].shape == (9,) and lean["lhs"].shape == (9,)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(lean), strict=True):
        np.testing.assert_allclose(a, np.broadcast_to(b, a.shape), rtol=1e-12)
    # the dependence analysis: through a nested jit and a literal
    f = jax.jit(lambda x, c: (x * 2.0, c + 1.0, jnp.sin(c) * x.sum(), 3.0))
    assert member_dependent(lambda x, c: f(x, c), (jnp.ones(3),), (jnp.ones(()),))[0] == [True, False, True, False]


@pytest.mark.parametrize("factor", ["potential -0.5 * (mu - 1) ^ 2", "0 ~ normal(mu - 1, 1)"])
def test_a_member_invariant_density_counts_once_per_member(factor):
    """Lean evaluation keeps an argument the same for every member at one
    member, but a potential or left-hand side the same for every member is
    N terms: the density of ``f[n in 0:N]`` is N times one member's."""
    from scipy.stats import norm

    m = fglang.compile(f"model inv\ndata N: int\nvar mu: real\nfactor f[n in 0:N]: {factor}\n")
    one = -0.5 * (0.3 - 1) ** 2 if factor.startswith("potential") else norm.logpdf(0, 0.3 - 1, 1)
    for n in (1, 2, 7):
        assert m.log_density({"mu": 0.3}, {"N": n}) == pytest.approx(n * one, rel=1e-12)
