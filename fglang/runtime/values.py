"""Argument and observation values that are invalid only once the data are known.

The checker rejects ``normal(0, -1)`` written as a constant; a scale read
from ``real`` data (``sd[n]`` with a 0 in the file), an observation outside
its distribution's support (a categorical outcome of K from 1-based data),
or a count above its binomial ``n`` are only visible after binding. Every
backend would then fail deep inside (NumPyro: "Cannot find valid initial
parameters"; GBP: a silent ``|sd|``), so ``fit`` checks them first, for
every backend, and names the factor, the argument, the member and the value.

Only what does not depend on vars is checked here: a scale computed from a
var is the backend's business (and its divergence report's).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from fglang.compiler import ast as A
from fglang.compiler.bind import BoundFamily, BoundModel
from fglang.compiler.dag import SharedMemo
from fglang.compiler.matrix_types import MATRIX_TYPES, identity_start
from fglang.errors import Diagnostic, FgError

_MAX_REPORTED = 8
SCALE_ARGS = ("sd", "scale", "slab_sd", "spike_sd", "slab_scale")  # a precision 1/scale^2 is computed from these
TINY_SCALE = 1e-10  # below: 1/sd^2 > 1e20, float32 sums lose every other term and past 1e-19 it overflows
OVERFLOW_SCALE = float(np.finfo(np.float64).max) ** -0.5  # below (~7.5e-155): 1/sd^2 is inf even in float64

_DOMAIN_RULE = {
    "positive": ("must be > 0", lambda a: a > 0),
    "unit": ("must be in [0, 1]", lambda a: (a >= 0) & (a <= 1)),
    "nonneg": ("must be >= 0", lambda a: a >= 0),
    "nonneg_int": ("must be a whole number >= 0", lambda a: (a >= 0) & (a == np.round(a))),
}

_SUPPORT_RULE = {
    "positive": ("outside the support (0, inf)", lambda y: y > 0),
    "unit": ("outside the support [0, 1]", lambda y: (y >= 0) & (y <= 1)),
    "int": ("not a whole number", lambda y: y == np.round(y)),
    "nonneg_int": ("not a whole number >= 0", lambda y: (y >= 0) & (y == np.round(y))),
    "bool": ("not 0 or 1", lambda y: (y == 0) | (y == 1)),
}


def _member_label(fam: BoundFamily, m: int) -> str:
    ranges = [r.name for r in fam.ir.ranges]
    if not ranges:
        return fam.name
    vals = [int(np.asarray(fam.idx[r]).reshape(-1)[m]) for r in ranges if r in fam.idx]
    return f"{fam.name}[{', '.join(f'{r}={v}' for r, v in zip(ranges, vals))}]"


def _bad_members(fam: BoundFamily, ok: np.ndarray, values: np.ndarray) -> list[str]:
    """'obs[n=3] (value 0)' for the first few members that break a rule."""
    m = fam.n_members
    ok, values = np.broadcast_arrays(np.asarray(ok), np.asarray(values))
    if ok.ndim == 0 or ok.shape[0] != m:  # a value shared by every member
        ok, values = np.broadcast_to(ok, (m,) + ok.shape), np.broadcast_to(values, (m,) + values.shape)
    flat_ok, flat = ok.reshape(m, -1), values.reshape(m, -1)
    out = []
    for k in np.flatnonzero(~flat_ok.all(axis=1))[:_MAX_REPORTED]:
        out.append(f"{_member_label(fam, int(k))} (value {flat[k][~flat_ok[k]][0]:g})")
    return out


# what a data domain guarantees, as the argument domains and supports it satisfies
_IMPLIES = {
    "positive": {"positive", "nonneg", "real"},
    "unit": {"unit", "nonneg", "real"},
    "real": {"real"},
    "interval": {"real"},
    "ordered": {"real"},
    "positive_ordered": {"positive", "nonneg", "real"},
    "simplex": {"nonneg", "real", "simplex"},
    "cholesky_factor_corr": {"real"},
    "corr_matrix": {"real"},
    "cov_matrix": {"real"},
    "cholesky_factor_cov": {"real"},
    "int": {"int", "real"},
    "bool": {"bool", "int", "nonneg_int", "nonneg", "real"},
}


def _guarantees(e, ir, memo: SharedMemo | None = None) -> set[str]:
    """The domains an argument or observation is sure to be in without
    evaluating it: a constant (the checker saw it), typed data (binding
    checked it), and sums and products of positives. Why: evaluating every
    family once, eagerly, cost seconds of op-by-op compilation on a grid,
    for checks that the declarations already settle. ``memo``: once per
    node shared in a DAG (a chain of lets, compiler/dag.py)."""
    memo = memo if memo is not None else SharedMemo()
    return memo(lambda x: _guarantees_of(x, ir, memo), e)


def _guarantees_of(e, ir, memo: SharedMemo) -> set[str]:
    if isinstance(e, A.Num):
        return {"positive", "nonneg", "unit", "real", "int", "nonneg_int"}  # checked by the checker
    base = e.base if isinstance(e, A.Index) else e
    if isinstance(base, A.Name) and base.id in ir.data:
        d = ir.data[base.id].domain
        out = set(_IMPLIES.get(d.kind, set()))
        if d.kind == "int" and d.lower is not None and d.lower >= 0:
            out |= {"nonneg_int", "nonneg"}
        if d.kind == "interval" and d.lower is not None and d.lower > 0:
            out |= {"positive", "nonneg"}
        return out
    if isinstance(e, A.BinOp) and e.op in ("+", "*", "/"):
        left, right = _guarantees(e.left, ir, memo), _guarantees(e.right, ir, memo)
        both = left & right
        out = {"real"} if "real" in both and e.op != "/" else set()
        return out | ({"positive", "nonneg"} if "positive" in both else set())
    if isinstance(e, A.BinOp) and e.op == "-":
        return {"real"} if "real" in _guarantees(e.left, ir, memo) & _guarantees(e.right, ir, memo) else set()
    if isinstance(e, A.Neg):
        return {"real"} if "real" in _guarantees(e.operand, ir, memo) else set()
    return set()


def _needed(bm: BoundModel, fam: BoundFamily, data_args: list[str], domains: dict[str, str]) -> tuple[list, bool]:
    """The data-only arguments, and whether the observation, that the
    declarations do not already settle."""
    f, ir = fam.ir, bm.ir
    args = dict(f.args)
    need = [n for n in data_args if (d := domains.get(n, "real")) == "any" or d not in _guarantees(args[n], ir)]
    lhs = f.lhs is not None and not f.lhs_uses_vars and (
        f.dist.support not in _guarantees(f.lhs, ir) or f.dist.name in ("categorical", "binomial"))
    return need, lhs


def _evaluate(bm: BoundModel, fam: BoundFamily, data: dict[str, Any]) -> dict[str, Any]:
    zeros = {v.name: jnp.zeros(v.shape) for v in bm.variables.values()}
    idx = {k: jnp.asarray(v) for k, v in fam.idx.items()}
    return fam.evaluate(data, idx, tuple(bm.gather(s, zeros) for s in fam.slots))


def _check_family(bm: BoundModel, fam: BoundFamily, data: Callable[[], dict[str, Any]]) -> list[Diagnostic]:
    f = fam.ir
    sig = f.dist
    if sig is None or fam.n_members == 0:
        return []
    domains = {p.name: p.domain for p in sig.params} | {a.name: a.domain for g in sig.alternatives for a in g}
    data_args = [name for name, _ in f.args if not f.arg_uses_vars(name)]
    data_args, lhs_is_data = _needed(bm, fam, data_args, domains)
    evaluated = set(data_args)
    if any(n in SCALE_ARGS and n not in evaluated for n, _ in f.args):
        _tiny_typed_scales(bm, fam, evaluated)
    if not data_args and not lhs_is_data:
        return []
    out = _evaluate(bm, fam, data())
    spans = dict(f.arg_spans)
    errs = []
    for name in data_args:
        a = np.asarray(out["args"].get(name), dtype=np.float64) if name in out["args"] else None
        if a is None or a.size == 0:
            continue
        if not np.all(np.isfinite(a)):
            bad = _bad_members(fam, np.isfinite(a), a)
            errs.append(Diagnostic(f"'{name}' of {sig.name} in factor '{f.name}' is not finite at "
                                   f"{', '.join(bad)}", spans.get(name, f.span), "check the data it is computed from"))
            continue
        if name in MATRIX_ARGS.get(sig.name, ()):
            problem = _not_chol(fam, a) if name == "chol" else _not_spd(fam, a, definite=name in ("cov", "S"))
            if problem is not None:
                errs.append(Diagnostic(f"'{name}' of {sig.name} in factor '{f.name}' {problem}",
                                       spans.get(name, f.span), _CHOL_HINT if name == "chol" else _SPD_HINT))
            continue
        rule = _DOMAIN_RULE.get(domains.get(name, "real"))
        if rule is not None and not np.all(rule[1](a)):
            bad = _bad_members(fam, rule[1](a), a)
            errs.append(Diagnostic(f"'{name}' of {sig.name} in factor '{f.name}' {rule[0]}, but is not at "
                                   f"{', '.join(bad)}", spans.get(name, f.span), "check the data it is computed from"))
        elif name in SCALE_ARGS and np.any(np.abs(a) < OVERFLOW_SCALE):
            bad = _bad_members(fam, np.abs(a) >= OVERFLOW_SCALE, a)
            errs.append(Diagnostic(f"'{name}' of {sig.name} in factor '{f.name}' is below {OVERFLOW_SCALE:.2g} at "
                                   f"{', '.join(bad)}: its precision 1/{name}^2 is past float64's range, so no "
                                   "backend can evaluate the factor", spans.get(name, f.span),
                                   "check the data's units; a measurement that exact is better a constant or a "
                                   "fixed var"))
        elif name in SCALE_ARGS and np.any(np.abs(a) < TINY_SCALE):
            _warn_tiny(bm, fam, name, _bad_members(fam, np.abs(a) >= TINY_SCALE, a))
    if lhs_is_data and "lhs" in out:
        y = np.asarray(out["lhs"], dtype=np.float64)
        if y.size and not np.all(np.isfinite(y)):
            bad = _bad_members(fam, np.isfinite(y), y)
            errs.append(Diagnostic(f"the observation of factor '{f.name}' is not finite at {', '.join(bad)}", f.span))
        elif y.size:
            errs += _support(fam, sig, y, out["args"])
    return errs


MATRIX_ARGS = {"mvnormal": ("cov", "prec", "chol"),  # symmetric positive definite, or no Gaussian (every backend)
               "wishart": ("S",), "inv_wishart": ("S",)}
_CHOL_HINT = "'chol' is the lower Cholesky factor L of the covariance (L L^T = cov), as numpy.linalg.cholesky gives"
_SPD_HINT = ("a covariance or precision matrix must be symmetric with positive eigenvalues: check the data it is "
             "computed from (a singular one: add a small multiple of the identity)")


def _not_spd(fam: BoundFamily, a: np.ndarray, definite: bool) -> str | None:
    """What is wrong with the matrices ``a`` [..., r, r] (one per member, or one shared) and where, or None:
    not symmetric, or not positive definite (``definite``: a covariance) or semi-definite (a precision,
    which GBP takes with no information along some direction). Why here: NumPyro then finds 'no valid
    initial point', map's cost is not finite and GBP inverts a singular matrix, none of them saying which
    data are at fault."""
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        return None  # the shape is the lowering's business
    r = a.shape[-1]
    lead = a.shape[:-2]
    scale = np.max(np.abs(a), axis=(-2, -1))
    asym = np.max(np.abs(a - np.swapaxes(a, -1, -2)), axis=(-2, -1))
    sym = asym <= 1e-6 * scale
    if not np.all(sym):
        bad = _bad_members(fam, sym.reshape(lead), asym.reshape(lead))
        return f"is not symmetric (the value: its largest |A - A^T|) at {', '.join(bad)}"
    try:
        np.linalg.cholesky(a)
        return None
    except np.linalg.LinAlgError:
        pass
    low = np.linalg.eigvalsh(a)[..., 0]
    tol = 8.0 * r * np.finfo(np.float64).eps * scale
    ok = low > tol if definite else low >= -tol
    if np.all(ok):
        return None
    bad = _bad_members(fam, ok.reshape(lead), low.reshape(lead))
    return (f"is not positive {'' if definite else 'semi-'}definite (the value: its smallest eigenvalue) at "
            f"{', '.join(bad)}")


def _not_chol(fam: BoundFamily, a: np.ndarray) -> str | None:
    """What is wrong with ``chol`` of mvnormal (Stan's multi_normal_cholesky's L: its lower
    triangle is read, and a diagonal entry <= 0 is no Cholesky factor) and where, or None."""
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        return None  # the shape is the lowering's business
    diag = np.diagonal(a, axis1=-2, axis2=-1)
    low = diag.min(axis=-1) if diag.size else np.ones(a.shape[:-2])
    ok = low > 0
    if np.all(ok):
        return None
    bad = _bad_members(fam, ok.reshape(a.shape[:-2]), low.reshape(a.shape[:-2]))
    return f"has a diagonal entry <= 0 (the value: its smallest) at {', '.join(bad)}; a Cholesky factor has none"


def _warn_tiny(bm: BoundModel, fam: BoundFamily, name: str, bad: list[str]) -> None:
    from fglang.errors import format_diagnostic

    span = dict(fam.ir.arg_spans).get(name, fam.ir.span)
    warnings.warn(format_diagnostic(Diagnostic(
        f"'{name}' of {fam.ir.dist.name} in factor '{fam.name}' is degenerate (below {TINY_SCALE:g})"
        f" at {', '.join(bad)}:"
        " its precision 1/sd^2 is past 1e20, which float32 cannot sum with the others (and past 1e38 is inf)",
        span, "check the data's units; a measurement that exact is better a constant or a fixed var",
        ), bm.ir.sources), stacklevel=3)  # the CLI prints "warning: " before it


def _tiny_typed_scales(bm: BoundModel, fam: BoundFamily, evaluated: set[str]) -> None:
    """Scales read straight from typed ``positive`` data are not evaluated (``_needed``); their
    data arrays are cheap to look at."""
    for name, e in fam.ir.args:
        base = e.base if isinstance(e, A.Index) else e
        if name in SCALE_ARGS and name not in evaluated and isinstance(base, A.Name) and base.id in bm.data:
            arr = np.asarray(bm.data[base.id], dtype=np.float64)
            small = np.abs(arr) < TINY_SCALE
            if np.any(small):
                _warn_tiny(bm, fam, name, [f"data '{base.id}' (value {arr[small].reshape(-1)[0]:g})"])


def _support(fam: BoundFamily, sig, y: np.ndarray, args: dict[str, Any]) -> list[Diagnostic]:
    f = fam.ir
    if sig.name == "ordered_logistic" and np.ndim(args.get("cutpoints")) >= 1:
        return _ordered_outcomes(fam, y, np.shape(args["cutpoints"])[-1])
    rule = _SUPPORT_RULE.get(sig.support)
    if rule is not None and not np.all(rule[1](y)):
        bad = _bad_members(fam, rule[1](y), y)
        return [Diagnostic(f"the observation of factor '{f.name}' ({sig.name}) is {rule[0]} at {', '.join(bad)}",
                           f.span, "check the data on the left of '~'")]
    if sig.name == "categorical":
        probs = args.get("logits", args.get("p"))
        if probs is not None and np.ndim(probs) >= 1:
            k = np.shape(probs)[-1]
            ok = y < k
            if not np.all(ok):
                bad = _bad_members(fam, ok, y)
                return [Diagnostic(f"the outcome of categorical factor '{f.name}' must be in 0..{k - 1} "
                                   f"(0-based), but is not at {', '.join(bad)}", f.span,
                                   "categories count from 0; subtract 1 from 1-based (Stan) data")]
    if sig.name == "binomial" and "n" in args and not f.arg_uses_vars("n"):
        n = np.asarray(args["n"], dtype=np.float64)
        ok = y <= n
        if not np.all(ok):
            bad = _bad_members(fam, ok, y)
            return [Diagnostic(f"the count of binomial factor '{f.name}' exceeds its n at {', '.join(bad)}", f.span)]
    return []


def _ordered_outcomes(fam: BoundFamily, y: np.ndarray, k: int) -> list[Diagnostic]:
    """An ordered_logistic rating outside 0..K (K cutpoints): NumPyro's log
    density is -inf or NaN there, which read as 'no valid initial point' at the
    cutpoints' start. Stan's ratings are 1-based, so its data's top rating is
    one past fglang's."""
    ok = (y >= 0) & (y <= k) & (y == np.round(y))
    if np.all(ok):
        return []
    bad = _bad_members(fam, ok, y)
    top = int(np.max(y))
    more = f"; or give the cutpoints {top} entries if {top} is a real rating" if top > k else ""
    return [Diagnostic(f"the rating of ordered_logistic factor '{fam.ir.name}' must be a whole number in 0..{k} "
                       f"({k} cutpoints give {k + 1} outcomes, 0-based), but is not at {', '.join(bad)}",
                       fam.ir.span, f"ratings count from 0: subtract 1 from 1-based (Stan) data, whose 1..{k + 1} "
                       f"are 0..{k} here{more}")]


