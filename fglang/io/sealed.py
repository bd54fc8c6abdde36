"""Sealed HDF5 files: a checksum after the file's end, and a guarded read for any file it does not vouch for.

Why: a byte flip in an HDF5 file's metadata can send the HDF5 C library into
an endless loop (h5netcdf asking h5py for a dimension scale's length never
returned on one fuzzed posterior file), and C code cannot be interrupted
from Python. So a reader must know a file is intact before HDF5 sees it:

* ``seal`` appends a 512-byte trailer to the complete file: a magic line,
  the size of the file before it and the SHA-256 of those bytes. HDF5 reads
  only up to its own end-of-file address, so h5py, netCDF and ArviZ read the
  file as before (a trailer, not an HDF5 user block: a user block would move
  the HDF5 signature from byte 0, and xarray then no longer recognizes the
  file without an explicit engine). Checking the seal costs one read of the
  file (about 1 GB/s) and no HDF5 call.
* ``read_guarded`` reads a file whose seal holds in this process. A file
  without a seal (written by an older fglang or another program, truncated,
  or grown), or one whose seal does not hold (bytes changed, a hand edit), is
  read in a forked child with a time limit, whose result comes back pickled:
  a damaged file can then only cost the time limit, never a hang, and its
  ``FgError`` still says what is damaged. Where ``fork`` does not exist the
  file is read in this process.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import select
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from fglang.errors import Diagnostic, FgError

T = TypeVar("T")

TRAILER = 512  # bytes
MAGIC = b"FGLANG SEALED HDF5 1\n"
TIMEOUT_S = 30.0  # for reading an unsealed file, plus TIMEOUT_PER_GB_S per GB of it
TIMEOUT_PER_GB_S = 60.0


def _digest(path: Path, length: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        left = length
        while left > 0 and (chunk := fh.read(min(1 << 20, left))):
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def seal(path: str | Path) -> None:
    """Append the seal to a complete file."""
    path = Path(path)
    size = path.stat().st_size
    text = MAGIC + f"size {size}\nsha256 {_digest(path, size)}\n".encode()
    with open(path, "ab") as fh:
        fh.write(text.ljust(TRAILER, b"\0"))


def seal_state(path: Path) -> tuple[bool, str | None]:
    """(whether the seal holds, what is wrong with the file when a seal says so).

    (False, None): no seal (none written, or cut off, or bytes appended after
    it), or one that cannot be read (its own bytes damaged); (False, why):
    sealed, but changed since; (True, None): intact."""
    try:
        size = path.stat().st_size
        if size < TRAILER:
            return False, None
        with open(path, "rb") as fh:
            fh.seek(size - TRAILER)
            tail = fh.read(TRAILER)
    except OSError:
        return False, None
    if not tail.startswith(MAGIC):
        return False, None
    fields = dict(
        line.split(" ", 1) for line in tail[len(MAGIC):].split(b"\0", 1)[0].decode("ascii", "replace").splitlines()
        if " " in line
    )
    try:
        want_size, want_sha = int(fields["size"]), fields["sha256"]
    except (KeyError, ValueError):
        return False, None
    if want_size != size - TRAILER:
        return False, f"its seal says {want_size:,} bytes, but {size - TRAILER:,} precede it"
    if _digest(path, want_size) != want_sha:
        return False, "its bytes changed after fglang wrote it (the SHA-256 in its last 512 bytes does not match)"
    return True, None


def read_guarded(path: str | Path, read: Callable[[Path], T], what: str = "file",
                 timeout: float | None = None) -> T:
    """``read(path)``, which must not hang: in this process when the file's seal
    holds, else in a forked child killed after ``timeout`` seconds. An
    ``FgError`` raised by ``read`` in the child is raised here; a damaged seal
    adds what it says (truncated, changed) to it."""
    path = Path(path)
    intact, why = seal_state(path)
    if intact or not hasattr(os, "fork"):
        return read(path)
    if timeout is None:
        timeout = TIMEOUT_S + TIMEOUT_PER_GB_S * path.stat().st_size / 1e9
    try:
        value = _in_child(path, read, timeout, what)
    except FgError as err:
        if why is None:
            raise
        raise FgError([Diagnostic(f"{d.message}; {why}" if i == 0 else d.message, d.span, d.hint, d.severity)
                       for i, d in enumerate(err.diagnostics)], err.sources) from None
    if why is not None:
        warnings.warn(f"{path}: {why}; it was read, but its values may not be the ones fglang wrote", stacklevel=2)
    return value


def _in_child(path: Path, read: Callable[[Path], T], timeout: float, what: str) -> T:
    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JAX warns on any fork; the child only reads a file
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(r)
        # the child ends itself even when the parent is killed first: SIGALRM's default action
        # terminates a process stuck in C code, where no Python handler would run
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(int(timeout) + 2)
        try:
            try:
                result = ("ok", read(path))
            except FgError as err:
                result = ("fgerror", (err.diagnostics, err.sources))  # FgError itself does not unpickle
            except BaseException as err:  # noqa: BLE001 - reported in the parent as a damaged file
                result = ("error", f"{type(err).__name__}: {err}")
            payload = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as err:  # noqa: BLE001 - a result that cannot be pickled
            payload = pickle.dumps(("error", f"{type(err).__name__}: {err}"))
        with os.fdopen(w, "wb") as fh:
            fh.write(payload)
        os._exit(0)
    os.close(w)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        with os.fdopen(r, "rb") as fh:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fh], [], [], left)[0]:
                    raise FgError([Diagnostic(
                        f"{path} is a damaged {what}: reading it did not finish in {timeout:.0f} s (HDF5 loops on"
                        " damaged metadata)", None, "write it again (fglang fit -o), or restore a copy")])
                chunk = os.read(fh.fileno(), 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        _reap(pid)
    try:
        kind, value = pickle.loads(b"".join(chunks))
    except Exception:  # noqa: BLE001 - the child died before it could answer
        kind, value = "error", "the reader stopped without an answer"
    if kind == "ok":
        return value
    if kind == "fgerror":
        raise FgError(*value)
    raise FgError([Diagnostic(f"{path} is a damaged {what}: it cannot be read ({value})", None,
                              "write it again (fglang fit -o), or restore a copy")])


def _reap(pid: int) -> None:
    """Wait for the child, killing it first if it has not finished."""
    done, _ = os.waitpid(pid, os.WNOHANG)
    if done == 0:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
