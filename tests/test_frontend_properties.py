"""Property tests of the front end (hypothesis).

1. Robustness: byte soup, token soup and mutations of the SPEC's models
   never make ``fglang.compile`` raise anything but a located ``FgError``.
2. Random *valid* models (sizes, vars with node dims and value shapes,
   indexed families over data sizes and earlier indices, affine offsets,
   gathers through int data, reductions) check and bind; each family's
   member count equals its count by hand, and each slot's node ids equal a
   naive nested-loop enumeration (the test loops; the library must not).
   Whole-array gathers ``x[idx]`` and ``x[nbr[k]]`` of vars, data, lets and
   expressions evaluate as NumPy's indexing, or, with an entry out of range,
   are the located error.
3. ``unparse(parse(x))`` round-trips expressions.
"""

from __future__ import annotations

import itertools
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest
from conftest import SPEC_MODELS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fglang
from fglang.compiler import ast as A
from fglang.compiler.parse import RESERVED, parse
from fglang.compiler.unparse import unparse
from fglang.errors import FgError

FILE = "fuzz.fg"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_only_fg_error(source: str) -> None:
    try:
        fglang.compile(source, FILE)
    except FgError as err:
        text = str(err)
        assert re.match(rf"{re.escape(FILE)}:\d+:\d+: |{re.escape(FILE)}: ", text), text
        assert err.diagnostics


# ------------------------------------------------------------------ 1. robustness
TOKEN = re.compile(r"\s+|[A-Za-z_]\w*|\d+\.?\d*(?:[eE][+-]?\d+)?|->|==|!=|<=|>=|.", re.S)
SPEC_SOURCES = sorted(SPEC_MODELS.values())
SPEC_TOKENS = sorted({t for s in SPEC_SOURCES for t in TOKEN.findall(s)})
EXTRA_TOKENS = [
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "~",
    "=",
    "-",
    "^",
    "@",
    "\n",
    "\n\n",
    "0",
    "1",
    "-1",
    "1e999",
    ".5",
    "x",
    "T",
    "sum[k in 0:2]",
    "logp(",
    "where(",
    "true",
    "inf",
    "pi",
    '"a.fg"',
    "#",
    "\t",
    "\r\n",
    *sorted(RESERVED),
]


@SETTINGS
@given(st.binary(max_size=300))
def test_byte_soup(data):
    assert_only_fg_error(data.decode("utf-8", errors="replace"))


@SETTINGS
@given(st.lists(st.sampled_from(SPEC_TOKENS + EXTRA_TOKENS), max_size=60))
def test_token_soup(tokens):
    assert_only_fg_error("model m\n" + " ".join(tokens))


mutation = st.tuples(
    st.sampled_from(["delete", "duplicate", "swap", "insert", "char"]),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.sampled_from(EXTRA_TOKENS + SPEC_TOKENS),
    st.characters(),
)


@SETTINGS
@given(st.sampled_from(SPEC_SOURCES), st.lists(mutation, min_size=1, max_size=4))
def test_mutated_spec_models(source, mutations):
    toks = TOKEN.findall(source)
    for kind, i, j, tok, ch in mutations:
        i %= len(toks)
        j %= len(toks)
        if kind == "delete" and len(toks) > 1:
            del toks[i]
        elif kind == "duplicate":
            toks.insert(i, toks[i])
        elif kind == "swap":
            toks[i], toks[j] = toks[j], toks[i]
        elif kind == "insert":
            toks.insert(i, tok)
        else:
            toks.insert(i, ch)
    assert_only_fg_error("".join(toks))


# ------------------------------------------------------------------ 2. random valid models
@dataclass
class Index:
    name: str
    size: str  # values lie in [0, size) ...
    low1: bool = False  # ... and are >= 1
    high1: bool = False  # ... and are <= size - 2


@dataclass
class Ref:
    """One var reference in a factor; ``coords(env)`` lists the node coordinates
    it touches for one member (reduction positions first, then sliced axes)."""

    var: str
    line: int
    col: int
    parts: list  # per node axis: ("fn", f(env) -> int) or ("slice", size name)
    red: tuple | None  # (name, lo(env), hi(env)) of the enclosing reduction, if the ref uses it


@dataclass
class Family:
    name: str
    ranges: list  # (name, lo(env), hi(env), independent length or None)
    refs: list[Ref] = field(default_factory=list)
    mu: list = field(default_factory=list)  # term(env, values) -> float
    dependent: bool = False


