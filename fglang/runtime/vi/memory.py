"""What a VI fit holds, estimated before it starts (``fit_memory``'s backend hook).

VI's state grows with the number D of unconstrained parameters, not only with
the draws: the full-rank (``mvn``) guide is a D x D Cholesky factor with two
Adam moments, its gradient and the optimizer's next copies; the Laplace
whitening (D <= ``DENSE_MAX``) forms the dense Hessian, symmetrizes, solves
with it and takes its eigendecomposition (float64 copies of D x D), and builds
it from batches of 64 forward-over-reverse gradients, each holding a whole
evaluation of the model. A model of D = 20,000 with ``guide=mvn`` asks for
3.2 GB per D x D copy: that is refused here, at the largest var, instead of
the process being killed.

The copy counts are measured, not derived: peak RSS over a fit, fresh
process, float64 (``tests/test_fit_memory_vi.py`` holds the estimate to within
a factor 2 of the measured peak on small models).
"""

from __future__ import annotations

from typing import Any

from fglang.compiler.bound import BoundModel
from fglang.compiler.limits import show_count
from fglang.runtime.fit_memory import member_values
from fglang.span import Span

Charge = tuple[float, str, Span | None]

MVN_COPIES = 18  # D x D: the factor, Adam's two moments, the gradient, the next step's copies, temporaries
VECTOR_COPIES = 12  # the same for each D-long (or D x rank) parameter
HESSIAN_COPIES = 8  # float64 D x D: the Hessian, its symmetric copy, the Newton solve, eigh, the product
WHITEN_COPIES = 6  # D x D: the whitening matrix, its batch and its copies in the compiled steps and draws
EVAL_COPIES = 4  # one evaluation's values: forward, cotangent, tangent, and the gradient's
HESSIAN_BATCH = 64  # directions per batch of the Hessian (vi/mode.hessian)
DRAW_COPIES = 3  # u, z and the constrained draws, per VI draw before PSIS


def _dim(bm: BoundModel) -> tuple[float, Span | None]:
    """(D, the span of the var with the most values): one unconstrained value per
    stored value of a continuous var (an upper bound for simplexes and covariances)."""
    total, best, span = 0.0, -1.0, None
    for v in bm.variables.values():
        if not v.domain.continuous:
            continue
        n = float(v.n_nodes) * float(v.node_dim)
        total += n
        if n > best:
            best, span = n, v.span
    return total, span


def _evaluation(bm: BoundModel, itemsize: int) -> tuple[float, Span | None]:
    """Bytes of one evaluation of the potential: each family's members times the
    values they read, a few copies; at the largest family."""
    total, best, span = 0.0, -1.0, None
    for f in bm.families.values():
        values = 1.0 + member_values(bm, f)
        n = float(f.n_members) * values * itemsize * EVAL_COPIES
        total += n
        if n > best:
            best, span = n, f.ir.span
    return total, span


def vi_charges(bm: BoundModel, options: Any) -> list[Charge]:
    """The guide and its optimizer state, the Laplace whitening's dense Hessian
    and its batches, the particles' evaluations and the draws PSIS weighs."""
    from fglang.runtime.vi.fit import DENSE_MAX, PSIS_DRAWS, choose_guide

    itemsize = 4 if options.dtype == "float32" else 8
    d, span = _dim(bm)
    if d == 0:
        return []
    guide = choose_guide(options.guide, int(min(d, 2**62)))
    out: list[Charge] = []
    shown = show_count(d, "unconstrained parameter")
    if guide == "mvn":
        out.append((MVN_COPIES * d * d * itemsize,
                    f"VI's full-rank (mvn) guide of {shown}: a {show_count(d)} x {show_count(d)} Cholesky factor, "
                    "its Adam moments and gradient", span))
    else:
        rank = options.rank or max(1, min(32, int(round(d**0.5))))
        width = {"lowrank": rank + 2.0, "normal": 2.0}.get(guide, 1.0)
        rank_note = f" (rank={show_count(rank)})" if guide == "lowrank" else ""
        out.append((VECTOR_COPIES * d * width * itemsize, f"VI's {guide} guide of {shown}{rank_note}", span))
    evaluation, fam_span = _evaluation(bm, itemsize)
    if guide != "delta" and d <= DENSE_MAX:
        out.append((HESSIAN_COPIES * d * d * 8.0,
                    f"the dense Hessian of {shown} for VI's Laplace whitening ({show_count(d)} x {show_count(d)}, "
                    "float64)", span))
        if guide != "normal":  # a mean-field guide is whitened by the Hessian's diagonal
            out.append((WHITEN_COPIES * d * d * itemsize, f"VI's {show_count(d)} x {show_count(d)} whitening matrix",
                        span))
        out.append((min(float(HESSIAN_BATCH), d) * evaluation,
                    f"the Hessian's batches of {HESSIAN_BATCH} gradients of the model", fam_span))
    out.append((float(options.particles) * evaluation,
                f"the ELBO's {show_count(options.particles)} particles (particles=)", fam_span))
    n_draw = max(float(options.draws), float(PSIS_DRAWS))
    out.append((DRAW_COPIES * n_draw * d * itemsize, f"{show_count(n_draw, 'guide draw')} of {shown} for PSIS",
                span))
    return out
