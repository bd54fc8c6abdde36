"""The factor graph of a model, drawn with Graphviz.

Two views, in one picture:

* the **family view**, always: one circle per var (name, node shape x value
  shape, domain), one filled box per factor family (name, distribution and,
  with data, its member count), a diamond per ``let``, data as shaded
  circles where a factor observes or reads them, and plates (clusters)
  grouping what shares an index range, labeled with the range (and its size
  once data are bound). Edges join each family to the vars its slots read
  (labeled with the slot patterns) and, dashed, to the data it uses. A
  var's bound that reads vars, lets or data (``real(lower=a)``) is a dashed
  arrow from each of them to the var, labeled with the keyword.
* the **instance view**, when data are bound and the graph is small
  (nodes + factors <= ``INSTANCE_LIMIT``) or when asked for: one circle per
  node (``x[3]``), one small square per factor, one edge per node a factor
  reads (from ``BoundSlot.node_ids``).

``render(graph, path)`` writes ``.dot``/``.gv`` (the source) or runs ``dot``
for ``.svg``/``.png``/``.pdf``; all writes are atomic.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fglang.compiler import ast as A
from fglang.compiler.dag import PRINTABLE_NODES, tree_size, written
from fglang.compiler.expr import map_children, names_in, static_value, walk
from fglang.compiler.ir import FactorFamily, ModelIR, SlotPattern, SlotRef, bound_name
from fglang.compiler.unparse import unparse
from fglang.errors import Diagnostic, FgError
from fglang.io.atomic import write_atomic

if TYPE_CHECKING:
    from fglang.compiler.bind import BoundModel

INSTANCE_LIMIT = 200  # default: draw the instance view up to this many nodes + factors
INSTANCE_HARD_LIMIT = 5000  # even when forced: Graphviz cannot lay out much more in reasonable time
GRAPH_FORMATS = (".svg", ".png", ".pdf", ".dot", ".gv")

INSTALL_HINT = (
    "install Graphviz's 'dot' program: 'sudo apt-get install graphviz' (Debian/Ubuntu), "
    "'brew install graphviz' (macOS) or 'conda install -c conda-forge graphviz'"
)

_FONT = "Helvetica"
_VAR_STYLE = {"shape": "circle", "style": "filled", "fillcolor": "white", "color": "#1f3a5f", "penwidth": "1.5"}
_DATA_STYLE = {"shape": "circle", "style": "filled", "fillcolor": "#c8c8c8", "color": "#555555"}
_FACTOR_STYLE = {"shape": "box", "style": "filled", "fillcolor": "#2e3440", "fontcolor": "white", "color": "#2e3440"}
_LET_STYLE = {"shape": "diamond", "style": "filled", "fillcolor": "#fff3c4", "color": "#8a6d00"}


def _graphviz():
    try:
        import graphviz
    except ImportError:  # pragma: no cover - graphviz is in the test and plot extras
        raise FgError(
            [
                Diagnostic(
                    "drawing a factor graph needs the 'graphviz' Python package", None, "pip install 'fglang[plot]'"
                )
            ]
        ) from None
    return graphviz


# ---------------------------------------------------------------- labels
def _shape_text(exprs: tuple[A.Expr, ...], sizes: dict[str, int] | None) -> str:
    """``[T]`` (no data) or ``[T=50]`` (bound); ``[3]`` for a literal."""
    parts = []
    for e in exprs:
        text = unparse(e)
        if sizes is not None and not isinstance(e, A.Num):
            v = static_value(e, sizes)
            if v is not None:
                text = f"{text}={int(v)}"
        parts.append(text)
    return "[" + ", ".join(parts) + "]"


def _range_text(r: A.IndexRange) -> str:
    span = f"{unparse(r.lo)}:{unparse(r.hi)}"
    # priors on indexed vars get compiler-made index names (x__i0): show the range only
    return span if "__" in r.name else f"{r.name} in {span}"


def _range_key(r: A.IndexRange) -> tuple[str, str]:
    return (unparse(r.lo), unparse(r.hi))


def _size_names(ranges, sizes: dict[str, int]) -> str:
    seen: dict[str, int] = {}
    for r in ranges:
        for e in (r.lo, r.hi):
            for n in names_in(e):
                if n.id in sizes:
                    seen[n.id] = sizes[n.id]
    return ", ".join(f"{k}={v}" for k, v in seen.items())


def _pattern(p: SlotPattern) -> str:
    parts = [unparse(e) for e in p.node_index]
    return p.var + ("[" + ", ".join(parts) + "]" if parts else "")


def _named(e, slots: tuple[SlotPattern, ...]):
    """An IR expression with each slot written as the var reference it stands for."""
    if isinstance(e, SlotRef):
        return A.Name(e.span, _pattern(slots[e.slot]))
    return map_children(e, lambda c: _named(c, slots))


def _html(title: str, *lines: str) -> str:
    """A Graphviz HTML-like label: the name in bold, details below in a smaller font."""
    out = f"<B>{html.escape(title)}</B>"
    if lines:
        out += '<BR/><FONT POINT-SIZE="9">' + "<BR/>".join(html.escape(x) for x in lines) + "</FONT>"
    return f"<{out}>"


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _value_names(exprs) -> list[str]:
    """The names ``exprs`` read as values, in order: not index arithmetic
    (``src[k]`` picking a node) nor a reduction's range (a size)."""
    found: list[str] = []
    seen: dict[int, object] = {}  # a node shared in a DAG (compiler/dag.py) is visited once

    def visit(e):
        if e is None or id(e) in seen:
            return
        seen[id(e)] = e
        if isinstance(e, A.Name):
            if e.id not in found:
                found.append(e.id)
            return
        if isinstance(e, A.Index):
            visit(e.base)  # the arguments are indices
            return
        if isinstance(e, A.Reduce):
            visit(e.body)  # the ranges are sizes
            return
        map_children(e, lambda c: (visit(c), c)[1])

    for e in exprs:
        visit(e)
    return found


