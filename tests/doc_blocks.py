"""The checked code blocks of docs/*.md, read one way for every reader:
tests/test_docs.py runs them, the fuzzer (tests/fuzz/corpus.py) mutates them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)


@dataclass
class Block:
    doc: str
    line: int
    lang: str
    attrs: dict[str, str]
    body: str
    data: str | None = None
    expected: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # every file= block of the doc

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def doc_blocks() -> list[Block]:
    """Every ```fg / ```fg-error block of docs/*.md, with the ```json after it
    and, for an error block, the ```text that shows its message."""
    out: list[Block] = []
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text()
        raw = []
        for m in FENCE.finditer(text):
            info = m.group(1).split()
            lang = info[0] if info else ""
            attrs = dict(a.split("=", 1) for a in info[1:] if "=" in a)
            raw.append((text.count("\n", 0, m.start()) + 1, lang, attrs, m.group(2)))
        files = {a["file"]: body for _, lang, a, body in raw if lang in ("fg", "fg-error") and "file" in a}
        for k, (line, lang, attrs, body) in enumerate(raw):
            if lang not in ("fg", "fg-error"):
                continue
            b = Block(path.name, line, lang, attrs, body, files=files)
            nxt = k + 1
            if nxt < len(raw) and raw[nxt][1] == "json":
                b.data = raw[nxt][3]
                nxt += 1
            if lang == "fg-error" and nxt < len(raw) and raw[nxt][1] == "text":
                b.expected = raw[nxt][3]
            out.append(b)
    return out
