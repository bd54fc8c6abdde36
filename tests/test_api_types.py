"""Wrong Python types at the public API are fglang errors (issue 16).

``fit_many(dict)``, ``fit(backend=None)``, ``fglang.load(3)``,
``load_posterior(None)``... were TypeErrors (or AttributeErrors) from
pathlib, difflib or Lark that named no argument. Each is now an
``ArgumentError``: an ``FgError`` naming the argument and what it takes
(and a ``TypeError``, as Python code expects). Hypothesis draws wrong values
for every argument; none may start a fit or escape as another exception.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fglang
from fglang.errors import FgError
from fglang.runtime.arguments import ArgumentError

SRC = """model m
data N: int
data y[N]: real
var mu: real ~ normal(0, 1)
factor f[i in 0:N]: y[i] ~ normal(mu, 1)
"""
DATA = {"N": 2, "y": [1.0, 2.0]}
MODEL = fglang.compile(SRC, "m.fg")

# values of the wrong type for everything below (no str: paths and names take one)
OTHER = st.one_of(
    st.integers(-5, 5), st.floats(allow_nan=True), st.lists(st.integers(), max_size=2), st.binary(max_size=4),
    st.sets(st.integers(), max_size=2), st.tuples(st.integers()), st.just(object()), st.complex_numbers(),
)
NOT_DATA = st.one_of(OTHER.filter(lambda v: not isinstance(v, dict)), st.none())
def _int_text(s: str | bytes) -> bool:
    """Text Python's int() reads ('1', ' 7', '١', b'1'): options take those, as the CLI's text."""
    try:
        int(s)
    except ValueError:
        return False
    return True


NOT_INT = st.one_of(
    st.text(max_size=3).filter(lambda s: not _int_text(s)),
    st.floats().filter(lambda v: v != int(v) if v == v and abs(v) < 1e300 else True),
    st.lists(st.integers(), max_size=2),
    st.binary(max_size=3).filter(lambda s: not _int_text(s)),
)

CALLS = [
    ("fit_many's datasets", st.one_of(NOT_DATA, st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
                                      st.text(max_size=3)), lambda v: MODEL.fit_many(v)),
    ("a data set of fit_many", NOT_DATA, lambda v: MODEL.fit_many([DATA, v])),
    ("fit's data", NOT_DATA, lambda v: MODEL.fit(v)),
    ("fit's backend", st.one_of(OTHER, st.none()), lambda v: MODEL.fit(DATA, backend=v)),
    ("fit_many's backend", st.one_of(OTHER, st.none()), lambda v: MODEL.fit_many([DATA], backend=v)),
    ("seed", NOT_INT, lambda v: MODEL.fit(DATA, seed=v)),
    ("fit_many's seed", NOT_INT, lambda v: MODEL.fit_many([DATA], seed=v)),
    ("fit_many's devices", NOT_INT.filter(lambda v: v != "all"),
     lambda v: MODEL.fit_many([DATA], devices=v)),
    ("an option's value", NOT_INT, lambda v: MODEL.fit(DATA, backend="map", iters=v)),
    ("fit_many's option", NOT_INT, lambda v: MODEL.fit_many([DATA], steps=v)),
    ("an option's name", st.from_regex(r"[a-z]{1,3}_?zz", fullmatch=True), lambda v: MODEL.fit(DATA, **{v: 1})),
    ("fit_many's option name", st.from_regex(r"[a-z]{1,3}_?zz", fullmatch=True),
     lambda v: MODEL.fit_many([DATA], **{v: 1})),
    ("init", OTHER, lambda v: MODEL.fit(DATA, init=v)),
    ("prior", OTHER, lambda v: MODEL.fit(DATA, prior=v)),
    ("progress", st.one_of(OTHER, st.text(max_size=2)), lambda v: MODEL.fit(DATA, progress=v)),
    ("coordinator", OTHER, lambda v: MODEL.fit(DATA, coordinator=v)),
    ("data's names", st.one_of(st.integers(), st.none(), st.tuples(st.text(max_size=1))),
     lambda v: MODEL.fit({**DATA, v: 1})),
    ("predict's posterior", st.one_of(OTHER, st.none()), lambda v: MODEL.predict(v, DATA)),
    ("fglang.load's path", st.one_of(OTHER, st.none()), lambda v: fglang.load(v)),
    ("fglang.compile's source", st.one_of(OTHER, st.none()), lambda v: fglang.compile(v)),
    ("fglang.compile's name", st.one_of(OTHER, st.none()), lambda v: fglang.compile(SRC, v)),
    ("load_posterior's path", st.one_of(OTHER, st.none(), st.dictionaries(st.text(max_size=1), st.integers())),
     lambda v: fglang.load_posterior(v)),
]


@pytest.mark.parametrize(("what", "values", "call"), CALLS, ids=[c[0] for c in CALLS])
def test_a_wrong_type_is_an_fglang_error(what, values, call):
    @settings(max_examples=25, deadline=None)
    @given(values)
    def check(v):
        with pytest.raises(FgError) as e:
            call(v)
        assert "\n" not in str(e.value).splitlines()[0] and str(e.value).strip()

    check()


def test_the_message_names_the_argument_and_is_a_type_error():
    with pytest.raises(ArgumentError, match="fit_many takes a list of data sets") as e:
        MODEL.fit_many(DATA)
    assert isinstance(e.value, TypeError) and "for one data set use fit" in str(e.value)
    with pytest.raises(TypeError, match="data set 1 of fit_many must be a dict"):
        MODEL.fit_many([DATA, None])
    with pytest.raises(FgError, match="backend must be a backend's name .* got None"):
        MODEL.fit(DATA, backend=None)
    with pytest.raises(FgError, match="load_posterior's path must be a path .* got int 3"):
        fglang.load_posterior(3)
