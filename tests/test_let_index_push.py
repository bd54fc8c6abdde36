"""A let's index pushed into its value through broadcasting (compiler/lower.py
`push_index`, compiler/push_shapes.py).

``m[i]`` with ``let m = v + c`` becomes ``v[i] + c[i]``, so that a member
reads only its own nodes. Where an operand broadcasts over an axis of size 1
(``var v: real[1]``, ``data B[1, N]``, ``var u[M, 1]``) the pushed index on
that axis is 0: pushed by rank alone it read the operand past its only
element, and a valid model was refused ("index 1 is out of range for axis 0
of 'v'"). Where the sizes are different symbols (``d[K] + c[N]``, K = 1 only
in the data) the let is computed whole and then indexed. Each model's log
density is checked against NumPy's evaluation of the same density; the
family's slots show the push still keeps a member local.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

import fglang
from fglang.compiler import ast as A
from fglang.errors import FgError

C = np.array([0.5, -1.0, 2.0])
B = np.array([[1.0, 2.0, 3.0]])
CM = np.arange(6.0).reshape(2, 3)
W = np.linspace(-1.0, 1.0, 6).reshape(2, 3)


def _normal(y, mu) -> float:
    return float(np.sum(stats.norm.logpdf(y, mu, 1.0)))


CASES = {  # id -> (source, values, data, NumPy's log density)
    "value_axis_of_size_one": (
        "model a\ndata N: int\ndata c[N]: real\nvar v: real[1] ~ normal(0, 1)\nlet m = v + c\n"
        "factor f[i in 0:N]: 0 ~ normal(m[i], 1)\n",
        {"v": np.array([0.3])}, {"N": 3, "c": C}, _normal(0.3, 0) + _normal(0, 0.3 + C)),
    "one_node": (
        "model a\ndata N: int\ndata c[N]: real\nvar v[1]: real ~ normal(0, 1)\nlet m = v + c\n"
        "factor f[i in 0:N]: 0 ~ normal(m[i], 1)\n",
        {"v": np.array([0.3])}, {"N": 3, "c": C}, _normal(0.3, 0) + _normal(0, 0.3 + C)),
    "data_row_of_size_one": (
        "model a\ndata N: int\ndata M: int\ndata B[1, N]: real\ndata C[M, N]: real\n"
        "var w[M, N]: real ~ normal(0, 1)\nlet m = B + C * w\nfactor f[i in 0:M, j in 0:N]: 0 ~ normal(m[i, j], 1)\n",
        {"w": W}, {"N": 3, "M": 2, "B": B, "C": CM}, _normal(W, 0) + _normal(0, B + CM * W)),
    "var_column_of_size_one": (
        "model a\ndata N: int\ndata M: int\ndata C[M, N]: real\nvar u[M, 1]: real ~ normal(0, 1)\nlet m = u + C\n"
        "factor f[i in 0:M, j in 0:N]: 0 ~ normal(m[i, j], 1)\n",
        {"u": np.array([[0.2], [-0.4]])}, {"N": 3, "M": 2, "C": CM},
        _normal([0.2, -0.4], 0) + _normal(0, np.array([[0.2], [-0.4]]) + CM)),
    "var_row_of_size_one_in_a_product": (
        "model a\ndata N: int\ndata M: int\ndata C[M, N]: real\nvar u[1, N]: real ~ normal(0, 1)\nlet m = u * C\n"
        "factor f[i in 0:M, j in 0:N]: 0 ~ normal(m[i, j], 1)\n",
        {"u": np.array([[0.2, 0.5, -0.7]])}, {"N": 3, "M": 2, "C": CM},
        _normal([0.2, 0.5, -0.7], 0) + _normal(0, np.array([[0.2, 0.5, -0.7]]) * CM)),
    "in_a_reduction": (
        "model a\ndata N: int\ndata c[N]: real\nvar v: real[1] ~ normal(0, 1)\nlet m = exp(v) * c\n"
        "factor f: potential sum[i in 0:N](m[i])\n",
        {"v": np.array([0.3])}, {"N": 3, "c": C}, _normal(0.3, 0) + float(np.sum(np.exp(0.3) * C))),
    "a_slice_over_the_size_one_axis": (
        "model a\ndata N: int\ndata M: int\ndata C[M, N]: real\nvar u[M, 1]: real ~ normal(0, 1)\nlet m = u + C\n"
        "factor f[i in 0:M]: 0 ~ normal(m[i, 1:N], 1)\n",
        {"u": np.array([[0.2], [-0.4]])}, {"N": 3, "M": 2, "C": CM},
        _normal([0.2, -0.4], 0) + _normal(0, (np.array([[0.2], [-0.4]]) + CM)[:, 1:])),
    "a_vector_literal": (
        "model a\ndata N: int\nvar v: real[1] ~ normal(0, 1)\nlet m = v + [1.0, 2.0, 3.0]\n"
        "factor f[i in 0:N]: 0 ~ normal(m[i], 1)\n",
        {"v": np.array([0.3])}, {"N": 3}, _normal(0.3, 0) + _normal(0, 0.3 + np.array([1.0, 2.0, 3.0]))),
    "sizes_one_only_in_the_data": (
        "model a\ndata N: int\ndata K: int\ndata c[N]: real\ndata d[K]: real\nvar v: real ~ normal(0, 1)\n"
        "let m = d + c * v\nfactor f[i in 0:N]: 0 ~ normal(m[i], 1)\n",
        {"v": 0.3}, {"N": 3, "K": 1, "c": C, "d": [4.0]}, _normal(0.3, 0) + _normal(0, 4.0 + C * 0.3)),
    "sizes_equal_in_the_data": (
        "model a\ndata N: int\ndata K: int\ndata c[N]: real\ndata d[K]: real\nvar v: real ~ normal(0, 1)\n"
        "let m = d + c * v\nfactor f[i in 0:N]: 0 ~ normal(m[i], 1)\n",
        {"v": 0.3}, {"N": 3, "K": 3, "c": C, "d": [4.0, 5.0, 6.0]},
        _normal(0.3, 0) + _normal(0, np.array([4.0, 5.0, 6.0]) + C * 0.3)),
}


PERM = [2, 0, 1]
G2 = np.array([[0, 1], [2, 2], [1, 0]])
X3 = np.arange(9.0).reshape(3, 3) / 10
GATHERED = "model a\ndata N: int\ndata c[N]: real\ndata g[N]: int\nvar w[N]: real ~ normal(0, 1)\n"
# chained indexing through an int array: x[g][j] is x[g[j]] (merged as x[g, j] it crashed in JAX
# with "Too many indices: array is 1-dimensional, but 2 were indexed", a traceback)
CHAINED = {
    "a_let_of_a_gather": (
        GATHERED + "let m = w[g] + c\nfactor f[i in 0:N]: 0 ~ normal(m[i], 1)\n",
        {"w": C / 4}, {"N": 3, "c": C, "g": PERM}, _normal(C / 4, 0) + _normal(0, (C / 4)[PERM] + C)),
    "written_chained": (
        GATHERED + "factor f[i in 0:N]: 0 ~ normal(w[g][i], 1)\n",
        {"w": C / 4}, {"N": 3, "c": C, "g": PERM}, _normal(C / 4, 0) + _normal(0, (C / 4)[PERM])),
    "data_chained": (
        GATHERED + "factor f[i in 0:N]: c[g][i] ~ normal(w[i], 1)\n",
        {"w": C / 4}, {"N": 3, "c": C, "g": PERM}, _normal(C / 4, 0) + _normal(C[PERM], C / 4)),
    "a_gather_of_a_gathered_let": (
        GATHERED + "let m = w[g]\nlet q = m[g] + 1\nfactor f[i in 0:N]: 0 ~ normal(q[i], 1)\n",
        {"w": C / 4}, {"N": 3, "c": C, "g": PERM}, _normal(C / 4, 0) + _normal(0, (C / 4)[PERM][PERM] + 1)),
    "a_matrix_gather_after_a_scalar": (
        "model a\ndata N: int\ndata G[N, 2]: int\nvar x[N, N]: real ~ normal(0, 1)\n"
        "factor f[j in 0:N, k in 0:2]: 0 ~ normal(x[1, G][j, k], 1)\n",
        {"x": X3}, {"N": 3, "G": G2}, _normal(X3, 0) + _normal(0, X3[1, G2])),
    "a_column_of_a_gathered_let": (  # x[G][:, j]: the gather reads the whole axis, JAX slices its value
        "model a\ndata N: int\ndata G[N, 2]: int\nvar w[N]: real ~ normal(0, 1)\nlet m = 2 * w[G]\n"
        "factor f[j in 0:2]: 0 ~ normal(m[:, j], 1)\n",
        {"w": C / 4}, {"N": 3, "G": G2}, _normal(C / 4, 0) + _normal(0, 2 * (C / 4)[G2])),
    "a_value_axis_gather": (
        "model a\ndata N: int\ndata g[N]: int\nvar x: real[N, N] ~ normal(0, 1)\n"
        "factor f[j in 0:N]: 0 ~ normal(x[g, 2][j], 1)\n",
        {"x": X3}, {"N": 3, "g": PERM}, _normal(X3, 0) + _normal(0, X3[PERM, 2])),
}


@pytest.mark.parametrize("case", sorted(CHAINED))
def test_chained_indexing_through_an_int_array_picks_its_entries(case):
    source, values, data, want = CHAINED[case]
    model = fglang.compile(source, "m.fg")
    assert model.log_density(values, data) == pytest.approx(want, rel=1e-12)


def test_a_chained_gather_keeps_a_member_local():
    """``m[i]`` of ``w[g] + c`` reads the one node ``w[g[i]]``."""
    fam = fglang.compile(CHAINED["a_let_of_a_gather"][0], "m.fg").ir.families["f"]
    (slot,) = fam.slots
    assert slot.var == "w" and isinstance(slot.node_index[0], A.Index) and slot.node_index[0].base.id == "g"


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_index_pushed_over_a_size_one_axis_reads_its_only_element(case):
    source, values, data, want = CASES[case]
    model = fglang.compile(source, "m.fg")
    assert model.log_density(values, data) == pytest.approx(want, rel=1e-12)


def test_the_push_keeps_a_member_local():
    """``m[i, j]`` of ``B + C * w`` reads node (i, j) of w only (a scalar
    node index, not the whole var), B[0, j] and C[i, j]."""
    source = CASES["data_row_of_size_one"][0]
    fam = fglang.compile(source, "m.fg").ir.families["f"]
    (slot,) = fam.slots
    assert slot.var == "w" and not any(isinstance(p, A.Slice) for p in slot.node_index)
    reads = [x for x in _walk(fam.args[0][1]) if isinstance(x, A.Index) and isinstance(x.base, A.Name)]
    assert {x.base.id: tuple(type(a).__name__ for a in x.args) for x in reads} == {"B": ("Num", "Name"),
                                                                                "C": ("Name", "Name")}
    (b,) = [x for x in reads if x.base.id == "B"]
    assert b.args[0].value == 0


def _walk(e):
    from fglang.compiler.expr import walk

    return walk(e)


# ------------------------------------------------------------------ random broadcasts
# ``let m = a OP b OP c`` over axes (M, N), each operand a var (its nodes or its
# value), data, a var gathered through an int matrix or a scalar var, each axis
# of it full or of size 1; ``m[i, j]``
# in a family over both axes (or a row, a column, a reduction); the log
# density against NumPy's broadcasting.
OPS = {"+": np.add, "-": np.subtract, "*": np.multiply, "fmax": np.fmax, "hypot": np.hypot}  # calls broadcast too


@st.composite
def broadcast_lets(draw):
    M, N = draw(st.integers(2, 3)), draw(st.integers(2, 3))
    lines = ["model b", "data M: int", "data N: int"]
    data: dict = {"M": M, "N": N}
    values: dict = {}
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    operands, arrays, lp = [], [], 0.0
    for k in range(draw(st.integers(2, 3))):
        kind = draw(st.sampled_from(["nodes", "value", "data", "gather"] + ["scalar"] * (k > 0)))  # m: 2 axes
        dims = [draw(st.sampled_from(["M", "1"])), draw(st.sampled_from(["N", "1"]))]
        shape = tuple({"M": M, "N": N, "1": 1}[d] for d in dims)
        x = rng.normal(size=shape)
        name = f"x{k}"
        if kind == "gather":  # x[G] of a var of 3 nodes through an int matrix: G's shape
            nodes, picks = rng.normal(size=3), rng.integers(0, 3, size=shape)
            lines += [f"var {name}[3]: real ~ normal(0, 1)", f"data G{k}[{', '.join(dims)}]: int"]
            data[f"G{k}"], values[name], lp = picks, nodes, lp + _normal(nodes, 0)
            operands.append(f"{name}[G{k}]")
            arrays.append(nodes[picks])
            continue
        if kind == "scalar":
            x = np.asarray(rng.normal())
            lines.append(f"var {name}: real ~ normal(0, 1)")
        elif kind == "data":
            lines.append(f"data {name}[{', '.join(dims)}]: real")
            data[name] = x
        else:
            decl = f"{name}[{', '.join(dims)}]: real" if kind == "nodes" else f"{name}: real[{', '.join(dims)}]"
            lines.append(f"var {decl} ~ normal(0, 1)")
        if kind != "data":
            values[name] = x
            lp += _normal(x, 0)
        operands.append(f"exp({name})" if draw(st.booleans()) else name)
        arrays.append(np.exp(x) if operands[-1].startswith("exp") else x)
    ops = [draw(st.sampled_from(sorted(OPS))) for _ in operands[1:]]
    text, value = operands[0], arrays[0]
    for op, operand, array in zip(ops, operands[1:], arrays[1:]):
        text = f"{op}({text}, {operand})" if op.isalpha() else f"({text}) {op} {operand}"
        value = OPS[op](value, array)
    use = draw(st.sampled_from(sorted(USES)))
    lines += [f"let m = {text}", USES[use]]
    source = "\n".join(lines) + "\n"
    value = np.broadcast_to(value, np.broadcast_shapes(np.shape(value), (1, 1)))
    need = {"element": (M, N), "reduction": (M, N), "row": (M, None), "column": (None, N)}[use]
    short = [a for a in (0, 1) if need[a] is not None and value.shape[a] != need[a]]
    if short:  # m is [M, 1], [1, N] or [1, 1] where the factor reads it whole: past its end
        return source, values, data, (short[0], 1)
    return source, values, data, lp + (float(np.sum(value)) if use == "reduction" else _normal(0, value))


USES = {  # how the factor reads m: an element, a row, a column, a reduction over a row
    "element": "factor f[i in 0:M, j in 0:N]: 0 ~ normal(m[i, j], 1)",
    "row": "factor f[i in 0:M]: 0 ~ normal(m[i], 1)",
    "column": "factor f[j in 0:N]: 0 ~ normal(m[:, j], 1)",
    "reduction": "factor f[i in 0:M]: potential sum[j in 0:N](m[i, j])",
}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broadcast_lets())
def test_random_broadcast_lets_have_numpys_density(gen):
    """In range, NumPy's density; past m's end, the located error naming m."""
    source, values, data, want = gen
    model = fglang.compile(source, "m.fg")
    if isinstance(want, tuple):
        with pytest.raises(FgError, match=rf"^m\.fg:\d+:\d+: index 1 is out of range for axis {want[0]} of 'm' "
                                          rf"\(size 1\) when [ij]=\d(, j=\d)?\n"):
            model.log_density(values, data)
        return
    assert model.log_density(values, data) == pytest.approx(want, rel=1e-10), source


def test_gbp_and_map_fit_a_broadcast_let_exactly():
    """``m[i]`` of ``w + b`` with ``b: real[1]`` (refused before as out of range
    for 'b'): a linear Gaussian model, so GBP's and MAP's means and sds are the
    exact posterior's (NumPy's solve of the normal equations)."""
    source = ("model a\ndata N: int\ndata y[N]: real\nvar b: real[1] ~ normal(0, 10)\nvar w[N]: real ~ normal(0, 1)\n"
              "let m = w + b\nfactor f[i in 0:N]: y[i] ~ normal(m[i], 0.5)\n")
    y = np.array([1.0, 2.0, 0.5, -0.3])
    design = np.column_stack([np.ones(4), np.eye(4)])  # y = b + w_i
    precision = np.diag([1 / 100] + [1.0] * 4) + 4 * design.T @ design
    mean, sd = np.linalg.solve(precision, 4 * design.T @ y), np.sqrt(np.diag(np.linalg.inv(precision)))
    model = fglang.compile(source, "m.fg")
    for backend in ("gbp", "map"):
        post = model.fit({"N": 4, "y": y}, backend=backend)
        np.testing.assert_allclose(post.mean("b"), mean[:1], atol=1e-5, err_msg=backend)
        np.testing.assert_allclose(post.mean("w"), mean[1:], atol=1e-5, err_msg=backend)
        np.testing.assert_allclose(post.sd("w"), sd[1:], atol=1e-5, err_msg=backend)


def test_a_group_let_pushes_its_index_over_a_size_one_batch_axis():
    """``d[i]`` of ``let d = between(p, q)`` with ``var p[1]: pose2`` and ``q[N]``
    is ``between(p[0], q[i])`` (it was refused as out of range for 'p'): the
    density of the same model with one pose ``var p: pose2``; past d's end,
    the error names d."""
    src = ("model a\ndata N: int\nvar p[1]: pose2\nvar q[N]: pose2\nlet d = between(p, q)\n"
           "factor f[i in 0:N]: 0 ~ normal(log(d[i]), 1)\n")
    q = np.array([[0.5, -0.2, 0.1], [1.0, 0.3, -0.4], [0.0, 0.0, 2.0]])
    p = np.array([0.1, 0.2, 0.3])
    one = fglang.compile(src, "m.fg").log_density({"p": p[None], "q": q}, {"N": 3})
    scalar = fglang.compile(src.replace("var p[1]: pose2", "var p: pose2"), "m.fg").log_density({"p": p, "q": q},
                                                                                                 {"N": 3})
    assert one == pytest.approx(scalar, rel=1e-12)
    with pytest.raises(FgError, match=r"^m\.fg:6:40: index 3 is out of range for axis 0 of 'd' \(size 3\) when i=3"):
        fglang.compile(src.replace("0:N]", "0:N+1]"), "m.fg").log_density({"p": p[None], "q": q}, {"N": 3})
