"""Oracle tests of the GBP algebra (fglang/runtime/gbp/{algebra,robust,sparsity}.py).

Every check compares against an independent dense computation in NumPy (matrix
inverses of the whole joint) or against a defining property, never against
another path of the same code.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fglang.runtime.gbp import algebra, robust, sparsity

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Shapes are drawn from small fixed menus and the code under test is jitted, so
# each shape compiles once and hypothesis then varies only the values (eager
# JAX would compile every primitive for every new shape).
_solve = jax.jit(algebra.spd_solve)
_inv = jax.jit(algebra.spd_inv)
_schur = jax.jit(algebra.schur_messages)
_rank1 = jax.jit(algebra.rank1_messages)
_sparse = jax.jit(sparsity.sparsity_precision, static_argnums=0)
_huber = jax.jit(robust.huber_weight)
_student = jax.jit(robust.student_t_weight)
SCHUR_CONFIGS = [([1, 2], 1), ([3, 3], 4), ([2, 1, 3], 2)]
RANK1_CONFIGS = [[3], [1, 1], [3, 2], [1, 2, 1, 3]]  # [1, 1]: the pairwise scalar closed form


@pytest.fixture(autouse=True, scope="module")
def _x64() -> Iterator[None]:
    """Float64 for tight oracles, restored afterwards for other test modules."""
    with jax.enable_x64(True):
        yield


def _spd(rng: np.random.Generator, m: int, n: int, jitter: float = 0.5) -> np.ndarray:
    a = rng.normal(size=(m, n, n))
    return a @ np.swapaxes(a, -1, -2) + jitter * np.eye(n)


# ---------------------------------------------------------------------------
# Solves


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), n=st.sampled_from([1, 3, 8]))
def test_spd_solve_matches_numpy(seed: int, n: int) -> None:
    """The unrolled LDL^T (n <= 6) and the LU fallback both solve SPD systems."""
    rng = np.random.default_rng(seed)
    a = _spd(rng, 4, n, 0.1)
    b = rng.normal(size=(4, n, 3))
    x = np.asarray(_solve(jnp.asarray(a), jnp.asarray(b)))
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-8, atol=1e-8)
    inv = np.asarray(_inv(jnp.asarray(a)))
    np.testing.assert_allclose(inv, np.linalg.inv(a), rtol=1e-8, atol=1e-8)


def test_spd_solve_singular_stays_finite() -> None:
    """A singular (PSD) system gives a finite answer thanks to the pivot floor."""
    a = np.zeros((1, 3, 3))
    a[0, :2, :2] = [[2.0, 1.0], [1.0, 2.0]]
    x = np.asarray(algebra.spd_solve(jnp.asarray(a), jnp.ones((1, 3, 1)), 1e-6))
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(x[0, :2, 0], np.linalg.solve(a[0, :2, :2], [1.0, 1.0]), rtol=1e-6)


# ---------------------------------------------------------------------------
# Marginalization


def _random_factor(
    rng: np.random.Generator, m: int, dims: list[int], r: int
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """A PSD factor J^T P J over the slots plus PD incoming messages per slot."""
    big = sum(dims)
    jac = rng.normal(size=(m, r, big))
    prec = rng.uniform(0.5, 2.0, size=(m, r))
    lam_f = np.einsum("mri,mr,mrj->mij", jac, prec, jac)
    eta_f = rng.normal(size=(m, big))
    in_lam = [_spd(rng, m, d) for d in dims]
    in_eta = [rng.normal(size=(m, d)) for d in dims]
    return eta_f, lam_f, in_eta, in_lam


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), config=st.sampled_from(SCHUR_CONFIGS))
def test_schur_messages_equal_dense_marginal(seed: int, config: tuple[list[int], int]) -> None:
    """Message + incoming message of slot s == dense marginal of the full joint.

    The full joint (factor times all incoming messages) is PD, so its marginal
    on slot s is read off the inverse: ``cov_s = inv(joint)[s, s]``. The
    marginal is also ``factor-to-var message * incoming message of s``.
    """
    dims, r = config
    rng = np.random.default_rng(seed)
    m = 3
    eta_f, lam_f, in_eta, in_lam = _random_factor(rng, m, dims, r)
    msgs = _schur(
        jnp.asarray(eta_f), jnp.asarray(lam_f), [jnp.asarray(e) for e in in_eta], [jnp.asarray(x) for x in in_lam]
    )
    off = np.concatenate([[0], np.cumsum(dims)])
    joint_lam = lam_f.copy()
    joint_eta = eta_f.copy()
    for t, _ in enumerate(dims):
        sl = slice(off[t], off[t + 1])
        joint_lam[:, sl, sl] += in_lam[t]
        joint_eta[:, sl] += in_eta[t]
    cov = np.linalg.inv(joint_lam)
    mean = np.einsum("mij,mj->mi", cov, joint_eta)
    for s, (eta_s, lam_s) in enumerate(msgs):
        sl = slice(off[s], off[s + 1])
        marg_lam = np.asarray(lam_s) + in_lam[s]
        marg_eta = np.asarray(eta_s) + in_eta[s]
        np.testing.assert_allclose(np.linalg.inv(marg_lam), cov[:, sl, sl], rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(np.linalg.solve(marg_lam, marg_eta[..., None])[..., 0], mean[:, sl], rtol=1e-7,
                                   atol=1e-8)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), dims=st.sampled_from(RANK1_CONFIGS))
def test_rank1_equals_general_path(seed: int, dims: list[int]) -> None:
    """Sherman-Morrison messages of a scalar-residual factor == Schur complement."""
    rng = np.random.default_rng(seed)
    m = 4
    big = sum(dims)
    j = rng.normal(size=(m, big))
    lam = rng.uniform(0.1, 10.0, size=m)
    c = rng.normal(size=m)
    lam_f = lam[:, None, None] * j[:, :, None] * j[:, None, :]
    eta_f = (lam * c)[:, None] * j
    in_lam = [_spd(rng, m, d) for d in dims]
    in_eta = [rng.normal(size=(m, d)) for d in dims]
    off = np.concatenate([[0], np.cumsum(dims)])
    jacs = [jnp.asarray(j[:, off[t] : off[t + 1]]) for t in range(len(dims))]
    ie = [jnp.asarray(e) for e in in_eta]
    il = [jnp.asarray(x) for x in in_lam]
    fast = _rank1(jacs, jnp.asarray(lam), jnp.asarray(c), ie, il)
    slow = _schur(jnp.asarray(eta_f), jnp.asarray(lam_f), ie, il)
    for (ef, lf), (es, ls) in zip(fast, slow, strict=True):
        np.testing.assert_allclose(np.asarray(lf), np.asarray(ls), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(np.asarray(ef), np.asarray(es), rtol=1e-7, atol=1e-9)


WOODBURY_CONFIGS = [([3, 3], 3, False), ([1, 2], 2, True), ([2, 1, 3], 4, True)]
_woodbury = jax.jit(algebra.woodbury_messages)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), config=st.sampled_from(WOODBURY_CONFIGS))
def test_woodbury_equals_schur(seed: int, config: tuple[list[int], int, bool]) -> None:
    """Noise-inflation messages == Schur complement (diag and full precision)."""
    dims, r, full = config
    rng = np.random.default_rng(seed)
    m, big = 3, sum(dims)
    jac = rng.normal(size=(m, r, big))
    prec = _spd(rng, m, r) if full else rng.uniform(0.2, 5.0, size=(m, r))
    c = rng.normal(size=(m, r))
    p = prec if full else prec[:, :, None] * np.eye(r)
    lam_f = np.einsum("mri,mrs,msj->mij", jac, p, jac)
    eta_f = np.einsum("mri,mrs,ms->mi", jac, p, c)
    in_lam = [jnp.asarray(_spd(rng, m, d)) for d in dims]
    in_eta = [jnp.asarray(rng.normal(size=(m, d))) for d in dims]
    off = np.concatenate([[0], np.cumsum(dims)])
    jacs = [jnp.asarray(jac[:, :, off[t] : off[t + 1]]) for t in range(len(dims))]
    fast = _woodbury(jacs, jnp.asarray(prec), jnp.asarray(c), in_eta, in_lam)
    slow = _schur(jnp.asarray(eta_f), jnp.asarray(lam_f), in_eta, in_lam)
    for (ef, lf), (es, ls) in zip(fast, slow, strict=True):
        np.testing.assert_allclose(np.asarray(lf), np.asarray(ls), rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(np.asarray(ef), np.asarray(es), rtol=1e-7, atol=1e-8)


def test_woodbury_accurate_with_flat_incoming() -> None:
    """Nearly flat incoming messages: Woodbury stays accurate where Schur cancels.

    A 3-row factor between two 3-dim nodes, incoming precision 1e-9 on the
    other slot: the exact message precision is about 1e-9 (the factor says
    nothing absolute about either node). Schur subtracts two O(1) matrices.
    """
    rng = np.random.default_rng(0)
    ja, jb = rng.normal(size=(1, 3, 3)), rng.normal(size=(1, 3, 3))
    prec = np.full((1, 3), 1e3)
    eps = 1e-9
    in_lam = [jnp.asarray(eps * np.eye(3)[None]), jnp.asarray(np.eye(3)[None])]
    in_eta = [jnp.zeros((1, 3)), jnp.zeros((1, 3))]
    out = _woodbury([jnp.asarray(ja), jnp.asarray(jb)], jnp.asarray(prec), jnp.zeros((1, 3)), in_eta, in_lam)
    # exact (message to b): J_b^T (P^{-1} + J_a J_a^T / eps)^{-1} J_b, evaluated stably in closed form
    s_mat = np.diag(1 / prec[0]) + ja[0] @ ja[0].T / eps
    exact = jb[0].T @ np.linalg.solve(s_mat, jb[0])
    np.testing.assert_allclose(np.asarray(out[1][1])[0], exact, rtol=1e-6)
    assert np.all(np.linalg.eigvalsh(np.asarray(out[1][1])[0]) > 0)


def test_rank1_flat_neighbour_no_cancellation() -> None:
    """A nearly flat incoming message on one slot must not wreck the others.

    With q_total - q_s the huge q of the flat slot would cancel catastrophically;
    the exclusive prefix/suffix sums keep the message to the flat slot exact.
    """
    j = [jnp.ones((1, 1)), jnp.ones((1, 1)), jnp.ones((1, 1))]
    in_lam = [jnp.full((1, 1, 1), 1e-14), jnp.full((1, 1, 1), 1.0), jnp.full((1, 1, 1), 1.0)]
    in_eta = [jnp.zeros((1, 1)), jnp.ones((1, 1)), jnp.ones((1, 1))]
    out = algebra.rank1_messages(j, jnp.ones((1,)), jnp.zeros((1,)), in_eta, in_lam)
    # Message to slot 0: residual x0 + x1 + x2 = 0 with x1, x2 ~ N(1, 1): x0 ~ N(-2, 1 + 2).
    lam0 = float(out[0][1][0, 0, 0])
    eta0 = float(out[0][0][0, 0])
    assert lam0 == pytest.approx(1.0 / 3.0, rel=1e-12)
    assert eta0 / lam0 == pytest.approx(-2.0, rel=1e-12)


@pytest.mark.parametrize("scale", [1e-14, 1e-6, 1.0, 1e6, 1e12])
def test_pairwise_scalar_messages_exact_for_flat_and_sharp_neighbours(scale: float) -> None:
    """Two scalar slots (chains, grids): x0 - 2 x1 = 3 with precision 5, incoming
    messages N(1, 1/scale) on x1 and N(-2, 1) on x0. Message to x0: the residual's
    variance 1/5 grows by 4/scale and its target 3 by 2 * 1 (x1's predicted
    mean), in closed form, from a floored flat neighbour to a near-certain one."""
    j = [jnp.ones((1, 1)), jnp.full((1, 1), -2.0)]
    in_lam = [jnp.ones((1, 1, 1)), jnp.full((1, 1, 1), scale)]
    in_eta = [jnp.full((1, 1), -2.0), jnp.full((1, 1), scale)]
    out = algebra.rank1_messages(j, jnp.full((1,), 5.0), jnp.full((1,), 3.0), in_eta, in_lam)
    lam0, eta0 = float(out[0][1][0, 0, 0]), float(out[0][0][0, 0])
    assert lam0 == pytest.approx(1.0 / (0.2 + 4.0 / scale), rel=1e-10)
    assert eta0 / lam0 == pytest.approx(3.0 + 2.0, rel=1e-10)
    # message to x1: -2 x1 = 3 - x0 with x0 ~ N(-2, 1): x1 ~ N(-2.5, (1/5 + 1) / 4)
    lam1, eta1 = float(out[1][1][0, 0, 0]), float(out[1][0][0, 0])
    assert lam1 == pytest.approx(4.0 / 1.2, rel=1e-10)
    assert eta1 / lam1 == pytest.approx(-2.5, rel=1e-10)


def _marginal_of_joint(eta: jax.Array, lam: jax.Array, lo: int, hi: int) -> tuple[jax.Array, jax.Array]:
    """Marginal information form of the index block ``[lo, hi)`` of a dense joint:
    the Schur complement ``lam_ss - lam_so lam_oo^{-1} lam_os`` (a reference)."""
    others = np.r_[0:lo, hi : lam.shape[-1]]
    a_oo = lam[..., others[:, None], others]
    l_os = lam[..., others, lo:hi]
    rhs = jnp.concatenate([l_os, eta[..., others, None]], axis=-1)
    sol = algebra.spd_solve(a_oo, rhs)
    corr = jnp.einsum("...ji,...jk->...ik", l_os, sol)
    return eta[..., lo:hi] - corr[..., :, -1], lam[..., lo:hi, lo:hi] - corr[..., :, :-1]


def test_marginal_of_joint_equals_inverse_block() -> None:
    rng = np.random.default_rng(0)
    lam = _spd(rng, 2, 5)
    eta = rng.normal(size=(2, 5))
    e, lm = _marginal_of_joint(jnp.asarray(eta), jnp.asarray(lam), 1, 3)
    cov = np.linalg.inv(lam)
    np.testing.assert_allclose(np.linalg.inv(np.asarray(lm)), cov[:, 1:3, 1:3], rtol=1e-9)
    np.testing.assert_allclose(np.linalg.solve(np.asarray(lm), np.asarray(e)[..., None])[..., 0],
                               np.einsum("mij,mj->mi", cov, eta)[:, 1:3], rtol=1e-9)


# ---------------------------------------------------------------------------
# Linearization


def _affine_residual(inp: dict[str, jax.Array], a: jax.Array, b: jax.Array) -> jax.Array:
    return inp["A"] @ a + inp["B"] @ b - inp["y"]


def _factor_information(
    jac: jax.Array, precision: jax.Array, r0: jax.Array, x0: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Information form of a factor linearized at ``x0``: ``r(x) ~= r0 + J (x - x0)``."""
    return algebra.information_from_target(jac, precision, algebra.affine_target(jac, x0, r0))


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), full=st.booleans())
def test_linearizing_linear_residual_is_exact(seed: int, full: bool) -> None:
    """For r = A a + B b - y, any linearization point gives the exact Gaussian.

    Exact: lam_f = [A B]^T P [A B], eta_f = [A B]^T P y, independent of x0.
    """
    rng = np.random.default_rng(seed)
    m, r, da, db = 3, 2, 3, 2
    inp = {"A": rng.normal(size=(m, r, da)), "B": rng.normal(size=(m, r, db)), "y": rng.normal(size=(m, r))}
    prec = _spd(rng, m, r) if full else rng.uniform(0.5, 3.0, size=(m, r))
    xa, xb = rng.normal(size=(m, da)) * 5, rng.normal(size=(m, db)) * 5
    r0, (ja, jb) = algebra.linearize(
        _affine_residual, jax.tree_util.tree_map(jnp.asarray, inp), [jnp.asarray(xa), jnp.asarray(xb)]
    )
    jac = jnp.concatenate([ja, jb], axis=-1)
    eta_f, lam_f = _factor_information(jac, jnp.asarray(prec), r0, jnp.concatenate([xa, xb], -1))
    ab = np.concatenate([inp["A"], inp["B"]], axis=-1)
    p = prec if full else prec[:, :, None] * np.eye(r)
    np.testing.assert_allclose(np.asarray(lam_f), np.einsum("mri,mrs,msj->mij", ab, p, ab), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.asarray(eta_f), np.einsum("mri,mrs,ms->mi", ab, p, inp["y"]), rtol=1e-9,
                               atol=1e-9)
    # whiten_sq is the Mahalanobis norm of the residual at the point
    np.testing.assert_allclose(
        np.asarray(algebra.whiten_sq(r0, jnp.asarray(prec))), np.einsum("mr,mrs,ms->m", np.asarray(r0), p, r0)
    )


