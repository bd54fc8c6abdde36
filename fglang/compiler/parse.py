"""Source text -> AST, with Lark.

The grammar is LALR(1) so that a 100-line model parses in a few
milliseconds; the newline rules of SPEC section 2 live in ``NewlinePostLex``
rather than in the grammar, which keeps the grammar readable.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import pickle
import sys
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from fglang.cache_location import cache_enabled, cache_root
from fglang.compiler import ast as A
from fglang.compiler.stan_hints import syntax_hint
from fglang.compiler.stan_names import canonical_call, stan_meaning
from fglang.errors import TOO_DEEP, TOO_DEEP_HINT, Diagnostic, FgError, recursion_headroom, source_lines

INT_MAX = 2**63 - 1
# deeper expression trees than this are refused at parse time, at the place
# where the nesting passes the limit; every later stage recurses once per level
MAX_NESTING = 2000

RESERVED = frozenset(
    "model data var let factor fn return for in potential include true false".split()
)

# What a user should read instead of Lark's terminal names in "expected ..." lists.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": 'a "quoted path"',
    "_NL": "a new line",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "COLON": "':'",
    "SLICE_COLON": "':'",
    "COMMA": "','",
    "EQUAL": "'='",
    "TILDE": "'~'",
    "MINUS": "'-'",
    "CIRCUMFLEX": "'^'",
    "COMP_OP": "a comparison",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*', '/' or '@'",
    # one phrase for both, so that an "expected" list stays short enough to show whole
    "REDUCE": "a reduction sum[k in 0:K](...) or scan[t in 1:T](...)",
    "SCAN": "a reduction sum[k in 0:K](...) or scan[t in 1:T](...)",
    "__ANON_0": "'->'",
    "$END": "end of file",
}


class NewlinePostLex:
    """Drops newlines inside ( ) and [ ], folds repeated newlines, and ends the
    token stream with a newline so the last statement needs none."""

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        last: Token | None = None
        for tok in stream:
            if tok.type == "_NL":
                if depth > 0 or (last is not None and last.type == "_NL"):
                    continue
            elif tok.type in ("LPAR", "LSQB", "REDUCE", "SCAN"):
                depth += 1
            elif tok.type in ("RPAR", "RSQB"):
                depth = max(0, depth - 1)
            last = tok
            yield tok
        if last is not None and last.type != "_NL":
            yield Token.new_borrow_pos("_NL", "\n", last)


_LARK_OPTIONS = {"parser": "lalr", "lexer": "contextual", "propagate_positions": True, "maybe_placeholders": True}


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    """The LALR parser of ``fg.lark``, its tables loaded from the cache where
    a run of this grammar left them (`_saved_parser`): building them is the
    grammar analysis, ~0.2-0.4 s of every fresh process otherwise."""
    text = resources.files("fglang.grammar").joinpath("fg.lark").read_text()
    key = _grammar_key(text)
    path = _parser_file()
    parser = _saved_parser(path, key) if path is not None else None
    if parser is None:
        parser = Lark(text, postlex=NewlinePostLex(), cache=False, **_LARK_OPTIONS)
        if path is not None:
            _save_parser(parser, path, key)
    return parser


def _grammar_key(text: str) -> bytes:
    """What decides the tables: the grammar, the options, Lark's and Python's versions."""
    import lark

    what = [text, sorted(_LARK_OPTIONS.items()), lark.__version__, sys.version_info[:2]]
    return hashlib.sha256(repr(what).encode()).hexdigest().encode()


def _parser_file() -> Path | None:
    """``<cache>/parser/fg.lark-tables`` (one file: a new grammar replaces it), or None with the cache off."""
    return cache_root() / "parser" / "fg.lark-tables" if cache_enabled() else None


def _saved_parser(path: Path, key: bytes) -> Lark | None:
    """The parser stored at ``path`` for this ``key``; None where there is none,
    it is another grammar's, or it does not load (cut short, another Lark)."""
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    head, _, body = blob.partition(b"\n")
    if head != key:
        return None
    try:
        saved = pickle.loads(body)
        return Lark._load_from_dict(saved["data"], saved["memo"], postlex=NewlinePostLex())
    except Exception:  # noqa: BLE001  (any unreadable entry is a miss: the tables are built again)
        return None


def _save_parser(parser: Lark, path: Path, key: bytes) -> None:
    """Store the tables whole (a temporary file renamed into place: a
    concurrent reader sees the old file or the new one); a read-only or full
    disk stores nothing."""
    buf = io.BytesIO()
    parser.save(buf, exclude_options=("postlex",))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".fglang-tmp-", dir=path.parent)
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\n" + buf.getvalue())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


