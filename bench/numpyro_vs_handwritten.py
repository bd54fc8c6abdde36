"""fglang's NumPyro backend vs the same models written by hand in NumPyro.

Two SPEC models, eight schools and sparse (horseshoe) regression with
N=1000, D=100, are sampled with NUTS by the model function fglang lowers
(``fglang.runtime.numpyro_model.NumpyroModel``, exactly what ``fit(...,
backend="mcmc")`` runs) and by a hand-written NumPyro model with the same
sites in the same order, the same MCMC settings and the same seed, side by
side in one process. For each it reports

* ``wall_s``: one ``MCMC.run`` from a fresh kernel (tracing, XLA compilation
  and sampling: "with JIT"),
* ``compile_s``: of that, the time JAX reports spending in lowering and XLA
  compilation (its monitoring events),
* ``run_s``: ``wall_s - compile_s``, the run time "without JIT" (NumPyro has no
  way to re-run vectorized chains on already compiled code: a second ``run``
  retraces and recompiles),
* ``grad_us``: CPU microseconds per potential-energy-and-gradient evaluation at
  ``chains`` points (one vectorized leapfrog step), the model's own cost free
  of NUTS's random trajectory lengths,
* ``ess_min``, ``ess_per_s``: the smallest bulk ESS over all latent scalars
  (ArviZ), and that divided by ``run_s``,
* ratios fglang / hand-written (goal: ``run_s`` ratio <= 1.05),
* XLA's cost analysis (flops, bytes) of both compiled gradients, and the
  largest difference between the two samplers' draws (0 when they compute the
  same thing in the same order: then every difference in time is the machine's).

Times are the best of ``--repeats`` alternating runs; the machine's load
average is recorded with them.

Then the wall time of ``fglang fit examples/eight_schools.fg --backend mcmc``
as a fresh process: once with an empty compilation cache (cold) and twice
with the cache the first run filled (warm).

    python bench/numpyro_vs_handwritten.py [--quick] [--repeats 3]

prints a table and writes ``bench/results/numpyro_vs_handwritten.json``.
The persistent compilation cache is off for the in-process comparison so
that ``compile_s`` is a real compile for both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

if __name__ == "__main__":
    os.environ.setdefault("FGLANG_NO_CACHE", "1")  # in-process: measure real compiles on both sides

import arviz as az  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.infer import MCMC, NUTS, init_to_uniform  # noqa: E402

import fglang  # noqa: E402
from fglang.runtime.numpyro_model import NumpyroModel  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

EIGHT_SCHOOLS = {
    "J": 8,
    "y": [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0],
    "sigma": [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0],
}


def sparse_data(n: int = 1000, d: int = 100, k: int = 5, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = np.zeros(d)
    w[rng.choice(d, k, replace=False)] = rng.choice([-1.0, 1.0], k) * rng.uniform(1.0, 3.0, k)
    y = x @ w + 0.5 + 0.5 * rng.normal(size=n)
    return {"N": n, "D": d, "X": x, "y": y}


# ------------------------------------------------------------------ hand-written NumPyro
def eight_schools_hw(data):
    """The SPEC's non-centered eight schools, as one writes it in NumPyro."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    theta_raw = numpyro.sample("theta_raw", dist.Normal(0.0, 1.0).expand([data["y"].shape[0]]).to_event(1))
    theta = numpyro.deterministic("theta", mu + tau * theta_raw)
    with numpyro.plate("J", data["y"].shape[0]):
        numpyro.sample("obs", dist.Normal(theta, data["sigma"]), obs=data["y"])


