"""The engine's traced data and state: typed pytrees (NamedTuples) of arrays.

`EngineData` is what a run reads but never changes (per-family member data,
per-var priors, the run's numeric settings); `EngineState` is what the
iterations carry (every family's messages, every var's linearization point
and last belief, the convergence and divergence bookkeeping). Both are
arguments of the compiled chunk (`iteration.run_chunk`), so the chunk is
compiled once per graph structure and reused for new data of the same shapes.
Their static counterpart, the hashable jit cache key, is `plan.Plan`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

Array = jax.Array

STATUS_RUNNING = 0
STATUS_CONVERGED = 1
STATUS_NONFINITE_MESSAGES = 2
STATUS_NONFINITE_BELIEFS = 3
STATUS_GROWING = 4


class AffineTerms(NamedTuple):
    """An affine family's residual ``r(x) = J x - c``: ``J`` per slot and ``c``.

    ``[M, R, d_s]`` and ``[M, R]``, or one row (``[1, ...]``) for a uniform
    family (`plan.FamilyPlan.uniform`), broadcast inside the kernels.
    """

    jacobians: tuple[Array, ...]
    target: Array


class FamilyData(NamedTuple):
    """One family's member data."""

    ids: tuple[Array | None, ...]
    """Node ids per slot, member order (None for a grid slot: a static slice)."""
    inputs: Any
    """Per-member data (leading axis ``M``), or None if it has none."""
    shared: Any
    """Data every member reads (`GaussianFamily.shared`), or None."""
    precision: Array | None
    """Noise precision ``[M or 1, R]`` (diagonal) or ``[M or 1, R, R]``; None
    for a sparsity prior (its precision is re-estimated every iteration)."""
    robust: Array | None
    """The robust loss's parameter per member, or None."""
    sparsity: tuple[Array, ...] | None
    """The sparsity prior's parameters, ``[M, R]`` each, or None."""
    floor: Array | None = None
    """Pivot floor of its solves: the smallest flat-prior floor of its vars."""
    affine: AffineTerms | None = None
    """`AffineTerms` of an affine family, set once per chunk (`messages.affine_terms`)."""


class VarData(NamedTuple):
    """One var's priors and floors (``[n, d]``, ``[n, d, d]``, scalars)."""

    prior_eta: Array
    prior_lam: Array
    """Node priors in information form; folded unary families are added to
    them once per chunk (`messages.fold_unary`)."""
    floor: Array
    """Pivot floor of the var's belief solves."""
    reg: Array
    """Precision of the flat-prior stand-in (0 for a var with a prior)."""


class Settings(NamedTuple):
    """The run's numeric options, as traced scalars (new values: no recompile)."""

    damping: Array
    undamped_iters: Array
    """Iterations a nonlinear factor runs undamped after one of its nodes was re-linearized."""
    dropout: Array
    relinearize_threshold: Array
    tol: Array
    precision_rtol: Array
    divergence_ratio: Array
    divergence_patience: Array
    max_iters: Array
    seed: Array


class EngineData(NamedTuple):
    families: tuple[FamilyData, ...]
    variables: tuple[VarData, ...]
    settings: Settings


class FamilyState(NamedTuple):
    """A family's factor-to-variable messages, one array per slot.

    ``eta [M, d]``, ``lam [M, d, d]`` in the slot's stored shape
    (`plan.stored_shape`). Variable-to-factor messages are not stored: they
    are ``belief - own message``.
    """

    eta: tuple[Array, ...]
    lam: tuple[Array, ...]


class VarState(NamedTuple):
    lin: Array
    """Linearization point ``[n, d]`` (not updated for an affine-only var)."""
    mean: Array
    """Belief mean of the last iteration ``[n, d]``."""
    lam_diag: Array
    """Diagonal of the last belief precision ``[n, d]``."""
    since: Array
    """Iterations since the node was last re-linearized ``[n]`` (int32): a
    nonlinear factor is not damped while one of its nodes is fresher than
    ``Settings.undamped_iters``."""
    origin: Array
    """A group var's chart origins ``[n, *storage]``: node ``k`` is ``origin[k]
    compose exp(delta)``, and ``lin``, ``mean`` and the messages are over
    ``delta`` (`charts.py`). Empty (``[0]``) for a real var."""


class EngineState(NamedTuple):
    families: tuple[FamilyState, ...]
    variables: tuple[VarState, ...]
    iteration: Array
    """Iterations committed so far (the 0-based index of the next one)."""
    min_delta: Array
    """Running minimum of the belief change (the growth detector's reference)."""
    grow: Array
    """Consecutive iterations with the belief change far above ``min_delta``."""
    conv_count: Array
    """Consecutive iterations that met the convergence test."""
    status: Array
    """One of the ``STATUS_*`` codes."""
    bad_families: Array
    """``[n_families]`` bool: the families blamed for a divergence."""
    bad_variables: Array
    """``[n_vars]`` bool: the vars whose beliefs became non-finite."""


class Beliefs(NamedTuple):
    """Every var's belief in information form: ``eta [n, d]``, ``lam [n, d, d]`` per var."""

    eta: tuple[Array, ...]
    lam: tuple[Array, ...]


class ChunkResult(NamedTuple):
    state: EngineState
    history: Array
    """``[chunk]`` belief change per iteration run (NaN past ``n_iterations``)."""
    n_iterations: Array
    beliefs: Beliefs
    """Beliefs of the final state (read out without a second compiled function)."""
