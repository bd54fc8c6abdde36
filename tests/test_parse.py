"""The parser: SPEC section 2's lexical rules, precedence, spans, and syntax errors.

Parsing is tested on its own (``fglang.compiler.parse.parse``), below the
checker, so that a failure here names the grammar and not a later stage.
"""

from __future__ import annotations

import pytest
from conftest import SPEC_MODELS

from fglang.compiler import ast as A
from fglang.compiler.parse import RESERVED, parse
from fglang.compiler.unparse import unparse
from fglang.errors import FgError


def expr(text: str) -> A.Expr:
    """The expression of ``let e = TEXT``."""
    prog = parse(f"model m\nlet e = {text}\n", "e.fg")
    (decl,) = prog.decls
    assert isinstance(decl, A.LetDecl)
    return decl.expr


def syntax_error(text: str, file: str = "m.fg") -> FgError:
    with pytest.raises(FgError) as info:
        parse(text, file)
    (diag,) = info.value.diagnostics
    assert diag.span is not None and diag.span.file == file
    return info.value


# ------------------------------------------------------------------ SPEC models
@pytest.mark.parametrize("name", sorted(SPEC_MODELS))
def test_spec_model_parses(name):
    prog = parse(SPEC_MODELS[name], f"{name}.fg")
    assert prog.name == name
    assert prog.decls
    kinds = {type(d).__name__ for d in prog.decls}
    assert "FactorDecl" in kinds


def test_random_walk_ast():
    prog = parse(SPEC_MODELS.get("random_walk") or "", "rw.fg")
    names = [d.name for d in prog.decls]
    assert names == ["T", "y", "q", "x", "init", "step", "obs"]
    q = prog.decls[2]
    assert isinstance(q, A.DataDecl) and q.type.base == "positive" and q.default == A.Num(q.span, 0.1, False)
    step = prog.decls[5]
    assert isinstance(step, A.FactorDecl)
    (r,) = step.ranges
    assert r.name == "t" and r.lo == A.Num(r.span, 1, True) and r.hi == A.Name(r.span, "T")
    assert step.dist.func == "normal"
    assert unparse(step.dist.args[0]) == "x[t - 1]"


def test_pose_graph_fn_ast():
    prog = parse(SPEC_MODELS["pose_graph_2d"], "pg.fg")
    fns = [d for d in prog.decls if isinstance(d, A.FnDecl)]
    assert [f.name for f in fns] == ["between", "pose_error"]
    between = fns[0]
    assert [p.name for p in between.params] == ["a", "b"]
    assert [name for name, _, _ in between.lets] == ["c", "s", "dx", "dy"]
    assert isinstance(between.body, A.Vector) and len(between.body.items) == 3
    assert between.ret.base == "real" and between.ret.shape == (A.Num(between.span, 3, True),)


# ------------------------------------------------------------------ precedence
@pytest.mark.parametrize(
    "text, tree",
    [
        ("-2^2", "-(2 ^ 2)"),
        ("2^3^2", "2 ^ (3 ^ 2)"),
        ("(2^3)^2", "(2 ^ 3) ^ 2"),
        ("a - b - c", "(a - b) - c"),
        ("a - (b - c)", "a - (b - c)"),
        ("a / b * c", "(a / b) * c"),
        ("-a * b", "(-a) * b"),
        ("a * -b", "a * (-b)"),
        ("a + b * c", "a + (b * c)"),
        ("X @ w + b", "(X @ w) + b"),
        ("a * X @ w", "(a * X) @ w"),
        ("a + b < c * d", "(a + b) < (c * d)"),
        ("2^-1", "2 ^ (-1)"),
        ("-x[0]", "-(x[0])"),
        ("--a", "-(-a)"),
        ("s[t][0]", "(s[t])[0]"),
        ("f(a)[1]", "(f(a))[1]"),
    ],
)
def test_precedence(text, tree):
    def show(e):
        if isinstance(e, A.BinOp):
            return f"({show(e.left)} {e.op} {show(e.right)})"
        if isinstance(e, A.Neg):
            return f"(-{show(e.operand)})"
        if isinstance(e, A.Index):
            return f"({show(e.base)})[{', '.join(show(a) for a in e.args)}]"
        if isinstance(e, A.Call):
            return f"{e.func}({', '.join(show(a) for a in e.args)})"
        return unparse(e)

    assert show(expr(text)) == show(expr(tree))


