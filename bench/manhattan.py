"""A seeded synthetic Manhattan-world 2-D pose graph, in the data layout of SPEC's ``pose_graph_2d``.

Why: M3500 is one graph of 3500 poses; the GBP schedules must also hold on a
larger graph of the same family (issue 14 asks for 20,000 poses without
divergence). The robot walks a grid of streets one unit per step, turning
left or right at random (Olson et al.'s Manhattan world); every time it comes
back to a grid point it visited before it closes a loop to one earlier visit
(with probability ``closure_p``). Odometry and loop-closure measurements get
Gaussian noise of M3500's scale; the initial guess is the composed odometry
with its angles wrapped into (-pi, pi], as in the g2o files.

    from manhattan import manhattan_graph
    data, init = manhattan_graph(20000, seed=0)
"""

from __future__ import annotations

import numpy as np

SD = np.array([0.1, 0.1, 0.05])
"""Per-edge standard deviations (x, y, theta): M3500's middle class."""


def _between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    c, s = np.cos(a[..., 2]), np.sin(a[..., 2])
    dx, dy = b[..., 0] - a[..., 0], b[..., 1] - a[..., 1]
    return np.stack([c * dx + s * dy, -s * dx + c * dy, b[..., 2] - a[..., 2]], axis=-1)


def _compose(a: np.ndarray, d: np.ndarray) -> np.ndarray:
    c, s = np.cos(a[2]), np.sin(a[2])
    return np.array([a[0] + c * d[0] - s * d[1], a[1] + s * d[0] + c * d[1], a[2] + d[2]])


def manhattan_graph(n: int, seed: int = 0, *, size: int = 40, turn_p: float = 0.3,
                    closure_p: float = 0.5) -> tuple[dict, dict]:
    """``(data, init)``: ``n`` poses on a ``size`` x ``size`` street grid (seeded)."""
    rng = np.random.default_rng(seed)
    heading = 0
    cell = np.array([0, 0])
    truth = np.zeros((n, 3))
    visits: dict[tuple[int, int], list[int]] = {(0, 0): [0]}
    src, dst = [], []
    steps = {0: (1, 0), 1: (0, 1), 2: (-1, 0), 3: (0, -1)}
    for k in range(1, n):
        if rng.random() < turn_p:
            heading = (heading + rng.choice([-1, 1])) % 4
        nxt = cell + steps[heading]
        while np.any(np.abs(nxt) > size // 2):  # the city's edge: turn around
            heading = (heading + 1) % 4
            nxt = cell + steps[heading]
        cell = nxt
        truth[k] = [cell[0], cell[1], truth[k - 1, 2] + np.angle(np.exp(1j * (heading * np.pi / 2 - truth[k - 1, 2])))]
        src.append(k - 1)
        dst.append(k)
        key = (int(cell[0]), int(cell[1]))
        earlier = visits.setdefault(key, [])
        if earlier and rng.random() < closure_p:
            src.append(int(rng.choice(earlier)))
            dst.append(k)
        earlier.append(k)
    src_a, dst_a = np.array(src), np.array(dst)
    z = _between(truth[src_a], truth[dst_a])
    z[:, 2] = np.angle(np.exp(1j * z[:, 2]))
    z = z + rng.standard_normal(z.shape) * SD
    odo = np.zeros((n, 3))
    chain = {d: i for i, (s_, d) in enumerate(zip(src, dst, strict=True)) if d == s_ + 1}
    for k in range(1, n):
        odo[k] = _compose(odo[k - 1], z[chain[k]])
    odo[:, 2] = np.angle(np.exp(1j * odo[:, 2]))  # stored wrapped, as a g2o file stores them
    sd = np.tile(SD, (len(src), 1))
    data = {"N": n, "M": len(src), "src": src_a.tolist(), "dst": dst_a.tolist(), "z": z.tolist(), "sd": sd.tolist()}
    return data, {"pose": odo}
