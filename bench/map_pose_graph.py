"""fglang's ``map`` backend against GTSAM 4's Levenberg-Marquardt on M3500.

Both start from the file's odometry guess, in the same process, best of
``--repeat`` runs each (CPU time and wall). fglang's first fit compiles the
model's linearization (JAX) and does the sparse symbolic analysis; that
one-off cost is reported on its own row, and the timed runs are fits of the
already-compiled model shape. For fglang, "solve" is the LM loop (what GTSAM's
``optimize()`` does); "fit" adds binding the data, the Laplace marginals
(selected inversion) and the Posterior with its draws.

Also a synthetic larger 2-D pose graph (a noisy grid walk with loop closures)
unless ``--no-synthetic``.

    pip install -e '.[bench]'     # gtsam
    python bench/map_pose_graph.py [--repeat 5]

Prints a table and writes bench/results/map_pose_graph.json.

    python bench/map_pose_graph.py --memory [--no-synthetic]

instead runs each solver's first solve of each graph in a fresh process and
reports its peak RSS (bench/results/map_pose_graph_memory.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
G2O = ROOT.parent / "shared" / "data" / "m3500.g2o"


def best_wall_and_cpu(fn, repeat: int) -> tuple[float, float, object]:
    """Best wall and best CPU time of ``repeat`` calls, and the last result."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus), out


def gtsam_rows(path: Path, repeat: int) -> list[dict]:
    try:
        import gtsam
    except ImportError:
        print("gtsam is not installed (pip install -e '.[bench]'): GTSAM rows skipped")
        return []
    graph, initial = gtsam.readG2o(str(path), False)
    prior = gtsam.noiseModel.Diagonal.Sigmas(np.array([1e-3, 1e-3, 1e-3]))
    graph.add(gtsam.PriorFactorPose2(0, initial.atPose2(0), prior))

    def run():
        opt = gtsam.LevenbergMarquardtOptimizer(graph, initial, gtsam.LevenbergMarquardtParams())
        return opt, opt.optimize()

    wall, cpu, (opt, result) = best_wall_and_cpu(run, repeat)
    return [{"method": "GTSAM 4 LM (defaults)", "wall_s": wall, "cpu_s": cpu, "cost": float(graph.error(result)),
             "iterations": int(opt.iterations())}]


def fglang_rows(model_path: Path, data: dict, init: dict, repeat: int, label: str, **options) -> list[dict]:
    from g2o import pose_graph_cost

    import fglang

    model = fglang.load(model_path)
    t0 = time.perf_counter()
    first = model.fit(data, backend="map", init=init, **options)
    first_wall = time.perf_counter() - t0
    solves = []

    def fit():
        post = model.fit(data, backend="map", init=init, **options)
        solves.append((post.attrs["wall_time_s"], post.attrs["laplace_time_s"]))
        return post

    wall, cpu, post = best_wall_and_cpu(fit, repeat)
    solve = min(s for s, _ in solves)
    laplace = min(c for _, c in solves)
    a = post.attrs
    cost = pose_graph_cost(data, post.mean("pose"), anchor=np.asarray(init["pose"])[0])
    shown = ", ".join(f"{k}={v}" for k, v in options.items())
    return [
        {"method": f"fglang map {label} first fit (JAX compile + symbolic)", "wall_s": first_wall, "cpu_s": None,
         "cost": float(first.attrs["cost"]), "iterations": int(first.attrs["iterations"])},
        {"method": f"fglang map {label} solve (LM loop){' ' + shown if shown else ''}", "wall_s": solve,
         "cpu_s": None, "cost": float(cost), "iterations": int(a["iterations"]),
         "factorizations": int(a["factorizations"]), "unknowns": int(a["unknowns"])},
        {"method": f"fglang map {label} whole fit (bind+LM+Laplace+draws)", "wall_s": wall, "cpu_s": cpu,
         "cost": float(cost), "iterations": int(a["iterations"]), "laplace_s": laplace},
    ]