def test_unary_minus_on_power_is_python_like():
    e = expr("-2^2")
    assert isinstance(e, A.Neg)
    assert isinstance(e.operand, A.BinOp) and e.operand.op == "^"


def test_comparisons_do_not_chain():
    err = syntax_error("model m\nlet e = a < b < c\n")
    assert "unexpected '<'" in str(err)


# ------------------------------------------------------------------ literals and forms
@pytest.mark.parametrize(
    "text, value, is_int",
    [("3", 3, True), ("0.5", 0.5, False), ("1e-3", 1e-3, False), (".5", 0.5, False), ("2.", 2.0, False)],
)
def test_numbers(text, value, is_int):
    e = expr(text)
    assert isinstance(e, A.Num) and e.value == value and e.is_int is is_int


def test_numbers_are_unsigned():
    e = expr("-3")
    assert isinstance(e, A.Neg) and e.operand == A.Num(e.span, 3, True)


def test_reduction_and_sum_call():
    red = expr("sum[k in 0:K](beta[k] * y[t-1-k])")
    assert isinstance(red, A.Reduce) and red.op == "sum"
    assert [r.name for r in red.ranges] == ["k"]
    call = expr("sum(x)")
    assert isinstance(call, A.Call) and call.func == "sum"
    two = expr("max[i in 0:N, j in i+1:N](x[i] - x[j])")
    assert isinstance(two, A.Reduce) and two.op == "max" and [r.name for r in two.ranges] == ["i", "j"]
    assert unparse(two.ranges[1].lo) == "i + 1"
    # an ordinary index of an array named like a reduction stays an index
    idx = expr("sum[k]")
    assert isinstance(idx, A.Index)


def test_slices():
    e = expr("X[:, j]")
    assert isinstance(e, A.Index) and isinstance(e.args[0], A.Slice)
    assert e.args[0].lo is None and e.args[0].hi is None
    e = expr("x[1:T]")
    assert unparse(e) == "x[1:T]"
    e = expr("x[:T-1]")
    assert e.args[0].lo is None and unparse(e.args[0].hi) == "T - 1"
    e = expr("x[2:]")
    assert unparse(e.args[0].lo) == "2" and e.args[0].hi is None


def test_vector_call_kwargs_bools():
    e = expr("[a, b, 1]")
    assert isinstance(e, A.Vector) and len(e.items) == 3
    e = expr("bernoulli(logit=a + b)")
    assert isinstance(e, A.Call) and e.args == () and e.kwargs[0].name == "logit"
    e = expr("leaky_relu(x, slope=0.2)")
    assert len(e.args) == 1 and e.kwargs[0].name == "slope"
    assert expr("true") == A.Bool(None, True) and expr("false") == A.Bool(None, False)
    e = expr("where(age[n] == 2, 1, 0)")
    assert isinstance(e.args[0], A.BinOp) and e.args[0].op == "=="


def test_types_and_bounds():
    prog = parse(
        "model m\ndata K: int\nvar a: real(lower=0, upper=1)[K]\nvar s: simplex[K]\nvar p[K]: real(lower=-1)\n"
    )
    a, s, p = prog.decls[1:]
    assert a.type.base == "real" and [k.name for k in a.type.bounds] == ["lower", "upper"] and len(a.type.shape) == 1
    assert s.type.base == "simplex" and s.type.bounds == ()
    assert len(p.dims) == 1 and p.type.shape == ()


# ------------------------------------------------------------------ newline rules
def test_line_continues_inside_brackets():
    src = "model m\nvar x: real\nfactor f: x ~ normal(\n    0,\n    1\n)\nlet v = [1,\n  2]\n"
    prog = parse(src)
    assert [d.name for d in prog.decls] == ["x", "f", "v"]


