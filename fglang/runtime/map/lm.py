"""Levenberg-Marquardt (and Gauss-Newton) over any problem that gives a cost,
its gradient and a (Gauss-Newton or exact) Hessian.

Why Marquardt's scaling ``H + lam diag(H)`` (clamped like GTSAM's
``minDiagonal``/``maxDiagonal``): the damping is then invariant to the units
of each unknown, so one ``lambda_init`` serves a pose graph's metres and
radians and a regression's coefficients alike. ``lam`` is divided by 10
after a step that lowers the cost and multiplied by 10 after one that does
not (GTSAM's schedule). Gauss-Newton takes undamped steps, halving one that
raises the cost. The one host loop runs over iterations; everything per
factor is inside the problem's compiled linearization.

A step is applied by ``problem.retract(x, dx)``: ``x + dx`` for real
unknowns, ``x compose exp(dx)`` for group-valued ones (``manifold``), so
``x`` is the stored estimate and ``dx`` lives in the solver's tangent space.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import numpy as np

from fglang.runtime.map.solve import SingularError

MIN_DIAGONAL, MAX_DIAGONAL = 1e-6, 1e32
LAMBDA_MAX = 1e16


class Problem(Protocol):
    n: int

    def cost(self, x: np.ndarray) -> float: ...

    def linearize(self, x: np.ndarray) -> tuple[float, np.ndarray, Any]: ...

    def diagonal(self, h: Any) -> np.ndarray: ...

    def damped(self, h: Any, add: np.ndarray) -> Any: ...

    def retract(self, x: np.ndarray, dx: np.ndarray) -> np.ndarray: ...


class Solver(Protocol):
    def factor(self, h: Any) -> None: ...

    def solve(self, b: np.ndarray) -> np.ndarray: ...


class LMState(NamedTuple):
    """Where the optimizer stands after an iteration."""

    x: np.ndarray
    cost: float
    lam: float
    iteration: int
    converged: bool
    history: tuple[float, ...]


class LMResult(NamedTuple):
    x: np.ndarray
    cost: float
    initial_cost: float
    iterations: int
    converged: bool
    stalled: bool  # no step lowered the cost further (a minimum up to rounding)
    lam: float
    history: list[float]
    linearizations: int
    factorizations: int
    wall_time_s: float


class Failure(Exception):
    """The optimizer cannot go on; ``reason`` says why, for the FgError."""

    def __init__(self, reason: str, iteration: int):
        super().__init__(reason)
        self.reason, self.iteration = reason, iteration


def optimize(
    problem: Problem,
    solver: Solver,
    x0: np.ndarray,
    *,
    method: str = "lm",
    iters: int = 100,
    tol: float = 1e-10,
    lambda_init: float = 1e-5,
    eps: float = 2.2e-16,
    callback: Callable[[LMState], None] | None = None,
) -> LMResult:
    """Minimize from ``x0``. Converged: the last step lowered the cost by at
    most ``tol`` relative to it, or no step lowers it by more than rounding
    (``eps``, the dtype's machine epsilon): the floor is reached without
    damping up to ``LAMBDA_MAX`` first."""
    t0 = time.perf_counter()
    x = np.asarray(x0, np.float64).copy()
    cost = problem.cost(x)
    if not np.isfinite(cost):
        raise Failure("the cost is not finite at the initial values", 0)
    initial, history = cost, [cost]
    lam = lambda_init if method == "lm" else 0.0
    converged = stalled = False
    n_lin = n_fac = 0
    it = 0
    for it in range(1, iters + 1):
        cost, g, h = problem.linearize(x)
        n_lin += 1
        if not np.all(np.isfinite(g)):
            raise Failure("the gradient is not finite", it)
        if not np.any(g):
            converged = True
            it -= 1
            break
        scale = np.clip(problem.diagonal(h), MIN_DIAGONAL, MAX_DIAGONAL)
        new, step = np.inf, None
        while True:
            try:
                solver.factor(problem.damped(h, lam * scale) if lam > 0 else h)
                n_fac += 1
                dx = -solver.solve(g)
            except SingularError:
                if method == "gn":
                    raise Failure("the Gauss-Newton system is singular or not positive definite", it) from None
                dx = None
            if dx is not None and np.all(np.isfinite(dx)):
                if method == "gn":
                    t = 1.0
                    while t > 1e-10:
                        new = problem.cost(problem.retract(x, t * dx))
                        if np.isfinite(new) and new <= cost:
                            break
                        t *= 0.5
                    step = t * dx
                    break
                new = problem.cost(problem.retract(x, dx))
                if np.isfinite(new) and new <= cost:
                    step = dx
                    lam = max(lam / 10.0, 1e-15)
                    break
                if np.isfinite(new) and new - cost <= 64 * eps * max(abs(cost), 1.0):
                    break  # the cost is flat to rounding here: a minimum
            if method == "gn" or lam * 10.0 > LAMBDA_MAX:
                break
            lam = lam * 10.0 if lam > 0 else lambda_init
        if step is None or not (np.isfinite(new) and new <= cost):
            stalled = True
            if it == 1 and np.max(np.abs(g)) > 1e-6 * max(abs(cost), 1.0):
                raise Failure("no step from the initial values lowers the cost", it)
            converged = True  # no representable step lowers the cost: a minimum up to rounding
            break
        decrease = cost - new
        x, cost = problem.retract(x, step), new
        history.append(cost)
        if callback is not None:
            callback(LMState(x, cost, lam, it, False, tuple(history)))
        if decrease <= tol * max(abs(cost), 1.0):
            converged = True
            break
    return LMResult(x, cost, initial, it, converged, stalled, lam, history, n_lin, n_fac, time.perf_counter() - t0)
