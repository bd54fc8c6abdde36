"""Checked model -> IR: find the var references of every factor and turn
them into slots.

Two rewrites happen here. A ``let`` used inside a factor is inlined, and an
index applied to it is pushed through elementwise arithmetic
(``theta[j]`` with ``theta = mu + tau * theta_raw`` becomes
``mu + tau * theta_raw[j]``), so that each member touches only the nodes it
needs: that is what keeps a GBP factor local and a NumPyro gather small.
Then every reference ``v[i, j]`` to a var becomes a ``SlotRef``.

A let is expanded once and the expansion shared by all its uses (a DAG, see
``compiler/dag.py``), and every pass here caches on node identity, so a chain
of lets that each use the previous one twice lowers in linear time. An index
is pushed into a let once per distinct index (by its structure: every use
writes its own ``k[0]``), and within ``PUSH_BUDGET`` nodes in all.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from fglang.compiler import ast as A
from fglang.compiler import builtins as B
from fglang.compiler.checked import CheckedModel, FactorInfo
from fglang.compiler.dag import SharedMemo, StructuralKeys, rename_shared
from fglang.compiler.distributions import DISTRIBUTIONS, MATRIX_PARAMS
from fglang.compiler.expr import children, map_children, names_in
from fglang.compiler.groups import GROUPS, untag
from fglang.compiler.indices import carry_base_shape, pushed_index
from fglang.compiler.ir import Derived, FactorFamily, ModelIR, SlotPattern, SlotRef, Variable, bound_name
from fglang.compiler.push_shapes import PushShapes, merged_index
from fglang.compiler.ranks import Ranks, is_group_call
from fglang.compiler.unparse import unparse
from fglang.errors import TOO_DEEP, TOO_DEEP_HINT, DiagnosticSink, recursion_headroom

_ELEMENTWISE_CALLS = B.ELEMENTWISE | B.BROADCAST | {"atan2", "log_diff_exp", "where", "leaky_relu"}
# Nodes that pushing indices into lets may create in one model. Each distinct index is pushed
# once through the let it indexes (and the lets that one reads), so a chain of n lets that each
# index the one before with an index of its own (w2 = f(w1) + w1[k[2]]) pushes n^2 nodes; past
# this budget an index is applied to the let's full value instead (the same number, computed
# whole: only a GBP factor's locality can be lost, and no hand-written model comes near it).
PUSH_BUDGET = 10_000
_SPLITTABLE = {"normal", "huber", "student_t"}  # a vector's density is the product of its elements'


def _elementwise(e: A.Expr, memo: SharedMemo | None = None) -> bool:
    """Built only from names, constants and elementwise operations: then element
    ``k`` of the result reads element ``k`` of every full-shape operand. No
    indexing (a gather such as ``w[perm]`` moves elements), no literals of
    arrays (which broadcast by their own length), no reductions or products.
    ``memo``: one answer per shared node of a DAG."""
    memo = memo if memo is not None else SharedMemo()

    def go(x: A.Expr) -> bool:
        if isinstance(x, A.Num | A.Bool | A.Name):
            return True
        if isinstance(x, A.Neg):
            return memo(go, x.operand)
        if isinstance(x, A.BinOp):
            return x.op != "@" and memo(go, x.left) and memo(go, x.right)
        if isinstance(x, A.Call):
            return x.func in _ELEMENTWISE_CALLS and not x.kwargs and all(memo(go, a) for a in x.args)
        return False

    return memo(go, e)


def _shown(exprs: tuple[A.Expr, ...]) -> tuple[str, ...]:
    return tuple(unparse(e) for e in exprs)


class Lowering:
    def __init__(self, model: CheckedModel):
        self.m = model
        self.ranks = Ranks(model)
        self.shapes = PushShapes(model, _ELEMENTWISE_CALLS)
        self._fresh = itertools.count()
        self._memo = SharedMemo()
        self._index_keys = StructuralKeys()  # push_index's memo context: an index by what it reads
        self._pushed = 0  # nodes push_index made, against PUSH_BUDGET
        self._derived_args: dict[int, tuple] = {}  # id -> (an index with 0 on broadcast axes, the one it came from)
        self._keep: list = []  # contexts keyed by id() stay alive as long as the memo
        self._let_expansion: dict[tuple[str, bool, bool], A.Expr] = {}
        self._data_lets: dict[str, bool] = {}
        self._keep_data_lets = False  # set while a factor's expressions are lowered (`family`)
        # unset while the lets' own values are lowered (`run`): every let is computed whole there,
        # so ``w1[k]`` in a let reads w1's value. Pushed, the index made a second, scalar copy of
        # the chain that no output holds, and XLA fused a copy of it into every let's output:
        # a chain of n lets compiled to n^2 operations (n = 100: minutes of compile per program).
        self._push_into_lets = True

    # ----------------------------------------------------------- let push-down
    def data_let(self, name: str) -> bool:
        """A real-valued let of data and constants only (``let Xc = X - mean(X)``).
        A factor reads it by name, as data: bind computes it once and adds it to
        the data, so no gradient recomputes it (inlined, ``Xc[n]`` became
        ``X[n] - mean(X)``, a pass over ``X`` in every evaluation). Lets,
        bounds, index ranges and GBP's member split still inline it."""
        hit = self._data_lets.get(name)
        if hit is None:
            let = self.m.lets[name]
            hit = let.dtype == "real" and all(
                n.id not in self.m.vars and (n.id not in self.m.lets or self.data_let(n.id))
                for n in names_in(let.expr))
            self._data_lets[name] = hit
        return hit

    def expand_lets(self, e: A.Expr) -> A.Expr:
        """Inline lets, pushing indices into them where broadcasting allows;
        each let is expanded once and shared by its uses."""
        keep = self._keep_data_lets, self._push_into_lets
        if isinstance(e, A.Name) and e.id in self.m.lets:
            if self._keep_data_lets and self.data_let(e.id):
                return e
            key = (e.id, *keep)
            if key not in self._let_expansion:
                self._let_expansion[key] = self.expand_lets(self.m.lets[e.id].expr)
            return self._let_expansion[key]
        return self._memo(self._expand, e, ("expand", keep))

    def _expand(self, e: A.Expr) -> A.Expr:
        if isinstance(e, A.Index):
            base = e.base
            # once per arg (a slice's bounds through map_children): a second pass over the expanded
            # args re-expanded them, 3^depth nodes for x[k[k[...]]] (depth 20: 24 s; a fuzz finding)
            args = tuple(self.expand_lets(a) if a is not None else None for a in e.args)
            if isinstance(base, A.Name) and base.id in self.m.lets and self._push_into_lets and not (
                    self._keep_data_lets and self.data_let(base.id)):
                return carry_base_shape(self.push_index(self.expand_lets(base), args, e.span), args, e.base_shape,
                                        self.root_args)
            return replace(e, base=self.expand_lets(base), args=args)
        return map_children(e, self.expand_lets)

    def expanded(self, e: A.Expr) -> A.Expr:
        """Lets inlined and group calls tagged: what the slots are taken from."""
        return self.ranks.tag(self.expand_lets(e))

    def root_args(self, args: tuple) -> tuple:
        """The index a let was indexed with, of one that pushing made from it."""
        hit = self._derived_args.get(id(args))
        return hit[1] if hit is not None and hit[0] is args else args

    def push_index(self, e: A.Expr, args: tuple[A.Expr, ...], span: A.Span) -> A.Expr:
        """``e[args]`` with the index pushed through elementwise operations,
        once per shared node of ``e`` for each distinct index: keyed by the
        index's structure, not its identity, because every use writes its own
        ``k[0]``. By identity, ``let w2 = f(w1) + w1[k[0]]`` pushed its index
        through all of ``w1`` again for each link: a chain of n lets lowered to
        n^2 nodes (n = 100: the fit ran out of memory; a fuzz finding). A pushed
        node shared by several uses keeps the first use's span."""
        key = self._index_keys.of(args)
        return self._memo(lambda x: self._push_index(x, args, span), e, ("push", key))

    def _push_index(self, e: A.Expr, args: tuple[A.Expr, ...], span: A.Span) -> A.Expr:
        self._pushed += 1
        if self._pushed > PUSH_BUDGET or not any(not isinstance(a, A.Slice) for a in args):
            return A.Index(span, e, args)
        if isinstance(e, A.Call) and (untag(e.func) or is_group_call(e, self.ranks)):
            return self.push_group(self.ranks.tag(e), args, span)
        r = self.ranks.of(e)
        if isinstance(e, A.Name | A.Index):
            return A.Index(span, e, args)
        if isinstance(e, A.Neg):
            return replace(e, operand=self.push_index(e.operand, args, span))
        if isinstance(e, A.BinOp) and e.op != "@" or isinstance(e, A.Call) and e.func in _ELEMENTWISE_CALLS:
            operands = [e.left, e.right] if isinstance(e, A.BinOp) else list(e.args)
            k = len(args)
            new = []
            for op in operands:
                ro = self.ranks.of(op)
                if ro <= r - k:
                    new.append(op)  # broadcast along every indexed dim: untouched
                elif ro == r:
                    op_args = self.shapes.operand_index(op, e, args)
                    if op_args is None:
                        return A.Index(span, e, args)
                    if op_args is not args:  # its nodes are checked against the let as those of args are
                        self._derived_args[id(op_args)] = (op_args, self.root_args(args))
                    new.append(self.push_index(op, op_args, span))
                else:
                    return A.Index(span, e, args)
            if isinstance(e, A.BinOp):
                return replace(e, left=new[0], right=new[1])
            return replace(e, args=tuple(new))
        return A.Index(span, e, args)

    def push_group(self, e: A.Call, args: tuple[A.Expr, ...], span: A.Span) -> A.Expr:
        """``between(a, b)[k]`` -> ``between(a[k], b[k])`` when every index is on a
        batch axis (the checker never lets an index reach a group's storage), so a
        let of poses indexed in a factor keeps the member local."""
        kind, op = untag(e.func)
        sr = len(GROUPS[kind].storage)
        if op not in ("compose", "between", "inverse", "log", "rotation", "translation"):
            return A.Index(span, e, args)
        batch = max(self.ranks.of(a) for a in e.args) - sr
        k = len(args)
        if k > batch:
            return A.Index(span, e, args)
        mine = [self.shapes.batch(a, self.ranks.of(a) - sr) for a in e.args]
        whole = self.shapes.broadcast_all(mine)
        new = []
        for a, own in zip(e.args, mine, strict=True):
            b = self.ranks.of(a) - sr
            if b <= batch - k:
                new.append(a)
            elif b == batch:  # as in _push_index: 0 on a batch axis of size 1 (between(p, q) with p[1], q[N])
                op_args = self.shapes.index_for(own, whole, args)
                if op_args is None:
                    return A.Index(span, e, args)
                if op_args is not args:
                    self._derived_args[id(op_args)] = (op_args, self.root_args(args))
                new.append(self.push_index(a, op_args, span))
            else:
                return A.Index(span, e, args)
        return replace(e, args=tuple(new))

    # ----------------------------------------------------------- slots
    def extract(self, e: A.Expr, slots: list[SlotPattern], reductions: tuple[str, ...]) -> A.Expr:
        """``e`` with its var references as ``SlotRef``s into ``slots`` (once per
        shared node for one list of slots and one chain of reductions)."""
        self._keep.append(slots)
        return self._memo(lambda x: self._extract(x, slots, reductions), e, ("extract", id(slots), reductions))

    def _extract(self, e: A.Expr, slots: list[SlotPattern], reductions: tuple[str, ...]) -> A.Expr:
        if isinstance(e, A.Name) and e.id in self.m.vars:
            return self._slot(e.id, (), slots, reductions, e.span)
        if isinstance(e, A.Index):
            merged = merged_index(e, self.ranks.of) if isinstance(e.base, A.Index) else None
            if merged is not None:
                return self.extract(merged, slots, reductions)
            root = e.base
            if isinstance(root, A.Name) and root.id in self.m.vars:
                args = tuple(_map_slice(a, lambda x: self.extract(x, slots, reductions)) for a in e.args)
                within = e.base_shape if e.base_shape is not None and pushed_index(e, e.base_shape[1]) else None
                return self._slot(root.id, args, slots, reductions, e.span, within)
        if isinstance(e, A.Reduce):
            # unique index names per reduction, so a slot names its reductions unambiguously
            fresh = {r.name: f"{r.name}__r{next(self._fresh)}" for r in e.ranges}
            ranges = []
            inner = reductions
            renamed = SharedMemo()
            for r in e.ranges:
                lo = self.extract(rename_shared(r.lo, fresh, renamed), slots, inner)
                hi = self.extract(rename_shared(r.hi, fresh, renamed), slots, inner)
                ranges.append(A.IndexRange(fresh[r.name], lo, hi, r.span))
                inner = inner + (fresh[r.name],)
            body = self.extract(rename_shared(e.body, fresh, renamed), slots, inner)
            return replace(e, ranges=tuple(ranges), body=body)
        if isinstance(e, A.Scan):
            return self.extract_scan(e, slots, reductions)
        return map_children(e, lambda c: self.extract(c, slots, reductions))

    def extract_scan(self, e: A.Scan, slots: list[SlotPattern], reductions: tuple[str, ...]) -> A.Scan:
        """A scan's index is a reduction index to its step (a var indexed by it
        gets one block per step, ``indices.scan_reductions``); the index and the
        state get fresh names, so that nothing inlined into the step can
        capture them."""
        k = next(self._fresh)
        fresh = {e.index.name: f"{e.index.name}__r{k}", e.state: f"{e.state}__s{k}"}
        r = e.index
        index = A.IndexRange(
            fresh[r.name], self.extract(r.lo, slots, reductions), self.extract(r.hi, slots, reductions), r.span
        )
        init = self.extract(e.init, slots, reductions)
        body = self.extract(rename_shared(e.body, fresh), slots, reductions + (index.name,))
        return replace(e, index=index, init=init, state=fresh[e.state], body=body)

    def _slot(self, var: str, args, slots: list[SlotPattern], reductions, span: A.Span,
              within: tuple | None = None) -> A.Expr:
        v = self.m.vars[var]
        nd = len(v.node_dims)
        node_part = list(args[:nd])
        value_part = args[nd:]
        while len(node_part) < nd:
            node_part.append(A.Slice(span, None, None))
        # an int array indexing a node axis (``x[idx]``, ``x[nbr[k]]``): the slot reads the
        # whole axis and the gather runs on its value (a member's node block has a fixed
        # shape of the factor's and reductions' indices only; a slot index is one node)
        gathered = {}
        for i, p in enumerate(node_part):
            if not isinstance(p, A.Slice) and self.ranks.of(p) > 0:
                gathered[i], node_part[i] = p, A.Slice(span, None, None)
        used = set()
        for p in node_part:
            used |= _names_in(p)
        # the chain of enclosing reductions down to the deepest one the pattern uses
        deepest = max((i for i, r in enumerate(reductions) if r in used), default=-1)
        reds = tuple(reductions[: deepest + 1])
        pat = SlotPattern(var, tuple(node_part), reds, span, within)
        if pat in slots:
            idx = slots.index(pat)
        else:
            slots.append(pat)
            idx = len(slots) - 1
        ref = SlotRef(span, idx)
        if value_part or gathered:
            # a slice over node axes keeps them in front of the value axes
            sliced = [i for i, p in enumerate(node_part) if isinstance(p, A.Slice)]
            full = tuple(gathered.get(i, A.Slice(span, None, None)) for i in sliced)
            # a pushed let's index: checked against the axes of the let it reaches (the sliced node
            # axes, then the value axes), naming the let
            shape = None
            if within is not None and within[0] is not None:
                axes = tuple(sliced) + tuple(range(nd, len(within[0])))
                shape = (tuple(within[0][a] for a in axes), within[1], axes)
            return A.Index(span, ref, full + tuple(value_part), shape)
        return ref

    # ----------------------------------------------------------- families
    def family(self, f: FactorInfo) -> FactorFamily:
        self._keep_data_lets = True
        try:
            return self._family(f)
        finally:
            self._keep_data_lets = False

    def _family(self, f: FactorInfo) -> FactorFamily:
        slots: list[SlotPattern] = []
        if f.potential is not None:
            pot = self.extract(self.expanded(f.potential), slots, ())
            return FactorFamily(f.name, f.span, f.ranges, "potential", None, None, (), pot, tuple(slots))
        sig = DISTRIBUTIONS[f.dist.func]
        lhs = self.extract(self.expanded(f.lhs), slots, ())
        args = tuple((k.name, self.extract(self.expanded(k.value), slots, ())) for k in f.dist.kwargs)
        self._keep_data_lets = False  # ranges are evaluated at bind, before any let
        ranges = tuple(
            A.IndexRange(r.name, self.expand_lets(r.lo), self.expand_lets(r.hi), r.span) for r in f.ranges
        )
        return FactorFamily(
            f.name,
            f.span,
            ranges,
            "sample",
            sig,
            lhs,
            args,
            None,
            tuple(slots),
            None,
            f.dist.span,
            tuple((k.name, k.span) for k in f.dist.kwargs),
        )

    def member_split(self, f: FactorInfo, fam: FactorFamily) -> FactorFamily | None:
        """``factor obs: img ~ normal(x, s)`` as ``obs[i in 0:H, j in 0:W]: img[i, j] ~ normal(x[i, j], s)``.

        Why: SPEC section 4 has GBP split an unindexed factor into independent
        members when its elements touch disjoint nodes; as one factor it would
        be a single H*W-node joint Gaussian. Only for distributions whose
        density over a vector is the product of its elements' (normal, huber,
        student_t), when the residual is elementwise in whole vars of scalar
        nodes that all have the residual's shape, and every data array lines up
        with those dimensions by its declared sizes. Anything else stays one
        factor (None). ``fam`` is ``f`` lowered as written (`family`).
        """
        if f.ranges or f.potential is not None or f.dist is None or f.dist.func not in _SPLITTABLE:
            return None
        lhs = self.expanded(f.lhs)
        kwargs = [(k.name, self.expanded(k.value)) for k in f.dist.kwargs]
        exprs = [lhs] + [e for _, e in kwargs]
        flat = SharedMemo()
        if not all(_elementwise(e, flat) for e in exprs):
            return None
        rank = max(self.ranks.of(e) for e in exprs)
        grid_vars = [self.m.vars[n.id] for e in exprs for n in names_in(e) if n.id in self.m.vars]
        if rank == 0 or not grid_vars:
            return None
        dims = grid_vars[0].node_dims
        if len(dims) != rank or any(v.value_shape or _shown(v.node_dims) != _shown(dims) for v in grid_vars):
            return None
        for e in exprs:
            for n in names_in(e):
                d = self.m.data.get(n.id)
                shape = d.shape_exprs if d is not None else ()
                if shape and _shown(shape) != _shown(dims[rank - len(shape) :]):
                    return None
        span = f.span
        names = [f"{f.name}__i{k}" for k in range(rank)]
        idx = tuple(A.Name(span, n) for n in names)

        def pushed(e: A.Expr) -> A.Expr:
            r = self.ranks.of(e)
            return self.push_index(e, idx[rank - r :], span) if r > 0 else e

        slots: list[SlotPattern] = []
        lhs_l = self.extract(pushed(lhs), slots, ())
        args_l = tuple((k, self.extract(pushed(e), slots, ())) for k, e in kwargs)
        # disjoint: every member reads exactly its own node of every var
        if not slots or any(p.reductions or p.node_index != idx for p in slots):
            return None
        ranges = tuple(A.IndexRange(n, A.Num(span, 0, True), d, span) for n, d in zip(names, dims))
        return replace(fam, ranges=ranges, lhs=lhs_l, args=args_l, slots=tuple(slots))

    def prior_family(self, name: str) -> FactorFamily:
        """``var x[I, J]: T ~ D(args)`` -> ``factor x__prior[i in 0:I, j in 0:J]: x[i, j] ~ D(args...)``."""
        v = self.m.vars[name]
        call = v.prior
        span = call.span
        idx_names = [f"{name}__i{k}" for k in range(len(v.node_dims))]
        ranges = tuple(A.IndexRange(n, A.Num(span, 0, True), d, span) for n, d in zip(idx_names, v.node_dims))
        idx = tuple(A.Name(span, n) for n in idx_names)
        lhs: A.Expr = A.Index(span, A.Name(span, name), idx) if idx else A.Name(span, name)
        full_rank = len(v.node_dims) + len(v.value_shape)
        args = []
        for k in call.kwargs:
            e = self.expand_lets(k.value)
            r = self.ranks.of(e)
            extra = r - len(v.value_shape)  # leading arg dims that align with node dims
            if k.name not in ("mu", "alpha"):  # a per-event argument (lkj's eta) has no event axes
                extra += DISTRIBUTIONS[call.func].event_ndim
            if extra > 0 and k.name not in MATRIX_PARAMS | {"cutpoints"}:
                e = self.push_index(e, idx[len(idx) - extra :], k.value.span)
            args.append((k.name, e))
        del full_rank
        info = FactorInfo(f"{name}__prior", ranges, lhs, replace(call, kwargs=()), None, v.span)
        slots: list[SlotPattern] = []
        lhs_l = self.extract(lhs, slots, ())
        args_l = tuple((k, self.extract(e, slots, ())) for k, e in args)
        return FactorFamily(
            info.name,
            v.span,
            ranges,
            "sample",
            DISTRIBUTIONS[call.func],
            lhs_l,
            args_l,
            None,
            tuple(slots),
            name,
            call.span,
            tuple((k.name, k.span) for k in call.kwargs),
        )

    def run(self) -> ModelIR:
        m = self.m
        families: dict[str, FactorFamily] = {}
        variables: dict[str, Variable] = {}
        sink = DiagnosticSink()
        for name, v in m.vars.items():
            prior = None
            if v.prior is not None:
                try:
                    fam = self.prior_family(name)
                except RecursionError:
                    sink.error(TOO_DEEP, v.span, TOO_DEEP_HINT)
                    continue
                families[fam.name] = fam
                prior = fam.name
            variables[name] = Variable(name, v.node_dims, v.value_shape, v.domain, prior, v.span,
                                       tuple(b.keyword for b in v.bounds))
        for name, f in m.factors.items():
            try:
                fam = self.family(f)
                families[name] = replace(fam, members=self.member_split(f, fam))
            except RecursionError:
                sink.error(TOO_DEEP, f.span, TOO_DEEP_HINT)
        derived = {}
        let_slots: list[SlotPattern] = []  # one list for all lets: their expressions share nodes
        exprs: dict[str, A.Expr] = {}
        self._push_into_lets = False
        for name, let in m.lets.items():
            try:
                exprs[name] = self.extract(self.expanded(let.expr), let_slots, ())
            except RecursionError:
                sink.error(TOO_DEEP, let.span, TOO_DEEP_HINT)
        self._push_into_lets = True
        reads = SharedMemo()
        for name, expr in exprs.items():
            let = m.lets[name]
            used = tuple(sorted(_slots_read(expr, reads)))
            derived[name] = Derived(name, expr, tuple(let_slots), let.span, let.shape, used)
        bounds = self.bounds(sink)
        sink.raise_if_any(m.sources)
        return ModelIR(m.name, m.file, m.sources, m.data, variables, derived, families, m.size_checks, bounds)

    def bounds(self, sink: DiagnosticSink) -> dict[str, Derived]:
        """Every var's non-constant bounds as lets of one slot list (``_bind_lets`` binds them so)."""
        slots: list[SlotPattern] = []
        exprs = {}
        for name, v in self.m.vars.items():
            for b in v.bounds:
                try:
                    exprs[bound_name(name, b.keyword)] = (self.extract(self.expanded(b.expr), slots, ()), b)
                except RecursionError:
                    sink.error(TOO_DEEP, b.span, TOO_DEEP_HINT)
        reads = SharedMemo()
        return {key: Derived(key, e, tuple(slots), b.span, b.shape, tuple(sorted(_slots_read(e, reads))))
                for key, (e, b) in exprs.items()}


def _map_slice(a, f):
    if isinstance(a, A.Slice):
        return A.Slice(a.span, f(a.lo) if a.lo is not None else None, f(a.hi) if a.hi is not None else None)
    return f(a)


def _slots_read(e: A.Expr, memo: SharedMemo) -> frozenset[int]:
    """The slot numbers ``e`` reads (once per shared node)."""

    def go(x) -> frozenset[int]:
        if isinstance(x, SlotRef):
            return frozenset((x.slot,))
        out: frozenset[int] = frozenset()
        for c in children(x):
            out |= memo(go, c)
        return out

    return memo(go, e)


def _names_in(e) -> set[str]:
    return {n.id for n in names_in(e)}


def lower(model: CheckedModel) -> ModelIR:
    with recursion_headroom():
        return Lowering(model).run()
