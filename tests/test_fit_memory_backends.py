"""The memory estimates main lacked (issue 16, "Limits before work"): VI's
guide and Laplace Hessian, batched GBP, and map's Laplace marginals on the fill
of its sparse factor. Each refusal comes before the allocation it guards,
with the estimate, and a small ``FGLANG_MAX_BYTES`` keeps every case cheap.
The estimates against a measured peak RSS are in
tests/test_fit_memory_measured.py (heavy: each fit takes 10-40 s); the
selected inversion's, by tracemalloc, here.
"""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest

import fglang
from fglang.compiler.bind import bind
from fglang.compiler.limits import ENV
from fglang.errors import FgError
from fglang.runtime import backend as backends
from fglang.runtime.fit import fit
from fglang.runtime.fit_memory import fit_charges

VECTOR = """
model vec
data D: int
var w: real[D] ~ normal(0, 1)
"""


def test_a_full_rank_vi_guide_past_the_limit_is_refused_at_the_var(monkeypatch):
    """D = 3,000 with guide=mvn: 18 copies of a 3,000 x 3,000 float64 matrix, ~1.3 GB; on main it started."""
    monkeypatch.setenv(ENV, "200e6")
    with pytest.raises(FgError) as e:
        fglang.compile(VECTOR, "vec.fg").fit({"D": 3000}, backend="vi", guide="mvn")
    text = str(e.value)
    assert text.startswith("vec.fg:4:1: this fit would need about"), text
    assert "the largest part: VI's full-rank (mvn) guide of 3,000 unconstrained parameters" in text


def test_the_laplace_hessian_is_charged_below_dense_max_and_not_above():
    vi = backends.get("vi")
    m = fglang.compile(VECTOR, "vec.fg")
    o = vi.Options.parse({"guide": "normal"})
    below = {what: n for n, what, _ in fit_charges(vi, bind(m.ir, {"D": 2000}, "<d>"), o)}
    above = {what: n for n, what, _ in fit_charges(vi, bind(m.ir, {"D": 2001}, "<d>"), o)}
    hessian = [w for w in below if w.startswith("the dense Hessian")]
    assert hessian and below[hessian[0]] == 8 * 2000 * 2000 * 8.0
    assert not [w for w in above if w.startswith("the dense Hessian")]


BATCHED = """
model linreg
data N: int batch
data x[N]: real
data y[N]: real
var w: real ~ normal(0, 10)
var h[N]: real
factor act[n in 0:N]: h[n] ~ normal(w * x[n], 0.1)
factor obs[n in 0:N]: y[n] ~ normal(h[n], 0.5)
"""


def _rows(n: int) -> dict:
    x = np.linspace(-1, 1, n)
    return {"N": n, "x": x.tolist(), "y": (2 * x).tolist()}


def test_batched_gbp_is_charged_for_one_batch_of_the_examples():
    gbp = backends.get("gbp")
    bm = bind(fglang.compile(BATCHED, "b.fg").ir, _rows(1000), "<d>")
    whole = {w.split(" (")[0]: n for n, w, _ in fit_charges(gbp, bm, gbp.Options.parse({"draws": 1}))}
    batched = {w.split(" (")[0]: n for n, w, _ in fit_charges(gbp, bm, gbp.Options.parse({"draws": 1,
                                                                                          "batch_size": 100}))}
    for part in ("GBP's messages of factor 'act'", "GBP's messages of factor 'obs'", "GBP's beliefs of var 'h'"):
        assert batched[part] == pytest.approx(whole[part] / 10)
    for part in ("GBP's messages of factor 'w__prior'", "GBP's beliefs of var 'w'"):
        assert batched[part] == whole[part]  # the persistent var and its prior: whole


def test_batched_gbp_past_the_limit_is_refused(monkeypatch):
    """On main a batched fit was never charged, whatever its batch: here ~22 MB of one batch's messages."""
    monkeypatch.setenv(ENV, "100e6")
    n = 200_000
    bm = bind(fglang.compile(BATCHED, "b.fg").ir, {"N": n, "x": np.zeros(n), "y": np.zeros(n)}, "<d>")
    monkeypatch.setenv(ENV, "15e6")
    with pytest.raises(FgError, match=r"b.fg:\d+:1: this fit would need .*a batch of 100,000 of its 200,000 "
                                      r"examples"):
        fit(bm, "gbp", options={"batch_size": 100_000, "draws": 1})


GRID = """
model grid
data K: int
data img[K, K]: real
var x[K, K]: real
factor obs[i in 0:K, j in 0:K]: img[i, j] ~ normal(x[i, j], 0.1)
factor right[i in 0:K, j in 0:K-1]: x[i, j+1] ~ normal(x[i, j], 0.05)
factor down[i in 0:K-1, j in 0:K]: x[i+1, j] ~ normal(x[i, j], 0.05)
"""


