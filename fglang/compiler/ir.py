"""The IR: the one seam between the compiler and the backends.

A model is a set of typed ``Variable``s (node shape x value shape) and
``FactorFamily``s. A family is one vectorized function over index arrays:
its expressions refer to vars only through ``SlotRef``s, and each slot says
how a member picks its nodes (``SlotPattern``), so that binding data can
turn every slot into one gather (or strided slice) for the whole family.
Priors written ``var x ~ PRIOR`` are ordinary families with ``prior_of`` set.

The IR is data-independent and stands alone: it holds the data
declarations and the shape rules that only the data's sizes decide
(``size_checks``), so ``fglang.compiler.bind`` adds the data without going
back to the checker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fglang.compiler import ast as A
from fglang.compiler.distributions import DistSig
from fglang.compiler.expr import walk
from fglang.compiler.sizes import SizeCheck
from fglang.compiler.types import Domain, Shape


@dataclass(frozen=True)
class DataInfo:
    name: str
    dims: tuple[A.Expr, ...]  # node-style brackets after the name
    value_shape: tuple[A.Expr, ...]  # the TYPE's shape
    dtype: str  # int | real | bool
    domain: Domain
    default: A.Expr | None
    span: A.Span
    batch: bool = False  # the size `fit --batch-size` splits along
    # bounds that are arithmetic on scalar data declared before (int(upper=K)):
    # keyword -> expression, evaluated when the data are validated
    bounds: tuple[tuple[str, A.Expr], ...] = ()

    @property
    def shape_exprs(self) -> tuple[A.Expr, ...]:
        return self.dims + self.value_shape



@dataclass(frozen=True)
class SlotRef(A.Expr):
    """Stands for the value of slot ``slot`` of the enclosing family: for one
    member, an array of shape reduction axes + sliced node axes + value shape."""

    slot: int = 0


@dataclass(frozen=True)
class SlotPattern:
    """How each member of a family picks the nodes of one var.

    ``node_index`` has one entry per node dimension of the var: an int scalar
    expression of the family's (and enclosing reductions') indices and int
    data, or an ``A.Slice`` (``None`` ends mean the full dimension). A member
    touches a block of nodes: the enclosing reduction axes listed in
    ``reductions`` (those whose index the pattern uses), then the sliced axes.
    """

    var: str
    node_index: tuple[A.Expr, ...]
    reductions: tuple[str, ...]
    span: A.Span = field(compare=False, repr=False)
    # (the let's symbolic shape, the let as written) where the index is a let's ``m[i]`` pushed
    # into its value: binding checks it against the let, and names the let (indices.py `bind_slot`)
    within: tuple | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Variable:
    name: str
    node_dims: tuple[A.Expr, ...]
    value_shape: tuple[A.Expr, ...]
    domain: Domain
    prior: str | None  # name of the family that is its prior, if any
    span: A.Span = field(compare=False, repr=False)
    # the keywords (lower, upper, offset, multiplier) whose value is an expression
    # of vars, data or lets: ModelIR.bounds[bound_name(name, keyword)]
    bounds: tuple[str, ...] = ()


@dataclass(frozen=True)
class Derived:
    """A top-level ``let``: reported with the posterior; its slots are whole vars.
    ``shape`` is symbolic; binding makes it concrete (``sizes.shape_value``).

    Every let's ``slots`` are the same tuple, the slots of all lets: their
    expressions share nodes (a let used by another is one subexpression of
    both, compiler/dag.py), so all of them can be evaluated in one pass
    (``BoundModel.evaluate_lets``). ``reads``: the slots this let reads (none:
    a let of data only); None means all of them."""

    name: str
    expr: A.Expr
    slots: tuple[SlotPattern, ...]
    span: A.Span = field(compare=False, repr=False)
    shape: Shape = ()
    reads: tuple[int, ...] | None = None

    @property
    def read_slots(self) -> tuple[SlotPattern, ...]:
        return self.slots if self.reads is None else tuple(self.slots[i] for i in self.reads)


@dataclass(frozen=True)
class FactorFamily:
    name: str
    span: A.Span = field(compare=False, repr=False)
    ranges: tuple[A.IndexRange, ...] = ()
    kind: str = "sample"  # sample | potential
    dist: DistSig | None = None
    lhs: A.Expr | None = None
    args: tuple[tuple[str, A.Expr], ...] = ()
    potential: A.Expr | None = None
    slots: tuple[SlotPattern, ...] = ()
    prior_of: str | None = None
    # source spans to name in backend errors: the distribution call and each argument
    dist_span: A.Span | None = field(default=None, compare=False, repr=False)
    arg_spans: tuple[tuple[str, A.Span], ...] = field(default=(), compare=False, repr=False)
    # An unindexed factor whose elements touch disjoint nodes, as the equivalent
    # indexed family (SPEC section 4): what GBP runs. Same density; VI and MCMC
    # keep the unindexed form.
    members: FactorFamily | None = field(default=None, compare=False, repr=False)

    @property
    def arg_map(self) -> dict[str, A.Expr]:
        return dict(self.args)

    def arg_uses_vars(self, name: str) -> bool:
        return any(isinstance(x, SlotRef) for x in walk(self.arg_map[name]))

    @property
    def lhs_uses_vars(self) -> bool:
        return self.lhs is not None and any(isinstance(x, SlotRef) for x in walk(self.lhs))


@dataclass(frozen=True)
class ModelIR:
    name: str
    file: str
    sources: dict[str, str] = field(repr=False)
    data: dict[str, DataInfo]
    variables: dict[str, Variable]
    derived: dict[str, Derived]
    families: dict[str, FactorFamily]
    size_checks: tuple[SizeCheck, ...] = field(default=(), repr=False, compare=False)
    # a var's bounds that are expressions (compiler/var_bounds.py), as lets of one
    # shared slot list: evaluated per draw before the var is sampled
    bounds: dict[str, Derived] = field(default_factory=dict)


def bound_name(var: str, keyword: str) -> str:
    """The key of a var's non-constant bound in ``ModelIR.bounds``."""
    return f"{var}__{keyword}"

