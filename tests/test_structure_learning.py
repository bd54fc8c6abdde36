"""The structure-learning example (examples/structure_learning.py) at a small size.

A sparse linear SEM over P = 8 variables (28 candidate edges), N = 150
samples drawn with the runner's own generator, fitted with the runner's
model and scored with its rule (found <=> |mean| > 3 sd): the sparsity
priors must recover the true edges with GBP and with VI.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script

REPO = Path(__file__).resolve().parents[1]


sl = load_script("structure_learning", REPO / "examples" / "structure_learning.py")

P, N, SEED = 8, 150, 1


@pytest.fixture(scope="module")
def data() -> dict:
    d = sl.simulate(seed=SEED, n=N, p=P)
    assert d["E"] == P * (P - 1) // 2
    assert 6 <= np.count_nonzero(d["w_true"]) <= 14  # sparse, but with something to find
    return d


def _fit(prior: str, data: dict, backend: str, **options):
    m = sl.model(prior)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "ignoring keys the model does not declare"
        return m.fit(sl.model_data(m, data), backend=backend, **options)


@pytest.fixture(scope="module")
def gbp_horseshoe(data):
    return _fit("horseshoe(0.1)", data, "gbp", dtype="float64")


def test_model_data_drops_the_truth(data) -> None:
    m = sl.model()
    kept = sl.model_data(m, data)
    assert set(kept) == {"N", "P", "E", "parent", "start", "X", "sd"}
    assert {"w_true", "W_true", "child"} <= set(data)


def test_gbp_horseshoe_recovers_the_edges(data, gbp_horseshoe) -> None:
    post = gbp_horseshoe
    s = sl.score(post.mean("w"), post.sd("w"), data["w_true"])
    assert s["true"] == np.count_nonzero(data["w_true"])
    assert s["precision"] >= 0.8 and s["recall"] >= 0.8, s
    # the weights themselves, not only their support
    err = post.mean("w") - np.asarray(data["w_true"])
    assert np.sqrt(np.mean(err**2)) < 0.12


def test_horseshoe_beats_the_normal_baseline(data, gbp_horseshoe) -> None:
    """The sparsity prior is what does the work: the same model with a
    normal(0, 1) prior on the weights, scored by the same rule, is no more
    precise and leaves the non-edges further from 0."""
    base = _fit("normal(0, 1)", data, "gbp", dtype="float64")
    truth = np.asarray(data["w_true"])
    s_hs = sl.score(gbp_horseshoe.mean("w"), gbp_horseshoe.sd("w"), truth)
    s_base = sl.score(base.mean("w"), base.sd("w"), truth)
    assert s_base["precision"] <= s_hs["precision"]
    off = truth == 0
    hs_off, base_off = np.abs(gbp_horseshoe.mean("w")[off]), np.abs(base.mean("w")[off])
    assert hs_off.max() < 0.8 * base_off.max() and hs_off.mean() < 0.8 * base_off.mean()


def test_scoring_can_fail(data, gbp_horseshoe) -> None:
    """Against a wrong truth (the true edges moved onto non-edges) the same
    posterior scores badly: the score is not 1.0 by construction."""
    post = gbp_horseshoe
    truth = np.asarray(data["w_true"])
    wrong = np.zeros_like(truth)
    non_edges = np.flatnonzero(truth == 0)
    wrong[non_edges[: np.count_nonzero(truth)]] = 1.0
    s = sl.score(post.mean("w"), post.sd("w"), wrong)
    assert s["recall"] <= 0.3 and s["precision"] <= 0.3, s


@pytest.mark.heavy
def test_vi_laplace_recovers_the_edges(data) -> None:
    post = _fit("laplace(0, 0.2)", data, "vi", seed=0, steps=2000, lr=0.02)
    s = sl.score(post.mean("w"), post.sd("w"), data["w_true"])
    assert s["precision"] >= 0.8 and s["recall"] >= 0.8, s


def test_report_is_json(data) -> None:
    row = {"backend": "gbp", "prior": "horseshoe(0.1)", "options": {"dtype": "float64"}, "wall_s": 1.234,
           "found": 3, "true": 4, "tp": 3, "precision": 1.0, "recall": 0.75}  # fmt: skip
    rep = json.loads(json.dumps(sl.report([row], data, 3.0, "python examples/structure_learning.py")))
    assert rep["cpu_count"] >= 1 and rep["platform"]
    (run,) = rep["runs"]
    assert run["found"] == 3 and run["true_edges"] == 4 and run["recall"] == 0.75 and run["wall_s"] == 1.23


def test_committed_data_is_the_generator_output() -> None:
    assert sl.DATA_PATH.read_text() == sl.dumps(sl.simulate()), "rerun structure_learning.py --regenerate"