@dataclass
class Generated:
    source: str
    data: dict
    var_shapes: dict  # name -> (node sizes, value sizes) as ints
    families: list[Family]
    priors: dict  # var name -> number of nodes


def _val(data, name):
    return int(data[name])


@st.composite
def valid_models(draw):
    n_sizes = draw(st.integers(1, 3))
    sizes = {f"S{k}": draw(st.integers(1, 4)) for k in range(n_sizes)}
    size_names = list(sizes)
    data: dict = dict(sizes)
    data_lines = [f"data {s}: int" for s in size_names]
    gathers: list[str] = []

    var_lines = []
    var_shapes = {}
    priors = {}
    for v in range(draw(st.integers(1, 3))):
        node = draw(st.lists(st.sampled_from(size_names), max_size=2))
        value = draw(st.lists(st.sampled_from(size_names), max_size=1))
        name = f"v{v}"
        var_shapes[name] = (tuple(sizes[s] for s in node), tuple(sizes[s] for s in value), node)
        dims = f"[{', '.join(node)}]" if node else ""
        vshape = f"[{', '.join(value)}]" if value else ""
        line = f"var {name}{dims}: real{vshape}"
        if draw(st.booleans()):
            line += " ~ normal(0, 1)"
            priors[name] = int(np.prod([sizes[s] for s in node], dtype=int))
        var_lines.append(line)

    families: list[Family] = []
    factor_lines: list[str] = []

    def gather_array(length: str, target: str) -> str:
        g = f"g{len(gathers)}"
        gathers.append(f"data {g}[{length}]: int")
        data[g] = draw(st.lists(st.integers(0, sizes[target] - 1), min_size=sizes[length], max_size=sizes[length]))
        return g

    for f in range(draw(st.integers(1, 3))):
        fam = Family(f"f{f}", [])
        indices: list[Index] = []
        for r in range(draw(st.integers(0, 3))):
            name = f"i{f}_{r}"
            same = [ix for ix in indices if not ix.high1]
            kind = draw(
                st.sampled_from(["full", "from1", "upto1", "after", "before"] if same else ["full", "from1", "upto1"])
            )
            if kind in ("after", "before"):
                prev = draw(st.sampled_from(same))
                s = prev.size
                fam.dependent = True
                if kind == "after":  # j in i+1:S  -> values in [1, S)
                    text = f"{name} in {prev.name}+1:{s}"
                    lo, hi = (lambda env, p=prev.name: env[p] + 1), (lambda env, s=s: _val(data, s))
                    ix = Index(name, s, low1=True)
                else:  # j in 0:i  -> values in [0, S-1)
                    text = f"{name} in 0:{prev.name}"
                    lo, hi = (lambda env: 0), (lambda env, p=prev.name: env[p])
                    ix = Index(name, s, high1=True)
                fam.ranges.append((name, lo, hi, None))
            else:
                s = draw(st.sampled_from(size_names))
                lo_v, hi_off = {"full": (0, 0), "from1": (1, 0), "upto1": (0, 1)}[kind]
                hi_text = s if hi_off == 0 else f"{s}-1"
                text = f"{name} in {lo_v}:{hi_text}"
                fam.ranges.append(
                    (
                        name,
                        lambda env, v=lo_v: v,
                        lambda env, s=s, o=hi_off: _val(data, s) - o,
                        max(sizes[s] - lo_v - hi_off, 0),
                    )
                )
                ix = Index(name, s, low1=kind == "from1", high1=kind == "upto1")
            indices.append(ix)
            fam.ranges[-1] = fam.ranges[-1] + (text,)

        head = f"factor {fam.name}"
        if fam.ranges:
            head += "[" + ", ".join(r[4] for r in fam.ranges) + "]"
        line = head + ": 0 ~ normal("
        terms_text = []
        pending_refs = []

        def index_expr(size: str, pool: list[Index]):
            """An index into an axis of size ``size`` that is in range by construction."""
            options = [("const", None)]
            for ix in pool:
                if ix.size == size:
                    options.append(("plain", ix))
                    options.append(("reverse", ix))
                    if ix.high1:
                        options.append(("plus1", ix))
                    if ix.low1:
                        options.append(("minus1", ix))
                options.append(("gather", ix))
            kind, ix = draw(st.sampled_from(options))
            if kind == "const":
                return "0", (lambda env: 0), None
            if kind == "plain":
                return ix.name, (lambda env, n=ix.name: env[n]), ix.name
            if kind == "reverse":
                return f"{size}-1-{ix.name}", (lambda env, n=ix.name, axis=size: _val(data, axis) - 1 - env[n]), ix.name
            if kind == "plus1":
                return f"{ix.name}+1", (lambda env, n=ix.name: env[n] + 1), ix.name
            if kind == "minus1":
                return f"{ix.name}-1", (lambda env, n=ix.name: env[n] - 1), ix.name
            g = gather_array(ix.size, size)
            return f"{g}[{ix.name}]", (lambda env, n=ix.name, g=g: int(data[g][env[n]])), ix.name

        for _ in range(draw(st.integers(1, 3))):
            var = draw(st.sampled_from(sorted(var_shapes)))
            node_sizes, value_sizes, node_names = var_shapes[var]
            pool = list(indices)
            red = None
            prefix = ""
            if draw(st.booleans()):  # a reduction around the reference
                rname = f"k{f}_{len(terms_text)}"
                choices = [("size", s) for s in size_names] + [("upto", ix) for ix in indices if not ix.high1]
                rkind, what = draw(st.sampled_from(choices))
                if rkind == "size":
                    prefix, rs = f"sum[{rname} in 0:{what}](", what
                    red = (rname, lambda env: 0, lambda env, s=what: _val(data, s))
                    pool.append(Index(rname, rs))
                else:  # k in 0:i -> values in [0, S-1)
                    prefix = f"sum[{rname} in 0:{what.name}]("
                    red = (rname, lambda env: 0, lambda env, n=what.name: env[n])
                    pool.append(Index(rname, what.size, high1=True))
            parts_text, parts, used = [], [], set()
            for s_name in node_names:
                if draw(st.integers(0, 4)) == 0:
                    parts_text.append(":")
                    parts.append(("slice", s_name))
                    continue
                text, fn, uses = index_expr(s_name, pool)
                parts_text.append(text)
                parts.append(("fn", fn))
                if uses:
                    used.add(uses)
            ref_text = var + (f"[{', '.join(parts_text)}]" if parts_text else "")
            # the whole reference summed to a scalar, so every term broadcasts
            full = draw(st.booleans()) or bool(value_sizes) or any(p[0] == "slice" for p in parts)
            body = f"sum({ref_text})" if full else ref_text
            term = prefix + body + (")" if prefix else "")
            offset = (
                len(line) + len(" + ".join(terms_text)) + (3 if terms_text else 0) + len(prefix) + (4 if full else 0)
            )
            uses_red = red is not None and red[0] in used
            ref = Ref(var, 0, offset + 1, parts, red if uses_red else None)
            pending_refs.append(ref)
            fam.mu.append((ref, red))
            terms_text.append(term)
        line += " + ".join(terms_text) + ", 1)"
        factor_lines.append(line)
        fam.refs = pending_refs
        families.append(fam)

    header = ["model generated", *data_lines, *gathers, *var_lines]
    first_factor = len(header) + 1
    for k, fam in enumerate(families):
        for ref in fam.refs:
            ref.line = first_factor + k
    source = "\n".join(header + factor_lines) + "\n"
    shapes = {k: (v[0], v[1]) for k, v in var_shapes.items()}
    return Generated(source, data, shapes, families, priors)


