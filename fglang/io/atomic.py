"""One atomic write for every output file (posteriors, plots, graphs, data).

Why a temporary file in the same folder and ``os.replace``: a crash, a full
disk or an interrupt mid-write leaves the old file (or none), never half of
a new one, because a rename within one file system is atomic.

What ``-o PATH`` may be: a new file or a regular file (replaced), or a
symlink to one (the file it points to is replaced, the link stays). A
directory, FIFO, device node or socket is refused: replacing ``/dev/null``
with a regular file, as root, would break the machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from fglang.errors import Diagnostic, FgError

TEMP_MARK = ".fgtmp"  # every temporary file's suffix, so stale ones can be found
STALE_AFTER_S = 3600.0  # a temporary file older than this is a leftover of a killed run


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _cannot(path: Path, why: str, hint: str | None = None) -> FgError:
    return FgError([Diagnostic(f"cannot write {path}: {why}", None, hint)])


def resolve_target(path: str | Path) -> Path:
    """The regular file that writing ``path`` replaces (a symlink's target),
    or an ``FgError`` for a path that is not, and cannot become, one."""
    path = Path(path)
    real = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return real
    except OSError as err:
        raise _cannot(path, err.strerror or str(err)) from None
    if stat.S_ISDIR(st.st_mode):
        raise _cannot(path, "it is a directory", "give a file name, e.g. DIR/post.nc")
    if not stat.S_ISREG(st.st_mode):
        raise _cannot(path, "it is not a regular file (a device, FIFO or socket)", "give the path of a regular file")
    return real


def preflight(path: str | Path) -> None:
    """Refuse before a long fit an ``-o`` path that the write after it would
    refuse: a directory, a FIFO or device, a missing or unwritable folder (a
    FIFO was found only once the fit and its summary were done)."""
    real = resolve_target(path)
    folder = real.parent
    if not folder.is_dir():
        raise _cannot(Path(path), f"its folder {folder} does not exist",
                      "create the folder first, or give another path")
    if not os.access(folder, os.W_OK):
        raise _cannot(Path(path), f"its folder {folder} is not writable", "give a path in a folder you can write")


def clean_stale(folder: Path, name: str) -> None:
    """Remove temporary files of ``name`` that a killed run left in ``folder``."""
    try:
        for p in folder.glob(f".{name}.*{TEMP_MARK}"):
            with contextlib.suppress(OSError):
                if time.time() - p.stat().st_mtime > STALE_AFTER_S:
                    p.unlink()
    except OSError:
        pass


@contextlib.contextmanager
def _removed_on_signal(tmp: str) -> Iterator[None]:
    """SIGTERM (a job scheduler's kill) otherwise skips ``finally`` blocks:
    turn it into an exception while the temporary file exists, so it is
    removed. SIGINT already raises ``KeyboardInterrupt``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, on_term)
    except (ValueError, OSError):  # not settable here: write without it
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def write_atomic(path: str | Path, content: bytes | Callable[[str], None]) -> Path:
    """Write ``content`` (bytes, or a function that writes a file at the path it
    is given) to ``path``. An OS error (no space, no permission) becomes an
    ``FgError`` that names the file; the old file, if any, is left as it was."""
    path = Path(path)
    target = resolve_target(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(target.parent, target.name)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_MARK, dir=target.parent)
    except OSError as err:
        raise _cannot(path, err.strerror or str(err)) from None
    try:
        with _removed_on_signal(tmp):
            if isinstance(content, bytes | bytearray):
                with os.fdopen(fd, "wb") as fh:
                    fh.write(content)
            else:
                os.close(fd)
                content(tmp)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; an output is an ordinary file
            os.replace(tmp, target)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _cannot(path, err.strerror or str(err)) from None
        raise
    return path
