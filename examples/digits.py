"""Digits (scikit-learn's bundled 8x8 digits, no download): a 10-class MLP
learned by GBP filtering (examples/digits_gbp.fg) next to the same MLP trained
by NumPyro VI (examples/digits_vi.fg: same layers, priors and output noise,
the hidden layer deterministic) and by plain Adam backprop with optax (MSE on
+-1 one-hot targets, the same loss the Gaussian output factors express).

    python examples/digits.py --n-train 200 --hidden 16 --iters 100 --damping 0.5

Prints: method, test accuracy, training examples/s, wall time.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
N_SPLIT = 1400  # first 1400 (after a fixed permutation) are the training pool, the rest (397) the test set


def load(seed: int = 0):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    p = np.random.default_rng(seed).permutation(len(y))
    X, y = X[p] / 16.0, y[p]
    mu, sd = X[:N_SPLIT].mean(0), X[:N_SPLIT].std(0) + 1e-6
    X = (X - mu) / sd
    return X[:N_SPLIT], y[:N_SPLIT], X[N_SPLIT:], y[N_SPLIT:]


def pm1(y, c=10):
    Y = -np.ones((len(y), c))
    Y[np.arange(len(y)), y] = 1.0
    return Y


def mlp_data(X, hidden, y=None) -> dict:
    """The data of digits_gbp.fg / digits_vi.fg; without ``y`` the targets are
    left out, which is what prediction wants."""
    data = {"N": len(X), "D": X.shape[1], "H": hidden, "C": 10, "X": X}
    return data if y is None else {**data, "Y": pm1(y)}


def predicted_outputs(m, post, X, hidden, **options) -> np.ndarray:
    """Predictive means of the 10 outputs for the images ``X``: ``[N, 10]``."""
    pr = m.predict(post, mlp_data(X, hidden), **options)
    return np.asarray(pr.mean("out")).reshape(len(X), 10)


def mlp_init(key, d: int, hidden: int) -> dict:
    """Adam's starting weights (the N(0, 0.3) of the models' weight priors)."""
    import jax
    import jax.numpy as jnp

    k1, k2 = jax.random.split(key)
    return {"W1": 0.3 * jax.random.normal(k1, (d, hidden)), "b1": jnp.zeros(hidden),
            "W2": 0.3 * jax.random.normal(k2, (hidden, 10)), "b2": jnp.zeros(10)}


def mlp_forward(p: dict, x):
    import jax

    return jax.nn.leaky_relu(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]


def adam_step(lr: float):
    """optax Adam and one jitted step on the MSE to +-1 one-hot targets (the
    loss the Gaussian output factors express): ``(opt, step(p, s, x, Y))``."""
    import jax
    import jax.numpy as jnp
    import optax

    opt = optax.adam(lr)

    @jax.jit
    def step(p, s, x, Y):
        g = jax.grad(lambda q: jnp.mean((mlp_forward(q, x) - Y) ** 2))(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    return opt, step


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_gbp(Xtr, ytr, Xte, yte, *, hidden, batch_size, iters, damping, seed=0, dropout=0.0):
    import fglang

    m = fglang.load(HERE / "digits_gbp.fg")
    n = len(ytr)
    opts = dict(backend="gbp", epochs=1, iters=iters, damping=damping, dropout=dropout, seed=seed, draws=1)
    # Compile outside the timing, as for Adam: one batch of the same shape
    # (the compiled GBP chunk is reused for every batch of that shape).
    t = time.perf_counter()
    m.fit(mlp_data(Xtr[:batch_size], hidden, ytr[:batch_size]), batch_size=batch_size, **opts)
    warm_s = time.perf_counter() - t
    t = time.perf_counter()
    post = m.fit(mlp_data(Xtr, hidden, ytr), batch_size=batch_size, **opts)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    mean = predicted_outputs(m, post, Xte, hidden, iters=iters, damping=damping)
    pred_s = time.perf_counter() - t
    return {"method": "gbp (filtering)", "test_acc": float((mean.argmax(1) == yte).mean()),
            "train_examples_per_s": n / fit_s, "fit_s": fit_s, "compile_and_first_batch_s": warm_s,
            "predict_s": pred_s, "iterations_per_batch": [b["iterations"] for b in post.attrs["batches"]],
            "hidden": hidden, "n_train": n, "batch_size": batch_size, "iters": iters, "damping": damping,
            "maxrss_mb": maxrss_mb()}


def run_vi(Xtr, ytr, Xte, yte, *, hidden, steps=None, lr=None, seed=0):
    """VI with its defaults (it runs until the ELBO converges); ``steps`` and
    ``lr`` override them. The time includes the compilation."""
    import fglang

    m = fglang.load(HERE / "digits_vi.fg")
    n = len(ytr)
    given = {k: v for k, v in (("steps", steps), ("lr", lr)) if v is not None}
    t = time.perf_counter()
    post = m.fit(mlp_data(Xtr, hidden, ytr), backend="vi", seed=seed, **given)
    fit_s = time.perf_counter() - t
    mean = predicted_outputs(m, post, Xte, hidden)
    done = post.attrs["steps"]
    return {"method": f"vi (numpyro, {done} full-batch steps, {post.attrs['stop']})",
            "test_acc": float((mean.argmax(1) == yte).mean()), "train_examples_per_s": n * done / fit_s,
            "fit_s": fit_s, "hidden": hidden, "n_train": n, "steps": done, "stop": post.attrs["stop"],
            "guide": post.attrs["guide"], "khat": post.attrs.get("khat"), "phase_seconds": post.attrs["phase_seconds"],
            "options": given}


def run_adam(Xtr, ytr, Xte, yte, *, hidden, batch_size=50, epochs=50, lr=1e-2, seed=0):
    import jax
    import jax.numpy as jnp

    params = mlp_init(jax.random.PRNGKey(seed), Xtr.shape[1], hidden)
    opt, step = adam_step(lr)
    state = opt.init(params)

    Xj, Yj = jnp.asarray(Xtr, jnp.float32), jnp.asarray(pm1(ytr), jnp.float32)
    n = len(ytr)
    rng = np.random.default_rng(seed)
    params, state = step(params, state, Xj[:batch_size], Yj[:batch_size])  # compile outside the timing
    t = time.perf_counter()
    for _ in range(epochs):
        o = rng.permutation(n)
        for s0 in range(0, n - batch_size + 1, batch_size):
            idx = o[s0:s0 + batch_size]
            params, state = step(params, state, Xj[idx], Yj[idx])
    jax.block_until_ready(params)
    fit_s = time.perf_counter() - t
    acc = float((np.asarray(mlp_forward(params, jnp.asarray(Xte, jnp.float32))).argmax(1) == yte).mean())
    return {"method": f"adam (optax, MSE, {epochs} epochs)", "test_acc": acc,
            "train_examples_per_s": n * epochs / fit_s, "fit_s": fit_s, "hidden": hidden, "n_train": n,
            "batch_size": batch_size, "epochs": epochs, "lr": lr}


def table(rows):
    print(f"{'method':34s} {'test acc':>8s} {'train ex/s':>11s} {'wall s':>8s}")
    for r in rows:
        print(f"{r['method']:34s} {r['test_acc']:8.3f} {r['train_examples_per_s']:11.1f} {r['fit_s']:8.1f}")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-train", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--damping", type=float, default=0.5)
    ap.add_argument("--adam-epochs", type=int, default=50)
    ap.add_argument("--vi-steps", type=int, default=None, help="cap on VI's steps (default: VI's own)")
    ap.add_argument("--vi-lr", type=float, default=None, help="VI's learning rate (default: VI's own)")
    ap.add_argument("--no-gbp", action="store_true")
    ap.add_argument("--no-vi", action="store_true")
    a = ap.parse_args(argv)
    Xtr, ytr, Xte, yte = load()
    Xtr, ytr = Xtr[:a.n_train], ytr[:a.n_train]
    rows = [run_adam(Xtr, ytr, Xte, yte, hidden=a.hidden, batch_size=a.batch_size, epochs=a.adam_epochs),
            run_adam(Xtr, ytr, Xte, yte, hidden=a.hidden, batch_size=a.batch_size, epochs=1)]
    if not a.no_vi:
        rows.insert(0, run_vi(Xtr, ytr, Xte, yte, hidden=a.hidden, steps=a.vi_steps, lr=a.vi_lr))
    if not a.no_gbp:
        rows.insert(0, run_gbp(Xtr, ytr, Xte, yte, hidden=a.hidden, batch_size=a.batch_size,
                               iters=a.iters, damping=a.damping))
    table(rows)
    return rows


if __name__ == "__main__":
    main()
