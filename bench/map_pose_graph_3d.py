"""Lie-group pose graphs by fglang's ``map`` backend against GTSAM 4's LM.

3-D: sphere2500 (TORO, 2500 poses, 4949 edges, from the chained odometry)
and klaus3 (g2o) with ``examples/pose_graph_3d.fg``; 2-D: M3500 with
``examples/m3500_pose2.fg`` next to the ``real[3]`` model
(``examples/m3500.fg``). GTSAM gets the same graph: ``BetweenFactorPose3``
(``Pose2``) with the same information matrices, permuted to its
rotation-first tangent order, and a prior of sd 1e-3 on pose 0 at its
initial value, as the models' anchors. Every cost column is GTSAM's
``graph.error`` (``0.5 * sum of squared whitened residuals``) of the poses
each method returned, so the numbers compare. Best wall time of
``--repeat`` runs (wall and CPU); fglang's first fit (JAX compile, symbolic
analysis) is its own row. fglang map runs twice: with its default tolerance
(a relative decrease of 1e-14) and with GTSAM's default stopping rule
(``tol=1e-5``, GTSAM's ``relativeErrorTol``), the like-for-like timing.
GBP (messages on the tangent space, `fglang/runtime/gbp/charts.py`) runs
sphere2500 with its defaults from the file's vertices and from ``--init
map``; ``--gbp-only`` re-measures just those rows and keeps the file's others.

    pip install -e '.[bench]'     # gtsam
    python bench/map_pose_graph_3d.py [--repeat 3] [--gbp-only] [--gbp-iters 1000]

Prints a table and writes bench/results/map_pose_graph_3d.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from map_pose_graph import best_wall_and_cpu  # noqa: E402 - the bench folder is put on the path above

ROT_FIRST = [3, 4, 5, 0, 1, 2]  # fglang's [v, w] -> GTSAM's [w, v]


def gtsam_graph3(data: dict, init: dict):
    import gtsam

    graph, values = gtsam.NonlinearFactorGraph(), gtsam.Values()

    def pose(p):
        p = np.asarray(p, float)
        return gtsam.Pose3(gtsam.Rot3.Quaternion(p[6], p[3], p[4], p[5]), gtsam.Point3(*p[:3]))

    for i, p in enumerate(init["pose"]):
        values.insert(i, pose(p))
    info = np.asarray(data["info"])
    for s, d, z, inf in zip(data["src"], data["dst"], data["z"], info):
        model = gtsam.noiseModel.Gaussian.Information(inf[np.ix_(ROT_FIRST, ROT_FIRST)])
        graph.add(gtsam.BetweenFactorPose3(int(s), int(d), pose(z), model))
    graph.add(gtsam.PriorFactorPose3(0, pose(init["pose"][0]), gtsam.noiseModel.Isotropic.Sigma(6, 1e-3)))
    return graph, values, pose


def gtsam_graph2(data: dict, init: dict):
    import gtsam

    graph, values = gtsam.NonlinearFactorGraph(), gtsam.Values()
    for i, p in enumerate(init["pose"]):
        values.insert(i, gtsam.Pose2(*map(float, p)))
    for s, d, z, sd in zip(data["src"], data["dst"], data["z"], data["sd"]):
        graph.add(gtsam.BetweenFactorPose2(int(s), int(d), gtsam.Pose2(*map(float, z)),
                                           gtsam.noiseModel.Diagonal.Sigmas(np.asarray(sd, float))))
    graph.add(gtsam.PriorFactorPose2(0, gtsam.Pose2(*map(float, init["pose"][0])),
                                     gtsam.noiseModel.Diagonal.Sigmas(np.full(3, 1e-3))))
    return graph, values, lambda p: gtsam.Pose2(*map(float, p))


def gtsam_cost(graph, pose, poses) -> float:
    import gtsam

    v = gtsam.Values()
    for i, p in enumerate(poses):
        v.insert(i, pose(p))
    return float(graph.error(v))


def gtsam_row(name: str, graph, values, repeat: int) -> dict:
    import gtsam

    def run():
        opt = gtsam.LevenbergMarquardtOptimizer(graph, values, gtsam.LevenbergMarquardtParams())
        return opt, opt.optimize()

    wall, cpu, (opt, result) = best_wall_and_cpu(run, repeat)
    return {"graph": name, "method": "GTSAM 4 LM (defaults)", "wall_s": wall, "cpu_s": cpu,
            "cost": float(graph.error(result)), "iterations": int(opt.iterations())}


def fglang_rows(name: str, model_path: Path, data: dict, init: dict, repeat: int, cost_of,
                **options) -> list[dict]:
    """First fit, LM loop and whole fit; ``options`` are map's (``tol=1e-5``:
    GTSAM's default stopping rule, a relative decrease below 1e-5)."""
    import fglang

    model = fglang.load(model_path)
    t0 = time.perf_counter()
    first = model.fit(data, backend="map", init=init, **options)
    first_wall = time.perf_counter() - t0
    solves = []

    def fit():
        post = model.fit(data, backend="map", init=init, **options)
        solves.append(post.attrs["wall_time_s"])
        return post

    wall, cpu, post = best_wall_and_cpu(fit, repeat)
    a = post.attrs
    cost = cost_of(post.mean("pose"))
    label = f"fglang map {model_path.name}" + "".join(f" {k}={v}" for k, v in options.items())
    rows = [
        {"graph": name, "method": f"{label} first fit (JAX compile + symbolic)", "wall_s": first_wall,
         "cpu_s": None, "cost": float(cost_of(first.mean("pose"))), "iterations": int(first.attrs["iterations"])},
        {"graph": name, "method": f"{label} solve (LM loop)", "wall_s": min(solves), "cpu_s": None,
         "cost": float(cost), "own_cost": float(a["cost"]), "iterations": int(a["iterations"]),
         "unknowns": int(a["unknowns"])},
        {"graph": name, "method": f"{label} whole fit (bind+LM+marginals+draws)", "wall_s": wall, "cpu_s": cpu,
         "cost": float(cost), "iterations": int(a["iterations"]), "marginals": bool(a.get("marginals", True))},
    ]
    return rows if not options else rows[1:]  # the first fit of the same shape was timed without options


