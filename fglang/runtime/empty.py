"""Models with nothing to fit are legal: a model with no vars, vars of size
zero, a family with no members, a factor that touches no var.

Every backend assumes at least one node and one member (GBP's graph refuses
an empty var, VI's guide divides by the number of sites, the Laplace step
indexes the first unknown), so ``fit`` hands a backend only what has
something to fit, and puts the empty vars back into the posterior as
arrays of their (empty) shape. A factor that touches no var is a constant
of the log density: it changes no posterior, so it is left out as well.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fglang.compiler.bind import BoundModel
from fglang.runtime.posterior import AUX_MARK, Posterior

NOTHING = f"{AUX_MARK}nothing"  # hidden, like every auxiliary site


def _size(v) -> int:
    return int(np.prod(v.node_shape + v.value_shape, dtype=object))


def prune(bm: BoundModel) -> BoundModel:
    """``bm`` without empty vars and without the families and lets that touch only them (or nothing)."""
    empty = {n for n, v in bm.variables.items() if _size(v) == 0}
    fams = {
        n: f for n, f in bm.families.items()
        if f.n_members > 0 and f.slots and not all(s.var in empty for s in f.slots)
    }
    used = {s.var for f in fams.values() for s in f.slots}
    reads = {n: [d.slots[i] for i in d.reads] for n, d in bm.derived.items()}  # d.slots: all lets' slots
    derived = {n: d for n, d in bm.derived.items() if not reads[n] or not all(s.var in empty for s in reads[n])}
    used |= {s.var for n in derived for s in reads[n]}
    keep = {n for n in bm.variables if n not in empty or n in used}
    if keep == set(bm.variables) and fams.keys() == bm.families.keys() and derived.keys() == bm.derived.keys():
        return bm
    ir = replace(
        bm.ir,
        variables={n: v for n, v in bm.ir.variables.items() if n in keep},
        families={n: f for n, f in bm.ir.families.items() if n in fams},
        derived={n: d for n, d in bm.ir.derived.items() if n in derived},
    )
    return replace(bm, ir=ir, variables={n: v for n, v in bm.variables.items() if n in keep},
                   families=fams, derived=derived)


def nothing_to_fit(bm: BoundModel) -> bool:
    return not bm.variables


def empty_posterior(bm: BoundModel, backend: str) -> Posterior:
    """The posterior of a model with no unknowns: no draws (one hidden placeholder
    site, since ArviZ writes no file for a posterior with no variables)."""
    return Posterior(bm.name, backend, {NOTHING: np.zeros((1, 1))}, attrs={"empty": True})


def restore(post: Posterior, full: BoundModel, ran: BoundModel) -> Posterior:
    """Put the empty vars the backend never saw back into ``post`` (empty arrays of their shape)."""
    lead = next(iter(post.draws.values())).shape[:2] if post.draws else (1, 1)
    for name, v in full.variables.items():
        if name in post.draws or name in post.gaussian or (name in ran.variables and _size(v) > 0):
            continue  # an empty var a live factor reads has no sample site either (numpyro_model)
        post.draws[name] = np.zeros(lead + v.node_shape + v.value_shape)
        post.node_shapes[name] = v.node_shape
    return post