def test_linearize_scalar_residual_and_unbatched_inputs() -> None:
    """A scalar return counts as R = 1; inputs=None is allowed."""
    r0, (j,) = algebra.linearize(lambda _, x: jnp.sin(x[0]) * x[1], None, [jnp.asarray([[0.3, 2.0]])],
                                 batched_inputs=False)
    assert r0.shape == (1, 1) and j.shape == (1, 1, 2)
    np.testing.assert_allclose(np.asarray(j)[0, 0], [np.cos(0.3) * 2.0, np.sin(0.3)], rtol=1e-12)


# ---------------------------------------------------------------------------
# Robust weights


@SETTINGS
@given(r2=st.floats(0.0, 1e8), k=st.floats(0.01, 10.0))
def test_huber_weight_in_unit_interval(r2: float, k: float) -> None:
    w = float(_huber(jnp.asarray(r2), jnp.asarray(k)))
    assert 0.0 < w <= 1.0
    if np.sqrt(r2) <= k:
        assert w == 1.0
    else:
        assert w == pytest.approx(k / np.sqrt(r2), rel=1e-12)


def test_huber_weight_continuous_and_decreasing() -> None:
    r2 = jnp.linspace(0.0, 100.0, 10001)
    w = np.asarray(robust.huber_weight(r2, 1.345))
    assert np.all(np.diff(w) <= 1e-15)
    assert np.max(np.abs(np.diff(w))) < 1e-2  # no jump at |r| = k


