"""The ``map`` backend's fit: choose the path, run LM, report the Laplace
approximation as a Posterior.

Two paths, chosen by what the model contains (``path=auto``):

- ``lsq``: every var real, every factor Gaussian or robust (normal,
  mvnormal, huber, student_t) with known scales. The cost is a sum of
  whitened squared (or robust) residuals; LM runs on the sparse Gauss-Newton
  system ``J^T W J`` (IRLS weights for robust factors), factorized by a
  sparse LDL^T whose symbolic analysis is done once per model shape. The
  Laplace covariance is ``(J^T W J)^{-1}`` at the mode (exact for
  linear-Gaussian models), its node blocks by selected inversion; for
  robust factors ``W`` holds the cost's curvature ``rho''`` there, not the
  IRLS weights (exact for linear residuals; the IRLS weights only when
  ``rho''`` leaves the Hessian singular, with a warning).
  Group-valued vars (``pose3``, ...) are linearized in the tangent space at
  the current estimate and updated by ``x compose exp(delta)``
  (``manifold``); their covariance is the tangent one at the mode.
- ``general``: anything else; LM/Newton on NumPyro's potential energy in the
  unconstrained space with the exact dense Hessian (up to ``max_dense``
  unknowns). The Laplace approximation is Gaussian in the unconstrained
  space; its draws are mapped back through the vars' transforms, so a
  constrained var's mean and sd come from those draws.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import numpy as np

from fglang.compiler.bind import BoundModel
from fglang.compiler.limits import memory_limit, refuse_over_limit
from fglang.errors import Diagnostic, FgError
from fglang.runtime.carry import CarriedMarginal
from fglang.runtime.device import current_mesh
from fglang.runtime.gaussian import default_start, derived_marginals, node_draws
from fglang.runtime.manifold import has_groups, identity, is_group, normalized, tangent_dim
from fglang.runtime.map import laplace
from fglang.runtime.map.lm import Failure, LMResult, optimize
from fglang.runtime.map.options import MapOptions
from fglang.runtime.map.residuals import blocks, lsq_reason
from fglang.runtime.map.solve import DenseCholesky, SingularError, SparseLDL
from fglang.runtime.posterior import GaussianMarginal, Posterior
from fglang.runtime.progress import progress_bar
from fglang.runtime.values import located_bad_start

_HINT = ("give --init closer to the mode (a pose graph needs its odometry guess), keep --dtype float64, "
         "check the factors' scales (a sd far from the data's units), or use --method lm")


def fit_map(
    bm: BoundModel,
    o: MapOptions,
    *,
    seed: int = 0,
    init: dict[str, np.ndarray] | None = None,
    carried: dict[str, CarriedMarginal] | None = None,
    progress: bool = False,
) -> Posterior:
    if o.dtype == "float64" and not jax.config.jax_enable_x64:
        with jax.enable_x64(True):
            return _fit(bm, o, seed, dict(init or {}), dict(carried or {}), progress)
    return _fit(bm, o, seed, dict(init or {}), dict(carried or {}), progress)


def choose_path(bm: BoundModel, o: MapOptions, carried: set[str]) -> str:
    skip = {f.name for f in bm.families.values() if f.ir.prior_of is not None and f.ir.prior_of in carried}
    reason = lsq_reason(bm, skip)
    if reason is not None and has_groups(bm):
        v = next(v for v in bm.variables.values() if is_group(v))
        raise FgError([Diagnostic(
            f"map runs {v.domain.kind} vars ('{v.name}') on its least-squares path only, but {reason}", v.span,
            "write every factor as normal, mvnormal, huber or student_t with known scales, its residual a tangent "
            "vector such as log(between(z[k], between(a, b)))")], bm.ir.sources)
    if o.path == "lsq" and reason is not None:
        raise FgError([Diagnostic(f"path=lsq needs a least-squares model, but {reason}", None,
                                  "use path=auto (the general path runs any model)")], bm.ir.sources)
    return "lsq" if (o.path == "lsq" or (o.path == "auto" and reason is None)) else "general"


def _fit(bm: BoundModel, o: MapOptions, seed: int, init: dict, carried: dict, progress: bool) -> Posterior:
    import jax.numpy as jnp

    dtype = jnp.float64 if o.dtype == "float64" else jnp.float32
    path = choose_path(bm, o, set(carried))
    if path == "lsq":
        problem, solver = _least_squares(bm, carried, dtype)
        groups = {v.name: identity(v) for v in bm.variables.values() if is_group(v)}
        start = {**default_start(bm, seed, set(carried)), **groups, **init}
        x0 = np.zeros(problem.layout.n)
        for name, off in problem.layout.offsets.items():
            if name in start:
                v = bm.variables[name]
                x0[off : off + v.n_nodes * v.node_dim] = normalized(v, np.asarray(start[name], np.float64)).ravel()
    else:
        from fglang.runtime.map.density import Density

        problem = Density(bm, carried, init, seed, dtype)
        start = init
        if problem.n > o.max_dense:
            raise FgError([Diagnostic(
                f"map's general path needs a dense Hessian and this model has {problem.n} unknowns "
                f"(more than max_dense={o.max_dense})", None,
                "raise --max-dense if memory allows (n^2 doubles), write the model's factors as Gaussian or "
                "robust ones with known scales (the sparse least-squares path), or use --backend vi")],
                bm.ir.sources)
        solver, x0 = DenseCholesky(), problem.x0
    bar = progress_bar(progress, "map", o.iters, "iter",
                       {"cost": (".6g", float("nan")), "lambda": (".1e", float("nan"))})
    show = (lambda st: bar.update(st.iteration, st.cost, st.lam)) if bar else None
    try:
        res = optimize(problem, solver, x0, method=o.method, iters=o.iters, tol=o.tol, lambda_init=o.lambda_init,
                       eps=float(np.finfo(dtype).eps), callback=show)
    except Failure as err:
        if err.iteration == 0:  # no valid initial point: the factor at fault, as vi and mcmc name it
            located = located_bad_start(bm, start, err.reason)
            if located is not None:
                raise located from None
        raise FgError([Diagnostic(f"MAP ({o.method}) diverged at iteration {err.iteration}: {err.reason}", None,
                                  _HINT)], bm.ir.sources) from None
    finally:
        if bar:
            bar.close()
    if path == "lsq":
        marg, draws, t_cov, curvature = _lsq_posterior(bm, problem, solver, res, o, seed)
    else:
        marg, draws, t_cov = _general_posterior(bm, problem, res, o, seed)
        curvature = "exact"
    return Posterior(
        bm.name,
        "map",
        draws,
        gaussian=marg,
        observed=bm.observed,
        attrs={
            "options": o.as_dict(),
            "seed": seed,
            "path": path,
            "unknowns": int(problem.n),
            "iterations": int(res.iterations),
            "converged": bool(res.converged),
            "stalled": bool(res.stalled),
            "cost": float(res.cost),
            "initial_cost": float(res.initial_cost),
            "lambda": float(res.lam),
            "history": [float(c) for c in res.history[-500:]],
            "linearizations": int(res.linearizations),
            "factorizations": int(res.factorizations),
            "wall_time_s": float(res.wall_time_s),
            "laplace_time_s": float(t_cov),
            # the Laplace Hessian: gauss_newton (J^T J), robust (J^T rho'' J), irls (J^T W J, the fallback
            # when rho'' leaves it singular) or exact (the general path's jax.hessian)
            "laplace_curvature": curvature,
            "marginals": bool(np.all([np.all(np.isfinite(g.cov)) for g in marg.values()])),
            # the residual blocks split over the devices (`shard`); none on one device or the general path
            "sharded": list(getattr(problem, "sharded", [])),
            **_goodness_of_fit(problem, res, path),
        },
        node_shapes={v.name: v.node_shape for v in bm.variables.values()},
    )


def _goodness_of_fit(problem, res: LMResult, path: str) -> dict[str, Any]:
    """The chi-square test of the optimum's cost (``backend.advice`` reads it).

    Why: on a Gaussian least-squares model ``2 cost`` at the global optimum
    is chi-square with ``residuals - unknowns`` degrees of freedom, so a cost
    far in its upper tail says the fit stopped in a local minimum (a pose
    graph started at the identity: 80,405 where the optimum from its
    odometry is 1.56, with 9 degrees of freedom) or that the factors' scales
    are far too small for the data. LM alone cannot tell: it converged
    either way. Robust models' costs are not chi-square (no test), nor is the
    general path's log density."""
    if path != "lsq" or getattr(problem, "robust", True):
        return {}
    dof = int(problem.residuals) - int(problem.n)
    out: dict[str, Any] = {"residuals": int(problem.residuals), "chi2_dof": dof}
    if dof > 0 and np.isfinite(res.cost):
        from scipy.stats import chi2

        logp = float(chi2.logsf(2.0 * res.cost, dof) / np.log(10.0))
        out["chi2_log10_p"] = logp if np.isfinite(logp) else -1000.0  # underflow: far past 1e-300 (JSON-safe)
    return out