def sparse_regression_hw(data):
    """Horseshoe regression, non-centered, as in NumPyro's examples."""
    d = data["X"].shape[1]
    z = numpyro.sample("w__z", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
    local = numpyro.sample("w__local", dist.HalfCauchy(1.0).expand([d]).to_event(1))
    glob = numpyro.sample("w__global", dist.HalfCauchy(0.1))
    w = numpyro.deterministic("w", z * local * glob)
    b = numpyro.sample("b", dist.Normal(0.0, 10.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("N", data["X"].shape[0]):
        numpyro.sample("lik", dist.Normal(data["X"] @ w + b, sigma), obs=data["y"])


# ------------------------------------------------------------------ timing
def _block(samples) -> None:
    jax.tree_util.tree_map(lambda x: x.block_until_ready(), samples)


class CompileClock:
    """Seconds JAX spends lowering and compiling with XLA (its own monitoring events),
    so that a run's time splits into compile time and run time."""

    EVENTS = ("/jax/core/compile/jaxpr_to_mlir_module_duration", "/jax/core/compile/backend_compile_duration")

    def __init__(self) -> None:
        self.total = 0.0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **_) -> None:
        if event in self.EVENTS:
            self.total += duration


CLOCK = CompileClock()


def run_nuts(model, data, *, seed: int, chains: int, warmup: int, samples: int) -> dict:
    """One NUTS run as ``fit(..., backend="mcmc")`` makes it (vectorized chains,
    init_to_uniform, data closed over), split into compile time and run time."""
    kernel = NUTS(model, target_accept_prob=0.8, init_strategy=init_to_uniform)
    mcmc = MCMC(
        kernel, num_warmup=warmup, num_samples=samples, num_chains=chains, chain_method="vectorized", progress_bar=False
    )
    compile0 = CLOCK.total
    t0, c0 = time.perf_counter(), time.process_time()
    mcmc.run(jax.random.PRNGKey(seed), data, extra_fields=("diverging", "num_steps"))
    _block(mcmc.get_samples())
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    compile_s = CLOCK.total - compile0
    run_s = wall - compile_s
    draws = mcmc.get_samples(group_by_chain=True)
    latent = {k: np.asarray(v) for k, v in draws.items() if k in _latent_sites(model, data)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess = az.ess(az.from_dict(posterior=latent), method="bulk")
    ess_min = float(min(float(np.min(ess[k].values)) for k in latent))
    extra = mcmc.get_extra_fields()
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "compile_s": compile_s,
        "run_s": run_s,
        "ess_min": ess_min,
        "ess_per_s": ess_min / run_s,
        "divergences": int(np.asarray(extra["diverging"]).sum()),
        "leapfrog_steps": int(np.asarray(extra["num_steps"]).sum()),
        "means": {k: np.asarray(v).mean(axis=(0, 1)).round(3).tolist() for k, v in draws.items() if v.ndim <= 3},
        "_draws": latent,
    }


def grad_cost(model, data, *, chains: int, calls: int = 300, repeats: int = 5) -> float:
    """CPU microseconds per evaluation of the potential energy and its gradient at
    ``chains`` points at once (what one vectorized leapfrog step costs), best of
    ``repeats``: the model's own cost, free of NUTS's random trajectory lengths."""
    from numpyro.infer.util import initialize_model

    info = initialize_model(jax.random.PRNGKey(0), model, model_args=(data,), dynamic_args=False)
    z = jax.tree_util.tree_map(lambda x: jnp.stack([x] * chains), info.param_info.z)
    f = jax.jit(jax.vmap(jax.value_and_grad(info.potential_fn)))
    jax.block_until_ready(f(z))
    best = float("inf")
    for _ in range(repeats):
        c0 = time.process_time()
        for _ in range(calls):
            out = f(z)
        jax.block_until_ready(out)
        best = min(best, (time.process_time() - c0) / calls * 1e6)
    return best


def hlo_cost(model, data) -> dict:
    """XLA's cost analysis of the compiled potential energy and gradient (one point)."""
    from numpyro.infer.util import initialize_model

    info = initialize_model(jax.random.PRNGKey(0), model, model_args=(data,), dynamic_args=False)
    compiled = jax.jit(jax.value_and_grad(info.potential_fn)).lower(info.param_info.z).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {"flops": float(cost.get("flops", 0.0)), "bytes": float(cost.get("bytes accessed", 0.0))}


def _latent_sites(model, data) -> set[str]:
    from numpyro import handlers

    tr = handlers.trace(handlers.seed(model, 0)).get_trace(data)
    return {k for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}


def _warm_up(chains: int) -> None:
    """One small NUTS run of an unrelated model, so that one-time costs of the process
    (JAX's and NumPyro's own first compilations) fall on neither side."""

    def tiny():
        numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))

    MCMC(NUTS(tiny), num_warmup=5, num_samples=5, num_chains=chains, progress_bar=False).run(jax.random.PRNGKey(1))


