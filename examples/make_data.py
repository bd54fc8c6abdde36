"""Generate the example data sets in ``examples/data/`` (deterministic).

Each ``examples/NAME.fg`` model has a ``data/NAME.json`` file in the
Stan/CmdStan JSON layout (an object mapping each ``data`` name to a number
or nested lists; ints written as ints), so every example can be fitted from
the command line as written. Files may carry extra keys -- the true values
the data were simulated from (``x_true``, ``w_true``, ``clean``,
``pose_true`` ...) -- which the model ignores and the tests use.

Every generator draws from its own fixed seed, and floats are rounded to
8 significant digits, so running ``python examples/make_data.py`` twice
writes byte-identical files (``tests/test_examples_data.py`` checks this).
If the M3500 g2o file is present it is converted too (see ``g2o.py``).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"
M3500_G2O = HERE.parents[1] / "shared" / "data" / "m3500.g2o"

SIG_DIGITS = 8


def _clean(v):
    """numpy -> plain JSON values: ints stay ints, floats are rounded."""
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    if isinstance(v, (list, tuple)):
        return [_clean(u) for u in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(f"{float(v):.{SIG_DIGITS}g}")
    return v


def dumps(data: dict) -> str:
    """JSON text with one top-level key per line (diff-friendly, still compact)."""
    items = [f"  {json.dumps(k)}: {json.dumps(_clean(v), separators=(',', ':'))}" for k, v in data.items()]
    return "{\n" + ",\n".join(items) + "\n}\n"


# ----------------------------------------------------------------------------
# Generators: each returns {file name: data dict}.


def random_walk() -> dict[str, dict]:
    """T=50 steps of the model itself: x[t] = x[t-1] + N(0, q), y = x + N(0, 0.5)."""
    rng = np.random.default_rng(1)
    T, q, s_obs = 50, 0.1, 0.5
    x = np.cumsum(np.concatenate([[rng.normal(0.0, 1.0)], rng.normal(0.0, q, T - 1)]))
    y = x + rng.normal(0.0, s_obs, T)
    return {"random_walk.json": {"T": T, "y": y, "q": q, "x_true": x}}


def sparse_regression() -> dict[str, dict]:
    """N=200, D=50, 5 non-zero weights, noise sd 0.5: a horseshoe's easy case."""
    rng = np.random.default_rng(2)
    N, D, sigma, b = 200, 50, 0.5, 1.0
    X = rng.normal(0.0, 1.0, (N, D))
    w = np.zeros(D)
    idx = np.sort(rng.choice(D, 5, replace=False))
    w[idx] = np.array([2.0, -1.5, 1.0, -3.0, 0.75])
    y = X @ w + b + rng.normal(0.0, sigma, N)
    return {
        "sparse_regression.json": {
            "N": N, "D": D, "X": X, "y": y,
            "w_true": w, "b_true": b, "sigma_true": sigma,
        }
    }


def eight_schools() -> dict[str, dict]:
    """Rubin's (1981) SAT coaching data, as in Stan's and NumPyro's examples."""
    return {
        "eight_schools.json": {
            "J": 8,
            "y": [28, 8, -3, 7, -1, 1, 18, 12],
            "sigma": [15, 10, 16, 11, 9, 11, 10, 18],
        }
    }


def denoise() -> dict[str, dict]:
    """A 32x32 smooth image plus N(0, 0.1) noise (the model's default s_obs).

    The clean image is smooth waves plus one sharp-edged disc, so the Huber
    smoothness of ``denoise.fg`` has an edge to preserve, while
    ``denoise_normal.fg`` (Gaussian smoothness) blurs it; both read this file.
    """
    rng = np.random.default_rng(4)
    H = W = 32
    i, j = np.meshgrid(np.arange(H) / H, np.arange(W) / W, indexing="ij")
    clean = 0.5 + 0.25 * np.sin(2 * np.pi * i) * np.cos(np.pi * j)
    clean = clean + 0.3 * (((i - 0.6) ** 2 + (j - 0.35) ** 2) < 0.2**2)
    img = clean + rng.normal(0.0, 0.1, (H, W))
    return {"denoise.json": {"H": H, "W": W, "img": img, "clean": clean}}


def _between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SPEC's between(a, b) with the angle wrapped (a measurement)."""
    c, s = math.cos(a[2]), math.sin(a[2])
    dx, dy = b[0] - a[0], b[1] - a[1]
    return np.array([c * dx + s * dy, -s * dx + c * dy, _wrap(b[2] - a[2])])