# per model shape: the pattern, the scatter positions and the solver that
# holds the symbolic factorization (and the selected-inversion plan)
_SHAPES: dict[str, tuple[Any, Any, SparseLDL]] = {}


def _shape_key(blks) -> str:
    h = hashlib.sha1()
    for b in blks:
        h.update(repr((id(b.fn), b.cols.shape, b.solver_cols.shape)).encode())
        h.update(np.ascontiguousarray(b.solver_cols).tobytes())
    return h.hexdigest()


def _least_squares(bm: BoundModel, carried: dict, dtype):
    from fglang.runtime.map.assemble import LeastSquares, build_scatter, node_pairs
    from fglang.runtime.map.residuals import tangent_layout

    lay, blks = blocks(bm, carried)
    key = _shape_key(blks) + f":{lay.n}"
    if key not in _SHAPES:
        if len(_SHAPES) > 64:
            _SHAPES.clear()
        pattern, scatter = build_scatter(blks, node_pairs(bm), tangent_layout(bm).n)
        _check_fill_memory(bm, pattern)
        _SHAPES[key] = (pattern, scatter, SparseLDL(pattern))
    pattern, scatter, solver = _SHAPES[key]
    return LeastSquares(blks, lay, pattern, scatter, dtype, bm, current_mesh()), solver


