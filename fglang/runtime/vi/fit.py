"""The ``vi`` backend's work: stochastic VI on the lowered NumPyro model.

The guide is a normal distribution on the model's unconstrained parameters
``z`` (NumPyro's transforms and Jacobians, as Stan's ADVI), fitted in a
whitened space: ``z = m + L u``, with ``m`` the mode and ``L L^T`` the inverse
Hessian there (the Laplace approximation), so that the posterior of ``u`` is
close to a standard normal and one Adam learning rate suits every parameter
whatever its scale or correlations (a slope of 0.01 sd next to an intercept of
30 sd). Where no mode is found (a funnel, an improper posterior) or the model
is too large for a dense Hessian, ``m`` is the initial point and ``L`` the
identity (or the Hessian's diagonal for ``normal``).

Steps run in jitted chunks (``lax.scan``), no Python loop per step; after each
chunk the mean loss of the chunk is the smoothed ELBO: when it has not improved
for ``PATIENCE`` chunks the learning rate falls by ``DECAY``; after
``REDUCTIONS`` falls and another plateau the fit has converged. Then the guide
is checked against the model by Pareto-smoothed importance sampling (k-hat).

Every fit is a batch: the data are an argument of the compiled functions
(never a constant in them), and the steps, the draws and the bookkeeping run
over a leading axis of data sets (``jax.vmap``). One fit is a batch of one;
``fit_many`` (many data sets of one model shape) is the same program over B
data sets, each with its own learning-rate schedule and stopping point, and
gives what B separate fits give. Over several devices (``devices=N``) one fit
splits its data rows over the mesh (data-parallel: XLA partitions the
log-likelihood and all-reduces the ELBO and its gradient); ``fit_many``
splits the data sets over it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from fglang.compiler.bind import BoundModel
from fglang.errors import Diagnostic, FgError
from fglang.runtime.carry import CarriedMarginal
from fglang.runtime.device import MESH_AXIS, broadcast_from_first, current_mesh, fetch, mesh_processes
from fglang.runtime.numpyro_sites import init_sites, numpyro_model, precision, resolve_dtype, site_draws
from fglang.runtime.posterior import Posterior
from fglang.runtime.vi.guides import guide_dist, init_params
from fglang.runtime.vi.mode import find_mode, hessian, laplace_scale
from fglang.runtime.vi.options import AUTO_LOWRANK_MAX, AUTO_MVN_MAX, ViOptions
from fglang.runtime.vi.program import ExportedJit, fit_key, start_key
from fglang.runtime.vi.psis import KHAT_BAD, psis
from fglang.runtime.vi.psis import ess as psis_ess
from fglang.runtime.vi.schedule import CHUNK, WARMUP, Runs, optimize

DENSE_MAX = 2000  # largest D whose Hessian is formed (Laplace whitening)
PSIS_DRAWS = 1000  # at least this many guide draws weighted for k-hat
DRAW_BATCH = 250


def choose_guide(requested: str, dim: int) -> str:
    if requested != "auto":
        return requested
    if dim <= AUTO_MVN_MAX:
        return "mvn"
    return "lowrank" if dim <= AUTO_LOWRANK_MAX else "normal"


def fit_vi(
    bm: BoundModel, o: ViOptions, *, seed: int, init: dict, carried: dict[str, CarriedMarginal], progress: bool = False
) -> Posterior:
    """One VI fit (a batch of one data set)."""
    return fit_vi_many([bm], o, seed=seed, init=init, carried=carried, progress=progress)[0]


def fit_vi_many(
    bms: list[BoundModel], o: ViOptions, *, seed: int, init: dict, carried: dict[str, CarriedMarginal],
    progress: bool = False,
) -> list[Posterior]:
    """VI fits of one model to many data sets of one shape (the caller checks
    that they bind alike: `fglang.runtime.many.check_same_shape`), compiled
    once; each data set's posterior is the one ``fit_vi`` gives it with ``seed``."""
    dtype = resolve_dtype(o.dtype)
    with precision(dtype):
        posts = _fit(bms, o, dtype, seed, init, carried, progress)
        again = [b for b, p in enumerate(posts) if _second_start_needed(p)]
        if again:
            others = _fit([bms[b] for b in again], o, dtype, seed, init, carried, progress, whiten=False)
            for b, other in zip(again, others, strict=True):
                posts[b] = _better_start(posts[b], other)
    return posts


