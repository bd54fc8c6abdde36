"""Chains that disagree: after a NUTS fit with several chains, find the
chains that settled somewhere else (a chain that stopped moving, or a
second mode) and say which, where, and what to change.

Why a check of its own next to R-hat: R-hat says *that* the chains differ
("run more draws"), which is the wrong advice when one chain is frozen or
sits in a second mode that more draws will not leave. ARMA(1,1) (posteriordb
``arma11``, four default chains, seed 0, before NUTS's starts were screened
(`starts`), which now keeps chains out of such places) is the case behind
it: one chain started with ``|theta| > 1``, where the moving-average recursion explodes
(the errors grow like ``|theta|^t``), its warm-up shrank the step size to
2.7e-16 and it never accepted a proposal: its draws are one point whose
log density is 3e5 below the others'. What a user needs then is *which*
chain, the per-chain means side by side, which place the density favours,
whether the chain moved at all, and the ways out.

The test, robust to a frozen chain (its own sd 0) and to heavy tails: two
chains agree when, for every element of every var, their means are at most
``SEPARATION`` pooled within-chain sds apart (``sqrt((s_a^2 + s_b^2) / 2)``).
Within one mode the gap between two chain means is about
``sd * sqrt(2 / ess_per_chain)``, a fraction of an sd for any chain with an
ESS above a few, so 3 sds is far outside what mixing chains produce even
over many elements, while a second mode or a frozen chain is usually tens of
sds away. Chains that agree (directly or through others) form a group; the
largest group is the reference, the others are named. A chain is *frozen*
when no element varies (sd below ``FROZEN`` times the largest other chain's,
or exactly 0): it is a group of its own wherever it stopped. Only NumPy over
[chain, element] arrays and a loop over pairs of chains: none over draws or
elements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SEPARATION = 3.0  # pooled within-chain sds between two chain means that are called different
FROZEN = 1e-6  # a chain whose every sd is below this fraction of the other chains' did not move
SHOWN = 4  # elements shown per warning: the most separated ones


@dataclass(frozen=True)
class ChainGroups:
    """Chains split into groups that agree within themselves.

    ``groups`` lists chain indices, the reference group (the largest; ties:
    the one of higher mean log density, then of the lowest chain) first.
    ``means[g, k]``: the mean of element k over the draws of group g;
    ``separation[k]``: the largest gap between a named group and the
    reference on element k, in pooled within-chain sds; ``lp[g]``: the mean
    log density of group g (None without one) and ``lp_sd`` its pooled
    within-chain sd (how far apart two means must be to mean anything);
    ``frozen``: the chains whose draws do not move."""

    groups: list[list[int]]
    means: np.ndarray
    separation: np.ndarray
    lp: np.ndarray | None
    frozen: list[int]
    lp_sd: float = 0.0


def chain_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-chain means and variances [chain, k] of draws [chain, draw, ...]."""
    x = np.asarray(x, np.float64)
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    return flat.mean(axis=1), flat.var(axis=1, ddof=1)


def chain_groups(m: np.ndarray, v: np.ndarray, lp: np.ndarray | None = None,
                 separation: float = SEPARATION) -> ChainGroups | None:
    """Group the chains by their means ``m`` and variances ``v`` [chain, k]
    (``chain_moments``; every chain the same number of draws); None when
    every chain agrees with the others (or there is one chain).

    ``lp`` [chain, draw]: the log density of each draw, to tell which group
    sits where the posterior is higher."""
    m, v = np.asarray(m, np.float64), np.asarray(v, np.float64)
    if m.ndim != 2 or m.shape[0] < 2 or m.shape[1] == 0:
        return None
    c = m.shape[0]

    def z(a: int, b: int) -> np.ndarray:
        """The gap between chains a and b per element, in their pooled sd
        (one pair at a time: memory of one element vector, chains are few)."""
        gap = np.abs(m[a] - m[b])
        pooled = np.sqrt((v[a] + v[b]) / 2)
        tiny = 1e-12 * (1.0 + np.abs(m[a]) + np.abs(m[b]))
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(pooled > tiny, gap / pooled, np.where(gap > tiny, np.inf, 0.0))
        return np.where(np.isfinite(gap) & np.isfinite(pooled), out, 0.0)  # a NaN or inf draw is not a mode

    sd = np.sqrt(np.maximum(v, 0.0))
    others = np.stack([np.max(np.delete(sd, i, axis=0), axis=0) for i in range(c)])
    frozen = np.all((sd <= FROZEN * others) | (sd == 0), axis=1)
    agree = np.eye(c, dtype=bool)
    for a in range(c):
        for b in range(a + 1, c):
            agree[a, b] = agree[b, a] = not (frozen[a] or frozen[b]) and bool(np.all(z(a, b) <= separation))
    groups = _components(agree)
    if len(groups) == 1:
        return None
    lp_chain = lp_sd = None
    if lp is not None:
        lp = np.asarray(lp, np.float64)
        lp_chain = lp.mean(axis=1)
        moving = ~frozen if not np.all(frozen) else np.ones(c, bool)  # a frozen chain's spread is no spread
        lp_sd = float(np.sqrt(np.mean(lp[moving].var(axis=1, ddof=1)))) if lp.shape[1] > 1 else 0.0
    lp_group = None if lp_chain is None else np.array([lp_chain[g].mean() for g in groups])

    def rank(i: int) -> tuple:
        return (-len(groups[i]), -(lp_group[i] if lp_group is not None else 0.0), groups[i][0])

    order = sorted(range(len(groups)), key=rank)
    groups = [groups[i] for i in order]
    lp_group = None if lp_group is None else lp_group[order]
    means = np.stack([m[g].mean(axis=0) for g in groups])
    ref = groups[0]
    sep = np.max(np.stack([np.min(np.stack([z(a, b) for a in ref for b in g]), axis=0) for g in groups[1:]]),
                 axis=0)
    return ChainGroups(groups, means, sep, lp_group, [int(c) for c in np.flatnonzero(frozen)], lp_sd or 0.0)


