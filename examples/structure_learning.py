"""Structure learning: recover the edges of a sparse linear SEM with every backend.

    python examples/structure_learning.py                # the table (about 4 minutes on 2 cores)
    python examples/structure_learning.py --quick        # gbp and vi only (about 3.5 minutes)
    python examples/structure_learning.py --full         # + NUTS with the horseshoe (about 3 more minutes)
    python examples/structure_learning.py --regenerate   # rewrite data/structure_learning.json

Each run also writes its table as JSON -- per run the backend, prior, options,
edges found, true edges, precision, recall and wall seconds, plus the machine
(platform, cpu count, jax) -- to bench/results/structure_learning.json
(``--out PATH`` to change, ``--out -`` for none).

The data: ``P = 20`` variables in a known topological order, ``N = 200``
samples from a random sparse DAG (each variable has 0-3 parents among the
earlier ones, weights of either sign with ``|w|`` in [0.4, 0.9], N(0, 1)
noise). The model (``structure_learning.fg``) regresses every variable on
all earlier ones -- ``E = P (P - 1) / 2 = 190`` candidate edges -- with a
sparsity prior on the weights. The runner swaps that prior (its ``var w``
line) to compare priors, fits each (backend, prior), and scores the edges:

    found  <=>  |posterior mean| > THRESHOLD * posterior sd     (THRESHOLD = 3)

i.e. the central ~99.7% interval of a Gaussian marginal excludes 0. It needs
no tuning per prior and uses what every backend reports (GBP's Gaussian
marginals, VI's guide, MCMC's draws). Precision = true found / found,
recall = true found / true edges. Only the model's data keys go to the fit;
the truth (``w_true``, ``W_true``, ``child``) stays in the data file for scoring.

What ``python examples/structure_learning.py`` prints (a 2-core x86-64 CPU;
the wall times are the fits, JAX compilation included, and vary by machine):

    P=20 variables, N=200 samples, E=190 candidate edges, 29 true; found = |mean| > 3 sd
    backend prior                     options                            found  precision  recall  wall s
    -----------------------------------------------------------------------------------------------------
    gbp     horseshoe(0.1)            dtype=float64                         29      1.000   1.000    43.2
    gbp     reg_horseshoe(0.1, 2, 4)  dtype=float64                         28      1.000   0.966    37.7
    gbp     laplace(0, 0.2)           dtype=float64                         28      1.000   0.966    25.1
    gbp     ard()                     dtype=float64                         29      1.000   1.000    45.1
    gbp     spike_slab(0.1, 1, 0.05)  dtype=float64                         29      1.000   1.000    28.4
    gbp     normal(0, 1)              dtype=float64                         29      0.966   0.966    17.5
    vi      horseshoe(0.1)            defaults                              28      1.000   0.966    13.0
    vi      laplace(0, 0.2)           defaults                              31      0.935   1.000     5.3
    mcmc    laplace(0, 0.2)           chains=2 warmup=300 samples=300       28      1.000   0.966    26.1
    wrote bench/results/structure_learning.json

The sparsity priors lose at most one true edge and (with GBP and MCMC) find no
false one; the normal(0, 1) baseline finds a false edge and misses a true
one, and VI with the Laplace prior finds two false ones (a mean-field guide
tends to understate the posterior sds, which this rule divides by). The MCMC run is short (2 x 300 draws after 300
warmup, against NumPyro's 4 x 1000 after 1000) to keep the table to minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODEL_PATH = HERE / "structure_learning.fg"
DATA_PATH = HERE / "data" / "structure_learning.json"
OUT_PATH = HERE.parent / "bench" / "results" / "structure_learning.json"
THRESHOLD = 3.0
SEED = 7

# (backend, prior on w, fit options). The first prior is the model file's own.
GBP = {"dtype": "float64"}
MCMC_SHORT = {"chains": 2, "warmup": 300, "samples": 300}
RUNS: list[tuple[str, str, dict]] = [
    ("gbp", "horseshoe(0.1)", GBP),
    ("gbp", "reg_horseshoe(0.1, 2, 4)", GBP),
    ("gbp", "laplace(0, 0.2)", GBP),
    ("gbp", "ard()", GBP),
    ("gbp", "spike_slab(0.1, 1, 0.05)", GBP),
    ("gbp", "normal(0, 1)", GBP),  # no sparsity prior: the baseline
    ("vi", "horseshoe(0.1)", {}),
    ("vi", "laplace(0, 0.2)", {}),
    ("mcmc", "laplace(0, 0.2)", MCMC_SHORT),
]
FULL_RUNS = [("mcmc", "horseshoe(0.1)", MCMC_SHORT)]


# ----------------------------------------------------------------------------
# Data.


def simulate(seed: int = SEED, n: int = 200, p: int = 20, sd: float = 1.0) -> dict:
    """A random sparse DAG over ``p`` variables in topological order 0..p-1 and
    ``n`` samples of its linear SEM, in the model's data layout (plus the truth)."""
    rng = np.random.default_rng(seed)
    w_true = np.zeros((p, p))  # w_true[j, k]: weight of edge k -> j (k < j)
    for j in range(1, p):
        k = int(rng.choice(4, p=[0.1, 0.3, 0.4, 0.2]))
        pa = rng.choice(j, size=min(k, j), replace=False)
        w_true[j, pa] = rng.choice([-1.0, 1.0], size=len(pa)) * rng.uniform(0.4, 0.9, size=len(pa))
    x = np.zeros((n, p))
    for j in range(p):
        x[:, j] = x @ w_true[j] + rng.normal(0.0, sd, n)
    parent = np.concatenate([np.arange(j) for j in range(p)]).astype(int)
    child = np.concatenate([np.full(j, j) for j in range(p)]).astype(int)
    start = np.concatenate([[0], np.cumsum(np.arange(p))]).astype(int)
    return {
        "N": n, "P": p, "E": len(parent), "parent": parent, "start": start, "X": x, "sd": sd,
        "child": child, "w_true": w_true[child, parent], "W_true": w_true,
    }  # fmt: skip