def _compose(a: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Pose a moved by the relative pose d (inverse of between)."""
    c, s = math.cos(a[2]), math.sin(a[2])
    return np.array([a[0] + c * d[0] - s * d[1], a[1] + s * d[0] + c * d[1], _wrap(a[2] + d[2])])


def _wrap(t: float) -> float:
    w = (t + math.pi) % (2 * math.pi) - math.pi
    return math.pi if w == -math.pi else w


def pose_graph_2d() -> dict[str, dict]:
    """120 poses: two laps of a 15x15 square, odometry + 6 loop closures.

    The truth starts at the origin (where the model's anchor is), drives
    forward ~1 m per step and turns ~90 degrees at each corner, with small
    random wobble so the second lap does not retrace the first. Every edge
    measures the true relative pose plus noise of its own sd (odometry sds
    vary a little per edge; loop closures are noisier). The initial guess
    composes the noisy odometry from pose 0, so it drifts, as a robot's does.
    """
    rng = np.random.default_rng(5)
    lap, laps = 60, 2
    N = lap * laps
    side = lap // 4
    poses = [np.zeros(3)]
    for k in range(1, N):
        turn = math.pi / 2 if k % side == 0 else 0.0
        step = np.array([1.0 + rng.normal(0, 0.05), rng.normal(0, 0.05), turn + rng.normal(0, 0.02)])
        poses.append(_compose(poses[-1], step))
    truth = np.array(poses)

    src, dst, sd = [], [], []
    for k in range(N - 1):
        src.append(k)
        dst.append(k + 1)
        sd.append([0.05 * rng.uniform(0.8, 1.25), 0.05 * rng.uniform(0.8, 1.25), 0.01 * rng.uniform(0.8, 1.25)])
    for a in (0, 10, 22, 35, 47, 59):  # pose a on lap 1 <-> the same spot on lap 2
        b = a + lap if a + lap < N else 0
        src.append(a)
        dst.append(b)
        sd.append([0.1, 0.1, 0.02])
    sd_arr = np.array(sd)
    z = np.array([_between(truth[i], truth[j]) for i, j in zip(src, dst)])
    z = z + rng.normal(0.0, 1.0, z.shape) * sd_arr
    z[:, 2] = [_wrap(t) for t in z[:, 2]]

    init = [np.zeros(3)]
    for k in range(N - 1):  # the first N-1 edges are the odometry chain
        init.append(_compose(init[-1], z[k]))
    data = {"N": N, "M": len(src), "src": src, "dst": dst, "z": z, "sd": sd_arr, "pose_true": truth}
    return {"pose_graph_2d.json": data, "pose_graph_2d_init.json": {"pose": np.array(init)}}


def mlp_classifier() -> dict[str, dict]:
    """Noisy XOR: N=40 points around the 4 corners of [-1, 1]^2, label = xor.

    The same file serves ``mlp_classifier.fg`` (bernoulli output) and
    ``mlp_classifier_gbp.fg`` (Gaussian output on 2*label-1).
    """
    rng = np.random.default_rng(6)
    N, D, H = 40, 2, 8
    corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=float)
    which = np.arange(N) % 4
    X = corners[which] + rng.normal(0.0, 0.25, (N, D))
    label = ((corners[which, 0] > 0) != (corners[which, 1] > 0)).astype(int)
    data = {"N": N, "D": D, "H": H, "X": X, "label": label}
    return {"mlp_classifier.json": data, "mlp_classifier_gbp.json": dict(data)}


def m3500() -> dict[str, str]:
    """The M3500 pose graph converted from g2o (only if the source file exists)."""
    if not M3500_G2O.exists():
        return {}
    sys.path.insert(0, str(HERE))
    from g2o import read_g2o, to_json_text

    data, init = read_g2o(M3500_G2O)
    # Pre-serialized by g2o.py's writer, so this and its CLI give the same bytes.
    return {"m3500.json": to_json_text(data), "m3500_init.json": to_json_text(init)}


GENERATORS: list[Callable[[], dict[str, dict | str]]] = [
    random_walk,
    sparse_regression,
    eight_schools,
    denoise,
    pose_graph_2d,
    mlp_classifier,
]


def generate_all(include_m3500: bool = True) -> dict[str, str]:
    """All data files as {file name: JSON text}, without writing anything."""
    out: dict[str, str] = {}
    for gen in GENERATORS + ([m3500] if include_m3500 else []):
        for name, data in gen().items():
            out[name] = data if isinstance(data, str) else dumps(data)
    return out


def main(out_dir: Path = DATA_DIR) -> None:
    """Write every data file into ``out_dir`` (default ``examples/data``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in generate_all().items():
        (out_dir / name).write_text(text)
        print(f"{out_dir / name}  {len(text) / 1024:.1f} KB")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA_DIR)
