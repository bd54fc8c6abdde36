"""Continual digits (examples/continual_digits.py), small: two tasks of two
classes, GBP with the posterior as the next task's prior against naive
sequential Adam on the same network."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load_script

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.heavy
def test_gbp_with_posterior_as_prior_forgets_less_than_naive_adam():
    load_script("digits", EXAMPLES / "digits.py")  # continual_digits imports it by name
    cd = load_script("continual_digits", EXAMPLES / "continual_digits.py")
    rows = cd.main(["--tasks", "2", "--per-task", "50", "--batch-size", "25", "--hidden", "8", "--iters", "40",
                    "--adam-epochs", "20"])
    by = {(r["method"].split(",")[0], r["after_task"]): r for r in rows}
    gbp1, gbp2, adam1, adam2 = by["gbp", 1], by["gbp", 2], by["adam", 1], by["adam", 2]
    # both learn the first task
    assert gbp1["task_incremental"][0] >= 0.95 and adam1["task_incremental"][0] >= 0.95
    # after the second task GBP still knows the first, and the second
    assert gbp2["task_incremental"][0] >= 0.9 and gbp2["task_incremental"][1] >= 0.9
    # and forgets less of task 1 than fine-tuning when the task is known ...
    assert gbp2["task_incremental"][0] > adam2["task_incremental"][0]
    # ... and, over all ten outputs, is at least as good on the two tasks together
    assert gbp2["class_incremental_mean"] >= adam2["class_incremental_mean"]
