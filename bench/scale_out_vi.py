"""VI over several devices and ``fit_many`` (issue 17): the time per
optimization step of a data-parallel VI fit against 1, 2 and 4 devices, and
the throughput of ``model.fit_many`` against a Python loop of ``model.fit``.

    python bench/scale_out_vi.py [--rows 4096 65536] [--devices 1 2 4] [--sets 8 32] [--loop 4]

The devices are forced host CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``, set by this script
for its worker process): they share this machine's cores, so a speedup over
devices is not expected here; the column says what splitting costs and that
the answer is the one-device answer. ``fit_many``'s gain is real on one CPU:
one compiled program and one trace for every data set instead of one each.

Prints two tables and writes bench/results/scale_out_vi.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

LINEAR = """\
model linear
data N: int
data x[N]: real
data y[N]: real
var a: real ~ normal(0, 10)
var b: real ~ normal(0, 10)
var s: positive ~ half_normal(1)
factor lik[n in 0:N]: y[n] ~ normal(a + b * x[n], s)
"""

STEPS = 600


def _data(rng, rows: int, intercept: float) -> dict:
    x = rng.normal(size=rows)
    return {"N": rows, "x": x.tolist(), "y": (intercept + 2.0 * x + 0.5 * rng.normal(size=rows)).tolist()}


def worker(rows: list[int], devices: list[int], sets: list[int], loop: int) -> dict:
    import numpy as np

    import fglang

    m = fglang.compile(LINEAR)
    kw = dict(backend="vi", steps=STEPS, draws=100)
    data_parallel = []
    for n in rows:
        d = _data(np.random.default_rng(0), n, 1.0)
        ref = None
        for k in devices:
            m.fit(d, devices=k, **kw)  # fills the compilation cache: the timed fit below traces but skips XLA
            post = m.fit(d, devices=k, **kw)
            ph = post.attrs["phase_seconds"]
            ref = post if ref is None else ref
            data_parallel.append({
                "rows": n, "devices": k, "steps": post.attrs["steps"],
                "ms_per_step": 1e3 * ph["optimize"] / max(post.attrs["steps"], 1),
                "seconds": post.attrs["seconds"], "sharded_data": post.attrs.get("sharded_data", []),
                "max_abs_diff_vs_first": max(float(np.abs(ref.draws[v] - post.draws[v]).max()) for v in "abs"),
            })
            print(json.dumps(data_parallel[-1]), file=sys.stderr, flush=True)
    many = []
    rng = np.random.default_rng(1)
    pool = [_data(rng, 50, float(i % 5)) for i in range(max(sets + [loop]))]
    m.fit(pool[-1], **kw)  # compiled once (the loop's fits then only trace: the cache holds the programs)
    t0 = time.perf_counter()
    alone = [m.fit(d, **kw) for d in pool[:loop]]
    loop_each = (time.perf_counter() - t0) / loop
    for k in devices:
        for b in sets:
            m.fit_many(pool[:b], devices=k, **kw)  # compile (cached for the timed call)
            t0 = time.perf_counter()
            posts = m.fit_many(pool[:b], devices=k, **kw)
            wall = time.perf_counter() - t0
            diff = max(float(np.abs(alone[i].draws[v] - posts[i].draws[v]).max())
                       for i in range(min(loop, b)) for v in "abs")
            many.append({"sets": b, "devices": k, "seconds": wall, "seconds_per_set": wall / b,
                         "loop_seconds_per_set": loop_each, "speedup_vs_loop": loop_each * b / wall,
                         "max_abs_diff_vs_separate_fits": diff,
                         "phase_seconds": posts[0].attrs["phase_seconds"]})
            print(json.dumps(many[-1]), file=sys.stderr, flush=True)
    return {"data_parallel": data_parallel, "fit_many": many}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[4096, 65536])
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--sets", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--loop", type=int, default=4, help="separate fits timed for the loop's per-set time")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print("ROWS " + json.dumps(worker(a.rows, a.devices, a.sets, a.loop)))
        return
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={max(a.devices)}").strip()
    env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, __file__, "--worker", "--rows", *map(str, a.rows), "--devices", *map(str, a.devices),
           "--sets", *map(str, a.sets), "--loop", str(a.loop)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ROWS ")]
    if proc.returncode or not lines:
        sys.exit(proc.stderr[-3000:])
    res = json.loads(lines[-1][5:])
    print(f"VI data-parallel, linear regression, forced host CPU devices on {os.cpu_count()} cores "
          "(no speedup expected: the devices share the cores)")
    print(f"{'rows':>8} {'devices':>7} {'steps':>6} {'ms/step':>9} {'max|diff|':>10}  split data")
    for r in res["data_parallel"]:
        print(f"{r['rows']:>8} {r['devices']:>7} {r['steps']:>6} {r['ms_per_step']:>9.3f}"
              f" {r['max_abs_diff_vs_first']:>10.1e}  {','.join(r['sharded_data']) or '-'}")
    print("\nfit_many against a loop of fit (linear regression, 50 rows per data set)")
    print(f"{'sets':>5} {'devices':>7} {'s/set':>8} {'loop s/set':>10} {'speedup':>8} {'max|diff|':>10}")
    for r in res["fit_many"]:
        print(f"{r['sets']:>5} {r['devices']:>7} {r['seconds_per_set']:>8.3f} {r['loop_seconds_per_set']:>10.3f}"
              f" {r['speedup_vs_loop']:>7.1f}x {r['max_abs_diff_vs_separate_fits']:>10.1e}")
    out = HERE / "results" / "scale_out_vi.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "forced_host_devices": True, "cpu_count": os.cpu_count(), "machine": platform.platform(),
        "load_average": os.getloadavg(), "steps_cap": STEPS, **res,
        "note": "forced host devices share the CPU cores (and this machine is shared): correctness and overhead, "
                "not a device speedup",
    }, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
