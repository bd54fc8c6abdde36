"""GBP and map over several devices: per-iteration time of GBP on the
denoise grid and of map's Levenberg-Marquardt on the M3500 pose graph against
1, 2 and 4 devices, the answer's difference from one device, and the
collective traffic XLA put in the compiled program.

    python bench/scale_out.py [--sizes 128 256] [--devices 1 2 4] [--iters 200] [--only gbp|map]

map's rows split an LM iteration into the linearization (residuals,
Jacobians, ``J^T W r`` and ``J^T W J`` on the devices, their sum over the
mesh, and the copy back to the host) and the damped factorization and solve
(qdldl on the host, the same for every device count).

Here the devices are *forced host devices*
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``, set by this script
for its worker process): N "devices" share the same CPU cores, so no speedup
is expected; what this measures is that the sharded program gives the one-
device answer and what partitioning costs. On a machine with several GPUs run
it with ``--platform gpu`` (no forced devices then).

Prints a table and writes bench/results/scale_out.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REPEATS = 5
_BYTES = {"f32": 4, "f64": 8, "s32": 4, "u32": 4, "pred": 1, "f16": 2, "bf16": 2, "s64": 8, "u8": 1}
_COLLECTIVE = re.compile(r"=\s*(\(?[a-z0-9]+\[[^=]*?)\s+(all-reduce|all-gather|collective-permute|all-to-all|"
                         r"reduce-scatter)(?:-start)?\(")


def collective_bytes(hlo: str) -> dict[str, int]:
    """Bytes each kind of collective produces, summed over the compiled
    program's collectives (nearly all sit in the loop body: one pass per
    iteration)."""
    out: dict[str, int] = {}
    for shapes, kind in _COLLECTIVE.findall(hlo):
        total = 0
        for dt, dims in re.findall(r"([a-z0-9]+)\[([0-9,]*)\]", shapes):
            n = 1
            for x in filter(None, dims.split(",")):
                n *= int(x)
            total += n * _BYTES.get(dt, 4)
        out[kind] = out.get(kind, 0) + total
    return out


def worker(sizes: list[int], devices: list[int], iters: int, platform_name: str) -> list[dict]:
    import jax
    import numpy as np

    import fglang
    from fglang.runtime.device import device_mesh
    from fglang.runtime.gbp import engine, sharding
    from fglang.runtime.gbp.lowering import to_graph

    model = fglang.load(ROOT / "examples" / "denoise_normal.fg")
    rows = []
    for n in sizes:
        rng = np.random.default_rng(0)
        img = np.sin(np.linspace(0, 6, n))[:, None] * np.cos(np.linspace(0, 4, n))[None, :]
        img = img + 0.1 * rng.normal(size=(n, n))
        graph = to_graph(model.bind({"H": n, "W": n, "img": img}))
        ref = None
        for k in devices:
            mesh = device_mesh(k, platform_name)
            hlo: list[str] = []
            spy = engine.run_chunk_sharded_of

            def capture(c, plan, data, state, _hlo=hlo, _spy=spy):
                if not _hlo:
                    _hlo.append(sharding.run_chunk_sharded.lower(plan, c, data, state).compile().as_text())
                return _spy(c, plan, data, state)

            engine.run_chunk_sharded_of = capture
            try:
                def run(n_iters: int, _mesh=mesh, _graph=graph):
                    res = engine.run_gbp(_graph, iters=n_iters, tol=0.0, chunk_size=2 * iters, mesh=_mesh)
                    return jax.block_until_ready(res.means["x"]), res

                mean, res = run(iters)  # compiles the chunk (2 * iters, stopped at iters by data)

                def best(n_iters: int) -> float:
                    ts = []
                    for _ in range(REPEATS):
                        t0 = time.perf_counter()
                        run(n_iters)
                        ts.append(time.perf_counter() - t0)
                    return min(ts)

                whole, double = best(iters), best(2 * iters)
                ms = 1e3 * max(double - whole, 0.0) / iters  # no compile, setup or read-out in it
                ms_whole = 1e3 * whole / iters
            finally:
                engine.run_chunk_sharded_of = spy
            ref = mean if ref is None else ref
            comm = collective_bytes(hlo[0]) if hlo else {}
            rows.append({
                "grid": n, "devices": k, "ms_per_iter": ms, "ms_per_iter_whole_run": ms_whole,
                "max_abs_diff_vs_first": float(np.abs(np.asarray(mean) - np.asarray(ref)).max()),
                "collective_bytes_in_program": comm,
                "device_kind": str(jax.devices(platform_name)[0].device_kind) if platform_name else "",
            })
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


G2O = ROOT.parent / "shared" / "data" / "m3500.g2o"


def map_worker(devices: list[int], platform_name: str) -> list[dict]:
    """map on M3500 (``examples/m3500.fg``, 10,500 unknowns): per device count
    the linearization and the host solve, best of ``REPEATS``, and a whole LM
    fit's time per iteration (compiled already)."""
    import importlib.util

    import jax
    import numpy as np

    import fglang
    from fglang.runtime.device import device_mesh, mesh_context
    from fglang.runtime.map import fit as map_fit

    spec = importlib.util.spec_from_file_location("g2o", ROOT / "examples" / "g2o.py")
    g2o = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(g2o)
    data, init = g2o.read_g2o(G2O)
    model = fglang.load(ROOT / "examples" / "m3500.fg")
    bm = model.bind(data)
    x0 = np.asarray(init["pose"], np.float64).ravel()
    rows, ref = [], None
    with jax.enable_x64(True):
        for k in devices:
            mesh = device_mesh(k, platform_name)
            with mesh_context(mesh):
                problem, solver = map_fit._least_squares(bm, {}, np.float64)
            _, g, h = problem.linearize(x0)  # compiles

            def best(fn) -> float:
                ts = []
                for _ in range(REPEATS):
                    t0 = time.perf_counter()
                    fn()
                    ts.append(time.perf_counter() - t0)
                return min(ts)

            lin = best(lambda _p=problem: _p.linearize(x0))
            damp = 1e-5 * np.clip(problem.diagonal(h), 1e-6, 1e32)

            def solve(_p=problem, _s=solver, _g=g, _h=h, _d=damp):
                _s.factor(_p.damped(_h, _d))
                return _s.solve(_g)

            host = best(solve)
            kw = dict(backend="map", init=init, dtype="float64", devices=k, draws=10,
                      device=platform_name if platform_name != "cpu" else None)
            model.fit(data, **kw)  # compiles the fit's cost and linearization on this mesh
            post = min((model.fit(data, **kw) for _ in range(2)), key=lambda p: p.attrs["wall_time_s"])
            a = post.attrs
            mean = post.mean("pose")
            ref = mean if ref is None else ref
            comm = collective_bytes(problem.compiled_text(x0)) if mesh is not None else {}
            rows.append({
                "graph": "M3500", "devices": k, "unknowns": int(problem.n),
                "ms_linearize": 1e3 * lin, "ms_factor_solve": 1e3 * host,
                "ms_per_lm_iteration": 1e3 * a["wall_time_s"] / max(a["linearizations"], 1),
                "iterations": int(a["iterations"]), "cost": float(a["cost"]),
                "max_abs_diff_vs_first": float(np.abs(np.asarray(mean) - np.asarray(ref)).max()),
                "collective_bytes_in_program": comm,
            })
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def print_map(rows: list[dict], where: str) -> None:
    print(f"map (Levenberg-Marquardt) on M3500, {where}")
    print("linearize: residuals, Jacobians, g and J^T W J on the devices, summed, copied to the host;")
    print("factor+solve: qdldl on the host; LM iter: a whole fit's LM time / its linearizations")
    print(f"{'devices':>7} {'linearize ms':>13} {'factor+solve ms':>16} {'LM iter ms':>11} {'iters':>6}"
          f" {'max|diff|':>10} {'collective KiB/lin':>19}")
    for r in rows:
        kib = sum(r["collective_bytes_in_program"].values()) / 1024
        print(f"{r['devices']:>7} {r['ms_linearize']:>13.2f} {r['ms_factor_solve']:>16.2f}"
              f" {r['ms_per_lm_iteration']:>11.2f} {r['iterations']:>6} {r['max_abs_diff_vs_first']:>10.1e}"
              f" {kib:>19.1f}")