def members(fam: Family, data) -> list[dict]:
    """Every index tuple of the family, by nested loops, in C order."""
    envs = [{}]
    for name, lo, hi, *_ in fam.ranges:
        envs = [{**env, name: v} for env in envs for v in range(lo(env), hi(env))]
    return envs


def naive_node_ids(ref: Ref, envs: list[dict], node_shape: tuple, sizes: dict):
    """node_ids [M, *reduction, *sliced] and the reduction mask, by loops."""
    if ref.red is not None:
        rname, lo, hi = ref.red
        length = max([hi(env) - lo(env) for env in envs] + [0])
    sliced = [sizes[p[1]] for p in ref.parts if p[0] == "slice"]
    out, masks = [], []
    for env in envs:
        positions = [None]
        if ref.red is not None:
            positions = [lo(env) + p for p in range(length)]
        rows, mrow = [], []
        for pos in positions:
            valid = ref.red is None or pos < ref.red[2](env)
            e = {**env, ref.red[0]: pos} if ref.red is not None else env
            block = []
            for combo in itertools.product(*[range(n) for n in sliced]):
                combo = list(combo)
                coords = []
                for kind, fn in ref.parts:
                    coords.append(combo.pop(0) if kind == "slice" else (fn(e) if valid else 0))
                block.append(int(np.ravel_multi_index(coords, node_shape)) if node_shape and valid else 0)
            rows.append(block)
            mrow.append(valid)
        out.append(rows)
        masks.append(mrow)
    lead = (len(envs),) + ((length,) if ref.red is not None else ())
    ids = np.array(out, dtype=np.int64).reshape(lead + tuple(sliced))
    mask = np.array(masks, dtype=bool).reshape(lead) if ref.red is not None else None
    return ids, mask


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(valid_models())
def test_random_valid_models_check_and_bind(gen):
    model = fglang.compile(gen.source, FILE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bound = model.bind(gen.data)
    sizes = {k: int(v) for k, v in gen.data.items() if k.startswith("S")}
    for name, (node, value) in gen.var_shapes.items():
        assert bound.variables[name].node_shape == node and bound.variables[name].value_shape == value
    for name, n_nodes in gen.priors.items():
        assert bound.families[f"{name}__prior"].n_members == n_nodes
    for fam in gen.families:
        b = bound.families[fam.name]
        envs = members(fam, gen.data)
        assert b.n_members == len(envs), gen.source
        if not fam.dependent:  # closed form: a product of range lengths
            assert b.n_members == int(np.prod([r[3] for r in fam.ranges], dtype=int))
        for name, *_ in fam.ranges:
            np.testing.assert_array_equal(b.idx[name], [env[name] for env in envs])
        by_pos = {(s.span.line, s.span.col): s for s in b.slots}
        assert len(b.slots) <= len(fam.refs)
        for ref in fam.refs:
            ids, mask = naive_node_ids(ref, envs, gen.var_shapes[ref.var][0], sizes)
            slot = by_pos.get((ref.line, ref.col))
            if slot is None:  # the same pattern as an earlier reference: one slot for both
                assert any(s.var == ref.var and np.array_equal(s.node_ids, ids) for s in b.slots), gen.source
                continue
            assert slot.var == ref.var
            np.testing.assert_array_equal(slot.node_ids, ids, err_msg=gen.source)
            if mask is None:
                assert slot.mask is None
            else:
                np.testing.assert_array_equal(slot.mask, mask, err_msg=gen.source)
            if slot.grid_slice is not None:
                v = bound.variables[ref.var]
                grid = np.arange(v.n_nodes).reshape(v.node_shape)
                np.testing.assert_array_equal(grid[slot.grid_slice].ravel(), slot.node_ids.ravel())


@settings(max_examples=9, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(valid_models(), st.integers(0, 2**16))
def test_random_valid_models_evaluate_like_loops(gen, seed):
    """The vectorized family function equals the sum of its terms member by member."""
    bound = fglang.compile(gen.source, FILE).bind(gen.data)
    rng = np.random.default_rng(seed)
    values = {n: rng.normal(size=v.shape) for n, v in bound.variables.items()}
    for fam in gen.families:
        b = bound.families[fam.name]
        envs = members(fam, gen.data)
        if not envs:
            continue
        out = b.evaluate(bound.data, b.idx, tuple(bound.gather(s, values) for s in b.slots))
        expect = []
        for env in envs:
            total = 0.0
            for ref, red in fam.mu:
                positions = [None] if red is None else range(red[1](env), red[2](env))
                for pos in positions:
                    e = env if red is None else {**env, red[0]: pos}
                    arr = values[ref.var]
                    key = tuple(slice(None) if k == "slice" else fn(e) for k, fn in ref.parts)
                    total += float(np.sum(arr[key])) if key else float(np.sum(arr))
            expect.append(total)
        np.testing.assert_allclose(np.asarray(out["args"]["mu"]), expect, rtol=1e-4, atol=1e-4, err_msg=gen.source)


# ------------------------------------------------------------------ 2b. whole-array gathers
# ``x[idx]`` (a whole int array) and ``x[nbr[k]]`` (a row of one, in a family)
# of a var's nodes, a var's value axis, data, a let and an expression, in an
# unindexed factor, a family over the rows, or a family of another length
# (the generator above draws ``g[i]`` only, and missed a bind crash there).
# In range, every member's mean equals NumPy's gather; one entry out of range
# (past the end or negative) is the located error, never a traceback.
GATHER_TARGETS = {  # what is written -> (NumPy's value of it from v, w, c; the name the message gives)
    "v": (lambda v, w, c: v, "v"),
    "w": (lambda v, w, c: w, "w"),
    "c": (lambda v, w, c: c, "c"),
    "lv": (lambda v, w, c: 2 * v, "lv"),  # lv[g] is pushed into 2 * v[g]; the message names the let written
    "lc": (lambda v, w, c: np.exp(c), "lc"),  # a data-only let is read as data
    "(v + c)": (lambda v, w, c: v + c, "v + c"),
    "exp(w)": (lambda v, w, c: np.exp(w), "exp(w)"),
}


@dataclass
class GatherModel:
    source: str
    data: dict
    terms: list  # (target, gather kind, index array name): "whole" or "row"
    bad: tuple | None  # (line, col, value, text in the message) of the first out-of-range index


@st.composite
def gather_models(draw):
    S, K, M, J, N = (draw(st.integers(1, 4)) for _ in range(5))
    header = ["model gathers", "data S: int", "data K: int", "data M: int", "data J: int", "data N: int",
              "data c[S]: real", "var v[S]: real ~ normal(0, 1)", "var w: real[S] ~ normal(0, 1)"]
    data: dict = {"S": S, "K": K, "M": M, "J": J, "N": N, "c": draw(st.lists(st.floats(-1, 1), min_size=S,
                                                                             max_size=S))}
    lets = ["let lv = 2 * v", "let lc = exp(c)"]
    form = draw(st.sampled_from(["unindexed", "rows", "other"]))
    head = {"unindexed": "factor f: 0 ~ normal(", "rows": "factor f[k in 0:M]: 0 ~ normal(",
            "other": "factor f[n in 0:N]: 0 ~ normal("}[form]
    arrays, terms, texts, bad = [], [], [], None
    out_of_range = draw(st.booleans())
    for t in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(sorted(GATHER_TARGETS)))
        kind = "row" if form == "rows" and draw(st.booleans()) else "whole"
        name = f"g{t}"
        shape = (M, J) if kind == "row" else (K,)
        values = np.asarray(draw(st.lists(st.integers(0, S - 1), min_size=int(np.prod(shape)),
                                          max_size=int(np.prod(shape))))).reshape(shape)
        if out_of_range and bad is None and draw(st.booleans() if t < 2 else st.just(True)):
            flat = values.reshape(-1)
            flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from([S, S + 3, -1]))
        arrays.append(f"data {name}[{', '.join(('M', 'J') if kind == 'row' else ('K',))}]: int")
        data[name] = values.tolist()
        index = f"{name}[k]" if kind == "row" else name
        prefix = " + ".join(texts)
        col = len(head) + len(prefix) + (3 if texts else 0) + len("sum(") + len(target) + 2
        outside = ((values < 0) | (values >= S)).reshape(-1)  # every entry is read (a row by its member)
        if bad is None and outside.any():
            bad = (col, int(values.reshape(-1)[np.argmax(outside)]), GATHER_TARGETS[target][1])
        texts.append(f"sum({target}[{index}])")
        terms.append((target, kind, name))
    header += arrays
    if bad is not None:
        bad = (len(header) + len(lets) + 1,) + bad  # the factor's line
    source = "\n".join(header + lets + [head + " + ".join(texts) + ", 1)"]) + "\n"
    return GatherModel(source, data, terms, bad)


