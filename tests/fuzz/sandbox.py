"""Run one fuzz case in a forked child with memory and time limits, and say
what became of it.

A fork of a parent that has already imported fglang (and built the parser)
starts in a few milliseconds, where a fresh interpreter takes seconds to
import JAX; the parent never runs a JAX computation, so the fork is safe.
The child caps its address space (RLIMIT_AS) and arms a CPU-time timer
(ITIMER_PROF, not wall time: on a shared machine at load 20 a 3-second parse
took 60 s of wall time and was reported as a hang) whose handler raises, so
a hang in Python code comes back with the traceback of where it was stuck; a
hang in C code, or a child waiting without using the CPU, is killed by the
parent after WALL_FACTOR times the limit in wall time.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

OUTCOMES = ("clean", "traceback", "oom", "hang", "crash")
WALL_FACTOR = 4.0  # the parent kills a child after this many times its CPU-time limit in wall time


@dataclass
class Outcome:
    """``kind`` is one of OUTCOMES; ``signature`` groups findings of one cause
    (exception type + innermost fglang frame); ``detail`` is the tail of the
    traceback or stderr."""

    kind: str
    signature: str = ""
    detail: str = ""
    seconds: float = 0.0

    @property
    def finding(self) -> bool:
        return self.kind != "clean"


class _Alarm(BaseException):
    """Raised by SIGPROF (the CPU-time timer) in the child (a BaseException, so that no ``except
    Exception`` in the code under test swallows it)."""


def _on_alarm(signum, frame):  # pragma: no cover - runs in the child
    raise _Alarm()


def _signature(exc: BaseException) -> str:
    """Exception type + the innermost frame inside fglang (else the innermost frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    inner = [f for f in frames if "/fglang/" in f.filename and "/tests/" not in f.filename]
    f = (inner or frames or [None])[-1]
    where = f"{f.filename.split('/fglang/')[-1]}:{f.name}" if f is not None else "?"
    return f"{type(exc).__name__} @ {where}"


def _classify(exc: BaseException) -> tuple[str, str]:
    from fglang.errors import FgError

    if isinstance(exc, FgError):
        return "clean", ""
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return ("clean", "") if code in (0, 1, 2) else ("crash", f"SystemExit({exc.code!r})")
    if isinstance(exc, _Alarm):
        return "hang", _signature(exc)
    if isinstance(exc, MemoryError):
        return "oom", _signature(exc)
    return "traceback", _signature(exc)


def _child(fn: Callable[[], Any], mem_bytes: int, timeout: float, wfd: int, errpath: str) -> None:  # pragma: no cover
    err = os.open(errpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(err, 2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    # as a UTF-8 terminal has them: stdout strict, stderr backslashreplace (Python's defaults)
    sys.stdout = open(1, "w", encoding="utf-8", errors="strict", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    if mem_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    signal.signal(signal.SIGPROF, _on_alarm)
    signal.setitimer(signal.ITIMER_PROF, timeout)  # CPU seconds: a loaded machine is not a hang
    kind, sig, detail = "clean", "", ""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()
    except BaseException as exc:  # noqa: BLE001 - classifying everything is the point
        signal.setitimer(signal.ITIMER_PROF, 0)
        kind, sig = _classify(exc)
        if kind != "clean":
            detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-12:])[-3000:]
    signal.setitimer(signal.ITIMER_PROF, 0)
    payload = json.dumps({"kind": kind, "signature": sig, "detail": detail}).encode()
    os.write(wfd, payload)
    os.close(wfd)
    os._exit(0)


def run_case(fn: Callable[[], Any], *, mem_bytes: int = 3 << 30, timeout: float = 20.0) -> Outcome:
    """Call ``fn()`` in a forked child and classify the result."""
    rfd, wfd = os.pipe()
    fd, errpath = tempfile.mkstemp(prefix="fgfuzz-", suffix=".err")
    os.close(fd)
    sys.stdout.flush()
    sys.stderr.flush()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(rfd)
        try:
            _child(fn, mem_bytes, timeout, wfd, errpath)
        finally:
            os._exit(3)
    os.close(wfd)
    chunks: list[bytes] = []
    killed = False
    deadline = t0 + WALL_FACTOR * timeout + 10.0  # stuck in C code, or waiting without using the CPU
    os.set_blocking(rfd, False)
    status = None
    while True:
        try:
            b = os.read(rfd, 65536)
            if b:
                chunks.append(b)
        except BlockingIOError:
            pass
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            killed = True
            break
        time.sleep(0.002)
    try:
        while b := os.read(rfd, 65536):
            chunks.append(b)
    except BlockingIOError:
        pass
    os.close(rfd)
    secs = time.monotonic() - t0
    try:
        with open(errpath, errors="replace") as f:
            stderr = f.read()[-3000:]
    finally:
        os.unlink(errpath)
    if killed:
        return Outcome("hang", "killed after timeout (stuck outside Python)", stderr, secs)
    if chunks:
        r = json.loads(b"".join(chunks))
        return Outcome(r["kind"], r["signature"], r["detail"], secs)
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        low = stderr.lower()
        if "bad_alloc" in low or "out of memory" in low or "resource_exhausted" in low:
            return Outcome("oom", f"{sig} (allocation failed in native code)", stderr, secs)
        return Outcome("crash", f"{sig} in native code", stderr, secs)
    code = os.WEXITSTATUS(status)
    return Outcome("crash", f"exit {code} without a result", stderr, secs)
