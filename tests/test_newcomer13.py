"""What a newcomer from Stan or GTSAM runs into (tests/newcomer13/ holds the
small models): Stan spellings get the fglang one as a hint, bad ratings of
an ordered_logistic a located bind error, angles a wrapped summary, and
map's Laplace step and local-minimum warning the robust and chi-square
treatment a least-squares user expects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_check_errors import Case, assert_formatted, check_case

import fglang
from fglang.errors import FgError
from fglang.runtime.posterior import GaussianMarginal, Posterior
from fglang.runtime.values import check_values

# -------------------------------------------------------------- Stan spellings
STAN_CASES = [
    Case(
        "stan_declaration",
        "model m\ndata N: int\nreal<lower=0> sigma;\n",
        [(3, 1, "unexpected 'real'; expected 'data', 'factor', 'fn', 'include', 'let', 'var', end of file")],
        hints={0: "this is Stan's declaration; fglang writes 'var sigma: real(lower=0)' for a parameter or "
                  "'data sigma: real(lower=0)' for data (sizes after the name, no blocks, no ';')"},
    ),
    Case(
        "stan_array_declaration",
        "model m\ndata N: int\narray[N] real y;\n",
        [(3, 1, "unexpected 'array'; expected 'data', 'factor', 'fn', 'include', 'let', 'var', end of file")],
        hints={0: "this is Stan's declaration; fglang writes 'var y[N]: real' for a parameter or "
                  "'data y[N]: real' for data (sizes after the name, no blocks, no ';')"},
    ),
    Case(
        "stan_simplex_declaration",
        "model m\ndata K: int\nsimplex[K] theta;\n",
        [(3, 1, "unexpected 'simplex'; expected 'data', 'factor', 'fn', 'include', 'let', 'var', end of file")],
        hints={0: "this is Stan's declaration; fglang writes 'var theta: simplex[K]' for a parameter or "
                  "'data theta: simplex[K]' for data (sizes after the name, no blocks, no ';')"},
    ),
    Case(
        "stan_int_declaration",
        "model m\nint<lower=0> N;\n",
        [(2, 1, "unexpected 'int'; expected 'data', 'factor', 'fn', 'include', 'let', 'var', end of file")],
        hints={0: "this is Stan's declaration; fglang writes 'data N: int(lower=0)' (sizes after the name, no ';')"},
    ),
    Case(
        "stan_data_block",
        "model m\ndata {\n  int N;\n}\n",
        [(2, 6, "unexpected '{'; expected a name")],
        hints={0: "fglang has no Stan blocks: after 'model NAME', declare 'data NAME: TYPE' and 'var NAME: TYPE', "
                  "'let NAME = EXPR' for transformed parameters, and 'factor NAME: y ~ DIST(...)' for the model's "
                  "statements"},
    ),
    Case(
        "stan_model_block",
        "model m\nvar mu: real\nmodel {\n  mu ~ normal(0, 1);\n}\n",
        [(3, 1, "unexpected 'model'; expected 'data', 'factor', 'fn', 'include', 'let', 'var', end of file")],
        hints={0: "fglang has no Stan blocks: after 'model NAME', declare 'data NAME: TYPE' and 'var NAME: TYPE', "
                  "'let NAME = EXPR' for transformed parameters, and 'factor NAME: y ~ DIST(...)' for the model's "
                  "statements"},
    ),
    Case(
        "stan_bounds",
        "model m\nvar sigma: real<lower=0>\n",
        [(2, 16, "unexpected '<'; expected '(', '[', '~', a new line")],
        hints={0: "fglang writes bounds in parentheses: 'real(lower=0)' (or 'positive'), not Stan's "
                  "'real<lower=0>'"},
    ),
    Case(
        "stan_semicolon",
        "model m\nvar sigma: positive;\n",
        [(2, 20, "unexpected character ';'")],
        hints={0: "fglang statements end at the end of the line: drop the ';'"},
    ),
    Case(
        "stan_target",
        "model m\nvar x: real\ntarget += -0.5 * x^2\n",
        [(3, 1, "unexpected 'target'; expected 'data', 'factor', 'fn', 'include', 'let', 'var', end of file")],
        hints={0: "Stan's 'target += EXPR' is 'factor NAME: potential EXPR' in fglang (no ';')"},
    ),
    Case(
        "stan_sampling_statement",
        "model m\nvar x: real\nx ~ normal(0, 1)\n",
        [(3, 1, "unexpected 'x'; expected 'data', 'factor', 'fn', 'include', 'let', 'var', end of file")],
        hints={0: "a Stan sampling statement 'y ~ DIST(...);' is 'factor NAME: y ~ DIST(...)' in fglang (no ';')"},
    ),
    Case(
        "stan_lpdf_bar",
        "model m\nvar x: real\nfactor p: potential normal_lpdf(x | 0, 2 * 1)\n",
        [(3, 35, "unexpected character '|'")],
        hints={0: "'normal_lpdf' is Stan's spelling; fglang writes logp(normal(0, 2 * 1), x) (Stan's "
                  "normal_lpdf(x | 0, 2 * 1)), or a factor 'factor NAME: x ~ normal(0, 2 * 1)'"},
    ),
    Case(
        "stan_lpmf_commas",
        "model m\nvar x: positive\nfactor p: potential poisson_lpmf(3, x)\n",
        [(3, 21, "unknown function 'poisson_lpmf'")],
        hints={0: "'poisson_lpmf' is Stan's spelling; fglang writes logp(poisson(ARGS), value) (Stan's "
                  "poisson_lpmf(value | ARGS)), or a factor 'factor NAME: value ~ poisson(ARGS)'"},
    ),
    Case(
        "stan_lpdf_after_tilde",
        "model m\nvar x: real\nfactor f: x ~ normal_lpdf(0, 1)\n",
        [(3, 15, "unknown distribution 'normal_lpdf'; did you mean 'normal'?")],
        hints={0: "'normal_lpdf' is Stan's spelling; fglang writes logp(normal(ARGS), value) (Stan's "
                  "normal_lpdf(value | ARGS)), or a factor 'factor NAME: value ~ normal(ARGS)'"},
    ),
    Case(
        "stan_user_lpdf",
        "model m\nvar x: real\nfactor p: potential foo_lpdf(x, 0, 1)\n",
        [(3, 21, "unknown function 'foo_lpdf'")],
        hints={0: "'foo_lpdf' is Stan's spelling of a user-defined density; fglang has no _lpdf functions: "
                  "write it as 'fn foo_logp(value: real, ...) -> real { return ... }' and add it with "
                  "'factor NAME: potential foo_logp(value, ...)'"},
    ),
]


@pytest.mark.parametrize("case", STAN_CASES, ids=lambda c: c.id)
def test_stan_spelling_gets_the_fglang_one(case: Case) -> None:
    check_case(case)


# -------------------------------------------------------------- ordered_logistic ratings
ORDERED = Path(__file__).parent / "newcomer13" / "ordered.fg"
RATINGS = {"N": 4, "K": 3, "x": [0.1, 0.2, -0.3, 1.0]}


@pytest.mark.parametrize(("y", "where", "extra"), [
    ([1, 2, 4, 3], "obs[n=2] (value 4)", "; or give the cutpoints 4 entries if 4 is a real rating"),  # Stan's 1..K+1
    ([0, -1, 2, 1], "obs[n=1] (value -1)", ""),
])
def test_ordered_logistic_rating_out_of_range_is_located(y: list[int], where: str, extra: str) -> None:
    model = fglang.load(ORDERED)
    with pytest.raises(FgError) as info:
        model.fit(dict(RATINGS, y=y), backend="map")
    err = info.value
    [d] = err.diagnostics
    assert (d.span.line, d.span.col) == (9, 1)
    assert d.message == ("the rating of ordered_logistic factor 'obs' must be a whole number in 0..3 "
                         f"(3 cutpoints give 4 outcomes, 0-based), but is not at {where}")
    assert d.hint == ("ratings count from 0: subtract 1 from 1-based (Stan) data, whose 1..4 are 0..3 here" + extra)
    assert_formatted(err, str(ORDERED))


def test_ordered_logistic_ratings_in_range_pass_the_check() -> None:
    bm = fglang.load(ORDERED).bind(dict(RATINGS, y=[0, 1, 3, 2]))
    check_values(bm)  # 0..K are all valid: no error


# -------------------------------------------------------------- headings near pi
def wrap(a: np.ndarray) -> np.ndarray:
    return (np.asarray(a) + np.pi) % (2.0 * np.pi) - np.pi


def _straddling(mean: float, sd: float, n: int = 4000) -> np.ndarray:
    """Draws of an angle about ``mean`` stored as computed, in (-pi, pi]: near pi they straddle the cut."""
    a = mean + sd * np.random.default_rng(0).standard_normal(n)
    return wrap(a)


@pytest.mark.parametrize("group", ["rot2", "pose2"])
def test_heading_sd_and_quantiles_are_taken_around_the_mean(group: str) -> None:
    theta = _straddling(np.pi - 0.02, 0.05)
    assert theta.min() < -3.0 and theta.max() > 3.0  # the draws do straddle the cut
    if group == "rot2":
        draws, mean, shape = theta, np.asarray(np.pi - 0.02), ()
    else:
        xy = np.random.default_rng(1).normal([1.0, 2.0], 0.1, (theta.size, 2))
        draws, mean, shape = np.column_stack([xy, theta]), np.array([1.0, 2.0, np.pi - 0.02]), (3,)
    post = Posterior("m", "map", {"h": draws[None]}, gaussian={"h": GaussianMarginal(mean, np.eye(len(shape) or 1), (),
                                                                                     shape, group)},
                     node_shapes={"h": ()})
    sd = np.atleast_1d(post.sd("h"))
    assert abs(sd[-1] - 0.05) < 0.003  # the raw values' sd is ~3.1
    rows = post.summary()
    heading = rows[-1]
    assert heading["5%"] == pytest.approx(np.pi - 0.02 - 1.645 * 0.05, abs=0.01)
    assert heading["95%"] == pytest.approx(np.pi - 0.02 + 1.645 * 0.05, abs=0.01)  # past pi: not wrapped to -3.06
    if group == "pose2":  # x and y are not angles: their numbers as they are
        np.testing.assert_allclose(sd[:2], draws[:, :2].std(axis=0, ddof=1))


def test_real_var_near_pi_is_not_wrapped() -> None:
    x = np.r_[np.full(50, 3.1), np.full(50, -3.1)]  # a plain real var: its values are what they are
    post = Posterior("m", "mcmc", {"x": x[None]}, node_shapes={"x": ()})
    assert post.summary()[0]["sd"] == pytest.approx(x.std(ddof=1))
    assert post.summary()[0]["5%"] == pytest.approx(-3.1)


def test_map_heading_near_pi_has_its_laplace_sd() -> None:
    """End to end: map's draws of a rot2 and a pose2 measured at +-3.1 (sd 0.1) cross pi; the summary's sd is
    the Laplace sd 0.1 (it was 2.87 for the rot2 and 2.93 for the pose2's theta)."""
    model = fglang.load(Path(__file__).parent / "newcomer13" / "heading.fg")
    post = model.fit({"z": 3.1, "zp": [1.0, 2.0, -3.1]}, backend="map", draws=2000)
    rows = {r["name"]: r for r in post.summary()}
    for name, mean in (("r", 3.1), ("p[2]", -3.1)):
        assert rows[name]["sd"] == pytest.approx(0.1, rel=0.05)
        assert rows[name]["5%"] == pytest.approx(mean - 0.1645, abs=0.02)
        assert rows[name]["95%"] == pytest.approx(mean + 0.1645, abs=0.02)


# -------------------------------------------------------------- robust factors' Laplace curvature
LINE_X = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0])
LINE_Y = 0.3 + 1.2 * LINE_X + np.array([0.1, -0.2, 0.05, 6.0, -0.1, 0.15, -4.0])  # two outliers


