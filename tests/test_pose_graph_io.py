"""Pose-graph files (g2o, TORO) read by fglang.io.pose_graph and ``fglang import``.

The real files live in ``shared/data`` next to the repository (as SPEC.md
does, see conftest.py); tests that need one skip when it is absent.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script
from scipy.spatial.transform import Rotation
from typer.testing import CliRunner

from fglang.cli import app
from fglang.errors import FgError
from fglang.io import read_pose_graph
from fglang.io.pose_graph import euler_to_quaternion, parse_pose_graph, to_json

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SHARED_DATA = REPO.parent / "shared" / "data"

runner = CliRunner()


def shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def quat_of(rpy) -> np.ndarray:
    """scipy's quaternion [x y z w] of R = Rz(yaw) Ry(pitch) Rx(roll), with w >= 0."""
    q = Rotation.from_euler("ZYX", [rpy[2], rpy[1], rpy[0]]).as_quat()
    return q if q[3] >= 0 else -q


def rotation(q) -> Rotation:
    return Rotation.from_quat(np.asarray(q))


# ----------------------------------------------------------------------------
# The real files.


def test_m3500_matches_the_committed_example_data() -> None:
    """The committed examples/data/m3500*.json were written by examples/g2o.py's
    own reader before it moved into the package: same bytes, same cost."""
    data, init = read_pose_graph(shared("m3500.g2o"))
    assert (data["N"], data["M"]) == (3500, 5453)
    assert list(data) == ["N", "M", "src", "dst", "z", "sd"]
    assert to_json(data) == (EXAMPLES / "data" / "m3500.json").read_text()
    assert to_json(init) == (EXAMPLES / "data" / "m3500_init.json").read_text()
    g2o = load_script("g2o", EXAMPLES / "g2o.py")
    poses = np.asarray(init["pose"])
    assert g2o.pose_graph_cost(data, poses) == pytest.approx(1283333.8296034606, rel=1e-12)
    ref_data, ref_init = g2o.read_g2o(shared("m3500.g2o"))
    assert g2o.pose_graph_cost(ref_data, np.asarray(ref_init["pose"])) == g2o.pose_graph_cost(data, poses)


def test_sphere2500_counts_and_chained_init() -> None:
    data, init = read_pose_graph(shared("sphere2500.toro"))
    assert (data["N"], data["M"]) == (2500, 4949)
    z, info, pose = np.asarray(data["z"]), np.asarray(data["info"]), np.asarray(init["pose"])
    assert z.shape == (4949, 7) and info.shape == (4949, 6, 6) and pose.shape == (2500, 7)
    np.testing.assert_allclose(np.linalg.norm(z[:, 3:], axis=1), 1.0, atol=1e-12)
    assert np.all(z[:, 6] >= 0) and np.all(pose[:, 6] >= 0)
    np.testing.assert_array_equal(info[0], np.diag([10.0, 10, 10, 100, 100, 25]))
    # quaternions against scipy, from the file's roll pitch yaw
    first = (SHARED_DATA / "sphere2500.toro").read_text().splitlines()[0].split()
    np.testing.assert_allclose(z[0, :3], [float(t) for t in first[3:6]])
    np.testing.assert_allclose(z[0, 3:], quat_of([float(t) for t in first[6:9]]), atol=1e-15)
    # no VERTEX3 lines: the init chains the odometry from the origin
    np.testing.assert_array_equal(pose[0], [0, 0, 0, 0, 0, 0, 1])
    src, dst = np.asarray(data["src"]), np.asarray(data["dst"])
    odo = np.flatnonzero(dst == src + 1)
    assert len(set(src[odo])) == 2499
    for k in odo[:: 97]:
        a, b = pose[src[k]], pose[dst[k]]
        ra = rotation(a[3:])
        np.testing.assert_allclose(ra.inv().apply(b[:3] - a[:3]), z[k, :3], atol=1e-9)
        rel = (ra.inv() * rotation(b[3:])).as_matrix()
        np.testing.assert_allclose(rel, rotation(z[k, 3:]).as_matrix(), atol=1e-9)


