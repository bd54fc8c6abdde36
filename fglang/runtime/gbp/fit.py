"""The ``gbp`` backend: build the Gaussian graph, run the engine, report a Posterior.

Means and covariances are the engine's per-node Gaussian marginals (exact
on trees for linear Gaussian models); ``let`` quantities are reported by
linearization at the means; draws are sampled from the marginals so that
ArviZ tools and the summary table work as for the other backends.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from fglang.compiler.bind import BoundModel
from fglang.errors import Diagnostic, FgError
from fglang.runtime.carry import CarriedMarginal
from fglang.runtime.gaussian import default_start, derived_marginals, node_draws
from fglang.runtime.gbp.engine import resolve_schedule, run_gbp
from fglang.runtime.gbp.graph import GaussianGraph
from fglang.runtime.gbp.loops import has_loops
from fglang.runtime.gbp.lowering import carried_group_family, to_graph
from fglang.runtime.gbp.options import GbpOptions
from fglang.runtime.gbp.plan import FamilyValueError
from fglang.runtime.gbp.program import model_digest, model_key
from fglang.runtime.manifold import is_group, normalized, tangent_dim
from fglang.runtime.posterior import GaussianMarginal, Posterior
from fglang.runtime.progress import progress_bar
from fglang.runtime.values import located_bad_start


def _check_multigrid(bm: BoundModel, graph: GaussianGraph) -> None:
    """The two-level schedule solves the energy's Gauss-Newton form: robust and sparsity factors have none."""
    for fam in graph.families:
        if fam.robust is not None or fam.sparsity is not None:
            ir = bm.families.get(fam.name)
            raise FgError([Diagnostic(
                f"schedule multigrid cannot take factor '{fam.name}': its "
                f"{'robust loss' if fam.robust is not None else 'sparsity prior'} has no Gauss-Newton form",
                ir.ir.span if ir is not None else None,
                "use schedule flooding (the default auto does) or a normal likelihood",
            )], bm.ir.sources)


def _unrepresentable(bm: BoundModel, err: FamilyValueError, dtype: str) -> FgError:
    """A family's scale that ``check_values`` passed in float64 but the run's dtype cannot hold."""
    fam = bm.families.get(err.family)
    hint = ("rescale the data or constants (a sd below ~5e-20 is a precision 1/sd^2 past float32's 3.4e38; "
            "a huber delta below ~1e-45 is 0 in float32)")
    if dtype == "float32":
        hint = f"fit with --dtype float64 (Python: dtype='float64'), or {hint}"
    return FgError([Diagnostic(f"GBP cannot run factor '{err.family}' in {dtype}: {err.what} there",
                               fam.ir.span if fam is not None else None, hint)],
                   bm.ir.sources)


