"""One ``Posterior`` type for every backend, stored as ArviZ NetCDF.

Sampling backends fill ``draws`` ([chain, draw, *shape] per name); GBP also
fills ``gaussian`` (per-node mean and covariance), which ``mean``/``sd``/``cov``
then report exactly, while ``draws`` (sampled from those marginals) keep
ArviZ and the summary table working the same way for all backends.

A ``let`` of data and constants only has one value, not a distribution: it
is held in ``constants`` (computed once at bind), left out of the draws and
of the default summary (a centered design matrix would hide the
parameters), shown by ``summary(data_lets=True)`` (``fglang summary --all``)
and written to the file's ``constant_data`` group on request
(``save(path, data_lets=True)``, ``fglang fit -o FILE --save-data-lets``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fglang.errors import Diagnostic, FgError
from fglang.io.atomic import write_atomic
from fglang.io.sealed import read_guarded, seal
from fglang.runtime.angles import around_mean
from fglang.runtime.diagnostics import rank_diagnostics

AUX_MARK = "__"  # auxiliary sites (sparsity-prior scales, ...) carry this in their name
SMALL_QUANTITY = 10  # a var or let of at most this many elements comes first in the summary table

_PLOTTER: Callable[..., Any] | None = None


def register_plotter(plot: Callable[..., Any]) -> None:
    """Set what ``Posterior.plot`` calls: ``plot(post, path, names)``."""
    global _PLOTTER
    _PLOTTER = plot


def _backend_of(post: Posterior):
    """The backend that wrote ``post``, or None for a name this fglang does not know."""
    from fglang.runtime import backend

    try:
        return backend.get(post.backend)
    except FgError:
        return None


@dataclass
class GaussianMarginal:
    """Per-node Gaussian marginals of one var: mean [*shape], cov [*node_shape, d, d].

    For a Lie-group var (``group`` names it: ``pose3``) the mean is the stored
    value (``[x, y, z, qx, qy, qz, qw]``) and ``cov`` lives in the tangent space
    at the mean (``d`` the tangent dimension, translation first): the node's
    value is ``mean compose exp(e)`` with ``e ~ N(0, cov)``."""

    mean: np.ndarray
    cov: np.ndarray
    node_shape: tuple[int, ...]
    value_shape: tuple[int, ...]
    group: str | None = None


@dataclass
class Posterior:
    model: str
    backend: str
    draws: dict[str, np.ndarray]
    gaussian: dict[str, GaussianMarginal] = field(default_factory=dict)
    sample_stats: dict[str, np.ndarray] = field(default_factory=dict)
    observed: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    node_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    constants: dict[str, np.ndarray] = field(default_factory=dict)  # data-only lets: one value each
    timings: dict[str, float | int] = field(default_factory=dict, compare=False, repr=False)
    """Where the fit's time went (``runtime/timings.py``: parse ... run, seconds;
    program counts); empty for a posterior read from a file."""

    # -------------------------------------------------------------- access
    @property
    def names(self) -> list[str]:
        """Reported quantities (vars and lets), auxiliary sites hidden."""
        return [n for n in self.draws if AUX_MARK not in n]

    @property
    def report_order(self) -> list[str]:
        """``names`` with the vars first, and within vars and within lets the
        small ones (at most ``SMALL_QUANTITY`` elements) first, each group in
        declaration order: a let of a var (a GP's kernel ``K[N, N]``) would
        otherwise fill the table before the parameters, and a latent series
        ``h_std[T]`` sorted before ``mu``, ``phi`` and ``sigma`` hid them in a
        40-row table."""
        names = self.names
        declared = [n for n in self.node_shapes if n in names]
        lets = [n for n in names if n not in self.node_shapes]

        def small_first(group: list[str]) -> list[str]:
            size = {n: int(np.prod(self.draws[n].shape[2:], dtype=np.int64)) for n in group}
            return [n for n in group if size[n] <= SMALL_QUANTITY] + [n for n in group if size[n] > SMALL_QUANTITY]

        return small_first(declared) + small_first(lets)

    def rows_in(self, names: list[str] | None = None) -> int:
        """How many rows ``summary(names)`` has with no row limit."""
        sizes = {n: int(np.prod(d.shape[2:], dtype=int)) for n, d in self.draws.items()}
        sizes.update({n: int(np.size(v)) for n, v in self.constants.items()})
        return sum(sizes.get(n, 0) for n in (names or self.names))

    @property
    def data_lets(self) -> list[str]:
        """The lets of data only the fit computed (their values may not be in a file read back)."""
        return list(self.attrs.get("data_lets", self.constants))

    def _need(self, name: str) -> None:
        if name not in self.draws and name not in self.gaussian and name not in self.constants:
            from fglang.errors import did_you_mean

            if name in self.data_lets:
                raise FgError([Diagnostic(
                    f"'{name}' is a let of data only, and this posterior file does not hold its value", None,
                    "write it with the fit: fglang fit ... -o FILE --save-data-lets (or save(path, data_lets=True))",
                )])
            guess = did_you_mean(name, list(self.draws) + list(self.gaussian) + list(self.constants))
            hint = f"did you mean '{guess}'?" if guess else f"known: {', '.join(self.names)}"
            raise FgError([Diagnostic(f"the posterior has no quantity '{name}'", None, hint)])

    def samples(self, name: str) -> np.ndarray:
        """All draws, chains stacked: [chains * draws, *shape] (a data-only let: its one value, [1, *shape])."""
        self._need(name)
        if name in self.constants:
            return self.constants[name][None]
        d = self.draws[name]
        return d.reshape((d.shape[0] * d.shape[1],) + d.shape[2:])  # not -1: a var may have no elements

    def mean(self, name: str) -> np.ndarray:
        self._need(name)
        if name in self.constants:
            return self.constants[name]
        if name in self.gaussian:
            return self.gaussian[name].mean
        return self.samples(name).mean(axis=0)

    def sd(self, name: str) -> np.ndarray:
        self._need(name)
        if name in self.constants:
            return np.zeros_like(self.constants[name])
        if name in self.gaussian and self.gaussian[name].group is None:
            g = self.gaussian[name]
            var = np.diagonal(g.cov, axis1=-2, axis2=-1)
            return np.sqrt(np.maximum(var, 0)).reshape(g.mean.shape)
        s = self.samples(name)
        if name in self.gaussian:  # a group var: its angles' spread about the mean, on the circle (angles.py)
            g = self.gaussian[name]
            s = around_mean(s, g.mean, g.group)
        return s.std(axis=0, ddof=1) if s.shape[0] > 1 else np.zeros(s.shape[1:])

    def cov(self, name: str) -> np.ndarray:
        """Per-node covariance [*node_shape, d, d] (exact for GBP, estimated from draws otherwise)."""
        self._need(name)
        if name in self.gaussian:
            return self.gaussian[name].cov
        s = self.samples(name)
        node_shape = self.node_shapes.get(name, ())
        n = int(np.prod(node_shape, dtype=np.int64))
        flat = s.reshape(s.shape[0], n, -1)
        centered = flat - flat.mean(axis=0)
        cov = np.einsum("snd,sne->nde", centered, centered) / max(s.shape[0] - 1, 1)
        return cov.reshape(node_shape + cov.shape[-2:])

    def drop_chains(self, chains: list[int]) -> Posterior:
        """The same posterior without the given chains (draws and sample
        statistics): what the warning about chains that disagree offers when
        one chain sits in a mode the others do not visit."""
        n = next(iter(self.draws.values())).shape[0] if self.draws else 0
        bad = [c for c in chains if not isinstance(c, int | np.integer) or not 0 <= c < n]
        if bad or len(set(chains)) >= n:
            what = f"chain(s) {bad} are not among 0..{n - 1}" if bad else "that would drop every chain"
            raise FgError([Diagnostic(f"drop_chains: {what}", None, f"pass some of the chains 0..{n - 1}")])
        keep = np.setdiff1d(np.arange(n), np.asarray(chains, np.int64))

        def take(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {k: np.asarray(a)[keep] for k, a in d.items()}

        attrs = dict(self.attrs, dropped_chains=sorted(int(c) for c in chains))
        return Posterior(self.model, self.backend, take(self.draws), dict(self.gaussian), take(self.sample_stats),
                         dict(self.observed), attrs, dict(self.node_shapes), dict(self.constants))

    # -------------------------------------------------------------- tables
    def summary(
        self, names: list[str] | None = None, max_rows: int = 40, data_lets: bool = False
    ) -> list[dict[str, Any]]:
        """Rows of name, mean, sd, 5%, 95% (and r_hat, ess_bulk for MCMC).

        r_hat is the rank-normalized split R-hat and ess_bulk the bulk ESS of
        Vehtari et al. (2021), as ArviZ computes them (same numbers), vectorized
        over all elements of a var and without importing ArviZ. ``data_lets``:
        also the lets of data only, after everything else (sd 0)."""
        rows: list[dict[str, Any]] = []
        chains = getattr(_backend_of(self), "markov_chains", False)
        names = list(names or self.report_order) + (list(self.constants) if data_lets and not names else [])
        for name in names:
            if len(rows) >= max_rows:
                break
            if name in self.constants:
                rows.extend(_constant_rows(name, self.constants[name], max_rows - len(rows)))
                continue
            d = self.draws[name]
            if d.size == 0:  # a var of size zero has no rows
                continue
            m, s = self.mean(name), self.sd(name)
            if name in self.gaussian:  # angles' quantiles around the mean, not across the cut at pi
                d = around_mean(d, m, self.gaussian[name].group)
            # only the elements the table will show: a 256^2 image's quantiles over its
            # 200 draws were 0.4 s for the 40 rows printed
            flat = d.reshape(d.shape[0], d.shape[1], -1)[:, :, : max_rows - len(rows)]
            q5 = np.quantile(flat, 0.05, axis=(0, 1))
            q95 = np.quantile(flat, 0.95, axis=(0, 1))
            rhat = ess = None
            if chains and d.shape[1] >= 4:
                rhat, ess = rank_diagnostics(flat)
            mf, sf = np.ravel(m), np.ravel(s)
            for k in range(flat.shape[2]):
                if len(rows) >= max_rows:
                    break
                label = name if flat.shape[2] == 1 and np.ndim(m) == 0 else f"{name}[{element_label(np.shape(m), k)}]"
                row = {"name": label, "mean": float(mf[k]), "sd": float(sf[k])}
                row.update({"5%": float(q5[k]), "95%": float(q95[k])})
                if rhat is not None:
                    if d.shape[0] > 1:  # split R-hat needs two chains (ArviZ's rule); one chain has only its ESS
                        row["r_hat"] = float(rhat[k])
                    row["ess_bulk"] = float(ess[k])
                rows.append(row)
        return rows

    def warnings(self) -> list[str]:
        """What a user must know before trusting the numbers (the backend's advice:
        divergences, R-hat, convergence)."""
        b = _backend_of(self)
        return b.advice(self) if b is not None else []

    def report(self) -> list[str]:
        """Lines about the fit itself to print under the summary table."""
        b = _backend_of(self)
        return b.report(self) if b is not None else []

    # -------------------------------------------------------------- ArviZ I/O
    def to_arviz(self, data_lets: bool = False):
        """ArviZ InferenceData; ``data_lets``: with the data-only lets' values in ``constant_data``."""
        from fglang.io.inference_data import to_xarray

        az = import_arviz()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gaussian_marginals is a group of fglang's, not one ArviZ names
            return az.InferenceData(**{k: to_xarray(g) for k, g in self._groups(data_lets).items()})

    def _groups(self, data_lets: bool) -> dict[str, Any]:
        """The InferenceData groups (`io.inference_data.Group`s) as ``az.from_dict``
        builds them, and fglang's ``gaussian_marginals``."""
        from fglang.io.inference_data import arrays_group, data_group, draws_group
        from fglang.version import __version__

        groups = {"posterior": draws_group(self.draws)}
        if self.sample_stats:
            groups["sample_stats"] = draws_group(self.sample_stats)
        if self.observed:
            groups["observed_data"] = data_group(self.observed)
        if data_lets and self.constants:
            groups["constant_data"] = data_group(dict(self.constants))
        groups["posterior"].attrs.update({
            "fglang_model": self.model,
            "fglang_backend": self.backend,
            "fglang_attrs": json.dumps(_jsonable(self.attrs)),
            "fglang_node_shapes": json.dumps({k: list(v) for k, v in self.node_shapes.items()}),
            "fglang_version": __version__,
        })
        if self.gaussian:
            arrays = {}
            for name, g in self.gaussian.items():
                arrays[f"{name}__mean"] = ([f"{name}__m{i}" for i in range(g.mean.ndim)], g.mean)
                arrays[f"{name}__cov"] = ([f"{name}__c{i}" for i in range(g.cov.ndim)], g.cov)
            shapes = {k: [list(g.node_shape), list(g.value_shape)] + ([g.group] if g.group else [])
                      for k, g in self.gaussian.items()}
            groups["gaussian_marginals"] = arrays_group(arrays, {"shapes": json.dumps(shapes)})
        return groups

    def save(self, path: str | Path, data_lets: bool = False) -> Path:
        """Write NetCDF atomically: a crash or a full disk never leaves half a file.
        ``data_lets``: also the values of the lets of data only (``constant_data``).
        The file is ArviZ's (``arviz.from_netcdf`` reads it), written without
        importing ArviZ (`io.inference_data`)."""
        from fglang.io.inference_data import write_groups

        groups = self._groups(data_lets)

        def write(tmp: str) -> None:
            write_groups(tmp, groups)
            seal(tmp)  # io/sealed.py: a damaged copy is known before HDF5 reads it

        return write_atomic(path, write)

    def plot(self, path: str | Path | None = None, names: list[str] | None = None):
        """Plot the marginals (densities, MCMC traces, mean +-2 sd along an index,
        images of mean and sd for a 2-D grid): write ``path`` (.png/.svg/.pdf)
        and return it, or return the matplotlib Figure when ``path`` is None.

        The pictures live above the runtime (``fglang.viz``), which registers
        its plotter here when the package is imported (``fglang/__init__``)."""
        if _PLOTTER is None:
            raise FgError([Diagnostic("no plotter is registered: import fglang first", None)])
        return _PLOTTER(self, path, names)

    def __repr__(self) -> str:
        return f"<Posterior {self.model} ({self.backend}): {', '.join(self.names)}>"


def _constant_rows(name: str, value: np.ndarray, room: int) -> list[dict[str, Any]]:
    """Summary rows of a data-only let: its value, sd 0."""
    flat = np.ravel(value)
    rows = []
    for k in range(min(flat.size, room)):
        label = name if np.ndim(value) == 0 else f"{name}[{element_label(np.shape(value), k)}]"
        v = float(flat[k])
        rows.append({"name": label, "mean": v, "sd": 0.0, "5%": v, "95%": v})
    return rows


def element_label(shape, k: int) -> str:
    return ", ".join(str(i) for i in np.unravel_index(k, shape)) if shape else "0"


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def _damaged(path: Path, what: str) -> FgError:
    return FgError(
        [Diagnostic(f"{path} is a damaged fglang posterior file: {what}", None, "write it again with fglang fit -o")]
    )


def _json_attr(path: Path, attrs, key: str, default: str, kind: type) -> Any:
    try:
        value = json.loads(attrs.get(key, default))
    except (TypeError, ValueError):
        raise _damaged(path, f"its attribute {key} is not valid JSON") from None
    if not isinstance(value, kind):
        raise _damaged(path, f"its attribute {key} is not a JSON {kind.__name__}")
    return value


def _shape(path: Path, x: Any, what: str) -> tuple[int, ...]:
    if not isinstance(x, list) or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in x):
        raise _damaged(path, f"{what} is not a list of sizes")
    return tuple(x)


