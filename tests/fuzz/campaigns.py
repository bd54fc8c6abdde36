"""The four campaigns: how each builds a case from a seeded ``Random`` and
how a case runs (in the sandboxed child).

A case is plain data (files to write, then an operation), so a finding is
reproduced by writing its files and running it again: ``run --replay DIR``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.fuzz import corpus, data_mutate, gen
from tests.fuzz.mutate import mutate


@dataclass
class Case:
    campaign: str
    op: str  # load_bind | fit | cli
    files: dict[str, str | bytes] = field(default_factory=dict)
    data: str | None = None  # the data file's name, for load_bind
    synth: bool = False  # synthesize data for whatever the model declares
    argv: list[str] = field(default_factory=list)
    seed: int = 0
    origin: str = ""
    backend: str = ""  # op "fit": the backend and its options
    options: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # set in the child ("{tmp}": its working folder)

    def to_json(self) -> dict[str, Any]:
        files = {
            k: ({"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else {"text": v})
            for k, v in self.files.items()
        }
        return {**self.__dict__, "files": files}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Case:
        files = {k: (base64.b64decode(v["b64"]) if "b64" in v else v["text"]) for k, v in obj["files"].items()}
        return cls(**{**obj, "files": files})


def write_files(case: Case, where: Path) -> None:
    for name, body in case.files.items():
        p = where / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(body, bytes):
            p.write_bytes(body)
        else:
            with open(p, "w", encoding="utf-8", errors="surrogatepass", newline="") as f:
                f.write(body)


def execute(case: Case, where: Path) -> None:
    """Run a case in ``where`` (the child's working folder). Raises whatever fglang raises."""
    write_files(case, where)
    os.chdir(where)
    for k, v in case.env.items():
        os.environ[k] = v.replace("{tmp}", str(where))
    if case.op == "cli":
        import sys

        from fglang.cli import main

        sys.argv = ["fglang", *case.argv]
        main()  # the console entry point itself, as a shell runs it
        return
    import fglang

    m = fglang.load("model.fg")
    data: Any = case.data
    if case.data is None and case.synth:
        from tests.fuzz.synth import synth_data

        keep = json.loads(case.files["seed_data.json"]) if "seed_data.json" in case.files else None
        data = synth_data(m.ir, random.Random(case.seed), keep)
    if data is None:
        return
    if case.op == "fit":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(data, backend=case.backend, seed=case.seed, **case.options)
        return
    m.bind(data)


# ------------------------------------------------------------------ models
def _seed_files(s: corpus.Seed) -> dict[str, str | bytes]:
    return dict(s.files)


def make_model_case(rnd: random.Random, i: int) -> Case:
    seeds = corpus.seeds()
    if rnd.random() < 0.3:
        g = rnd.choice(gen.GENERATORS)
        text, data = g(rnd)
        files: dict[str, str | bytes] = {"model.fg": text}
        if rnd.random() < 0.4:  # generated models are mutated too
            files["model.fg"] = mutate(rnd, text, [s.text for s in seeds])
        if data is not None:
            files["data.json"] = json.dumps(data)
            return Case("models", "load_bind", files, data="data.json", seed=i, origin=f"gen:{g.__name__}")
        return Case("models", "load_bind", files, synth=True, seed=i, origin=f"gen:{g.__name__}")
    s = rnd.choice(seeds)
    body = mutate(rnd, s.text, [x.text for x in seeds])
    files = _seed_files(s)
    files["model.fg"] = body
    if rnd.random() < 0.15:  # the mutation lands in an included file
        files = {"model.fg": "model inc\ninclude \"lib.fg\"\n", "lib.fg": body}
        if isinstance(body, str):
            files["lib.fg"] = "\n".join(ln for ln in body.split("\n") if not ln.startswith("model "))
    if s.data is not None:
        files["seed_data.json"] = json.dumps(s.data)
    if s.data is not None and rnd.random() < 0.5:
        files["data.json"] = json.dumps(s.data)
        return Case("models", "load_bind", files, data="data.json", seed=i, origin=s.name)
    return Case("models", "load_bind", files, synth=True, seed=i, origin=s.name)


# ------------------------------------------------------------------ fits
FIT_OPTIONS = {  # small budgets: the campaign looks for crashes, not for converged posteriors
    "gbp": {"iters": 5, "draws": 20},
    "vi": {"steps": 20, "draws": 20},
    "mcmc": {"chains": 1, "warmup": 20, "samples": 20},
    "map": {"iters": 5, "draws": 20},
}


def make_fit_case(rnd: random.Random, i: int) -> Case:
    """A model case (a corpus seed, mutated half the time, or a generated model), fitted."""
    case = make_model_case(rnd, i)
    if rnd.random() < 0.5 and not case.origin.startswith("gen:"):
        s = next((x for x in corpus.seeds() if x.name == case.origin), None)
        if s is not None:
            case.files = {**_seed_files(s), "model.fg": s.text,
                          **({"seed_data.json": json.dumps(s.data)} if s.data is not None else {})}
            case.data, case.synth = None, True
    backend = rnd.choice(sorted(FIT_OPTIONS))
    if rnd.random() < 0.3:  # a seed's own model with data invalid only at run time (values.py's checks)
        s = rnd.choice(corpus.data_seeds())
        files = {**_seed_files(s), "model.fg": s.text, "data.json": json.dumps(data_mutate.mutate_values(rnd, s.data))}
        return Case("fits", "fit", files, data="data.json", seed=i, origin=f"{s.name}:values", backend=backend,
                    options=dict(FIT_OPTIONS[backend]))
    return Case("fits", "fit", case.files, data=case.data, synth=case.synth, seed=i, origin=case.origin,
                backend=backend, options=dict(FIT_OPTIONS[backend]))


# ------------------------------------------------------------------ data
def make_data_case(rnd: random.Random, i: int) -> Case:
    s = rnd.choice(corpus.data_seeds())
    name, body = data_mutate.mutate_data(rnd, s.data)
    files = {**_seed_files(s), "model.fg": s.text, name: body}
    return Case("data", "load_bind", files, data=name, seed=i, origin=s.name)


# ------------------------------------------------------------------ cli
TINY = "model tiny\ndata N: int\ndata y[N]: real\nvar mu: real ~ normal(0, 10)\n" \
    "factor obs[i in 0:N]: y[i] ~ normal(mu, 1)\n"
TINY_DATA = json.dumps({"N": 3, "y": [0.5, 1.0, 1.5]})
_BAD_INTS = ("-1", "0", "1", "2", "3", "10**20", "18446744073709551616", "-9223372036854775809", "1e3", "nan", "abc",
             "", "9" * 400, "99999999999")
_BAD_FLOATS = ("-1", "0", "1", "0.5", "1e-300", "1e300", "nan", "inf", "-inf", "abc", "", "1e999")
_PATHS = ("model.fg", "tiny.fg", "data.json", "missing.json", "empty.json", "dir", "/dev/null", "bad.npz",
          "post.nc", "nul\udce9.json", "/proc/self/mem", "dir/x.fg", "latin1.fg", "deep.json", "")
_OUTS = ("out.nc", "out.svg", "out.png", "out.dot", "out.txt", "dir", "/proc/nope/x.svg", "ro/x.nc", "/dev/null",
         "link.nc", "fifo.nc", "")


_FIT_MORE = (  # the fit options not drawn above: each with a value that is wrong, odd or right
    ["--devices", "0"], ["--devices", "all"], ["--devices", "-3"], ["--devices", "x"], ["--save-data-lets"],
    ["--coordinator", "localhost:1"], ["--num-processes", "0"], ["--process-id", "-1"], ["--timings"],
    ["--undamped"], ["--shuffle"], ["--rank", "0"], ["--rank", "10**20"], ["--resample", "nope"],
    ["--elbo-tol", "-1"], ["--elbo-tol", "nan"], ["--path", "lsq"], ["--path", "general"], ["--path", "x"],
    ["--marginals", "full"], ["--marginals", "none"], ["--marginals", "x"], ["--device", "cpu"],
    ["--max-dense", "1"], ["--temper", "0"], ["--schedule", "sequential"],
)


def _cli_files() -> dict[str, str | bytes]:
    eight = next(s for s in corpus.seeds() if s.name == "examples/eight_schools.fg")
    return {
        "tiny.fg": TINY, "data.json": TINY_DATA, "model.fg": eight.text, "eight.json": json.dumps(eight.data),
        "empty.json": "", "bad.npz": b"PK\x03\x04garbage", "dir/.keep": "", "latin1.fg": b"model m\n# caf\xe9\n",
        "deep.json": "[" * 100_000 + "]" * 100_000, "post.nc": b"\x89HDF\r\n\x1a\ngarbage",
    }


def make_cli_case(rnd: random.Random, i: int) -> Case:
    cmd = rnd.choice(("check", "compile", "fit", "fit", "fit", "predict", "summary", "graph", "plot", "import",
                      "cache", "bogus", "--help", "fit --help"))
    argv = cmd.split()
    model = rnd.choice(("tiny.fg", "tiny.fg", "model.fg") + _PATHS)
    data = rnd.choice(("data.json", "data.json", "eight.json") + _PATHS)
    if cmd in ("check", "compile", "graph"):
        argv += [model] + (["--data", data] if rnd.random() < 0.7 else [])
        if cmd == "compile" and rnd.random() < 0.3:
            argv += ["--emit", rnd.choice(("ir", "x", ""))]
        if cmd == "graph" and rnd.random() < 0.5:
            argv += ["-o", rnd.choice(_OUTS)]
        if cmd == "graph" and rnd.random() < 0.3:
            argv += [rnd.choice(("--instances", "--no-instances"))]
    elif cmd == "fit":
        backend = rnd.choice(("gbp", "vi", "mcmc", "map", "gbp", "nope", ""))
        argv += [model, "--data", data, "--backend", backend, "-q"]
        small = {"gbp": ["--iters", "3"], "vi": ["--steps", "5", "--draws", "10"], "map": ["--iters", "3"],
                 "mcmc": ["--chains", "1", "--warmup", "5", "--samples", "5"]}.get(backend, [])
        argv += small
        for _ in range(rnd.choice((0, 1, 1, 2))):
            flag = rnd.choice(("--iters", "--steps", "--seed", "--draws", "--chains", "--warmup", "--samples",
                               "--particles", "--epochs", "--batch-size", "--max-dense"))
            argv += [flag, rnd.choice(_BAD_INTS)]
        for _ in range(rnd.choice((0, 0, 1))):
            flag = rnd.choice(("--lr", "--damping", "--tol", "--dropout", "--target-accept", "--temper",
                               "--relinearize", "--lambda-init"))
            argv += [flag, rnd.choice(_BAD_FLOATS)]
        if rnd.random() < 0.2:
            argv += [rnd.choice(("--dtype", "--guide", "--schedule", "--device", "--method", "--chain-method")),
                     rnd.choice(("float64", "x", "gpu", "tpu", "delta", "sequential", ""))]
        if rnd.random() < 0.2:
            argv += ["--init", rnd.choice(_PATHS)]
        if rnd.random() < 0.2:
            argv += ["--prior", rnd.choice(_PATHS)]
        if rnd.random() < 0.2:
            argv += ["-o", rnd.choice(_OUTS)]
        if rnd.random() < 0.25:
            argv += rnd.choice(_FIT_MORE)
    elif cmd == "predict":
        argv += [model, "-p", rnd.choice(_PATHS), "--data", data]
        if rnd.random() < 0.3:
            argv += ["--iters", rnd.choice(_BAD_INTS)]
        if rnd.random() < 0.3:
            argv += rnd.choice((["--seed", rnd.choice(_BAD_INTS)], ["--damping", rnd.choice(_BAD_FLOATS)],
                                ["-o", rnd.choice(_OUTS)]))
    elif cmd in ("summary", "plot"):
        argv += [rnd.choice(_PATHS)]
        if cmd == "summary" and rnd.random() < 0.3:
            argv += ["--all"]
        if cmd == "plot" and rnd.random() < 0.5:
            argv += ["-o", rnd.choice(_OUTS)]
        if cmd == "plot" and rnd.random() < 0.3:
            argv += ["--names", rnd.choice(("mu", "nope", ",", ""))]
    elif cmd == "import":
        argv += [rnd.choice(_PATHS + ("g.g2o",)), "-o", rnd.choice(_OUTS)]
        if rnd.random() < 0.3:
            argv += ["--format", rnd.choice(("g2o", "toro", "x"))]
        if rnd.random() < 0.3:
            argv += ["--init-out", rnd.choice(_OUTS)]
    env: dict[str, str] = {"FGLANG_CACHE_DIR": "{tmp}/cache", "XDG_CACHE_HOME": "{tmp}/xdg"}  # never the user's
    if cmd == "cache":
        argv.append(rnd.choice(("info", "clear", "clear", "bogus", "", "--help")))
        env["FGLANG_CACHE_DIR"] = rnd.choice(("{tmp}/cache", "{tmp}/cache", "{tmp}/data.json", "{tmp}/dir",
                                              "/proc/nope", "{tmp}/dir/x/y"))
    files = _cli_files()
    files["g.g2o"] = rnd.choice(("VERTEX_SE2 0 0 0 0\n", "EDGE_SE2 0 1 1 0 0 1 0 0 1 0 1\n", "", "VERTEX_SE2 x\n",
                                 "VERTEX_SE2 0 1e999 0 0\nVERTEX_SE2 1 0 0 0\nEDGE_SE2 0 1 1 0 0 1 0 0 1 0 1\n"))
    if cmd == "cache" and rnd.random() < 0.5:  # a cache with entries, leftovers and a folder where a file goes
        files.update({"cache/jax/a-1-cache": b"x" * 10, "cache/jax/.fglang-tmp-1": b"", "cache/jax/b-2-cache/.k": ""})
    return Case("cli", "cli", files, argv=argv, seed=i, origin=cmd, env=env)


# ------------------------------------------------------------------ posterior
@dataclass
class PosteriorBases:
    """Posterior files fitted once per run (in a child) for the campaign to damage."""

    files: dict[str, bytes] = field(default_factory=dict)


def fit_bases(where: Path) -> None:
    """Fit the tiny model with gbp and vi and save both (runs in a child)."""
    import fglang

    os.chdir(where)
    Path("tiny.fg").write_text(TINY)
    Path("data.json").write_text(TINY_DATA)
    m = fglang.load("tiny.fg")
    m.fit("data.json", backend="gbp", iters=5).save("gbp.nc")
    m.fit("data.json", backend="vi", steps=10, draws=20).save("vi.nc")


def make_posterior_case(rnd: random.Random, i: int, bases: PosteriorBases) -> Case:
    base = rnd.choice(sorted(bases.files))
    raw = bytearray(bases.files[base])
    k = rnd.randrange(6)
    if k == 0:
        raw = raw[: rnd.randrange(len(raw) + 1)]
    elif k in (1, 2):
        for _ in range(rnd.choice((1, 2, 8, 64))):
            raw[rnd.randrange(len(raw))] = rnd.randrange(256)
    elif k == 3:
        a = rnd.randrange(len(raw))
        raw[a : a + rnd.choice((16, 256, 4096))] = bytes(min(4096, len(raw) - a))
    elif k == 4:
        raw = raw + bytes(rnd.randrange(256) for _ in range(rnd.choice((1, 100))))
    else:
        raw = bytearray(_edit_attrs(rnd, bytes(raw), base))
    files = {"tiny.fg": TINY, "data.json": TINY_DATA, "post.nc": bytes(raw),
             "pred.json": json.dumps({"N": 2})}
    use = rnd.choice(("summary", "plot", "predict", "prior"))
    argv = {"summary": ["summary", "post.nc"], "plot": ["plot", "post.nc", "-o", "p.png"],
            "predict": ["predict", "tiny.fg", "-p", "post.nc", "--data", rnd.choice(("pred.json", "data.json"))],
            "prior": ["fit", "tiny.fg", "--data", "data.json", "--prior", "post.nc", "-q", "--iters", "3"]}[use]
    return Case("posterior", "cli", files, argv=argv, seed=i, origin=f"{base}:{use}")


def _edit_attrs(rnd: random.Random, raw: bytes, base: str) -> bytes:
    """A hand edit: one attribute or variable of the file removed or changed, via h5netcdf."""
    import h5netcdf

    buf = io.BytesIO(raw)
    out = io.BytesIO()
    out.write(raw)
    out.seek(0)
    try:
        with h5netcdf.File(out, "r+") as f:
            groups = [f] + [f[g] for g in f.groups]
            g = rnd.choice(groups)
            keys = list(g.attrs)
            if keys and rnd.random() < 0.6:
                key = rnd.choice(keys)
                if rnd.random() < 0.5:
                    del g.attrs[key]
                else:
                    g.attrs[key] = rnd.choice(("", "{", "[1,2", "null", "gbp", "nope", "1e999", "{}", "[]"))
            elif g.variables:
                v = rnd.choice(list(g.variables))
                arr = np.asarray(g.variables[v][...])
                if arr.dtype.kind == "f" and arr.size:
                    g.variables[v][...] = np.full(arr.shape, rnd.choice((np.nan, np.inf, -1.0, 1e300)))
    except Exception:  # noqa: BLE001 - a base the editor cannot open is used as it is
        return buf.getvalue()
    return out.getvalue()


CAMPAIGNS: dict[str, tuple[Callable[..., Case], float]] = {
    # name: (case maker, seconds per case)
    "models": (make_model_case, 20.0),
    "fits": (make_fit_case, 240.0),
    "data": (make_data_case, 20.0),
    "cli": (make_cli_case, 60.0),
    "posterior": (make_posterior_case, 60.0),
}
