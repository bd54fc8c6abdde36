"""``devices=N`` for VI: the data rows split over the devices, and ``fit_many``'s
data sets (issue 17), in a process of its own with 4 forced CPU devices
(``XLA_FLAGS`` before JAX starts; GBP's checks: tests/test_devices.py, NUTS's:
tests/test_devices_nuts.py)."""

from __future__ import annotations

import textwrap

import pytest
from conftest import LINEAR_XY, run_on_four_devices

_VI = textwrap.dedent(
    """
    import json, sys, warnings
    import numpy as np
    import fglang

    warnings.simplefilter("ignore")
    m = fglang.compile(sys.argv[1], "linear.fg")
    # data-parallel: 64 rows split over 4 devices, against one device
    rng = np.random.default_rng(2)
    sets = []
    for k in range(3):
        x = rng.normal(size=64)
        sets.append({"N": 64, "x": x.tolist(), "y": (k + 2.0 * x + 0.5 * rng.normal(size=64)).tolist()})
    kw = dict(backend="vi", steps=200, draws=50)
    one = m.fit(sets[0], **kw)
    four = m.fit(sets[0], devices=4, **kw)
    out = {"max_diff": {k: float(np.abs(one.draws[k] - four.draws[k]).max()) for k in ("a", "b")},
           "devices": four.attrs["devices"], "sharded": four.attrs.get("sharded_data")}
    # fit_many, the 3 data sets split over 4 devices (padded to 4), against one-device fits
    many = m.fit_many(sets, devices=4, **kw)
    out["many_diff"] = max(float(np.abs(one.draws[k] - many[0].draws[k]).max()) for k in ("a", "b"))
    out["many_devices"] = many[2].attrs["devices"]
    out["many_means"] = [float(p.mean("a")) for p in many]
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def vi() -> dict:
    return run_on_four_devices(_VI, LINEAR_XY)


def test_vi_data_parallel_on_four_devices_gives_the_one_device_answer(vi):
    assert vi["devices"] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"]
    assert vi["sharded"] == ["x", "y"]  # the 64 rows, 16 per device
    assert max(vi["max_diff"].values()) < 1e-8


def test_vi_fit_many_over_four_devices_gives_the_separate_answers(vi):
    assert vi["many_diff"] < 1e-8 and len(vi["many_devices"]) == 4
    # the intercepts the data sets were drawn with (0, 1, 2): each posterior its own
    assert [round(a) for a in vi["many_means"]] == [0, 1, 2]
