"""BoundModel -> GaussianGraph: what GBP can run, as batched residual families.

Every family becomes one ``GaussianFamily`` whose residual is the family's
own one-member JAX function (``BoundFamily.evaluate_one``): ``lhs - mu``,
flattened. A slot that reads a block of nodes (``h[n]`` over ``H`` scalar
nodes) becomes one GBP slot per node of the block, since GBP messages are
per node. A group var (``pose3``, ...) becomes a block of its tangent
dimension whose residuals read stored values (`charts.py`). What GBP cannot
run (SPEC section 7) is rejected here, before any compilation, naming the
factor and its line.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax.numpy as jnp
import numpy as np

from fglang.compiler import ast as A
from fglang.compiler.bind import BoundFamily, BoundModel, data_read
from fglang.compiler.distributions import SPARSITY
from fglang.compiler.expr import walk
from fglang.compiler.groups import GROUPS
from fglang.compiler.ir import SlotRef
from fglang.compiler.matrix_types import MATRIX_TYPES
from fglang.compiler.unparse import unparse
from fglang.errors import Diagnostic, FgError
from fglang.runtime.gbp.graph import GaussianFamily, GaussianGraph, Slot, VariableBlock
from fglang.runtime.manifold import identity

_SUGGEST = "use --backend vi or --backend mcmc, which run any model"


def validate(bm: BoundModel, carried: set[str] = frozenset(), skipped: set[str] = frozenset()) -> None:
    errs: list[Diagnostic] = []
    for v in bm.variables.values():
        if v.domain.kind in GROUPS:
            continue  # messages on its tangent space (gbp/charts.py)
        if v.bounds:
            kws = ", ".join(f"{k}={t}" for k, t in v.domain.written)
            plural = "s" if len(v.domain.written) > 1 else ""
            bounds = [bm.bounds[f"{v.name}__{k}"].ir for k in v.bounds]  # the keys are ir.bound_name's
            if not any(isinstance(x, A.Name | SlotRef) for b in bounds for x in walk(b.expr)):  # constants only
                errs.append(Diagnostic(
                    f"gbp cannot run var '{v.name}': its {kws} reparameterize{'' if plural else 's'} it "
                    "(gbp needs unconstrained real vars)", bounds[0].span,
                    "declare it plain real for gbp (offset and multiplier change only how vi, mcmc and map "
                    "parameterize it, not its posterior), or use --backend vi, mcmc or map"))
                continue
            errs.append(
                Diagnostic(
                    f"gbp cannot run var '{v.name}': its bound{plural} {kws} read{'' if plural else 's'} vars, "
                    "data or lets (gbp needs unconstrained real vars)",
                    bounds[0].span,
                    "use --backend vi, mcmc or map, which take bounds that read vars, data and lets",
                )
            )
        elif v.domain.kind in MATRIX_TYPES:
            errs.append(
                Diagnostic(
                    f"gbp cannot run var '{v.name}': it is {v.domain.kind}, a constrained matrix "
                    "(gbp needs unconstrained real vars)",
                    v.span,
                    "use --backend map (its mode and Laplace in the unconstrained space) or --backend mcmc "
                    "(or vi), which sample it through its bijection",
                )
            )
        elif v.domain.kind != "real":
            errs.append(
                Diagnostic(
                    f"gbp needs unconstrained real vars; '{v.name}' is {v.domain.describe()}",
                    v.span,
                    f"declare it real, or {_SUGGEST}",
                )
            )
    for fam in bm.families.values():
        f = fam.ir
        if (f.prior_of is not None and f.prior_of in carried) or f.name in skipped:
            continue
        if f.kind == "potential":
            errs.append(Diagnostic(f"gbp cannot run the potential '{f.name}'", f.span, _SUGGEST))
            continue
        recursion = _scan_of_vars(f)
        if recursion is not None:
            errs.append(Diagnostic(
                f"gbp cannot run factor '{f.name}': it reads a recurrence scan[...] of vars", recursion.span,
                "use --backend mcmc or --backend vi (they differentiate through the recurrence); or write the "
                "chain as a factor per step, x[t] ~ normal(f(x[t-1]), sd), which gbp runs"))
            continue
        sig = f.dist
        if sig.gbp is None:
            errs.append(
                Diagnostic(
                    f"gbp cannot run '{sig.name}' in factor '{f.name}': "
                    "it is not a Gaussian, robust or sparsity factor",
                    f.dist_span or f.span,
                    _SUGGEST,
                )
            )
            continue
        scale_args = {"sd", "cov", "prec", "chol", "df", "delta"} | {a for p in SPARSITY.values() for a in p.scales}
        spans = dict(f.arg_spans)
        for name in f.arg_map:
            if name in scale_args and f.arg_uses_vars(name):
                errs.append(
                    Diagnostic(
                        f"gbp needs known scales: '{name}' of {sig.name} in factor '{f.name}' depends on a var",
                        spans.get(name, f.span),
                        f"make it data or a constant, or {_SUGGEST}",
                    )
                )
        center_uses_vars = "mu" in f.arg_map and f.arg_uses_vars("mu")
        if sig.gbp == "sparsity" and (len(fam.slots) != 1 or center_uses_vars):
            errs.append(
                Diagnostic(
                    f"gbp runs the sparsity prior '{sig.name}' only on one var with a known center (factor '{f.name}')",
                    f.span,
                    _SUGGEST,
                )
            )
    if errs:
        raise FgError(errs, bm.ir.sources)


def _scan_of_vars(f) -> A.Scan | None:
    """The first recurrence in a family's expressions that depends on vars: one
    dense factor over every step, not the chain of local factors GBP needs."""
    for e in [f.lhs] + [x for _, x in f.args]:
        for x in walk(e):
            if isinstance(x, A.Scan) and any(isinstance(y, SlotRef) for y in walk(x)):
                return x
    return None


def _expand_slots(fam: BoundFamily) -> tuple[list[Slot], list[tuple[int, tuple[int, ...]]]]:
    """One GBP slot per node of each slot's block; returns the slots and, per
    original slot, (first GBP slot index, block shape)."""
    slots: list[Slot] = []
    layout = []
    for s in fam.slots:
        block = s.block_shape
        ids = s.node_ids.reshape(fam.n_members, -1)
        layout.append((len(slots), block))
        if not block and s.grid_slice is not None and len(s.grid_slice) > 0:
            slots.append(Slot(s.var, ids[:, 0], tuple(s.grid_slice)))
            continue
        for k in range(ids.shape[1]):
            slots.append(Slot(s.var, np.ascontiguousarray(ids[:, k])))
    return slots, layout


def _zero_inputs(bm: BoundModel, fam: BoundFamily, data) -> tuple:
    """A family's evaluation inputs at zero (a group var at its identity: a
    zero quaternion is no rotation), gathered in NumPy, in the dtypes JAX
    makes of them: (data, member indices, slot values)."""
    import jax

    def canonical(a):
        a = np.asarray(a)
        return a.astype(jax.dtypes.canonicalize_dtype(a.dtype), copy=False)

    zeros = {v.name: identity(v) if v.domain.kind in GROUPS else np.zeros(v.shape)
             for v in bm.variables.values()}
    return ({k: canonical(v) for k, v in data.items()}, {k: canonical(v) for k, v in fam.idx.items()},
            tuple(canonical(bm.gather(s, zeros)) for s in fam.slots))


def _evaluate_all(evaluates: tuple, inputs: list) -> list:
    return [evaluate(*inp) for evaluate, inp in zip(evaluates, inputs, strict=True)]


def _args_at_zero(bm: BoundModel, fams: list[BoundFamily], datas: list, program: str | None) -> list:
    """Per family, (its arguments at zero: the ones that do not depend on vars are
    its scales, its lhs), for every member.

    Why not eagerly: each JAX operation of it was a program of its own,
    lowered and looked up in the cache (22 of them, ~0.1-0.3 s of a warm
    denoise fit, issue 18). With ``program`` (the fit's
    `program.model_digest`) all families are one stored program (`program.stored_call`),
    loaded by a warm fit without tracing; without, one jitted evaluation per
    family. A family whose evaluation does not trace (it reads a value in
    Python) is evaluated eagerly."""
    inputs = [_zero_inputs(bm, fam, d) for fam, d in zip(fams, datas, strict=True)]
    outs = None
    if program is not None and fams:
        from fglang.runtime.gbp.program import stored_call

        try:
            outs = stored_call("zero", [program, [f.name for f in fams]],
                               partial(_evaluate_all, tuple(f.evaluate for f in fams)), (inputs,))
        except Exception:  # noqa: BLE001 - not traceable as one program: family by family
            outs = None
    if outs is None:
        outs = [_one_at_zero(fam, inp) for fam, inp in zip(fams, inputs, strict=True)]
    return [({k: np.asarray(v) for k, v in out["args"].items()}, np.asarray(out["lhs"])) for out in outs]


def _one_at_zero(fam: BoundFamily, inputs: tuple):
    try:
        return _at_zero_jit(fam.evaluate)(*inputs)
    except Exception:  # noqa: BLE001 - not traceable: eagerly
        data, idx, slots = inputs
        return fam.evaluate({k: jnp.asarray(v) for k, v in data.items()}, {k: jnp.asarray(v) for k, v in idx.items()},
                            tuple(jnp.asarray(x) for x in slots))


_AT_ZERO: dict[Any, Any] = {}


def _at_zero_jit(evaluate):
    """``jax.jit(evaluate)``, one per member function (binding new data of the
    same shapes returns the same one, `bind._member_functions`)."""
    jitted = _AT_ZERO.get(evaluate)
    if jitted is None:
        import jax

        if len(_AT_ZERO) > 256:
            _AT_ZERO.clear()
        jitted = _AT_ZERO[evaluate] = jax.jit(evaluate)
    return jitted


def _per_member(a, m: int, rshape: tuple[int, ...]) -> np.ndarray:
    """[M, *rest] arguments broadcast to [M, *residual shape] (rest aligns right)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 0:
        a = a.reshape(1)
    rest = a.shape[1:]
    a = a.reshape(a.shape[:1] + (1,) * (len(rshape) - len(rest)) + rest)
    return np.broadcast_to(a, (m,) + tuple(rshape))


