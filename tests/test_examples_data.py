"""Examples, their data and the numeric references stay consistent.

Guards what users copy first: the ``.fg`` files must be the SPEC's models
verbatim, every data file must fit its model's declarations, the data must
be reproducible, and the references other benchmarks compare against (the
g2o reader and cost, the hand-written grid GBP) must be right.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
DATA = EXAMPLES / "data"
SPEC = Path(__file__).resolve().parents[1].parent / "shared" / "SPEC.md"


g2o = load_script("g2o", EXAMPLES / "g2o.py")
make_data = load_script("make_data", EXAMPLES / "make_data.py")


# ----------------------------------------------------------------------------
# The SPEC's models appear verbatim.


def _spec_models() -> dict[str, str]:
    if not SPEC.exists():
        pytest.skip(f"{SPEC} not present")
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", SPEC.read_text(), re.S | re.M)
    models = {}
    for b in blocks:
        m = re.search(r"^model\s+(\w+)", b, re.M)
        if m:
            models[m.group(1)] = b
    return models


def _norm(text: str) -> list[str]:
    """Strip trailing whitespace per line and trailing blank lines only."""
    lines = [ln.rstrip() for ln in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def test_spec_has_the_expected_models() -> None:
    expected = {
        "random_walk", "sparse_regression", "eight_schools", "denoise",
        "pose_graph_2d", "mlp_classifier", "mlp_classifier_gbp",
    }  # fmt: skip
    assert expected <= set(_spec_models())


@pytest.mark.parametrize(
    "name",
    ["random_walk", "sparse_regression", "eight_schools", "denoise",
     "pose_graph_2d", "mlp_classifier", "mlp_classifier_gbp"],  # fmt: skip
)
def test_example_is_spec_verbatim(name: str) -> None:
    models = _spec_models()
    assert name in models, f"SPEC.md has no model {name}"
    path = EXAMPLES / f"{name}.fg"
    assert _norm(path.read_text()) == _norm(models[name]), f"{path} differs from SPEC.md"


def test_variants_differ_from_spec_only_where_documented() -> None:
    """denoise_normal swaps huber for normal; m3500 renames pose_graph_2d."""
    den = _norm((EXAMPLES / "denoise.fg").read_text())
    den_n = [ln for ln in _norm((EXAMPLES / "denoise_normal.fg").read_text()) if not ln.startswith("#")]
    swapped = [ln.replace("model denoise", "model denoise_normal").replace("huber(x[i, j], s_smooth, 1.345)",
               "normal(x[i, j], s_smooth)") for ln in den]  # fmt: skip
    assert den_n == swapped
    pg = _norm((EXAMPLES / "pose_graph_2d.fg").read_text())
    m35 = _norm((EXAMPLES / "m3500.fg").read_text())
    m35 = m35[next(i for i, ln in enumerate(m35) if ln.startswith("model ")):]
    assert m35 == [ln.replace("model pose_graph_2d", "model m3500") for ln in pg]


# ----------------------------------------------------------------------------
# Data files match their models' declarations.

_DATA_DECL = re.compile(
    r"^data\s+(?P<name>\w+)\s*(?:\[(?P<dims>[^\]]*)\])?\s*:\s*(?P<base>\w+)"
    r"(?:\([^)]*\))?\s*(?:\[(?P<shape>[^\]]*)\])?\s*(?P<default>=)?",
    re.M,
)


def _declared_data(fg: Path) -> list[dict]:
    """(name, node dims, base type, value shape, has default) of each data line.

    A deliberately tiny reader of the SPEC's `data` syntax, independent of the
    compiler, so this test pins the examples down on its own.
    """
    return [m.groupdict() for m in _DATA_DECL.finditer(fg.read_text())]


def _eval_size(expr: str, env: dict) -> int:
    val = eval(expr, {"__builtins__": {}}, dict(env))  # sizes are int expressions over int data
    assert isinstance(val, int), expr
    return val


def _shape(v) -> tuple[int, ...]:
    shape = []
    while isinstance(v, list):
        shape.append(len(v))
        v = v[0] if v else None
    return tuple(shape)


def _leaves(v):
    if isinstance(v, list):
        for u in v:
            yield from _leaves(u)
    else:
        yield v


MODEL_DATA = {
    "random_walk": "random_walk.json",
    "sparse_regression": "sparse_regression.json",
    "eight_schools": "eight_schools.json",
    "denoise": "denoise.json",
    "denoise_normal": "denoise.json",
    "pose_graph_2d": "pose_graph_2d.json",
    "mlp_classifier": "mlp_classifier.json",
    "mlp_classifier_gbp": "mlp_classifier_gbp.json",
    "m3500": "m3500.json",
}


@pytest.mark.parametrize("model", sorted(MODEL_DATA))
def test_data_file_matches_model(model: str) -> None:
    path = DATA / MODEL_DATA[model]
    if model == "m3500" and not path.exists():
        pytest.skip("m3500.json not generated (needs the g2o file)")
    data = json.loads(path.read_text())
    env: dict[str, int] = {}
    for d in _declared_data(EXAMPLES / f"{model}.fg"):
        name = d["name"]
        if name not in data:
            assert d["default"], f"{path.name} lacks {name}"
            continue
        v = data[name]
        dims = [s for s in (d["dims"] or "").split(",") if s.strip()]
        vshape = [s for s in (d["shape"] or "").split(",") if s.strip()]
        want = tuple(_eval_size(s, env) for s in dims + vshape)
        assert _shape(v) == want, f"{path.name}: {name} has shape {_shape(v)}, model wants {want}"
        leaves = list(_leaves(v))
        if d["base"] == "int":
            assert all(isinstance(x, int) and not isinstance(x, bool) for x in leaves), name
            if not want:
                env[name] = v
        else:
            assert all(isinstance(x, (int, float)) and math.isfinite(x) for x in leaves), name
        if d["base"] == "positive":
            assert all(x > 0 for x in leaves), name


def test_index_data_in_range() -> None:
    for f in ("pose_graph_2d.json", "m3500.json"):
        if not (DATA / f).exists():
            continue
        d = json.loads((DATA / f).read_text())
        for key in ("src", "dst"):
            assert 0 <= min(d[key]) and max(d[key]) < d["N"]
    d = json.loads((DATA / "mlp_classifier.json").read_text())
    assert set(d["label"]) == {0, 1}


def test_init_files_match() -> None:
    for base in ("pose_graph_2d", "m3500"):
        if not (DATA / f"{base}_init.json").exists():
            continue
        data = json.loads((DATA / f"{base}.json").read_text())
        init = json.loads((DATA / f"{base}_init.json").read_text())
        assert _shape(init["pose"]) == (data["N"], 3)


def test_files_small() -> None:
    for f in DATA.glob("*.json"):
        limit = 1 << 20 if f.name.startswith("m3500") else 200 * 1024
        assert f.stat().st_size < limit, f.name


def test_generators_deterministic_and_committed() -> None:
    a = make_data.generate_all(include_m3500=False)
    b = make_data.generate_all(include_m3500=False)
    assert a == b
    for name, text in a.items():
        assert (DATA / name).read_text() == text, f"{name} is stale: rerun examples/make_data.py"


def test_synthetic_pose_graph_is_consistent() -> None:
    """The truth fits the noisy edges about as well as chi-square says."""
    d = json.loads((DATA / "pose_graph_2d.json").read_text())
    cost = g2o.pose_graph_cost(d, np.array(d["pose_true"]))
    assert cost < 1.5 * 0.5 * 3 * d["M"]
    init = np.array(json.loads((DATA / "pose_graph_2d_init.json").read_text())["pose"])
    assert g2o.pose_graph_cost(d, init) > cost  # loop closures see the drift


# ----------------------------------------------------------------------------
# g2o reader and cost.

SMALL_G2O = """\
# a comment
VERTEX_SE2 10 0 0 0
VERTEX_SE2 30 2 0 3.0
VERTEX_SE2 20 1 0 0
EDGE_SE2 10 20 1 0 0 100 0 0 25 0 400
EDGE_SE2 20 30 1 0.5 3.0 4 0 0 4 0 1e4
"""


def test_parse_small_g2o() -> None:
    data, init = g2o.parse_g2o(SMALL_G2O.splitlines())
    assert data["N"] == 3 and data["M"] == 2
    # ids 10, 20, 30 -> 0, 1, 2 in id order
    assert data["src"] == [0, 1] and data["dst"] == [1, 2]
    assert init["pose"] == [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 3.0]]
    np.testing.assert_allclose(data["z"], [[1, 0, 0], [1, 0.5, 3.0]])
    np.testing.assert_allclose(data["sd"], [[0.1, 0.2, 0.05], [0.5, 0.5, 0.01]])
    assert all(isinstance(i, int) for i in data["src"] + data["dst"] + [data["N"], data["M"]])


def test_g2o_rejects_off_diagonal_information() -> None:
    bad = "VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\nEDGE_SE2 0 1 1 0 0 1 0.5 0 1 0 1\n"
    with pytest.raises(g2o.G2OError, match="non-diagonal"):
        g2o.parse_g2o(bad.splitlines(), source="bad.g2o")
    with pytest.raises(g2o.G2OError, match="undefined vertex"):
        g2o.parse_g2o("VERTEX_SE2 0 0 0 0\nEDGE_SE2 0 5 1 0 0 1 0 0 1 0 1\n".splitlines())


def test_g2o_cli_roundtrip(tmp_path: Path) -> None:
    src = tmp_path / "small.g2o"
    src.write_text(SMALL_G2O)
    assert g2o.main([str(src), "--out", str(tmp_path / "d.json"), "--init-out", str(tmp_path / "i.json")]) == 0
    assert json.loads((tmp_path / "d.json").read_text())["N"] == 3
    assert _shape(json.loads((tmp_path / "i.json").read_text())["pose"]) == (3, 3)


def _noise_free_graph(rng: np.random.Generator, n: int = 30) -> tuple[dict, np.ndarray]:
    """Random poses (angles spanning all of (-pi, pi]) and exact measurements."""
    poses = np.column_stack([rng.normal(0, 5, n), rng.normal(0, 5, n), rng.uniform(-np.pi, np.pi, n)])
    poses[0] = 0.0
    src = list(range(n - 1)) + [0, n // 6, n // 4, n - 1]  # a chain plus loop closures
    dst = list(range(1, n)) + [n // 2, 2 * n // 3, 2, 3]
    z = g2o.between(poses[src], poses[dst])
    z[:, 2] = g2o.wrap_angle(z[:, 2]) + 2 * np.pi * rng.integers(-1, 2, len(src))  # wrapping must absorb 2 pi
    sd = rng.uniform(0.05, 0.2, (len(src), 3))
    data = {"N": n, "M": len(src), "src": src, "dst": dst, "z": z.tolist(), "sd": sd.tolist()}
    return data, poses


def test_pose_graph_cost_zero_at_truth() -> None:
    data, poses = _noise_free_graph(np.random.default_rng(0))
    assert g2o.pose_graph_cost(data, poses) == pytest.approx(0.0, abs=1e-20)
    moved = poses.copy()
    moved[3, 0] += 0.1
    assert g2o.pose_graph_cost(data, moved) > 0.1
    # anchor elsewhere: only the anchor term counts
    assert g2o.pose_graph_cost(data, poses, anchor=[1.0, 0, 0]) == pytest.approx(0.5 / 0.001**2)


def test_wrap_angle_range() -> None:
    a = np.array([-np.pi, np.pi, 3 * np.pi, -3 * np.pi, 0.0, 7.0, -7.0])
    w = g2o.wrap_angle(a)
    assert np.all(w > -np.pi) and np.all(w <= np.pi)
    np.testing.assert_allclose(np.cos(w), np.cos(a), atol=1e-12)
    assert w[0] == np.pi and w[1] == np.pi


def test_pose_graph_jacobian_matches_finite_differences() -> None:
    data, poses = _noise_free_graph(np.random.default_rng(1), n=8)
    x = poses.ravel() + 0.01
    J = g2o._jacobian(data, x, g2o.ANCHOR_SD).toarray()
    eps = 1e-6
    fd = np.empty_like(J)
    for k in range(x.size):
        e = np.zeros_like(x)
        e[k] = eps
        fd[:, k] = (g2o.pose_graph_residuals(data, x + e) - g2o.pose_graph_residuals(data, x - e)) / (2 * eps)
    np.testing.assert_allclose(J, fd, rtol=1e-5, atol=1e-4)


def test_least_squares_recovers_small_graph() -> None:
    data, poses = _noise_free_graph(np.random.default_rng(2), n=12)
    init = poses + np.random.default_rng(3).normal(0, 0.05, poses.shape)
    init[0] = 0.0
    res = g2o.solve_levenberg_marquardt(data, init)
    assert res.cost < 1e-12
    np.testing.assert_allclose(res.poses, poses, atol=1e-6)


# ----------------------------------------------------------------------------
# The hand-written grid GBP reference.


def test_hand_gbp_matches_exact_solve() -> None:
    jax = pytest.importorskip("jax")
    grid = load_script("grid_reference", REPO / "bench" / "grid_reference.py")
    was = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        img = grid.make_image(16, 16, seed=3)
        exact = grid.exact_solve(img, 0.1, 0.05)
        res = grid.hand_gbp(img, 0.1, 0.05, 400)
        assert res.mean.dtype == np.float64
        np.testing.assert_allclose(res.mean, exact, atol=1e-5, rtol=0)
        # early stop against the exact answer
        res2 = grid.hand_gbp(img, 0.1, 0.05, 400, target=exact, tol=1e-6)
        assert 0 < res2.iters < 400 and np.max(np.abs(res2.mean - exact)) < 1e-6
        # damping slows it down but keeps the fixed point
        res3 = grid.hand_gbp(img, 0.1, 0.05, 2000, damping=0.5, target=exact, tol=1e-6)
        assert res3.iters > res2.iters and np.max(np.abs(res3.mean - exact)) < 1e-6
        # loopy GBP variances are overconfident but of the right size
        var = grid.exact_marginal_variances(16, 16, 0.1, 0.05)
        assert np.all(res.var <= var * (1 + 1e-9)) and np.all(res.var > 0.5 * var)
        x_cg, it = grid.cg_solve(img, 0.1, 0.05, 1e-10)
        assert it > 0 and np.max(np.abs(x_cg - exact)) < 1e-6
    finally:
        jax.config.update("jax_enable_x64", was)
