"""A second GBP run of new data of the same shapes traces no residual (issue 18):
`plan._residual_dim` remembers its answers per residual function and shapes."""

from __future__ import annotations

import numpy as np

from fglang.runtime.gbp import GaussianFamily, GaussianGraph, Slot, VariableBlock, plan


def smooth(inp, a, b):
    return b - a


def observe(inp, a):
    return a - inp


def _graph(n: int, y: np.ndarray) -> GaussianGraph:
    ids = np.arange(n)
    return GaussianGraph(
        (VariableBlock("x", n, 1),),
        (GaussianFamily("obs", n, (Slot("x", ids),), observe, y[:, None], 1.0),
         GaussianFamily("smooth", n - 1, (Slot("x", ids[:-1]), Slot("x", ids[1:])), smooth, None, 4.0)),
    )


def test_new_data_of_the_same_shapes_traces_nothing(monkeypatch) -> None:
    calls: list[str] = []
    trace = plan._trace_residual

    def counted(fam, *args):
        calls.append(fam.name)
        return trace(fam, *args)

    monkeypatch.setattr(plan, "_trace_residual", counted)
    rng = np.random.default_rng(0)
    first = plan.build_plan(_graph(7, rng.standard_normal(7)), dtype=np.float32, schedule="flooding", dropout=0.0,
                            chunk=5)[0]
    n_first = len(calls)
    again = plan.build_plan(_graph(7, rng.standard_normal(7)), dtype=np.float32, schedule="flooding", dropout=0.0,
                            chunk=5)[0]
    assert len(calls) == n_first  # same functions and shapes: remembered
    assert again == first  # the same plan: the compiled chunk is reused
    plan.build_plan(_graph(9, rng.standard_normal(9)), dtype=np.float64, schedule="flooding", dropout=0.0, chunk=5)
    assert len(calls) > n_first  # a new dtype is traced again
    assert [fp.affine for fp in first.families] == [True, True]
