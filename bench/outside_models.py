"""The outside models (tests/outside/: 12 posteriordb posteriors) fitted with each
NumPyro backend's defaults, against posteriordb's reference posteriors.

    python bench/outside_models.py [--backends vi mcmc] [--models NAME ...] [--seed 0] [--round2 | --round3]

``--round2`` fits the second set instead (tests/outside/round2/: 10 more
posteriordb posteriors, see tests/test_outside_round2.py) and writes
bench/results/outside_models_round2.json; ``--round3`` the third
(tests/outside/round3/, tests/test_outside_round3.py), written to
bench/results/outside_models_round3.json.

For each model and backend: the worst parameter's |mean - reference mean| in
reference sds, the sd ratio furthest from 1, whether every parameter agrees
(mean within 0.25 sd, sd ratio in 0.7-1.3), VI's Pareto k-hat (above 0.7 the
fit warns instead of agreeing), NUTS's divergences, and the wall time of the
fit (JIT included; the persistent compilation cache is off so that every fit
compiles, as a first run does). Prints a table (Markdown) and writes
bench/results/outside_models.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", nargs="+", default=["vi", "mcmc"])
    ap.add_argument("--models", nargs="+", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", action="store_true", help="keep JAX's persistent compilation cache on")
    ap.add_argument("--round2", action="store_true", help="the second set, tests/outside/round2/")
    ap.add_argument("--round3", action="store_true", help="the third set, tests/outside/round3/")
    args = ap.parse_args()
    if not args.cache:
        os.environ["FGLANG_NO_CACHE"] = "1"

    import jax
    from test_outside_models import KHAT_BAD, MEAN_TOL, MODELS, SD_RATIO, compare, load

    if args.round2:
        from test_outside_round2 import MODELS, load
    elif args.round3:
        from test_outside_round3 import MODELS, load

    rows = []
    for name in args.models or MODELS:
        model, data, ref = load(name)
        for backend in args.backends:
            t, cpu = time.perf_counter(), time.process_time()
            post = model.fit(data, backend=backend, seed=args.seed)
            wall, cpu = time.perf_counter() - t, time.process_time() - cpu
            cmp = compare(post, ref)
            worst_mean = max(cmp.items(), key=lambda kv: kv[1][0])
            worst_sd = max(cmp.items(), key=lambda kv: abs(kv[1][1] - 1))
            agrees = all(e <= MEAN_TOL and SD_RATIO[0] <= s <= SD_RATIO[1] for e, s in cmp.values())
            row = {
                "model": name,
                "posteriordb": ref["posteriordb"],
                "params": len(cmp),
                "backend": backend,
                "max_mean_err_sd": round(worst_mean[1][0], 3),
                "max_mean_err_param": worst_mean[0],
                "worst_sd_ratio": round(worst_sd[1][1], 3),
                "worst_sd_param": worst_sd[0],
                "agrees": agrees,
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "dtype": post.attrs.get("dtype"),
                "warnings": post.warnings(),
            }
            if backend == "vi":
                a = post.attrs
                row.update(khat=round(a["khat"], 3), guide=a["guide"], steps=a["steps"], stop=a["stop"],
                           warned=any("k-hat" in w for w in row["warnings"]))
                row["ok"] = agrees if a["khat"] < KHAT_BAD else row["warned"]
            elif backend == "mcmc":
                row["divergences"] = int(post.sample_stats["diverging"].sum())
                rhat = [r["r_hat"] for r in post.summary(max_rows=10**9) if "r_hat" in r]
                row["max_r_hat"] = round(float(max(rhat)), 4) if rhat else None
                row["ok"] = agrees
            else:  # map: the mode and its Laplace sd, against the posterior's mean and sd
                row["ok"] = agrees
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "warnings"}), file=sys.stderr, flush=True)

    print("| model | params | backend | max mean error (sd) | worst sd ratio | k-hat / divergences | agrees | wall |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        diag = (f"k-hat {r['khat']:.2f}" if r["backend"] == "vi"
                else f"{r['divergences']} div." if r["backend"] == "mcmc" else "-")
        verdict = "yes" if r["agrees"] else ("no, warned (k-hat)" if r.get("warned") else "no")
        err = f"{r['max_mean_err_sd']:.2f} ({r['max_mean_err_param']})"
        ratio = f"{r['worst_sd_ratio']:.2f} ({r['worst_sd_param']})"
        print(f"| {r['model']} | {r['params']} | {r['backend']} | {err} | {ratio} | {diag} | {verdict} "
              f"| {r['wall_s']:.1f} s |")
    ok = sum(r["ok"] for r in rows)
    print(f"\n{ok} of {len(rows)} fits agree with the reference or (vi) warn by k-hat")
    suffix = "_round2" if args.round2 else "_round3" if args.round3 else ""
    out = HERE / "results" / f"outside_models{suffix}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "jax": jax.__version__,
                    "device": str(jax.devices()[0])},
        "seed": args.seed,
        "rows": rows,
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
