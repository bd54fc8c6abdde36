"""The ``fglang`` command line. Thin: parse options, call the API, print.

Mistakes in a model, its data or its options print SPEC section 8's
format to stderr and exit 1; usage errors exit 2 (typer's convention);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

import fglang
from fglang.errors import Diagnostic, FgError
from fglang.io.atomic import preflight
from fglang.runtime import backend as backends
from fglang.runtime.inits import START_AT_MODE

app = typer.Typer(
    name="fglang",
    help="fglang: factor-graph models, fitted by GBP, NumPyro VI or NUTS.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ModelArg = Annotated[Path, typer.Argument(help="the .fg model file", show_default=False)]
DataOpt = Annotated[Path | None, typer.Option("--data", "-d", help="data file (.json in CmdStan layout, or .npz)")]


def _fail(e: FgError) -> None:
    err.print(str(e), markup=False)
    raise typer.Exit(1)


@app.command()
def check(model: ModelArg, data: DataOpt = None) -> None:
    """Parse and check a model (and its data, if given)."""
    try:
        m = fglang.load(model)
        if data is not None:
            m.check_data(data)
    except FgError as e:
        _fail(e)
    what = f" with {data}" if data is not None else ""
    out.print(f"{model}: model {m.name} is well formed{what}", markup=False)


@app.command("compile")
def compile_(
    model: ModelArg,
    data: DataOpt = None,
    emit: Annotated[str, typer.Option("--emit", help="what to print: ir")] = "ir",
) -> None:
    """Compile a model and print its IR (family sizes need --data)."""
    if emit != "ir":
        err.print(f"--emit takes 'ir', got {emit!r}", markup=False)
        raise typer.Exit(2)
    try:
        m = fglang.load(model)
        text = m.show(data)
    except FgError as e:
        _fail(e)
    out.print(text, markup=False)


def _table(rows: list[dict], title: str):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    cols = ["name", "mean", "sd", "5%", "95%"] + [c for c in ("r_hat", "ess_bulk") if rows and c in rows[0]]
    for c in cols:
        table.add_column(c, justify="left" if c == "name" else "right")
    for r in rows:
        table.add_row(*[r[c] if c == "name" else (f"{r[c]:.0f}" if c == "ess_bulk" else f"{r[c]:.4g}") for c in cols])
    return table


def print_summary(post, title: str, data_lets: bool = False) -> None:
    rows = post.summary(data_lets=data_lets)
    out.print(_table(rows, title))
    total = post.rows_in(post.names + (list(post.constants) if data_lets else []))
    if len(rows) < total:
        out.print(f"{len(rows)} of {total} rows shown, vars first and small ones first; "
                  "fglang summary FILE --name NAME shows all of one var or let", markup=False)
    hidden = [n for n in post.data_lets if not data_lets or n not in post.constants]
    if hidden:
        how = "fglang summary --all" if not data_lets else "write them with fglang fit -o FILE --save-data-lets"
        out.print(f"lets of data only, not shown: {', '.join(hidden)} ({how})", markup=False)
    for line in post.report():
        out.print(line, markup=False)
    for w in post.warnings():
        err.print(f"warning: {w}", markup=False)


def _opts(**kw):
    return {k: v for k, v in kw.items() if v is not None}


def _option_flags() -> list[inspect.Parameter]:
    """One typed flag per backend option, from the registered option
    dataclasses (``fglang.runtime.backend``): declared once, shown by --help
    with the backends it applies to."""
    params = []
    for name, (kind, _, help_text, _owners) in backends.flags().items():
        flag = "--" + name.replace("_", "-")
        decl = (f"{flag}/--no-{name.replace('_', '-')}",) if kind is bool else (flag,)
        info = typer.Option(*decl, help=help_text, show_default=False)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[kind | None, info]))
    return params


_FIT_PARAMS = [
    ("model", ModelArg, inspect.Parameter.empty),
    ("data", Annotated[Path, typer.Option("--data", "-d", help="data file (.json or .npz)")], inspect.Parameter.empty),
    ("backend", Annotated[str, typer.Option("--backend", "-b", help=" | ".join(backends.names()))], "gbp"),
    ("out_path", Annotated[Path | None, typer.Option("--out", "-o", help="write the posterior (ArviZ NetCDF)")], None),
    ("seed", Annotated[int, typer.Option(help="random seed")], 0),
    ("device", Annotated[str | None, typer.Option(help="cpu | gpu")], None),
    ("devices", Annotated[str, typer.Option(
        help="N | all: run over N devices of the platform (gbp: families sharded; mcmc: a chain per device; "
        "vi: data rows split; map: residual blocks split, the factorization on the host)"
    )], "1"),
    ("init", Annotated[str | None, typer.Option(
        help="initial values file (same layout as data), or map (start at the MAP) or map:FILE (the MAP found "
        "from FILE's values); ./map for a file so named"
    )], None),
    ("prior", Annotated[Path | None, typer.Option(help="a posterior file whose marginals become the priors")], None),
    ("quiet", Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")], False),
    ("save_data_lets", Annotated[bool, typer.Option(
        "--save-data-lets", help="with --out: also write the values of the lets of data only (constant_data)"
    )], False),
    ("coordinator", Annotated[str | None, typer.Option(
        help="HOST:PORT of process 0 (or auto: from SLURM's environment): join a run of several processes "
        "(every backend)"
    )], None),
    ("num_processes", Annotated[int | None, typer.Option(help="with --coordinator: how many processes")], None),
    ("process_id", Annotated[int | None, typer.Option(help="with --coordinator: this process, 0..P-1 "
                                                       "(process 0 prints and writes --out)")], None),
    ("timings", Annotated[bool, typer.Option(
        "--timings", help="print where the time went: parse, check, lower, bind, import, trace, compile, run, write"
    )], False),
]


def fit(**kw) -> None:
    """Fit a model to data and print the posterior summary."""
    general = {name for name, _, _ in _FIT_PARAMS}
    options = {k: v for k, v in kw.items() if k not in general and v is not None}
    backend = kw["backend"]
    if backend not in backends.names():
        other = backends.other_name(backend)
        meant = f" ('{backend}' is --backend {other} here)" if other else ""
        err.print(f"--backend takes {', '.join(backends.names())}, got {backend!r}{meant}", markup=False)
        raise typer.Exit(2)
    own = {f.name for f in dataclasses.fields(backends.options_class(backend))}
    stray = [k for k in options if k not in own]
    if stray:
        flags = ", ".join("--" + k.replace("_", "-") for k in stray)
        err.print(f"{flags} do(es) not apply to --backend {backend}", markup=False)
        raise typer.Exit(2)
    try:
        if kw["out_path"] is not None:
            preflight(kw["out_path"])
        m = fglang.load(kw["model"])
        post = m.fit(
            kw["data"],
            backend=backend,
            seed=kw["seed"],
            init=kw["init"] if kw["init"] is None or kw["init"].split(":")[0] == START_AT_MODE else Path(kw["init"]),
            prior=kw["prior"],
            device=kw["device"],
            devices=kw["devices"],
            progress=not kw["quiet"],
            coordinator=kw["coordinator"],
            num_processes=kw["num_processes"],
            process_id=kw["process_id"],
            **options,
        )
        if kw["coordinator"] is not None and _process_index() != 0:  # process 0 reports and writes
            return
        t0 = time.perf_counter()
        print_summary(post, f"{m.name} ({backend})")
        post.timings["summary"] = time.perf_counter() - t0
        if kw["out_path"] is not None:
            t0 = time.perf_counter()
            post.save(kw["out_path"], data_lets=kw["save_data_lets"])
            post.timings["write"] = time.perf_counter() - t0
            out.print(f"wrote {kw['out_path']}", markup=False)
        if kw["timings"]:
            from fglang.runtime.timings import format_timings

            for line in format_timings(post.timings):
                err.print(line, markup=False)
    except FgError as e:
        _fail(e)


def _process_index() -> int:
    import jax  # only after a fit, which has imported it

    return jax.process_index()


fit.__signature__ = inspect.Signature(
    [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d, annotation=a) for n, a, d in _FIT_PARAMS]
    + _option_flags()
)
fit.__annotations__ = {p.name: p.annotation for p in fit.__signature__.parameters.values()}
app.command()(fit)


@app.command()
def predict(
    model: ModelArg,
    posterior: Annotated[Path, typer.Option("--posterior", "-p", help="a posterior file written by fglang fit -o")],
    data: Annotated[
        Path, typer.Option("--data", "-d", help="new data; targets (data only on the left of ~) may be absent")
    ],
    out_path: Annotated[Path | None, typer.Option("--out", "-o", help="write the predictions (ArviZ NetCDF)")] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    iters: Annotated[int | None, typer.Option(help="gbp: most iterations")] = None,
    damping: Annotated[float | None, typer.Option(help="gbp: message damping")] = None,
) -> None:
    """Predict the factors whose target data are absent, from a fitted posterior."""
    try:
        if out_path is not None:
            preflight(out_path)
        m = fglang.load(model)
        opts = _opts(iters=iters, damping=damping)
        pred = m.predict(posterior, data, seed=seed, **opts)
        names = pred.attrs.get("predicted", [])
        if not names:
            err.print("nothing to predict: every factor's data are present", markup=False)
        print_summary_names(pred, names, f"{m.name} predictions ({pred.backend})")
        if out_path is not None:
            pred.save(out_path)
            out.print(f"wrote {out_path}", markup=False)
    except FgError as e:
        _fail(e)


def print_summary_names(post, names, title: str, max_rows: int = 60) -> None:
    rows = post.summary(names=names, max_rows=max_rows)
    out.print(_table(rows, title))


@app.command()
def summary(
    posterior: Annotated[Path, typer.Argument(help="a posterior file written by fglang fit -o")],
    show_all: Annotated[bool, typer.Option("--all", help="also the lets of data only (their one value, sd 0)")] = False,
    name: Annotated[list[str] | None, typer.Option(
        "--name", help="only these vars or lets, every element (repeat the option for several)")] = None,
) -> None:
    """Print a posterior file's summary table."""
    from fglang.runtime.posterior import load_posterior

    try:
        post = load_posterior(posterior)
        if name:
            known = post.names + list(post.constants)
            unknown = [n for n in name if n not in known]
            if unknown:
                raise FgError([Diagnostic(f"{posterior} has no var or let '{unknown[0]}'", None,
                                          f"it has: {', '.join(known)}")])
    except FgError as e:
        _fail(e)
    if name:
        print_summary_names(post, name, f"{post.model} ({post.backend})", max_rows=post.rows_in(name))
        return
    print_summary(post, f"{post.model} ({post.backend})", data_lets=show_all)