def _gaussian(path: Path, groups: dict[str, Any]) -> dict[str, GaussianMarginal]:
    if "gaussian_marginals" not in groups:
        return {}
    g = groups["gaussian_marginals"]
    shapes = _json_attr(path, g.attrs, "shapes", "null", dict)
    out = {}
    for name, entry in shapes.items():
        group = entry[2] if isinstance(entry, list) and len(entry) == 3 else None
        if group is not None:
            from fglang.compiler.groups import GROUPS

            if group not in GROUPS:
                raise _damaged(path, f"'{name}' in gaussian_marginals names an unknown group {group!r}")
            entry = entry[:2]
        if not isinstance(entry, list) or len(entry) != 2:
            raise _damaged(path, f"the shapes of '{name}' in gaussian_marginals are not [node shape, value shape]")
        node = _shape(path, entry[0], f"the node shape of '{name}'")
        value = _shape(path, entry[1], f"the value shape of '{name}'")
        for part in ("mean", "cov"):
            if f"{name}__{part}" not in g.variables:
                raise _damaged(path, f"gaussian_marginals has no '{name}__{part}'")
        mean, cov = g.values(f"{name}__mean"), g.values(f"{name}__cov")
        d = int(np.prod(value, dtype=np.int64)) if value else 1
        if group is not None:
            d = GROUPS[group].tangent
        if mean.shape != node + value or cov.shape != node + (d, d):
            raise _damaged(
                path, f"'{name}' has mean {list(mean.shape)} and cov {list(cov.shape)}, which do not fit node shape "
                f"{list(node)} and value shape {list(value)}"
            )
        out[name] = GaussianMarginal(mean, cov, node, value, group)
    return out