def _clean(v):
    """numpy -> plain JSON values: ints stay ints, floats keep 8 significant digits."""
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    if isinstance(v, list | tuple):
        return [_clean(u) for u in v]
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return float(f"{float(v):.8g}")
    return v


def dumps(data: dict) -> str:
    """The data file's text: one key per line, as ``make_data.py`` writes them."""
    items = [f"  {json.dumps(k)}: {json.dumps(_clean(v), separators=(',', ':'))}" for k, v in data.items()]
    return "{\n" + ",\n".join(items) + "\n}\n"


def load_data(path: Path = DATA_PATH) -> dict:
    return json.loads(Path(path).read_text())


# ----------------------------------------------------------------------------
# Models and scores.


def model_source(prior: str | None = None) -> str:
    """The model's text, with the prior on ``w`` replaced by ``prior``."""
    text = MODEL_PATH.read_text()
    if prior is None:
        return text
    new, n = re.subn(r"^(var w: real\[E\] ~ ).*$", lambda m: m.group(1) + prior, text, flags=re.M)
    assert n == 1, "structure_learning.fg must have one 'var w: real[E] ~ PRIOR' line"
    return new


def model(prior: str | None = None):
    import fglang

    if prior is None:
        return fglang.load(MODEL_PATH)
    return fglang.compile(model_source(prior), str(MODEL_PATH))


def score(mean, sd, w_true, threshold: float = THRESHOLD) -> dict:
    """Edges found (|mean| > threshold * sd) against the true edges (w_true != 0)."""
    mean, sd, truth = np.asarray(mean), np.asarray(sd), np.asarray(w_true) != 0
    found = np.abs(mean) > threshold * sd
    tp = int(np.sum(found & truth))
    return {
        "found": int(found.sum()), "true": int(truth.sum()), "tp": tp,
        "precision": tp / found.sum() if found.any() else 1.0,
        "recall": tp / truth.sum() if truth.any() else 1.0,
    }  # fmt: skip


def model_data(m, data: dict) -> dict:
    """Only the keys the model declares (the truth -- ``child``, ``w_true``,
    ``W_true`` -- stays in the file for scoring, out of the fit)."""
    return {k: v for k, v in data.items() if k in m.ir.data}