def _check_fill_memory(bm: BoundModel, pattern) -> None:
    """Refuse a sparse factor L whose fill exceeds the memory limit before qdldl
    allocates it in LM's first factorization (fill.py: exact column counts
    when the cheap bounds do not settle it)."""
    from fglang.runtime.map.fill import BYTES_PER_ENTRY, estimate_fill

    limit = memory_limit()
    nnz, how = estimate_fill(pattern.matrix(np.ones(pattern.nnz)), limit[0] / BYTES_PER_ENTRY)
    biggest = max(bm.variables.values(), key=lambda v: v.n_nodes * v.node_dim, default=None)
    refuse_over_limit(
        [(nnz * BYTES_PER_ENTRY, f"the sparse factor L of the {pattern.n:,}-unknown Gauss-Newton system, "
          f"{nnz:,} entries with its fill ({how})", biggest.span if biggest is not None else None)],
        "fit", bm.ir.sources, "make the model smaller, or connect fewer unknowns to each other (every factor "
        "that touches many unknowns, or a long loop, adds fill), or use --backend vi", limit)


def _check_plan_memory(bm: BoundModel, lower) -> None:
    """Refuse Laplace marginals whose selected inversion exceeds the memory limit:
    its size follows from the fill of L (known once LM has factored), not from
    the model's sizes, so ``fit_memory`` cannot see it before the fit."""
    refuse_over_limit(
        [(laplace.plan_bytes(lower), f"the selected inversion for the Laplace marginals ({laplace.work(lower):,} "
          f"pair updates on the {lower.nnz:,} entries of the sparse factor L, its fill included)", None)],
        "fit", bm.ir.sources, "pass marginals=auto (skips them when costly) or marginals=none: the mode does not "
        "need them")


def _singular(bm: BoundModel) -> FgError:
    return FgError([Diagnostic(
        "the Hessian at the mode is singular or not positive definite, so the Laplace approximation "
        "does not exist", None,
        "some unknowns are not determined by the model: give every var a prior or a factor that pins it "
        "(a pose graph needs an anchor), or the fit stopped at a saddle (give --init)")], bm.ir.sources)


