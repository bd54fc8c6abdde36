"""The summary's statistics in NumPy alone (`runtime.diagnostics`): the two
SciPy functions they replace, against SciPy itself, and a warm summary that
imports no SciPy.

Oracles: ``scipy.special.ndtri`` over [0, 1] (the far tails down to 1e-300
included) and at its edges; ``scipy.fft.next_fast_len`` for every length to
5000; R-hat and ESS of one draw set with and without the NumPy functions."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import scipy.fft
import scipy.special

from fglang.runtime import diagnostics


def test_ndtri_matches_scipy_to_round_off():
    p = np.concatenate([np.linspace(0, 1, 20001), np.logspace(-300, -1, 600), 1 - np.logspace(-16, -1, 300)])
    ours, ref = diagnostics.ndtri(p), scipy.special.ndtri(p)
    finite = np.isfinite(ref)
    np.testing.assert_allclose(ours[finite], ref[finite], rtol=4e-15, atol=4e-15)
    np.testing.assert_array_equal(ours[~finite], ref[~finite])  # -inf at 0, inf at 1
    assert np.isnan(diagnostics.ndtri(np.array([-0.1, 1.1, np.nan]))).all()


def test_next_fast_len_matches_scipy():
    lengths = range(1, 5000)
    assert [diagnostics.next_fast_len(n) for n in lengths] == [scipy.fft.next_fast_len(n) for n in lengths]


def test_rank_diagnostics_are_scipy_s(monkeypatch):
    x = np.random.default_rng(0).standard_normal((4, 500, 3)).cumsum(axis=1) * 0.1
    x[:, :, 2] = np.round(x[:, :, 2], 1)  # ties, averaged
    rhat, ess = diagnostics.rank_diagnostics(x)
    monkeypatch.setattr(diagnostics, "ndtri", scipy.special.ndtri)
    monkeypatch.setattr(diagnostics, "next_fast_len", scipy.fft.next_fast_len)
    ref_rhat, ref_ess = diagnostics.rank_diagnostics(x)
    np.testing.assert_allclose(rhat, ref_rhat, rtol=1e-12)
    np.testing.assert_allclose(ess, ref_ess, rtol=1e-12)


def test_the_diagnostics_import_no_scipy():
    code = ("import sys, numpy as np; from fglang.runtime.diagnostics import rank_diagnostics;"
            "rank_diagnostics(np.ones((2, 10, 1)) + np.arange(10.0)[None, :, None]); print('scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