def gbp_rows(name: str, model_path: Path, data: dict, init: dict, cost_of, iters: int) -> list[dict]:
    """fglang GBP with its defaults (``schedule=auto``: multigrid in float64 on a pose graph), started
    from the file's vertices and from ``--init map`` (the MAP found from them, the usual way to start
    GBP on a pose graph; its wall includes that map fit). Each row's cost is GTSAM's error of GBP's means."""
    import fglang

    model = fglang.load(model_path)
    rows = []
    for label, start in (("from the file's vertices", init), ("from --init map", ("map", init))):
        t0 = time.perf_counter()
        post = model.fit(data, backend="gbp", init=start, iters=iters, draws=4)
        a = post.attrs
        rows.append({"graph": name, "method": f"fglang gbp {model_path.name} defaults, {label}",
                     "wall_s": time.perf_counter() - t0, "cpu_s": None, "cost": float(cost_of(post.mean("pose"))),
                     "iterations": int(a["iterations"]), "converged": bool(a["converged"]),
                     "schedule": a["schedule"], "coarse_corrections": int(a["coarse_corrections"]),
                     "engine_wall_s": float(a["wall_time_s"]), "final_change": float(a["final_change"]),
                     "note": ("converged" if a["converged"] else f"not converged in {a['iterations']} iterations")})
    return rows


def main() -> None:
    from fglang.io import read_pose_graph

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "map_pose_graph_3d.json"))
    ap.add_argument("--no-m3500", action="store_true")
    ap.add_argument("--gbp-only", action="store_true", help="only the GBP rows; the others are read from --out")
    ap.add_argument("--gbp-iters", type=int, default=1000)
    args = ap.parse_args()
    rows: list[dict] = []
    if args.gbp_only:
        name = "sphere2500.toro"
        data, init = read_pose_graph(DATA / name)
        graph, _, pose = gtsam_graph3(data, init)
        rows = [r for r in json.loads(Path(args.out).read_text())["rows"] if "gbp" not in r["method"]]
        at = max(i for i, r in enumerate(rows) if r["graph"] == name) + 1
        rows[at:at] = gbp_rows(name, ROOT / "examples" / "pose_graph_3d.fg", data, init,
                               lambda p, g=graph, f=pose: gtsam_cost(g, f, p), args.gbp_iters)
    for name in () if args.gbp_only else ("sphere2500.toro", "klaus3.g2o"):
        data, init = read_pose_graph(DATA / name)
        graph, values, pose = gtsam_graph3(data, init)
        rows.append({"graph": name, "method": "initial guess", "wall_s": 0.0, "cpu_s": 0.0,
                     "cost": float(graph.error(values)), "iterations": 0})
        rows.append(gtsam_row(name, graph, values, args.repeat))
        for options in ({}, {"tol": 1e-5}):
            rows += fglang_rows(name, ROOT / "examples" / "pose_graph_3d.fg", data, init, args.repeat,
                                lambda p, g=graph, f=pose: gtsam_cost(g, f, p), **options)
        if name.startswith("sphere"):
            rows += gbp_rows(name, ROOT / "examples" / "pose_graph_3d.fg", data, init,
                             lambda p, g=graph, f=pose: gtsam_cost(g, f, p), args.gbp_iters)
    if not args.no_m3500 and not args.gbp_only:
        data, init = read_pose_graph(DATA / "m3500.g2o")
        graph, values, pose = gtsam_graph2(data, init)
        rows.append(gtsam_row("m3500.g2o", graph, values, args.repeat))
        for model in ("m3500.fg", "m3500_pose2.fg"):
            rows += fglang_rows("m3500.g2o", ROOT / "examples" / model, data, init, args.repeat,
                                lambda p, g=graph, f=pose: gtsam_cost(g, f, p))
    ref = {r["graph"]: r["cost"] for r in rows if r["method"].startswith("GTSAM")}
    print(f"{'graph':16} {'method':62} {'wall s':>8} {'cpu s':>7} {'cost (GTSAM error)':>20} {'rel. to GTSAM':>14} "
          f"{'iters':>6}")
    for r in rows:
        c = r.get("cost")
        rel = (c - ref[r["graph"]]) / ref[r["graph"]] if c is not None and r["graph"] in ref else None
        r["relative_to_gtsam"] = rel
        print(f"{r['graph']:16} {r['method'][:62]:62} "
              f"{'' if r.get('wall_s') is None else format(r['wall_s'], '.3f'):>8} "
              f"{'' if r.get('cpu_s') is None else format(r['cpu_s'], '.3f'):>7} "
              f"{'' if c is None else format(c, '.6f'):>20} {'' if rel is None else format(rel, '+.2e'):>14} "
              f"{r.get('iterations', ''):>6}  {r.get('note', '')}")
    out = {"machine": platform.machine(), "cpus": os.cpu_count(), "repeat": args.repeat, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