def print_gbp(rows: list[dict], where: str, forced: bool) -> None:
    print(f"GBP denoise grid, {where}{' (no speedup expected: the devices share the cores)' if forced else ''}")
    print("ms/iter: (run of 2T iterations - run of T) / T; whole: a run of T iterations / T (setup and read-out in);")
    print("collective KiB: what the compiled collectives produce (nearly all in the loop body: per iteration)")
    print(f"{'grid':>6} {'devices':>7} {'ms/iter':>9} {'whole':>9} {'vs 1 dev':>9} {'max|diff|':>10}"
          f" {'collective KiB/iter':>20}")
    base: dict[int, float] = {}
    for r in rows:
        base.setdefault(r["grid"], r["ms_per_iter_whole_run"])
        kib = sum(r["collective_bytes_in_program"].values()) / 1024
        rel = r["ms_per_iter_whole_run"] / base[r["grid"]] if base[r["grid"]] else float("nan")
        print(f"{r['grid']:>5}^2 {r['devices']:>7} {r['ms_per_iter']:>9.3f} {r['ms_per_iter_whole_run']:>9.3f}"
              f" {rel:>8.2f}x {r['max_abs_diff_vs_first']:>10.1e} {kib:>20.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--platform", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--only", choices=["gbp", "map"], default=None, help="run one backend's rows")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        gbp = worker(a.sizes, a.devices, a.iters, a.platform) if a.only != "map" else []
        maps = map_worker(a.devices, a.platform) if a.only != "gbp" else []
        print("ROWS " + json.dumps({"gbp": gbp, "map": maps}))
        return
    env = dict(os.environ)
    if a.platform == "cpu":
        forced_flag = f" --xla_force_host_platform_device_count={max(a.devices)}"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + forced_flag).strip()
        env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, __file__, "--worker", "--sizes", *map(str, a.sizes), "--devices", *map(str, a.devices),
           "--iters", str(a.iters), "--platform", a.platform] + (["--only", a.only] if a.only else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ROWS ")]
    if proc.returncode or not lines:
        sys.exit(proc.stderr[-3000:])
    both = json.loads(lines[-1][5:])
    rows, map_rows = both["gbp"], both["map"]
    forced = a.platform == "cpu"
    where = f"forced host CPU devices on {os.cpu_count()} cores" if forced else a.platform
    if map_rows:
        print_map(map_rows, where)
    if rows:
        print_gbp(rows, where, forced)
    # --only map keeps the GBP rows of scale_out.json
    out = HERE / "results" / ("scale_out_map.json" if a.only == "map" else "scale_out.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "platform": a.platform, "forced_host_devices": forced, "cpu_count": os.cpu_count(),
        "machine": platform.platform(), "iters": a.iters, "rows": rows, "map_rows": map_rows,
        "note": "forced host devices share the CPU cores: correctness and overhead, not speedup" if forced else "",
    }, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