def load_posterior(path: str | Path) -> Posterior:
    """Read a posterior file written by ``Posterior.save`` (or ``fglang fit -o``);
    a file that is not one, or a damaged one, is an ``FgError`` that says what
    is missing. Never hangs: a file whose seal does not vouch for it is read
    in a child process with a time limit (``fglang/io/sealed.py``)."""
    from fglang.runtime.arguments import expect_path

    expect_path(path, "load_posterior's path")
    path = Path(path)
    if not path.exists():
        raise FgError([Diagnostic(f"posterior file not found: {path}", None)])
    if not path.is_file():
        raise FgError([Diagnostic(f"{path} is not a file", None)])
    return read_guarded(path, _read_posterior, "fglang posterior file")


def import_arviz():
    """ArviZ, imported without its own import-time notice: 0.23 warns on
    import that a 1.0 refactor is coming (a FutureWarning about ArviZ, not
    about the user's fit), which the CLI would print as a ``warning:`` line
    under every written posterior."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"arviz(\.|$)")
        warnings.filterwarnings("ignore", message=r"ArviZ is undergoing a major refactor")
        import arviz as az
    return az


def _read_posterior(path: Path) -> Posterior:
    from fglang.io.inference_data import read_groups

    try:
        groups = read_groups(path)
    except Exception as err:  # noqa: BLE001 - any reader failure means "not a posterior file"
        raise FgError([Diagnostic(f"{path} is not a readable NetCDF posterior file ({err})", None)]) from None
    if "posterior" not in groups:
        raise FgError([Diagnostic(f"{path} was not written by fglang (it has no posterior group)", None)])
    post = groups["posterior"]
    if "fglang_backend" not in post.attrs:
        raise FgError([Diagnostic(f"{path} was not written by fglang (no fglang attributes)", None)])
    for key in ("fglang_model", "fglang_backend"):
        if not isinstance(post.attrs.get(key), str):
            raise _damaged(path, f"its attribute {key} is missing or not text")
    try:
        draws = {k: v for k, (_, v) in post.variables.items()}
        stats = (
            {k: v for k, (_, v) in groups["sample_stats"].variables.items()}
            if "sample_stats" in groups else {}
        )
        observed = (
            {k: v for k, (_, v) in groups["observed_data"].variables.items()}
            if "observed_data" in groups else {}
        )
        constants = (
            {k: np.asarray(v, np.float64) for k, (_, v) in groups["constant_data"].variables.items()}
            if "constant_data" in groups else {}
        )
        gaussian = _gaussian(path, groups)
    except FgError:
        raise
    except Exception as err:  # noqa: BLE001 - a variable whose data cannot be read
        raise _damaged(path, f"a variable cannot be read ({err})") from None
    for k, d in stats.items():
        if not (np.issubdtype(d.dtype, np.number) or d.dtype == bool):
            raise _damaged(path, f"its sample statistic '{k}' is not numbers")
    for k, d in draws.items():
        if d.ndim < 2 or d.shape[0] < 1 or d.shape[1] < 1 or not np.issubdtype(d.dtype, np.number):
            raise _damaged(path, f"the draws of '{k}' are not numbers shaped [chain, draw, ...]")
    node_shapes = {
        k: _shape(path, v, f"the node shape of '{k}'")
        for k, v in _json_attr(path, post.attrs, "fglang_node_shapes", "{}", dict).items()
    }
    if not draws:
        raise _damaged(path, "it holds no draws")
    return Posterior(
        model=post.attrs["fglang_model"],
        backend=post.attrs["fglang_backend"],
        draws=draws,
        gaussian=gaussian,
        sample_stats=stats,
        observed=observed,
        attrs=_json_attr(path, post.attrs, "fglang_attrs", "{}", dict),
        node_shapes=node_shapes,
        constants=constants,
    )
