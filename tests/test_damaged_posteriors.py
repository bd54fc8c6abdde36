"""Damaged posterior files never hang and always say what is damaged (issue 16).

A byte flip in HDF5 metadata can make the HDF5 C library loop for ever
(``tests/damaged/hdf5_loops.nc``: one byte-flipped posterior from the fuzzer
that hangs h5netcdf's dimension-scale lookup on main). ``fglang/io/sealed.py``
seals each file with a SHA-256 in a trailer after HDF5's end; a file whose seal
does not hold is read in a forked child with a time limit. Every case here
is bounded in time.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import fglang
from fglang.errors import FgError
from fglang.io import sealed

HERE = Path(__file__).parent
MODEL = """
model nn
data N: int
data y[N]: real
var mu: real ~ normal(0, 10)
factor obs[n in 0:N]: y[n] ~ normal(mu, 1)
"""
DATA = {"N": 3, "y": [0.5, 1.0, 1.5]}
BOUND_S = 60.0  # wall seconds, generous for a loaded CI machine (the guard itself stops a read at 30 s)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    post = fglang.compile(MODEL, "nn.fg").fit(DATA, backend="gbp", dtype="float64")
    return post, post.save(tmp_path_factory.mktemp("sealed") / "post.nc")


def _load(path: Path, **kw):
    t0 = time.monotonic()
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            post = fglang.load_posterior(path)
        return post, [str(w.message) for w in seen], None, time.monotonic() - t0
    except FgError as err:
        return None, [], str(err), time.monotonic() - t0


def test_a_saved_file_is_sealed_and_reads_back_in_process(saved):
    post, path = saved
    assert path.read_bytes()[-sealed.TRAILER:].startswith(sealed.MAGIC)
    assert sealed.seal_state(path) == (True, None)
    back = fglang.load_posterior(path)
    np.testing.assert_array_equal(back.samples("mu"), post.samples("mu"))
    np.testing.assert_array_equal(back.cov("mu"), post.cov("mu"))
    with h5py.File(path, "r") as f:  # still an ordinary HDF5 / netCDF file to other readers
        assert "posterior" in f
    import arviz as az

    assert az.from_netcdf(path).posterior["mu"].size == post.samples("mu").size  # no engine needed


@pytest.mark.parametrize("keep", [0, 100, 511, 600, 0.5, -600])
def test_truncated_files_are_errors_that_say_so(tmp_path, saved, keep):
    raw = saved[1].read_bytes()
    n = int(len(raw) * keep) if isinstance(keep, float) else (len(raw) + keep if keep < 0 else keep)
    bad = tmp_path / "cut.nc"
    bad.write_bytes(raw[:n])
    post, _, err, secs = _load(bad)
    assert post is None and str(bad) in err and secs < BOUND_S, (err, secs)
    if n > 4096:
        assert "truncated" in err, err


@pytest.mark.parametrize("where", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_flipped_bytes_are_an_error_or_a_warning_never_a_hang(tmp_path, saved, where):
    raw = bytearray(saved[1].read_bytes())
    for k in range(8):
        i = int(len(raw) * where) + 97 * k
        raw[i] ^= 0x5A
    bad = tmp_path / "flip.nc"
    bad.write_bytes(bytes(raw))
    post, seen, err, secs = _load(bad)
    assert secs < BOUND_S
    why = "its bytes changed after fglang wrote it"
    assert (err is not None and str(bad) in err) or any(why in w for w in seen), (err, seen)


def test_a_file_that_makes_hdf5_loop_is_an_error_within_the_time_limit(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(FgError, match="did not finish in 2 s") as e:
        sealed.read_guarded(HERE / "damaged" / "hdf5_loops.nc", _read, "fglang posterior file", timeout=2.0)
    assert "hdf5_loops.nc is a damaged fglang posterior file" in str(e.value)
    assert time.monotonic() - t0 < BOUND_S


def _read(path):
    from fglang.runtime.posterior import _read_posterior

    return _read_posterior(path)


def test_an_unsealed_file_is_read_in_a_child_and_its_errors_come_back(tmp_path, saved):
    post, _ = saved
    plain = tmp_path / "plain.nc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post.to_arviz().to_netcdf(plain, engine="h5netcdf")  # as fglang wrote files before the seal
    assert sealed.seal_state(plain) == (False, None)
    back = fglang.load_posterior(plain)
    np.testing.assert_array_equal(back.samples("mu"), post.samples("mu"))
    with h5py.File(plain, "r+") as f:
        del f["posterior"].attrs["fglang_model"]
    with pytest.raises(FgError, match="fglang_model is missing"):
        fglang.load_posterior(plain)


def _sleeps(path):
    time.sleep(60)


def _breaks(path):
    raise KeyError("no such dimension")


def test_the_guard_kills_a_reader_that_hangs_and_reports_one_that_breaks(tmp_path):
    f = tmp_path / "x.nc"
    f.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    t0 = time.monotonic()
    with pytest.raises(FgError, match="x.nc is a damaged thing: reading it did not finish in 1 s"):
        sealed.read_guarded(f, _sleeps, "thing", timeout=1.0)
    assert time.monotonic() - t0 < 10
    with pytest.raises(FgError, match=r"cannot be read \(KeyError: 'no such dimension'\)"):
        sealed.read_guarded(f, _breaks, "thing", timeout=10.0)