def _data_used(fam: FactorFamily, data: set[str]) -> list[str]:
    """Data a family observes or reads as values: the left side and the
    arguments, not index arithmetic (``src[k]`` picking a node, a loop bound)."""
    return [n for n in _value_names((fam.lhs, fam.potential, *(x for _, x in fam.args))) if n in data]


def _bound_reads(ir: ModelIR) -> list[tuple[str, str, str, str]]:
    """(var, keyword, kind, name) for each var, data and let a var's bound
    reads (``var x: real(lower=a)``: x, lower, var, a). A bound reaches the
    IR with its lets inlined, so the names come from the bound as written
    (``Domain.written``), parsed again; the IR's slots are the fallback."""
    from fglang.compiler.parse import parse

    kinds = {**{d: "data" for d in ir.data}, **{n: "let" for n in ir.derived}, **{n: "var" for n in ir.variables}}
    out: list[tuple[str, str, str, str]] = []
    for v in ir.variables.values():
        for kw, text in v.domain.written:
            try:
                decl = parse(f"model bound\nlet bound__ = {text}\n").decls[-1]
                expr = decl.expr
            except (FgError, AttributeError, IndexError):
                expr = None
            if expr is None:
                derived = ir.bounds.get(bound_name(v.name, kw))
                names = [] if derived is None else [p.var for p in derived.read_slots]
            else:
                local = {r.name for x in walk(expr) if isinstance(x, A.Reduce) for r in x.ranges}
                local |= {n for x in walk(expr) if isinstance(x, A.Scan) for n in (x.index.name, x.state)}
                names = [n for n in _value_names([expr]) if n not in local]
            for name in dict.fromkeys(names):
                if name in kinds and name != v.name:
                    out.append((v.name, kw, kinds[name], name))
    return out