def gbp_rows(model_path: Path, data: dict, init: dict, iters: int) -> list[dict]:
    """GBP in the same run, for the README's side-by-side table: its defaults,
    a damped float64 run, and the same started at the MAP (``init=map:FILE``).
    One run each (GBP takes seconds here, not milliseconds); wall includes
    compilation."""
    from g2o import pose_graph_cost

    import fglang

    model = fglang.load(model_path)
    rows = []
    runs = [
        ("fglang gbp, defaults, odometry guess", init, {}),
        (f"fglang gbp, float64, damping 0.5, {iters} iters, odometry guess", init,
         {"dtype": "float64", "damping": 0.5, "iters": iters}),
        (f"fglang gbp, float64, damping 0.5, {iters} iters, started at the MAP", ("map", init),
         {"dtype": "float64", "damping": 0.5, "iters": iters}),
    ]
    for label, start, options in runs:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            post = model.fit(data, backend="gbp", init=start, **options)
        except fglang.FgError as err:
            rows.append({"method": label, "wall_s": time.perf_counter() - t0, "cpu_s": None, "cost": float("nan"),
                         "iterations": 0, "error": str(err).splitlines()[0]})
            continue
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        cost = pose_graph_cost(data, post.mean("pose"), anchor=np.asarray(init["pose"])[0])
        rows.append({"method": label, "wall_s": wall, "cpu_s": cpu, "cost": float(cost),
                     "iterations": int(post.attrs["iterations"]), "converged": bool(post.attrs["converged"])})
    return rows


def synthetic_graph(side: int, seed: int = 0) -> tuple[str, dict, dict]:
    """A robot driving a serpentine over a side x side grid: odometry, plus
    loop closures to the row above for half the poses, all noisy; returns
    (g2o text whose vertices are the odometry guess, data, init)."""
    from g2o import between, parse_g2o

    rng = np.random.default_rng(seed)
    r, c = np.divmod(np.arange(side * side), side)
    col = np.where(r % 2 == 0, c, side - 1 - c)
    truth = np.stack([col, r, np.where(r % 2 == 0, 0.0, np.pi)], 1).astype(float)
    n = len(truth)
    # the pose above pose k (same column, next row) is at index (r + 1) * side + (side - 1 - c)
    above = (r + 1) * side + (side - 1 - c)
    keep = (r < side - 1) & (rng.random(n) < 0.5)
    src = np.concatenate([np.arange(n - 1), np.arange(n)[keep]])
    dst = np.concatenate([np.arange(1, n), above[keep]])
    sd = np.array([0.05, 0.05, 0.01])
    z = between(truth[src], truth[dst]) + rng.normal(0, 1, (src.size, 3)) * sd
    # the odometry guess: compose the measured odometry from the origin
    th = np.concatenate([[0.0], np.cumsum(z[: n - 1, 2])])
    ct, st = np.cos(th[:-1]), np.sin(th[:-1])
    step = np.stack([ct * z[: n - 1, 0] - st * z[: n - 1, 1], st * z[: n - 1, 0] + ct * z[: n - 1, 1]], 1)
    init = np.concatenate([np.zeros((1, 2)), np.cumsum(step, 0)])
    init = np.concatenate([init, th[:, None]], 1)
    info = 1 / sd**2
    lines = [f"VERTEX_SE2 {i} {float(p[0])!r} {float(p[1])!r} {float(p[2])!r}" for i, p in enumerate(init)]
    inf = f"{info[0]:.17g} 0 0 {info[1]:.17g} 0 {info[2]:.17g}"
    lines += [f"EDGE_SE2 {i} {j} {float(m[0])!r} {float(m[1])!r} {float(m[2])!r} {inf}" for i, j, m in zip(src, dst, z)]
    data, init_d = parse_g2o(lines, "<synthetic>")
    return "\n".join(lines) + "\n", data, init_d


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_peak(solver: str, graph: str, side: int) -> dict:
    """One solve in this (fresh) process: its peak RSS, and the RSS with the
    graph read and the solver's library imported, before the solve."""
    from g2o import read_g2o

    if solver == "gtsam":
        import gtsam  # noqa: F401
    else:
        import fglang  # noqa: F401
    if graph == "m3500":
        path, (data, init) = G2O, read_g2o(G2O)
    else:
        text, data, init = synthetic_graph(side)
        with tempfile.NamedTemporaryFile("w", suffix=".g2o", delete=False) as f:
            f.write(text)
        path = Path(f.name)
    base = peak_rss_mb()
    if solver == "gtsam":
        cost = gtsam_rows(path, 1)[0]["cost"]
    else:
        import fglang

        cost = float(fglang.load(ROOT / "examples" / "m3500.fg").fit(data, backend="map", init=init).attrs["cost"])
    if graph != "m3500":
        os.unlink(path)
    return {"solver": solver, "graph": graph, "before_solve_mb": round(base, 1), "peak_mb": round(peak_rss_mb(), 1),
            "cost": cost}


