"""One ``Posterior`` type for every backend, stored as ArviZ NetCDF.

Sampling backends fill ``draws`` ([chain, draw, *shape] per name); GBP also
fills ``gaussian`` (per-node mean and covariance), which ``mean``/``sd``/``cov``
then report exactly, while ``draws`` (sampled from those marginals) keep
ArviZ and the summary table working the same way for all backends.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fglang.errors import Diagnostic, FgError

AUX_MARK = "__"  # auxiliary sites (sparsity-prior scales, ...) carry this in their name


@dataclass
class GaussianMarginal:
    """Per-node Gaussian marginals of one var: mean [*shape], cov [*node_shape, d, d]."""

    mean: np.ndarray
    cov: np.ndarray
    node_shape: tuple[int, ...]
    value_shape: tuple[int, ...]


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

    # -------------------------------------------------------------- access
    @property
    def names(self) -> list[str]:
        """Reported quantities (vars and lets), auxiliary sites hidden."""
        return [n for n in self.draws if AUX_MARK not in n]

    def _need(self, name: str) -> None:
        if name not in self.draws and name not in self.gaussian:
            from fglang.errors import did_you_mean

            guess = did_you_mean(name, list(self.draws) + list(self.gaussian))
            hint = f"did you mean '{guess}'?" if guess else f"known: {', '.join(self.names)}"
            raise FgError([Diagnostic(f"the posterior has no quantity '{name}'", None, hint)])

    def samples(self, name: str) -> np.ndarray:
        """All draws, chains stacked: [chains * draws, *shape]."""
        self._need(name)
        d = self.draws[name]
        return d.reshape((-1,) + d.shape[2:])

    def mean(self, name: str) -> np.ndarray:
        self._need(name)
        if name in self.gaussian:
            return self.gaussian[name].mean
        return self.samples(name).mean(axis=0)

    def sd(self, name: str) -> np.ndarray:
        self._need(name)
        if name in self.gaussian:
            g = self.gaussian[name]
            var = np.diagonal(g.cov, axis1=-2, axis2=-1)
            return np.sqrt(np.maximum(var, 0)).reshape(g.mean.shape)
        return self.samples(name).std(axis=0, ddof=1) if self.samples(name).shape[0] > 1 else np.zeros(
            self.samples(name).shape[1:]
        )

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

    # -------------------------------------------------------------- tables
    def summary(self, names: list[str] | None = None, max_rows: int = 40) -> list[dict[str, Any]]:
        """Rows of name, mean, sd, 5%, 95% (and r_hat, ess_bulk for several chains)."""
        import arviz as az

        rows: list[dict[str, Any]] = []
        for name in names or self.names:
            d = self.draws[name]
            m, s = self.mean(name), self.sd(name)
            flat = d.reshape(d.shape[0], d.shape[1], -1)
            q5 = np.quantile(flat, 0.05, axis=(0, 1))
            q95 = np.quantile(flat, 0.95, axis=(0, 1))
            rhat = ess = None
            if self.backend == "mcmc" and d.shape[1] >= 4:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    rhat = np.array([float(az.rhat(flat[:, :, k])) for k in range(flat.shape[2])])
                    ess = np.array([float(az.ess(flat[:, :, k], method="bulk")) for k in range(flat.shape[2])])
            mf, sf = np.ravel(m), np.ravel(s)
            for k in range(flat.shape[2]):
                if len(rows) >= max_rows:
                    break
                label = name if flat.shape[2] == 1 and np.ndim(m) == 0 else f"{name}[{_label(np.shape(m), k)}]"
                row = {"name": label, "mean": float(mf[k]), "sd": float(sf[k]), "5%": float(q5[k]), "95%": float(q95[k])}
                if rhat is not None:
                    row["r_hat"] = float(rhat[k])
                    row["ess_bulk"] = float(ess[k])
                rows.append(row)
        return rows

    def warnings(self) -> list[str]:
        """What a user must know before trusting the numbers (r_hat, divergences, convergence)."""
        out = []
        if self.backend == "mcmc":
            div = self.sample_stats.get("diverging")
            if div is not None and div.sum() > 0:
                out.append(
                    f"{int(div.sum())} of {div.size} draws diverged ({100 * div.mean():.1f}%): "
                    "raise target_accept (e.g. 0.95) or reparametrize (non-centered)"
                )
            bad = [r["name"] for r in self.summary(max_rows=10_000) if r.get("r_hat", 1.0) > 1.01]
            if bad:
                out.append(f"r_hat > 1.01 for {', '.join(bad[:8])}{' ...' if len(bad) > 8 else ''}: run more draws")
        if self.backend == "gbp" and not self.attrs.get("converged", True):
            out.append(
                f"GBP did not converge in {self.attrs.get('iterations')} iterations "
                f"(last belief change {self.attrs.get('final_change', float('nan')):.3g}): raise iters or damping"
            )
        return out

    # -------------------------------------------------------------- ArviZ I/O
    def to_arviz(self):
        import arviz as az

        dims = {}
        posterior = {k: v for k, v in self.draws.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = az.from_dict(
                posterior=posterior,
                sample_stats=self.sample_stats or None,
                observed_data=self.observed or None,
                dims=dims,
            )
        attrs = {
            "fglang_model": self.model,
            "fglang_backend": self.backend,
            "fglang_attrs": json.dumps(_jsonable(self.attrs)),
            "fglang_node_shapes": json.dumps({k: list(v) for k, v in self.node_shapes.items()}),
        }
        from fglang import __version__

        attrs["fglang_version"] = __version__
        idata.posterior.attrs.update(attrs)
        if self.gaussian:
            import xarray as xr

            ds = {}
            for name, g in self.gaussian.items():
                ds[f"{name}__mean"] = xr.DataArray(g.mean, dims=[f"{name}__m{i}" for i in range(g.mean.ndim)])
                ds[f"{name}__cov"] = xr.DataArray(g.cov, dims=[f"{name}__c{i}" for i in range(g.cov.ndim)])
            gauss = xr.Dataset(ds)
            gauss.attrs["shapes"] = json.dumps(
                {k: [list(g.node_shape), list(g.value_shape)] for k, g in self.gaussian.items()}
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                idata.add_groups({"gaussian_marginals": gauss})
        return idata

    def save(self, path: str | Path) -> Path:
        """Write NetCDF atomically: a crash or a full disk never leaves half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        idata = self.to_arviz()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                idata.to_netcdf(tmp, engine="h5netcdf")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def plot(self, path: str | Path | None = None, names: list[str] | None = None):
        """Plot the marginals (densities, MCMC traces, mean +-2 sd along an index,
        images of mean and sd for a 2-D grid): write ``path`` (.png/.svg/.pdf)
        and return it, or return the matplotlib Figure when ``path`` is None."""
        from fglang.viz.plot import plot_posterior

        return plot_posterior(self, path, names)

    def __repr__(self) -> str:
        return f"<Posterior {self.model} ({self.backend}): {', '.join(self.names)}>"


