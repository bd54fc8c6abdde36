"""fglang writes ArviZ's NetCDF layout without importing ArviZ (io/inference_data.py).

The oracle is ArviZ itself: ``az.from_dict`` of the same values must give the
same groups, variables, dimensions, coordinates and values as the file
fglang writes, read back by ``az.from_netcdf``, and as ``Posterior.to_arviz``.
"""

from __future__ import annotations

import subprocess
import sys

import arviz as az
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import fglang
from fglang.runtime.posterior import GaussianMarginal, Posterior


def _posterior(rng: np.random.Generator, shapes: list[tuple[int, ...]], chains: int = 2, draws: int = 5) -> Posterior:
    return Posterior(
        model="m",
        backend="mcmc",
        draws={f"v{i}": rng.normal(size=(chains, draws, *s)) for i, s in enumerate(shapes)},
        sample_stats={"diverging": rng.random((chains, draws)) < 0.1, "lp": rng.normal(size=(chains, draws))},
        observed={"y": rng.normal(size=7), "n": np.int64(3)},
        constants={"c": rng.normal(size=(2, 3)), "s": np.float64(1.5)},
        attrs={"seed": 1},
        node_shapes={"v0": ()},
    )


def _reference(p: Posterior):
    """What ``az.from_dict`` makes of the same values (fglang's conversion before io/inference_data.py)."""
    return az.from_dict(posterior=p.draws, sample_stats=p.sample_stats, observed_data=p.observed,
                        constant_data=dict(p.constants), dims={})


def _assert_same(got, want) -> None:
    assert set(got.groups()) >= set(want.groups())
    for g in want.groups():
        a, b = got[g], want[g]
        assert set(a.data_vars) == set(b.data_vars), g
        for k in b.data_vars:
            assert a[k].dims == b[k].dims, (g, k)
            assert a[k].dtype == b[k].dtype, (g, k)
            np.testing.assert_array_equal(a[k].values, b[k].values)
        for d in b.coords:
            np.testing.assert_array_equal(a.coords[d].values, b.coords[d].values)


@settings(max_examples=15, deadline=None)
@given(shapes=st.lists(st.lists(st.integers(1, 3), max_size=3).map(tuple), min_size=1, max_size=3),
       seed=st.integers(0, 99))
def test_saved_file_reads_in_arviz_as_its_own_conversion(shapes, seed, tmp_path_factory):
    p = _posterior(np.random.default_rng(seed), shapes)
    path = p.save(tmp_path_factory.mktemp("post") / "p.nc", data_lets=True)
    want = _reference(p)
    _assert_same(az.from_netcdf(path), want)
    _assert_same(p.to_arviz(data_lets=True), want)
    back = fglang.load_posterior(path)
    for k, v in p.draws.items():
        np.testing.assert_array_equal(back.samples(k).reshape(v.shape), v)
    assert back.attrs == {"seed": 1} and back.model == "m"
    # and a file ArviZ wrote (as fglang wrote them through ArviZ) reads back the same
    theirs = path.with_name("theirs.nc")
    p.to_arviz(data_lets=True).to_netcdf(theirs, engine="h5netcdf")
    again = fglang.load_posterior(theirs)
    for name in ("draws", "sample_stats", "observed", "constants"):
        mine, other = getattr(back, name), getattr(again, name)
        assert mine.keys() == other.keys()
        for k in mine:
            assert mine[k].dtype == other[k].dtype
            np.testing.assert_array_equal(mine[k], other[k])


def test_gaussian_marginals_and_attributes_round_trip(tmp_path):
    p = _posterior(np.random.default_rng(0), [(3,)])
    p.gaussian = {"v0": GaussianMarginal(np.zeros(3), np.stack([np.eye(1)] * 3), (3,), ())}
    path = p.save(tmp_path / "g.nc")
    idata = az.from_netcdf(path)
    assert "gaussian_marginals" in idata.groups() and "constant_data" not in idata.groups()
    assert idata.posterior.attrs["fglang_backend"] == "mcmc"
    assert idata.posterior.attrs["fglang_version"] == fglang.__version__
    back = fglang.load_posterior(path)
    np.testing.assert_array_equal(back.gaussian["v0"].cov, p.gaussian["v0"].cov)
    # compressed as ArviZ compresses: zlib on every numeric variable
    import h5py

    with h5py.File(path) as f:
        assert f["posterior"]["v0"].compression == "gzip"


def test_writing_and_reading_a_posterior_does_not_import_arviz(tmp_path):
    """The point of io/inference_data.py: ``import arviz`` costs seconds, xarray ~0.9 s."""
    path = tmp_path / "p.nc"
    code = (
        "import sys, numpy as np\n"
        "from fglang.runtime.posterior import Posterior\n"
        "from fglang import load_posterior\n"
        "p = Posterior('m', 'mcmc', {'a': np.zeros((2, 4))}, sample_stats={'lp': np.zeros((2, 4))})\n"
        f"p.save({str(path)!r}); load_posterior({str(path)!r}).summary()\n"
        "assert not {'arviz', 'xarray', 'matplotlib'} & set(sys.modules), sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