def run(backend: str, prior: str, options: dict, data: dict, threshold: float = THRESHOLD) -> dict:
    """Fit one (backend, prior) and score its edges; wall time is the
    fit (binding, JAX tracing and compiling, inference), not parsing the .fg."""
    m = model(prior)
    t0 = time.perf_counter()
    post = m.fit(model_data(m, data), backend=backend, **options)
    wall = time.perf_counter() - t0
    s = score(post.mean("w"), post.sd("w"), data["w_true"], threshold)
    return {"backend": backend, "prior": prior, "options": options, "wall_s": wall, **s}


def _opts(o: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in o.items()) or "defaults"


def table(rows: list[dict]) -> str:
    head = f"{'backend':<8}{'prior':<26}{'options':<34}{'found':>6}{'precision':>11}{'recall':>8}{'wall s':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['backend']:<8}{r['prior']:<26}{_opts(r['options']):<34}{r['found']:>6}"
            f"{r['precision']:>11.3f}{r['recall']:>8.3f}{r['wall_s']:>8.1f}"
        )
    return "\n".join(lines)


def machine() -> dict:
    """Where the table was made: timings only compare on like machines."""
    import jax

    return {
        "platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "jax": jax.__version__, "jax_device": str(jax.devices()[0]),
    }  # fmt: skip


def report(rows: list[dict], data: dict, threshold: float, command: str) -> dict:
    """The table as JSON: the runs plus what is needed to read and reproduce them."""
    return {
        "benchmark": "structure_learning (sparse linear SEM, edge recovery)",
        "command": command,
        "data": {"file": str(DATA_PATH.relative_to(HERE.parent)), "P": data["P"], "N": data["N"],
                 "E": data["E"], "true_edges": int(np.count_nonzero(data["w_true"]))},
        "rule": f"found <=> |posterior mean| > {threshold:g} * posterior sd",
        "threshold": threshold,
        **machine(),
        "runs": [
            {"backend": r["backend"], "prior": r["prior"], "options": r["options"], "found": r["found"],
             "true_found": r["tp"], "true_edges": r["true"], "precision": round(float(r["precision"]), 4),
             "recall": round(float(r["recall"]), 4), "wall_s": round(r["wall_s"], 2)}
            for r in rows
        ],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--regenerate", action="store_true", help="rewrite data/structure_learning.json and stop")
    ap.add_argument("--quick", action="store_true", help="gbp and vi only")
    ap.add_argument("--full", action="store_true", help="also NUTS with the horseshoe (several minutes)")
    ap.add_argument("--threshold", type=float, default=THRESHOLD, help="found when |mean| > THRESHOLD * sd")
    ap.add_argument("--out", type=Path, default=OUT_PATH, help=f"the table as JSON (default {OUT_PATH.name} "
                    "in bench/results/; '-' for none)")  # fmt: skip
    a = ap.parse_args(argv)
    if a.regenerate:
        DATA_PATH.write_text(dumps(simulate()))
        print(f"wrote {DATA_PATH}")
        return 0
    data = load_data()
    runs = [r for r in RUNS if not (a.quick and r[0] == "mcmc")] + (FULL_RUNS if a.full else [])
    print(
        f"P={data['P']} variables, N={data['N']} samples, E={data['E']} candidate edges, "
        f"{int(np.count_nonzero(data['w_true']))} true; found = |mean| > {a.threshold:g} sd"
    )
    rows = []
    for backend, prior, options in runs:
        rows.append(run(backend, prior, options, data, a.threshold))
        print(table(rows).splitlines()[-1] if len(rows) > 1 else table(rows), flush=True)
    if str(a.out) != "-":
        command = "python examples/structure_learning.py " + " ".join(sys.argv[1:] if argv is None else argv)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report(rows, data, a.threshold, command.strip()), indent=2) + "\n")
        shown = a.out.resolve()
        print(f"wrote {shown.relative_to(HERE.parent) if shown.is_relative_to(HERE.parent) else shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