# ---------------------------------------------------------------- the picture
def factor_graph(model_ir: ModelIR, bound: BoundModel | None = None, instances: bool | None = None):
    """A ``graphviz.Graph`` of the model: the family view, plus the instance
    view when ``bound`` is given and the graph is small (or ``instances=True``)."""
    gv = _graphviz()
    if instances and bound is None:
        raise FgError(
            [Diagnostic("the instance view needs data: bind the model first", None, "pass data (--data FILE)")]
        )
    g = gv.Graph(
        name=model_ir.name,
        graph_attr={
            "fontname": _FONT,
            "label": f"model {model_ir.name}",
            "labelloc": "t",
            "fontsize": "16",
            "newrank": "true",
            "nodesep": "0.35",
            "ranksep": "0.45",
        },
        node_attr={"fontname": _FONT, "fontsize": "11"},
        edge_attr={"fontname": _FONT, "fontsize": "9", "color": "#444444"},
    )
    draw_instances = False
    if bound is not None:
        total = sum(v.n_nodes for v in bound.variables.values()) + sum(f.n_members for f in bound.families.values())
        if instances is None:
            draw_instances = total <= INSTANCE_LIMIT
        elif instances:
            if total > INSTANCE_HARD_LIMIT:
                raise FgError(
                    [
                        Diagnostic(
                            f"the instance view of {model_ir.name} has {total} nodes and factors; "
                            f"at most {INSTANCE_HARD_LIMIT} can be drawn",
                            None,
                            "draw the family view (--no-instances), or bind smaller data",
                        )
                    ]
                )
            draw_instances = True
    with g.subgraph(name="cluster_family") as fam_view:
        fam_view.attr(
            label="families" if draw_instances else "",
            style="invis" if not draw_instances else "dashed",
            color="#999999",
        )
        _family_view(fam_view, model_ir, bound)
    if draw_instances:
        with g.subgraph(name="cluster_instances") as inst:
            _instance_view(inst, bound)
    return g