@SETTINGS
@given(r2=st.floats(0.0, 1e8), df=st.floats(0.1, 100.0))
def test_student_t_weight(r2: float, df: float) -> None:
    """Positive, at most (df+1)/df, and exactly the scale-mixture EM weight."""
    w = float(_student(jnp.asarray(r2), jnp.asarray(df)))
    assert 0.0 < w <= (df + 1.0) / df * (1 + 1e-12)
    assert w == pytest.approx((df + 1.0) / (df + r2), rel=1e-12)


# ---------------------------------------------------------------------------
# Sparsity updates


_PARAMS = {
    "laplace": st.tuples(st.floats(1e-3, 1e2)),
    "horseshoe": st.tuples(st.floats(1e-3, 1e2)),
    "reg_horseshoe": st.tuples(st.floats(1e-3, 1e2), st.floats(1e-2, 1e2), st.floats(0.5, 50.0)),
    "ard": st.tuples(st.floats(1e-6, 10.0), st.floats(1e-6, 10.0)),
    "spike_slab": st.tuples(st.floats(1e-3, 0.999), st.floats(0.5, 10.0), st.floats(1e-4, 0.1)),
}


@pytest.mark.parametrize("kind", sorted(_PARAMS))
@SETTINGS
@given(data=st.data())
def test_sparsity_updates_finite_positive(kind: str, data: st.DataObject) -> None:
    """Every update maps any E[w^2] >= 0 (0 included) to a finite positive precision."""
    params = data.draw(_PARAMS[kind])
    s = np.concatenate([[0.0, 1e-30], data.draw(st.lists(st.floats(0.0, 1e12), min_size=1, max_size=6))])
    s = np.pad(s, (0, 8 - s.size))  # one shape per kind: one compile
    lam = np.asarray(_sparse(kind, tuple(jnp.asarray(p) for p in params), jnp.asarray(s)))
    assert np.all(np.isfinite(lam)) and np.all(lam > 0)
    assert np.all(lam >= sparsity.LAM_MIN) and np.all(lam <= sparsity.LAM_MAX)