def _robust_line_cost(w):
    """robust_line.fg's negative log density (up to a constant), written out independently."""
    import jax.numpy as jnp

    u = (LINE_Y - w[0] - w[1] * LINE_X) / 0.5
    a = jnp.abs(u)
    m = jnp.minimum(a, 1.345)
    return jnp.sum(0.5 * (w / 10) ** 2) + jnp.sum(m * (a - 0.5 * m)) + jnp.sum(2.0 * jnp.log1p(u * u / 3))


def test_map_laplace_uses_the_robust_cost_curvature() -> None:
    """The Laplace covariance of a Huber + Student-t line with two outliers is the inverse of the robust cost's
    exact Hessian (jax.hessian at the mode; the residuals are linear, so J^T rho'' J is exact). With LM's IRLS
    weights it was [[0.0225, -0.0055], [-0.0055, 0.0238]] against the true [[0.0239, -0.0045], [-0.0045, 0.0281]]:
    w[1]'s sd 8% too small."""
    import jax

    post = fglang.load(Path(__file__).parent / "newcomer13" / "robust_line.fg").fit(
        {"N": LINE_X.size, "x": LINE_X, "y": LINE_Y}, backend="map")
    mode = post.mean("w")
    with jax.enable_x64(True):
        hess = np.asarray(jax.hessian(_robust_line_cost)(jax.numpy.asarray(mode)))
        assert np.max(np.abs(jax.grad(_robust_line_cost)(jax.numpy.asarray(mode)))) < 1e-4  # it is the mode
    np.testing.assert_allclose(post.cov("w"), np.linalg.inv(hess), rtol=1e-6, atol=1e-9)
    assert post.attrs["laplace_curvature"] == "robust"
    assert not any("IRLS" in w for w in post.warnings())


