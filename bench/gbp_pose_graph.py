"""GBP on the real M3500 pose graph, compiled from examples/m3500.fg.

Side by side in one run: GTSAM's Levenberg-Marquardt (if `gtsam` is
installed), a sparse Levenberg-Marquardt in examples/g2o.py, and fglang's GBP
from the file's odometry guess under a few settings (damping, re-linearization
threshold). Reports wall time and final cost, GTSAM's `0.5 * sum of squared
whitened residuals`. The file is read by `fglang.io.read_pose_graph`.

    python bench/gbp_pose_graph.py [--iters 2000] [--device cpu|gpu]

Prints a table and writes bench/results/gbp_pose_graph.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
G2O = ROOT.parent / "shared" / "data" / "m3500.g2o"


def gtsam_lm() -> dict | None:
    try:
        import gtsam
    except ImportError:
        return None
    graph, initial = gtsam.readG2o(str(G2O), False)
    prior = gtsam.noiseModel.Diagonal.Sigmas(np.array([1e-3, 1e-3, 1e-3]))
    graph.add(gtsam.PriorFactorPose2(0, initial.atPose2(0), prior))
    t0 = time.perf_counter()
    result = gtsam.LevenbergMarquardtOptimizer(graph, initial, gtsam.LevenbergMarquardtParams()).optimize()
    wall = time.perf_counter() - t0
    return {"method": "GTSAM LM", "wall_s": wall, "cost": float(graph.error(result)), "iterations": None}


def main() -> None:
    from g2o import pose_graph_cost, solve_levenberg_marquardt

    import fglang
    from fglang.io import read_pose_graph

    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "gbp_pose_graph.json"))
    args = ap.parse_args()
    data, init = read_pose_graph(G2O)
    poses0 = np.asarray(init["pose"])
    rows = [{"method": "odometry guess", "wall_s": 0.0, "cost": pose_graph_cost(data, poses0), "iterations": 0}]
    g = gtsam_lm()
    if g:
        rows.append(g)
    t0 = time.perf_counter()
    lm = solve_levenberg_marquardt(data, poses0)
    rows.append({"method": "sparse LM (examples/g2o.py)", "wall_s": time.perf_counter() - t0,
                 "cost": pose_graph_cost(data, np.asarray(lm.poses)), "iterations": int(lm.iterations)})
    model = fglang.load(ROOT / "examples" / "m3500.fg")
    t0 = time.perf_counter()
    post = model.fit(data, backend="gbp", init=init, iters=args.iters, device=args.device, draws=4)
    rows.append({"method": "fglang GBP defaults (float32, damping auto)", "wall_s": time.perf_counter() - t0,
                 "cost": pose_graph_cost(data, post.mean("pose")), "iterations": post.attrs["iterations"],
                 "converged": post.attrs["converged"]})
    for damping, relin in [(0.5, 0.0), (0.8, 0.0), (0.5, 0.01)]:
        t0 = time.perf_counter()
        post = model.fit(data, backend="gbp", init=init, iters=args.iters, damping=damping, relinearize=relin,
                         device=args.device, dtype="float64", draws=4)
        wall = time.perf_counter() - t0
        rows.append({
            "method": f"fglang GBP damping={damping} relinearize={relin}",
            "wall_s": wall,
            "cost": pose_graph_cost(data, post.mean("pose")),
            "iterations": post.attrs["iterations"],
            "converged": post.attrs["converged"],
        })
    for r in rows:
        print(f"{r['method']:<45} cost {r['cost']:>14.3f}  wall {r['wall_s']:8.2f} s  iters {r['iterations']}")
    out = {"machine": platform.machine(), "cpus": __import__("os").cpu_count(), "device": args.device, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
