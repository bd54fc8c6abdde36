"""One atomic write for every output file (posteriors, plots, graphs).

Why a temporary file in the same folder and ``os.replace``: a crash, a full
disk or an interrupt mid-write leaves the old file (or none), never half of
a new one, because a rename within one file system is atomic.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from fglang.errors import Diagnostic, FgError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, content: bytes | Callable[[str], None]) -> Path:
    """Write ``content`` (bytes, or a function that writes a file at the path it
    is given) to ``path``. An OS error (no space, no permission) becomes an
    ``FgError`` that names the file; the old file, if any, is left as it was."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise FgError([Diagnostic(f"cannot write {path}: {err.strerror or err}", None)]) from None
    try:
        if isinstance(content, bytes | bytearray):
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
        else:
            os.close(fd)
            content(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; an output is an ordinary file
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise FgError([Diagnostic(f"cannot write {path}: {err.strerror or err}", None)]) from None
        raise
    return path
