"""The one backend interface: registry, typed options, one fit path, one carried-prior rule.

These tests hold the seam in place: a backend's name appears only inside its
own package, a new backend is one package plus one registry line, every fit
(batched GBP too) checks its options and initial values the same way.
"""

from __future__ import annotations

import ast
import dataclasses
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fglang
from fglang.errors import FgError
from fglang.runtime import backend as backends
from fglang.runtime.gbp.options import GbpOptions
from fglang.runtime.mcmc.options import McmcOptions
from fglang.runtime.vi.options import ViOptions

PKG = Path(fglang.__file__).resolve().parent

LINREG_BATCHED = """
model linreg
data N: int batch
data x[N]: real
data y[N]: real
var w: real ~ normal(0, 10)
var b: real ~ normal(0, 10)
factor obs[n in 0:N]: y[n] ~ normal(w * x[n] + b, 0.5)
"""


def _linreg_data(n: int = 40, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return {"N": n, "x": x.tolist(), "y": (1.5 * x - 0.3 + 0.5 * rng.normal(size=n)).tolist()}


def _string_compares(tree: ast.AST, names: set[str]) -> list[int]:
    """Lines comparing something with a backend's name (==, !=, in)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
            for p in parts:
                consts = [p] if isinstance(p, ast.Constant) else list(p.elts) if isinstance(p, ast.Tuple | ast.Set |
                                                                                              ast.List) else []
                if any(isinstance(c, ast.Constant) and c.value in names for c in consts):
                    lines.append(node.lineno)
    return lines


def test_no_branch_on_a_backend_name_outside_its_package():
    names = set(backends.names())
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).parts
        if rel[0] == "runtime" and len(rel) > 2 and rel[1] in names:
            continue  # a backend may name itself
        for line in _string_compares(ast.parse(path.read_text()), names):
            offenders.append(f"{path.relative_to(PKG)}:{line}")
    assert not offenders, offenders


def test_runtime_never_imports_viz():
    bad = []
    for path in (PKG / "runtime").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            mods = []
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            bad += [f"{path.name}: {m}" for m in mods if m.startswith("fglang.viz") or m == "fglang"]
    assert not bad, bad


def test_every_registered_backend_has_the_interface():
    for name in backends.names():
        b = backends.get(name)
        assert b.name == name
        assert b.Options is backends.options_class(name)
        assert dataclasses.is_dataclass(b.Options) and b.Options.backend == name
        for method in ("validate", "fit", "predict", "advice", "report", "title"):
            assert callable(getattr(b, method)), (name, method)


def test_options_validate_themselves_once():
    assert GbpOptions.parse({"iters": 5.0}).iters == 5  # a whole float is a whole number
    assert GbpOptions.parse({"iters": None}).iters == 1000  # None means the default
    assert GbpOptions.parse({"damping": None}).damping is None  # the default: chosen from the graph
    with pytest.raises(FgError, match="(?s)unknown option for backend 'gbp': damp.*did you mean 'damping'"):
        GbpOptions.parse({"damp": 0.5})
    with pytest.raises(FgError, match=r"damping must be in \[0, 1\), got 1"):
        GbpOptions(damping=1.0)
    with pytest.raises(FgError, match="iters must be a positive whole number"):
        GbpOptions(iters=2.5)
    with pytest.raises(FgError, match="unknown schedule 'random'"):
        GbpOptions(schedule="random")
    with pytest.raises(FgError, match="epochs and shuffle apply to batched fits"):
        GbpOptions(epochs=3)
    with pytest.raises(FgError, match="lr must be > 0"):
        ViOptions(lr=0.0)
    with pytest.raises(FgError, match=r"target_accept must be in \(0, 1\)"):
        McmcOptions(target_accept=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        GbpOptions().iters = 3  # type: ignore[misc]


def test_a_shared_flag_has_one_type():
    flags = backends.flags()
    assert {"gbp", "vi"} <= set(flags["draws"][3])
    assert flags["iters"][0] is int


def test_batched_gbp_fit_checks_init_like_every_fit():
    m = fglang.compile(LINREG_BATCHED, "linreg.fg")
    with pytest.raises(FgError, match=r"init for 'w' has shape \[3\], the var has \[\]"):
        m.fit(_linreg_data(), backend="gbp", batch_size=10, init={"w": [0.0, 1.0, 2.0]})
    with pytest.raises(FgError, match="'v' is not a var"):
        m.fit(_linreg_data(), backend="gbp", batch_size=10, init={"v": 0.0})


def test_batched_gbp_runs_through_the_one_fit_path():
    # assumed-density filtering over two scalar nodes (w, b): close to the one-shot fit
    m = fglang.compile(LINREG_BATCHED, "linreg.fg")
    data = _linreg_data()
    whole = m.fit(data, backend="gbp", dtype="float64")
    batched = m.fit(data, backend="gbp", dtype="float64", batch_size=10)
    assert batched.attrs["batch_size"] == 10 and len(batched.attrs["batches"]) == 4
    assert abs(float(batched.mean("w")) - float(whole.mean("w"))) < 0.05


def test_batch_options_without_a_batch_size_in_the_model():
    m = fglang.compile(LINREG_BATCHED.replace(" batch\n", "\n", 1), "linreg.fg")
    with pytest.raises(FgError, match="needs a size marked 'batch'"):
        m.fit(_linreg_data(), backend="gbp", batch_size=10)
    with pytest.raises(FgError, match="batch_size"):
        m.fit(_linreg_data(), backend="vi", batch_size=10)


@pytest.mark.heavy
def test_carried_prior_one_rule_for_every_backend(tmp_path):
    src = """
model pe
data N: int
data y[N]: real
var mu: real ~ normal(0, 10)
var z[N]: real ~ normal(mu, 1)
factor obs[n in 0:N]: y[n] ~ normal(z[n], 0.5)
"""
    m = fglang.compile(src, "pe.fg")
    first = m.fit({"N": 5, "y": [1.0, 2.0, 1.5, 0.5, 1.2]}, backend="gbp", dtype="float64")
    path = first.save(tmp_path / "first.nc")
    more = {"N": 3, "y": [0.8, 1.1, 1.9]}
    for backend, opts in [("gbp", {"dtype": "float64"}), ("vi", {"steps": 200}), ("mcmc", {"chains": 1,
                                                                                            "warmup": 50,
                                                                                            "samples": 50})]:
        # mu is carried; z (another number of examples) is re-inferred, with a warning
        with pytest.warns(UserWarning, match="not carrying 'z'"):
            post = m.fit(more, backend=backend, prior=path, **opts)
        assert post.mean("z").shape == (3,)


def test_a_new_backend_is_one_package_and_one_registry_line(tmp_path, monkeypatch):
    """A toy backend (the prior mean, no inference) in a package of its own."""
    pkg = tmp_path / "toybackend"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "options.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass
        from typing import ClassVar
        from fglang.runtime.backend import BackendOptions, option

        @dataclass(frozen=True)
        class ToyOptions(BackendOptions):
            backend: ClassVar[str] = "toy"
            value: float = option(0.0, "the value every var takes")

        OPTIONS = ToyOptions
    """))
    (pkg / "backend.py").write_text(textwrap.dedent("""
        import numpy as np
        from fglang.runtime.posterior import Posterior
        from toybackend.options import ToyOptions

        class ToyBackend:
            name = "toy"
            Options = ToyOptions
            summary = "every var at one value"
            markov_chains = False
            def validate(self, bm, options, carried): pass
            def fit(self, bm, options, *, seed, init, carried, progress):
                draws = {k: np.full((1, 4) + v.shape, options.value) for k, v in bm.variables.items()}
                return Posterior(bm.name, "toy", draws)
            def predict(self, bm, posterior, families, options, seed): raise NotImplementedError
            def advice(self, post): return ["a toy"]
            def report(self, post): return []
            def title(self, post): return []

        BACKEND = ToyBackend()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(backends.REGISTRY, "toy", "toybackend")
    backends.get.cache_clear()
    backends.options_class.cache_clear()
    try:
        m = fglang.compile(LINREG_BATCHED, "linreg.fg")
        post = m.fit(_linreg_data(), backend="toy", value=2.0)
        assert float(post.mean("w")) == 2.0
        assert post.warnings() == ["a toy"]
        with pytest.raises(FgError, match="unknown option for backend 'toy': iters"):
            m.fit(_linreg_data(), backend="toy", iters=3)
    finally:
        backends.get.cache_clear()
        backends.options_class.cache_clear()
        sys.modules.pop("toybackend.backend", None)
        sys.modules.pop("toybackend.options", None)
        sys.modules.pop("toybackend", None)


def test_unknown_backend_names_the_registered_ones():
    m = fglang.compile(LINREG_BATCHED, "linreg.fg")
    with pytest.raises(FgError, match="unknown backend 'nuts'") as e:
        m.fit(_linreg_data(), backend="nuts")
    assert "gbp" in str(e.value) and "mcmc" in str(e.value)
    assert "'nuts' is --backend mcmc here" in str(e.value)  # Stan's and NumPyro's name for it
    for other, ours in (("ADVI", "vi"), ("lm", "map"), ("bp", "gbp")):
        with pytest.raises(FgError, match=f"is --backend {ours} here"):
            m.fit(_linreg_data(), backend=other)
    with pytest.raises(FgError, match="did you mean 'mcmc'"):
        m.fit(_linreg_data(), backend="mcm")


def test_a_flag_help_names_its_backends_once():
    flags = backends.flags()
    dtype_help = flags["dtype"][2]
    assert dtype_help.startswith("gbp: ") and "vi, mcmc: auto" in dtype_help and "map: float32" in dtype_help
    assert dtype_help.count("gbp") == 1
    assert flags["guide"][2].startswith("vi: ")