def _second_start_needed(post: Posterior) -> bool:
    """A whitened fit the PSIS check flags. The Laplace whitening at the joint
    mode suits a posterior shaped like its mode; a hierarchical model's joint
    mode is not (radon non-centered: the mode has the group scale at 6.6, the
    posterior at 0.75, and Adam in the mode's units stopped at 2.5 with k-hat
    1.27, where NumPyro's plain start reaches 0.73)."""
    return post.attrs.get("khat", 0.0) > KHAT_BAD and bool(post.attrs.get("whitened"))


def _better_start(whitened: Posterior, plain: Posterior) -> Posterior:
    """The fit with the larger ELBO (both estimated from the same number of guide
    draws, in the model's unconstrained space: comparable whatever the
    whitening), the other one's numbers recorded beside it."""
    w, p = whitened.attrs.get("elbo", -np.inf), plain.attrs.get("elbo", -np.inf)
    best, other = (plain, whitened) if p > w else (whitened, plain)
    best.attrs["other_start"] = {"start": other.attrs["start"], "whitened": other.attrs.get("whitened"),
                                 "elbo": other.attrs.get("elbo"), "khat": other.attrs.get("khat"),
                                 "steps": other.attrs.get("steps")}
    best.attrs["kept_start"] = "plain" if best is plain else "whitened"  # of the two a second start compares
    best.attrs["start"] += (" (a second start: the whitened fit from the mode had k-hat "
                            f"{whitened.attrs['khat']:.2f}; this one has the larger ELBO)" if best is plain else
                            " (kept over a second, plain start with a smaller ELBO)")
    return best


@dataclass
class _Item:
    """One data set's start: where its optimization begins and in which units."""

    data: dict[str, Any]
    flat0: Any
    center: Any
    scale: Any  # None (identity), a vector, or a matrix
    start: str
    scale0: float
    whitened: bool = False  # in the units of the mode's Laplace approximation (attrs["whitened"])


