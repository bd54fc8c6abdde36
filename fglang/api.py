"""The Python surface: ``fglang.load``, ``fglang.compile``, ``Model``.

Thin by design: every step calls the compiler or a runtime backend, so the
CLI and Python users get the same behaviour and the same errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fglang.compiler.bind import BoundModel
from fglang.compiler.check import CheckedModel, check_decls, check_source
from fglang.compiler.datafile import read_data
from fglang.compiler.includes import load_program
from fglang.compiler.ir import ModelIR
from fglang.compiler.lower import lower
from fglang.compiler.show import show_ir
from fglang.runtime.arguments import ArgumentError, expect, expect_path
from fglang.runtime.binding import bind_model
from fglang.runtime.inits import START_AT_MODE, ModeStart
from fglang.runtime.posterior import Posterior
from fglang.runtime.timings import Timings, phase, recording

DataLike = dict[str, Any] | str | Path


class Model:
    """A checked, compiled model: its IR, ready to bind data and fit."""

    def __init__(self, checked: CheckedModel, timings: Timings | None = None):
        self.checked = checked
        self._load_timings = timings or Timings()  # parse and check, reported with the first fit
        with recording(self._load_timings), phase("lower"):
            self.ir: ModelIR = lower(checked)

    @property
    def name(self) -> str:
        return self.ir.name

    @property
    def source(self) -> str:
        return self.checked.sources[self.checked.file]

    def bind(self, data: DataLike) -> BoundModel:
        """Validate data against the declarations and build the index arrays."""
        raw, file = _read(data)
        return bind_model(self.ir, raw, file)

    def check_data(self, data: DataLike) -> BoundModel:
        """``bind`` and the checks of the data's values every fit makes before it
        starts (a scale of data that is not positive, an observation outside
        its distribution's support, a rating outside ordered_logistic's
        outcomes), so ``fglang check --data`` finds what ``fit`` would refuse
        without fitting. Imports JAX (the data-only arguments are evaluated)."""
        from fglang.runtime.values import check_values

        bm = self.bind(data)
        check_values(bm)
        return bm

    def fit(
        self,
        data: DataLike,
        backend: str = "gbp",
        *,
        seed: int = 0,
        init: DataLike | None = None,
        prior: Posterior | str | Path | None = None,
        device: str | None = None,
        devices: int | str = 1,
        progress: bool = False,
        coordinator: str | None = None,
        num_processes: int | None = None,
        process_id: int | None = None,
        **options: Any,
    ) -> Posterior:
        """Fit with any registered backend (``gbp``, ``vi``, ``mcmc``, ...);
        ``options`` are the backend's options, the CLI's flags as keywords.
        ``devices`` (a number or ``"all"``) runs the fit over that many devices
        of the platform (``gbp``: factor families sharded over them; ``mcmc``:
        one chain per device; ``vi``: the data rows split over them).
        ``coordinator`` (``"HOST:PORT"`` or ``"auto"``), ``num_processes`` and
        ``process_id`` join a run of several processes (``jax.distributed``):
        the fit runs over every process's devices (``gbp``).
        ``Posterior.timings`` says where the time went (the first fit of a
        model includes its parse, check and lower)."""
        _check_fit_args(backend, prior, progress, coordinator, num_processes, process_id)
        timings, self._load_timings = self._load_timings, Timings()
        with recording(timings):
            with phase("import"):
                from fglang.runtime.fit import fit
            with phase("bind"):
                init_values, init_file = _read_init(init)
                bm = self.bind(data)
            post = fit(
                bm,
                backend,
                seed=seed,
                init=init_values,
                init_file=init_file,
                prior=prior,
                device=device,
                devices=devices,
                progress=progress,
                options=options,
                coordinator=coordinator,
                num_processes=num_processes,
                process_id=process_id,
            )
        post.timings = timings.as_dict()
        return post

    def fit_many(
        self,
        datasets: list[DataLike],
        backend: str = "vi",
        *,
        seed: int = 0,
        init: DataLike | None = None,
        prior: Posterior | str | Path | None = None,
        device: str | None = None,
        devices: int | str = 1,
        progress: bool = False,
        **options: Any,
    ) -> list[Posterior]:
        """Fit many data sets of one shape (same sizes and index data, other
        values) in one compiled program: a posterior per data set, each what
        ``fit(data, backend, seed=seed, ...)`` gives it. ``devices`` splits the
        data sets over that many devices. Backends: ``vi``."""
        from fglang.runtime.many import fit_many

        if isinstance(datasets, dict | str | Path | bytes) or not hasattr(datasets, "__iter__"):
            raise ArgumentError(f"fit_many takes a list of data sets (dicts or paths), got {type(datasets).__name__}",
                                "for one data set use fit")
        _check_fit_args(backend, prior, progress, None, None, None)
        bound = []
        for k, data in enumerate(list(datasets)):
            raw, file = _read(data, f"data set {k} of fit_many")
            bound.append(bind_model(self.ir, raw, file if file != "<data>" else f"<data set {k}>"))
        init_values, init_file = _read_init(init)
        return fit_many(bound, backend, seed=seed, init=init_values, init_file=init_file, prior=prior, device=device,
                        devices=devices, progress=progress, options=options)

    def predict(
        self, posterior: Posterior | str | Path, data: DataLike, *, seed: int = 0, **options: Any
    ) -> Posterior:
        """Predict the left sides of factors whose data are absent from ``data``,
        with the backend that wrote the posterior (GBP: its marginals as priors;
        sampling backends: their draws)."""
        from fglang.runtime.fit import predict

        expect(posterior, (Posterior, str, Path), "predict's posterior", "a Posterior or the path of a posterior file")
        raw, file = _read(data)
        return predict(self.ir, posterior, raw, file, seed=seed, options=options)

    def numpyro_model(self, data: DataLike):
        """A NumPyro model function ``model(data)`` and the data to call it with,
        for use with any NumPyro inference."""
        from fglang.runtime.numpyro_model import NumpyroModel

        nm = NumpyroModel(self.bind(data))
        return nm.model_fn(), nm.data

    def log_density(self, values: dict[str, Any], data: DataLike, dtype: str = "float64") -> float:
        """The model's joint log density at ``values`` (var name -> array), as NumPyro
        computes it, in float64 unless ``dtype="float32"`` (as Stan, and as vi and
        mcmc fit on a CPU; float32 was off by up to 0.7 on a 5000-row regression)."""
        from numpyro.infer.util import log_density

        from fglang.runtime.inits import check_init
        from fglang.runtime.numpyro_model import NumpyroModel
        from fglang.runtime.numpyro_sites import init_sites, precision

        if dtype not in ("float32", "float64"):
            raise ValueError(f"log_density: dtype must be 'float32' or 'float64', got {dtype!r}")
        with precision(dtype):
            model, d = self.numpyro_model(data)
            bm = self.bind(data)
            sites = init_sites(NumpyroModel(bm), check_init(bm, values, "values"))
            lp, _ = log_density(model, (d,), {}, sites)
            return float(lp)

    def show(self, data: DataLike | None = None) -> str:
        """The readable IR (what ``fglang compile --emit ir`` prints)."""
        return show_ir(self.ir, self.bind(data) if data is not None else None)

    def graph(self, data: DataLike | None = None, instances: bool | None = None):
        """The factor graph as a ``graphviz.Graph`` (what ``fglang graph`` draws):
        the family view, plus every node and factor when ``data`` is given and
        the graph is small, or when ``instances=True``. Write it with
        ``fglang.viz.render(g, "g.svg")``; notebooks display it directly."""
        from fglang.viz.graph import factor_graph

        return factor_graph(self.ir, self.bind(data) if data is not None else None, instances)

    def __repr__(self) -> str:
        return f"<fglang.Model {self.name}: {len(self.ir.variables)} vars, {len(self.ir.families)} factor families>"


def _read_init(init: Any) -> tuple[Any, str]:
    """``init``: values (a dict or a file), or the mode: ``"map"`` (found from
    the default start), ``"map:FILE"`` or ``("map", values)`` (found from those)."""
    if init is None:
        return None, "init"
    if isinstance(init, str) and (init == START_AT_MODE or init.startswith(START_AT_MODE + ":")):
        start = init[len(START_AT_MODE) + 1:]
        return ModeStart(_read(start, "init")[0] if start else None), "init"
    if isinstance(init, tuple) and len(init) == 2 and init[0] == START_AT_MODE:
        return ModeStart(_read(init[1], "init")[0] if init[1] is not None else None), "init"
    return _read(init, "init")


def _check_fit_args(backend: Any, prior: Any, progress: Any, coordinator: Any, num_processes: Any,
                    process_id: Any) -> None:
    """The types of fit's and fit_many's arguments that later steps do not check themselves."""
    expect(backend, str, "backend", "a backend's name (a str such as 'gbp', 'vi', 'mcmc' or 'map')")
    if prior is not None:
        expect(prior, (Posterior, str, Path), "prior", "a Posterior, the path of a posterior file, or None")
    expect(progress, bool, "progress", "True or False")
    if coordinator is not None:
        expect(coordinator, str, "coordinator", "'HOST:PORT', 'auto' or None")
    for name, value in (("num_processes", num_processes), ("process_id", process_id)):
        if value is not None:
            expect(value, int, name, "a whole number or None")


def _read(data: DataLike, what: str = "data") -> tuple[dict[str, Any], str]:
    if isinstance(data, str | Path):
        return read_data(data), str(data)
    expect(data, dict, what, "a dict (name -> value) or the path of a .json/.npz file")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ArgumentError(f"{what}'s names must be strs, got {bad[0]!r}", "key the dict by the data's names")
    return data, "<data>"


def load(path: str | Path) -> Model:
    """Parse and check a .fg file (and its includes)."""
    expect_path(path, "fglang.load's path")
    timings = Timings()
    with recording(timings):
        with phase("parse"):
            program = load_program(path)
        with phase("check"):
            checked = check_decls(*program)
    return Model(checked, timings)


def compile(source: str, name: str = "<string>") -> Model:  # noqa: A001 - the documented public name
    """Parse and check .fg source text."""
    expect(source, str, "fglang.compile's source", "the model's text (a str)",
           "to read a file, use fglang.load(path)" if isinstance(source, Path) else None)
    expect(name, str, "fglang.compile's name", "a str (the name errors quote)")
    timings = Timings()
    with recording(timings), phase("check"):
        checked = check_source(source, name)
    return Model(checked, timings)
