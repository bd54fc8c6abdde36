"""A small fixed-seed budget of every fuzz campaign (tests/fuzz): no traceback,
out-of-memory, hang or crash on hostile models, data files, command lines or
posterior files. ``python -m tests.fuzz.run --cases 10000`` runs the big one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIX = "models=100,data=100,cli=20,posterior=8"


def test_fuzz_smoke(tmp_path):
    out = tmp_path / "findings"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", "--mix", MIX, "--seed", "0", "--no-minimize", "-q",
         "--out", str(out), "--json", str(tmp_path / "r.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    results = json.loads((tmp_path / "r.json").read_text())
    bad = {n: r["findings"] for n, r in results.items() if r["findings"]}
    details = "\n".join((Path(f["repro"]) / "outcome.txt").read_text()[:1500] for fs in bad.values() for f in fs)
    assert not bad, f"{proc.stdout}\n{details}"
    assert sum(sum(r["counts"].values()) for r in results.values()) == 228