class _ToAst(Transformer):
    """Lark tree -> fglang.compiler.ast nodes, keeping a Span on each."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    # -- spans
    def _span(self, meta) -> A.Span:
        if getattr(meta, "empty", True):
            return A.Span(self.file, 0, 0, 0, 0)
        return A.Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tspan(self, tok: Token) -> A.Span:
        return A.Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)

    def _check_name(self, tok: Token) -> None:
        if str(tok) in RESERVED:
            raise FgError([Diagnostic(f"'{tok}' is a reserved word and cannot be used as a name", self._tspan(tok))])

    # -- program
    @v_args(meta=True)
    def start(self, meta, children):
        header = children[0]
        decls = tuple(c for c in children[1:] if c is not None)
        return ("program", header, decls)

    @v_args(meta=True)
    def model_header(self, meta, children):
        return (str(children[0]), self._span(meta))

    @v_args(meta=True)
    def data_decl(self, meta, c):
        name, dims, typ, batch, default = c
        self._check_name(name)
        return A.DataDecl(self._span(meta), str(name), self._tspan(name), dims or (), typ, default, batch is not None)

    @v_args(meta=True)
    def var_decl(self, meta, c):
        name, dims, typ, prior, trunc = c
        self._check_name(name)
        return A.VarDecl(self._span(meta), str(name), self._tspan(name), dims or (), typ, prior, trunc)

    @v_args(meta=True)
    def let_decl(self, meta, c):
        name, expr = c
        self._check_name(name)
        return A.LetDecl(self._span(meta), str(name), self._tspan(name), expr)

    @v_args(meta=True)
    def include_decl(self, meta, c):
        return A.IncludeDecl(self._span(meta), str(c[0])[1:-1])

    @v_args(meta=True)
    def fn_decl(self, meta, c):
        name = c[0]
        self._check_name(name)
        if stan_meaning(str(name)) is not None:  # its calls are read as the distribution or built-in
            raise FgError([Diagnostic(
                f"'{name}' is Stan's name for {stan_meaning(str(name))}, which fglang reads as that",
                self._tspan(name), "give this fn another name")])
        # maybe_placeholders gives [None] for an empty parameter list
        params = []
        i = 1
        while i < len(c) and (c[i] is None or isinstance(c[i], A.Param)):
            if c[i] is not None:
                params.append(c[i])
            i += 1
        ret = c[i]
        stmts = c[i + 1 :]
        lets, body = [], None
        for kind, *rest in stmts:
            if kind == "let":
                if body is not None:
                    raise FgError([Diagnostic("statements after 'return' are never run", rest[2])])
                lets.append(tuple(rest))
            else:
                if body is not None:
                    raise FgError([Diagnostic("a fn has exactly one 'return'", rest[1])])
                body = rest[0]
        if body is None:
            raise FgError([Diagnostic(f"fn '{name}' has no 'return'", self._span(meta))])
        return A.FnDecl(self._span(meta), str(name), self._tspan(name), tuple(params), ret, tuple(lets), body)

    @v_args(meta=True)
    def param(self, meta, c):
        self._check_name(c[0])
        return A.Param(str(c[0]), c[1], self._span(meta))

    @v_args(meta=True)
    def fn_let(self, meta, c):
        self._check_name(c[0])
        return ("let", str(c[0]), c[1], self._span(meta))

    @v_args(meta=True)
    def fn_return(self, meta, c):
        return ("return", c[0], self._span(meta))

    @v_args(meta=True)
    def factor_decl(self, meta, c):
        name, ranges, body = c
        self._check_name(name)
        span = self._span(meta)
        if body[0] == "sample":
            return A.FactorDecl(span, str(name), self._tspan(name), ranges or (), body[1], body[2], None, body[3])
        return A.FactorDecl(span, str(name), self._tspan(name), ranges or (), None, None, body[1])

    def comprehension(self, c):
        return tuple(c)

    @v_args(meta=True)
    def index_range(self, meta, c):
        self._check_name(c[0])
        return A.IndexRange(str(c[0]), c[1], c[2], self._span(meta))

    def sample_body(self, c):
        return ("sample", c[0], c[1], c[2])

    @v_args(meta=True)
    def truncation(self, meta, c):
        _tok, lo, hi = c
        return A.Truncation(lo, hi, self._span(meta))

    def potential_body(self, c):
        return ("potential", c[0])

    def dims(self, c):
        return tuple(c)

    @v_args(meta=True)
    def type(self, meta, c):
        name, bounds, shape = c
        return A.TypeExpr(str(name), bounds or (), shape or (), self._span(meta))

    def type_bounds(self, c):
        return tuple(c)

    # -- expressions
    @v_args(meta=True)
    def compare(self, meta, c):
        return A.BinOp(self._span(meta), str(c[1]), c[0], c[2])

    @v_args(meta=True)
    def binop(self, meta, c):
        return A.BinOp(self._span(meta), str(c[1]), c[0], c[2])

    @v_args(meta=True)
    def pow(self, meta, c):
        return A.BinOp(self._span(meta), "^", c[0], c[1])

    @v_args(meta=True)
    def neg(self, meta, c):
        operand = c[0]
        return A.Neg(self._span(meta), operand)

    @v_args(meta=True)
    def index(self, meta, c):
        return A.Index(self._span(meta), c[0], tuple(c[1:]))

    @v_args(meta=True)
    def slice(self, meta, c):
        lo, _colon, hi = c
        return A.Slice(self._span(meta), lo, hi)

    @v_args(meta=True)
    def call(self, meta, c):
        name = c[0]
        args, kwargs = [], []
        for a in c[1:]:
            if a is None:
                continue
            if isinstance(a, A.Kwarg):
                kwargs.append(a)
            else:
                if kwargs:
                    raise FgError([Diagnostic("a positional argument cannot follow a keyword argument", a.span)])
                args.append(a)
        return canonical_call(A.Call(self._span(meta), str(name), self._tspan(name), tuple(args), tuple(kwargs)))

    @v_args(meta=True)
    def kwarg(self, meta, c):
        return A.Kwarg(str(c[0]), c[1], self._span(meta))

    def number(self, c):
        tok = c[0]
        text = str(tok)
        is_int = text.isdigit()
        if is_int and (len(text) > 19 or int(text) > INT_MAX):
            shown = text if len(text) <= 24 else f"{text[:10]}...({len(text)} digits)"
            raise FgError([Diagnostic(
                f"int literal {shown} does not fit in a 64-bit int (at most {INT_MAX})", self._tspan(tok),
                "write a real literal such as 1e30 if you mean a real number")])
        value = int(text) if is_int else float(text)
        if value == float("inf"):
            raise FgError([Diagnostic(
                f"number {text} is too large for a 64-bit float: it would be inf", self._tspan(tok),
                "the largest float is about 1.8e308")])
        return A.Num(self._tspan(tok), value, is_int)

    def name(self, c):
        tok = c[0]
        return A.Name(self._tspan(tok), str(tok))

    @v_args(meta=True)
    def true(self, meta, c):
        return A.Bool(self._span(meta), True)

    @v_args(meta=True)
    def false(self, meta, c):
        return A.Bool(self._span(meta), False)

    @v_args(meta=True)
    def vector(self, meta, c):
        return A.Vector(self._span(meta), tuple(c))

    @v_args(meta=True)
    def reduce(self, meta, c):
        op = str(c[0])[:-1]
        return A.Reduce(self._span(meta), op, tuple(c[1:-1]), c[-1])

    @v_args(meta=True)
    def scan(self, meta, c):
        _tok, rng, init, state, body = c
        self._check_name(state)
        return A.Scan(self._span(meta), rng, init, str(state), body, self._tspan(state))


def _expected_words(expected: set[str], exact: bool = False) -> str:
    if len(expected) > 1 and not exact:
        expected = set(expected) - {"_NL"}
    words = sorted({_TERMINAL_WORDS.get(t, _literal(t)) for t in expected})
    if len(words) > 8:
        words = words[:8] + ["..."]
    return ", ".join(words)


def _literal(term: str) -> str:
    try:
        pattern = _parser().get_terminal(term).pattern
    except KeyError:
        return term.lower()
    if pattern.type == "str":
        return f"'{pattern.value}'"
    return term.lower()


def _unclosed_bracket(text: str, line: int) -> A.Span | None:
    """The innermost '(' or '[' opened before ``line`` and still open there: a
    forgotten ')' makes the next lines part of the same statement (SPEC 2)."""
    stack: list = []
    try:
        for tok in _parser().lex(text):
            if tok.line >= line:
                break
            if tok.type in ("LPAR", "LSQB", "REDUCE", "SCAN"):
                stack.append(tok)
            elif tok.type in ("RPAR", "RSQB") and stack:
                stack.pop()
    except UnexpectedInput:
        pass
    if not stack:
        return None
    tok = stack[-1]
    return A.Span("", tok.line, tok.column + len(tok) - 1, tok.line, tok.column + len(tok))


def _syntax_error(err: UnexpectedInput, file: str, text: str) -> FgError:
    line, col = err.line, err.column
    hint = None
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        msg = f"unexpected character {ch!r}"
        span = A.Span(file, line, col, line, col + 1)
    elif isinstance(err, UnexpectedToken):
        tok = err.token
        # ``accepts`` (what the parser state really takes) is sharper than
        # ``expected`` (LALR lookaheads merged across states)
        exact = bool(err.accepts)
        expected = set(err.accepts) if exact else set(err.expected)
        if tok.type == "$END":
            msg = f"unexpected end of file; expected {_expected_words(expected, exact)}"
            lines = source_lines(text) or [""]
            line, col = len(lines), len(lines[-1]) + 1
            span = A.Span(file, line, col, line, col + 1)
        else:
            shown = "end of line" if tok.type == "_NL" else repr(str(tok))
            if tok.type == "NAME" and str(tok) in RESERVED:
                shown = f"reserved word '{tok}'"
            msg = f"unexpected {shown}; expected {_expected_words(expected, exact)}"
            end = tok.end_column if tok.type != "_NL" else col + 1
            line, col = tok.line, tok.column
            span = A.Span(file, line, col, line, max(end or col + 1, col + 1))
            opened = _unclosed_bracket(text, line)
            if opened is not None:
                bracket = source_lines(text)[opened.line - 1][opened.col - 1]
                hint = (
                    f"the '{bracket}' at line {opened.line}, column {opened.col} is not closed, "
                    "so the lines after it continue its statement"
                )
    elif isinstance(err, UnexpectedEOF):
        lines = source_lines(text) or [""]
        line, col = len(lines), len(lines[-1]) + 1
        msg = f"unexpected end of file; expected {_expected_words(set(err.expected))}"
        span = A.Span(file, line, col, line, col + 1)
    else:  # pragma: no cover - Lark has no other kinds
        msg, span = str(err), A.Span(file, line, col, line, col + 1)
    lines = source_lines(text)
    if hint is None and 1 <= span.line <= len(lines) and lines[span.line - 1][span.col - 1 :].startswith("//"):
        hint = "comments start with '#' in .fg files"
    if hint is None and 1 <= span.line <= len(lines):  # real<lower=0> x;, target += ..., normal_lpdf(y | ...)
        tok = err.token if isinstance(err, UnexpectedToken) and err.token.type not in ("$END", "_NL") else None
        char = text[err.pos_in_stream] if isinstance(err, UnexpectedCharacters) and err.pos_in_stream < len(text) \
            else None
        hint = syntax_hint(lines[span.line - 1], span.col, str(tok) if tok is not None else None, char)
    return FgError([Diagnostic(msg, span, hint)], {file: text})


def _too_deep(tree: Tree, file: str) -> A.Span | None:
    """Where the parse tree first nests deeper than ``MAX_NESTING`` (iteratively:
    the tree may be far deeper than Python's recursion allows)."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            meta = node.meta
            if getattr(meta, "empty", True):
                return A.Span(file, 0, 0, 0, 0)
            return A.Span(file, meta.line, meta.column, meta.line, meta.column + 1)
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, Tree))
    return None