def test_map_flat_robust_cost_falls_back_on_irls_and_says_so() -> None:
    """Between two Huber outliers the cost is flat (rho'' = 0): the robust Hessian is singular, so the Laplace
    step uses the IRLS weights and the posterior warns that its sd is only a rough guide."""
    post = fglang.load(Path(__file__).parent / "newcomer13" / "flat_huber.fg").fit({"y": [0.0, 100.0]}, backend="map",
                                                                                      init={"m": 50.0})
    assert post.attrs["laplace_curvature"] == "irls"
    assert np.isfinite(post.sd("m"))
    assert any("IRLS weights" in w for w in post.warnings())


# -------------------------------------------------------------- map's local-minimum warning
def _pose_loop(n: int = 12, noise: float = 0.01):
    """A circle of ``n`` pose2 poses (one full turn) with three loop closures, and its odometry-chained start."""
    from fglang.compiler import lie_jax as L

    rng = np.random.default_rng(0)
    ang = 2 * np.pi * np.arange(n) / n
    truth = np.stack([3 * np.cos(ang), 3 * np.sin(ang), wrap(ang + np.pi / 2)], 1)
    src, dst = np.r_[np.arange(n - 1), [0, 1, n // 2]], np.r_[np.arange(1, n), [n - 1, n - 2, 0]]
    rel = np.asarray(L.between("pose2", truth[src], truth[dst])) + rng.normal(0, noise, (src.size, 3))
    data = {"N": n, "M": int(src.size), "src": src, "dst": dst, "z": rel, "sd": np.full((src.size, 3), noise)}
    chained = [truth[0]]
    for k in range(n - 1):
        chained.append(np.asarray(L.compose("pose2", chained[-1], rel[k])))
    return data, {"pose": np.array(chained)}


def test_map_warns_of_a_local_minimum_and_not_at_the_optimum() -> None:
    """From the identity LM stops at cost 80,405 on a 12-pose loop (45 residuals, 36 unknowns: 2 x cost should be
    about 9); from the chained odometry it reaches 1.56, the optimum, and says nothing."""
    model = fglang.load(Path(__file__).parent / "newcomer13" / "pose_loop.fg")
    data, odometry = _pose_loop()
    trapped = model.fit(data, backend="map")
    [warning] = [w for w in trapped.warnings() if "local minimum" in w]
    assert "--init FILE" in warning and "odometry" in warning and "--backend gbp" in warning
    assert "9 degrees of freedom" in warning
    assert (trapped.attrs["residuals"], trapped.attrs["chi2_dof"]) == (45, 9)
    good = model.fit(data, backend="map", init=odometry)
    assert good.attrs["cost"] < 10 < trapped.attrs["cost"]
    assert good.attrs["chi2_log10_p"] > -2
    assert not any("local minimum" in w for w in good.warnings())


def test_cli_prints_the_local_minimum_warning(tmp_path: Path) -> None:
    """On the command line too; a model whose stated sd fits its data's spread gets no warning."""
    import json

    from typer.testing import CliRunner

    from fglang.cli import app

    y = (5.0 + np.random.default_rng(2).normal(0, 1.0, 30)).tolist()
    model = str(Path(__file__).parent / "newcomer13" / "level.fg")
    out = {}
    for sd in (1.0, 0.01):  # the right sd; one 100 times too small (2 x cost ~ 3e5 on 30 degrees of freedom)
        path = tmp_path / f"d{sd}.json"
        path.write_text(json.dumps({"N": 30, "y": y, "sd": sd}))
        result = CliRunner().invoke(app, ["fit", model, "--data", str(path), "--backend", "map", "-q"])
        assert result.exit_code == 0, result.output
        out[sd] = " ".join(result.output.split())  # the console wraps long lines
    assert "local minimum" not in out[1.0]
    # 30 observations and the prior's residual, less one unknown
    assert "warning: MAP's optimum has cost" in out[0.01] and "30 degrees of freedom" in out[0.01]


def test_fglang_check_with_data_finds_an_out_of_range_rating(tmp_path) -> None:
    """`fglang check --data` makes the value checks a fit makes first
    (`Model.check_data`), so the bad rating is found without fitting."""
    import json

    from typer.testing import CliRunner

    from fglang.cli import app

    bad, good = tmp_path / "bad.json", tmp_path / "good.json"
    bad.write_text(json.dumps(dict(RATINGS, y=[1, 2, 4, 3])))
    good.write_text(json.dumps(dict(RATINGS, y=[0, 1, 3, 2])))
    runner = CliRunner()
    r = runner.invoke(app, ["check", str(ORDERED), "--data", str(bad)])
    assert r.exit_code == 1
    assert f"{ORDERED}:9:1: the rating of ordered_logistic factor 'obs' must be a whole number in 0..3" in r.stderr
    r = runner.invoke(app, ["check", str(ORDERED), "--data", str(good)])
    assert r.exit_code == 0 and "well formed" in r.stdout
