"""Posterior plots with matplotlib (Agg, no display needed).

One figure, a panel (or two) per quantity, chosen by its shape:

* a scalar: its marginal density (the exact Gaussian curve for GBP; a
  histogram with a KDE for VI and MCMC), and for MCMC a trace per chain;
* a quantity indexed along one axis (a chain of nodes, a vector value): its
  mean with a band of +-2 sd along the index (the Kalman smoother's picture),
  one line per component for small vector values (a pose's x, y, theta);
* a var on a 2-D node grid, or anything larger: images of the mean and of
  the sd (the denoised image and where it is uncertain).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fglang.errors import Diagnostic, FgError
from fglang.io.atomic import write_atomic

if TYPE_CHECKING:
    from fglang.runtime.posterior import Posterior

PLOT_FORMATS = (".png", ".svg", ".pdf")
MAX_QUANTITIES = 16  # the rest are named in a note; pass names= to pick
_MAX_COMPONENTS = 6  # vector values up to this size get one line each; larger ones an image


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is in the test and plot extras
        raise FgError(
            [Diagnostic("plotting a posterior needs matplotlib", None, "pip install 'fglang[plot]'")]
        ) from None
    return Figure, FigureCanvasAgg


def _kind(post: Posterior, name: str) -> str:
    shape = post.draws[name].shape[2:] if name in post.draws else np.shape(post.mean(name))
    node_shape = post.node_shapes.get(name)
    if int(np.prod(shape, dtype=np.int64)) == 1:
        return "scalar"
    if node_shape is not None and len(node_shape) == 2 and tuple(shape) == tuple(node_shape):
        return "image"
    if len(shape) == 1:
        return "band"
    if len(shape) == 2 and shape[1] <= _MAX_COMPONENTS:
        return "bands"
    return "image"


def _observations(post: Posterior) -> dict[str, str]:
    """var -> the data it is observed through (found by the fit from the model
    and stored with the posterior), where the shapes agree; empty when the
    posterior file has no such record."""
    out: dict[str, str] = {}
    found = post.attrs.get("observations")
    for var, d in (found.items() if isinstance(found, dict) else ()):
        if not (isinstance(d, str) and d in post.observed and var in post.draws):
            continue
        if np.shape(post.observed[d]) == np.shape(post.mean(var)):
            out[var] = d
    return out


def _backend(post: Posterior):
    from fglang.runtime import backend

    try:
        return backend.get(post.backend)
    except FgError:  # a posterior written by a backend this fglang does not know
        return None


def _panels(post: Posterior, names: list[str], observed: dict[str, str]) -> list[tuple[str, str, int]]:
    """(name, panel kind, width in sixths of a row) in drawing order."""
    out = []
    for name in names:
        kind = _kind(post, name)
        if kind == "scalar":
            out.append((name, "density", 3))
            if (b := _backend(post)) is not None and b.markov_chains:
                out.append((name, "trace", 3))
        elif kind in ("band", "bands"):
            out.append((name, kind, 6))
        elif name in observed and kind == "image":
            out += [(name, "image_data", 2), (name, "image_mean", 2), (name, "image_sd", 2)]
        else:
            out += [(name, "image_mean", 3), (name, "image_sd", 3)]
    return out


def _layout(panels) -> list[list[tuple[str, str, int]]]:
    """Pack panels into rows six units wide; a panel that does not fit starts a row."""
    rows: list[list] = []
    row: list = []
    used = 0
    for p in panels:
        if used + p[2] > 6:
            rows.append(row)
            row, used = [], 0
        row.append(p)
        used += p[2]
    if row:
        rows.append(row)
    return rows


def _density(ax, post: Posterior, name: str) -> None:
    draws = np.ravel(post.draws[name]) if name in post.draws else np.array([])
    if name in post.gaussian:
        m, s = float(np.ravel(post.mean(name))[0]), float(np.ravel(post.sd(name))[0])
        s = max(s, 1e-12)
        x = np.linspace(m - 4 * s, m + 4 * s, 400)
        ax.plot(x, np.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi)), color="C0", lw=2)
        ax.fill_between(x, 0, np.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi)), alpha=0.15)
        ax.set_title(f"{name}: exact Gaussian marginal (mean {m:.3g}, sd {s:.3g})", fontsize=10)
    else:
        ax.hist(draws, bins=min(40, max(10, draws.size // 10)), density=True, color="C0", alpha=0.35)
        if draws.size > 2 and np.std(draws) > 0:
            from scipy.stats import gaussian_kde

            try:
                kde = gaussian_kde(draws)
                x = np.linspace(draws.min(), draws.max(), 300)
                ax.plot(x, kde(x), color="C0", lw=2)
            except np.linalg.LinAlgError:  # degenerate draws: the histogram alone
                pass
        m, s = float(np.mean(draws)), float(np.std(draws))
        ax.set_title(f"{name}: posterior density (mean {m:.3g}, sd {s:.3g})", fontsize=10)
    ax.set_yticks([])
    ax.set_xlabel(name)


def _trace(ax, post: Posterior, name: str) -> None:
    d = post.draws[name]
    d = d.reshape(d.shape[0], d.shape[1])
    for c in range(d.shape[0]):
        ax.plot(d[c], lw=0.7, alpha=0.8, label=f"chain {c}")
    ax.set_title(f"{name}: trace ({d.shape[0]} chain{'s' * (d.shape[0] != 1)})", fontsize=10)
    ax.set_xlabel("draw")
    if d.shape[0] <= 6:
        ax.legend(fontsize=7, loc="upper right", ncol=d.shape[0])


def _band(ax, post: Posterior, name: str, components: bool, data: str | None) -> None:
    mean, sd = np.asarray(post.mean(name), float), np.asarray(post.sd(name), float)
    if not components:
        mean, sd = mean.reshape(-1, 1), sd.reshape(-1, 1)
    n, k = mean.shape
    x = np.arange(n)
    marker = "o" if n <= 30 else None
    for c in range(k):
        label = f"{name}[:, {c}]" if components else f"{name} mean"
        ax.plot(x, mean[:, c], color=f"C{c}", lw=1.6, marker=marker, ms=3, label=label)
        ax.fill_between(
            x,
            mean[:, c] - 2 * sd[:, c],
            mean[:, c] + 2 * sd[:, c],
            color=f"C{c}",
            alpha=0.2,
            label="\u00b12 sd" if c == 0 else None,
        )
    if data is not None:
        obs = np.asarray(post.observed[data], float).reshape(n, k)
        for c in range(k):
            ax.plot(x, obs[:, c], ".", color="0.25", ms=4, label=f"data {data}" if c == 0 else None)
    ax.set_title(f"{name}: posterior mean \u00b1 2 sd along the index", fontsize=10)
    ax.set_xlabel("index")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="best", ncol=min(k + 1, 4))


def _image(fig, ax, post: Posterior, name: str, what: str, data: str | None, limits) -> None:
    if what == "data":
        arr, title = np.asarray(post.observed[data], float), f"data {data}"
    else:
        arr = np.asarray(post.mean(name) if what == "mean" else post.sd(name), float)
        title = f"{name}: posterior {what}"
    grid = arr.ndim == 2 and len(post.node_shapes.get(name, ())) == 2
    if arr.ndim != 2:
        arr = arr.reshape(arr.shape[0], -1)
    vmin, vmax = limits if what != "sd" else (None, None)
    im = ax.imshow(
        arr,
        cmap="magma" if what == "sd" else "viridis",
        interpolation="nearest",
        aspect="equal" if grid else "auto",
        vmin=vmin,
        vmax=vmax,
    )
    fig.colorbar(im, ax=ax, shrink=0.85)
    ax.set_title(f"{title} {list(arr.shape)}", fontsize=10)


def _title(post: Posterior) -> str:
    b = _backend(post)
    return ", ".join([f"{post.model}: posterior ({post.backend})"] + (b.title(post) if b is not None else []))


def plot_posterior(post: Posterior, path: str | Path | None = None, names: list[str] | None = None):
    """Plot ``post``'s marginals; write ``path`` (.png, .svg or .pdf) atomically
    and return it, or return the matplotlib ``Figure`` when ``path`` is None."""
    Figure, FigureCanvasAgg = _matplotlib()
    if path is not None:
        path = Path(path)
        ext = path.suffix.lower()
        if ext not in PLOT_FORMATS:
            raise FgError(
                [Diagnostic(f"cannot plot to '{ext or path.name}'", None, f"use one of {', '.join(PLOT_FORMATS)}")]
            )
    if names is None:
        names = list(post.names)
    else:
        names = [names] if isinstance(names, str) else list(names)
        for n in names:
            post._need(n)
    if not names:
        raise FgError([Diagnostic(f"posterior of {post.model} has nothing to plot", None)])
    left_out = names[MAX_QUANTITIES:]
    observed = _observations(post)
    rows = _layout(_panels(post, names[:MAX_QUANTITIES], observed))
    heights = [3.4 if any(p[1].startswith("image") for p in r) else 2.6 for r in rows]
    fig = Figure(figsize=(11, sum(heights) + 0.9), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(len(rows), 6, height_ratios=heights)
    for r, row in enumerate(rows):
        col = 0
        for name, kind, width in row:
            ax = fig.add_subplot(grid[r, col : col + width])
            col += width
            if kind == "density":
                _density(ax, post, name)
            elif kind == "trace":
                _trace(ax, post, name)
            elif kind in ("band", "bands"):
                _band(ax, post, name, kind == "bands", observed.get(name))
            else:
                data = observed.get(name)
                # the data and the mean share one colour scale, so that the smoothing shows
                limits = (None, None)
                if data is not None:
                    both = np.concatenate([np.ravel(post.observed[data]), np.ravel(post.mean(name))])
                    limits = (float(both.min()), float(both.max()))
                _image(fig, ax, post, name, kind.removeprefix("image_"), data, limits)
    title = _title(post)
    if left_out:
        title += f"\n(not shown: {', '.join(left_out[:8])}{' ...' if len(left_out) > 8 else ''}; pass names=)"
    fig.suptitle(title, fontsize=12)
    if path is None:
        return fig
    fmt = path.suffix[1:].lower()
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=110))