# (member function, slot layout, value shapes) -> residual. The same residual
# object for the same model shape lets the engine's jit cache hit across
# batches (data arrive as the family's `shared` input, not as constants).
_RESIDUALS: dict[tuple, tuple[object, object]] = {}


def _residual(one, layout: tuple, value_shapes: tuple):
    key = (id(one), layout, value_shapes)
    hit = _RESIDUALS.get(key)
    if hit is not None and hit[0] is one:
        return hit[1]

    def unpack(gbp_values):
        blocks = []
        for (start, block), vshape in zip(layout, value_shapes):
            n = int(np.prod(block, dtype=np.int64)) if block else 1
            vals = gbp_values[start : start + n]
            if block:
                stacked = jnp.stack([jnp.reshape(v, vshape) for v in vals])
                blocks.append(jnp.reshape(stacked, tuple(block) + tuple(vshape)))
            else:
                blocks.append(jnp.reshape(vals[0], vshape))
        return tuple(blocks)

    def residual(inputs, *gbp_values):
        idx_m, data = inputs
        out = one(data, idx_m, unpack(gbp_values))
        lhs, mu = jnp.asarray(out["lhs"]), jnp.asarray(out["args"].get("mu", 0.0))
        return jnp.ravel(lhs - mu)

    if len(_RESIDUALS) > 4096:
        _RESIDUALS.clear()
    _RESIDUALS[key] = (one, residual)
    return residual


