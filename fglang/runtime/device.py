"""Device choice: one device, or a mesh of several."""

from __future__ import annotations

import contextlib
import contextvars

import jax

from fglang.errors import Diagnostic, FgError


def device_context(device: str | None):
    """``jax.default_device`` for 'cpu' or 'gpu'; a clear error when no GPU exists."""
    if device in (None, "", "auto"):
        return contextlib.nullcontext()
    if device not in ("cpu", "gpu"):
        raise FgError([Diagnostic(f"--device takes 'cpu' or 'gpu', got {device!r}", None)])
    try:
        devs = jax.devices(device)
    except RuntimeError:
        devs = []
    if not devs:
        raise FgError(
            [
                Diagnostic(
                    f"no {device.upper()} is visible to JAX on this machine",
                    None,
                    "install the GPU build with: pip install 'fglang[gpu]' (CUDA 12), or run with --device cpu",
                )
            ]
        )
    return jax.default_device(devs[0])


# ---------------------------------------------------------------------------
# Several devices: ``devices=N | "all"``

MESH_AXIS = "devices"
"""The one axis of the 1-D mesh a multi-device fit runs over."""

_mesh: contextvars.ContextVar = contextvars.ContextVar("fglang_mesh", default=None)


def parse_devices(devices: int | str | None) -> int | str:
    """``devices`` as given to ``fit`` or ``--devices``: a positive whole
    number or ``"all"`` (``None`` means 1, today's one-device fit)."""
    if devices is None:
        return 1
    if isinstance(devices, str):
        text = devices.strip().lower()
        if text == "all":
            return "all"
        if text.isascii() and text.isdigit():  # '¹'.isdigit() holds, int('¹') fails
            devices = int(text)
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise FgError([Diagnostic(f"devices takes a positive whole number or 'all', got {devices!r}", None)])
    return devices


def device_mesh(devices: int | str | None, device: str | None = None):
    """The ``jax.sharding.Mesh`` of the first N devices of the chosen platform
    (``device``, else JAX's default), one axis ``devices``; None for one device.

    Asking for more devices than exist is an error that says how to get more
    (on CPU: forced host devices, which must be set before JAX starts)."""
    n = parse_devices(devices)
    if n == 1:
        return None
    platform = None if device in (None, "", "auto") else device
    try:
        devs = jax.devices(platform) if platform else jax.devices()
    except RuntimeError:
        devs = []
    if n == "all":
        n = len(devs)
        if n <= 1:
            return None
    if n > len(devs):
        kind = (platform or (devs[0].platform if devs else "cpu")).lower()
        hint = (
            "on CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N before the process starts "
            "(JAX reads it once, when it starts)"
            if kind == "cpu"
            else f"use --devices {len(devs)} or --devices all"
        )
        raise FgError(
            [Diagnostic(f"{n} devices asked for, but JAX sees {len(devs)} {kind.upper()} device(s)", None, hint)]
        )
    import numpy as np
    from jax.sharding import Mesh

    return Mesh(np.asarray(devs[:n]), (MESH_AXIS,))


@contextlib.contextmanager
def mesh_context(mesh):
    """Make ``mesh`` the one that `current_mesh` returns inside the block
    (how a backend learns that its fit runs over several devices)."""
    token = _mesh.set(mesh)
    try:
        yield mesh
    finally:
        _mesh.reset(token)


def current_mesh():
    """The mesh of the fit now running (`mesh_context`), or None for one device."""
    return _mesh.get()


def device_names(mesh=None) -> list[str]:
    """What ``attrs["devices"]`` records: the devices a fit ran on."""
    if mesh is not None:
        return [str(d) for d in mesh.devices.flat]
    from fglang.runtime.dtypes import default_device

    return [str(default_device())]


# ---------------------------------------------------------------------------
# Several processes (hosts): ``--coordinator HOST:PORT --num-processes P --process-id I``

_joined: tuple | None = None