def _family_view(g, ir: ModelIR, bound: BoundModel | None) -> None:
    sizes = bound.sizes if bound is not None else None
    data_names = set(ir.data)
    # which data each family uses (observed on the left, or read by the arguments)
    used: dict[str, list[str]] = {f.name: _data_used(f, data_names) for f in ir.families.values()}
    bound_reads = _bound_reads(ir)
    shown_data = [d for d in ir.data if any(d in u for u in used.values())
                  or any(kind == "data" and name == d for _, _, kind, name in bound_reads)]

    # plates: whatever shares one index range (vars by their node dims, data by
    # their dims, families by their ranges) goes in one cluster
    plates: dict[tuple, dict] = {}

    def plate(key: tuple, label: str | None, size_label: str = "") -> list:
        p = plates.setdefault(key, {"label": None, "sizes": "", "items": []})
        # the first label wins, but one with the model's own index names beats a prior's bare range
        if label is not None and (p["label"] is None or (" in " in label and " in " not in p["label"])):
            p["label"] = label
            p["sizes"] = size_label
        return p["items"]

    def dims_key(dims: tuple[A.Expr, ...]) -> tuple:
        return tuple(("0", unparse(e)) for e in dims)

    items: list[tuple[str, str, dict]] = []  # (plate key or (), node id, attrs)

    for v in ir.variables.values():
        value = _shape_text(v.value_shape, sizes) if v.value_shape else "scalar"
        shape = f"{_shape_text(v.node_dims, sizes)} \u00d7 {value}" if v.node_dims else value
        label = _html(v.name, shape, v.domain.describe())
        items.append((dims_key(v.node_dims), f"var.{v.name}", dict(_VAR_STYLE, label=label)))
    for d in shown_data:
        info = ir.data[d]
        shape = _shape_text(info.dims, sizes) if info.dims else ""
        if info.value_shape:
            shape += (" \u00d7 " if shape else "") + _shape_text(info.value_shape, sizes)
        label = _html(d, *([shape] if shape else []))
        items.append((dims_key(info.dims), f"data.{d}", dict(_DATA_STYLE, label=label)))
    for let in ir.derived.values():
        big = tree_size(let.expr) > PRINTABLE_NODES  # a chain of shared lets (compiler/dag.py)
        expr = _short(written(let.span, ir.sources) or let.name if big else unparse(_named(let.expr, let.slots)), 32)
        items.append(((), f"let.{let.name}", dict(_LET_STYLE, label=_html(let.name, f"= {expr}"))))
    for f in ir.families.values():
        what = f.dist.name if f.dist is not None else "potential"
        head = f"prior on {f.prior_of}" if f.prior_of else f.name
        lines = [what]
        if bound is not None:
            n = bound.families[f.name].n_members
            lines.append(f"{n} factor{'s' * (n != 1)}")
        label = _html(head, *lines)
        key = tuple(_range_key(r) for r in f.ranges)
        if f.ranges:
            size_label = _size_names(f.ranges, sizes) if sizes is not None else ""
            plate(key, ", ".join(_range_text(r) for r in f.ranges), size_label)
        items.append((key, f"fac.{f.name}", dict(_FACTOR_STYLE, label=label, tooltip=f.name)))

    for key, node_id, attrs in items:
        if key:
            plate(key, None).append((node_id, attrs))
        else:
            g.node(node_id, **attrs)
    for n, (key, p) in enumerate(plates.items()):
        label = p["label"] or ", ".join(f"{lo}:{hi}" for lo, hi in key)
        if sizes is not None and not p["sizes"]:
            p["sizes"] = _dims_sizes(key, sizes)
        if p["sizes"]:
            label += f"  ({p['sizes']})"
        with g.subgraph(name=f"cluster_plate{n}") as c:
            c.attr(label=label, style="rounded", color="#7a7a7a", fontsize="11", labeljust="l")
            for node_id, attrs in p["items"]:
                c.node(node_id, **attrs)

    for f in ir.families.values():
        by_var: dict[str, list[str]] = {}
        for p in f.slots:
            pat = _pattern(p)
            lst = by_var.setdefault(p.var, [])
            if pat not in lst:
                lst.append(pat)
        for var, pats in by_var.items():
            # a prior's slot is the whole var, under compiler-made index names: no label
            label = "" if f.prior_of else _short(", ".join(pats), 48)
            g.edge(f"fac.{f.name}", f"var.{var}", label=label, penwidth="1.3")
        for d in used[f.name]:
            g.edge(f"fac.{f.name}", f"data.{d}", style="dashed", color="#777777")
    for let in ir.derived.values():
        for var in dict.fromkeys(p.var for p in let.read_slots):  # slots: all lets' (ir.Derived)
            g.edge(f"let.{let.name}", f"var.{var}", style="dotted", color="#8a6d00")
    # a bound that reads a var, a let or data is a dependency: an arrow from what
    # it reads to the var it bounds, labeled with the keyword
    color = {"var": _VAR_STYLE["color"], "let": _LET_STYLE["color"], "data": "#777777"}
    for var, kw, kind, name in bound_reads:
        g.edge(f"{kind}.{name}", f"var.{var}", label=kw, style="dashed", dir="forward", arrowsize="0.7",
               color=color[kind], fontcolor=color[kind])


def _dims_sizes(key: tuple, sizes: dict[str, int]) -> str:
    out = []
    for _lo, hi in key:
        if hi in sizes:
            out.append(f"{hi}={sizes[hi]}")
    return ", ".join(out)


def _node_label(name: str, node_shape: tuple[int, ...], flat: np.ndarray) -> list[str]:
    if not node_shape:
        return [name]
    coords = np.unravel_index(flat, node_shape)
    return [f"{name}[{', '.join(str(int(c[k])) for c in coords)}]" for k in range(len(flat))]