def test_map_marginals_past_the_limit_are_refused_or_skipped_by_auto(monkeypatch):
    """A 60 x 60 grid: the selected inversion's plan peaks at ~21 MB (from the fill of L), over 12 MB."""
    monkeypatch.setenv(ENV, "12e6")
    m = fglang.compile(GRID, "grid.fg")
    data = {"K": 60, "img": np.zeros((60, 60)).tolist()}
    with pytest.raises(FgError) as e:
        m.fit(data, backend="map", marginals="full", draws=10)
    text = str(e.value)
    assert "the largest part: the selected inversion for the Laplace marginals" in text, text
    assert "entries of the sparse factor L, its fill included" in text and "marginals=auto" in text
    post = m.fit(data, backend="map", draws=10)  # auto: the mode, its covariances skipped as too costly here
    assert post.attrs["marginals"] is False and np.isfinite(post.mean("x")).all()


def test_the_selected_inversion_estimate_holds_against_tracemalloc():
    """The plan's measured peak (NumPy reports its allocations to tracemalloc) is within 20% under
    ``plan_bytes``: 2-D grid Laplacians, whose fill grows faster than the matrix."""
    import qdldl
    import scipy.sparse as sp

    from fglang.runtime.map import laplace

    for k in (20, 40):
        t = sp.diags([-1, 2.5, -1], [-1, 0, 1], shape=(k, k))
        h = (sp.kron(sp.identity(k), t) + sp.kron(t, sp.identity(k))).tocsc()
        lower, _, _ = qdldl.Solver(sp.triu(h).tocsc(), upper=True).factors()
        tracemalloc.start()
        try:
            laplace.plan(lower)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        estimate = laplace.plan_bytes(lower)
        assert 0.8 * estimate < peak <= 1.05 * estimate, (k, peak, estimate)


@pytest.mark.parametrize(("options", "part"), [
    ({"particles": 1_000_000_000}, "the ELBO's 1,000,000,000 particles (particles=)"),
    ({"guide": "lowrank", "rank": 1_000_000_000}, "VI's lowrank guide of 4 unconstrained parameters "
                                                  "(rank=1,000,000,000)"),
])
def test_vi_options_that_multiply_memory_are_charged(monkeypatch, options, part):
    """On main ``--particles 1e9`` or ``--rank 1e9`` started the fit (and ran out of memory in it)."""
    monkeypatch.setenv(ENV, "1e9")
    with pytest.raises(FgError, match=re.escape(part)):
        fglang.compile(BATCHED.replace(" batch", ""), "b.fg").fit(_rows(3), backend="vi", steps=5, **options)


COUNTS = """
model counts
data D: int
data N: int
data y[N]: int
data k[N]: int
var w: real[D] ~ normal(0, 1)
factor obs[i in 0:N]: y[i] ~ poisson(exp(w[k[i]]))
"""


def _counts(d: int, n: int) -> dict:
    return {"D": d, "N": n, "y": [1] * n, "k": (np.arange(n) % d).tolist()}


def test_map_general_path_is_charged_its_dense_hessian_not_sparse_blocks():
    """A Poisson model runs on map's general path: 9 float64 n x n copies and one evaluation per Hessian
    direction (within 1.4x of the measured peak RSS above JAX's own at n = 1,000 / 2,000 and 500 x 100,000
    members). Main charged the sparse path's blocks instead (16 GB here, refused) and never the dense n^2."""
    mp = backends.get("map")
    m = fglang.compile(COUNTS, "counts.fg")
    charges = {w.split(" (")[0]: n for n, w, _ in fit_charges(mp, bind(m.ir, _counts(1000, 1000), "<d>"),
                                                               mp.Options.parse({"draws": 20}))}
    assert charges["map's dense Hessian of 1,000 unconstrained values on its general path"] == 9 * 1000**2 * 8.0
    assert charges["factor 'obs' evaluated along each of the Hessian's 1,000 directions at once"] == 1000 * 1000 * 2 * 8
    assert not [w for w in charges if "sparse Hessian" in w]
    lsq = fit_charges(mp, bind(fglang.compile(GRID, "grid.fg").ir, {"K": 3, "img": np.zeros((3, 3))}, "<d>"),
                      mp.Options.parse({}))
    assert [w for _, w, _ in lsq if "sparse Hessian" in w] and not [w for _, w, _ in lsq if "dense" in w]


def test_map_general_path_past_the_limit_is_refused_at_the_var_and_a_small_one_runs(monkeypatch):
    """n = 6,000 with max_dense raised: ~2.6 GB of dense Hessian copies, over a 1 GB limit, refused before
    anything is compiled (main refused it for blocks of a sparse Hessian this path never builds); n = 3 fits."""
    monkeypatch.setenv(ENV, "1e9")
    m = fglang.compile(COUNTS, "counts.fg")
    with pytest.raises(FgError) as e:
        m.fit(_counts(6000, 6000), backend="map", max_dense=10_000, draws=10)
    text = str(e.value)
    assert text.startswith("counts.fg:7:1: this fit would need about"), text
    assert "the largest part: map's dense Hessian of 6,000 unconstrained values on its general path" in text
    post = m.fit(_counts(3, 30), backend="map", draws=10)
    assert post.attrs["path"] == "general" and np.isfinite(post.mean("w")).all()