def test_klaus3_quaternion_graph() -> None:
    data, init = read_pose_graph(shared("klaus3.g2o"))
    assert (data["N"], data["M"]) == (3, 3)
    lines = [ln.split() for ln in (SHARED_DATA / "klaus3.g2o").read_text().splitlines() if ln.strip()]
    vertices = [[float(t) for t in ln[2:]] for ln in lines if ln[0] == "VERTEX_SE3:QUAT"]
    edges = [ln for ln in lines if ln[0] == "EDGE_SE3:QUAT"]
    np.testing.assert_allclose(init["pose"], vertices, rtol=1e-14)  # unit already, qw > 0
    for k, ln in enumerate(edges):
        assert (data["src"][k], data["dst"][k]) == (int(ln[1]), int(ln[2]))
        np.testing.assert_allclose(data["z"][k], [float(t) for t in ln[3:10]], rtol=1e-14)
        info = np.asarray(data["info"][k])
        np.testing.assert_array_equal(info, info.T)
        upper = [float(t) for t in ln[10:]]
        r, c = np.triu_indices(6)
        np.testing.assert_array_equal(info[r, c], upper)


@pytest.mark.heavy
def test_3d_reader_output_fits_the_example_model_as_is() -> None:
    """The reader's 3-D data carry ``origin`` (the init's pose 0), so
    examples/pose_graph_3d.fg fits them without a hand-added key, anchored
    where the init holds pose 0."""
    import fglang

    data, init = read_pose_graph(shared("klaus3.g2o"))
    np.testing.assert_array_equal(data["origin"], init["pose"][0])
    assert list(data) == ["N", "M", "src", "dst", "z", "info", "origin"]
    post = fglang.load(EXAMPLES / "pose_graph_3d.fg").fit(data, backend="map", init=init)
    assert post.attrs["converged"]
    np.testing.assert_allclose(post.mean("pose")[0, :3], init["pose"][0][:3], atol=1e-5)


# ----------------------------------------------------------------------------
# Small hand-written files, both formats.


def _graph2(rng: np.random.Generator):
    """Poses, ids (gaps, not sorted), edges with their measurements and diagonal information."""
    ids = [10, 3, 7, 42]
    poses = np.column_stack([rng.normal(0, 2, 4), rng.normal(0, 2, 4), rng.uniform(-3, 3, 4)])
    edges = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)]
    z = rng.normal(0, 1, (5, 3))
    diag = rng.uniform(1, 100, (5, 3))
    return ids, poses, edges, z, diag


def _write2(tag_v: str, tag_e: str, ids, poses, edges, z, diag) -> str:
    out = ["# a small 2-D pose graph"]
    out += [f"{tag_v} {i} {' '.join(map(repr, p))}" for i, p in zip(ids, poses.tolist())]
    for (a, b), m, d in zip(edges, z.tolist(), diag.tolist()):
        info = [d[0], 0.0, 0.0, d[1], 0.0, d[2]]
        out.append(f"{tag_e} {ids[a]} {ids[b]} {' '.join(map(repr, m + info))}")
    return "\n".join(out) + "\n"


def test_round_trip_2d_both_formats() -> None:
    ids, poses, edges, z, diag = _graph2(np.random.default_rng(0))
    results = []
    for fmt, tv, te in [("g2o", "VERTEX_SE2", "EDGE_SE2"), ("toro", "VERTEX2", "EDGE2")]:
        data, init = parse_pose_graph(_write2(tv, te, ids, poses, edges, z, diag), f"small.{fmt}", fmt)
        assert data["N"] == 4 and data["M"] == 5
        assert data["src"] == [a for a, _ in edges] and data["dst"] == [b for _, b in edges]  # file order
        assert init["pose"] == poses.tolist()
        assert data["z"] == z.tolist()
        np.testing.assert_allclose(data["sd"], 1 / np.sqrt(diag), rtol=1e-15)
        assert json.loads(to_json(data)) == data and json.loads(to_json(init)) == init
        results.append((data, init))
    assert results[0] == results[1]  # TORO and g2o of the same graph: the same data
    # order="id": vertices by increasing id (3, 7, 10, 42)
    data, init = parse_pose_graph(_write2("VERTEX_SE2", "EDGE_SE2", ids, poses, edges, z, diag), order="id")
    perm = np.argsort(ids)
    np.testing.assert_array_equal(init["pose"], poses[perm])
    rank = {int(v): k for k, v in enumerate(perm)}
    assert data["src"] == [rank[a] for a, _ in edges]


def _graph3(rng: np.random.Generator):
    poses_t = rng.normal(0, 2, (3, 3))
    poses_rpy = rng.uniform(-1.2, 1.2, (3, 3))
    edges = [(0, 1), (1, 2), (2, 0)]
    z_t = rng.normal(0, 1, (3, 3))
    z_rpy = rng.uniform(-3, 3, (3, 3))
    diag = rng.uniform(1, 100, (3, 6))
    return poses_t, poses_rpy, edges, z_t, z_rpy, diag


def _upper(d) -> list[float]:
    m = np.diag(d)
    return m[np.triu_indices(6)].tolist()