def test_sparsity_rules_closed_forms() -> None:
    """Spot values against the documented formulas."""
    s = jnp.asarray([0.25, 4.0])
    np.testing.assert_allclose(sparsity.laplace_precision(s, 2.0), [1.0, 0.25])
    np.testing.assert_allclose(sparsity.ard_precision(s, 1.0, 0.5), [1.5 / 0.625, 1.5 / 2.5])
    s = jnp.asarray([1e-6, 4.0])
    lam = np.asarray(sparsity.spike_slab_precision(s, 0.5, 1.0, 0.01))
    assert np.all((lam >= 1.0) & (lam <= 1e4))
    # the tiny element is attributed to the spike, the large one to the slab
    assert lam[0] > 0.9e4 and lam[1] == pytest.approx(1.0, rel=1e-6)


def test_horseshoe_is_mean_field_fixed_point() -> None:
    """The closed form equals iterating the two coupled mean-field updates.

    E[1/lambda^2] = 1/(E[1/nu] + s/(2 tau^2)), E[1/nu] = 1/(1 + E[1/lambda^2]).
    """
    tau = 0.3
    for s in [1e-6, 1e-2, 0.09, 1.0, 100.0]:
        a, b = 1.0, 1.0
        for _ in range(20000):
            a = 1.0 / (b + s / (2 * tau**2))
            b = 1.0 / (1.0 + a)
        lam = float(sparsity.horseshoe_precision(jnp.asarray(s), tau))
        assert lam == pytest.approx(a / tau**2, rel=1e-8)