def join_processes(coordinator: str | None, num_processes: int | None, process_id: int | None) -> int:
    """Join this process to a multi-process run with ``jax.distributed.initialize``
    (once per process; the same arguments again are a no-op) and return the
    number of processes. After it, ``jax.devices()`` (and so `device_mesh`)
    holds every process's devices: one program runs on every process over a
    global mesh. ``coordinator="auto"`` lets JAX read the cluster's environment
    (SLURM's ``SLURM_*`` variables) instead of the two
    numbers. Nothing given: this fit runs in this process alone (1), joined
    or not (as the MAP start of a joined GBP fit does)."""
    global _joined
    if coordinator is None and num_processes is None and process_id is None:
        return 1
    if coordinator is None:
        raise FgError([Diagnostic("--num-processes and --process-id need --coordinator HOST:PORT", None,
                                  "give the address of process 0 to every process, e.g. --coordinator node0:8476, "
                                  "or --coordinator auto under SLURM")])
    auto = coordinator.strip().lower() == "auto"
    if not auto:
        port = coordinator.rsplit(":", 1)[1] if ":" in coordinator else ""
        if not (port.isascii() and port.isdigit()):
            raise FgError([Diagnostic(f"--coordinator takes HOST:PORT (or auto), got {coordinator!r}", None,
                                      "e.g. --coordinator localhost:8476: process 0's host and a free port")])
        if num_processes is None or process_id is None:
            raise FgError([Diagnostic("--coordinator HOST:PORT needs --num-processes P and --process-id I", None,
                                      "every process gets the same P and its own I in 0..P-1 (or use "
                                      "--coordinator auto under SLURM)")])
        if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
            raise FgError([Diagnostic(f"--num-processes takes a positive whole number, got {num_processes!r}", None)])
        if isinstance(process_id, bool) or not isinstance(process_id, int) or not 0 <= process_id < num_processes:
            raise FgError([Diagnostic(f"--process-id takes a whole number from 0 to {num_processes - 1}, got "
                                      f"{process_id!r}", None)])
    args = (coordinator, num_processes, process_id)
    if _joined is not None:
        if _joined != args:
            raise FgError([Diagnostic(f"this process already joined {_joined[0]} as process {_joined[2]} of "
                                      f"{_joined[1]}; JAX joins a process to one run only", None,
                                      "start a new process for another run")])
        return jax.process_count()
    try:
        if auto:
            jax.distributed.initialize()
        else:
            jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)
    except (RuntimeError, ValueError) as e:
        raise FgError([Diagnostic(f"could not join the run at {coordinator}: {str(e).splitlines()[0]}", None,
                                  "start every process with the same --coordinator and --num-processes (process 0 "
                                  "first listens there) before JAX has run anything in this process")]) from None
    _joined = args
    return jax.process_count()


def mesh_processes(mesh) -> int:
    """How many processes the devices of ``mesh`` belong to (1 for no mesh, or
    a mesh of this process's devices only): above 1, a fit over it is one
    program on every process, and what it fetches to the host must be
    replicated or gathered (`fetch`)."""
    if mesh is None:
        return 1
    return len({d.process_index for d in mesh.devices.flat})


def process_devices(mesh, process: int) -> list:
    """The devices of ``mesh`` that belong to process ``process``, in mesh order."""
    return [d for d in mesh.devices.flat if d.process_index == process]


def fetch(tree):
    """``np.asarray`` of every array of ``tree``, also of an array that lives
    partly on other processes' devices (a data-row-split result of a fit over
    several processes): that one is gathered (every process must call this at
    the same point, as it must every jitted call over the mesh)."""
    import numpy as np

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(one, tree)


def gather_blocks(tree):
    """Every process's ``tree`` of host arrays (the same shapes on every
    process) joined along the first axis, in process order (process 0's block
    first): how a fit that splits its chains over the processes gives every
    process all of them. Every process must call it at the same point."""
    import numpy as np
    from jax.experimental import multihost_utils

    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def all_processes_ok(ok: bool) -> list[int]:
    """The processes whose ``ok`` is False (every process must call it at the
    same point): lets a process that failed its part tell the others, which
    would otherwise wait for it at the next collective until JAX times out."""
    import numpy as np
    from jax.experimental import multihost_utils

    flags = np.asarray(multihost_utils.process_allgather(np.asarray([bool(ok)])), bool).reshape(-1)
    return [int(i) for i in np.flatnonzero(~flags)]


def broadcast_from_first(obj):
    """Process 0's ``obj`` (any picklable value of this program: arrays as
    NumPy) on every process (every process must call it at the same point;
    one process: ``obj`` itself). Why: a host-side step that every process runs
    alone (a SciPy mode search, an eigendecomposition) gives the same bits only
    on identical hosts; what feeds a program over the global mesh must be one
    value everywhere."""
    if jax.process_count() == 1:
        return obj
    import pickle

    import numpy as np
    from jax.experimental import multihost_utils

    first = jax.process_index() == 0
    blob = np.frombuffer(pickle.dumps(obj), np.uint8) if first else np.zeros(0, np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.asarray(blob.size, np.int32)))
    buf = np.zeros(size, np.uint8)
    if first:
        buf[:] = blob
    return pickle.loads(np.asarray(multihost_utils.broadcast_one_to_all(buf), np.uint8).tobytes())