def check_values(bm: BoundModel) -> None:
    """Raise one ``FgError`` listing every invalid data-only argument and observation.
    Evaluated in float64, as the data are: in float32 a sd of 1e-300 was reported as
    'must be > 0, but is ... (value 0)', and ints past 2^24 lost their last digits."""
    import jax

    with jax.enable_x64(True):
        _check_values(bm)


def _check_values(bm: BoundModel) -> None:
    cache: dict[str, Any] = {}

    def data() -> dict[str, Any]:  # JAX arrays only if some family must be evaluated
        if not cache:
            cache.update({k: jnp.asarray(v) for k, v in bm.data.items()})
        return cache

    errs: list[Diagnostic] = []
    for fam in bm.families.values():
        errs += _check_family(bm, fam, data)
    if errs:
        raise FgError(errs, bm.ir.sources)


# ------------------------------------------------------------------ the start point
def _centre(v) -> np.ndarray:
    """Where a var starts when nothing says otherwise: the centre of its support."""
    d = v.domain
    if d.kind in ("positive",):
        x = 1.0
    elif d.kind == "unit":
        x = 0.5
    elif d.kind == "interval" and d.lower is not None and d.upper is not None:
        x = (d.lower + d.upper) / 2
    elif d.kind == "interval" and d.lower is not None:
        x = d.lower + 1.0
    elif d.kind == "interval" and d.upper is not None:
        x = d.upper - 1.0
    else:
        x = 0.0
    out = np.full(v.shape, x)
    if d.kind in MATRIX_TYPES and len(v.value_shape) == 2:
        out = identity_start(v.shape)
    elif d.kind == "simplex" and v.value_shape:
        out = np.full(v.shape, 1.0 / v.value_shape[-1])
    elif d.kind == "ordered" and v.value_shape:
        out = np.broadcast_to(np.arange(v.value_shape[-1], dtype=float), v.shape).copy()
    return out