MAX_FACTOR_NODES = 64
"""Most nodes one factor may touch in GBP.

A factor over K nodes is a K-slot joint Gaussian: its messages are built by
Python-unrolled per-slot code (compile time grows with K) and a K-node
factor is what an unindexed factor over a whole var becomes when it cannot be
split into members. Past this size the model almost certainly meant an
indexed family, so GBP says so instead of compiling for minutes.
"""


def _too_many_nodes(bm: BoundModel, fam: BoundFamily, n: int) -> Diagnostic:
    """What to write instead depends on why the factor touches so many nodes."""
    f = fam.ir
    vars_ = list(dict.fromkeys(s.var for s in fam.slots))
    scalar_wide = [v for v in vars_ if bm.variables[v].node_dim == 1 and bm.variables[v].n_nodes > 1]
    if f.ranges or (f.dist is not None and f.dist.name == "mvnormal"):
        # each member (or the one joint factor) reads a whole block of scalar nodes
        def dims(v: str) -> str:
            return ", ".join(unparse(e) for e in bm.ir.variables[v].node_dims)

        shown = "; ".join(f"var {v}: real[{dims(v)}] instead of var {v}[{dims(v)}]: real" for v in scalar_wide)
        hint = (f"make each var one vector node ({shown or 'var x: real[N]'}), so that a member touches one "
                f"node with a full covariance; or {_SUGGEST}")
    else:
        hint = (f"write it as an indexed family, one member per element (factor {f.name}[t in 0:T]: ...), so "
                f"each member touches a few nodes; or {_SUGGEST}")
    return Diagnostic(
        f"factor '{f.name}' touches {n} nodes of {', '.join(vars_)} in one member; GBP would treat it as one "
        f"{n}-node joint Gaussian (at most {MAX_FACTOR_NODES} nodes)",
        f.span,
        hint,
    )


