"""Shrink a failing model: drop lines, then characters, while the case keeps
failing the same way (same outcome and signature). Data, CLI and posterior
cases are kept as they are (their files are small or binary)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tests.fuzz.campaigns import Case


def minimize(case: Case, same: Callable[[Case], bool], budget: int = 40) -> Case:
    """``same(case)`` reruns a candidate and says whether it fails as the original did."""
    body = case.files.get("model.fg")
    if not isinstance(body, str):
        return case
    tries = 0

    def attempt(text: str) -> bool:
        nonlocal tries
        tries += 1
        return same(replace(case, files={**case.files, "model.fg": text}))

    lines = body.split("\n")
    chunk = max(1, len(lines) // 2)
    while chunk >= 1 and tries < budget:
        i, changed = 0, False
        while i < len(lines) and tries < budget:
            cand = lines[:i] + lines[i + chunk :]
            if cand and attempt("\n".join(cand)):
                lines, changed = cand, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    text = "\n".join(lines)
    # long lines (generated chains) shrink by halves of their characters
    while len(text) > 400 and tries < budget:
        cut = len(text) // 4
        mid = len(text) // 2
        cand = text[: mid - cut // 2] + text[mid + cut // 2 :]
        if attempt(cand):
            text = cand
        else:
            break
    return replace(case, files={**case.files, "model.fg": text})
