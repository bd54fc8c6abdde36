"""Time to a first posterior: ``fglang fit`` against the same model written by hand in NumPyro.

What a user waits for, from typing the command to the summary table, as a
fresh process each time: imports, tracing, lowering, XLA compilation (or a
persistent-cache load), sampling and the summary. Both sides run

* eight schools (the SPEC's non-centered model), NUTS 4 x (1000 + 1000),
  vectorized chains, float64, and
* the same model by SVI (``--backend vi --steps S --guide mvn`` against a
  hand-written ``AutoMultivariateNormal`` with the same steps and particles),

* GBP on the denoise model with normal smoothness (``examples/denoise_normal.fg``,
  a 256 x 256 image, float32, to a belief-change tolerance of 1e-5) against a
  hand-written JAX GBP of the same grid (``bench/grid_reference.py``'s
  shifted-slice kernel in a ``while_loop`` to the same tolerance),

cold (an empty private cache directory) and warm (the cache the cold run
left: fglang's in ``$FGLANG_CACHE_DIR``, the hand-written script's in JAX's
persistent compilation cache, switched on as a NumPyro user would). Runs of the
two sides are interleaved and each number is the best of ``--repeats``, wall
and CPU seconds (the machine is shared: CPU time is the steadier number).

``--count`` adds, in fresh processes, the number of XLA programs compiled
(JAX's ``backend_compile`` events) and the first-fit time of NUTS on eight
schools and on a model of K independent factor families (K = 1, 10, 50),
against the hand-written model of the same sites.

    python bench/first_posterior.py [--repeats 3] [--count [--k K]] [--quick]

(``--count --k 50``: only the K = 50 case, both sides, with the split into
trace, lowering and XLA compile; ``--repeats`` interleaved rounds of it, each
side's best by CPU time and every round's CPU seconds.)

prints a table and writes ``bench/results/first_posterior.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
RESULTS = ROOT / "bench" / "results"

# the hand-written eight schools both scripts share: cache settings, the model, the data
HAND_MODEL = """
import sys, json
import jax
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
import numpy as np
import numpyro
import numpyro.distributions as dist

def model(y, sigma):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    theta_raw = numpyro.sample("theta_raw", dist.Normal(0.0, 1.0).expand([y.shape[0]]).to_event(1))
    theta = mu + tau * theta_raw
    with numpyro.plate("J", y.shape[0]):
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)

d = json.load(open(sys.argv[2]))
y, sigma = np.asarray(d["y"], float), np.asarray(d["sigma"], float)
"""

HAND_MCMC = HAND_MODEL + """
from numpyro.diagnostics import summary
from numpyro.infer import MCMC, NUTS
mcmc = MCMC(NUTS(model), num_warmup=int(sys.argv[3]), num_samples=int(sys.argv[4]), num_chains=4,
            chain_method="vectorized", progress_bar=False)
mcmc.run(jax.random.PRNGKey(0), y, sigma)
s = summary(mcmc.get_samples(group_by_chain=True))
print({k: float(np.mean(v["mean"])) for k, v in s.items()})
"""

HAND_VI = HAND_MODEL + """
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoMultivariateNormal
from numpyro.optim import Adam
guide = AutoMultivariateNormal(model)
svi = SVI(model, guide, Adam(0.02), Trace_ELBO(num_particles=4))
res = svi.run(jax.random.PRNGKey(0), int(sys.argv[3]), y, sigma, progress_bar=False)
draws = guide.sample_posterior(jax.random.PRNGKey(1), res.params, sample_shape=(1000,))
print({k: float(np.mean(v)) for k, v in draws.items()})
"""

HAND_GBP = """
import sys, json
sys.path.insert(0, sys.argv[3])
import jax
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
import jax.numpy as jnp
import numpy as np
from grid_reference import _Msgs, _belief, _step

@jax.jit
def run(img, a, b, tol):
    eta0 = a * img
    m0 = _Msgs(*([jnp.zeros_like(img)] * 8))
    def cond(s):
        k, _, change = s
        return (k < 20000) & (change >= tol)
    def body(s):
        k, m, _ = s
        old = _belief(m, eta0, a)
        m = _step(m, eta0, a, b, 0.0)
        new = _belief(m, eta0, a)
        return k + 1, m, jnp.max(jnp.abs(new[0] / new[1] - old[0] / old[1]))
    k, m, _ = jax.lax.while_loop(cond, body, (0, m0, jnp.asarray(jnp.inf, img.dtype)))
    eta, lam = _belief(m, eta0, a)
    return eta / lam, 1.0 / lam, k