def _components(agree: np.ndarray) -> list[list[int]]:
    """Connected components of the 'agree' relation over the chains (a loop
    over the few chains, never over draws or elements)."""
    c = agree.shape[0]
    reach = agree | agree.T | np.eye(c, dtype=bool)
    for _ in range(max(c.bit_length(), 1)):  # transitive closure by squaring
        reach = (reach.astype(np.int64) @ reach.astype(np.int64)) > 0
    seen: set[int] = set()
    out = []
    for i in range(c):
        if i not in seen:
            members = [int(j) for j in np.flatnonzero(reach[i])]
            seen.update(members)
            out.append(members)
    return out


def _chains(g: list[int]) -> str:
    return f"chain {g[0]}" if len(g) == 1 else "chains " + ", ".join(map(str, g))


def disagreement_warning(found: ChainGroups, label: Callable[[int], str],
                         step_size: list[float] | None = None) -> str:
    """The warning text: which chains, their means next to the others' (the
    ``SHOWN`` elements furthest apart, ``label(k)`` naming element k), the
    mean log density of each group, whether a chain did not move (with its
    final step size when ``step_size`` gives one per chain), and what to
    change."""
    ref, others = found.groups[0], found.groups[1:]
    named = [c for g in others for c in g]
    if len(others[0]) == len(ref):
        head = f"the chains disagree: {' | '.join(_chains(g) for g in found.groups)} settled in different places"
    else:
        head = f"{_chains(named)} disagree{'s' if len(named) == 1 else ''} with {_chains(ref)}"
    why = f"per-chain means more than {SEPARATION:g} within-chain sds apart"
    head += f" ({why}{', or a chain that did not move' if found.frozen else ''}), and the pooled summary mixes them"
    apart = int(np.sum(found.separation > SEPARATION))
    shown = np.argsort(-found.separation, kind="stable")[:SHOWN]
    shown = np.sort(shown[found.separation[shown] > SEPARATION]) if apart else shown
    cols = ["mean"] + [_chains(g) for g in found.groups]
    rows = [[label(int(k))] + [f"{found.means[i, k]:.4g}" for i in range(len(found.groups))] for k in shown]
    if found.lp is not None:
        rows.append(["log density"] + [f"{a:.6g}" for a in found.lp])
    width = [max(len(r[j]) for r in [cols] + rows) for j in range(len(cols))]
    lines = [head + ":"]
    lines += ["  " + "  ".join(s.rjust(w) if j else s.ljust(w) for j, (s, w) in enumerate(zip(r, width, strict=True)))
              for r in [cols] + rows]
    if apart > len(shown):
        lines.append(f"  ... and {apart - len(shown)} more elements apart")
    drop = named
    if found.lp is not None:
        best = int(np.argmax(found.lp))
        gap = float(found.lp[best] - np.delete(found.lp, best).max())
        g = found.groups[best]
        if gap > SEPARATION * found.lp_sd:
            drop = [c for i, h in enumerate(found.groups) if i != best for c in h]
            lines.append(f"  {_chains(g)} sit{'s' if len(g) == 1 else ''} where the mean log density is higher "
                         f"(by {gap:.3g}, Jacobian included; its sd within a chain is {found.lp_sd:.2g})")
        else:
            lines.append(f"  the mean log densities are about the same (within {gap:.2g}; their sd within a chain "
                         f"is {found.lp_sd:.2g}): modes the posterior supports alike, as a symmetry of the model "
                         "(a sign, the labels of a mixture) makes them")
    if found.frozen:
        f = found.frozen
        why = ""
        if step_size is not None and len(step_size) == _n_chains(found):
            moving = [step_size[c] for c in range(len(step_size)) if c not in f]
            why = (f": its warm-up left a step size of {', '.join(f'{step_size[c]:.2g}' for c in f)}"
                   + (f" (the others {min(moving):.2g} to {max(moving):.2g})" if moving else ""))
        lines.append(f"  {_chains(f)} did not move (every draw the same){why}: stuck where it started or where "
                     "the warm-up left it, not a second mode; a starting point where the density is extreme "
                     "(a recursion that explodes, a scale near 0) often does this")
    lines.append(
        "  to change: start every chain at the mode (--init map, or --init FILE), bound the vars that tell the "
        "places apart to the region that makes sense (real(lower=..., upper=...)) or narrow their priors, give "
        f"the warm-up longer (--warmup), or drop the chain{'s' if len(drop) > 1 else ''} "
        f"(Python: post.drop_chains([{', '.join(map(str, drop))}]))"
    )
    return "\n".join(lines)


def _n_chains(found: ChainGroups) -> int:
    return sum(len(g) for g in found.groups)