def test_sparsity_shrinks_small_more_than_large() -> None:
    """Heavy-tailed priors: small elements get larger precision than big ones."""
    s = jnp.asarray([1e-4, 1e-2, 1.0, 100.0])
    for kind, params in [("laplace", (0.1,)), ("horseshoe", (0.1,)), ("ard", (1e-3, 1e-3)),
                         ("reg_horseshoe", (0.1, 2.0, 4.0)), ("spike_slab", (0.2, 2.0, 0.01))]:
        lam = np.asarray(sparsity.sparsity_precision(kind, tuple(jnp.asarray(p) for p in params), s))
        assert np.all(np.diff(lam) <= 0) and lam[0] > 10 * lam[-1], kind


def test_large_spd_solve_inside_a_while_loop_matches_numpy():
    # n > UNROLL_MAX_DIM takes the Cholesky path; XLA:CPU's batched LU in a
    # while loop stalled at n >= 48 (the digits MLP's 64-weight neurons).
    import jax
    import jax.numpy as jnp
    import numpy as np

    from fglang.runtime.gbp import algebra

    rng = np.random.default_rng(0)
    m = rng.normal(size=(6, 64, 64))
    a = m @ np.swapaxes(m, -1, -2) + 64 * np.eye(64)
    b = rng.normal(size=(6, 64, 2))
    with jax.enable_x64(True):
        run = jax.jit(lambda a, b: jax.lax.fori_loop(0, 3, lambda i, x: algebra.spd_solve(a, b), b))
        x = np.asarray(run(jnp.asarray(a), jnp.asarray(b)))
    assert np.allclose(x, np.linalg.solve(a, b), rtol=1e-8, atol=1e-10)


