"""The one backend interface, its typed options, and the registry.

A backend is one package under ``fglang/runtime/`` whose ``backend`` module
defines a class with the ``Backend`` protocol below and whose ``options``
module defines its ``BackendOptions`` dataclass. The registry maps a name to
that package; nothing else in fglang names a backend. The CLI builds its
``fit`` flags and the Python API its keyword options from the registered
option dataclasses, so an option is declared once, with its type, default,
help and validation.

Why the options live in a module of their own: the CLI must know every
flag to parse a command line, and ``fglang check`` must not import JAX
(a second of start-up); a backend's ``options`` module imports neither JAX
nor NumPyro, and its ``backend`` module only does so inside ``fit``.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, get_type_hints

import numpy as np

from fglang.errors import Diagnostic, FgError, did_you_mean

if TYPE_CHECKING:
    from fglang.compiler.bind import BoundModel
    from fglang.runtime.posterior import Posterior

# name -> the package that holds its ``options`` and ``backend`` modules.
# Adding a backend is one package and one line here.
REGISTRY: dict[str, str] = {
    "gbp": "fglang.runtime.gbp",
    "vi": "fglang.runtime.vi",
    "mcmc": "fglang.runtime.mcmc",
    "map": "fglang.runtime.map",
}


MAX_WHOLE = 2**31 - 1  # counts run as int32 inside JAX loops


def option(
    default: Any,
    help: str,  # noqa: A002 - the word typer and argparse use
    *,
    choices: tuple[Any, ...] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    open_minimum: bool = False,
    open_maximum: bool = False,
    whole: bool = False,
    cli: bool = True,
) -> Any:
    """A field of a ``BackendOptions`` dataclass, with what validating it needs.

    ``whole`` asks for a whole number (the message says "a positive whole
    number"); ``cli=False`` keeps an option out of the command line (the
    Python API still takes it)."""
    meta = {
        "help": help,
        "choices": choices,
        "minimum": minimum,
        "maximum": maximum,
        "open_minimum": open_minimum,
        "open_maximum": open_maximum,
        "whole": whole,
        "cli": cli,
    }
    return dataclasses.field(default=default, metadata=meta)


def _fail(msg: str, hint: str | None = None) -> FgError:
    return FgError([Diagnostic(msg, None, hint)])


@dataclass(frozen=True)
class BackendOptions:
    """Base of every backend's options: frozen, validated once when built.

    Subclasses declare fields with ``option(...)`` and may add ``check`` for
    rules that tie fields together. ``None`` given for a field means its
    default (the CLI passes unset flags as ``None``)."""

    backend: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, _coerce(self.backend, f, hints[f.name], value))
        self.check()

    def check(self) -> None:
        """Rules between fields; raise ``FgError``."""

    @classmethod
    def parse(cls, options: Mapping[str, Any] | None) -> BackendOptions:
        """Options from keywords (the Python API) or flags (the CLI): unknown
        names are an error that lists what the backend takes."""
        options = dict(options or {})
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            guess = did_you_mean(unknown[0], names) if len(unknown) == 1 else None
            hint = (f"did you mean '{guess}'? " if guess else "") + f"{cls.backend} takes {', '.join(names)}"
            plural = "s" * (len(unknown) > 1)
            raise _fail(f"unknown option{plural} for backend '{cls.backend}': {', '.join(unknown)}", hint)
        return cls(**{k: v for k, v in options.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> BackendOptions:
        return dataclasses.replace(self, **changes)


def _base_types(hint: Any) -> tuple[type, ...]:
    """The concrete types a field's hint allows (``int | None`` -> (int,))."""
    if isinstance(hint, types.UnionType) or getattr(hint, "__origin__", None) is not None:
        return tuple(t for t in getattr(hint, "__args__", ()) if t is not type(None))
    return (hint,)


def _coerce(backend: str, f: dataclasses.Field, hint: Any, value: Any) -> Any:
    if value is None:
        return None
    meta = f.metadata
    kinds = _base_types(hint)
    name = f.name
    if bool in kinds:
        if isinstance(value, bool):
            return value
        raise _fail(f"option {name} must be true or false, got {value!r}")
    if int in kinds:
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            number = None
        if isinstance(value, bool) or number is None or not np.isfinite(number) or number != int(number):
            raise _fail(f"option {name} must be a positive whole number, got {value!r}")
        value = int(number)
        lo = meta.get("minimum")
        if lo is not None and value < lo:
            what = "a positive whole number" if lo >= 1 else f"a whole number >= {lo:g}"
            raise _fail(f"option {name} must be {what}, got {value!r}")
        hi = meta.get("maximum")
        hi = MAX_WHOLE if hi is None else min(int(hi), MAX_WHOLE)
        if value > hi:
            raise _fail(f"option {name} must be at most {hi}, got {value!r}")
    elif float in kinds:
        try:
            value = float(value)
        except (TypeError, ValueError, OverflowError):
            raise _fail(f"option {name} must be a number, got {value!r}") from None
        if not np.isfinite(value):
            raise _fail(f"option {name} must be a finite number, got {value!r}")
    elif str in kinds:
        if not isinstance(value, str):
            raise _fail(f"option {name} must be a string, got {value!r}")
    if float in kinds and int not in kinds:
        _check_range(name, value, meta)
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise _fail(f"unknown {name} {value!r}", f"{name}: {', '.join(map(str, choices))}")
    return value