def _check_nodes(bm: BoundModel, fam: BoundFamily) -> None:
    slots, _ = _expand_slots(fam)
    nodes = {(s.var, int(s.node_ids[0])) for s in slots} if fam.n_members else set()
    if len(nodes) > MAX_FACTOR_NODES:
        raise FgError([_too_many_nodes(bm, fam, len(nodes))], bm.ir.sources)


def _family(bm: BoundModel, fam: BoundFamily, data, at_zero: tuple) -> GaussianFamily:
    f = fam.ir
    sig = f.dist
    slots, layout = _expand_slots(fam)
    value_shapes = [bm.variables[s.var].value_shape for s in fam.slots]
    one = fam.evaluate_one
    args0, lhs0 = at_zero
    m = fam.n_members

    residual = _residual(one, tuple(layout), tuple(value_shapes))

    lhs_shape = lhs0.shape[1:]
    mu_shape = args0["mu"].shape[1:] if "mu" in args0 else ()
    rshape = np.broadcast_shapes(lhs_shape, mu_shape)
    r = int(np.prod(rshape, dtype=np.int64))
    inputs = {k: np.asarray(v) for k, v in fam.idx.items()}  # NumPy: jnp.asarray stages each array through a program
    robust = None
    sparsity = None
    precision: Any = None
    if sig.name == "mvnormal":
        if "prec" in args0:
            precision = np.broadcast_to(args0["prec"], (m, r, r))
        elif "chol" in args0:  # multi_normal_cholesky: cov = L L^T
            chol = np.tril(np.broadcast_to(args0["chol"], (m, r, r)))
            precision = np.linalg.inv(chol @ np.swapaxes(chol, -1, -2))
        else:
            precision = np.linalg.inv(np.broadcast_to(args0["cov"], (m, r, r)))
    elif sig.gbp in ("gaussian", "robust"):
        sd = _per_member(args0["sd"], m, rshape).reshape(m, r)
        precision = 1.0 / sd**2
        if sig.name == "huber":
            robust = ("huber", _per_member(args0["delta"], m, rshape).reshape(m, r)[:, 0])
        elif sig.name == "student_t":
            robust = ("student_t", _per_member(args0["df"], m, rshape).reshape(m, r)[:, 0])
    else:  # sparsity priors (and laplace), reweighted by the engine
        def first(name, default=None):
            if name not in args0:
                return default
            return np.asarray(args0[name]).reshape(m, -1)[:, :1] if np.ndim(args0[name]) else args0[name]

        sparsity = (sig.name,) + tuple(first(p) for p in SPARSITY[sig.name].scales)
        return GaussianFamily(f.name, m, tuple(slots), residual, inputs, None, None, sparsity, shared=data)
    return GaussianFamily(f.name, m, tuple(slots), residual, inputs, precision, robust, sparsity, shared=data)