def _fit(bms, o: ViOptions, dtype: str, seed: int, init: dict, carried, progress: bool,
         whiten: bool = True) -> list[Posterior]:
    """``whiten``: False starts at the initial point in the model's own units
    (NumPyro's AutoGuide start), without the mode search."""
    t0 = time.perf_counter()
    # the NumPyro models, built (and NumPyro imported) where a program is traced
    # or an init is mapped onto sites: a warm fit runs stored programs only
    built: list = []

    def nms() -> list:
        if not built:
            # first built inside a trace, maybe: its arrays are concrete all the same, not the trace's
            with jax.ensure_compile_time_eval():
                built.extend(numpyro_model(bm, carried) for bm in bms)
                built.append(built[0].model_fn())  # the data sets bind alike: one model function serves them all
        return built[:-1]

    def model(*args, **kwargs):
        nms()
        return built[-1](*args, **kwargs)

    # the data as the models hold them (``NumpyroModel.data``), without building one
    data0 = [jax.device_put({k: np.asarray(v) for k, v in bm.data.items()}) for bm in bms]
    sites = [init_sites(nm, init) for nm in nms()] if init else [{} for _ in bms]

    def potential_z(z, data):
        from numpyro.infer.util import potential_energy

        return potential_energy(model, (data,), {}, z)

    mesh = current_mesh()
    place = _Placement(mesh, len(bms))
    # the start's pieces run as stored programs too (`vi.program.start_key`): a
    # warm fit traces neither the initial point nor the mode search's potential
    # (and so do the few array operations between them: each eager operation is
    # a program of its own, lowered and looked up in the cache on every fit)
    start_base = None if place.mesh is not None else start_key(bms[0], dtype, carried)
    k_init, k_fit, k_draw = ExportedJit("keys", start_base, _split_keys, once=True)(np.int64(seed))
    shape: dict[str, Any] = {}  # "unravel": the flat vector's sites, known from the first start

    def potential(flat, data):
        return potential_z(shape["unravel"](flat), data)

    # the mode search's value and gradient also judge each start (one compilation
    # of the potential's gradient, not a second one inside the start's program)
    vg = ExportedJit("value-and-grad", start_base, jax.value_and_grad(potential))

    def valid(z, flat, data) -> bool:
        if "unravel" not in shape:
            shape["unravel"] = _unraveler(z)
        v, g = vg(np.asarray(flat), data)
        return bool(np.isfinite(v)) and bool(np.all(np.isfinite(np.asarray(g))))

    starter = _Starter(model, potential_z, start_base, valid)
    z0 = [starter.start(d, si, k_init) for d, si in zip(data0, sites, strict=True)]  # (z, its flat vector) each
    flat0, unravel = z0[0][1], shape["unravel"]
    dim = int(flat0.size)
    if dim == 0:
        raise FgError([Diagnostic("the model has no vars to infer", None)])
    guide = choose_guide(o.guide, dim)
    fdt = flat0.dtype

    def postprocess(flat, data):
        from numpyro.infer.util import constrain_fn

        return constrain_fn(model, (data,), {}, unravel(flat), return_deterministic=True)

    def uniform_start(k, data):
        """NUTS's kind of start, uniform(-2, 2) on the unconstrained axes, and whether its density is finite."""
        u0 = jax.random.uniform(jax.random.fold_in(k, 99), (dim,), fdt, -2.0, 2.0)
        return u0, jnp.isfinite(potential(u0, data))

    uniform = ExportedJit("uniform-start", start_base, uniform_start, once=True)
    pot = ExportedJit("potential", start_base, potential)
    hess = ExportedJit("hessian", start_base, lambda x, data: hessian(lambda f: potential(f, data), x),
                       once=True)
    datas = [place.data_one(d) if len(bms) == 1 else d for d in data0]
    phases = {"start": time.perf_counter() - t0}

    items = [_whiten(guide, dim, z[1], data, bool(si), lambda d: uniform(k_init, d), pot, vg, hess)
             if whiten else _plain_item(guide, dim, z[1], data)
             for z, data, si in zip(z0, datas, sites, strict=True)]
    items = place.agree(items)
    phases["mode"] = time.perf_counter() - t0 - sum(phases.values())

    # the whitening (center, scale) is an argument of the jitted functions, not a
    # constant in them: a dense scale would bloat the program, and a constant that
    # differs between fits would miss the persistent compilation cache
    scale_is_matrix = any(it.scale is not None and it.scale.ndim == 2 for it in items)
    rank = o.rank or max(1, min(32, int(round(np.sqrt(dim)))))
    n = place.padded(len(items))
    batch = items + [items[0]] * (n - len(items))  # padding to a multiple of the devices: fitted, then dropped

    # the batch assembled in NumPy (exact copies; a stored program takes them as they are)
    def scale_of(it):
        scale = None if it.scale is None else np.asarray(it.scale)
        if scale_is_matrix:
            return scale if scale is not None and scale.ndim == 2 else np.diag(
                np.ones(dim, fdt) if scale is None else scale)
        return np.ones(dim, fdt) if scale is None else scale

    stack = partial(jax.tree.map, lambda *xs: np.stack([np.asarray(x) for x in xs]))
    W = place.batch((stack(*[it.center for it in batch]), stack(*[scale_of(it) for it in batch])))
    S0 = place.batch(np.asarray([it.scale0 for it in batch], fdt))
    D = place.batch(stack(*data0 + [data0[0]] * (n - len(data0))), data=True)
    k_params = jax.random.fold_in(k_fit, 1) if guide == "lowrank" else None  # only a low-rank factor is drawn
    params = place.batch(stack(*[init_params(guide, dim, rank, fdt, k_params, it.scale0) for it in batch]))

    def to_z(u, w):
        c, sc = w
        return c + (sc @ u if scale_is_matrix else sc * u)

    def loss_fn(p, k, w, data, scale0):
        if guide == "delta":
            return potential(to_z(p["loc"], w), data)
        q = guide_dist(guide, p, scale0)
        u = q.rsample(k, (o.particles,))
        return jnp.mean(jax.vmap(lambda v: potential(to_z(v, w), data))(u)) - q.entropy()

    def adam():
        import optax  # where a program is traced

        return optax.scale_by_adam()

    def step(carry, lr, w, data, scale0):
        p, s, k, n_done = carry
        k, sub = jax.random.split(k)
        loss, g = jax.value_and_grad(loss_fn)(p, sub, w, data, scale0)
        upd, s2 = adam().update(g, s, p)
        rate = -lr * jnp.minimum(1.0, (n_done + 1.0) / WARMUP)  # linear warm-up, then lr
        p2 = jax.tree.map(lambda x, d: x + rate * d, p, upd)
        ok = jnp.isfinite(loss) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(g)]))
        # a step whose loss or gradient is not finite is skipped
        p2 = jax.tree.map(lambda a, b: jnp.where(ok, b, a), p, p2)
        s2 = jax.tree.map(lambda a, b: jnp.where(ok, b, a), s, s2)
        return (p2, s2, k, n_done + 1), loss

    def chunk_one(p, s, k, n_done, lr, w, data, scale0, length):
        lrs = jnp.full(length, lr, fdt)
        (p, s, k, _), losses = jax.lax.scan(lambda c, r: step(c, r, w, data, scale0), (p, s, k, n_done), lrs)
        return p, s, k, losses

    # the SVI chunk and the draws run as stored exported programs (`vi.program`):
    # a warm fit neither traces nor lowers them; the optimizer state goes in and
    # out as its leaves (its named tuples are not exportable)
    n_draw = -(-max(o.draws, PSIS_DRAWS) // DRAW_BATCH) * DRAW_BATCH  # whole batches: the body compiles once
    base = None if place.mesh is not None else fit_key(bms[0], o, dtype, carried, guide=guide, rank=rank, dim=dim,
                                                       scale_is_matrix=scale_is_matrix, n_draw=n_draw)
    # Adam's state is carried between chunks as its leaves (a stored program's
    # arguments), made by a stored program too (no optax import on a warm fit)
    adam_init = ExportedJit("adam-init", base, lambda p: jax.tree.leaves(jax.vmap(adam().init)(p)), once=True)
    states = place.batch(adam_init(params))

    def chunk_leaves(p, s_leaves, k, n_done, lr, w, data, scale0, length):
        s = jax.tree.unflatten(jax.tree.structure(jax.eval_shape(jax.vmap(adam().init), p)), s_leaves)
        p, s, k, losses = jax.vmap(partial(chunk_one, length=length))(p, s, k, n_done, lr, w, data, scale0)
        return p, jax.tree.leaves(s), k, losses

    chunk_program = ExportedJit("chunk", base, chunk_leaves, static_argnames=("length",))

    def chunk(p, s_leaves, k, n_done, lr, w, data, scale0, length):
        return chunk_program(p, s_leaves, k, n_done, lr, w, data, scale0, length=length)

    runs = optimize(o, chunk, params, states,
                     place.batch(np.stack([np.asarray(k_fit)] * n)), W, D, S0, fdt, progress, n_real=len(bms))
    phases["optimize"] = time.perf_counter() - t0 - sum(phases.values())

    # -------------------------------------------------------------- draws and PSIS
    def draw_one(p, k, w, data, scale0):
        if guide == "delta":
            u = jnp.broadcast_to(p["loc"], (n_draw, dim))
            log_q = jnp.zeros(n_draw, fdt)
        else:
            q = guide_dist(guide, p, scale0)
            u = q.sample(k, (n_draw,))
            log_det = jnp.linalg.slogdet(w[1])[1] if scale_is_matrix else jnp.sum(jnp.log(w[1]))
            log_q = q.log_prob(u) - log_det
        z = jax.vmap(lambda v: to_z(v, w))(u)
        samples, pot_ = jax.lax.map(lambda f: (postprocess(f, data), potential(f, data)), z, batch_size=DRAW_BATCH)
        return samples, -pot_ - log_q

    draw = ExportedJit("draw", base, jax.vmap(draw_one, in_axes=(0, None, 0, 0, 0)), once=True)
    samples_all, log_w_all = draw(runs.params, k_draw, W, D, S0)
    # fetch: a draw of a let over data rows is row-split, partly on other processes' devices
    samples_all, log_w_all = fetch((samples_all, log_w_all))
    phases["draws"] = time.perf_counter() - t0 - sum(phases.values())
    seconds = round(time.perf_counter() - t0, 3)
    posts = []
    for b, bm in enumerate(bms):
        samples = {k: v[b] for k, v in samples_all.items()}
        posts.append(_posterior(bm, o, dtype, seed, guide, dim, items[b].start, runs, b, samples, log_w_all[b],
                                n_draw, phases, seconds, place.sharded))
        posts[-1].attrs["whitened"] = items[b].whitened
    return posts


def _split_keys(seed):
    """The fit's three keys (initial point, optimization, draws): ``PRNGKey(seed)`` split in three."""
    return tuple(jax.random.split(jax.random.PRNGKey(seed), 3))


def _unraveler(z: dict):
    """``ravel_pytree``'s inverse for the structure of ``z``, from an abstract
    evaluation (no program runs: the start came from a stored one)."""
    found: list = []

    def ravel(tree):
        flat, unravel = ravel_pytree(tree)
        found.append(unravel)
        return flat

    jax.eval_shape(ravel, z)
    return found[0]


class _Starter:
    """The unconstrained initial point ``z`` of a data set (a dict of sites).
    As NumPyro's ``initialize_model``, but jitted whole (its eager first trace
    dispatches and compiles every operation of the model one by one, seconds on
    a small model), the data an argument: one compilation for every data set."""

    def __init__(self, model, potential_z, base: str | None, valid: Callable[[dict, Any, Any], bool]):
        self.model, self.potential_z, self.valid = model, potential_z, valid
        self.base = base  # the stored programs' key (`vi.program.start_key`); None: plain jit
        self._compiled: dict[Any, Any] = {}
        self._keep: list[Any] = []

    def _init_z(self, piece: str, sites: dict):
        """The jitted start of strategy ``piece``: ``median`` (the prior
        medians) and ``uniform`` stored as the programs ``start-<piece>``; a
        given init (``given``: ``sites``) is a constant of its program, so that
        one is plain jit, one per data set."""
        name = (piece, id(sites)) if piece == "given" else piece
        if name in self._compiled:
            return self._compiled[name]
        model = self.model

        def init_z(key, attempt, data):
            from numpyro.distributions.transforms import biject_to
            from numpyro.handlers import seed, substitute, trace
            from numpyro.infer import init_to_median, init_to_uniform, init_to_value

            init_fn = {"given": lambda: init_to_value(values=sites), "median": lambda: init_to_median(num_samples=15),
                       "uniform": lambda: init_to_uniform}[piece]()
            k = jax.random.fold_in(key, attempt)
            tr = trace(substitute(seed(model, k), substitute_fn=init_fn)).get_trace(data)
            z = {name: biject_to(site["fn"].support).inv(site["value"]) for name, site in tr.items()
                 if site["type"] == "sample" and not site["is_observed"]}
            # a prior median on a boundary (gamma(1e-3, 1e-3)'s is ~0): that element
            # starts uniform in (-2, 2) instead, as NUTS's starts do
            z = {name: jnp.where(jnp.isfinite(v), v, jax.random.uniform(jax.random.fold_in(k, i), jnp.shape(v),
                                                                        minval=-2.0, maxval=2.0))
                 for i, (name, v) in enumerate(z.items())}
            # whether the density and its gradient are finite there: `valid`, the mode
            # search's program (the gradient inside this one was a second compilation of it)
            return z, ravel_pytree(z)[0]

        call = ExportedJit(f"start-{piece}", self.base if piece != "given" else None, init_z, once=True)
        self._compiled[name] = call
        self._keep.append(sites)  # its id names its program
        return call

    def start(self, data, sites: dict, key) -> tuple[dict, Any]:
        """(z, z raveled) of a data set's first valid start."""
        # the prior medians (and a uniform start, in `_whiten`); a given init is the start
        first = "given" if sites else "median"
        for piece in (first, "uniform"):
            init_z = self._init_z(piece, sites)
            for attempt in range(20):
                z, flat = init_z(key, np.uint32(attempt), data)
                if self.valid(z, flat, data):
                    return z, flat
            if piece == first:
                self._refuse_bad_start(z, data, given=bool(sites))
        # a ValueError that `fit.fit` (via values.is_bad_start) turns into the located
        # "no valid initial point" naming the factor, as it does for NUTS and map
        raise ValueError("VI cannot start: cannot find valid initial parameters (the model's density or its "
                         "gradient is not finite at any of 20 initial points)")

    def _refuse_bad_start(self, z, data, given: bool) -> None:
        """The first start is not valid. Evaluated once eagerly, NumPyro raises its
        ValueError for a distribution argument outside its domain (``sd = s - 5``
        at s = 1), as it does in NUTS's and map's eager traces: a mistake in the
        model that a uniform start would only hide (the fit would run on where the
        density happens to be defined). A given init is the start, or an error:
        it is never replaced."""
        self.potential_z(z, data)
        if given:
            raise ValueError("VI cannot start at the given init: cannot find valid initial parameters (the model's "
                             "density or its gradient is not finite there)")


def _plain_item(guide: str, dim: int, flat0, data) -> _Item:
    """The start in the model's own units: the initial point and NumPyro's 0.1
    scale. Its unit scale has the form the whitened fit's Laplace scale had (a
    matrix for a dense Hessian, else a vector), so the second start runs the
    programs the first one compiled."""
    scale = np.eye(dim, dtype=np.asarray(flat0).dtype) if guide != "normal" and dim <= DENSE_MAX else None
    return _Item(data, flat0, flat0, scale, "initial point", 0.1)


def _whiten(guide, dim, flat0, data, given_init: bool, uniform, pot, vg, hess) -> _Item:
    """The center and scale of one data set's whitened space.

    Two starts for the mode search, as no one start suits every model: the prior
    medians (one optimization from the middle of the prior finds the mode the
    data pull it to: a spike-and-slab coefficient started in the slab stays
    there) and, as NUTS starts, uniform(-2, 2) on the unconstrained axes (at the
    medians a neural network's weights are all 0, a saddle it cannot leave). The
    better mode wins; with none, the fit starts from the uniform point. A given
    init is the only start. ``uniform(data)``: the uniform point and whether
    its density is finite there."""
    starts = [flat0]
    if not given_init:
        u0, finite = uniform(data)
        if bool(finite):
            starts.append(u0)
    center, scale, start = starts[-1], None, "initial point"
    if guide == "delta":
        return _Item(data, flat0, flat0, None, start, 0.1)
    best = None
    for x0 in starts:
        mode, found, mode_iters, h = find_mode(lambda x: vg(x, data), lambda x: hess(x, data), x0,
                                               dense=dim <= DENSE_MAX)
        if found:
            value = float(pot(mode, data))
            if best is None or value < best[0]:
                best = (value, mode, mode_iters, h)
    if best is not None:
        _, mode, mode_iters, h = best
        center, start = mode, f"mode (L-BFGS, {mode_iters} iterations)"
        if h is not None:
            scale = laplace_scale(h, mode.dtype, diagonal=guide == "normal")
            if scale is not None:
                start += ", Laplace-whitened"
    # unit scale where whitened (the posterior of u is near a standard normal);
    # elsewhere NumPyro's 0.1, as the unknown scales may be small
    return _Item(data, flat0, center, scale, start, 1.0 if scale is not None else 0.1, scale is not None)


class _Placement:
    """Where a batch's arrays live over the fit's mesh (none: one device).

    One data set: its data rows are split over the devices (every data array
    whose leading axis the devices divide; the rest, and the guide, are
    replicated), and XLA partitions the log-likelihood, all-reducing the ELBO
    and its gradient: the same program, data-parallel. Many data sets: the
    batch axis is split (padded to a multiple of the devices).

    Over several processes (``--coordinator``) the mode search and the
    Laplace whitening run in every process on its own full copy of the data
    (`data_one` leaves it local: no collective per L-BFGS iteration, and the
    start of a one-process fit, bit for bit), and process 0's start is every
    process's (`agree`)."""

    def __init__(self, mesh, n_items: int):
        self.mesh = mesh if mesh is not None and mesh.size > 1 else None
        self.many = n_items > 1
        self.sharded: list[str] = []
        self.spans = mesh_processes(self.mesh) > 1

    def padded(self, n: int) -> int:
        if self.mesh is None or not self.many:
            return n
        k = self.mesh.size
        return -(-n // k) * k

    def data_one(self, data: dict) -> dict:
        if self.mesh is None or self.many:
            return data
        from jax.sharding import NamedSharding, PartitionSpec

        k = self.mesh.size
        out = {}
        for name, x in data.items():
            if x.ndim >= 1 and x.shape[0] >= k and x.shape[0] % k == 0:
                self.sharded.append(name)
                out[name] = x if self.spans else jax.device_put(x, NamedSharding(self.mesh, PartitionSpec(MESH_AXIS)))
            elif self.spans:
                out[name] = x
            else:
                out[name] = jax.device_put(x, NamedSharding(self.mesh, PartitionSpec()))
        return out

    def agree(self, items: list[_Item]) -> list[_Item]:
        """Process 0's starts (center, scale, how found) on every process of a
        run over several (`device.broadcast_from_first`); ``items`` otherwise."""
        if not self.spans:
            return items
        first = broadcast_from_first([(np.asarray(it.center), None if it.scale is None else np.asarray(it.scale),
                                       it.start, it.scale0) for it in items])
        return [_Item(it.data, it.flat0, jnp.asarray(c), None if sc is None else jnp.asarray(sc), start, s0)
                for it, (c, sc, start, s0) in zip(items, first, strict=True)]

    def batch(self, tree, data: bool = False):
        """A batched pytree (leading axis: the data sets) onto the mesh: split
        along the batch for many data sets; for one, replicated, except the
        data arrays `data_one` split (``data=True``), split along their rows."""
        if self.mesh is None:
            return tree
        from jax.sharding import NamedSharding, PartitionSpec

        if self.many:
            return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec(MESH_AXIS)))
        if data:
            return {k: jax.device_put(x, NamedSharding(self.mesh, PartitionSpec(None, MESH_AXIS)
                                                       if k in self.sharded else PartitionSpec()))
                    for k, x in tree.items()}
        return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec()))


