"""Pictures: the factor graph (Graphviz) and posterior plots (matplotlib),
through the Python API and the CLI (typer's in-process runner)."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import fglang
from fglang.cli import app
from fglang.errors import FgError
from fglang.viz import factor_graph, plot_posterior, render

pytest.importorskip("graphviz")
pytest.importorskip("matplotlib")

from conftest import spec_data  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MODELS = sorted(EXAMPLES.glob("*.fg"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
runner = CliRunner()


def svg_texts(path: Path) -> str:
    """All visible text of an SVG (parsed: it must be well-formed XML with an <svg> root)."""
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    return "\n".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))


def assert_png(path: Path, min_size: int = 2000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_size


def data_for(model: fglang.Model) -> dict:
    d = spec_data()
    found = d.get(model.name, d["pose_graph_2d"] if model.name == "m3500" else None)
    if found is None:
        path = EXAMPLES / "data" / f"{model.name}.json"
        if not path.exists():
            pytest.skip(f"no small data for example {model.name}")
        found = json.loads(path.read_text())
    return found


def instance_nodes(source: str) -> tuple[list[str], list[str]]:
    """Node statements (not edges) of the instance view: (var nodes, factor nodes)."""
    nodes = [m.group(1) for m in re.finditer(r'^\s*"?(i\.(?:var|fac)\.[^"\s]+)"?\s*\[', source, re.M)]
    return [n for n in nodes if n.startswith("i.var.")], [n for n in nodes if n.startswith("i.fac.")]


def shown_family_name(f) -> str:
    return f"prior on {f.prior_of}" if f.prior_of else f.name


# ---------------------------------------------------------------- factor graph
@needs_dot
@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_family_view_svg_and_png(path, tmp_path):
    m = fglang.load(path)
    g = m.graph()
    svg = render(g, tmp_path / "g.svg")
    text = svg_texts(svg)
    for v in m.ir.variables:
        assert v in text
    for f in m.ir.families.values():
        assert shown_family_name(f) in text
    for let in m.ir.derived:
        assert let in text
    assert_png(render(g, tmp_path / "g.png"))
    assert "i.var." not in g.source  # no data: no instance view


@needs_dot
@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_family_view_with_data_shows_sizes(path, tmp_path):
    m = fglang.load(path)
    data = data_for(m)
    bound = m.bind(data)
    g = factor_graph(m.ir, bound)
    text = svg_texts(render(g, tmp_path / "g.svg"))
    for f in bound.families.values():
        n = f.n_members
        assert f"{n} factor{'s' * (n != 1)}" in text
    sizes = [f"{k}={v}" for k, v in bound.sizes.items()]
    assert any(s in text for s in sizes), "plates and shapes carry the bound sizes"
    total = sum(v.n_nodes for v in bound.variables.values()) + sum(f.n_members for f in bound.families.values())
    assert ("i.var." in g.source) == (total <= 200)


def test_dot_source_written(tmp_path):
    g = fglang.load(EXAMPLES / "random_walk.fg").graph()
    out = render(g, tmp_path / "sub" / "g.dot")
    text = out.read_text()
    assert text.startswith("graph random_walk {")
    assert "label=<<B>x</B>" in text and "cluster_plate" in text
    assert [p.name for p in out.parent.iterdir()] == ["g.dot"]  # no temporary file left behind


@pytest.mark.parametrize("T", [5, 8])
def test_instance_view_random_walk_counts(T):
    m = fglang.load(EXAMPLES / "random_walk.fg")
    g = m.graph({"T": T, "y": np.zeros(T)}, instances=True)
    var_nodes, fac_nodes = instance_nodes(g.source)
    assert len(var_nodes) == T
    assert len(fac_nodes) == 1 + (T - 1) + T
    edges = re.findall(r"^\s*\"?i\.\S+\"? -- \"?i\.\S+", g.source, re.M)
    assert len(edges) == 1 + 2 * (T - 1) + T  # init reads x[0]; step x[t], x[t-1]; obs x[t]
    assert f'label="x[{T - 1}]"' in g.source


def test_instance_view_grid_and_defaults():
    m = fglang.load(EXAMPLES / "denoise_normal.fg")
    H, W = 3, 4
    g = m.graph({"H": H, "W": W, "img": np.zeros((H, W))})  # small: drawn by default
    var_nodes, fac_nodes = instance_nodes(g.source)
    assert len(var_nodes) == H * W
    assert len(fac_nodes) == H * W + H * (W - 1) + (H - 1) * W
    assert 'label="x[2, 3]"' in g.source
    assert "i.var." not in m.graph({"H": H, "W": W, "img": np.zeros((H, W))}, instances=False).source
    big = {"H": 10, "W": 10, "img": np.zeros((10, 10))}  # 100 nodes + 280 factors > 200
    assert "i.var." not in m.graph(big).source
    assert len(instance_nodes(m.graph(big, instances=True).source)[0]) == 100


def test_instance_view_needs_data_and_a_sane_size():
    m = fglang.load(EXAMPLES / "random_walk.fg")
    with pytest.raises(FgError, match="needs data"):
        m.graph(instances=True)
    with pytest.raises(FgError, match="at most"):
        m.graph({"T": 3000, "y": np.zeros(3000)}, instances=True)


def test_eight_schools_instance_view_reads_scalars_and_let():
    m = fglang.load(EXAMPLES / "eight_schools.fg")
    g = m.graph(data_for(m))
    var_nodes, fac_nodes = instance_nodes(g.source)
    assert len(var_nodes) == 2 + 8 and len(fac_nodes) == 2 + 8 + 8
    assert '"i.var.mu.0"' in g.source and 'label="theta_raw[7]"' in g.source
    assert "let.theta" in g.source  # the let, as a diamond in the family view
    assert "shape=diamond" in g.source


BOUNDS_MODEL = """
model bounded
data N: int
data lo: real
data y[N]: real
var a: positive ~ exponential(1)
var b: real ~ normal(0, 1)
let s = a * 2 + b
var x: real(lower=a) ~ normal(0, 1)
var z: real(lower=s, upper=lo + sum[i in 0:N](y[i])) ~ normal(0, 1)
var w[N]: real(offset=b, multiplier=a) ~ normal(0, 1)
var q: real(lower=-1, upper=1) ~ normal(0, 1)
factor f[i in 0:N]: y[i] ~ normal(x + z + w[i] + q, 1)
"""


def _arrows(source: str) -> set[tuple[str, str, str]]:
    """(from, to, label) of every edge drawn as an arrow (dir=forward)."""
    found = re.findall(r'^\s*"([^"]+)" -- "([^"]+)" \[label=(\w+)[^\]]*dir=forward', source, re.M)
    return set(found)


def test_bounds_that_read_vars_lets_and_data_are_arrows_to_the_var():
    """A bound is a dependency: an arrow from each var, let and data it reads
    (as written: the let 's', not the vars it inlines to) to the var, labeled
    with the keyword; a constant bound draws none; data only a bound reads is
    drawn too."""
    g = fglang.compile(BOUNDS_MODEL).graph()
    assert _arrows(g.source) == {
        ("var.a", "var.x", "lower"), ("let.s", "var.z", "lower"), ("data.lo", "var.z", "upper"),
        ("data.y", "var.z", "upper"), ("var.b", "var.w", "offset"), ("var.a", "var.w", "multiplier"),
    }
    assert re.search(r'^\s*"data\.lo" \[', g.source, re.M)  # read by a bound only, still a node
    assert not any(kw == "upper" and to == "var.q" for _, to, kw in _arrows(g.source))
    assert _arrows(fglang.load(EXAMPLES / "eight_schools.fg").graph().source) == set()


@needs_dot
def test_bound_arrows_render(tmp_path):
    text = svg_texts(render(fglang.compile(BOUNDS_MODEL).graph(), tmp_path / "b.svg"))
    for kw in ("lower", "upper", "offset", "multiplier"):
        assert kw in text


def test_missing_dot_writes_source_and_says_how_to_install(tmp_path, monkeypatch):
    g = fglang.load(EXAMPLES / "random_walk.fg").graph()
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(FgError) as info:
        render(g, tmp_path / "out" / "g.svg")
    msg = str(info.value)
    assert "apt-get install graphviz" in msg and "brew install graphviz" in msg and "conda" in msg
    assert (tmp_path / "out" / "g.dot").read_text() == g.source
    assert not (tmp_path / "out" / "g.svg").exists()


def test_missing_dot_via_exception(tmp_path, monkeypatch):
    import graphviz

    g = fglang.load(EXAMPLES / "eight_schools.fg").graph()

    def no_dot(*args, **kwargs):
        raise graphviz.ExecutableNotFound(("dot",))

    monkeypatch.setattr(type(g), "pipe", no_dot)
    with pytest.raises(FgError, match="not installed"):
        render(g, tmp_path / "g.png")
    assert (tmp_path / "g.dot").exists()


def test_render_rejects_unknown_extension(tmp_path):
    g = fglang.load(EXAMPLES / "random_walk.fg").graph()
    with pytest.raises(FgError, match="cannot draw"):
        render(g, tmp_path / "g.jpeg")


# ---------------------------------------------------------------- graph CLI
@needs_dot
def test_cli_graph_svg_png_and_instances(tmp_path):
    svg = tmp_path / "g.svg"
    r = runner.invoke(app, ["graph", str(EXAMPLES / "random_walk.fg"), "-o", str(svg)])
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and "x" in svg_texts(svg)
    data = tmp_path / "d.json"
    data.write_text('{"T": 4, "y": [0.0, 1.0, 0.5, 0.2]}')
    png = tmp_path / "g.png"
    r = runner.invoke(app, ["graph", str(EXAMPLES / "random_walk.fg"), "--data", str(data), "--out", str(png)])
    assert r.exit_code == 0, r.output
    assert_png(png)
    dot = tmp_path / "g.dot"
    r = runner.invoke(
        app, ["graph", str(EXAMPLES / "random_walk.fg"), "-d", str(data), "--no-instances", "-o", str(dot)]
    )
    assert r.exit_code == 0, r.output
    assert "i.var." not in dot.read_text()


def test_cli_graph_prints_dot_without_out():
    r = runner.invoke(app, ["graph", str(EXAMPLES / "eight_schools.fg")])
    assert r.exit_code == 0, r.output
    assert "graph eight_schools {" in r.output


def test_cli_graph_usage_and_model_errors(tmp_path):
    model = str(EXAMPLES / "random_walk.fg")
    r = runner.invoke(app, ["graph", model, "-o", str(tmp_path / "g.jpg")])
    assert r.exit_code == 2 and not (tmp_path / "g.jpg").exists()
    r = runner.invoke(app, ["graph", model, "--instances", "-o", str(tmp_path / "g.dot")])
    assert r.exit_code == 2
    bad = tmp_path / "bad.fg"
    bad.write_text("model bad\nvar x: real\nfactor f: x ~ normal(y, 1)\n")
    r = runner.invoke(app, ["graph", str(bad), "-o", str(tmp_path / "g.dot")])
    assert r.exit_code == 1 and "bad.fg:3" in r.output
    data = tmp_path / "d.json"
    data.write_text('{"T": 3}')
    r = runner.invoke(app, ["graph", model, "-d", str(data), "-o", str(tmp_path / "g.dot")])
    assert r.exit_code == 1 and "missing data" in r.output


# ---------------------------------------------------------------- posterior plots
def _rw_data(T: int = 30) -> dict:
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(0, 0.3, T))
    return {"T": T, "y": x + rng.normal(0, 0.5, T), "q": 0.3}


def _image_data(H: int = 12, W: int = 16) -> dict:
    rng = np.random.default_rng(2)
    clean = np.zeros((H, W))
    clean[3:9, 4:12] = 1.0
    return {"H": H, "W": W, "img": clean + rng.normal(0, 0.3, (H, W)), "s_obs": 0.3, "s_smooth": 0.2}


@pytest.fixture(scope="module")
def posteriors():
    """Quick fits: GBP on a chain and on a grid, a short NUTS run on eight schools."""
    return {
        "rw_gbp": fglang.load(EXAMPLES / "random_walk.fg").fit(_rw_data(), backend="gbp"),
        "grid_gbp": fglang.load(EXAMPLES / "denoise_normal.fg").fit(_image_data(), backend="gbp"),
        "es_mcmc": fglang.load(EXAMPLES / "eight_schools.fg").fit(
            data_for(fglang.load(EXAMPLES / "eight_schools.fg")), backend="mcmc", chains=2, warmup=100, samples=100
        ),
    }


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_plot_chain_is_a_band_with_the_data(posteriors):
    fig = posteriors["rw_gbp"].plot()
    titles = _titles(fig)
    assert titles == ["x: posterior mean \u00b1 2 sd along the index"]
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "data y" in labels and "\u00b12 sd" in labels
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), posteriors["rw_gbp"].mean("x"))


def test_plot_grid_is_images_of_data_mean_and_sd(posteriors):
    post = posteriors["grid_gbp"]
    fig = plot_posterior(post)
    titles = _titles(fig)
    assert titles == ["data img [12, 16]", "x: posterior mean [12, 16]", "x: posterior sd [12, 16]"]
    images = [ax.get_images()[0].get_array() for ax in fig.axes if ax.get_images()]
    np.testing.assert_allclose(images[1], post.mean("x"))
    np.testing.assert_allclose(images[2], post.sd("x"))


def test_plot_mcmc_has_densities_traces_and_bands(posteriors):
    post = posteriors["es_mcmc"]
    titles = _titles(post.plot())
    assert [t.split(":")[0] for t in titles] == ["mu", "mu", "tau", "tau", "theta", "theta_raw"]
    assert "trace (2 chains)" in titles[1] and "density" in titles[0]
    only = _titles(post.plot(names=["tau"]))
    assert len(only) == 2 and all(t.startswith("tau") for t in only)
    with pytest.raises(FgError, match="no quantity 'nope'"):
        post.plot(names=["nope"])


def test_plot_gbp_scalar_is_the_exact_gaussian(posteriors):
    from fglang.runtime.posterior import GaussianMarginal, Posterior

    g = GaussianMarginal(np.array(1.5), np.array([[0.25]]), (), ())
    post = Posterior("toy", "gbp", {"mu": np.zeros((1, 10))}, gaussian={"mu": g}, node_shapes={"mu": ()})
    fig = post.plot()
    assert _titles(fig) == ["mu: exact Gaussian marginal (mean 1.5, sd 0.5)"]
    x, y = fig.axes[0].get_lines()[0].get_data()
    assert abs(x[np.argmax(y)] - 1.5) < 0.02 and abs(y.max() - 1 / (0.5 * np.sqrt(2 * np.pi))) < 1e-3


@pytest.mark.parametrize("key", ["rw_gbp", "grid_gbp", "es_mcmc"])
def test_plot_files_and_cli(posteriors, key, tmp_path):
    post = posteriors[key]
    nc = post.save(tmp_path / f"{key}.nc")
    png = tmp_path / "plots" / f"{key}.png"
    r = runner.invoke(app, ["plot", str(nc), "-o", str(png)])
    assert r.exit_code == 0, r.output
    assert_png(png, 10_000)
    assert sorted(p.name for p in png.parent.iterdir()) == [png.name]  # atomic: no temporary left
    if key == "rw_gbp":  # the other formats once: matplotlib's writers are slow on big figures
        svg = plot_posterior(post, tmp_path / f"{key}.svg")
        assert ET.parse(svg).getroot().tag.endswith("svg")
        assert plot_posterior(post, tmp_path / f"{key}.pdf").read_bytes()[:4] == b"%PDF"


def test_cli_plot_errors(posteriors, tmp_path):
    nc = posteriors["rw_gbp"].save(tmp_path / "p.nc")
    r = runner.invoke(app, ["plot", str(nc), "-o", str(tmp_path / "p.txt")])
    assert r.exit_code == 2
    r = runner.invoke(app, ["plot", str(tmp_path / "missing.nc"), "-o", str(tmp_path / "p.png")])
    assert r.exit_code == 1 and "not found" in r.output
    r = runner.invoke(app, ["plot", str(nc), "--names", "x,nope", "-o", str(tmp_path / "p.png")])
    assert r.exit_code == 1 and "nope" in r.output
    r = runner.invoke(app, ["plot", str(nc)])  # default: next to the posterior
    assert r.exit_code == 0, r.output
    assert_png(tmp_path / "p.png")
    with pytest.raises(FgError, match="cannot plot"):
        plot_posterior(posteriors["rw_gbp"], tmp_path / "p.gif")
