"""Whether a model's factor graph has a cycle.

Why: GBP's means are exact at convergence on any linear-Gaussian graph, but
its marginal variances are exact only on a tree; on a graph with loops they
are approximate and usually too small (a 2-D SLAM graph: landmark sds half
the Laplace ones). The summary says so on a loopy graph, with what to run
for the joint Gaussian's marginals (map's Laplace).

NumPy only: SciPy's ``csgraph.connected_components`` answered the same, but
importing ``scipy.sparse`` cost a warm GBP fit ~0.3 s (issue 18).
"""

from __future__ import annotations

import numpy as np

from fglang.compiler.bind import BoundModel


def has_loops(bm: BoundModel) -> bool:
    """A factor graph (members and var nodes, an edge where a member reads a
    node) is a forest iff its edges number its vertices less its connected
    components. Unary factors (priors) add an edge and a vertex each, so they
    never make a loop. NumPy over the slots' node ids, no loop over members."""
    offsets, total = {}, 0
    for name, v in bm.variables.items():
        offsets[name] = total
        total += v.n_nodes
    rows, cols, n_members = [], [], 0
    for fam in bm.families.values():
        if fam.n_members == 0 or not fam.slots:
            continue
        ids = [(offsets[s.var] + s.node_ids.reshape(fam.n_members, -1)) for s in fam.slots]
        ids = np.sort(np.concatenate(ids, axis=1), axis=1)  # a member's few nodes, sorted within the member
        member = np.repeat(np.arange(fam.n_members) + n_members, ids.shape[1]).reshape(ids.shape)
        # a member reading a node twice is one edge: drop a repeat of the node before it in its row
        # (a row sort of k ids, not a global np.unique over rows: 0.3 s on a 256^2 grid)
        first = np.ones(ids.shape, bool)
        first[:, 1:] = ids[:, 1:] != ids[:, :-1]
        rows.append(member[first])
        cols.append(ids[first])
        n_members += fam.n_members
    if not rows:
        return False
    r, c = np.concatenate(rows), np.concatenate(cols)
    n = n_members + total
    if r.size >= n:  # a forest has fewer edges than vertices: no components to count (a grid, a pose graph)
        return True
    return bool(r.size > n - n_components(n, r, n_members + c))


def n_components(n: int, u: np.ndarray, v: np.ndarray) -> int:
    """The number of connected components of the undirected graph on ``n``
    vertices with edges ``u[k] -- v[k]``: a union-find run on whole arrays
    (every round hooks each edge's larger root under its smaller one, then
    halves every path until each vertex points at its root), so the rounds,
    not the edges, are the Python loop: a few dozen on any graph we fit."""
    parent = np.arange(n)
    while True:
        pu, pv = parent[u], parent[v]  # roots: `parent` is fully compressed here
        differ = pu != pv
        if not differ.any():
            return int(np.count_nonzero(parent == np.arange(n)))
        lo, hi = np.minimum(pu[differ], pv[differ]), np.maximum(pu[differ], pv[differ])
        np.minimum.at(parent, hi, lo)  # a root under a smaller root: parents only decrease, never a cycle
        while True:
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