d = json.load(open(sys.argv[2]))
img = jnp.asarray(np.asarray(d["img"], np.float32))
mean, var, k = run(img, jnp.float32(1 / d["s_obs"] ** 2), jnp.float32(1 / d["s_smooth"] ** 2), jnp.float32(1e-5))
print(float(np.mean(mean)), float(np.mean(var)), int(k))
"""
GBP_SIZE = 256


def _denoise_data(path: Path) -> Path:
    """The 256 x 256 denoise image (``grid_reference.make_image``) as a JSON data file."""
    sys.path.insert(0, str(ROOT / "bench"))
    from grid_reference import make_image

    img = make_image(GBP_SIZE, GBP_SIZE, s_obs=0.1, seed=0)
    path.write_text(json.dumps({"H": GBP_SIZE, "W": GBP_SIZE, "img": img.round(6).tolist(), "s_obs": 0.1,
                                "s_smooth": 0.05}))
    return path


def byte_compile_fglang() -> None:
    """Write fglang's byte code, as ``pip install`` of a wheel does at install.

    Why: from an editable install (``pip install -e``) on a machine with
    ``PYTHONDONTWRITEBYTECODE=1`` (this one's) every fglang process compiled
    its ~150 modules from source, 0.2-0.25 s CPU of a warm fit that a user's
    installed fglang never pays, while the hand-written side's NumPyro and JAX
    run from the byte code their wheels installed."""
    import compileall

    compileall.compile_dir(str(ROOT / "fglang"), quiet=1)


def _fglang_exe() -> str:
    return shutil.which("fglang", path=str(Path(sys.executable).parent)) or shutil.which("fglang") or "fglang"


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of the child) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def first_posterior(kind: str, repeats: int, warmup: int, samples: int, steps: int) -> dict:
    """Cold and warm wall/CPU seconds of fglang and hand-written NumPyro, interleaved, best of ``repeats``."""
    data = EXAMPLES / "data" / "eight_schools.json"
    model = EXAMPLES / "eight_schools.fg"
    if kind == "gbp":
        model = EXAMPLES / "denoise_normal.fg"
        data = _denoise_data(Path(tempfile.mkdtemp(prefix="fglang-first-posterior-data-")) / "denoise.json")
    base_env = {k: v for k, v in os.environ.items() if k not in ("FGLANG_NO_CACHE", "FGLANG_CACHE_DIR")}
    if kind == "mcmc":
        fg_args = ["--backend", "mcmc", "--warmup", str(warmup), "--samples", str(samples)]
        hand_src, hand_args = HAND_MCMC, [str(warmup), str(samples)]
    elif kind == "gbp":
        fg_args = ["--backend", "gbp", "--tol", "1e-5"]
        hand_src, hand_args = HAND_GBP, [str(ROOT / "bench")]
    else:
        fg_args = ["--backend", "vi", "--guide", "mvn", "--steps", str(steps), "--elbo-tol", "1e-12"]
        hand_src, hand_args = HAND_VI, [str(steps)]
    out: dict[str, dict[str, list[float]]] = {
        side: {"cold_wall": [], "cold_cpu": [], "warm_wall": [], "warm_cpu": []} for side in ("fglang", "hand")
    }
    for _ in range(repeats):
        for side in ("fglang", "hand"):
            cache = Path(tempfile.mkdtemp(prefix="fglang-first-posterior-"))
            try:
                env = dict(base_env, FGLANG_CACHE_DIR=str(cache / "fglang"), XDG_CACHE_HOME=str(cache))
                if side == "fglang":
                    cmd = [_fglang_exe(), "fit", str(model), "--data", str(data), "-q",
                           *fg_args]
                else:
                    cmd = [sys.executable, "-c", hand_src, str(cache), str(data), *hand_args]
                for phase in ("cold", "warm"):
                    wall, cpu = timed(cmd, env)
                    out[side][f"{phase}_wall"].append(wall)
                    out[side][f"{phase}_cpu"].append(cpu)
            finally:
                shutil.rmtree(cache, ignore_errors=True)
    if kind == "gbp":
        shutil.rmtree(data.parent, ignore_errors=True)
    best = {side: {k: min(v) for k, v in d.items()} for side, d in out.items()}
    ratios = {k: best["fglang"][k] / best["hand"][k] for k in best["fglang"]}
    return {"runs": out, "best": best, "ratio": ratios}


# ------------------------------------------------------------------ compile counts (one case per process)
COUNT_CASE = """
import sys, json, time, os
os.environ["FGLANG_NO_CACHE"] = "1"
import jax
jax.config.update("jax_enable_x64", True)
# the split: JAX's trace to jaxprs, lowering to StableHLO and XLA's compile (summed over
# programs; nested traces overlap, so trace_s can exceed the wall time spent tracing), and
# the slowest XLA compiles one by one (fglang's are the start program and the sampler)
count = {"programs": 0, "compile_s": 0.0, "trace_s": 0.0, "lower_s": 0.0, "xla_s": 0.0, "slowest_xla_s": []}
def listen(event, duration, **_):
    if event == "/jax/core/compile/backend_compile_duration":
        count["programs"] += 1
        count["compile_s"] += duration
        count["xla_s"] += duration
        count["slowest_xla_s"] = sorted(count["slowest_xla_s"] + [round(duration, 2)], reverse=True)[:3]
    elif event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
        count["compile_s"] += duration
        count["lower_s"] += duration
    elif event == "/jax/core/compile/jaxpr_trace_duration":
        count["trace_s"] += duration
jax.monitoring.register_event_duration_secs_listener(listen)
side, model_name, k, warmup, samples = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS
rng = np.random.default_rng(0)
if model_name == "eight_schools":
    data = {"J": 8, "y": [28.0, 8, -3, 7, -1, 1, 18, 12], "sigma": [15.0, 10, 16, 11, 9, 11, 10, 18]}
    source = open(sys.argv[6]).read()
else:
    n = 20
    data = {"N": n, **{f"y{i}": rng.normal(i * 0.1, 1.0, n).tolist() for i in range(k)}}
    lines = ["model k_families", "data N: int"] + [f"data y{i}[N]: real" for i in range(k)]
    lines += [f"var a{i}: real ~ normal(0, 1)" for i in range(k)]
    lines += [f"factor f{i}[n in 0:N]: y{i}[n] ~ normal(a{i}, 1)" for i in range(k)]
    source = "\\n".join(lines) + "\\n"
t0, c0 = time.perf_counter(), time.process_time()
if side == "fglang":
    import fglang
    fglang.compile(source, "bench.fg").fit(data, backend="mcmc", warmup=warmup, samples=samples)
else:
    if model_name == "eight_schools":
        y, sigma = np.asarray(data["y"]), np.asarray(data["sigma"])
        def model():
            mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
            tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
            theta_raw = numpyro.sample("theta_raw", dist.Normal(0.0, 1.0).expand([8]).to_event(1))
            with numpyro.plate("J", 8):
                numpyro.sample("obs", dist.Normal(mu + tau * theta_raw, sigma), obs=y)
    else:
        ys = [np.asarray(data[f"y{i}"]) for i in range(k)]
        def model():
            for i in range(k):
                a = numpyro.sample(f"a{i}", dist.Normal(0.0, 1.0))
                with numpyro.plate(f"n{i}", ys[i].shape[0]):
                    numpyro.sample(f"f{i}", dist.Normal(a, 1.0), obs=ys[i])
    mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=samples, num_chains=4, chain_method="vectorized",
                progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0))
    jax.block_until_ready(mcmc.get_samples())