@app.command()
def graph(
    model: ModelArg,
    data: DataOpt = None,
    out_path: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="write the picture: .svg, .png, .pdf or .dot (default: print DOT source)"),
    ] = None,
    instances: Annotated[
        bool | None,
        typer.Option(
            "--instances/--no-instances",
            help="also draw every node and factor (default: with --data, when there are at most 200)",
        ),
    ] = None,
) -> None:
    """Draw a model's factor graph (Graphviz): vars, factor families, plates, data."""
    from fglang.viz.graph import GRAPH_FORMATS, render

    if out_path is not None and out_path.suffix.lower() not in GRAPH_FORMATS:
        err.print(f"--out must end in {', '.join(GRAPH_FORMATS)}, got {out_path.name!r}", markup=False)
        raise typer.Exit(2)
    if instances and data is None:
        err.print("--instances needs --data: the instance view draws every node, so it needs the sizes", markup=False)
        raise typer.Exit(2)
    try:
        g = fglang.load(model).graph(data, instances)
        if out_path is None:
            out.print(g.source, markup=False)
            return
        render(g, out_path)
    except FgError as e:
        _fail(e)
    out.print(f"wrote {out_path}", markup=False)


@app.command()
def plot(
    posterior: Annotated[Path, typer.Argument(help="a posterior file written by fglang fit -o", show_default=False)],
    out_path: Annotated[
        Path | None, typer.Option("--out", "-o", help="the picture: .png, .svg or .pdf (default: POSTERIOR.png)")
    ] = None,
    names: Annotated[
        str | None, typer.Option("--names", help="comma-separated quantities to plot (default: all)")
    ] = None,
) -> None:
    """Plot a posterior: densities, MCMC traces, bands along an index, images of 2-D grids."""
    from fglang.runtime.posterior import load_posterior
    from fglang.viz.plot import PLOT_FORMATS

    if out_path is None:
        if not posterior.name:  # "" or ".": no name to put .png after; load_posterior says what is wrong
            try:
                load_posterior(posterior)
            except FgError as e:
                _fail(e)
        out_path = posterior.with_suffix(".png")
    if out_path.suffix.lower() not in PLOT_FORMATS:
        err.print(f"--out must end in {', '.join(PLOT_FORMATS)}, got {out_path.name!r}", markup=False)
        raise typer.Exit(2)
    try:
        post = load_posterior(posterior)
        post.plot(out_path, [n.strip() for n in names.split(",") if n.strip()] if names else None)
    except FgError as e:
        _fail(e)
    out.print(f"wrote {out_path}", markup=False)


