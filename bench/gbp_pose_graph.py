"""GBP on the real M3500 pose graph, compiled from examples/m3500.fg, and on a
seeded synthetic Manhattan graph (bench/manhattan.py, 20,000 poses by default).

Side by side in one run: GTSAM's Levenberg-Marquardt (if `gtsam` is
installed), a sparse Levenberg-Marquardt in examples/g2o.py, and fglang's GBP
from the file's odometry guess: its defaults (``schedule=auto``, which is the
two-level ``multigrid`` schedule on a pose graph), plain flooding, and the
multigrid schedule's aggregate sizes (``--sweep``); with ``--pose2`` also
examples/m3500_pose2.fg (``pose2`` vars: GBP's messages on the tangent
space, `fglang/runtime/gbp/charts.py`) with its defaults, next to the
``real[3]`` model. Reports wall time (the
first fit includes compiling) and final cost, GTSAM's `0.5 * sum of squared
whitened residuals`, and the default run's cost against wall time at every
coarse correction. The file is read by `fglang.io.read_pose_graph`.

    python bench/gbp_pose_graph.py [--iters 1000] [--device cpu|gpu] [--sweep] [--pose2] [--manhattan 20000]

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
sys.path.insert(0, str(ROOT / "bench"))
G2O = ROOT.parent / "shared" / "data" / "m3500.g2o"


def gtsam_lm(data: dict | None = None, init: dict | None = None) -> dict | None:
    """GTSAM's LM on M3500 (read by GTSAM), or on the pose graph ``data`` from ``init``."""
    try:
        import gtsam
    except ImportError:
        return None
    if data is None:
        graph, initial = gtsam.readG2o(str(G2O), False)
    else:
        graph, initial = gtsam.NonlinearFactorGraph(), gtsam.Values()
        for k, p in enumerate(np.asarray(init["pose"])):
            initial.insert(k, gtsam.Pose2(*p))
        for a, b, z, sd in zip(data["src"], data["dst"], data["z"], data["sd"], strict=True):
            graph.add(gtsam.BetweenFactorPose2(a, b, gtsam.Pose2(*z), gtsam.noiseModel.Diagonal.Sigmas(np.array(sd))))
    prior = gtsam.noiseModel.Diagonal.Sigmas(np.array([1e-3, 1e-3, 1e-3]))
    graph.add(gtsam.PriorFactorPose2(0, initial.atPose2(0), prior))
    t0 = time.perf_counter()
    result = gtsam.LevenbergMarquardtOptimizer(graph, initial, gtsam.LevenbergMarquardtParams()).optimize()
    wall = time.perf_counter() - t0
    return {"method": "GTSAM LM", "wall_s": wall, "cost": float(graph.error(result)), "iterations": None}


def gbp_row(model, data: dict, init: dict, label: str, device: str, **options) -> dict:
    """One fglang GBP fit: cost, wall, iterations and (multigrid) the cost trace per coarse correction."""
    from g2o import pose_graph_cost

    from fglang.runtime.gbp import coarse

    trace: list[tuple[float, float]] = []
    step = coarse.CoarseCorrector.step
    t0 = time.perf_counter()

    def traced(self, d, x, origins=None):  # the cost of the means each correction starts from, with its time
        poses = np.asarray(x[0], np.float64)
        if origins is not None and np.size(origins[0]):  # a pose2 var: x is the tangent step from its chart
            from fglang.compiler.lie_jax import retract

            poses = np.asarray(retract("pose2", np.asarray(origins[0], np.float64), poses))
        trace.append((time.perf_counter() - t0, pose_graph_cost(data, poses)))
        return step(self, d, x, origins)

    coarse.CoarseCorrector.step = traced
    try:
        post = model.fit(data, backend="gbp", init=init, device=device, draws=4, **options)
    finally:
        coarse.CoarseCorrector.step = step
    return {"method": label, "wall_s": time.perf_counter() - t0, "cost": pose_graph_cost(data, post.mean("pose")),
            "iterations": post.attrs["iterations"], "converged": post.attrs["converged"],
            "schedule": post.attrs["schedule"], "coarse_corrections": post.attrs["coarse_corrections"],
            "trace": trace}


def within(trace: list[tuple[float, float]], target: float) -> float | None:
    """Wall time at which the trace first reached ``target``."""
    return next((t for t, c in trace if c <= target), None)


def main() -> None:
    from g2o import pose_graph_cost, solve_levenberg_marquardt

    import fglang
    from fglang.io import read_pose_graph

    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--sweep", action="store_true", help="also the multigrid schedule's aggregate sizes 2, 8, 16")
    ap.add_argument("--pose2", action="store_true", help="also examples/m3500_pose2.fg (pose2 vars) by GBP")
    ap.add_argument("--manhattan", type=int, default=20000, help="poses of the synthetic graph (0: none)")
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
    rows.append(gbp_row(model, data, init, "fglang GBP defaults (schedule auto)", args.device, iters=args.iters))
    rows.append(gbp_row(model, data, init, "fglang GBP defaults, second fit (compiled)", args.device,
                        iters=args.iters))
    if g:
        t = within(rows[-1]["trace"], 1.01 * g["cost"])
        print(f"second default fit within 1% of GTSAM's cost after {t} s" if t is not None else "not within 1%")
    if args.pose2:
        lie = fglang.load(ROOT / "examples" / "m3500_pose2.fg")
        for label in ("first fit", "second fit (compiled)"):
            rows.append(gbp_row(lie, data, init, f"fglang GBP m3500_pose2.fg defaults, {label}", args.device,
                                iters=args.iters))
    rows.append(gbp_row(model, data, init, "fglang GBP flooding", args.device, iters=args.iters,
                        schedule="flooding"))
    if args.sweep:
        from fglang.runtime.gbp import coarse

        default = coarse.AGGREGATE_SIZE
        for size in (2, 8, 16):
            coarse.AGGREGATE_SIZE = size
            rows.append(gbp_row(model, data, init, f"fglang GBP multigrid, aggregates of {size}", args.device,
                                iters=args.iters, schedule="multigrid"))
        coarse.AGGREGATE_SIZE = default
    if args.manhattan:
        from manhattan import manhattan_graph

        mdata, minit = manhattan_graph(args.manhattan, seed=0)
        rows.append({"method": f"Manhattan {args.manhattan} odometry guess", "wall_s": 0.0,
                     "cost": pose_graph_cost(mdata, minit["pose"]), "iterations": 0})
        mg = gtsam_lm(mdata, minit)
        if mg:
            mg["method"] = f"Manhattan {args.manhattan} GTSAM LM"
            rows.append(mg)
        rows.append(gbp_row(model, mdata, minit, f"Manhattan {args.manhattan} fglang GBP defaults", args.device,
                            iters=args.iters))
    for r in rows:
        print(f"{r['method']:<50} cost {r['cost']:>14.3f}  wall {r['wall_s']:8.2f} s  iters {r['iterations']}")
        for t, c in r.get("trace", [])[:: max(1, len(r.get("trace", [])) // 12)]:
            print(f"{'':<8}at {t:7.2f} s: cost {c:12.3f}")
    out = {"machine": platform.machine(), "cpus": __import__("os").cpu_count(), "device": args.device, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
