"""GBP learning of the digits MLP (examples/digits_gbp.fg) vs optax Adam on the
same network and split: test accuracy, training examples/s, peak RSS.
Not a timed test. Writes bench/results/gbp_learning.json.

    python bench/gbp_learning.py --n-train 200 --hidden 16 --iters 100 --damping 0.5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import digits  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-train", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--damping", type=float, default=0.5)
    ap.add_argument("--adam-epochs", type=int, default=50)
    ap.add_argument("--vi-steps", type=int, default=None, help="cap on VI's steps (default: VI's own)")
    ap.add_argument("--no-gbp", action="store_true")
    ap.add_argument("--no-vi", action="store_true")
    ap.add_argument("--cpu-note", default="", help="what else the machine was doing")
    ap.add_argument("--out", default=str(ROOT / "bench/results/gbp_learning.json"))
    a = ap.parse_args()
    import jax

    t0 = time.time()
    rows = digits.main([f"--n-train={a.n_train}", f"--hidden={a.hidden}", f"--batch-size={a.batch_size}",
                        f"--iters={a.iters}", f"--damping={a.damping}", f"--adam-epochs={a.adam_epochs}",
                        ] + ([f"--vi-steps={a.vi_steps}"] if a.vi_steps else [])
                       + (["--no-gbp"] if a.no_gbp else []) + (["--no-vi"] if a.no_vi else []))
    out = {"benchmark": "gbp_learning (digits MLP)", "device": str(jax.devices()[0]),
           "platform": platform.platform(), "cpu_count": os.cpu_count(), "cpu_note": a.cpu_note,
           "args": vars(a), "results": rows, "total_s": time.time() - t0,
           "peak_rss_mb": digits.maxrss_mb()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print("wrote", a.out)


if __name__ == "__main__":
    main()