def to_graph(
    bm: BoundModel, skip_priors_of: set[str] = frozenset(), skip_families: set[str] = frozenset(),
    program: str | None = None,
) -> GaussianGraph:
    """The Gaussian factor graph of a bound model (validated first).

    ``skip_priors_of``: vars whose written prior is replaced by a carried one;
    ``skip_families``: families left out (the targets of a prediction);
    ``program``: the fit's `program.model_digest` (the families' scales are then
    evaluated by a stored program, `_args_at_zero`)."""
    validate(bm, set(skip_priors_of), set(skip_families))
    # NumPy, not jnp: the engine converts the data to the run's dtype (`plan._as_inputs`); a jnp array
    # made here, outside a float64 run's enable_x64, would already be rounded to float32.
    data = {k: np.asarray(v) for k, v in bm.data.items()}
    blocks = tuple(
        VariableBlock(v.name, v.n_nodes, GROUPS[v.domain.kind].tangent, v.node_shape, group=v.domain.kind)
        if v.domain.kind in GROUPS else VariableBlock(v.name, v.n_nodes, v.node_dim, v.node_shape)
        for v in bm.variables.values()
    )
    chosen, datas = [], []
    for fam in bm.families.values():
        if fam.name in skip_families:
            continue
        if fam.n_members == 0 or (fam.ir.prior_of is not None and fam.ir.prior_of in skip_priors_of):
            continue
        if fam.members is not None:  # an unindexed factor split into independent members
            fam = fam.members
        _check_nodes(bm, fam)
        chosen.append(fam)
        datas.append({k: v for k, v in data.items() if k in data_read(fam.ir)})
    at_zero = _args_at_zero(bm, chosen, datas, program)
    return GaussianGraph(blocks, tuple(_family(bm, fam, d, z) for fam, d, z in zip(chosen, datas, at_zero,
                                                                                      strict=True)))


def _carried_group_residual(kind: str):
    """``log(mean^-1 x)``: a node's tangent offset from a carried mean (one function per group, so the
    engine's compile cache sees the same residual across fits)."""
    if kind not in _CARRIED_GROUP:
        from fglang.compiler.lie_jax import local

        def residual(mean, x):
            return local(kind, x, mean)

        _CARRIED_GROUP[kind] = residual
    return _CARRIED_GROUP[kind]


_CARRIED_GROUP: dict[str, object] = {}


def carried_group_family(name: str, kind: str, mean: np.ndarray, lam: np.ndarray) -> GaussianFamily:
    """A carried ``--prior`` of a group var as a unary family ``log(mean^-1 x) ~ N(0, lam^-1)`` per node.

    Why a family and not an engine prior: the engine's priors are Gaussians
    over a node's vector in information form, but a group node's Gaussian is
    over the tangent space at its own mean (how map, and this backend,
    report it), and the engine's chart moves (`charts.py`). As a factor its
    residual is re-linearized in the current chart like any other (as map's
    carried block ``L^T log(m^-1 x)``)."""
    n = mean.shape[0]
    return GaussianFamily(f"{name}__prior", n, (Slot(name, np.arange(n)),), _carried_group_residual(kind),
                          np.asarray(mean, np.float64), np.asarray(lam, np.float64))