@app.command("import")
def import_(
    file: Annotated[
        Path, typer.Argument(help="a pose-graph file: g2o (.g2o, .graph) or TORO (.toro)", show_default=False)
    ],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="write the data here (JSON, CmdStan layout)")],
    init_out: Annotated[
        Path | None, typer.Option("--init-out", help='write the initial guess {"pose": ...} here')
    ] = None,
    format_: Annotated[
        str | None, typer.Option("--format", help="g2o | toro (default: from the extension, else the first tag)")
    ] = None,
) -> None:
    """Convert a pose-graph file (g2o, TORO) to a data file and an init file for fit."""
    from fglang.io.atomic import write_atomic
    from fglang.io.pose_graph import FORMATS, read_pose_graph, to_json

    if format_ is not None and format_ not in FORMATS:
        err.print(f"--format takes {' or '.join(FORMATS)}, got {format_!r}", markup=False)
        raise typer.Exit(2)
    try:
        data, init = read_pose_graph(file, format=format_)
        write_atomic(out_path, to_json(data).encode())
        if init_out is not None:
            write_atomic(init_out, to_json(init).encode())
    except FgError as e:
        _fail(e)
    dim = 2 if "sd" in data else 3
    out.print(f"{file}: {data['N']} poses, {data['M']} edges ({dim}-D); wrote {out_path}"
              + (f" and {init_out}" if init_out is not None else ""), markup=False)  # fmt: skip