def fit_gbp(
    bm: BoundModel,
    o: GbpOptions,
    *,
    seed: int = 0,
    init: dict[str, np.ndarray] | None = None,
    carried: dict[str, CarriedMarginal] | None = None,
    progress: bool = False,
    skip_families: set[str] = frozenset(),
) -> Posterior:
    """One GBP fit; ``carried`` marginals replace the written priors of their vars."""
    carried = carried or {}
    prior = {k: c.information(o.temper) for k, c in carried.items() if not is_group(bm.variables[k])}
    model = model_digest(bm)
    graph = to_graph(bm, set(carried), set(skip_families), program=model)
    groups = [carried_group_family(k, bm.variables[k].domain.kind, c.mean, c.information(o.temper)[1])
              for k, c in carried.items() if is_group(bm.variables[k])]
    if groups:  # a group var's carried marginal is a factor on its tangent space (carried_group_family)
        graph = GaussianGraph(graph.variables, graph.families + tuple(groups))
    if o.schedule == "multigrid":
        _check_multigrid(bm, graph)
    try:
        schedule = resolve_schedule(graph, o.schedule, o.dropout, np.float64 if o.dtype == "float64" else np.float32)
    except FamilyValueError as err:
        raise _unrepresentable(bm, err, "float64" if o.dtype == "float64" else "float32") from None
    # A pose graph spans scales float32 cannot hold (an anchor of precision 1e6
    # next to edges of 1e2, condition numbers ~1e8): a 20,000-pose graph's
    # first float32 messages were already non-finite (issue 14).
    dtype = jnp.float64 if o.dtype == "float64" or (o.dtype == "auto" and schedule == "multigrid") else jnp.float32
    # A group var starts at its init's stored values (else the identity): the
    # engine's first chart origins (charts.py).
    start = {**default_start(bm, seed, set(carried)), **(init or {})}
    start = {k: normalized(bm.variables[k], v) for k, v in start.items()}
    init_nodes = {k: np.asarray(v).reshape(bm.variables[k].n_nodes, bm.variables[k].node_dim) for k, v in
                  start.items()}
    bar = progress_bar(progress, "gbp", o.iters, "iter", {"belief change": (".2e", float("inf"))})
    try:
        result = run_gbp(
            graph,
            init_nodes or None,
            prior=prior or None,
            iters=o.iters,
            tol=o.tol,
            damping=o.damping,
            undamped_iters=o.undamped,
            schedule=schedule,
            dropout=o.dropout,
            relinearize_threshold=o.relinearize,
            dtype=dtype,
            seed=seed,
            callback=bar.update if bar else None,
            program=model_key(model, bm, np.dtype(dtype).name, set(carried), set(skip_families)),
        )
    except FamilyValueError as err:
        raise _unrepresentable(bm, err, np.dtype(dtype).name) from None
    finally:
        if bar:
            bar.close()
    if result.diverged is not None:
        info = result.diverged
        if info.iteration <= 1:  # non-finite from the start: the factor at fault, as vi, mcmc and map name it
            located = located_bad_start(bm, start, info.message)
            if located is not None:
                raise located
        fam = bm.families.get(info.family) if info.family else None
        raise FgError(
            [
                Diagnostic(
                    f"GBP diverged at iteration {info.iteration}"
                    + (f" in factor '{info.family}'" if info.family else "")
                    + f" ({info.reason.replace('_', ' ')})",
                    fam.ir.span if fam is not None else None,
                    "raise --damping (e.g. 0.5 -> 0.9; Python: damping=0.9), check the factor's scales "
                    "(a sd far from the data's units conditions messages badly), use --dtype float64, or give --init",
                )
            ],
            bm.ir.sources,
        )
    marg: dict[str, GaussianMarginal] = {}
    means, covs = {}, {}
    for name, v in bm.variables.items():
        # a group var: mean in stored form, cov in the tangent space at it (as map's)
        d = tangent_dim(v)
        mean = np.asarray(result.means[name], dtype=np.float64).reshape(v.shape)
        cov = np.asarray(result.covs[name], dtype=np.float64).reshape(v.node_shape + (d, d))
        marg[name] = GaussianMarginal(mean, cov, v.node_shape, v.value_shape, v.domain.kind if is_group(v) else None)
        means[name], covs[name] = mean, cov
    marg.update(derived_marginals(bm, means, covs))
    draws, indefinite = node_draws(marg, o.draws, seed)
    history = np.asarray(result.history, dtype=np.float64)
    return Posterior(
        bm.name,
        "gbp",
        draws,
        gaussian=marg,
        observed=bm.observed,
        attrs={
            "options": o.as_dict(),
            "seed": seed,
            "damping": float(result.info["damping"]),
            "schedule": str(result.info["schedule"]),
            "coarse_corrections": int(result.info["coarse_corrections"]),
            "iterations": int(result.iterations),
            "converged": bool(result.converged),
            "final_change": float(history[-1]) if history.size else float("nan"),
            "history": history[np.isfinite(history)].tolist()[-500:],
            "wall_time_s": float(result.wall_time_s),
            "loopy": has_loops(bm),
            "chunk_program": str(result.info["chunk_program"]),
            "indefinite_nodes": indefinite,
        },
        node_shapes={v.name: v.node_shape for v in bm.variables.values()},
    )