def _gather_means(gen: GatherModel, v, w, c) -> np.ndarray:
    """Each member's mean, by NumPy's indexing of the written value."""
    members = {"unindexed": 1, "rows": gen.data["M"], "other": gen.data["N"]}[_form(gen.source)]
    out = np.zeros(members)
    for target, kind, name in gen.terms:
        value = GATHER_TARGETS[target][0](v, w, c)
        idx = np.asarray(gen.data[name])
        out += value[idx].sum(axis=-1) if kind == "row" else value[idx].sum()
    return out


def _form(source: str) -> str:
    return "rows" if "[k in 0:M]" in source else "other" if "[n in 0:N]" in source else "unindexed"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(gather_models(), st.integers(0, 2**16))
def test_whole_array_gathers_bind_evaluate_or_refuse_located(gen, seed):
    model = fglang.compile(gen.source, FILE)
    if gen.bad is not None:
        with pytest.raises(FgError) as e:
            model.bind(gen.data)
        line, col, value, what = gen.bad
        text = str(e.value)
        assert text.startswith(f"{FILE}:{line}:{col}: index {value} is out of range for axis 0 of '{what}' "
                               f"(size {gen.data['S']})"), (gen.source, gen.data, text)
        assert "^" in text.splitlines()[2] and "0-based" in text, text
        return
    bound = model.bind(gen.data)
    b = bound.families["f"]
    if b.n_members == 0:
        return
    rng = np.random.default_rng(seed)
    values = {n: rng.normal(size=x.shape) for n, x in bound.variables.items()}
    out = b.evaluate(bound.data, b.idx, tuple(bound.gather(s, values) for s in b.slots))
    expect = _gather_means(gen, values["v"], values["w"], np.asarray(gen.data["c"]))
    np.testing.assert_allclose(np.ravel(out["args"]["mu"]), expect, rtol=1e-4, atol=1e-4, err_msg=gen.source)


