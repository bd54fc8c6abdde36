"""The Python surface: ``fglang.load``, ``fglang.compile``, ``Model``.

Thin by design: every step calls the compiler or a runtime backend, so the
CLI and Python users get the same behaviour and the same errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fglang.compiler.bind import BoundModel, bind
from fglang.compiler.check import CheckedModel, check_file, check_source
from fglang.compiler.datafile import read_data
from fglang.compiler.ir import ModelIR
from fglang.compiler.lower import lower
from fglang.compiler.show import show_ir
from fglang.runtime.posterior import Posterior

DataLike = dict[str, Any] | str | Path


def _log_density(name: str, args: dict, value: Any) -> Any:
    """What ``logp(...)`` in a model means: the NumPyro densities that ``~`` uses."""
    from fglang.runtime.numpyro_distributions import log_density

    return log_density(name, args, value)


def _bind(ir: ModelIR, raw: dict[str, Any], file: str) -> BoundModel:
    return bind(ir, raw, file, log_density=_log_density)


class Model:
    """A checked, compiled model: its IR, ready to bind data and fit."""

    def __init__(self, checked: CheckedModel):
        self.checked = checked
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
        return _bind(self.ir, raw, file)

    def fit(
        self,
        data: DataLike,
        backend: str = "gbp",
        *,
        seed: int = 0,
        init: DataLike | None = None,
        prior: Posterior | str | Path | None = None,
        device: str | None = None,
        progress: bool = False,
        **options: Any,
    ) -> Posterior:
        """Fit with ``gbp``, ``vi`` or ``mcmc``; options are the CLI's flags as keywords."""
        from fglang.runtime.fit import fit

        init_values, init_file = _read(init) if init is not None else (None, "init")
        if options.get("batch_size") is not None:
            return self._fit_batched(data, backend, seed, init_values, prior, device, progress, options)
        options.pop("batch_size", None)
        options.pop("epochs", None)
        bound = self.bind(data)
        return fit(
            bound,
            backend,
            seed=seed,
            init=init_values,
            init_file=init_file,
            prior=prior,
            device=device,
            progress=progress,
            options=options,
        )

    def _fit_batched(self, data, backend, seed, init, prior, device, progress, options) -> Posterior:
        """GBP learning by filtering over batches of the model's `batch` size."""
        from fglang.runtime.device import device_context, enable_compilation_cache
        from fglang.runtime.gbp.fit import fit_gbp
        from fglang.runtime.gbp.learn import fit_batched
        from fglang.runtime.posterior import load_posterior

        if backend != "gbp":
            from fglang.errors import Diagnostic, FgError

            raise FgError([Diagnostic("batch_size (learning by filtering) runs with backend gbp", None)])
        raw, file = _read(data)
        opts = dict(options)
        batch_size, epochs = int(opts.pop("batch_size")), int(opts.pop("epochs", 1) or 1)
        shuffle = bool(opts.pop("shuffle", False))
        if isinstance(prior, str | Path):
            prior = load_posterior(prior)
        enable_compilation_cache()

        def fit_one(bm, *, seed, init, prior):
            return fit_gbp(bm, seed=seed, init=init, prior=prior, options=opts, progress=False)

        with device_context(device):
            post = fit_batched(
                self.ir, raw, lambda d: _bind(self.ir, d, file), fit_one, batch_size=batch_size, epochs=epochs,
                seed=seed, init=init, prior=prior, shuffle=shuffle,
            )
        post.attrs.setdefault("source", self.source)
        return post

    def predict(
        self, posterior: Posterior | str | Path, data: DataLike, *, seed: int = 0, **options: Any
    ) -> Posterior:
        """Predict the left sides of factors whose data are absent from ``data``,
        with the posterior's marginals (gbp) or draws (vi, mcmc)."""
        from fglang.runtime.posterior import load_posterior
        from fglang.runtime.predict import predict_gbp, predict_sampling, targets

        post = load_posterior(posterior) if isinstance(posterior, str | Path) else posterior
        raw, file = _read(data)
        filled, _, fams = targets(self.ir, raw)
        bm = _bind(self.ir, filled, file)
        if post.backend == "gbp":
            return predict_gbp(bm, post, fams, options, seed)
        return predict_sampling(bm, post, fams, seed)

    def numpyro_model(self, data: DataLike):
        """A NumPyro model function ``model(data)`` and the data to call it with,
        for use with any NumPyro inference."""
        from fglang.runtime.numpyro_model import NumpyroModel

        nm = NumpyroModel(self.bind(data))
        return nm.model_fn(), nm.data

    def log_density(self, values: dict[str, Any], data: DataLike) -> float:
        """The model's joint log density at ``values`` (var name -> array), as NumPyro computes it."""
        from numpyro.infer.util import log_density

        model, d = self.numpyro_model(data)
        bm = self.bind(data)
        from fglang.runtime.inits import check_init
        from fglang.runtime.numpyro_fit import _init_sites
        from fglang.runtime.numpyro_model import NumpyroModel

        sites = _init_sites(NumpyroModel(bm), check_init(bm, values, "values"))
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


def _read(data: DataLike) -> tuple[dict[str, Any], str]:
    if isinstance(data, str | Path):
        return read_data(data), str(data)
    if not isinstance(data, dict):
        raise TypeError(f"data must be a dict or a path to a .json/.npz file, got {type(data).__name__}")
    return data, "<data>"


def load(path: str | Path) -> Model:
    """Parse and check a .fg file (and its includes)."""
    return Model(check_file(path))


def compile(source: str, name: str = "<string>") -> Model:  # noqa: A001 - the documented public name
    """Parse and check .fg source text."""
    return Model(check_source(source, name))