def _depends_on(jaxpr, src_vars, target_eqn) -> bool:
    """Whether any input of ``target_eqn`` is computed (transitively) from ``src_vars``."""
    from jax.extend.core import Literal

    tainted = set(src_vars)
    for eqn in jaxpr.eqns:
        ins = [v for v in eqn.invars if not isinstance(v, Literal)]
        if eqn is target_eqn:
            return any(v in tainted for v in ins)
        if any(v in tainted for v in ins):
            tainted.update(eqn.outvars)
    raise AssertionError("target equation not in the jaxpr")


def _has_cholesky(eqn) -> bool:
    subs = [getattr(p, "jaxpr", p) for p in eqn.params.values() if hasattr(p, "eqns") or hasattr(p, "jaxpr")]
    return eqn.primitive.name == "cholesky" or any(_has_cholesky(e) for sub in subs for e in sub.eqns)


def test_large_solves_are_chained_inside_sequential_lapack_solves():
    # jaxlib's CPU LAPACK kernels block a pool thread while their batch runs on
    # the same pool; two independent batched solves in one program deadlocked
    # the 2-core machine (the digits MLP). Inside the context each large solve
    # must be computed from the previous one's result, and stay exact.
    rng = np.random.default_rng(1)
    m1, m2 = rng.normal(size=(5, 9, 9)), rng.normal(size=(7, 8, 8))
    a1, a2 = m1 @ np.swapaxes(m1, -1, -2) + 9 * np.eye(9), m2 @ np.swapaxes(m2, -1, -2) + 8 * np.eye(8)
    b1, b2 = rng.normal(size=(5, 9, 1)), rng.normal(size=(7, 8, 2))

    def two(a1, b1, a2, b2):
        with algebra.sequential_lapack_solves():
            return algebra.spd_solve(a1, b1), algebra.spd_solve(a2, b2)

    def closed(a1, b1, a2, b2):
        return algebra.spd_solve(a1, b1), algebra.spd_solve(a2, b2)

    with jax.enable_x64(True):
        args = tuple(jnp.asarray(x) for x in (a1, b1, a2, b2))
        chained = jax.make_jaxpr(two)(*args).jaxpr
        free = jax.make_jaxpr(closed)(*args).jaxpr
        x1, x2 = jax.jit(two)(*args)
    for jaxpr, expect in ((chained, True), (free, False)):
        first, second = [e for e in jaxpr.eqns if _has_cholesky(e)]
        assert first.invars[0].aval.shape == (5, 9, 9)
        # jaxpr.outvars[0] is the first solve's result
        assert _depends_on(jaxpr, [jaxpr.outvars[0]], second) is expect
    assert np.allclose(x1, np.linalg.solve(a1, b1), rtol=1e-10)
    assert np.allclose(x2, np.linalg.solve(a2, b2), rtol=1e-10)
    # the context does not leak: outside it nothing is recorded
    assert algebra._solve_order.last is None and not algebra._solve_order.active
