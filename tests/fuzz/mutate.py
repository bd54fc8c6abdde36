"""Text mutations of models: numbers swapped for hostile values, names
swapped, lines deleted, duplicated or spliced from another model, odd
characters and bytes inserted.

Every mutation is a function ``(rnd, text, donors) -> bytes | str``; the
result is usually a model with one mistake, which must get a located error.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

_NUM = re.compile(r"(?<![A-Za-z_\d.])\d+(\.\d*)?([eE][+-]?\d+)?")
_NAME = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")

HOSTILE_NUMBERS = (
    "0", "1", "-1", "2", "0.0", "-0.5", "1e999", "-1e999", "1e-308", "1e-320", "1e10", "1e12", "1e20",
    "10000000000", "1000000000000", "100000000", "9223372036854775807", "9223372036854775808",
    "18446744073709551616", "4294967296", "(-1)^0.5", "(-8)^(1/3)", "0^(-1)", "1/0", "0/0", "2^64", "2^1024",
    "10^308 * 10", "inf", "-inf", "pi", "1" * 5000, "9" * 30, "(1e308 * 10)", "1e309 - 1e309", "3.5",
)
ODD_CHARS = ("\f", "\v", "\u2028", "\u2029", "\x85", "\x1c", "\r", "\x00", "\t", "\ufeff", "é", "∑", "\u200b", "\\")
ODD_BYTES = (b"\xe9", b"\xff\xfe", b"\x80", b"\xc3", b"\xed\xa0\x80")
PUNCT = ("(", ")", "[", "]", "{", "}", ",", ":", "~", "=", "+", "-", "*", "/", "^", "@", "<", "==", "->", "#", '"')
NAMES = (
    "N", "K", "T", "x", "y", "inf", "pi", "sum", "normal", "model", "data", "var", "for", "potential", "__x",
    "logp", "where", "inv_logit", "huber", "mvnormal", "categorical", "softmax", "transpose", "int", "real",
)


def numbers(rnd: random.Random, text: str, donors: Sequence[str]) -> str:
    """A number literal (or several) replaced by a hostile value."""
    spots = list(_NUM.finditer(text))
    if not spots:
        return text
    for _ in range(rnd.choice((1, 1, 1, 2, 3))):
        m = rnd.choice(spots)
        text = text[: m.start()] + rnd.choice(HOSTILE_NUMBERS) + text[m.end() :]
        spots = list(_NUM.finditer(text))
        if not spots:
            break
    return text


def names(rnd: random.Random, text: str, donors: Sequence[str]) -> str:
    """A name replaced by another name of the model, a builtin or a keyword."""
    spots = list(_NAME.finditer(text))
    if not spots:
        return text
    m = rnd.choice(spots)
    pool = [s.group() for s in spots] + list(NAMES)
    return text[: m.start()] + rnd.choice(pool) + text[m.end() :]


def lines(rnd: random.Random, text: str, donors: Sequence[str]) -> str:
    """Delete, duplicate, swap or splice in (from another model) a line."""
    ls = text.split("\n")
    if not ls:
        return text
    i = rnd.randrange(len(ls))
    op = rnd.randrange(4)
    if op == 0:
        del ls[i]
    elif op == 1:
        ls.insert(i, ls[i])
    elif op == 2:
        j = rnd.randrange(len(ls))
        ls[i], ls[j] = ls[j], ls[i]
    else:
        donor = rnd.choice(donors).split("\n") if donors else ls
        ls.insert(i, rnd.choice(donor))
    return "\n".join(ls)


def chars(rnd: random.Random, text: str, donors: Sequence[str]) -> str:
    """A character deleted, or punctuation or an odd character inserted."""
    if not text:
        return rnd.choice(ODD_CHARS)
    i = rnd.randrange(len(text) + 1)
    op = rnd.randrange(3)
    if op == 0:
        return text[:i] + text[i + 1 :]
    if op == 1:
        return text[:i] + rnd.choice(PUNCT) + text[i:]
    return text[:i] + rnd.choice(ODD_CHARS) + text[i:]


def odd_lines(rnd: random.Random, text: str, donors: Sequence[str]) -> str:
    """A comment or a line break made of a form feed, vertical tab or U+2028,
    before a later mistake (errors must still quote the right line)."""
    ls = text.split("\n")
    i = rnd.randrange(len(ls) + 1)
    sep = rnd.choice(("\f", "\v", "\u2028", "\x85", "\x1c", "\r"))
    ls.insert(i, f"# note{sep}more")
    ls.append(rnd.choice(("let z__bad = nope", "var q: real ~ normal(0, sigmaa)", "let = 1")))
    return "\n".join(ls)


def bytes_(rnd: random.Random, text: str, donors: Sequence[str]) -> bytes:
    """The model as bytes that are not UTF-8 (a Latin-1 comment, a stray byte)."""
    raw = text.encode()
    if rnd.random() < 0.5:
        raw = raw.replace(b"\n", b"\n# caf\xe9\n", 1) if b"\n" in raw else raw + b"# caf\xe9"
    else:
        i = rnd.randrange(len(raw) + 1)
        raw = raw[:i] + rnd.choice(ODD_BYTES) + raw[i:]
    return raw


def wrap(rnd: random.Random, text: str, donors: Sequence[str]) -> str:
    """An expression after '=' or '~' wrapped deeply in parentheses or a unary minus."""
    spots = [m.end() for m in re.finditer(r"(=|~|\(|,) ?", text)]
    if not spots:
        return text
    i = rnd.choice(spots)
    depth = rnd.choice((50, 200, 1000, 5000, 50_000))
    if rnd.random() < 0.5:
        return text[:i] + "(" * depth + "1" + ")" * depth + " + " + text[i:]
    return text[:i] + "-" * depth + text[i:]


MUTATIONS: tuple[Callable[[random.Random, str, Sequence[str]], str | bytes], ...] = (
    numbers, numbers, names, lines, lines, chars, odd_lines, bytes_, wrap,
)


def mutate(rnd: random.Random, text: str, donors: Sequence[str]) -> str | bytes:
    """One to three mutations in a row (bytes end the chain)."""
    out: str | bytes = text
    for _ in range(rnd.choice((1, 1, 2, 3))):
        if isinstance(out, bytes):
            break
        out = rnd.choice(MUTATIONS)(rnd, out, donors)
    return out