def _start_problem(bm: BoundModel, fam: BoundFamily, data, values) -> tuple[str, A.Span] | None:
    """What is wrong with ``fam``'s log density at ``values``: an invalid argument, or
    a non-finite log density, with the first members it happens at."""
    from fglang.runtime.numpyro_distributions import distribution
    from fglang.runtime.numpyro_model import _align_members

    idx = {k: jnp.asarray(v) for k, v in fam.idx.items()}
    out = fam.evaluate(data, idx, tuple(bm.gather(s, values) for s in fam.slots))
    if fam.ir.kind == "potential":
        lp = np.asarray(out["value"], dtype=np.float64)
        if not np.all(np.isfinite(lp)):
            return f"its potential is not finite at {', '.join(_bad_members(fam, np.isfinite(lp), lp))}", fam.ir.span
        return None
    sig = fam.ir.dist
    if sig is None or sig.sparsity:
        return None
    domains = {p.name: p.domain for p in sig.params} | {a.name: a.domain for g in sig.alternatives for a in g}
    for name, a in out["args"].items():
        a = np.asarray(a, dtype=np.float64)
        ok = np.isfinite(a)
        rule = _DOMAIN_RULE.get(domains.get(name, "real"))
        if rule is not None:
            ok = ok & rule[1](a)
        if a.size and not np.all(ok):
            return (f"'{name}' of {sig.name} {rule[0] if rule else 'must be finite'}, but is not at "
                    f"{', '.join(_bad_members(fam, ok, a))}", dict(fam.ir.arg_spans).get(name, fam.ir.span))
    try:
        lhs, args = _align_members(sig, out["lhs"], out["args"])
        lp = np.asarray(distribution(sig.name, args, np.shape(lhs)).log_prob(lhs), dtype=np.float64)
    except (ValueError, TypeError):
        return None
    if lp.size and not np.all(np.isfinite(lp)):
        y = np.broadcast_to(np.asarray(lhs, dtype=np.float64), lp.shape) if np.ndim(lhs) <= lp.ndim else lp
        return (f"its log density is not finite at {', '.join(_bad_members(fam, np.isfinite(lp), y))}"
                " (the value shown is the left side)", fam.ir.span)
    return None