# ------------------------------------------------------------------ 3. unparse round trip
NAMES = st.sampled_from(["a", "b", "x", "T", "mu", "sum", "inf"])


def _num():
    return st.one_of(
        st.integers(0, 10**6).map(str),
        st.sampled_from(["0.5", "1e-3", ".25", "2.", "1E5", "3.0"]),
    )


def _expr_text(children):
    binop = st.tuples(children, st.sampled_from(["+", "-", "*", "/", "@", "^"]), children).map(
        lambda t: f"{t[0]} {t[1]} {t[2]}"
    )
    return st.one_of(
        binop,
        binop.map(lambda s: f"({s})"),
        st.tuples(children, st.sampled_from(["<", "<=", "==", "!=", ">", ">="]), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        children.map(lambda s: f"-{s}"),
        st.tuples(children, st.lists(children, min_size=1, max_size=2)).map(lambda t: f"({t[0]})[{', '.join(t[1])}]"),
        st.tuples(NAMES, children, children).map(lambda t: f"{t[0]}[{t[1]}:{t[2]}, :]"),
        st.tuples(st.sampled_from(["exp", "f", "normal"]), st.lists(children, max_size=3)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        ),
        st.tuples(children, children).map(lambda t: f"g({t[0]}, k={t[1]})"),
        st.lists(children, min_size=1, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.tuples(st.sampled_from(["sum", "prod", "max", "min"]), children, children).map(
            lambda t: f"{t[0]}[k in 0:{t[1]}]({t[2]})"
        ),
    )


EXPRESSIONS = st.recursive(st.one_of(_num(), NAMES, st.sampled_from(["true", "false"])), _expr_text, max_leaves=12)


@SETTINGS
@given(EXPRESSIONS)
def test_unparse_round_trips(text):
    try:
        e = parse(f"model m\nlet e = {text}\n").decls[0].expr
    except FgError:
        return  # e.g. a non-chaining comparison; round trips are about what parses
    again = parse(f"model m\nlet e = {unparse(e)}\n").decls[0].expr
    assert again == e, (text, unparse(e))
    assert unparse(again) == unparse(e)


@pytest.mark.parametrize(
    "text, shown",
    [
        ("-2^2", "-2 ^ 2"),
        ("(-2)^2", "(-2) ^ 2"),
        ("2^3^2", "2 ^ 3 ^ 2"),
        ("(2^3)^2", "(2 ^ 3) ^ 2"),
        ("a - (b - c)", "a - (b - c)"),
        ("(a - b) - c", "a - b - c"),
        ("-(a * b)", "-(a * b)"),
        ("(a < b) == (c < d)", "(a < b) == (c < d)"),
        ("2^-1", "2 ^ (-1)"),
        ("(a + b)[0]", "(a + b)[0]"),
        ("sum[k in 0:K](x[k] * 2)", "sum[k in 0:K](x[k] * 2)"),
    ],
)
def test_unparse_examples(text, shown):
    e = parse(f"model m\nlet e = {text}\n").decls[0].expr
    assert unparse(e) == shown
    assert parse(f"model m\nlet e = {shown}\n").decls[0].expr == e


def test_negative_power_value():
    """SPEC 2: -2^2 is -(2^2) = -4 (checked through the constant folder)."""
    from fglang.compiler.check import Checker

    e = parse("model m\nlet e = -2^2\n").decls[0].expr
    assert Checker({}).const_value(e) == -4
    assert A.Neg is type(e)