def _lsq_posterior(bm, problem, solver: SparseLDL, res: LMResult, o: MapOptions, seed: int):
    import time

    t0 = time.perf_counter()
    # The fill of L is fixed by the pattern, so LM's last factorization already
    # says whether auto skips the marginals; skipped marginals need no
    # factorization at the mode (on sphere2500 one of 11, ~8% of the fit).
    skip = o.marginals == "none" or (
        o.marginals == "auto" and solver.factored and laplace.work(solver.factors()[0]) > laplace.AUTO_WORK)
    curvature = "gauss_newton"
    if not skip:
        h = problem.laplace_hessian(res.x)
        try:
            solver.factor(h)
            curvature = "robust" if problem.robust else curvature
        except SingularError:
            if not problem.robust:
                raise _singular(bm) from None
            # rho'' = 0 past a Huber delta (or < 0 past a Student-t's sqrt(df)) can leave an unknown with no
            # curvature: fall back on the IRLS weights, which count every residual, and say so (advice)
            _, _, h = problem.linearize(res.x)
            try:
                solver.factor(h)
            except SingularError:
                raise _singular(bm) from None
            curvature = "irls"
        lower, d, perm = solver.factors()
        skip = o.marginals == "auto" and (laplace.work(lower) > laplace.AUTO_WORK
                                          or laplace.plan_bytes(lower) > memory_limit()[0])
    if not skip:
        plan = getattr(solver, "plan", None)
        if plan is None or plan.nnz != lower.nnz:
            _check_plan_memory(bm, lower)
            plan = solver.plan = laplace.plan(lower)
        z = laplace.selected_inverse(plan, lower, d)
    marg, means, covs = {}, {}, {}
    for name, v in bm.variables.items():
        off, toff, d = problem.layout.offsets[name], problem.tangent.offsets[name], tangent_dim(v)
        index = toff + np.arange(v.n_nodes * d).reshape(v.n_nodes, d)  # the solver's (tangent) unknowns
        # skipped marginals: NaN covariances, and every draw at the mode
        cov = np.full((v.n_nodes, d, d), np.nan) if skip else laplace.node_blocks(plan, z, perm, index)
        mean = res.x[off : off + v.n_nodes * v.node_dim].reshape(v.shape)
        cov = cov.reshape(v.node_shape + (d, d))
        marg[name] = GaussianMarginal(mean, cov, v.node_shape, v.value_shape, v.domain.kind if is_group(v) else None)
        means[name], covs[name] = mean, cov
    marg.update(derived_marginals(bm, means, covs))
    t_cov = time.perf_counter() - t0
    if skip:
        return marg, {k: np.asarray(g.mean)[None, None] for k, g in marg.items()}, t_cov, "none"
    return marg, node_draws(marg, o.draws, seed).draws, t_cov, curvature


def _general_posterior(bm, problem, res: LMResult, o: MapOptions, seed: int):
    import time

    from fglang.runtime.numpyro_sites import site_draws

    t0 = time.perf_counter()
    _, _, h = problem.linearize(res.x)
    chol = DenseCholesky()
    try:
        chol.factor(h)
    except SingularError:
        raise _singular(bm) from None
    cov = chol.solve(np.eye(problem.n))
    cov = 0.5 * (cov + cov.T)
    lower = chol.lower()  # H = L L^T: x = mode + L^{-T} eps has covariance H^{-1}
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((problem.n, o.draws))
    import scipy.linalg as sla

    xs = res.x[None, :] + sla.solve_triangular(lower, eps, lower=True, trans="T").T
    samples = problem.constrained(xs)
    draws = site_draws(samples, bm, grouped=False)
    marg = {}
    for name, v in bm.variables.items():
        if v.domain.kind != "real" or name not in problem.sites or problem.sites[name] != v.shape:
            continue
        index = problem.offsets[name] + np.arange(v.n_nodes * v.node_dim).reshape(v.n_nodes, v.node_dim)
        block = cov[index[:, :, None], index[:, None, :]]
        marg[name] = GaussianMarginal(res.x[index].reshape(v.shape),
                                      block.reshape(v.node_shape + (v.node_dim, v.node_dim)),
                                      v.node_shape, v.value_shape)
    return marg, draws, time.perf_counter() - t0