def test_blank_lines_comments_crlf_and_no_final_newline():
    src = "\n\n# header\r\nmodel m   # the name\r\n\r\n\r\ndata N: int  # a size\r\n\r\nvar x[N]: real"
    prog = parse(src)
    assert prog.name == "m" and [d.name for d in prog.decls] == ["N", "x"]


def test_newline_ends_a_statement():
    err = syntax_error("model m\nvar x: real ~ normal(0,\n1) var y: real\n")
    assert "unexpected 'var'" in str(err)
    err = syntax_error("model m\nvar x: real ~\nnormal(0, 1)\n")
    assert err.diagnostics[0].span.line == 2


@pytest.mark.parametrize(
    "body",
    [
        "{ return a }",
        "{\n  return a\n}",
        "{\n  let b = a\n  return b\n}",
        "{\n  let b = a\n  return b }",
        "{ return [a,\n  a] }",
    ],
)
def test_fn_body_forms(body):
    prog = parse(f"model m\nfn f(a: real) -> real {body}\n")
    (fn,) = prog.decls
    assert isinstance(fn, A.FnDecl) and fn.name == "f" and fn.body is not None


def test_fn_without_parameters():
    (fn,) = parse("model m\nfn one() -> real { return 1 }\n").decls
    assert fn.params == ()


# ------------------------------------------------------------------ spans
def test_spans_are_one_based_and_cover_the_text():
    src = "model m\ndata T: int\nvar x[T]: real\nfactor obs[t in 0:T]: x[t] ~ normal(x[t-1], 1.5)\n"
    prog = parse(src, "s.fg")
    f = prog.decls[2]
    assert (f.name_span.line, f.name_span.col, f.name_span.end_col) == (4, 8, 11)
    arg = f.dist.args[0]
    line = src.splitlines()[3]
    assert line[arg.span.col - 1 : arg.span.end_col - 1] == "x[t-1]"
    assert line[f.dist.func_span.col - 1 : f.dist.func_span.end_col - 1] == "normal"
    assert line[f.lhs.span.col - 1 : f.lhs.span.end_col - 1] == "x[t]"
    assert f.span.file == "s.fg" and f.span.line == 4 and f.span.col == 1


# ------------------------------------------------------------------ syntax errors
def test_syntax_error_names_expected_tokens():
    err = syntax_error("model m\nvar x real\n")
    d = err.diagnostics[0]
    assert (d.span.line, d.span.col) == (2, 7)
    assert d.message == "unexpected 'real'; expected ':', '['"
    text = str(err).splitlines()
    assert text[0] == "m.fg:2:7: unexpected 'real'; expected ':', '['"
    assert text[1] == "    var x real"
    assert text[2] == "    " + " " * 6 + "^^^^"


def test_unexpected_character():
    err = syntax_error("model m\nvar x: real $\n")
    d = err.diagnostics[0]
    assert (d.span.line, d.span.col) == (2, 13) and d.message == "unexpected character '$'"


def test_unexpected_end_of_file():
    err = syntax_error("model m\nvar x: real ~ normal(0, 1")
    d = err.diagnostics[0]
    assert d.span.line == 2 and "expected ')', ','" in d.message


def test_unclosed_bracket_hint_points_at_the_bracket():
    err = syntax_error("model m\nvar x: real ~ normal(0, \nfactor f: x ~ normal(0, 1)\n")
    d = err.diagnostics[0]
    assert (d.span.line, d.span.col) == (3, 8)
    assert d.hint == "the '(' at line 2, column 21 is not closed, so the lines after it continue its statement"


def test_c_style_comment_gets_a_hint():
    err = syntax_error("model m\nvar x: real  // the state\n")
    d = err.diagnostics[0]
    assert (d.span.line, d.span.col) == (2, 14) and d.hint == "comments start with '#' in .fg files"


def test_two_statements_on_one_line():
    err = syntax_error("model m\nvar x: real var y: real\n")
    assert err.diagnostics[0].message.startswith("unexpected 'var'; expected")


