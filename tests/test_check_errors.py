"""Golden tests of SPEC section 8: every mistake in a model or its data is an
FgError naming file, line and column, with the source line and a caret
under the span, and a message that says what was expected.

Each case pins the exact (line, column, message) of every diagnostic, so a
regression in wording or position shows up here; ``assert_formatted``
checks the rendering (source line, carets under exactly the span).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest
from conftest import SPEC_MODELS, bind_error, compile_error, spec_data

import fglang
from fglang.errors import Diagnostic, FgError


@dataclass
class Case:
    id: str
    source: str
    expected: list[tuple[int, int, str]]  # (line, col, message) in report order
    data: dict | None = None  # errors found when these data are bound
    hints: dict[int, str] = field(default_factory=dict)  # diagnostic number -> hint text


def assert_formatted(err: FgError, file: str = "m.fg") -> None:
    """Every located diagnostic prints ``file:line:col: message``, the line, and
    carets under exactly its span (up to the end of the line)."""
    lines = str(err).splitlines()
    for d in err.diagnostics:
        s = d.span
        head = f"{s.file}:{s.line}:{s.col}: {d.message}"
        assert head in lines, (head, str(err))
        i = lines.index(head)
        src_line = err.sources[s.file].splitlines()[s.line - 1]
        assert lines[i + 1] == "    " + src_line
        caret = lines[i + 2]
        assert caret.startswith("    ") and set(caret[4:].strip()) == {"^"}
        start = len(caret) - len(caret.lstrip(" \t")) - 4
        assert start == s.col - 1, (caret, s)
        width = caret.count("^")
        if s.end_line == s.line:
            assert width == min(s.end_col, len(src_line) + 1) - s.col
        else:
            assert width == len(src_line) + 1 - s.col
    assert "Traceback" not in str(err)


def check_case(case: Case, file: str = "m.fg") -> FgError:
    if case.data is None:
        err = compile_error(case.source, file)
    else:
        err = bind_error(case.source, case.data, file)
    got = [(d.span.line, d.span.col, d.message) for d in err.diagnostics]
    assert got == case.expected, "\n" + str(err)
    for d in err.diagnostics:
        assert d.span.file == file
    for k, hint in case.hints.items():
        assert err.diagnostics[k].hint == hint
    assert_formatted(err, file)
    return err


RW = """model m
data T: int
data y[T]: real
data sigma: positive
var x[T]: real
"""

SR = SPEC_MODELS.get("sparse_regression", "")
PG = SPEC_MODELS.get("pose_graph_2d", "")

CASES = [
    # -------------------------------------------------------------- names
    Case(
        "unknown_name_did_you_mean",
        RW + "factor obs[t in 0:T]: y[t] ~ normal(x[t], sigm)\n",
        [(6, 43, "unknown name 'sigm'; did you mean 'sigma'?")],
    ),
    Case(
        "unknown_name_no_guess",
        RW + "factor obs[t in 0:T]: y[t] ~ normal(x[t], qqqq)\n",
        [(6, 43, "unknown name 'qqqq'")],
    ),
    Case(
        "unknown_distribution",
        RW + "factor obs[t in 0:T]: y[t] ~ normall(x[t], sigma)\n",
        [(6, 30, "unknown distribution 'normall'; did you mean 'normal'?")],
    ),
    Case(
        "unknown_function",
        RW + "factor obs[t in 0:T]: y[t] ~ normal(expp(x[t]), sigma)\n",
        [(6, 37, "unknown function 'expp'; did you mean 'exp'?")],
    ),
    Case(
        "distribution_used_as_function",
        RW + "factor obs[t in 0:T]: y[t] ~ normal(normal(0, 1), sigma)\n",
        [(6, 37, "'normal' is a distribution, not a function")],
    ),
    Case(
        "duplicate_declaration",
        "model m\ndata N: int\nvar N: real\n",
        [(3, 5, "'N' is already declared")],
        hints={0: "every data, var, let, fn and factor needs its own name"},
    ),
    Case(
        "duplicate_factor",
        "model m\nvar x: real\nfactor f: x ~ normal(0, 1)\nfactor f: x ~ normal(1, 1)\n",
        [(4, 8, "'f' is already declared")],
    ),
    Case(
        "builtin_redeclared",
        "model m\nvar pi: real\n",
        [(2, 5, "'pi' is a built-in constant and cannot be redeclared")],
    ),
    Case(
        "reserved_word_as_name",
        "model m\nvar in: real\n",
        [(2, 5, "'in' is a reserved word and cannot be used as a name")],
    ),
    Case(
        "missing_model_header",
        "var x: real\n",
        [(1, 1, "a model starts with 'model NAME'")],
    ),
    Case(  # the caret at the first declaration, not at the comment that opens the file
        "missing_model_header_after_comments",
        "# a comment\n\n  var x: real\n",
        [(3, 3, "a model starts with 'model NAME'")],
    ),
    # -------------------------------------------------------------- syntax
    Case(
        "syntax_error_expected_tokens",
        "model m\nvar x real\n",
        [(2, 7, "unexpected 'real'; expected ':', '['")],
    ),
    Case(
        "syntax_error_unclosed_paren",
        "model m\nvar x: real ~ normal(0, 1\nvar y: real\n",
        [(3, 1, "unexpected 'var'; expected ')', '*', '/' or '@', '+' or '-', ',', '[', '^', a comparison")],
        hints={0: "the '(' at line 2, column 21 is not closed, so the lines after it continue its statement"},
    ),
    # -------------------------------------------------------------- calls
    Case(
        "distribution_arity",
        RW + "factor obs[t in 0:T]: y[t] ~ normal(x[t], sigma, 1)\n",
        [(6, 50, "'normal' takes at most 2 positional arguments (mu, sd), got 3")],
    ),
    Case(
        "function_arity",
        RW + "factor obs[t in 0:T]: y[t] ~ normal(exp(x[t], 1), sigma)\n",
        [(6, 37, "'exp' takes 1 argument, got 2")],
    ),
    Case(
        "user_fn_arity",
        "model m\nfn f(a: real) -> real { return 2 * a }\nvar x: real\nfactor p: 0 ~ normal(f(x, x), 1)\n",
        [(4, 22, "fn 'f' takes 1 argument, got 2")],
    ),
    Case(
        "unknown_keyword",
        RW + "factor obs[t in 0:T]: y[t] ~ normal(x[t], sdd=sigma)\n",
        [(6, 43, "'normal' has no argument 'sdd'; did you mean 'sd'?")],
        hints={0: "its arguments are mu, sd"},
    ),
    Case(
        "missing_argument",
        RW + "factor obs[t in 0:T]: y[t] ~ normal(x[t])\n",
        [(6, 30, "'normal' is missing its argument 'sd'")],
        hints={0: "usage: normal(mu, sd)"},
    ),
    Case(
        "both_alternatives",
        "model m\ndata N: int\ndata k[N]: int\nvar a: real\nfactor f[n in 0:N]: k[n] ~ bernoulli(p=0.5, logit=a)\n",
        [(5, 45, "'bernoulli' got 'logit' and 'p': give only one")],
    ),
    Case(
        "neither_alternative",
        "model m\ndata N: int\ndata k[N]: int\nfactor f[n in 0:N]: k[n] ~ bernoulli()\n",
        [(4, 28, "'bernoulli' needs one of 'p=' or 'logit='")],
    ),
    Case(
        "recursion_in_fn",
        "model m\nfn f(a: real) -> real {\n  return f(a) + 1\n}\nvar x: real\n",
        [(3, 10, "fn 'f' calls itself: recursion is not supported")],
    ),
    Case(
        "fn_returns_wrong_shape",
        "model m\nfn f(a: real[3]) -> real {\n  return 2 * a\n}\nvar x: real\n",
        [(3, 10, "fn 'f' returns [3] but is declared to return scalar")],
    ),
    Case(
        "fn_argument_wrong_shape",
        "model m\nfn f(a: real[3]) -> real { return sum(a) }\nvar x: real[2]\nfactor p: 0 ~ normal(f(x), 1)\n",
        [(4, 24, "argument 'a' of fn 'f' must have shape [3], got [2]")],
    ),
    # -------------------------------------------------------------- types and shapes
    Case(
        "unknown_type",
        "model m\nvar x: reall\n",
        [(2, 8, "unknown type 'reall'; did you mean 'real'?")],
        hints={0: "types are real, positive, unit, int, bool, simplex, ordered, positive_ordered, "
                  "cholesky_factor_corr, corr_matrix, cov_matrix, cholesky_factor_cov, rot2, rot3, pose2, pose3"},
    ),
    Case(
        "broadcast_mismatch_literal_sizes",
        "model m\nvar x: real[3]\nvar z: real[4]\nfactor f: 0 ~ normal(x + z, 1)\n",
        [(4, 22, "shape mismatch: shapes [3] and [4] do not broadcast")],
    ),
    Case(
        "argument_does_not_broadcast_with_lhs",
        "model m\nvar x: real[3]\nfactor f: x ~ normal([1, 2], 1)\n",
        [(3, 22, "argument of shape [2] does not broadcast with the left side's shape [3]")],
    ),
    Case(
        "matmul_with_literal_sizes",
        "model m\nvar A: real[2, 3]\nvar v: real[2]\nfactor f: 0 ~ normal(A @ v, 1)\n",
        [(4, 22, "shape mismatch: '@' inner dimensions differ: [2, 3] @ [2]")],
    ),
    Case(
        "index_out_of_declared_range",
        "model m\nvar x: real[3]\nfactor f: x[3] ~ normal(0, 1)\n",
        [(3, 13, "index 3 is out of range for axis 0 of 'x' (size 3)")],
        hints={0: "indices are 0-based"},
    ),
    Case(
        "negative_constant_index",
        "model m\nvar x: real[3]\nfactor f: x[-1] ~ normal(0, 1)\n",
        [(3, 13, "index -1 is negative (axis 0 of 'x'); indices do not wrap around")],
    ),
    Case(
        "too_many_indices",
        "model m\ndata N: int\nvar x[N]: real\nfactor f[i in 0:N]: x[i, 0] ~ normal(0, 1)\n",
        [(4, 21, "'x' has 1 dimension ([N]) but is indexed with 2")],
    ),
    Case(
        "real_index",
        "model m\nvar i: real\nvar x: real[3]\nfactor f: x[i] ~ normal(0, 1)\n",
        [(4, 13, "an index must be an int, got real")],
    ),
    Case(
        "bad_range",
        "model m\nvar x: real[3]\nfactor f[i in 3:1]: x[i] ~ normal(0, 1)\n",
        [(3, 10, "bad range 3:1: the end is before the start")],
        hints={0: "ranges are half-open, a:b is a..b-1"},
    ),
    Case(
        "real_size",
        "model m\ndata T: real\nvar x[T]: real\n",
        [(3, 7, "a size must be an int scalar expression, got real scalar")],
    ),
    Case(
        "empty_bounds",
        "model m\nvar y: real(lower=2, upper=1)\n",
        [(2, 8, "empty bounds: lower=2 is not below upper=1")],
    ),
    # -------------------------------------------------------------- distributions
    Case(
        "non_positive_constant_sd",
        "model m\nvar x: real\nfactor f: x ~ normal(0, -1)\n",
        [(3, 25, "'sd' of normal must be > 0, got -1")],
    ),
    Case(
        "zero_sd_from_power",
        "model m\nvar x: real ~ normal(0, -2^2)\n",
        [(2, 25, "'sd' of normal must be > 0, got -4")],
    ),
    Case(
        "real_var_used_as_sd",
        "model m\nvar s: real\nvar x: real\nfactor f: x ~ normal(0, s)\n",
        [(4, 25, "'sd' of normal must be positive, but var 's' is declared real and can be negative")],
        hints={0: "declare 's' positive"},
    ),
    Case(
        "discrete_distribution_on_var",
        "model m\nvar k: real\nfactor f: k ~ poisson(3)\n",
        [(3, 11, "'poisson' is a discrete distribution and an expression of vars would be a discrete latent variable")],
    ),
    Case(
        "discrete_prior_on_var",
        "model m\nvar k: int ~ poisson(3)\n",
        [(2, 14, "'poisson' is a discrete distribution and var 'k' would be a discrete latent variable")],
    ),
    Case(
        "discrete_distribution_on_real_data",
        "model m\ndata N: int\ndata y[N]: real\nfactor f[n in 0:N]: y[n] ~ poisson(3)\n",
        [(4, 21, "'poisson' needs int data on the left of '~', got real")],
    ),
    Case(
        "sparsity_prior_on_data",
        "model m\ndata N: int\ndata y[N]: real\nfactor f: y ~ horseshoe(1)\n",
        [(4, 11, "the sparsity prior 'horseshoe' needs a var (or part of one) on the left of '~'")],
    ),
    Case(
        "prior_support_mismatch",
        "model m\nvar x: real ~ half_normal(1)\n",
        [(2, 15, "'half_normal' has support positive but 'x' is declared real")],
        hints={0: "declare 'x' with a type inside the distribution's support"},
    ),
    Case(
        "prior_uses_its_own_var",
        "model m\nvar x: positive ~ normal(0, x)\n",
        [(2, 29, "unknown name 'x'")],
    ),
    Case(
        "comparison_on_the_left",
        "model m\nvar a: real\nfactor f: a > 0 ~ normal(0, 1)\n",
        [(3, 11, "a comparison cannot be the left side of '~'")],
    ),
    # -------------------------------------------------------------- several at once
    Case(
        "multiple_errors_sorted",
        "model m\nvar x: real\nfactor a: x ~ nromal(0, 1)\nfactor b: q ~ normal(zz, 1)\nfactor c: x ~ normal(0, 1, 2)\n"
        "var s: reall\n",
        [
            (3, 15, "unknown distribution 'nromal'; did you mean 'normal'?"),
            (4, 11, "unknown name 'q'"),
            (4, 22, "unknown name 'zz'"),
            (5, 28, "'normal' takes at most 2 positional arguments (mu, sd), got 3"),
            (6, 8, "unknown type 'reall'; did you mean 'real'?"),
        ],
    ),
    # -------------------------------------------------------------- data (bind time)
    Case(
        "matmul_shape_mismatch_with_data_sizes",
        SR.replace("X @ w", "X @ y"),
        [(9, 24, "shape mismatch: '@' inner dimensions differ: [20, 5] @ [20] (with the sizes in <data>)")],
        data=spec_data()["sparse_regression"],
    ),
    Case(
        "index_out_of_range_at_bind",
        "model m\ndata T: int\nvar x[T]: real\nfactor f[t in 0:T]: x[t+1] ~ normal(x[t], 1)\n",
        [(4, 23, "index 4 is out of range for axis 0 of 'x' (size 4) when t=3")],
        data={"T": 4},
        hints={0: "the index is too large; indices are 0-based and do not wrap around"},
    ),
    Case(
        "data_index_out_of_range_at_bind",
        "model m\ndata T: int\ndata y[T]: real\nvar x[T]: real\nfactor f[t in 0:T]: y[t+1] ~ normal(x[t], 1)\n",
        [(5, 23, "index 4 is out of range for axis 0 of 'y' (size 4) when t=3")],
        data={"T": 4, "y": [1.0, 2.0, 3.0, 4.0]},
    ),
    Case(
        "negative_gather_index",
        PG,
        [(23, 64, "index -1 is out of range for axis 0 of 'pose' (size 4) when k=1")],
        data={**spec_data()["pose_graph_2d"], "src": [0, -1, 2, 3, 0]},
        hints={0: "the index is negative; indices are 0-based and do not wrap around"},
    ),
    # a let's index is pushed into its value (m[i] -> w[i] + c[i]): past the let's end, the message
    # names the let written, its axis and size, not the var or data it reads
    Case(
        "let_index_out_of_range_names_the_let",
        "model m\ndata N: int\ndata c[N]: real\nvar w[N]: real\nlet m = w + c\n"
        "factor f[i in 0:N+1]: 0 ~ normal(m[i], 1)\n",
        [(6, 36, "index 3 is out of range for axis 0 of 'm' (size 3) when i=3")],
        data={"N": 3, "c": [0.0, 1.0, 2.0]},
        hints={0: "the index is too large; indices are 0-based and do not wrap around"},
    ),
    Case(
        "let_value_axis_index_out_of_range_names_the_let",
        "model m\ndata N: int\ndata M: int\nvar u[M]: real[N]\nlet m = exp(u)\n"
        "factor f[i in 0:M, j in 0:N]: 0 ~ normal(m[i, j + 1], 1)\n",
        [(6, 47, "index 2 is out of range for axis 1 of 'm' (size 2) when i=0, j=1")],
        data={"N": 2, "M": 3},
    ),
    Case(
        "let_gather_index_out_of_range_names_the_let",
        "model m\ndata N: int\ndata K: int\ndata g[K]: int\ndata c[N]: real\nvar v: real\n"
        "let m = v * c\nfactor f[k in 0:K]: 0 ~ normal(m[g[k]], 1)\n",
        [(8, 34, "index -1 is out of range for axis 0 of 'm' (size 2) when k=1")],
        data={"N": 2, "K": 2, "g": [1, -1], "c": [1.0, 2.0]},
        hints={0: "the index is negative; indices are 0-based and do not wrap around"},
    ),
    Case(  # a constant index past a let's end, the size fixed by the data: names the let and its axis
        "let_constant_index_out_of_range_names_the_let",
        "model m\ndata N: int\ndata c[N]: real\nvar w[N]: real\nlet m = w * c\nfactor f: 0 ~ normal(m[3], 1)\n",
        [(6, 24, "index 3 is out of range for axis 0 of 'm' (size 3) (with the sizes in <data>)")],
        data={"N": 3, "c": [0.0, 1.0, 2.0]},
        hints={0: "indices are 0-based"},
    ),
    Case(
        "constant_index_out_of_range_of_an_expression",
        "model m\nvar x: real[3]\nvar y: real[2, 3]\nfactor f: 0 ~ normal((x + y)[1, 3], 1)\n",
        [(4, 33, "index 3 is out of range for axis 1 of 'x + y' (size 3)")],
    ),
    Case(  # m[i] of a let of a gather is w[g[i]]: past the let's end, the let is named
        "let_of_a_gather_index_out_of_range_names_the_let",
        "model m\ndata N: int\ndata g[N]: int\nvar w[N]: real\nlet m = w[g] * 2\n"
        "factor f[i in 0:N+1]: 0 ~ normal(m[i], 1)\n",
        [(6, 36, "index 3 is out of range for axis 0 of 'm' (size 3) when i=3")],
        data={"N": 3, "g": [2, 0, 1]},
    ),
    Case(  # a negative constant into a let: names the let and the axis
        "let_negative_constant_index_names_the_let",
        "model m\ndata M: int\ndata C[M, 2]: real\nvar w[M, 2]: real\nlet m = w * C\n"
        "factor f: 0 ~ normal(m[0, -1], 1)\n",
        [(6, 27, "index -1 is negative (axis 1 of 'm'); indices do not wrap around")],
    ),
    Case(
        "missing_data_key",
        RW,
        [(2, 1, "missing data 'T' (declared here): <data> has no key 'T'")],
        data={"y": [1.0, 2.0, 3.0], "sigma": 1.0},
    ),
    Case(
        "data_shape_mismatch",
        RW,
        [(3, 1, "data 'y' in <data> has shape [2] but the model declares [3]")],
        data={"T": 3, "y": [1.0, 2.0], "sigma": 1.0},
    ),
    Case(
        "nan_in_data",
        RW,
        [(3, 1, "data 'y' in <data> has nan at [1]")],
        data={"T": 3, "y": [1.0, float("nan"), 3.0], "sigma": 1.0},
        hints={0: "fglang needs finite data; drop or impute missing values first"},
    ),
    Case(
        "int_data_with_fraction",
        "model m\ndata N: int\ndata k[N]: int\n",
        [(3, 1, "data 'k' in <data> is declared int but holds 1.5 at [1]")],
        data={"N": 2, "k": [1.0, 1.5]},
    ),
    Case(
        "positive_data_out_of_range",
        RW,
        [(4, 1, "data 'sigma' in <data> must be positive, but holds -1")],
        data={"T": 3, "y": [1.0, 2.0, 3.0], "sigma": -1.0},
    ),
    Case(
        "string_data",
        RW,
        [(3, 1, "'y' in <data> must hold numbers, got the string 'abc'")],
        data={"T": 3, "y": "abc", "sigma": 1.0},
    ),
    Case(
        "ragged_data",
        "model m\ndata N: int\ndata X[N, 2]: real\n",
        [(3, 1, "'X' in <data> is a ragged list; every row must have the same length")],
        data={"N": 2, "X": [[1.0, 2.0], [3.0]]},
    ),
    Case(
        "negative_size",
        RW,
        [(3, 1, "cannot size 'y': its declared shape [-1] is negative")],
        data={"T": -1, "y": [], "sigma": 1.0},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_golden(case):
    check_case(case)


def test_there_are_at_least_twenty_kinds():
    assert len({c.id for c in CASES}) >= 20


def test_errors_are_sorted_by_position_not_by_discovery():
    # the duplicate name is found after the factor's body is checked
    src = "model m\nvar x: real\nfactor f: x ~ normal(0, 1)\nfactor f: x ~ normal(zz, 1)\n"
    err = compile_error(src)
    assert [(d.span.line, d.span.col, d.message) for d in err.diagnostics] == [
        (4, 8, "'f' is already declared"),
        (4, 22, "unknown name 'zz'"),
    ]


def test_spec_section_8_example():
    src = "model m\ndata T: int\ndata y[T]: real\ndata sigma: positive\nvar x[T]: real\n\n"
    src += "factor obs[t in 0:T]: y[t] ~ normal(x[t], sigm)\n"
    err = compile_error(src, "model.fg")
    assert str(err) == (
        "model.fg:7:43: unknown name 'sigm'; did you mean 'sigma'?\n"
        "    factor obs[t in 0:T]: y[t] ~ normal(x[t], sigm)\n"
        "                                              ^^^^"
    )


# ------------------------------------------------------------------ includes
def test_include_cycle(write_models):
    root = write_models(
        {
            "a.fg": 'model a\ninclude "b.fg"\nvar x: real\n',
            "b.fg": 'include "c.fg"\nvar y: real\n',
            "c.fg": 'include "a.fg"\n',
        }
    )
    with pytest.raises(FgError) as info:
        fglang.load(root / "a.fg")
    (d,) = info.value.diagnostics
    assert d.span.file.endswith("c.fg") and (d.span.line, d.span.col) == (1, 1)
    assert d.message == "include cycle: a.fg -> b.fg -> c.fg -> a.fg"
    assert_formatted(info.value)


def test_include_self(write_models):
    root = write_models({"s.fg": 'model s\ninclude "s.fg"\n'})
    with pytest.raises(FgError) as info:
        fglang.load(root / "s.fg")
    assert info.value.diagnostics[0].message == "include cycle: s.fg -> s.fg"


def test_include_errors_name_the_included_file(write_models):
    root = write_models(
        {
            "main.fg": 'model main\ninclude "parts/priors.fg"\nvar x: real\nfactor f: x ~ normal(0, tau)\n',
            "parts/priors.fg": "var tau: reall\n",
            "parts/ok.fg": "var z: real\n",
        }
    )
    with pytest.raises(FgError) as info:
        fglang.load(root / "main.fg")
    files = [(d.span.file, d.span.line, d.message) for d in info.value.diagnostics]
    assert files == [(str(root / "parts" / "priors.fg"), 1, "unknown type 'reall'; did you mean 'real'?")]
    assert_formatted(info.value)


def test_include_works_and_missing_include_is_located(write_models):
    root = write_models(
        {
            "main.fg": 'model main\ninclude "lib.fg"\nvar x: real\nfactor f: x ~ normal(mu0, 1)\n',
            "lib.fg": "fn sq(a: real) -> real { return a * a }\ndata mu0: real = 0\n",
            "bad.fg": 'model bad\ninclude "nope.fg"\n',
        }
    )
    m = fglang.load(root / "main.fg")
    assert set(m.ir.data) == {"mu0"}
    with pytest.raises(FgError) as info:
        fglang.load(root / "bad.fg")
    (d,) = info.value.diagnostics
    assert (d.span.line, d.span.col) == (2, 1) and d.message.startswith("cannot read included file 'nope.fg'")


def test_include_in_a_string_model():
    err = compile_error('model m\ninclude "a.fg"\n')
    assert err.diagnostics[0].message == "'include' needs a model loaded from a file (fglang.load), not a string"


def test_missing_model_file(tmp_path):
    with pytest.raises(FgError) as info:
        fglang.load(tmp_path / "nope.fg")
    assert str(info.value).startswith(f"{tmp_path / 'nope.fg'}: cannot read model file")


# ------------------------------------------------------------------ data warnings
def test_extra_data_keys_warn_but_bind():
    m = fglang.compile(RW + "factor obs[t in 0:T]: y[t] ~ normal(x[t], sigma)\n", "m.fg")
    with pytest.warns(UserWarning, match=r"<data>: ignoring keys the model does not declare: extra, zz"):
        b = m.bind({"T": 2, "y": [1.0, 2.0], "sigma": 1.0, "zz": 1, "extra": [1, 2]})
    assert b.families["obs"].n_members == 2


def test_declared_data_gives_no_warning():
    m = fglang.compile(RW, "m.fg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.bind({"T": 2, "y": [1.0, 2.0], "sigma": 1.0})


def test_data_errors_are_all_reported():
    err = bind_error(RW, {"T": 3, "y": [1.0, float("inf"), 2.0], "sigma": 0.0})
    assert [(d.span.line, d.message) for d in err.diagnostics] == [
        (3, "data 'y' in <data> has inf at [1]"),
        (4, "data 'sigma' in <data> must be positive, but holds 0"),
    ]


def test_data_file_errors(tmp_path):
    m = fglang.compile(RW, "m.fg")
    bad = tmp_path / "bad.json"
    bad.write_text('{"T": 3,\n "y": [1, 2\n')
    with pytest.raises(FgError) as info:
        m.bind(bad)
    assert str(info.value).startswith(f"{bad}:3:1: malformed JSON")
    with pytest.raises(FgError) as info:
        m.bind(tmp_path / "none.json")
    assert "data file not found" in str(info.value)
    arr = tmp_path / "list.json"
    arr.write_text("[1, 2]")
    with pytest.raises(FgError, match="a data file must hold a JSON object"):
        m.bind(arr)


def test_int_sizes_from_json_and_npz(tmp_path):
    m = fglang.compile(RW + "factor obs[t in 0:T]: y[t] ~ normal(x[t], sigma)\n", "m.fg")
    j = tmp_path / "d.json"
    j.write_text('{"T": 3, "y": [1, 2, 3], "sigma": 0.5}')
    assert m.bind(j).families["obs"].n_members == 3
    z = tmp_path / "d.npz"
    np.savez(z, T=np.int64(4), y=np.zeros(4), sigma=np.float64(0.5))
    b = m.bind(z)
    assert b.families["obs"].n_members == 4 and b.data["y"].dtype == np.float64


def test_diagnostic_without_span_formats_plainly():
    err = FgError([Diagnostic("bad option", None)])
    assert str(err) == "bad option"


def test_too_deeply_nested_expression_is_an_fg_error():
    err = compile_error("model m\nvar x: real\nlet s = " + "-" * 12_000 + "x\n")
    (d,) = err.diagnostics
    assert d.message == "this expression is nested too deeply for fglang (thousands of levels)"
    assert d.hint.startswith("split a long chain")
    assert "Traceback" not in str(err)


def test_positive_ordered_and_simplex_elements_are_positive_parameters():
    """``exponential(phi[0])`` with ``phi: positive_ordered[2]`` and ``normal(0, s[0])``
    with ``s: simplex[2]`` were refused as "can be negative" (posteriordb's hmm_drive)."""
    src = ("model r\ndata y: real\nvar phi: positive_ordered[2]\nvar s: simplex[2]\n"
           "factor f: y ~ exponential(phi[0])\nfactor g: y ~ normal(0, s[0])\n")
    fglang.compile(src, "r.fg")
    with pytest.raises(FgError, match="var 'o' is declared ordered and can be negative"):
        fglang.compile(src.replace("var phi: positive_ordered[2]", "var o: ordered[2]\nvar phi: positive_ordered[2]")
                       .replace("exponential(phi[0])", "exponential(o[0])"), "r.fg")