def parse(text: str, file: str = "<string>") -> A.Program:
    """Parse one .fg source. Raises FgError (never a Lark exception)."""
    try:
        with recursion_headroom():
            tree = _parser().parse(text)
            deep = _too_deep(tree, file)
            if deep is not None:
                hint = f"{TOO_DEEP_HINT} (at most {MAX_NESTING} levels)"
                raise FgError([Diagnostic(TOO_DEEP, deep, hint)], {file: text})
            _, header, decls = _ToAst(file).transform(tree)
    except UnexpectedInput as err:
        raise _syntax_error(err, file, text) from None
    except RecursionError:
        raise FgError([Diagnostic(TOO_DEEP, A.Span(file, 0, 0, 0, 0), TOO_DEEP_HINT)], {file: text}) from None
    except VisitError as err:
        if isinstance(err.orig_exc, FgError):
            e = err.orig_exc
            raise FgError(e.diagnostics, {file: text}) from None
        if isinstance(err.orig_exc, RecursionError):
            raise FgError([Diagnostic(TOO_DEEP, A.Span(file, 0, 0, 0, 0), TOO_DEEP_HINT)], {file: text}) from None
        raise
    name, hspan = header if header is not None else (None, None)
    return A.Program(name, tuple(decls), file, text, hspan)