@pytest.mark.parametrize(
    "src, col",
    [
        ("model m\nvar in: real\n", 5),
        ("model m\ndata for: int\n", 6),
        ("model m\nlet return = 1\n", 5),
        ("model m\nfn potential(a: real) -> real { return a }\n", 4),
        ("model m\nfn f(data: real) -> real { return 1 }\n", 6),
        ("model m\nvar x: real[3]\nfactor var: x ~ normal(0, 1)\n", 8),
    ],
)
def test_reserved_word_as_name(src, col):
    err = syntax_error(src)
    d = err.diagnostics[0]
    assert d.span.col == col
    assert "reserved word" in d.message


def test_reserved_words_match_spec():
    assert RESERVED == set("model data var let factor fn return for in potential include true false".split())


def test_reserved_word_as_index_name():
    err = syntax_error("model m\nvar x: real[3]\nfactor f[in in 0:3]: x[0] ~ normal(0, 1)\n")
    d = err.diagnostics[0]
    assert d.message == "'in' is a reserved word and cannot be used as a name" and (d.span.line, d.span.col) == (3, 10)


@pytest.mark.parametrize(
    "src, message",
    [
        ("model m\nvar x: real ~ normal(mu=0, 1)\n", "a positional argument cannot follow a keyword argument"),
        ("model m\nfn f(a: real) -> real {\n  let b = a\n}\n", "fn 'f' has no 'return'"),
        ("model m\nfn f(a: real) -> real {\n  return a\n  return a\n}\n", "a fn has exactly one 'return'"),
        ("model m\nfn f(a: real) -> real {\n  return a\n  let b = a\n}\n", "statements after 'return' are never run"),
    ],
)
def test_structural_errors(src, message):
    err = syntax_error(src)
    assert err.diagnostics[0].message == message


@pytest.mark.parametrize("text", ["", "\n", "model", "model m m", "(((((", "]]]", "model m\n}", "\x00", "model m\r"])
def test_garbage_is_a_located_fg_error(text):
    try:
        parse(text, "g.fg")
    except FgError as err:
        assert str(err).startswith("g.fg:")


# ------------------------------------------------------------------ the parser's stored tables
def test_stored_parser_tables_parse_and_fail_as_built_ones(monkeypatch, tmp_path):
    """A fresh process loads the LALR tables a previous one stored instead of
    analysing the grammar again. Oracle: the parser built from the grammar
    (the cache off): the same trees for every SPEC model, the same located
    syntax error; a file of another grammar or cut short is rebuilt and
    replaced, never an error."""
    from fglang.compiler import parse as P

    def fresh(cache: bool):
        P._parser.cache_clear()
        if cache:
            monkeypatch.delenv("FGLANG_NO_CACHE", raising=False)
        else:
            monkeypatch.setenv("FGLANG_NO_CACHE", "1")
        return P._parser()

    monkeypatch.setenv("FGLANG_CACHE_DIR", str(tmp_path))
    try:
        built = fresh(cache=False)
        assert not (tmp_path / "parser").exists()
        fresh(cache=True)  # builds and stores
        stored = tmp_path / "parser" / "fg.lark-tables"
        key = stored.read_bytes().partition(b"\n")[0]
        loaded = fresh(cache=True)
        assert loaded is not built and loaded.source_path == "<deserialized>"  # from the file, not the grammar
        for name, text in sorted(SPEC_MODELS.items()):
            assert loaded.parse(text + "\n") == built.parse(text + "\n"), name
        bad = "model m\nvar x: real ~ normal(0, 1\nfactor f: x ~ normal(0, 1)\n"
        assert str(syntax_error(bad)) == str(_error_with(fresh, False, bad))
        for damaged in (b"another-grammar\n" + stored.read_bytes().partition(b"\n")[2], key + b"\n\x80cut"):
            stored.write_bytes(damaged)
            again = fresh(cache=True)
            assert again.source_path != "<deserialized>"  # rebuilt from the grammar ...
            assert stored.read_bytes().partition(b"\n")[0] == key  # ... and stored again
            assert again.parse(SPEC_MODELS["eight_schools"] + "\n") == built.parse(SPEC_MODELS["eight_schools"] + "\n")
    finally:
        P._parser.cache_clear()


def _error_with(fresh, cache: bool, text: str) -> FgError:
    fresh(cache)
    with pytest.raises(FgError) as info:
        parse(text, "m.fg")
    return info.value
