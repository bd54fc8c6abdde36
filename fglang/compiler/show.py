"""A readable IR listing for ``fglang compile --emit ir``.

Without data it shows the symbolic structure; with data, each family's
member count, the nodes it touches and how (slice or gather), and totals.
"""

from __future__ import annotations

from fglang.compiler import ast as A
from fglang.compiler.bound import BoundModel
from fglang.compiler.dag import PRINTABLE_NODES, tree_size, written
from fglang.compiler.expr import map_children
from fglang.compiler.ir import ModelIR, SlotPattern, SlotRef
from fglang.compiler.unparse import unparse


def _dims(exprs) -> str:
    return "[" + ", ".join(unparse(e) for e in exprs) + "]" if exprs else ""


def _pattern(p: SlotPattern) -> str:
    parts = []
    for e in p.node_index:
        parts.append(unparse(e) if not isinstance(e, A.Slice) else unparse(e))
    return p.var + ("[" + ", ".join(parts) + "]" if parts else "")


def _named_slots(e, slots: tuple[SlotPattern, ...]):
    """An IR expression with each slot written as the var reference it stands for."""
    if isinstance(e, SlotRef):
        return A.Name(e.span, _pattern(slots[e.slot]))
    return map_children(e, lambda c: _named_slots(c, slots))


def _let_text(d, sources) -> str:
    """A let as lowered; one whose expansion would print too large (a chain of
    lets sharing each other, compiler/dag.py) as its written expression."""
    if tree_size(d.expr) <= PRINTABLE_NODES:
        return unparse(_named_slots(d.expr, d.slots))
    text = written(d.span, sources) or "..."
    if text.startswith("let ") and "=" in text:
        text = text.split("=", 1)[1].strip()
    return f"{text}  (as written: its lets are shared)"


def show_ir(ir: ModelIR, bound: BoundModel | None = None) -> str:
    lines = [f"model {ir.name}  ({ir.file})", ""]
    lines.append("variables:")
    for v in ir.variables.values():
        node = _dims(v.node_dims) or "(one node)"
        value = _dims(v.value_shape) or "scalar"
        extra = ""
        if bound is not None:
            b = bound.variables[v.name]
            extra = f"  = {b.n_nodes} node{'s' * (b.n_nodes != 1)} of dim {b.node_dim}"
        prior = f"  prior: {v.prior}" if v.prior else "  (flat prior)"
        lines.append(f"  {v.name}{node if node != '(one node)' else ''}: {v.domain.describe()} {value}{extra}{prior}")
    if ir.derived:
        lines.append("derived (let):")
        for d in ir.derived.values():
            shape = ""
            if bound is not None:
                shape = f"  shape {list(bound.derived[d.name].shape)}"
            lines.append(f"  {d.name} = {_let_text(d, ir.sources)}{shape}")
    lines.append("factor families:")
    total_members = 0
    for f in ir.families.values():
        rng = ", ".join(f"{r.name} in {unparse(r.lo)}:{unparse(r.hi)}" for r in f.ranges)
        what = f.dist.name if f.dist is not None else "potential"
        head = f"  {f.name}" + (f"[{rng}]" if rng else "") + f": {what}"
        if bound is not None:
            b = bound.families[f.name]
            total_members += b.n_members
            head += f"  members={b.n_members}"
            if b.member_grid is not None and len(b.member_grid) > 1:
                head += f" grid={list(b.member_grid)}"
        lines.append(head)
        for i, p in enumerate(f.slots):
            desc = f"    slot {i}: {_pattern(p)}"
            if bound is not None:
                s = bound.families[f.name].slots[i]
                nodes = len(set(s.node_ids.ravel().tolist())) if s.node_ids.size else 0
                how = "strided slice " + _show_slices(s.grid_slice) if s.grid_slice is not None else "gather"
                block = f" block {list(s.block_shape)}" if s.block_shape else ""
                desc += f"  -> {nodes} distinct node{'s' * (nodes != 1)} by {how}{block}"
            lines.append(desc)
        if f.members is not None:
            split = ", ".join(f"{r.name} in {unparse(r.lo)}:{unparse(r.hi)}" for r in f.members.ranges)
            n = f" ({bound.families[f.name].members.n_members} members)" if bound is not None else ""
            mf = f.members
            args = ", ".join(f"{k}={unparse(_named_slots(e, mf.slots))}" for k, e in mf.args)
            lines.append(f"    gbp: split into independent members [{split}]{n}: "
                         f"{unparse(_named_slots(mf.lhs, mf.slots))} ~ {what}({args})")
    if bound is not None:
        n_nodes = sum(v.n_nodes for v in bound.variables.values())
        n_dims = sum(v.n_nodes * v.node_dim for v in bound.variables.values())
        lines.append("")
        lines.append(
            f"totals: {n_nodes} nodes, {n_dims} dimensions, {len(ir.families)} families, {total_members} factors"
        )
    return "\n".join(lines)


def _show_slices(sl) -> str:
    if not sl:
        return "[]"
    return "[" + ", ".join(f"{s.start}:{s.stop}" for s in sl) + "]"
