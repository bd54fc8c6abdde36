"""Where fglang's on-disk cache lives, and whether it is on: stdlib only, so
that every layer may ask (the compiler keeps its parser tables there, the
runtime its compiled programs; `fglang.runtime.cache` says what is inside).

``$FGLANG_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/fglang`` (default
``~/.cache/fglang``); ``FGLANG_NO_CACHE=1`` turns the whole cache off.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The folder fglang keeps its cache in (see the module docstring)."""
    moved = os.environ.get("FGLANG_CACHE_DIR")
    if moved:
        return Path(moved).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "fglang"


def cache_enabled() -> bool:
    """Whether fglang uses the cache at all (``FGLANG_NO_CACHE`` unset)."""
    return not os.environ.get("FGLANG_NO_CACHE")