def _instance_view(g, bound: BoundModel) -> None:
    n_nodes = sum(v.n_nodes for v in bound.variables.values())
    n_fac = sum(f.n_members for f in bound.families.values())
    g.attr(label=f"instances: {n_nodes} nodes, {n_fac} factors", style="dashed", color="#999999")
    for v in bound.variables.values():
        flat = np.arange(v.n_nodes)
        for k, label in enumerate(_node_label(v.name, v.node_shape, flat)):
            g.node(
                f"i.var.{v.name}.{k}",
                label=label,
                shape="circle",
                fontsize="9",
                margin="0.02",
                style="filled",
                fillcolor="white",
                color="#1f3a5f",
            )
    var_names = list(bound.variables)
    var_index = {v: k for k, v in enumerate(var_names)}
    for f in bound.families.values():
        names = [r.name for r in f.ir.ranges]
        shown = [n.split("__")[0] if "__" in n else n for n in names]
        for m in range(f.n_members):
            where = ", ".join(f"{s}={int(f.idx[n][m])}" for s, n in zip(shown, names))
            g.node(
                f"i.fac.{f.name}.{m}",
                label="",
                shape="square",
                width="0.14",
                height="0.14",
                fixedsize="true",
                style="filled",
                fillcolor="#2e3440",
                color="#2e3440",
                tooltip=f"{f.name}[{where}]" if where else f.name,
            )
        # one edge per (member, node) a slot reads, padded reduction positions left
        # out. Edges run in the generative direction (the nodes a factor reads
        # above it, the nodes on its left side below), so that dot lays chains
        # out as chains and grids along their diagonals.
        lhs_slots = {x.slot for x in walk(f.ir.lhs) if isinstance(x, SlotRef)} if f.ir.lhs is not None else set()
        rows = []
        for k, s in enumerate(f.slots):
            ids = s.node_ids.reshape(f.n_members, -1)
            valid = np.ones(ids.shape, bool)
            if s.mask is not None:
                extra = s.node_ids.ndim - s.mask.ndim
                valid = np.broadcast_to(s.mask.reshape(s.mask.shape + (1,) * extra), s.node_ids.shape)
                valid = valid.reshape(f.n_members, -1)
            m, col = np.nonzero(valid)
            var = var_index[s.var]
            rows.append(np.column_stack([np.full(m.shape, int(k in lhs_slots)), np.full(m.shape, var), m, ids[m, col]]))
        if not rows:
            continue
        for is_lhs, vi, m, node in np.unique(np.concatenate(rows), axis=0).tolist():
            fac, var = f"i.fac.{f.name}.{m}", f"i.var.{var_names[vi]}.{node}"
            if is_lhs:
                g.edge(fac, var)
            else:
                g.edge(var, fac)


def render(graph, path: str | Path) -> Path:
    """Write ``graph`` to ``path``: ``.dot``/``.gv`` is the Graphviz source;
    ``.svg``, ``.png`` and ``.pdf`` run Graphviz's ``dot``. Without ``dot``
    the source is still written (next to ``path``, as ``.dot``) and an
    ``FgError`` says how to install Graphviz."""
    gv = _graphviz()
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in GRAPH_FORMATS:
        raise FgError(
            [Diagnostic(f"cannot draw a graph as '{ext or path.name}'", None, f"use one of {', '.join(GRAPH_FORMATS)}")]
        )
    source = graph.source.encode()
    if ext in (".dot", ".gv"):
        write_atomic(path, source)
        return path
    try:
        data = graph.pipe(format=ext[1:], engine="dot")
    except gv.ExecutableNotFound:
        dot_path = path.with_suffix(".dot")
        write_atomic(dot_path, source)
        raise FgError(
            [
                Diagnostic(
                    f"cannot write {path}: Graphviz's 'dot' program is not installed; wrote the graph's source to "
                    f"{dot_path} instead (render it later with 'dot -T{ext[1:]} {dot_path} -o {path}')",
                    None,
                    INSTALL_HINT,
                )
            ]
        ) from None
    write_atomic(path, data)
    return path
