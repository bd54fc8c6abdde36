"""Binding data: family sizes, slot node ids, data validation and conversion,
and the vectorized evaluation of each family against NumPy by hand."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SPEC_MODELS, bind_error, expected_members, spec_data

import fglang


def bind(src: str, data: dict, file: str = "m.fg"):
    return fglang.compile(src, file).bind(data)


def evaluate(bound, family: str, values: dict[str, np.ndarray]) -> dict:
    fam = bound.families[family]
    slots = tuple(bound.gather(s, values) for s in fam.slots)
    return fam.evaluate(bound.data, fam.idx, slots)


# ------------------------------------------------------------------ SPEC models
@pytest.mark.parametrize("name", sorted(SPEC_MODELS))
def test_spec_model_family_sizes(name):
    data = spec_data()[name]
    b = fglang.compile(SPEC_MODELS[name], f"{name}.fg").bind(data)
    got = {k: f.n_members for k, f in b.families.items()}
    assert got == expected_members(name, data)


@pytest.mark.parametrize("T", [1, 2, 50])
def test_random_walk_sizes(T):
    b = bind(SPEC_MODELS["random_walk"], {"T": T, "y": np.zeros(T)})
    assert {k: f.n_members for k, f in b.families.items()} == {"init": 1, "step": T - 1, "obs": T}
    assert b.sizes == {"T": T}
    assert b.data["q"] == pytest.approx(0.1)  # the default


@pytest.mark.parametrize("H, W", [(1, 1), (2, 3), (5, 4)])
def test_denoise_sizes_and_grid_slices(H, W):
    b = bind(SPEC_MODELS["denoise"], {"H": H, "W": W, "img": np.zeros((H, W))})
    fams = b.families
    assert (fams["obs"].n_members, fams["right"].n_members, fams["down"].n_members) == (
        H * W,
        H * (W - 1),
        (H - 1) * W,
    )
    grid = np.arange(H * W).reshape(H, W)
    right = fams["right"]
    assert right.member_grid == (H, W - 1)
    # slot 0 is x[i, j+1], slot 1 is x[i, j]
    np.testing.assert_array_equal(right.slots[0].node_ids, grid[:, 1:].ravel())
    np.testing.assert_array_equal(right.slots[1].node_ids, grid[:, :-1].ravel())
    if W > 1:
        assert right.slots[0].grid_slice == (slice(0, H), slice(1, W))
    down = fams["down"]
    np.testing.assert_array_equal(down.slots[0].node_ids, grid[1:, :].ravel())
    np.testing.assert_array_equal(down.slots[1].node_ids, grid[:-1, :].ravel())


def test_random_walk_slots():
    T = 6
    b = bind(SPEC_MODELS["random_walk"], {"T": T, "y": np.arange(T, dtype=float)})
    step = b.families["step"]
    np.testing.assert_array_equal(step.idx["t"], np.arange(1, T))
    np.testing.assert_array_equal(step.slots[0].node_ids, np.arange(1, T))
    np.testing.assert_array_equal(step.slots[1].node_ids, np.arange(0, T - 1))
    assert step.slots[0].grid_slice == (slice(1, T),)
    assert step.slots[1].grid_slice == (slice(0, T - 1),)
    init = b.families["init"]
    np.testing.assert_array_equal(init.slots[0].node_ids, [0])


def test_pose_graph_slots_are_gathers_through_the_edge_lists():
    data = spec_data()["pose_graph_2d"]
    b = bind(SPEC_MODELS["pose_graph_2d"], data)
    pose = b.variables["pose"]
    assert (pose.node_shape, pose.value_shape, pose.n_nodes, pose.node_dim) == ((4,), (3,), 4, 3)
    odo = b.families["odo"]
    assert [s.var for s in odo.slots] == ["pose", "pose"]
    np.testing.assert_array_equal(odo.slots[0].node_ids, data["src"])
    np.testing.assert_array_equal(odo.slots[1].node_ids, data["dst"])
    assert odo.slots[0].grid_slice is None


def test_eight_schools_let_is_pushed_down_to_one_node_per_member():
    b = bind(SPEC_MODELS["eight_schools"], spec_data()["eight_schools"])
    obs = b.families["obs"]
    by_var = {s.var: s.node_ids for s in obs.slots}
    np.testing.assert_array_equal(by_var["mu"], np.zeros(8))
    np.testing.assert_array_equal(by_var["tau"], np.zeros(8))
    np.testing.assert_array_equal(by_var["theta_raw"], np.arange(8))
    prior = b.families["theta_raw__prior"]
    assert prior.ir.prior_of == "theta_raw" and prior.n_members == 8


def test_mlp_block_slot():
    data = spec_data()["mlp_classifier"]
    b = bind(SPEC_MODELS["mlp_classifier"], data)
    out = b.families["out"]
    (h,) = [s for s in out.slots if s.var == "h"]
    N, H = data["N"], data["H"]
    assert h.block_shape == (H,)
    np.testing.assert_array_equal(h.node_ids, np.arange(N * H).reshape(N, H))
    layer1 = b.families["layer1"]
    (w1,) = [s for s in layer1.slots if s.var == "W1"]
    np.testing.assert_array_equal(w1.node_ids, np.tile(np.arange(H), N))


# ------------------------------------------------------------------ index domains
@pytest.mark.parametrize("N", [0, 1, 2, 5])
def test_dependent_range_counts_pairs(N):
    b = bind(
        "model m\ndata N: int\nvar x[N]: real\nfactor f[i in 0:N, j in i+1:N]: 0 ~ normal(x[i] - x[j], 1)\n", {"N": N}
    )
    f = b.families["f"]
    assert f.n_members == N * (N - 1) // 2
    pairs = [(i, j) for i in range(N) for j in range(i + 1, N)]
    np.testing.assert_array_equal(f.slots[0].node_ids, [p[0] for p in pairs])
    np.testing.assert_array_equal(f.slots[1].node_ids, [p[1] for p in pairs])
    assert f.member_grid is None or N <= 1


def test_empty_ranges_over_data_are_empty_families():
    src = "model m\ndata T: int\nvar x[T]: real\nfactor step[t in 1:T]: x[t] ~ normal(x[t-1], 1)\n"
    b = bind(src, {"T": 0})
    assert b.families["step"].n_members == 0
    assert b.families["step"].slots[0].node_ids.shape == (0,)


def test_reduction_slot_is_padded_and_masked():
    src = "model m\ndata T: int\nvar x[T]: real\nvar z: real\n"
    src += "factor f[t in 0:T]: 0 ~ normal(sum[k in 0:t](x[k]) + z, 1)\n"
    b = bind(src, {"T": 4})
    x, z = b.families["f"].slots
    assert x.var == "x" and len(x.reductions) == 1 and x.block_shape == (3,)
    expect_mask = np.array([[k < t for k in range(3)] for t in range(4)])
    np.testing.assert_array_equal(x.mask, expect_mask)
    np.testing.assert_array_equal(x.node_ids, np.where(expect_mask, np.arange(3), 0))
    assert z.reductions == () and z.mask is None
    out = evaluate(b, "f", {"x": np.array([1.0, 10.0, 100.0, 1000.0]), "z": np.array(0.5)})
    np.testing.assert_allclose(out["args"]["mu"], [0.5, 1.5, 11.5, 111.5])


def test_ar_k_reduction_over_data():
    src = (
        "model m\ndata T: int\ndata K: int\ndata y[T]: real\nvar beta: real[K]\nvar s: positive\n"
        "factor ar[t in K:T]: y[t] ~ normal(sum[k in 0:K](beta[k] * y[t-1-k]), s)\n"
    )
    y = np.arange(1.0, 7.0)
    b = bind(src, {"T": 6, "K": 2, "y": y})
    assert b.families["ar"].n_members == 4
    beta = np.array([0.5, -2.0])
    out = evaluate(b, "ar", {"beta": beta, "s": np.array(1.0)})
    expect = [sum(beta[k] * y[t - 1 - k] for k in range(2)) for t in range(2, 6)]
    np.testing.assert_allclose(out["args"]["mu"], expect, rtol=1e-6)
    np.testing.assert_allclose(out["lhs"], y[2:])


# ------------------------------------------------------------------ evaluation
def test_random_walk_step_evaluates_vectorized():
    T = 5
    b = bind(SPEC_MODELS["random_walk"], {"T": T, "y": np.zeros(T), "q": 0.3})
    x = np.array([0.0, 1.0, 3.0, 6.0, 10.0])
    out = evaluate(b, "step", {"x": x})
    np.testing.assert_allclose(out["lhs"], x[1:])
    np.testing.assert_allclose(out["args"]["mu"], x[:-1])
    np.testing.assert_allclose(out["args"]["sd"], np.full(T - 1, 0.3))


def test_pose_graph_residuals_match_numpy():
    data = spec_data()["pose_graph_2d"]
    b = bind(SPEC_MODELS["pose_graph_2d"], data)
    pose = np.random.default_rng(3).normal(size=(4, 3))
    out = evaluate(b, "odo", {"pose": pose})
    a, c = pose[data["src"]], pose[data["dst"]]
    cos, sin = np.cos(a[:, 2]), np.sin(a[:, 2])
    dx, dy = c[:, 0] - a[:, 0], c[:, 1] - a[:, 1]
    pred = np.stack([cos * dx + sin * dy, -sin * dx + cos * dy, c[:, 2] - a[:, 2]], axis=1)
    err = data["z"] - pred
    err[:, 2] = np.pi - np.mod(np.pi - err[:, 2], 2 * np.pi)
    np.testing.assert_allclose(np.asarray(out["args"]["mu"]), err, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["args"]["sd"]), data["sd"], rtol=1e-6)


def test_derived_let_evaluates():
    b = bind(SPEC_MODELS["eight_schools"], spec_data()["eight_schools"])
    d = b.derived["theta"]
    assert d.shape == (8,)
    values = {"mu": np.array(1.0), "tau": np.array(2.0), "theta_raw": np.arange(8.0)}
    got = d.evaluate(b.data, tuple(b.gather(s, values)[0] for s in d.slots))
    np.testing.assert_allclose(np.asarray(got), 1.0 + 2.0 * np.arange(8.0))


# ------------------------------------------------------------------ data handling
def test_data_defaults_and_overrides():
    src = "model m\ndata N: int\ndata s[N]: positive = 2\ndata q: positive = 0.1\n"
    b = bind(src, {"N": 3})
    np.testing.assert_array_equal(b.data["s"], [2.0, 2.0, 2.0])
    assert b.data["q"] == pytest.approx(0.1)
    b = bind(src, {"N": 2, "s": [1, 4], "q": 3})
    np.testing.assert_array_equal(b.data["s"], [1.0, 4.0])
    assert b.data["s"].dtype == np.float64 and b.data["q"] == 3.0


def test_int_and_bool_data_conversion():
    src = "model m\ndata N: int\ndata k[N]: int\ndata flag[N]: bool\ndata x[N]: real\n"
    b = bind(src, {"N": 3.0, "k": [1.0, 2.0, 3.0], "flag": [True, False, True], "x": [True, False, True]})
    assert b.sizes == {"N": 3}
    assert b.data["k"].dtype == np.int64 and b.data["flag"].dtype == np.int64
    np.testing.assert_array_equal(b.data["flag"], [1, 0, 1])
    assert b.data["x"].dtype == np.float64


def test_bool_data_must_be_0_or_1():
    err = bind_error("model m\ndata N: int\ndata flag[N]: bool\n", {"N": 2, "flag": [0, 2]})
    assert err.diagnostics[0].message == "data 'flag' in <data> is declared bool but holds values other than 0/1"


@pytest.mark.parametrize(
    "decl, value, message",
    [
        ("data p: unit", 1.0, "data 'p' in <data> must lie in (0, 1)"),
        ("data p: real(lower=2)", 1.0, "data 'p' in <data> must be >= 2, but holds 1"),
        ("data p: real(upper=2)", 3.0, "data 'p' in <data> must be <= 2, but holds 3"),
        (
            "data p: simplex[2]",
            [0.5, 0.6],
            "data 'p' in <data> must be a simplex (non-negative, summing to 1 along its last axis)",
        ),
        ("data p: ordered[2]", [1.0, 1.0], "data 'p' in <data> must be strictly increasing along its last axis"),
        ("data p: int", float("inf"), "data 'p' in <data> has NaN or inf but is declared int"),
    ],
)
def test_data_domains(decl, value, message):
    err = bind_error(f"model m\n{decl}\n", {"p": value})
    assert [d.message for d in err.diagnostics] == [message]
    assert (err.diagnostics[0].span.line, err.diagnostics[0].span.col) == (2, 1)


def test_symbolic_shapes_are_checked_with_the_data_sizes():
    src = SPEC_MODELS["sparse_regression"].replace("X @ w", "X @ y")
    # N == D: the product is fine
    b = bind(src, {"N": 3, "D": 3, "X": np.eye(3), "y": np.zeros(3)})
    assert b.families["lik"].n_members == 1
    err = bind_error(src, {"N": 3, "D": 2, "X": np.ones((3, 2)), "y": np.zeros(3)})
    assert "'@' inner dimensions differ: [3, 2] @ [3]" in err.diagnostics[0].message


def test_slice_with_member_dependent_bounds_is_rejected_at_bind():
    src = (
        "model m\ndata T: int\ndata y[T]: real\nvar x[T]: real\nfactor f[t in 1:T]: 0 ~ normal(sum(y[0:t]) + x[t], 1)\n"
    )
    err = bind_error(src, {"T": 4, "y": np.ones(4)})
    (d,) = err.diagnostics
    assert (d.span.line, d.span.col) == (5, 40)
    assert d.message.startswith("a slice inside a factor needs bounds fixed by the data sizes")


def test_reduction_index_out_of_range_names_the_member():
    src = (
        "model m\ndata T: int\ndata K: int\ndata y[T]: real\nvar beta: real[K]\n"
        "factor ar[t in 0:T]: y[t] ~ normal(sum[k in 0:K](beta[k] * y[t-1-k]), 1)\n"
    )
    err = bind_error(src, {"T": 5, "K": 2, "y": np.zeros(5)})
    (d,) = err.diagnostics
    assert (d.span.line, d.span.col) == (6, 62)
    assert d.message == "index -1 is out of range for axis 0 of 'y' (size 5) when t=0, k=0"


def test_bind_does_not_change_the_model():
    m = fglang.compile(SPEC_MODELS["random_walk"], "rw.fg")
    a = m.bind({"T": 3, "y": np.zeros(3)})
    b = m.bind({"T": 7, "y": np.zeros(7)})
    assert a.families["obs"].n_members == 3 and b.families["obs"].n_members == 7


def test_long_generated_sums_compile_and_bind():
    """A 600-term chain recurses past Python's default 1000 frames in every stage."""
    terms = " + ".join(f"x[{k % 3}]" for k in range(600))
    src = f"model m\nvar x: real[3]\nlet s = {terms}\nfactor f: 0 ~ normal({terms}, 1)\n"
    b = bind(src, {})
    assert b.families["f"].n_members == 1
    assert [s.var for s in b.families["f"].slots] == ["x"]
    assert b.derived["s"].shape == ()