def located_bad_start(bm: BoundModel, start: dict[str, Any], why: str) -> FgError | None:
    """`explain_bad_start` for a backend that detects the bad start itself (map's
    cost, GBP's messages not finite at iteration 0): the located error where it
    finds the factor at fault, else None (the backend keeps its own message)."""
    located = explain_bad_start(bm, start, ValueError(why))
    return located if any(d.span is not None for d in located.diagnostics) else None


def explain_bad_start(bm: BoundModel, init: dict[str, Any], err: BaseException) -> FgError:
    """The located error for a sampler's "no valid initial point" (NumPyro's
    ``Cannot find valid initial parameters`` or a distribution's invalid
    argument while it traces the model): the factors whose log density is not
    finite at the start (``init``, else each var at the centre of its support).
    Evaluated in float64, so that a float64 fit's start (1e308) is shown as it is."""
    import jax

    with jax.enable_x64(True):
        return _explain_bad_start(bm, init, err)


def _explain_bad_start(bm: BoundModel, init: dict[str, Any], err: BaseException) -> FgError:
    values = {n: jnp.asarray(init[n] if n in init else _centre(v)) for n, v in bm.variables.items()}
    data = {k: jnp.asarray(v) for k, v in bm.data.items()}
    start = ", ".join(f"{n} = {np.asarray(values[n]).reshape(-1)[0]:g}" + ("..." if np.size(values[n]) > 1 else "")
                      for n in list(bm.variables)[:6])
    errs = []
    for fam in bm.families.values():
        if fam.n_members == 0:
            continue
        try:
            found = _start_problem(bm, fam, data, values)
        except Exception:  # noqa: BLE001 - a family that cannot be evaluated here is left to the sampler's message
            found = None
        if found is not None:
            errs.append(Diagnostic(
                f"no valid initial point: factor '{fam.name}': {found[0]}, at the start ({start})", found[1],
                "a scale or rate computed from a var must be valid wherever the var starts: give the var a"
                " support that keeps it valid, transform it (exp, softplus), or start elsewhere with --init"))
    if not errs:
        errs.append(Diagnostic(f"the sampler found no valid initial point ({str(err).splitlines()[0][:200]})", None,
                               "start elsewhere with --init, or check the scales computed from vars"))
    return FgError(errs, bm.ir.sources)