def _check_range(name: str, value: float, meta: Mapping[str, Any]) -> None:
    lo, hi = meta.get("minimum"), meta.get("maximum")
    lo_open, hi_open = meta.get("open_minimum"), meta.get("open_maximum")
    if lo is None and hi is None:
        return
    below = lo is not None and (value <= lo if lo_open else value < lo)
    above = hi is not None and (value >= hi if hi_open else value > hi)
    if below or above:
        if lo is not None and hi is not None:
            where = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        elif lo is not None:
            where = f"{'>' if lo_open else '>='} {lo:g}"
        else:
            where = f"{'<' if hi_open else '<='} {hi:g}"
        raise _fail(f"{name} must be {where}, got {value:g}")


class Backend(Protocol):
    """What every backend provides. ``fit`` and ``predict`` are the work;
    ``validate`` rejects, before anything compiles, what the backend cannot
    run (naming the factor and its line); ``advice`` says what a user must
    know before trusting a posterior it wrote (it runs on posteriors read
    back from files, so it must not need JAX); ``report`` and ``title`` are the
lines a summary and a plot add about the fit itself."""

    name: ClassVar[str]
    Options: ClassVar[type[BackendOptions]]
    summary: ClassVar[str]  # one line for --help
    markov_chains: ClassVar[bool]  # draws are MCMC chains: R-hat, ESS and trace plots apply
    # Optional: ``multi_device: ClassVar[bool] = True`` where ``fit`` can run over
    # several devices (``devices=N``); it reads the mesh with
    # ``fglang.runtime.device.current_mesh()``. Without it, devices > 1 is an error.
    # Optional: ``multi_process: ClassVar[bool] = True`` where that fit also runs over the
    # global mesh of several processes (``--coordinator``; runtime/device.join_processes).
    # Optional: ``fit_many(bms, options, *, seed, init, carried, progress) -> list[Posterior]``
    # where many data sets of one shape can run as one compiled batch (runtime/many.py).

    def validate(self, bm: BoundModel, options: BackendOptions) -> None: ...

    def fit(
        self,
        bm: BoundModel,
        options: BackendOptions,
        *,
        seed: int,
        init: dict[str, Any],
        prior: Posterior | None,
        progress: bool,
    ) -> Posterior: ...

    def predict(
        self, bm: BoundModel, posterior: Posterior, families: set[str], options: Mapping[str, Any], seed: int
    ) -> Posterior: ...

    def advice(self, post: Posterior) -> list[str]: ...

    def report(self, post: Posterior) -> list[str]:
        """Lines printed under the summary table (e.g. the divergence count)."""
        ...

    def title(self, post: Posterior) -> list[str]:
        """Short phrases for a plot's title (e.g. "converged in 12 iterations")."""
        ...


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


# what users of other tools call a backend (Stan's and NumPyro's algorithm names,
# GTSAM's optimizers): named in the error, never accepted silently as aliases
OTHER_NAMES = {
    "nuts": "mcmc", "hmc": "mcmc", "sample": "mcmc", "sampling": "mcmc",
    "svi": "vi", "advi": "vi", "variational": "vi", "meanfield": "vi", "fullrank": "vi",
    "optimize": "map", "lm": "map", "laplace": "map", "levenberg-marquardt": "map", "gauss-newton": "map",
    "lbfgs": "map", "bp": "gbp", "loopy": "gbp",
}


def other_name(name: str) -> str | None:
    """The registered backend another tool's algorithm name means (nuts -> mcmc), if any."""
    other = OTHER_NAMES.get(str(name).lower())
    return other if other in REGISTRY else None


def _unknown(name: str) -> FgError:
    other = other_name(name)
    if other:
        hint = f"'{name}' is --backend {other} here; backends: {', '.join(REGISTRY)}"
        return FgError([Diagnostic(f"unknown backend {name!r}", None, hint)])
    guess = did_you_mean(name, list(REGISTRY))
    hint = (f"did you mean '{guess}'? " if guess else "") + f"backends: {', '.join(REGISTRY)}"
    return FgError([Diagnostic(f"unknown backend {name!r}", None, hint)])


@cache
def options_class(name: str) -> type[BackendOptions]:
    """A backend's options dataclass (imports no JAX)."""
    if name not in REGISTRY:
        raise _unknown(name)
    module = importlib.import_module(REGISTRY[name] + ".options")
    return module.OPTIONS


@cache
def get(name: str) -> Backend:
    """The backend called ``name`` (its package's ``backend.BACKEND``)."""
    if name not in REGISTRY:
        raise _unknown(name)
    module = importlib.import_module(REGISTRY[name] + ".backend")
    return module.BACKEND


def flags() -> dict[str, tuple[Any, Any, str, tuple[str, ...]]]:
    """Every option of every backend that the CLI shows:
    name -> (type hint, None, help, backends). The help starts with the
    backends it applies to (``gbp, vi: draws ...``). An option that two
    backends share must have one type in both (it is one flag); where their
    helps differ, each is shown after the backends it is theirs
    (``gbp: float32 | float64; vi, mcmc: auto | float32 | float64``)."""
    out: dict[str, tuple[Any, Any, str, tuple[str, ...]]] = {}
    helps: dict[str, dict[str, list[str]]] = {}
    for b in REGISTRY:
        cls = options_class(b)
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.metadata.get("cli", True):
                continue
            hint = _base_types(hints[f.name])[0]
            if f.name in out:
                old = out[f.name]
                if old[0] is not hint:
                    raise TypeError(f"option {f.name} is {old[0].__name__} in {old[3]} but {hint.__name__} in {b}")
                out[f.name] = (hint, None, old[2], old[3] + (b,))
            else:
                out[f.name] = (hint, None, f.metadata["help"], (b,))
            helps.setdefault(f.name, {}).setdefault(f.metadata["help"], []).append(b)
    for name, by_help in helps.items():
        text = "; ".join(f"{', '.join(owners)}: {h}" for h, owners in by_help.items())
        out[name] = out[name][:2] + (text,) + out[name][3:]
    return out
