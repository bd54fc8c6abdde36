"""Where a fit's time goes: parse, check, lower, bind, trace, cache load, compile, run, write.

Why: a first posterior is mostly not sampling (imports, tracing, XLA
compilation), and a user deciding whether a warm cache, fewer families or a
smaller model would help needs the split, not one total. ``fglang fit
--timings`` prints it; the Python API keeps it on ``Posterior.timings``.

The surface opens a `Timings` with `recording`, each stage adds its wall
time with `phase`, and JAX's own monitoring events give the time spent
inside the backend tracing to jaxprs, lowering to StableHLO and compiling
with XLA (or loading from the persistent cache). Those intervals nest (a
jit traced inside another's trace) and overlap, so each kind is summed as a
union of intervals; ``run`` is the backend's wall time less all three and
less the backend's own phases (``import``, and ``cache load``: reading a
whole exported program, `program_cache`, which spares the trace and the
lowering).

No JAX at import: ``fglang check`` never imports it; the listener is
registered the first time a fit starts (`listen_to_jax`).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

ORDER = ("parse", "check", "lower", "bind", "import", "cache load", "trace", "lower to HLO", "compile", "run",
         "summary", "write")
"""The phases in pipeline order (the order ``--timings`` prints them)."""

JAX_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower to HLO",
    "/jax/core/compile/backend_compile_duration": "compile",
}


@dataclass
class Timings:
    """Seconds per phase, and how many XLA programs were compiled or loaded from the cache."""

    seconds: dict[str, float] = field(default_factory=dict)
    programs: int = 0
    cache_hits: int = 0
    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def span(self, name: str, start: float, end: float) -> None:
        with self.lock:
            self.spans.setdefault(name, []).append((start, end))

    def jax_seconds(self, names: tuple[str, ...], start: float, end: float) -> float:
        """The length of the union of the recorded intervals of ``names`` within [start, end]."""
        total, reach = 0.0, float("-inf")
        for a, b in sorted(iv for n in names for iv in self.spans.get(n, [])):
            a, b = max(a, start), min(b, end)
            if b <= a:
                continue
            if a > reach:
                total += b - a
                reach = b
            elif b > reach:
                total += b - reach
                reach = b
        return total

    def as_dict(self) -> dict[str, float | int]:
        """The phases in pipeline order, then the program counts (what ``Posterior.timings`` holds)."""
        out: dict[str, float | int] = {k: self.seconds[k] for k in ORDER if k in self.seconds}
        out.update({k: v for k, v in self.seconds.items() if k not in out})
        out["programs compiled"] = self.programs - self.cache_hits
        out["programs from cache"] = self.cache_hits
        return out


_current: contextvars.ContextVar[Timings | None] = contextvars.ContextVar("fglang_timings", default=None)


@contextlib.contextmanager
def recording(timings: Timings | None = None) -> Iterator[Timings]:
    """Collect phases into ``timings`` (a new one by default) inside the block;
    an enclosing recording is kept (a MAP start inside a fit adds to the fit's)."""
    outer = _current.get()
    if outer is not None and timings is None:
        yield outer
        return
    t = timings if timings is not None else Timings()
    token = _current.set(t)
    try:
        yield t
    finally:
        _current.reset(token)


def current() -> Timings | None:
    return _current.get()


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Add the block's wall time to phase ``name`` of the recording in progress (none: nothing)."""
    t = _current.get()
    start = time.perf_counter()
    try:
        yield
    finally:
        if t is not None:
            t.add(name, time.perf_counter() - start)


@contextlib.contextmanager
def backend_run() -> Iterator[None]:
    """The backend's fit: its wall time splits into JAX's trace, lowering and
    compile intervals (from JAX's events, wall-clock ``time.time``) and the
    rest, ``run``."""
    t = _current.get()
    if t is None:
        yield
        return
    listen_to_jax()
    start, wall0 = time.time(), time.perf_counter()
    own = ("import", "cache load")  # a backend's lazy imports and program loads are not run time
    own0 = sum(t.seconds.get(k, 0.0) for k in own)
    try:
        yield
    finally:
        wall = time.perf_counter() - wall0
        end = time.time()
        # each moment counts once, for the innermost kind: a compile inside a
        # trace (an eager op while tracing) is compile time, not trace time
        compile_s = t.jax_seconds(("compile",), start, end)
        lowered_s = t.jax_seconds(("compile", "lower to HLO"), start, end)
        spent = t.jax_seconds(("compile", "lower to HLO", "trace"), start, end)
        t.add("trace", spent - lowered_s)
        t.add("lower to HLO", lowered_s - compile_s)
        t.add("compile", compile_s)
        t.add("run", max(wall - spent - (sum(t.seconds.get(k, 0.0) for k in own) - own0), 0.0))


_listening = False


def listen_to_jax() -> None:
    """Register (once per process) the listeners that feed JAX's compile events to the recording in progress."""
    global _listening
    if _listening:
        return
    import jax

    def on_span(event: str, start: float, end: float, **_: object) -> None:
        t = _current.get()
        name = JAX_EVENTS.get(event)
        if t is not None and name is not None:
            t.span(name, start, end)
            if name == "compile":
                t.programs += 1

    def on_event(event: str, **_: object) -> None:
        t = _current.get()
        if t is not None and event == "/jax/compilation_cache/cache_hits":
            t.cache_hits += 1

    jax.monitoring.register_event_time_span_listener(on_span)
    jax.monitoring.register_event_listener(on_event)
    _listening = True


def format_timings(timings: dict[str, float | int]) -> list[str]:
    """The lines ``fglang fit --timings`` prints: one phase a line, then the total and the program counts."""
    counts = {k: v for k, v in timings.items() if k.startswith("programs")}
    phases = {k: float(v) for k, v in timings.items() if k not in counts}
    lines = [f"  {name:<14}{secs:8.3f} s" for name, secs in phases.items()]
    lines.append(f"  {'total':<14}{sum(phases.values()):8.3f} s")
    if counts:
        lines.append("  " + ", ".join(f"{k}: {v}" for k, v in counts.items()))
    return ["timings:"] + lines
