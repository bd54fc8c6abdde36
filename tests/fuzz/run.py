"""``python -m tests.fuzz.run --cases N --campaign models|data|cli|posterior|fits|all``

Runs N cases of each chosen campaign, each in a forked child with an
address-space limit and a timeout, prints the counts per campaign and a
table of findings deduplicated by (outcome, exception type, innermost fglang
frame), and writes one minimized reproducer per finding to ``--out``
(replay one with ``--replay DIR``). Exit status 1 when anything but clean
outcomes happened, so CI can run it as is. A fixed ``--seed`` gives the
same cases on every machine.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

from tests.fuzz import campaigns as C
from tests.fuzz.minimize import minimize
from tests.fuzz.sandbox import OUTCOMES, Outcome, run_case

ORDER = ("models", "data", "cli", "posterior", "fits")


def _warm() -> None:
    """Import and build in the parent what every child needs, so forks start warm.

    Also the modules a fit, a posterior file and a plot pull in (NumPyro,
    optax, ArviZ, xarray, h5netcdf, matplotlib: ~2 CPU-s of imports that
    every child running a fit, ``summary``, ``plot`` or ``predict`` paid
    again). Importing them runs no JAX computation (no backend starts, no
    thread): the fork stays safe."""
    import fglang  # noqa: F401
    import fglang.cli  # noqa: F401
    import fglang.compiler.lower_jax  # noqa: F401
    import fglang.runtime.binding  # noqa: F401
    import fglang.runtime.mcmc.fit  # noqa: F401
    import fglang.runtime.numpyro_backend  # noqa: F401
    import fglang.runtime.posterior  # noqa: F401
    import fglang.runtime.vi.fit  # noqa: F401
    import fglang.viz.plot  # noqa: F401
    from fglang.compiler.parse import _parser

    for lazy in ("arviz", "xarray", "h5netcdf", "matplotlib.backends.backend_agg", "matplotlib.figure",
                 "matplotlib.ticker"):  # imported inside fglang's functions, on first use
        importlib.import_module(lazy)

    _parser()


def run_one(case: C.Case, mem: int, timeout: float) -> Outcome:
    tmp = Path(tempfile.mkdtemp(prefix="fgfuzz-"))
    try:
        return run_case(lambda: C.execute(case, tmp), mem_bytes=mem, timeout=timeout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bases(mem: int, out: Path) -> C.PosteriorBases:
    where = out / "posterior-bases"
    if not (where / "gbp.nc").exists() or not (where / "vi.nc").exists():
        where.mkdir(parents=True, exist_ok=True)
        o = run_case(lambda: C.fit_bases(where), mem_bytes=mem, timeout=300)
        if o.kind != "clean":
            raise SystemExit(f"fitting the posterior campaign's base files failed: {o.kind} {o.signature}\n{o.detail}")
    return C.PosteriorBases({p.name: p.read_bytes() for p in sorted(where.glob("*.nc"))})


def _make(maker, key: str, i: int, bases) -> C.Case:
    """A case from a seeded ``Random``; a mutator that fails on a rare input tries another draw."""
    for attempt in range(20):
        rnd = random.Random(f"{key}:{attempt}" if attempt else key)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return maker(rnd, i, bases) if bases is not None else maker(rnd, i)
        except (ValueError, OverflowError, RecursionError, TypeError):
            continue
    raise RuntimeError(f"the fuzzer cannot make case {key}")


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", s)[:60].strip("_")


def write_repro(case: C.Case, o: Outcome, where: Path) -> None:
    where.mkdir(parents=True, exist_ok=True)
    C.write_files(case, where)
    (where / "case.json").write_text(json.dumps(case.to_json(), indent=1))
    how = f"fglang {' '.join(case.argv)}" if case.op == "cli" else "fglang.load('model.fg')" + (
        f".bind('{case.data}')" if case.data else ".bind(synthesized data; see case.json)")
    (where / "outcome.txt").write_text(f"{o.kind}: {o.signature}\norigin: {case.origin}\nrun (in this folder): {how}\n"
                                      f"replay: python -m tests.fuzz.run --replay {where}\n\n{o.detail}",
                                      errors="backslashreplace")


def campaign(name: str, n: int, seed: int, mem: int, out: Path, do_min: bool, verbose: bool):
    maker, timeout = C.CAMPAIGNS[name]
    bases = _bases(mem, out) if name == "posterior" else None
    counts: Counter = Counter()
    findings: dict[tuple[str, str], dict] = {}
    t0 = time.monotonic()
    for i in range(n):
        case = _make(maker, f"{seed}:{name}:{i}", i, bases)
        o = run_one(case, mem, timeout)
        counts[o.kind] += 1
        if o.finding:
            key = (o.kind, o.signature)
            if key not in findings:
                if do_min and name == "models":
                    case = minimize(case, lambda c, k=key: (lambda r: (r.kind, r.signature) == k)(
                        run_one(c, mem, timeout)))
                where = out / f"{name}-{len(findings):03d}-{_slug(o.kind + '_' + o.signature)}"
                write_repro(case, o, where)
                findings[key] = {"count": 0, "repro": str(where), "origin": case.origin}
                if verbose:
                    print(f"  [{name} {i}] {o.kind}: {o.signature}  ({case.origin})", flush=True)
            findings[key]["count"] += 1
        if verbose and (i + 1) % (10 if name == "fits" else 500) == 0:
            print(f"  {name}: {i + 1}/{n} cases, {time.monotonic() - t0:.0f} s, {dict(counts)}", flush=True)
    return counts, findings, time.monotonic() - t0


def table(results: dict) -> str:
    head = "| campaign | cases | " + " | ".join(OUTCOMES) + " | seconds |"
    rows = [head, "|" + "---|" * (len(OUTCOMES) + 3)]
    for name, (counts, _, secs) in results.items():
        rows.append(f"| {name} | {sum(counts.values())} | " + " | ".join(str(counts[k]) for k in OUTCOMES)
                    + f" | {secs:.0f} |")
    found = [(name, k, v) for name, (_, f, _) in results.items() for k, v in f.items()]
    if found:
        rows += ["", "findings (deduplicated by outcome + exception type + innermost fglang frame):"]
        for name, (kind, sig), v in sorted(found, key=lambda x: -x[2]["count"]):
            rows.append(f"  {v['count']:5d}  {name:9s} {kind:9s} {sig}  -> {v['repro']}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__.split("\n\n")[1])
    ap.add_argument("--cases", type=int, default=1000, help="cases per campaign")
    ap.add_argument("--mix", help="cases per campaign by name, e.g. models=150,data=150,cli=20 (overrides --cases)")
    ap.add_argument("--campaign", default="all", choices=ORDER + ("all",))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mem-gib", type=float, default=3.0, help="address-space limit of each case")
    ap.add_argument("--out", type=Path, default=Path("fuzz-findings"), help="where reproducers are written")
    ap.add_argument("--no-minimize", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the counts and findings here")
    ap.add_argument("--replay", type=Path, help="rerun the case of a reproducer folder and print its outcome")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    mem = int(args.mem_gib * (1 << 30))
    _warm()
    if args.replay is not None:
        case = C.Case.from_json(json.loads((args.replay / "case.json").read_text()))
        o = run_one(case, mem, C.CAMPAIGNS[case.campaign][1])
        print(f"{o.kind}: {o.signature} ({o.seconds:.1f} s)\n{o.detail}")
        return int(o.finding)
    names = ORDER if args.campaign == "all" else (args.campaign,)
    counts = {n: args.cases for n in names}
    if args.mix:
        counts = {k: int(v) for k, v in (part.split("=") for part in args.mix.split(","))}
    results = {}
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ORDER:
        if name in counts:
            results[name] = campaign(name, counts[name], args.seed, mem, args.out, not args.no_minimize,
                                     not args.quiet)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({n: {"counts": dict(c), "seconds": s, "findings": [
            {"kind": k, "signature": sig, **v} for (k, sig), v in f.items()]} for n, (c, f, s) in results.items()},
            indent=1))
    return int(any(f for _, f, _ in results.values()))


if __name__ == "__main__":
    sys.exit(main())