def _label(shape, k: int) -> str:
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


def load_posterior(path: str | Path) -> Posterior:
    """Read a posterior file written by ``Posterior.save`` (or ``fglang fit -o``)."""
    import arviz as az

    path = Path(path)
    if not path.exists():
        raise FgError([Diagnostic(f"posterior file not found: {path}", None)])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = az.from_netcdf(path, engine="h5netcdf")
    except Exception as err:  # noqa: BLE001 - any reader failure means "not a posterior file"
        raise FgError([Diagnostic(f"{path} is not a readable NetCDF posterior file ({err})", None)]) from None
    post = idata.posterior
    if "fglang_backend" not in post.attrs:
        raise FgError([Diagnostic(f"{path} was not written by fglang (no fglang attributes)", None)])
    draws = {k: np.asarray(v.values) for k, v in post.data_vars.items()}
    stats = {k: np.asarray(v.values) for k, v in idata.sample_stats.data_vars.items()} if "sample_stats" in idata else {}
    observed = (
        {k: np.asarray(v.values) for k, v in idata.observed_data.data_vars.items()} if "observed_data" in idata else {}
    )
    gaussian = {}
    if "gaussian_marginals" in idata.groups():
        g = idata["gaussian_marginals"]
        shapes = json.loads(g.attrs["shapes"])
        for name, (node, value) in shapes.items():
            gaussian[name] = GaussianMarginal(
                np.asarray(g[f"{name}__mean"].values), np.asarray(g[f"{name}__cov"].values), tuple(node), tuple(value)
            )
    node_shapes = {k: tuple(v) for k, v in json.loads(post.attrs.get("fglang_node_shapes", "{}")).items()}
    return Posterior(
        model=post.attrs["fglang_model"],
        backend=post.attrs["fglang_backend"],
        draws=draws,
        gaussian=gaussian,
        sample_stats=stats,
        observed=observed,
        attrs=json.loads(post.attrs.get("fglang_attrs", "{}")),
        node_shapes=node_shapes,
    )
