"""Hints for Stan spellings that fglang does not read (SPEC section 8).

A newcomer from Stan types ``real<lower=0> sigma;``, ``target += ...`` or
``normal_lpdf(y | mu, sigma)`` out of habit. Lark only sees an unexpected
token there, and the checker only an unknown function; the message alone
("unexpected 'real'; expected 'data', ...") does not say what to write
instead. These functions recognise the Stan spelling at the error's position
and give the fglang one (docs/translations.md's table of concepts), so the
parser and the checker can attach it as the diagnostic's hint.
"""

from __future__ import annotations

import re

# Stan's declaration types that can open a statement (a block's variable declaration)
STAN_TYPES = frozenset(
    "real int vector row_vector matrix array simplex ordered positive_ordered unit_vector cov_matrix "
    "corr_matrix cholesky_factor_corr cholesky_factor_cov complex".split()
)
_STAN_BLOCKS = frozenset("functions transformed parameters model generated quantities".split())
# Stan's density suffixes -> fglang's function of a distribution
DENSITY_SUFFIXES = {
    "_lpdf": "logp",
    "_lpmf": "logp",
    "_lupdf": "logp",
    "_lupmf": "logp",
    "_lcdf": "lcdf",
    "_lccdf": "lccdf",
}
_SIZED_TYPES = frozenset(
    "simplex ordered positive_ordered unit_vector cov_matrix corr_matrix cholesky_factor_corr "
    "cholesky_factor_cov".split()
)
_ARRAY = re.compile(r"array\s*\[(?P<dims>[^\]]*)\]\s*")
_DECL = re.compile(r"(?P<type>[A-Za-z_]\w*)\s*(?:<(?P<bounds>[^>]*)>)?\s*(?:\[(?P<dims>[^\]]*)\])?\s*"
                   r"(?P<name>[A-Za-z_]\w*)")


def _closing(text: str) -> str | None:
    """``text`` up to the ')' that closes the call it is inside, or None."""
    depth = 0
    for i, ch in enumerate(text):
        depth += ch in "(["
        if ch in ")]":
            if depth == 0:
                return text[:i]
            depth -= 1
    return None


def density_call_hint(name: str, value: str = "value", args: str = "ARGS") -> str | None:
    """The fglang spelling of a call to Stan's ``DIST_lpdf`` (``_lpmf``, ``_lcdf``, ...), or None."""
    for suffix, fn in DENSITY_SUFFIXES.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            dist = name[: -len(suffix)]
            from fglang.compiler.distributions import DISTRIBUTIONS
            from fglang.compiler.stan_names import STAN_NAMES

            if dist in DISTRIBUTIONS or dist in STAN_NAMES:
                return (f"'{name}' is Stan's spelling; fglang writes {fn}({dist}({args}), {value}) (Stan's "
                        f"{name}({value} | {args})), or a factor 'factor NAME: {value} ~ {dist}({args})'")
            return (f"'{name}' is Stan's spelling of a user-defined density; fglang has no _lpdf functions: "
                    f"write it as 'fn {dist}_logp(value: real, ...) -> real {{ return ... }}' and add it with "
                    f"'factor NAME: potential {dist}_logp(value, ...)'")
    return None


_BLOCKS_HINT = ("fglang has no Stan blocks: after 'model NAME', declare 'data NAME: TYPE' and 'var NAME: TYPE', "
                "'let NAME = EXPR' for transformed parameters, and 'factor NAME: y ~ DIST(...)' for the model's "
                "statements")


def _statement_hint(line: str, col: int, word: str) -> str | None:
    """A hint for a Stan statement that opens at column ``col`` of ``line`` (the unexpected ``word``)."""
    rest = line[col - 1 :]
    if word == "target" and re.match(r"target\s*\+=", rest):
        return "Stan's 'target += EXPR' is 'factor NAME: potential EXPR' in fglang (no ';')"
    if word in STAN_TYPES:
        dims = []
        a = _ARRAY.match(rest)
        if a is not None:  # Stan's array[N] TYPE NAME: the sizes come first
            dims.append(a.group("dims").strip())
            rest = rest[a.end():]
        m = _DECL.match(rest)
        if m is None:
            return "this is Stan's declaration; fglang writes 'var NAME: TYPE' or 'data NAME: TYPE' (no ';')"
        kind = m.group("type")
        own = (m.group("dims") or "").strip()  # vector[N]: a size of the var; simplex[K]: of the type
        fg_type = kind if kind in _SIZED_TYPES or kind == "int" else "real"
        if own and kind not in _SIZED_TYPES:
            dims.append(own)
        bounds = (m.group("bounds") or "").strip()
        typ = fg_type + (f"({bounds})" if bounds else "") + (f"[{own}]" if own and kind in _SIZED_TYPES else "")
        decl = m.group("name") + (f"[{', '.join(dims)}]" if dims else "")
        if fg_type == "int":  # an int is data (a discrete unknown is summed out, not declared)
            return f"this is Stan's declaration; fglang writes 'data {decl}: {typ}' (sizes after the name, no ';')"
        return (f"this is Stan's declaration; fglang writes 'var {decl}: {typ}' for a parameter or "
                f"'data {decl}: {typ}' for data (sizes after the name, no blocks, no ';')")
    if word in _STAN_BLOCKS and re.match(r"\w+(\s+\w+)?\s*\{", rest):
        return _BLOCKS_HINT
    if re.match(r"[A-Za-z_][\w\[\], ]*\s*~", rest):
        return "a Stan sampling statement 'y ~ DIST(...);' is 'factor NAME: y ~ DIST(...)' in fglang (no ';')"
    return None


def syntax_hint(text_line: str, line_col: int, token: str | None, char: str | None) -> str | None:
    """The hint for a parse error at column ``line_col`` of ``text_line``:
    ``token`` the unexpected token's text (None for an unexpected character
    ``char``), or None when the error is not a Stan spelling."""
    before = text_line[: line_col - 1]
    if char == "|":
        m = re.search(r"([A-Za-z_]\w*)\s*\(([^()]*)$", before)
        if m is not None:
            func, value = m.group(1), m.group(2).strip() or "value"
            args = (_closing(text_line[line_col:]) or "").strip() or "ARGS"
            hint = density_call_hint(func, value, args)
            if hint is not None:
                return hint
            return f"'|' is Stan's separator in '{func}(value | ARGS)'; fglang writes logp(DIST(ARGS), value)"
    if char == ";":
        return "fglang statements end at the end of the line: drop the ';'"
    if token == "<" and re.search(r":\s*(real|int|vector|array)\s*$", before):
        return "fglang writes bounds in parentheses: 'real(lower=0)' (or 'positive'), not Stan's 'real<lower=0>'"
    if token == "{" and re.fullmatch(r"\s*(data|model|transformed\s+data|parameters|transformed\s+parameters|"
                                     r"generated\s+quantities|functions)\s*", before):
        return _BLOCKS_HINT
    if token is not None and before.strip() == "":
        return _statement_hint(text_line, line_col, token)
    return None