def is_bad_start(err: BaseException) -> bool:
    """Whether a backend's exception says its start point has no finite log density."""
    text = str(err)
    return isinstance(err, ValueError | RuntimeError) and (
        "valid initial" in text or "got invalid" in text or "out of support" in text)


def _affine(fam: BoundFamily, data, idx, slots, uses: list[str]) -> bool:
    """Whether one member's outputs are affine in its slot values (a jaxpr walk, no compile).
    ``data``, ``idx``: NumPy arrays; ``slots``: one member's slot values or their shapes."""
    from fglang.runtime.gbp.affine import is_affine

    one_idx = {k: v[0] for k, v in idx.items()}

    def one(consts, *xs):
        out = fam.evaluate_one(consts, one_idx, xs)
        parts = [jnp.ravel(jnp.asarray(out["args"][n], dtype=jnp.float32)) for n in uses]
        if fam.ir.lhs_uses_vars:
            parts.append(jnp.ravel(jnp.asarray(out["lhs"], dtype=jnp.float32)))
        return jnp.concatenate(parts)

    try:
        return is_affine(one, data, slots)
    except Exception:  # noqa: BLE001 - unknown: check it the slow way
        return False


def _one_member_slots(bm: BoundModel, fam: BoundFamily) -> list[Any]:
    """One member's slot values as shapes (``[*block, *value]``, float32): all the affinity walk reads."""
    import jax

    return [jax.ShapeDtypeStruct(tuple(s.node_ids.shape[1:]) + tuple(bm.variables[s.var].value_shape), jnp.float32)
            for s in fam.slots]


