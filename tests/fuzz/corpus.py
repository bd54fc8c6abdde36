"""The seeds every campaign mutates: the example models with their data, and
the ```fg / ```fg-error blocks of docs/*.md with the ```json after them.

Only what is in the repository: a new example or doc block becomes a seed
without touching the fuzzer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.doc_blocks import doc_blocks

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
# examples whose data files are too large to mutate quickly (they still seed model mutations)
_BIG = {"m3500"}


@dataclass
class Seed:
    name: str
    text: str
    data: dict[str, Any] | None = None
    init: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)  # includes, by relative path


def _example_seeds() -> list[Seed]:
    out = []
    for path in sorted(EXAMPLES.glob("*.fg")):
        data = init = None
        dpath = EXAMPLES / "data" / f"{path.stem}.json"
        if dpath.exists() and path.stem not in _BIG:
            data = json.loads(dpath.read_text())
        ipath = EXAMPLES / "data" / f"{path.stem}_init.json"
        if ipath.exists() and path.stem not in _BIG:
            init = json.loads(ipath.read_text())
        if path.stem == "denoise_normal":
            data = json.loads((EXAMPLES / "data" / "denoise.json").read_text())
        out.append(Seed(f"examples/{path.name}", path.read_text(), data, init))
    return out


def _doc_seeds() -> list[Seed]:
    out = []
    for b in doc_blocks():
        data = None
        if b.data is not None:
            try:
                data = json.loads(b.data)
            except ValueError:
                data = None
        out.append(Seed(f"docs/{b.doc}:{b.line}", b.body, data if isinstance(data, dict) else None, None, b.files))
    return out


def seeds() -> tuple[Seed, ...]:
    """Every seed, examples first (a fixed order: campaigns are deterministic per seed)."""
    return tuple(_example_seeds() + _doc_seeds())


def data_seeds() -> tuple[Seed, ...]:
    """The seeds that come with a data file (the data campaign's material)."""
    return tuple(s for s in seeds() if s.data is not None)
