"""NUTS over several processes (``--coordinator``, issue 17): the chains split
into one block per process.

Why blocks of chains and not one program over the global mesh: NUTS chains
never talk to each other, so a process needs no collective while it samples;
each runs its block on its own devices (one chain per local device, NumPyro's
``pmap``, where it has enough of them; else vectorized on one, as the
exported program), and the draws meet once, at the end
(`device.gather_blocks`, JAX's ``process_allgather``). Every process then
holds the whole posterior; process 0 writes it.

The chains are those of a one-process run of all of them with the same seed:
the seed's key is split into one key per chain exactly as ``MCMC.run``
splits it, and process ``i`` runs chains ``i * C/P .. (i + 1) * C/P - 1`` from
their own keys (their starts, screened per chain (`starts`), their warm-up
and their draws depend on nothing else). So two processes of 2 chains give
the draws of one process of 4 (vectorized over 2 chains or over 4: equal to
float round-off, bit for bit where XLA's vectorized code is the same; a block
of one chain runs unvectorized).

The chains must divide evenly over the processes: JAX's gather joins blocks
of one shape, and an uneven split would leave a process waiting for the
slowest block anyway; other counts are an error before anything runs, which
says which counts work. A process that fails its block (a start no chain of
it can leave, an error) tells the others before they wait for its draws, and
every process stops with an error.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from fglang.compiler.bind import BoundModel
from fglang.errors import Diagnostic, FgError
from fglang.runtime.carry import CarriedMarginal
from fglang.runtime.device import all_processes_ok, gather_blocks, process_devices
from fglang.runtime.mcmc.options import McmcOptions


def chain_block(chains: int, processes: int, process: int) -> tuple[int, int]:
    """(first, end) of the chains process ``process`` of ``processes`` runs;
    an error naming the chain counts that work when they do not divide."""
    if chains % processes:
        lower = chains // processes * processes
        fits = f"{lower} or {lower + processes}" if lower else f"{processes}"
        raise FgError([Diagnostic(
            f"{chains} chain(s) over {processes} processes: mcmc runs the same number of chains in every process",
            None, f"give a multiple of {processes} chains (--chains {fits}), or run fewer processes")])
    per = chains // processes
    return process * per, (process + 1) * per


def local_chain_method(asked: str, chains: int, n_dev: int) -> tuple[str, str]:
    """How one process runs its block of ``chains`` on its ``n_dev`` devices
    (as `fit._chain_method` decides for one process), and why where it is
    not what was asked."""
    if asked == "auto":
        if n_dev > 1 and 1 < chains <= n_dev:
            return "parallel", ""
        if n_dev > 1 and chains > n_dev:
            return "vectorized", (f"{chains} chains per process on {n_dev} devices each: NUTS runs one chain per "
                                  f"device, so each process ran its chains vectorized on one device")
        return "vectorized", ""
    if asked == "parallel" and chains > n_dev:
        return "sequential", (f"chain_method parallel needs a device per chain ({chains} chains per process, "
                              f"{n_dev} device(s) each): the chains ran sequentially")
    return asked, ""


def run_processes(
    bm: BoundModel, o: McmcOptions, dtype: str, mesh: Any, *, seed: int, init: dict,
    carried: dict[str, CarriedMarginal], progress: bool,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], str, str, list[str]]:
    """(draws and stats of all ``o.chains`` chains, gathered on every process;
    the chain method of a process's block; its note; the devices every
    process ran its block on) of the fit over ``mesh``'s processes."""
    from fglang.runtime.mcmc.exported import run_nuts_program
    from fglang.runtime.mcmc.fit import _run_mcmc

    processes, me = jax.process_count(), jax.process_index()
    first, end = chain_block(o.chains, processes, me)
    local = dataclasses.replace(o, chains=end - first)
    key = jax.random.PRNGKey(seed)
    keys = np.asarray(jax.random.split(key, o.chains) if o.chains > 1 else key[None])[first:end]
    keys = keys if local.chains > 1 else keys[0]

    def method_of(process: int) -> tuple[str, str]:
        return local_chain_method(o.chain_method, local.chains, len(process_devices(mesh, process)))

    method, note = method_of(me)
    progress = progress and me == 0  # one bar, process 0's
    try:
        if method == "vectorized" or local.chains == 1:
            with jax.default_device(process_devices(mesh, me)[0]):
                draws, stats = run_nuts_program(bm, local, dtype, seed=seed, init=init, carried=carried,
                                                progress=progress, chain_keys=keys)
        else:
            draws, stats = _run_mcmc(bm, local, method, seed, init, carried, progress, chain_keys=keys)
        failed = all_processes_ok(True)
    except Exception:
        all_processes_ok(False)
        raise  # this process's own error (a bad start is located by fit.fit)
    if failed:
        raise FgError([Diagnostic(
            f"process {', '.join(map(str, failed))} could not run its chains "
            f"({', '.join(f'{a}..{b - 1}' for a, b in (chain_block(o.chains, processes, p) for p in failed))}); "
            "its own error says why", None, "see that process's output")])
    stats = {k: np.reshape(v, (local.chains, -1)) if k == "step_size" else v for k, v in stats.items()}
    draws, stats = gather_blocks((draws, stats))
    stats["step_size"] = np.reshape(stats["step_size"], -1)
    devices = []
    for p in range(processes):
        used = 1 if method_of(p)[0] != "parallel" else local.chains
        devices += [str(d) for d in process_devices(mesh, p)[:used]]
    return draws, stats, method, note, devices