def warn_saddle_start(bm: BoundModel, init: dict[str, Any]) -> None:
    """Warn when a factor's mean has an all-zero Jacobian at the start for some
    members (``y ~ normal(a * b, 0.1)`` from a = b = 0): a backend that
    linearizes there (GBP, Gauss-Newton) sees no information and "converges"
    at the saddle. One forward-mode product with a random tangent per family:
    members are independent, so a zero product is a zero Jacobian (with
    probability one) at the cost of two evaluations."""
    import jax

    from fglang.errors import format_diagnostic

    big = float(np.finfo(np.float32).max)  # a float64 fit's init past float32 is clipped here, not cast to inf
    values = data = None
    rng = np.random.default_rng(0)
    for fam in bm.families.values():
        f = fam.ir
        if fam.n_members == 0 or f.kind != "sample" or not fam.slots:
            continue
        uses = [n for n, _ in f.args if f.arg_uses_vars(n)]
        if not uses and not f.lhs_uses_vars:
            continue
        # Affine first, from shapes alone: a constant Jacobian does not depend on the start (zero only
        # for a factor that reads no var), so a linear model's check runs no JAX operation (each eager
        # one is a program of its own, lowered and looked up in the cache: ~0.35 s of a warm denoise fit).
        if _affine(fam, bm.data, {k: np.asarray(v) for k, v in fam.idx.items()}, _one_member_slots(bm, fam), uses):
            continue
        if values is None:
            values = {n: jnp.asarray(np.clip(np.asarray(init[n] if n in init else _centre(v), np.float64), -big,
                                             big), dtype=jnp.float32)
                      for n, v in bm.variables.items()}
            data = {k: jnp.asarray(v) for k, v in bm.data.items()}
        idx = {k: jnp.asarray(v) for k, v in fam.idx.items()}
        slots = tuple(bm.gather(s, values) for s in fam.slots)
        tangents = tuple(jnp.asarray(rng.standard_normal(np.shape(x)), dtype=x.dtype) for x in slots)

        def outputs(*xs, fam=fam, idx=idx, uses=uses, data=data):
            out = fam.evaluate(data, idx, xs)
            parts = [jnp.asarray(out["args"][n], dtype=jnp.float32) for n in uses]
            if fam.ir.lhs_uses_vars:
                parts.append(jnp.asarray(out["lhs"], dtype=jnp.float32))
            m = fam.n_members
            return jnp.concatenate([jnp.broadcast_to(p, (m,) + jnp.shape(p)[1:]).reshape(m, -1)
                                    if jnp.ndim(p) and jnp.shape(p)[0] == m else jnp.broadcast_to(p, (m, 1))
                                    for p in parts], axis=1)

        try:
            _, dots = jax.jvp(outputs, slots, tangents)
        except Exception:  # noqa: BLE001 - a family that cannot be differentiated here is not this warning's
            continue
        flat = np.abs(np.asarray(dots)).reshape(fam.n_members, -1).max(axis=1)
        if np.all(flat > 0):
            continue
        bad = _bad_members(fam, flat > 0, flat)
        warnings.warn(format_diagnostic(Diagnostic(
            f"factor '{f.name}' has an all-zero Jacobian at the start at {', '.join(b.split(' (')[0] for b in bad)}:"
            " a fit that linearizes there sees no information and can stop at this saddle point", f.span,
            "start elsewhere with --init (or --init map), or give the vars priors whose means are not zero",
            ), bm.ir.sources), stacklevel=3)  # the CLI prints "warning: " before it
