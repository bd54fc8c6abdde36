"""BoundModel -> a NumPyro model function (shared by the VI and MCMC backends).

One ``numpyro.sample`` site per var (its support from the var's domain),
one ``numpyro.deterministic`` per ``let``, and one vectorized site per
factor family: ``sample(..., obs=...)`` under a plate when the left side
is data, ``numpyro.factor`` otherwise. Never a Python loop over members.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from fglang.compiler.bind import BoundFamily, BoundModel, BoundSlot, BoundVariable
from fglang.compiler.bound import SharedSlot, let_values
from fglang.compiler.groups import GROUPS
from fglang.compiler.types import Domain
from fglang.runtime.numpyro_backend import validate  # noqa: F401  (NumPyro-free: a warm fit checks without NumPyro)
from fglang.runtime.numpyro_bounds import var_support
from fglang.runtime.numpyro_distributions import distribution, sparsity_prior
from fglang.runtime.numpyro_matrix import MATRIX_CONSTRAINTS

# A var whose domain equals its prior's support samples from the prior directly;
# these are the var domains each support matches exactly. (Not a matrix var: it is
# sampled through its own support's jitted bijection with its prior a factor,
# numpyro_matrix.py; the median of LKJ draws that NumPyro would start from is
# no correlation matrix, and the prior's support would bring an unjitted transform.)
_EXACT_SUPPORT = {
    "real": {"real"},
    "positive": {"positive"},
    "unit": {"unit"},
    "simplex": {"simplex"},
}

def domain_constraint(d: Domain) -> constraints.Constraint:
    if d.kind == "real":
        return constraints.real
    if d.kind == "positive":
        return constraints.positive
    if d.kind == "unit":
        return constraints.unit_interval
    if d.kind == "simplex":
        return constraints.simplex
    if d.kind == "ordered":
        return constraints.ordered_vector
    if d.kind == "positive_ordered":
        return constraints.positive_ordered_vector
    if d.kind in MATRIX_CONSTRAINTS:
        return MATRIX_CONSTRAINTS[d.kind]
    if d.kind == "interval":
        if d.lower is not None and d.upper is not None:
            return constraints.interval(d.lower, d.upper)
        if d.lower is not None:
            return constraints.greater_than(d.lower)
        return constraints.less_than(d.upper)
    raise AssertionError(d.kind)


def _event_shape(v: BoundVariable) -> tuple[int, ...]:
    return v.node_shape + v.value_shape


def _per_node(arg, v: BoundVariable, event_ndim: int):
    """Family-member-major arguments [M, *rest] (or [1, *rest]) -> node grid + value axes."""
    a = jnp.asarray(arg)
    rest = a.shape[1:]
    value_axes = len(v.value_shape) - event_ndim
    pad = max(value_axes - len(rest), 0)
    # a member axis of 1: the same argument for every node (`lean` evaluation), broadcast where used
    nodes = v.node_shape if a.shape[0] != 1 else (1,) * len(v.node_shape)
    return a.reshape(nodes + (1,) * pad + rest)


class NumpyroModel:
    """Holds the bound model and builds the NumPyro model function.

    ``priors`` (var name -> (mean, sd) arrays of the var's shape) replaces a
    var's prior by independent normals: how a posterior carried from an
    earlier fit becomes the next fit's prior.
    """

    def __init__(
        self,
        bm: BoundModel,
        priors: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
        predict: set[str] | frozenset[str] = frozenset(),
        group_priors: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ):
        validate(bm)
        self.bm = bm
        self.priors = priors or {}
        # group var -> (mean storage [n, *storage], tangent cov [n, dof, dof]): a carried marginal
        self.group_priors = group_priors or {}
        # group var -> the base point of its chart (storage, the var's shape): where
        # init (or a carried prior's mean) puts it, else the identity
        self.bases: dict[str, np.ndarray] = {}
        # families whose left side is predicted (sampled, not observed)
        self.predict = set(predict)
        self.data = {k: jnp.asarray(v) for k, v in bm.data.items()}
        self.idx = {
            name: {k: jnp.asarray(v) for k, v in fam.idx.items()} for name, fam in bm.families.items()
        }
        # Families are evaluated in batches, each batch one jitted call (see
        # `_outputs`): NumPyro runs the model outside of jit (its prototype trace,
        # the chains' initialization), where a vmapped evaluation would dispatch
        # and compile every primitive on its own, and a jit per family compiled
        # one XLA program per family (K = 50 families: 100 programs). Under an
        # outer jit the call is inlined, so the compiled sampler is the same.
        self._batches: dict[tuple[str, ...], Callable] = {}
        self._done: dict[str, dict] = {}  # this run of the model: family -> its outputs, until used
        self._evaluated: set[str] = set()  # this run of the model: every family evaluated so far
        self._inputs = {name: _var_inputs(fam) for name, fam in bm.families.items()}
        self._wanted = [
            name for name, fam in bm.families.items()
            if (fam.ir.prior_of is None and fam.n_members > 0)
            or (fam.ir.prior_of is not None and fam.ir.prior_of not in self.priors)
        ]
        # slots whose members all read one node (a scalar var in an indexed family)
        self._one_node = {
            (name, i): _single_node(s) for name, fam in bm.families.items() for i, s in enumerate(fam.slots)
        }

    # ------------------------------------------------------------------ pieces
    def _slot_values(self, fam: BoundFamily, values: dict[str, Any], own: str | None = None):
        out = []
        for i, s in enumerate(fam.slots):
            v = self.bm.variables[s.var]
            if s.var == own and own not in values:
                out.append(jnp.zeros(s.node_ids.shape + v.value_shape))
            elif self._one_node.get((fam.name, i)) is not None:
                # shared by the members, not gathered: its gradient is one product, not a scatter-add
                node = jnp.reshape(values[s.var], (v.n_nodes,) + v.value_shape)[self._one_node[(fam.name, i)]]
                out.append(SharedSlot(jnp.broadcast_to(node, s.node_ids.shape[1:] + v.value_shape)))
            else:
                out.append(self.bm.gather(s, values))
        return tuple(out)

    def _outputs(self, fam: BoundFamily, data, values, own: str | None = None) -> dict:
        """The family's outputs. Where this run of the model has not evaluated
        them yet, every family whose vars are all known by now is evaluated
        with it, in one jitted call: two or three XLA programs for the model's
        eager runs, whatever the number of families."""
        if fam.name not in self._done:
            # not the families this run already evaluated and used (their outputs were
            # popped): evaluating them again traced every prior family a second time
            # into the factors' batch (K = 50: 50 dead evaluations per trace of the model)
            ready = [n for n in self._wanted if n not in self._evaluated and self._inputs[n] <= values.keys()]
            if fam.name not in ready:
                ready.append(fam.name)
            key = tuple(ready)
            if key not in self._batches:
                self._batches[key] = jax.jit(self._batch(key))
            needed = set().union(*(self._inputs[n] for n in key)) & values.keys()
            self._done.update(self._batches[key](data, {n: self.idx[n] for n in key}, {k: values[k] for k in needed}))
            self._evaluated.update(key)
        out = self._done.pop(fam.name)
        # lean outputs: an argument the same for every member keeps a member axis of 1 (it
        # broadcasts), but a value or left-hand side the same for every member is still M
        # terms of the density (`f[n in 0:N]: potential c` adds N * c)
        m = fam.n_members
        return {k: jnp.broadcast_to(v, (m,) + v.shape[1:]) if k in ("lhs", "value") and v.shape[:1] == (1,) != (m,)
                else v for k, v in out.items()}

    def _batch(self, names: tuple[str, ...]) -> Callable:
        families = [self.bm.families[n] for n in names]

        def evaluate(data, idx, values):
            return {
                fam.name: fam.evaluate(data, idx[fam.name], self._slot_values(fam, values, fam.ir.prior_of), lean=True)
                for fam in families
            }

        return evaluate

    def _sample_var(self, v: BoundVariable, data, values) -> jnp.ndarray:
        shape = _event_shape(v)
        if math.prod(shape) == 0:
            # a var of size zero that a live factor reads (`X @ w` with D = 0): no sample
            # site (there is nothing to infer; its prior family was pruned, runtime/empty.py)
            return jnp.zeros(shape)
        if v.domain.kind in GROUPS:
            return self._sample_group(v, shape)
        if v.name in self.priors:
            mean, sd = self.priors[v.name]
            return numpyro.sample(v.name, dist.Normal(jnp.asarray(mean), jnp.asarray(sd)).to_event(len(shape)))
        support = var_support(self.bm, v, data, values) if v.bounds else domain_constraint(v.domain)
        if v.prior is None:
            return numpyro.sample(v.name, dist.ImproperUniform(support, (), shape))
        fam = self.bm.families[v.prior]
        sig = fam.ir.dist
        out = self._outputs(fam, data, values, own=v.name)
        args = out["args"]
        if sig.sparsity:
            scalar_args = {
                k: jnp.reshape(a, (-1,) + jnp.shape(a)[1:])[0] if jnp.ndim(a) else a for k, a in args.items()
            }
            if sig.name in ("spike_slab",):
                per = {k: _per_node(a, v, 0) for k, a in args.items()}
                return sparsity_prior(v.name, sig.name, per, shape)
            if sig.name == "ard":
                per = {k: jnp.broadcast_to(_per_node(a, v, 0), shape) for k, a in args.items()}
                return sparsity_prior(v.name, sig.name, per, shape)
            return sparsity_prior(v.name, sig.name, scalar_args, shape)
        per = {k: _per_node(a, v, sig.event_ndim) for k, a in args.items()}
        d = distribution(sig.name, per, shape)
        value_batch = v.value_shape[: len(v.value_shape) - sig.event_ndim] if sig.event_ndim else v.value_shape
        batch = v.node_shape + value_batch
        d = d.expand(batch).to_event(len(batch))
        if v.domain.kind in _EXACT_SUPPORT.get(sig.support, ()) or (
            sig.support == "real" and v.domain.kind == "real"
        ):
            return numpyro.sample(v.name, d)
        # narrower var than the prior's support: Stan's implicit truncation
        x = numpyro.sample(v.name, dist.ImproperUniform(support, (), shape))
        numpyro.factor(f"{v.name}__prior", d.log_prob(x))
        return x

    def _sample_group(self, v: BoundVariable, shape: tuple[int, ...]) -> jnp.ndarray:
        """A group var: one site of its storage shape, supported on the group and
        sampled in the exponential chart at its base (``group_chart``)."""
        from fglang.runtime import group_chart
        from fglang.runtime.manifold import identity

        kind = v.domain.kind
        base = self.bases.get(v.name)
        if base is None:
            base = self.group_priors[v.name][0] if v.name in self.group_priors else identity(v)
        base = np.asarray(base, np.float64).reshape(shape)
        x = numpyro.sample(v.name, dist.ImproperUniform(group_chart.support(kind, base, shape), (), shape))
        if v.name in self.group_priors:
            from fglang.compiler.lie_jax import local

            mean, cov = self.group_priors[v.name]
            g = GROUPS[kind]
            mean = jnp.asarray(mean, x.dtype).reshape((v.n_nodes,) + g.storage)
            e = local(kind, jnp.reshape(x, (v.n_nodes,) + g.storage), mean)
            # the carried tangent Gaussian as a density on the group (Haar measure)
            logp = dist.MultivariateNormal(jnp.zeros(g.tangent, x.dtype), jnp.asarray(cov, x.dtype)).log_prob(e)
            numpyro.factor(f"{v.name}__prior", jnp.sum(logp - group_chart.log_det_jacobian(kind, e)))
        return x

    def _family_site(self, fam: BoundFamily, data, values) -> None:
        if fam.n_members == 0:
            return
        out = self._outputs(fam, data, values)
        name = fam.name
        if fam.ir.kind == "potential":
            numpyro.factor(name, jnp.sum(out["value"]))
            return
        sig = fam.ir.dist
        lhs, args = _align_members(sig, out["lhs"], out["args"])
        if sig.sparsity:
            numpyro.factor(name, jnp.sum(self._sparsity_factor_logp(name, sig.name, args, lhs)))
            return
        d = distribution(sig.name, args, jnp.shape(lhs))
        batch = jnp.broadcast_shapes(d.batch_shape, lhs.shape[: lhs.ndim - len(d.event_shape)])
        d = d.expand(batch)
        if name in self.predict:
            with numpyro.plate(f"{name}__members", batch[0], dim=-1):
                numpyro.sample(name, d.to_event(len(batch) - 1) if len(batch) > 1 else d)
            return
        if not fam.ir.lhs_uses_vars:
            obs = jnp.broadcast_to(lhs, batch + d.event_shape)
            with numpyro.plate(f"{name}__members", batch[0], dim=-1):
                numpyro.sample(name, d.to_event(len(batch) - 1) if len(batch) > 1 else d, obs=obs)
            return
        numpyro.factor(name, jnp.sum(d.log_prob(lhs)))

    def _sparsity_factor_logp(self, name: str, kind: str, args: dict, lhs):
        """A sparsity prior used in a factor: hierarchical scales as aux sites
        (centered, since the var has its own site), density of the left side."""
        shape = jnp.broadcast_shapes(lhs.shape, *(jnp.shape(a) for a in args.values()))
        lhs = jnp.broadcast_to(lhs, shape)
        if kind == "spike_slab":
            return _spike_slab_logp(args, lhs)
        if kind == "horseshoe":
            local = numpyro.sample(f"{name}__local", dist.HalfCauchy(1.0).expand(shape).to_event(len(shape)))
            glob = numpyro.sample(f"{name}__global", dist.HalfCauchy(jnp.reshape(args["scale"], (-1,))[0]))
            return dist.Normal(0.0, local * glob).log_prob(lhs)
        if kind == "reg_horseshoe":
            scale = jnp.reshape(args["scale"], (-1,))[0]
            slab_scale = jnp.reshape(args["slab_scale"], (-1,))[0]
            slab_df = jnp.reshape(args["slab_df"], (-1,))[0]
            local = numpyro.sample(f"{name}__local", dist.HalfCauchy(1.0).expand(shape).to_event(len(shape)))
            glob = numpyro.sample(f"{name}__global", dist.HalfCauchy(scale))
            caux = numpyro.sample(f"{name}__caux", dist.InverseGamma(0.5 * slab_df, 0.5 * slab_df))
            c2 = slab_scale**2 * caux
            lam2 = local**2
            s = glob * jnp.sqrt(c2 * lam2 / (c2 + glob**2 * lam2))
            return dist.Normal(0.0, s).log_prob(lhs)
        # ard
        a = jnp.broadcast_to(args["a"], shape)
        b = jnp.broadcast_to(args["b"], shape)
        prec = numpyro.sample(f"{name}__precision", dist.Gamma(a, b).to_event(len(shape)))
        return dist.Normal(0.0, jax.lax.rsqrt(prec)).log_prob(lhs)

    # ------------------------------------------------------------------ model
    def model_fn(self) -> Callable:
        bm = self.bm

        def model(data: dict[str, Any]):
            self._done = {}
            self._evaluated = set()
            values: dict[str, Any] = {}
            for v in bm.variables.values():
                values[v.name] = self._sample_var(v, data, values)
            # every let that reads a var, in one pass over their shared nodes; a let of
            # data only is computed once at bind (BoundDerived.value), not stored per draw
            for name, value in let_values(bm, data, values).items():
                numpyro.deterministic(name, value)
            for fam in bm.families.values():
                if fam.ir.prior_of is not None:
                    continue
                self._family_site(fam, data, values)

        return model


# event rank of the parameters that are not scalars per element of the batch
_PARAM_EVENT_NDIM = {
    ("mvnormal", "mu"): 1,
    ("mvnormal", "cov"): 2,
    ("mvnormal", "prec"): 2,
    ("mvnormal", "chol"): 2,
    ("wishart", "S"): 2,
    ("inv_wishart", "S"): 2,
    ("dirichlet", "alpha"): 1,
    ("categorical", "logits"): 1,
    ("categorical", "p"): 1,
    ("ordered_logistic", "cutpoints"): 1,
}


def _align_members(sig, lhs, args: dict) -> tuple[jnp.ndarray, dict]:
    """A family's outputs are member-major, ``[M, *per-member shape]``. Per member
    they broadcast as NumPy does (from the trailing axis: ``0 ~ normal(e[3], sd)``),
    so pad every one with unit axes right after the member axis up to a common
    batch rank (event axes stay last); then the member axis lines up everywhere."""
    items = {k: jnp.asarray(a) for k, a in args.items()}
    items["__lhs"] = jnp.asarray(lhs)
    ev = {k: _PARAM_EVENT_NDIM.get((sig.name, k), 0) for k in args}
    ev["__lhs"] = sig.event_ndim
    rank = max(max(a.ndim - 1 - ev[k], 0) for k, a in items.items())
    out = {}
    for k, a in items.items():
        pad = rank + ev[k] - (a.ndim - 1)
        out[k] = a.reshape(a.shape[:1] + (1,) * pad + a.shape[1:]) if pad > 0 else a
    lhs = out.pop("__lhs")
    return lhs, out


def _var_inputs(fam: BoundFamily) -> frozenset[str]:
    """The vars a family reads, less the var whose prior it is (read as zeros: see `_slot_values`)."""
    return frozenset(s.var for s in fam.slots) - {fam.ir.prior_of}


def _single_node(s: BoundSlot) -> int | None:
    """The flat node index every member of a slot reads, if they all read the same one."""
    ids = s.node_ids
    if s.grid_slice is not None or ids.size == 0:
        return None
    k = int(ids.flat[0])
    return k if bool(np.all(ids == k)) else None


def _spike_slab_logp(args: dict, x):
    p, slab, spike = args["p"], args["slab_sd"], args["spike_sd"]
    return jnp.logaddexp(
        jnp.log(p) + dist.Normal(0.0, slab).log_prob(x), jnp.log1p(-p) + dist.Normal(0.0, spike).log_prob(x)
    )