def compare(
    name: str, fg_path: Path, raw: dict, hw_model, *, seed: int, chains: int, warmup: int, samples: int, repeats: int
) -> dict:
    m = fglang.load(fg_path)
    nm = NumpyroModel(m.bind(raw))
    fg_model, fg_data = nm.model_fn(), nm.data
    hw_data = {k: jnp.asarray(v) for k, v in nm.bm.data.items()}
    res: dict = {"model": name, "chains": chains, "warmup": warmup, "samples": samples, "seed": seed}
    runs = {"fglang": [], "handwritten": []}
    sides = {"fglang": (fg_model, fg_data), "handwritten": (hw_model, hw_data)}
    _warm_up(chains)
    for i in range(repeats):  # alternate the order, so that machine load hits both sides alike
        for side in ("fglang", "handwritten") if i % 2 == 0 else ("handwritten", "fglang"):
            model, data = sides[side]
            runs[side].append(run_nuts(model, data, seed=seed, chains=chains, warmup=warmup, samples=samples))
    grads = {"fglang": [], "handwritten": []}
    for _ in range(repeats):
        grads["fglang"].append(grad_cost(fg_model, fg_data, chains=chains))
        grads["handwritten"].append(grad_cost(hw_model, hw_data, chains=chains))
    # the same sites, seeds and arithmetic: the chains should agree draw for draw
    a, b = runs["fglang"][0]["_draws"], runs["handwritten"][0]["_draws"]
    res["max_abs_draw_diff"] = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    for r in runs["fglang"] + runs["handwritten"]:
        r.pop("_draws")
    for side, rs in runs.items():
        best = min(rs, key=lambda r: r["run_s"])
        res[side] = {
            **best,
            "wall_s": min(r["wall_s"] for r in rs),
            "compile_s": min(r["compile_s"] for r in rs),
            "run_s_all": [round(r["run_s"], 3) for r in rs],
            "wall_s_all": [round(r["wall_s"], 3) for r in rs],
            "grad_us": min(grads[side]),
            "hlo": hlo_cost(fg_model, fg_data) if side == "fglang" else hlo_cost(hw_model, hw_data),
        }
    fg, hw = res["fglang"], res["handwritten"]
    res["ratio_wall"] = fg["wall_s"] / hw["wall_s"]
    res["ratio_compile"] = fg["compile_s"] / hw["compile_s"]
    res["ratio_run"] = fg["run_s"] / hw["run_s"]
    res["ratio_grad"] = fg["grad_us"] / hw["grad_us"]
    return res


# ------------------------------------------------------------------ CLI cold start
def cli_wall(data_file: Path, *, runs: int = 2) -> dict:
    """``fglang fit eight_schools --backend mcmc`` as a fresh process: cold cache, then warm."""
    exe = shutil.which("fglang", path=str(Path(sys.executable).parent)) or shutil.which("fglang")
    cmd = [exe, "fit", str(EXAMPLES / "eight_schools.fg"), "--data", str(data_file), "--backend", "mcmc", "-q"]
    env = {k: v for k, v in os.environ.items() if k != "FGLANG_NO_CACHE"}
    cache_home = Path(tempfile.mkdtemp(prefix="fglang-bench-cache-"))
    env["XDG_CACHE_HOME"] = str(cache_home)  # a private, empty cache: the first run is really cold
    times = []
    try:
        for _ in range(1 + runs):
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(cache_home, ignore_errors=True)
    return {"command": " ".join(["fglang"] + cmd[1:]), "cold_s": times[0], "warm_s": times[1:]}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpyro": numpyro.__version__,
        "fglang": fglang.__version__,
        "jax_backend": jax.default_backend(),
    }


