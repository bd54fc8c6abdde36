"""Continual digits: five tasks of two classes each ({0,1}, {2,3}, ..., {8,9}),
learned one after the other by the digits MLP (examples/digits_gbp.fg).

* **GBP, posterior as prior**: each task is learned by GBP filtering over its
  batches, starting from the previous task's posterior (per-node Gaussian
  marginals of the weights), as the GBP Learning paper does.
* **Adam, naive sequential**: the same network trained by optax Adam on each
  task in turn (fine-tuning), the usual forgetting baseline.

After each task both are scored on the test examples of every task seen so
far, two ways, from the same trained network:

* *task-incremental*: the task is known at test time and the prediction is the
  larger of that task's two outputs;
* *class-incremental*: the prediction is the largest of all ten outputs (the
  harder setting: old classes compete with new ones).

    python examples/continual_digits.py            # ~4 min on 2 cores

Prints one row per task and setting; ``--json PATH`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import digits
import numpy as np

HERE = Path(__file__).resolve().parent
TASKS = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]


def split_tasks(X: np.ndarray, y: np.ndarray, n_tasks: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(X[np.isin(y, t)], y[np.isin(y, t)]) for t in TASKS[:n_tasks]]


def scores(out: np.ndarray, y: np.ndarray, task: tuple[int, int]) -> tuple[float, float]:
    """(task-incremental, class-incremental) accuracy of outputs ``out [N, 10]``."""
    pair = np.asarray(task)
    task_pred = pair[out[:, pair].argmax(1)]
    return float((task_pred == y).mean()), float((out.argmax(1) == y).mean())


def gbp_learner(hidden: int, batch_size: int, iters: int, damping: float, seed: int):
    import fglang

    m = fglang.load(HERE / "digits_gbp.fg")
    post = None

    def learn(X: np.ndarray, y: np.ndarray) -> None:
        nonlocal post
        post = m.fit(digits.mlp_data(X, hidden, y), backend="gbp", batch_size=batch_size, epochs=1, iters=iters,
                     damping=damping, seed=seed, draws=1, prior=post)

    def outputs(X: np.ndarray) -> np.ndarray:
        return digits.predicted_outputs(m, post, X, hidden, iters=iters, damping=damping)

    return learn, outputs


def adam_learner(hidden: int, batch_size: int, epochs: int, lr: float, seed: int):
    import jax
    import jax.numpy as jnp

    key = jax.random.PRNGKey(seed)
    state: dict = {}
    rng = np.random.default_rng(seed)
    opt, step = digits.adam_step(lr)

    def learn(X: np.ndarray, y: np.ndarray) -> None:
        if not state:
            state["p"] = digits.mlp_init(key, X.shape[1], hidden)
        p, s = state["p"], opt.init(state["p"])  # a fresh optimizer per task: plain fine-tuning
        Xj, Yj = jnp.asarray(X, jnp.float32), jnp.asarray(digits.pm1(y), jnp.float32)
        for _ in range(epochs):
            o = rng.permutation(len(y))
            for s0 in range(0, len(y), batch_size):
                idx = o[s0:s0 + batch_size]
                p, s = step(p, s, Xj[idx], Yj[idx])
        state["p"] = p

    def outputs(X: np.ndarray) -> np.ndarray:
        return np.asarray(digits.mlp_forward(state["p"], jnp.asarray(X, jnp.float32)))

    return learn, outputs


def run(learners: dict, train, test, verbose: bool = True) -> list[dict]:
    rows = []
    for name, (learn, outputs) in learners.items():
        for k, (X, y) in enumerate(train):
            t = time.perf_counter()
            learn(X, y)
            fit_s = time.perf_counter() - t
            # One prediction over every task's test set (one compiled shape), scored per seen task.
            out = np.split(outputs(np.concatenate([Xt for Xt, _ in test])), np.cumsum([len(yt) for _, yt in test])[:-1])
            per_task = [scores(out[j], yt, TASKS[j]) for j, (_, yt) in enumerate(test[: k + 1])]
            row = {"method": name, "after_task": k + 1, "fit_s": fit_s,
                   "task_incremental": [a for a, _ in per_task], "class_incremental": [c for _, c in per_task]}
            row["task_incremental_mean"] = float(np.mean(row["task_incremental"]))
            row["class_incremental_mean"] = float(np.mean(row["class_incremental"]))
            rows.append(row)
            if verbose:
                print(f"{name:28s} after task {k + 1}: task-incr. mean {row['task_incremental_mean']:.3f} "
                      f"{_fmt(row['task_incremental'])}  class-incr. mean {row['class_incremental_mean']:.3f} "
                      f"{_fmt(row['class_incremental'])}  ({fit_s:.1f} s)", flush=True)
    return rows


def _fmt(xs: list[float]) -> str:
    return "[" + " ".join(f"{x:.2f}" for x in xs) + "]"


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=5)
    ap.add_argument("--per-task", type=int, default=0, help="training examples per task (0: all)")
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--damping", type=float, default=0.5)
    ap.add_argument("--adam-epochs", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    Xtr, ytr, Xte, yte = digits.load()
    train = split_tasks(Xtr, ytr, a.tasks)
    if a.per_task:
        train = [(X[: a.per_task], y[: a.per_task]) for X, y in train]
    test = split_tasks(Xte, yte, a.tasks)
    learners = {
        "gbp, posterior as prior": gbp_learner(a.hidden, a.batch_size, a.iters, a.damping, a.seed),
        f"adam, naive ({a.adam_epochs} ep/task)": adam_learner(a.hidden, a.batch_size, a.adam_epochs, 1e-2, a.seed),
    }
    rows = run(learners, train, test)
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