def test_round_trip_3d_toro_and_g2o_agree() -> None:
    pt, prpy, edges, zt, zrpy, diag = _graph3(np.random.default_rng(1))
    toro = [f"VERTEX3 {k + 5} {' '.join(map(repr, pt[k].tolist() + prpy[k].tolist()))}" for k in range(3)]
    g2o = [f"VERTEX_SE3:QUAT {k + 5} {' '.join(map(repr, pt[k].tolist() + quat_of(prpy[k]).tolist()))}"
           for k in range(3)]  # fmt: skip
    for (a, b), t, rpy, d in zip(edges, zt.tolist(), zrpy.tolist(), diag.tolist()):
        toro.append(f"EDGE3 {a + 5} {b + 5} {' '.join(map(repr, t + rpy + _upper(d)))}")
        g2o.append(f"EDGE_SE3:QUAT {a + 5} {b + 5} {' '.join(map(repr, t + quat_of(rpy).tolist() + _upper(d)))}")
    d_toro, i_toro = parse_pose_graph("\n".join(toro), "small.toro", "toro")
    d_g2o, i_g2o = parse_pose_graph("\n".join(g2o), "small.g2o", "g2o")
    assert d_toro["N"] == d_g2o["N"] == 3 and d_toro["M"] == d_g2o["M"] == 3
    for key in ("N", "M", "src", "dst", "info"):
        assert d_toro[key] == d_g2o[key], key
    np.testing.assert_allclose(d_toro["z"], d_g2o["z"], atol=1e-15)
    np.testing.assert_allclose(i_toro["pose"], i_g2o["pose"], atol=1e-15)
    np.testing.assert_array_equal(np.asarray(d_toro["info"]), np.stack([np.diag(d) for d in diag]))
    np.testing.assert_allclose(np.asarray(d_g2o["z"])[:, :3], zt)


@pytest.mark.parametrize("seed", range(3))
def test_euler_to_quaternion_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for roll, pitch, yaw in rng.uniform(-np.pi, np.pi, (50, 3)):
        q = np.asarray(euler_to_quaternion(roll, pitch, yaw))
        np.testing.assert_allclose(q, quat_of([roll, pitch, yaw]), atol=1e-14)
        R = Rotation.from_euler("z", yaw) * Rotation.from_euler("y", pitch) * Rotation.from_euler("x", roll)
        np.testing.assert_allclose(rotation(q).as_matrix(), R.as_matrix(), atol=1e-14)


def test_g2o_quaternions_normalized_with_nonnegative_w() -> None:
    text = "VERTEX_SE3:QUAT 0 1 2 3 0 0 0 -2\nVERTEX_SE3:QUAT 1 0 0 0 0 0 0 1\n"
    text += "EDGE_SE3:QUAT 0 1 0 0 0 0 0.6 0 -0.8 " + " ".join(map(repr, _upper([1.0] * 6))) + "\n"
    data, init = parse_pose_graph(text)
    assert init["pose"][0] == [1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 1.0]
    np.testing.assert_allclose(data["z"][0], [0, 0, 0, 0, -0.6, 0, 0.8])


def test_chained_init_2d_with_a_backward_edge() -> None:
    """No vertices: pose 0 at the origin, then the odometry (here one edge written backwards)."""
    info = "1 0 0 1 0 1"
    text = f"EDGE2 0 1 1 0 {math.pi / 2} {info}\nEDGE2 2 1 0 1 0 {info}\nEDGE2 2 0 5 5 0 {info}\n"
    data, init = parse_pose_graph(text)
    np.testing.assert_allclose(init["pose"], [[0, 0, 0], [1, 0, math.pi / 2], [2, 0, math.pi / 2]], atol=1e-15)
    assert data["src"] == [0, 2, 2] and data["dst"] == [1, 1, 0]


def test_skipped_lines_warn() -> None:
    base = "VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\nEDGE_SE2 0 1 1 0 0 1 0 0 1 0 1\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_pose_graph("2 1\n" + base + "FIX 0\nPARAMS_SE2OFFSET 0 0 0 0\n", "a.g2o")  # all quiet
    with pytest.warns(UserWarning, match=r"a\.g2o:4: skipped unknown tag 'VERTEX_XY' and 1 more line"):
        data, _ = parse_pose_graph(base + "VERTEX_XY 5 1 1\nVERTEX_XY 6 1 1\nFIX 0\n", "a.g2o")
    assert data["N"] == 2
    with pytest.warns(UserWarning, match="FIX names pose"):
        parse_pose_graph(base + "FIX 1\n", "a.g2o")
    with pytest.warns(UserWarning, match="count line says 7 7"):
        parse_pose_graph("7 7\n" + base, "a.g2o")