count["first_fit_s"] = time.perf_counter() - t0
count["first_fit_cpu_s"] = time.process_time() - c0  # all threads (XLA compiles on several)
print(json.dumps(count))
"""


def compile_counts(warmup: int, samples: int, only_k: int | None = None, repeats: int = 1) -> list[dict]:
    """Per case (eight schools, K = 1, 10, 50 families; or the one K of ``only_k``), both sides in fresh
    processes, ``repeats`` interleaved rounds: each side's round of least CPU time, and every round's."""
    rounds = [_compile_counts_once(warmup, samples, only_k) for _ in range(repeats)]
    rows = []
    for case in zip(*rounds, strict=True):
        row: dict = {"model": case[0]["model"]}
        for side in ("fglang", "hand"):
            row[side] = min((r[side] for r in case), key=lambda c: c["first_fit_cpu_s"])
        row["rounds_cpu_s"] = [(r["fglang"]["first_fit_cpu_s"], r["hand"]["first_fit_cpu_s"]) for r in case]
        rows.append(row)
    return rows


def _compile_counts_once(warmup: int, samples: int, only_k: int | None) -> list[dict]:
    rows = []
    cases = [("eight_schools", 0), ("k_families", 1), ("k_families", 10), ("k_families", 50)]
    if only_k is not None:
        cases = [("k_families", only_k)]
    env = {k: v for k, v in os.environ.items() if k != "FGLANG_CACHE_DIR"}
    for model_name, k in cases:
        row: dict = {"model": model_name if not k else f"K={k}"}
        for side in ("fglang", "hand"):
            cmd = [sys.executable, "-c", COUNT_CASE, side, model_name, str(k), str(warmup), str(samples),
                   str(EXAMPLES / "eight_schools.fg")]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-2000:])
            row[side] = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
    return rows


def _load() -> str | None:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="interleaved fresh-process runs per side (best is kept)")
    ap.add_argument("--count", action="store_true", help="also count XLA programs (eight schools, K = 1, 10, 50)")
    ap.add_argument("--quick", action="store_true", help="fewer draws and steps: a smoke run, not for the README")
    ap.add_argument("--only", choices=("mcmc", "vi", "gbp"), help="time one backend only")
    ap.add_argument("--k", type=int, help="with --count: only the model of K factor families (e.g. --k 50)")
    a = ap.parse_args()
    byte_compile_fglang()
    warmup, samples, steps = (100, 100, 200) if a.quick else (1000, 1000, 2000)
    report: dict = {"load_before": _load(), "quick": a.quick, "repeats": a.repeats,
                    "mcmc": {"warmup": warmup, "samples": samples, "chains": 4}, "vi": {"steps": steps},
                    "gbp": {"size": GBP_SIZE, "tol": 1e-5, "dtype": "float32"}}
    for kind in ("mcmc", "vi", "gbp"):
        if a.only in (None, kind) and a.k is None:  # --k: the K families' first fit only
            report[f"first_posterior_{kind}"] = first_posterior(kind, a.repeats, warmup, samples, steps)
    if a.count:
        report["compile_counts"] = compile_counts(warmup, samples, a.k, a.repeats)
    report["load_after"] = _load()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("first_posterior.json" if a.k is None else f"first_posterior_k{a.k}.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)


def print_table(report: dict) -> None:
    print(f"load {report['load_before']} -> {report['load_after']}, best of {report['repeats']}")
    for kind in ("mcmc", "vi", "gbp"):
        r = report.get(f"first_posterior_{kind}")
        if not r:
            continue
        what = f"denoise {GBP_SIZE}^2" if kind == "gbp" else "eight schools"
        print(f"\n{kind}: {what + ', first posterior (s)':<38}fglang   hand   ratio")
        for k in ("cold_wall", "cold_cpu", "warm_wall", "warm_cpu"):
            print(f"  {k:<38}{r['best']['fglang'][k]:7.2f} {r['best']['hand'][k]:6.2f} {r['ratio'][k]:7.2f}")
    if "compile_counts" in report:
        print("\nNUTS first fit, fresh process, no persistent cache")
        print(textwrap.dedent("""\
            model           programs (fglang / hand)   first fit s (fglang / hand)   \
            trace / lower / XLA s, slowest XLA (fglang | hand)"""))
        for row in report["compile_counts"]:
            f, h = row["fglang"], row["hand"]
            split = " | ".join(f"{c['trace_s']:.1f} / {c['lower_s']:.1f} / {c['xla_s']:.1f} {c['slowest_xla_s']}"
                               for c in (f, h))
            print(f"  {row['model']:<14}{f['programs']:>8} / {h['programs']:<14}{f['first_fit_s']:>8.2f} / "
                  f"{h['first_fit_s']:<16.2f}{split}")
            if "first_fit_cpu_s" in f:
                print(f"  {'':<14}{'CPU s':>24}{f['first_fit_cpu_s']:>14.2f} / {h['first_fit_cpu_s']:.2f}")
            if len(row.get("rounds_cpu_s", ())) > 1:
                pairs = ", ".join(f"{a:.1f} / {b:.1f}" for a, b in row["rounds_cpu_s"])
                print(f"  {'':<14}{'rounds, CPU s':>24}  {pairs}")


if __name__ == "__main__":
    main()
