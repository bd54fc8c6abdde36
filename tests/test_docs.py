"""Every ```fg block in docs/ compiles, and every ```fg-error block fails as shown.

Conventions (see docs/errors.md):

* ```fg            a model that must check (``fglang.compile``).
* ```fg-error      a model that must raise ``fglang.FgError``: when compiled, or
                   when its data are bound, or when a fit with the named backend
                   starts (backends validate a model before compiling anything).
* Attributes after the tag: ``file=PATH`` writes the block to PATH (so that
  ``include`` works) and checks it with ``fglang.load``; a file without a
  ``model`` line is only checked through a block that includes it.
  ``backend=NAME`` (fg-error only) starts a fit with that backend; any other
  ``key=value`` is a fit option.
* A ```json block right after a model block is its data file (``data.json``):
  it is bound (and must bind, for ```fg).
* A ```text block right after an fg-error block (or after its json) is the
  expected message: its lines must appear, in order and contiguously, in the
  error's text.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
from doc_blocks import Block, doc_blocks

import fglang

BLOCKS = doc_blocks()


def _has_header(src: str) -> bool:
    return any(line.split()[:1] == ["model"] for line in src.splitlines())


def _option(value: str):
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    return value


def _run(b: Block) -> None:
    """Compile (or load), bind and, for backend=, start a fit. Raises FgError."""
    if "file" in b.attrs:
        model = fglang.load(b.attrs["file"])
    else:
        model = fglang.compile(b.body, "model.fg")
    if b.data is None:
        return
    Path("data.json").write_text(b.data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.bind("data.json")
        if "backend" in b.attrs and b.lang == "fg-error":
            opts = {k: _option(v) for k, v in b.attrs.items() if k not in ("backend", "file")}
            model.fit("data.json", backend=b.attrs["backend"], **opts)


def _contains_lines(actual: str, expected: str) -> bool:
    exp = [ln.rstrip() for ln in expected.strip("\n").splitlines()]
    act = [ln.rstrip() for ln in actual.splitlines()]
    return any(act[i : i + len(exp)] == exp for i in range(len(act) - len(exp) + 1))


def test_docs_have_checked_blocks():
    langs = {b.lang for b in BLOCKS}
    assert {"fg", "fg-error"} <= langs, "docs/ lost its checked code blocks"
    assert {b.doc for b in BLOCKS} >= {"language.md", "errors.md", "translations.md"}


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_doc_block(block: Block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, body in block.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    if "file" in block.attrs and not _has_header(block.body):
        base = Path(block.attrs["file"]).name
        pattern = re.compile(rf'include "[^"]*{re.escape(base)}"')
        includers = [n for n, body in block.files.items() if n != block.attrs["file"] and pattern.search(body)]
        assert includers, f"{block.id}: a file without a model line must be included by another block"
        return
    if block.lang == "fg":
        _run(block)
        if block.data is not None:
            json.loads(block.data)  # the data shown must be valid JSON too
        return
    with pytest.raises(fglang.FgError) as info:
        _run(block)
    if block.expected is not None:
        assert _contains_lines(str(info.value), block.expected), (
            f"{block.id}: the message shown in the docs is not what fglang prints.\n"
            f"--- shown:\n{block.expected}\n--- actual:\n{info.value}"
        )
