"""Value types, domains and symbolic shapes used by the checker.

Shapes are checked twice with the same rules: symbolically when a model is
compiled (a dim is an ``int`` or a ``Sym``, a size expression such as
``T-1``), and concretely when data are bound (every dim an ``int``).
Symbolic dims that differ in text are not an error until the data say so,
because ``N`` and ``M`` may well be equal; the checker leaves such a rule to
binding as a ``fglang.compiler.sizes.SizeCheck``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sym:
    """A dim fixed only by the data. ``text`` is what messages show and what
    two dims are compared by; ``value`` says how binding computes it: a size
    expression, ``("bcast", x, y)`` for a broadcast of two dims, ``("sub", hi,
    lo)`` for a slice length, or None where no data fix it (``y[0:t]``)."""

    text: str
    value: object = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return self.text


Dim = int | Sym
Shape = tuple[Dim, ...]


@dataclass(frozen=True)
class Domain:
    """The support of a var or the declared range of data.

    kind is one of real, positive, unit, interval, int, bool, simplex, ordered,
    positive_ordered, bounded or affine, one of the matrix types (``MATRIX_KINDS``),
    or a Lie group. ``bounded`` is a real var with a ``lower=``/``upper=``
    that is an expression of vars, data or lets (``real(lower=a)``): the
    expression lives in the IR (``ModelIR.bounds``) and is evaluated per draw;
    a constant side stays in ``lower``/``upper``. ``affine`` is Stan's
    ``offset=``/``multiplier=`` (a real var sampled as ``offset + multiplier *
    z``). ``written`` holds those keywords as the source wrote them, for
    messages.
    """

    kind: str
    lower: float | None = None
    upper: float | None = None
    written: tuple[tuple[str, str], ...] = ()

    @property
    def continuous(self) -> bool:
        return self.kind not in ("int", "bool")

    def describe(self) -> str:
        if self.kind == "interval":
            parts = []
            if self.lower is not None:
                parts.append(f"lower={self.lower:g}")
            if self.upper is not None:
                parts.append(f"upper={self.upper:g}")
            return f"real({', '.join(parts)})"
        if self.kind in ("bounded", "affine"):
            texts = dict(self.written)
            for side, value in (("lower", self.lower), ("upper", self.upper)):
                if value is not None and side not in texts:
                    texts[side] = f"{value:g}"
            order = ("lower", "upper", "offset", "multiplier")
            return "real(" + ", ".join(f"{k}={texts[k]}" for k in order if k in texts) + ")"
        return self.kind

    @property
    def dynamic(self) -> tuple[str, ...]:
        """The keywords whose value is an expression evaluated per draw (``bounded``, ``affine``)."""
        return tuple(k for k, _ in self.written)


BASE_TYPES = ("real", "positive", "unit", "int", "bool", "simplex", "ordered", "positive_ordered",
              "cholesky_factor_corr", "corr_matrix", "cov_matrix", "cholesky_factor_cov")

#: the types whose one size K is the side of a [K, K] value (``compiler/matrix_types.py``)
MATRIX_KINDS = ("cholesky_factor_corr", "corr_matrix", "cov_matrix", "cholesky_factor_cov")

#: the types that take exactly one size
SIZED_KINDS = ("simplex", "ordered", "positive_ordered") + MATRIX_KINDS


def make_domain(base: str, lower: float | None, upper: float | None) -> Domain:
    """Normalize bounds so that ``real(lower=0)`` and ``positive`` are one domain."""
    if base == "positive":
        lower = 0.0 if lower is None else max(lower, 0.0)
        base = "real"
    if base == "unit":
        lower = 0.0 if lower is None else lower
        upper = 1.0 if upper is None else upper
        base = "real"
    if base == "real":
        if lower is None and upper is None:
            return Domain("real")
        if lower == 0 and upper is None:
            return Domain("positive", 0.0, None)
        if lower == 0 and upper == 1:
            return Domain("unit", 0.0, 1.0)
        return Domain("interval", lower, upper)
    return Domain(base, lower, upper)


@dataclass(frozen=True)
class T:
    """The checker's type of an expression: element kind, shape, and whether
    its value depends on vars (needed for scale and discreteness rules)."""

    dtype: str  # int | real | bool | error
    shape: Shape = ()
    var: bool = False

    @property
    def ok(self) -> bool:
        return self.dtype != "error"

    @property
    def scalar(self) -> bool:
        return self.shape == ()


ERROR = T("error")


def show_shape(shape: Shape) -> str:
    return "scalar" if not shape else "[" + ", ".join(str(d) for d in shape) + "]"


class ShapeError(Exception):
    pass


def broadcast(a: Shape, b: Shape) -> Shape:
    """NumPy broadcasting over possibly-symbolic dims; raises ShapeError only for
    a definite mismatch."""
    out: list[Dim] = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        elif isinstance(x, int) and isinstance(y, int):
            raise ShapeError(f"shapes {show_shape(a)} and {show_shape(b)} do not broadcast")
        else:
            out.append(Sym((x if isinstance(x, Sym) else y).text, ("bcast", x, y)))
    return tuple(reversed(out))


def undecided(a: Shape, b: Shape) -> bool:
    """Whether broadcasting ``a`` with ``b`` depends on sizes not yet known."""
    for i in range(1, min(len(a), len(b)) + 1):
        x, y = a[-i], b[-i]
        if x != y and x != 1 and y != 1 and (isinstance(x, Sym) or isinstance(y, Sym)):
            return True
    return False


def dims_differ(x: Dim, y: Dim) -> bool:
    return isinstance(x, int) and isinstance(y, int) and x != y


def matmul_shape(a: Shape, b: Shape) -> Shape:
    if len(a) == 0 or len(b) == 0 or len(a) > 2 or len(b) > 2:
        raise ShapeError(f"'@' needs vectors or matrices, got {show_shape(a)} @ {show_shape(b)}")
    inner_a = a[-1]
    inner_b = b[0]
    if dims_differ(inner_a, inner_b):
        raise ShapeError(f"'@' inner dimensions differ: {show_shape(a)} @ {show_shape(b)}")
    return tuple(a[:-1]) + tuple(b[1:])