def _load() -> str | None:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few draws: a smoke run, not for the README")
    ap.add_argument("--repeats", type=int, default=2, help="alternating repeats per side (best is reported)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-cli", action="store_true", help="skip the cold-process CLI timing")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "numpyro_vs_handwritten.json")
    a = ap.parse_args()
    q = a.quick
    cases = [
        (
            "eight_schools",
            EXAMPLES / "eight_schools.fg",
            EIGHT_SCHOOLS,
            eight_schools_hw,
            dict(chains=4, warmup=200 if q else 1000, samples=200 if q else 1000),
        ),
        (
            "sparse_regression N=1000 D=100",
            EXAMPLES / "sparse_regression.fg",
            sparse_data(),
            sparse_regression_hw,
            dict(chains=2, warmup=100 if q else 300, samples=100 if q else 300),
        ),
    ]
    results = []
    for name, path, raw, hw, kw in cases:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results.append(compare(name, path, raw, hw, seed=a.seed, repeats=1 if q else a.repeats, **kw))
    cli = None
    if not a.no_cli:
        print("running the CLI cold/warm ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as d:
            f = Path(d) / "eight_schools.json"
            f.write_text(json.dumps(EIGHT_SCHOOLS))
            cli = cli_wall(f)
    report = {"machine": machine(), "load": _load(), "quick": q, "results": results, "cli": cli}
    print_table(report)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, a.out)
    print(f"\nwrote {a.out.relative_to(ROOT) if a.out.is_relative_to(ROOT) else a.out}")


def print_table(report: dict) -> None:
    mc = report["machine"]
    print(f"machine: {mc['cpu']}, {mc['cores']} cores, jax {mc['jax']} ({mc['jax_backend']}), numpyro {mc['numpyro']}")
    if report.get("load"):
        print(f"load average during the run: {report['load']}")
    cols = [
        ("side", 12, "s"),
        ("wall_s", 8, ".2f"),
        ("compile_s", 10, ".2f"),
        ("run_s", 8, ".2f"),
        ("grad_us", 8, ".1f"),
        ("ess_min", 8, ".0f"),
        ("ess_per_s", 9, ".1f"),
        ("divergences", 11, "d"),
    ]
    hdr = f"{'model':31} " + " ".join(f"{c:>{w}}" for c, w, _ in cols)
    print(hdr)
    print("-" * len(hdr))
    for r in report["results"]:
        for side in ("fglang", "handwritten"):
            row = {"side": side, **r[side]}
            print(f"{r['model']:31} " + " ".join(f"{row[c]:>{w}{f}}" for c, w, f in cols))
        ratios = {
            "wall_s": r["ratio_wall"],
            "compile_s": r["ratio_compile"],
            "run_s": r["ratio_run"],
            "grad_us": r["ratio_grad"],
        }
        cells = [f"{'ratio':>12}"] + [f"{ratios[c]:>{w}.3f}" if c in ratios else " " * w for c, w, _ in cols[1:]]
        print(f"{'':31} " + " ".join(cells))
        fh, hh = r["fglang"]["hlo"], r["handwritten"]["hlo"]
        print(
            f"{'':31} compiled gradient: {fh['flops']:.0f} vs {hh['flops']:.0f} flops, {fh['bytes']:.0f} vs "
            f"{hh['bytes']:.0f} bytes; largest difference between the two samplers' draws: {r['max_abs_draw_diff']:.3g}"
        )
    if report.get("cli"):
        c = report["cli"]
        warm = ", ".join(f"{t:.2f}" for t in c["warm_s"])
        print(f"\n{c['command']}: cold cache {c['cold_s']:.2f} s; warm cache {warm} s")


if __name__ == "__main__":
    main()
