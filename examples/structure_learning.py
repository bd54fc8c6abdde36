"""Structure learning: recover the edges of a sparse linear SEM with every backend.

    python examples/structure_learning.py                # the table (a few minutes)
    python examples/structure_learning.py --quick        # gbp and vi only (about a minute)
    python examples/structure_learning.py --full         # + NUTS with the horseshoe (slow)
    python examples/structure_learning.py --regenerate   # rewrite data/structure_learning.json

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
recall = true found / true edges.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODEL_PATH = HERE / "structure_learning.fg"
DATA_PATH = HERE / "data" / "structure_learning.json"
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


def run(backend: str, prior: str, options: dict, data: dict, threshold: float = THRESHOLD) -> dict:
    """Fit one (backend, prior) and score its edges; wall time includes compilation."""
    m = model(prior)
    t0 = time.perf_counter()
    post = m.fit(data, backend=backend, **options)
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--regenerate", action="store_true", help="rewrite data/structure_learning.json and stop")
    ap.add_argument("--quick", action="store_true", help="gbp and vi only")
    ap.add_argument("--full", action="store_true", help="also NUTS with the horseshoe (several minutes)")
    ap.add_argument("--threshold", type=float, default=THRESHOLD, help="found when |mean| > THRESHOLD * sd")
    a = ap.parse_args(argv)
    if a.regenerate:
        DATA_PATH.write_text(dumps(simulate()))
        print(f"wrote {DATA_PATH}")
        return 0
    data = load_data()
    runs = [r for r in RUNS if not (a.quick and r[0] == "mcmc")] + (FULL_RUNS if a.full else [])
    print(f"P={data['P']} variables, N={data['N']} samples, E={data['E']} candidate edges, "
          f"{int(np.count_nonzero(data['w_true']))} true; found = |mean| > {a.threshold:g} sd")
    rows = []
    for backend, prior, options in runs:
        rows.append(run(backend, prior, options, data, a.threshold))
        print(table(rows).splitlines()[-1] if len(rows) > 1 else table(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