cache_app = typer.Typer(
    help="the compilation cache: where it is and how big (info), or empty it (clear)", no_args_is_help=True
)
app.add_typer(cache_app, name="cache")


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


@cache_app.command("info")
def cache_info() -> None:
    """Where the compilation cache is, how many programs it holds and their size."""
    from fglang.runtime.cache import cache_info as info

    i = info()
    state = "" if i.enabled else " (off: FGLANG_NO_CACHE is set)"
    out.print(f"{i.path}: {i.entries} compiled programs, {_size(i.bytes)}{state}", markup=False)
    out.print(f"{i.programs_path}: {i.programs} exported programs (whole samplers, loaded without tracing), "
              f"{_size(i.programs_bytes)}{state}", markup=False)
    out.print("move it with FGLANG_CACHE_DIR=DIR; empty it with: fglang cache clear", markup=False)


@cache_app.command("clear")
def cache_clear() -> None:
    """Remove every compiled and exported program from the cache (the next fit compiles again)."""
    from fglang.runtime.cache import clear_cache, clear_programs, jax_cache_dir, programs_dir

    removed, freed = clear_cache()
    out.print(f"{jax_cache_dir()}: removed {removed} compiled programs, {_size(freed)}", markup=False)
    removed, freed = clear_programs()
    out.print(f"{programs_dir()}: removed {removed} exported programs, {_size(freed)}", markup=False)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (e.g. ignored data keys) as one plain line, not Python's format."""
    err.print(f"warning: {message}", markup=False)


def main() -> None:
    """Console entry point."""
    import warnings

    warnings.showwarning = _show_warning
    # a file name that is not UTF-8 reaches us as surrogates: print its bytes back, never a UnicodeEncodeError
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)