# ----------------------------------------------------------------------------
# Located errors.

V2 = "VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\n"
MALFORMED = {
    "too few numbers": (V2 + "EDGE_SE2 0 1 1 0 0 1 0 0\n", 3, 25, "needs 11 numbers"),
    "too many numbers": ("VERTEX_SE2 0 0 0 0 7 8\n", 1, 20, "takes 4 numbers"),
    "a non-number": (V2 + "EDGE_SE2 0 1 1 zero 0 1 0 0 1 0 1\n", 3, 16, "expected a number for dy, got 'zero'"),
    "a non-integer id": ("VERTEX_SE2 1.5 0 0 0\n", 1, 12, "expected an integer vertex id"),
    "an overflowing number": ("VERTEX_SE2 1 1e999 0 0\n", 1, 14, "finite number"),
    "an unknown vertex": (V2 + "EDGE_SE2 0 5 1 0 0 1 0 0 1 0 1\n", 3, 12, "undefined vertex 5"),
    "a vertex twice": (V2 + "VERTEX_SE2 1 1 0 0\n", 3, 12, "vertex 1 is defined twice (first at line 2)"),
    "not positive definite": (V2 + "EDGE_SE2 0 1 1 0 0 1 0 0 -1 0 1\n", 3, 20, "not positive definite"),
    "not positive definite, off-diagonal": (V2 + "EDGE_SE2 0 1 1 0 0 1 2 0 1 0 1\n", 3, 20, "not positive definite"),
    "zero information": (V2 + "EDGE_SE2 0 1 1 0 0 0 0 0 0 0 0\n", 3, 20, "not positive definite"),
    "non-diagonal in 2-D": (V2 + "EDGE_SE2 0 1 1 0 0 1 0 0.5 1 0 1\n", 3, 24, "non-diagonal information matrix"),
    "3-D not positive definite": (
        "EDGE_SE3:QUAT 0 1 0 0 0 0 0 0 1 " + " ".join(map(repr, _upper([1, 1, 1, 1, -1, 1]))) + "\n",
        1, 33, "not positive definite",
    ),  # fmt: skip
    "a zero quaternion": ("VERTEX_SE3:QUAT 0 1 2 3 0 0 0 0\n", 1, 25, "quaternion"),
    "the other format's tag": ("VERTEX_SE2 0 0 0 0\n\nVERTEX2 1 0 0 0\n", 3, 1, "'VERTEX2' is a TORO tag"),
    "2-D and 3-D mixed": ("VERTEX2 0 0 0 0\n  VERTEX3 1 0 0 0 0 0 0\n", 2, 3, "is a 3-D line"),
    "FIX of an unknown vertex": (V2 + "FIX 9\n", 3, 5, "FIX names undefined vertex 9"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_line_is_located(case: str) -> None:
    text, line, col, message = MALFORMED[case]
    with pytest.raises(FgError) as info:
        parse_pose_graph(text, "bad.g2o")
    d = info.value.diagnostics[0]
    assert message in d.message
    assert (d.span.file, d.span.line, d.span.col) == ("bad.g2o", line, col)
    report = str(info.value)
    assert report.startswith(f"bad.g2o:{line}:{col}: ")
    caret_line = report.splitlines()[2]
    assert caret_line.index("^") == 4 + col - 1  # under the bad token


def test_every_mistake_of_a_file_reported() -> None:
    text = "VERTEX_SE2 0 0 0 x\nVERTEX_SE2 1 0 0\nEDGE_SE2 0 1 1 0 0 1 0 0 1 0 1\n"
    with pytest.raises(FgError) as info:
        parse_pose_graph(text, "bad.g2o")
    assert [(d.span.line, d.span.col) for d in info.value.diagnostics] == [(1, 18), (2, 17)]
    many = "".join(f"VERTEX_SE2 {k} 0 0 oops\n" for k in range(100))
    with pytest.raises(FgError) as info:
        parse_pose_graph(many, "bad.g2o")
    assert len(info.value.diagnostics) == 20 and [d.span.line for d in info.value.diagnostics] == list(range(1, 21))
    assert str(info.value).endswith("hint: 80 more mistake(s) not shown; fix these first")


def test_chain_gap_is_an_error() -> None:
    with pytest.raises(FgError, match="no edge joins vertex 1 .pose 1. to vertex 2"):
        parse_pose_graph("EDGE2 0 1 1 0 0 1 0 0 1 0 1\nEDGE2 2 3 1 0 0 1 0 0 1 0 1\n", "gap.toro")


@pytest.mark.parametrize(
    "content, message, where",
    [
        (b"", "empty pose-graph file", None),
        (b"# only a comment\n\n", "no pose-graph lines", None),
        (b"VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 \xff\xfe 0 0\n", "not a text file: the byte 0xff", (2, 14)),
        (b"VERTEX_SE2 0 0 0 0\nVERT\x00EX_SE2 1 0 0 0\n", "not a text file: a NUL character", (2, 5)),
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes, message: str, where) -> None:
    path = tmp_path / "g.g2o"
    path.write_bytes(content)
    with pytest.raises(FgError) as info:
        read_pose_graph(path)
    d = info.value.diagnostics[0]
    assert message in d.message and d.span.file == str(path)
    if where is None:
        assert d.span.line == 0 and str(info.value).startswith(f"{path}: ")
    else:
        assert (d.span.line, d.span.col) == where
        assert str(info.value).startswith(f"{path}:{where[0]}:{where[1]}: ")


def test_missing_file_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(FgError, match="pose-graph file not found"):
        read_pose_graph(tmp_path / "nope.g2o")
    with pytest.raises(FgError, match="format must be one of g2o, toro"):
        read_pose_graph(tmp_path / "nope.g2o", format="bogus")


def test_format_from_extension_then_first_tag(tmp_path: Path) -> None:
    text = "VERTEX2 0 0 0 0\nVERTEX2 1 1 0 0\nEDGE2 0 1 1 0 0 1 0 0 1 0 1\n"
    for name in ("g.toro", "g.txt", "g"):
        (tmp_path / name).write_text(text)
        assert read_pose_graph(tmp_path / name)[0]["N"] == 2
    (tmp_path / "g.g2o").write_text(text)
    with pytest.raises(FgError, match=r"read as g2o \(from its extension \.g2o\)"):
        read_pose_graph(tmp_path / "g.g2o")
    assert read_pose_graph(tmp_path / "g.g2o", format="toro")[0]["N"] == 2


def test_io_does_not_import_jax() -> None:
    code = (
        "import sys, fglang.io.pose_graph as pg\n"
        "pg.parse_pose_graph('VERTEX_SE2 0 0 0 0\\n')\n"
        "print('jax' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"


# ----------------------------------------------------------------------------
# fglang import


def test_cli_import_m3500_then_check(tmp_path: Path) -> None:
    src = shared("m3500.g2o")
    data, init = tmp_path / "d.json", tmp_path / "i.json"
    res = runner.invoke(app, ["import", str(src), "-o", str(data), "--init-out", str(init)])
    assert res.exit_code == 0, res.output
    assert "3500 poses, 5453 edges (2-D)" in res.output
    assert data.read_text() == (EXAMPLES / "data" / "m3500.json").read_text()
    res = runner.invoke(app, ["check", str(EXAMPLES / "m3500.fg"), "--data", str(data)])
    assert res.exit_code == 0, res.output
    assert np.asarray(json.loads(init.read_text())["pose"]).shape == (3500, 3)


def test_cli_import_small_toro_then_check_pose_graph_2d(tmp_path: Path) -> None:
    ids, poses, edges, z, diag = _graph2(np.random.default_rng(4))
    src = tmp_path / "small.graph.txt"
    src.write_text(_write2("VERTEX2", "EDGE2", ids, poses, edges, z, diag))
    out = tmp_path / "d.json"
    res = runner.invoke(app, ["import", str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["check", str(EXAMPLES / "pose_graph_2d.fg"), "--data", str(out)])
    assert res.exit_code == 0, res.output
    # the same model fits it from the file's init (a few GBP iterations)
    import fglang

    data, init = read_pose_graph(src)
    post = fglang.load(EXAMPLES / "pose_graph_2d.fg").fit(data, init=init, iters=3)
    assert np.asarray(post.mean("pose")).shape == (4, 3)


def test_cli_import_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.g2o"
    bad.write_text("VERTEX_SE2 0 0 0 0\nEDGE_SE2 0 7 1 0 0 1 0 0 1 0 1\n")
    out = tmp_path / "d.json"
    res = runner.invoke(app, ["import", str(bad), "-o", str(out)])
    assert res.exit_code == 1
    assert f"{bad}:2:12: edge 0->7 refers to undefined vertex 7" in res.output
    assert "    EDGE_SE2 0 7" in res.output and "\n               ^\n" in res.output
    assert not out.exists()
    res = runner.invoke(app, ["import", str(bad), "-o", str(out), "--format", "tum"])
    assert res.exit_code == 2 and "--format takes g2o or toro" in res.output
    res = runner.invoke(app, ["import", str(bad)])
    assert res.exit_code == 2  # -o is required
