"""Whether a factor graph has loops (runtime/gbp/loops.py), and the GBP
summary's note on a loopy graph, where its variances are approximate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import fglang
from fglang.cli import app
from fglang.runtime.gbp.loops import has_loops, n_components

HEAD = "model g\ndata N: int\ndata y[N]: real\nvar x[N]: real ~ normal(0, 10)\n"
CASES = {
    # a chain: a tree
    "chain": (HEAD + "factor obs[i in 0:N]: y[i] ~ normal(x[i], 1)\n"
              "factor step[i in 0:N - 1]: x[i + 1] - x[i] ~ normal(0, 1)\n", False),
    # the chain closed into a ring
    "ring": (HEAD + "factor step[i in 0:N - 1]: x[i + 1] - x[i] ~ normal(0, 1)\n"
             "factor close: x[0] - x[N - 1] ~ normal(0, 1)\n", True),
    # a star through one shared var: a tree
    "star": (HEAD + "var m: real ~ normal(0, 1)\nfactor pull[i in 0:N]: x[i] - m ~ normal(0, 1)\n", False),
    # two factors on the same two nodes: a cycle of length 2
    "double": (HEAD + "factor a: x[0] - x[1] ~ normal(0, 1)\nfactor b: x[0] + x[1] ~ normal(0, 1)\n", True),
    # one factor reading a node twice is one edge
    "twice": (HEAD + "factor a: x[0] * x[0] + x[1] ~ normal(0, 1)\n", False),
    # a triangle over three of five nodes: fewer edges than vertices, so the components are counted
    "triangle": (HEAD + "factor a: x[1] - x[0] ~ normal(0, 1)\nfactor b: x[2] - x[1] ~ normal(0, 1)\n"
                 "factor c: x[0] - x[2] ~ normal(0, 1)\n", True),
    # the triangle less one side: a path among free nodes
    "path": (HEAD + "factor a: x[1] - x[0] ~ normal(0, 1)\nfactor b: x[2] - x[1] ~ normal(0, 1)\n", False),
    # priors and unary factors only
    "unary": (HEAD + "factor obs[i in 0:N]: y[i] ~ normal(x[i], 1)\n", False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_has_loops(name):
    src, loopy = CASES[name]
    bm = fglang.compile(src).bind({"N": 5, "y": np.zeros(5)})
    assert has_loops(bm) is loopy


def _components_by_search(n: int, u: np.ndarray, v: np.ndarray) -> int:
    """The reference: a depth-first search from every unvisited vertex."""
    adjacent: list[list[int]] = [[] for _ in range(n)]
    for a, b in zip(u.tolist(), v.tolist(), strict=True):
        adjacent[a].append(b)
        adjacent[b].append(a)
    seen, count = [False] * n, 0
    for start in range(n):
        if seen[start]:
            continue
        count += 1
        stack, seen[start] = [start], True
        while stack:
            for b in adjacent[stack.pop()]:
                if not seen[b]:
                    seen[b] = True
                    stack.append(b)
    return count


def test_components_match_a_search_on_random_graphs():
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        m = int(rng.integers(0, 50))
        u, v = rng.integers(0, n, m), rng.integers(0, n, m)
        assert n_components(n, u, v) == _components_by_search(n, u, v)
    # a path whose vertices are numbered at random: hooks go every way
    order = rng.permutation(2000)
    assert n_components(2000, order[:-1], order[1:]) == 1


def test_the_summary_says_a_loopy_graphs_sds_are_approximate(tmp_path):
    data = tmp_path / "d.json"
    data.write_text(json.dumps({"N": 5, "y": [0.0] * 5}))
    out = {}
    for name in ("chain", "ring"):
        model = tmp_path / f"{name}.fg"
        model.write_text(CASES[name][0])
        r = CliRunner().invoke(app, ["fit", str(model), "-d", str(data), "-b", "gbp", "-q"])
        assert r.exit_code == 0, r.output
        out[name] = r.output
    assert "the factor graph has loops" in out["ring"] and "--backend map" in out["ring"]
    assert "the factor graph has loops" not in out["chain"]
