"""``devices=N`` for NUTS: one chain per device (issue 17), in a process of its
own with 4 forced CPU devices (``XLA_FLAGS`` before JAX starts; GBP's checks:
tests/test_devices.py, VI's: tests/test_devices_vi.py)."""

from __future__ import annotations

import textwrap

import pytest
from conftest import LINEAR_XY, run_on_four_devices

_NUTS = textwrap.dedent(
    """
    import json, sys, warnings
    import numpy as np
    import fglang

    warnings.simplefilter("ignore")
    m = fglang.compile(sys.argv[1], "linear.fg")
    rng = np.random.default_rng(0)
    x = rng.normal(size=20)
    d = {"N": 20, "x": x.tolist(), "y": (1.0 + 2.0 * x + 0.5 * rng.normal(size=20)).tolist()}
    # 4 chains, one per device, against the same 4 chains on one device
    kw = dict(backend="mcmc", chains=4, warmup=60, samples=60, seed=1)
    par = m.fit(d, devices=4, **kw)
    seq = m.fit(d, chain_method="sequential", **kw)
    print("RESULT " + json.dumps({
        "chain_method": par.attrs["chain_method"],
        "devices": par.attrs["devices"],
        "devices_seq": seq.attrs["devices"],
        "max_diff": {k: float(np.abs(par.draws[k] - seq.draws[k]).max()) for k in ("a", "b")},
        "mean_par": {k: float(par.draws[k].mean()) for k in ("a", "b")},
        "mean_seq": {k: float(seq.draws[k].mean()) for k in ("a", "b")},
        "sd_seq": {k: float(seq.draws[k].std()) for k in ("a", "b")},
    }))
    """
)


@pytest.fixture(scope="module")
def nuts() -> dict:
    return run_on_four_devices(_NUTS, LINEAR_XY)


def test_nuts_one_chain_per_device(nuts):
    # parallel asked for with fewer devices than chains falls back to sequential and
    # says so: tests/test_cache_and_timings.py::test_chain_method_follows_the_devices
    # (the decision, "parallel needs a device per chain"; an 8-chain fit here cost 13 CPU-s)
    assert nuts["chain_method"] == "parallel"
    assert nuts["devices"] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"] and nuts["devices_seq"] == ["cpu:0"]
    for k in ("a", "b"):
        # same seed, same per-chain keys, each chain compiled on its own under
        # pmap and under the sequential map: on this well-conditioned model the
        # draws are the same (measured: identical). On a model whose chains
        # are chaotic (eight schools, centered) round-off can make them part,
        # and then they agree only in distribution.
        assert nuts["max_diff"][k] < 1e-5
        assert abs(nuts["mean_par"][k] - nuts["mean_seq"][k]) < 0.25 * nuts["sd_seq"][k]
