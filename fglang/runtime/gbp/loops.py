"""Whether a model's factor graph has a cycle.

Why: GBP's means are exact at convergence on any linear-Gaussian graph, but
its marginal variances are exact only on a tree; on a graph with loops they
are approximate and usually too small (a 2-D SLAM graph: landmark sds half
the Laplace ones). The summary says so on a loopy graph, with what to run
for the joint Gaussian's marginals (map's Laplace).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

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
    graph = coo_matrix((np.ones(r.size), (r, n_members + c)), shape=(n, n))
    components, _ = connected_components(graph, directed=False)
    return bool(r.size > n - components)