def _posterior(bm, o: ViOptions, dtype, seed, guide, dim, start, runs: Runs, b: int, samples, log_w, n_draw,
               phases, seconds, sharded) -> Posterior:
    khat = lw = None
    if guide != "delta":
        lw, khat = psis(np.asarray(log_w))
    keep = np.arange(o.draws)
    if o.resample and lw is not None:
        keep = np.random.default_rng([seed, 19]).choice(
            n_draw, size=o.draws, replace=True, p=np.exp(lw) / np.exp(lw).sum()
        )
    draws = site_draws({k: v[keep] for k, v in samples.items()}, bm, grouped=False)
    losses = runs.losses[b]
    step_every = max(1, len(losses) // 200)
    attrs: dict[str, Any] = {
        "options": o.as_dict(),
        "seed": seed,
        "dtype": dtype,
        "guide": guide,
        "dim": dim,
        "steps": int(len(losses)),
        "stop": runs.stop[b],
        "lr_final": float(runs.lr[b]),
        "start": start,
        "final_loss": float(np.mean(losses[-min(CHUNK, len(losses)):])) if len(losses) else float("nan"),
        "loss_history": losses[::step_every].tolist(),
        "seconds": seconds,
        "phase_seconds": {k: round(v, 3) for k, v in phases.items()},
    }
    if sharded:
        attrs["sharded_data"] = list(sharded)
    if khat is not None:
        attrs["khat"] = float(khat) if np.isfinite(khat) else 1e9
        attrs["psis_ess"] = psis_ess(lw)
        attrs["psis_draws"] = int(n_draw)
        finite = np.asarray(log_w)[np.isfinite(log_w)]
        # the ELBO in the model's unconstrained space (log_w = log p - log q of the guide's draws)
        attrs["elbo"] = float(np.mean(log_w)) if finite.size == np.size(log_w) else float("-inf")
    return Posterior(
        bm.name,
        "vi",
        draws,
        observed=bm.observed,
        attrs=attrs,
        node_shapes={v.name: v.node_shape for v in bm.variables.values()},
    )