def memory_rows(graphs: list[str], side: int) -> list[dict]:
    """Peak RSS of GTSAM's and fglang's first solve of each graph, each in a fresh process."""
    rows = []
    for graph in graphs:
        for solver in ("gtsam", "fglang"):
            run = subprocess.run([sys.executable, __file__, "--peak-of", solver, "--graph", graph, "--side", str(side)],
                                 capture_output=True, text=True)
            if run.returncode != 0:
                print(f"{solver} on {graph}: the child failed:\n{run.stderr[-2000:]}")
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(f"peak RSS {solver:7s} {graph:10s} {r['peak_mb']:8.1f} MB "
                  f"(before the solve {r['before_solve_mb']:.1f})  cost {r['cost']:.6f}")
    return rows


def main() -> None:
    from g2o import pose_graph_cost, read_g2o

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-synthetic", action="store_true")
    ap.add_argument("--no-gbp", action="store_true", help="skip the GBP rows")
    ap.add_argument("--gbp-iters", type=int, default=1500)
    ap.add_argument("--side", type=int, default=100, help="synthetic grid side (side^2 poses)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "map_pose_graph.json"))
    ap.add_argument("--memory", action="store_true", help="only peak RSS of each first solve (fresh processes)")
    ap.add_argument("--peak-of", choices=("gtsam", "fglang"), help=argparse.SUPPRESS)
    ap.add_argument("--graph", default="m3500", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peak_of:
        print(json.dumps(child_peak(args.peak_of, args.graph, args.side)))
        return
    if args.memory:
        graphs = ["m3500"] + ([] if args.no_synthetic else ["synthetic"])
        out = {"machine": platform.machine(), "cpus": os.cpu_count(), "side": args.side,
               "rows": memory_rows(graphs, args.side)}
        path = Path(args.out).with_name("map_pose_graph_memory.json")
        path.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {path}")
        return
    model_path = ROOT / "examples" / "m3500.fg"
    data, init = read_g2o(G2O)
    rows = [{"method": "M3500 odometry guess", "wall_s": 0.0, "cpu_s": 0.0,
             "cost": pose_graph_cost(data, np.asarray(init["pose"])), "iterations": 0}]
    rows += gtsam_rows(G2O, args.repeat)
    rows += fglang_rows(model_path, data, init, args.repeat, "M3500")
    rows += fglang_rows(model_path, data, init, args.repeat, "M3500", tol=1e-5)
    if not args.no_gbp:
        rows += gbp_rows(model_path, data, init, args.gbp_iters)
    if not args.no_synthetic:
        text, sdata, sinit = synthetic_graph(args.side)
        with tempfile.NamedTemporaryFile("w", suffix=".g2o", delete=False) as f:
            f.write(text)
        try:
            rows.append({"method": f"synthetic {args.side}x{args.side} odometry guess", "wall_s": 0.0,
                         "cpu_s": 0.0, "cost": pose_graph_cost(sdata, np.asarray(sinit["pose"])),
                         "iterations": 0})
            rows += [dict(r, method="synthetic: " + r["method"]) for r in gtsam_rows(Path(f.name), args.repeat)]
            rows += fglang_rows(model_path, sdata, sinit, args.repeat, f"synthetic {args.side}x{args.side}")
        finally:
            os.unlink(f.name)
    for r in rows:
        cpu = f"{r['cpu_s']:7.3f}" if r.get("cpu_s") is not None else "      -"
        print(f"{r['method']:<72} cost {r['cost']:>15.6f}  wall {r['wall_s']:7.3f} s  cpu {cpu} s  "
              f"iters {r['iterations']}")
    out = {"machine": platform.machine(), "cpus": os.cpu_count(), "repeat": args.repeat, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
