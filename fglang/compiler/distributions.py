"""Signatures of every distribution a model may name (SPEC section 6).

The checker validates arity, keywords and argument domains against this
table; the backends map the canonical parameter names to their own
implementations. Keeping the table here (and not in a backend) means a
model is rejected or accepted the same way whichever backend runs it, and
``SPARSITY`` is the one description of the sparsity priors that GBP's
reweighting and the sampling backends' auxiliary sites both read.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Param:
    name: str
    domain: str = "real"  # real | positive | unit | nonneg | nonneg_int | simplex | any
    default: float | None = None


@dataclass(frozen=True)
class DistSig:
    name: str
    params: tuple[Param, ...]
    # Groups of keyword alternatives: exactly one member of each group is given
    # (``bernoulli(p=..)`` or ``bernoulli(logit=..)``). A positional argument in
    # the group's position means the group's first name.
    alternatives: tuple[tuple[Param, ...], ...] = ()
    # real | positive | unit | int | nonneg_int | bool | simplex | interval | corr_cholesky | corr_matrix | cov_matrix
    support: str = "real"
    event_ndim: int = 0
    discrete: bool = False
    sparsity: bool = False
    # How GBP runs it (SPEC section 7): "gaussian", "robust", "sparsity", or None.
    gbp: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params) + tuple(a.name for g in self.alternatives for a in g)


# Argument domains a constant (or a size) can break, and what each requires, as messages say it.
PARAM_DOMAINS: dict[str, str] = {
    "positive": "> 0",
    "unit": "in [0, 1]",
    "nonneg": ">= 0",
    "nonneg_int": "a whole number >= 0",
}


def outside(domain: str, v: float) -> bool:
    """Whether a known argument value breaks its ``PARAM_DOMAINS`` domain."""
    return (
        (domain == "positive" and not v > 0)
        or (domain == "unit" and not 0 <= v <= 1)
        or (domain in ("nonneg", "nonneg_int") and not v >= 0)
        or (domain == "nonneg_int" and not float(v).is_integer())
    )


def _p(*specs: str) -> tuple[Param, ...]:
    out = []
    for s in specs:
        name, _, dom = s.partition(":")
        out.append(Param(name, dom or "real"))
    return tuple(out)


DISTRIBUTIONS: dict[str, DistSig] = {
    d.name: d
    for d in [
        DistSig("normal", _p("mu", "sd:positive"), gbp="gaussian"),
        DistSig(
            "mvnormal",
            _p("mu"),
            alternatives=((Param("cov", "any"), Param("prec", "any"), Param("chol", "any")),),
            event_ndim=1,
            gbp="gaussian",
        ),
        DistSig("student_t", _p("df:positive", "mu", "sd:positive"), gbp="robust"),
        DistSig("cauchy", _p("mu", "sd:positive")),
        DistSig("laplace", _p("mu", "b:positive"), gbp="sparsity"),
        DistSig("half_normal", _p("sd:positive"), support="positive"),
        DistSig("half_cauchy", _p("sd:positive"), support="positive"),
        DistSig("exponential", _p("rate:positive"), support="positive"),
        DistSig("gamma", _p("shape:positive", "rate:positive"), support="positive"),
        DistSig("inv_gamma", _p("shape:positive", "scale:positive"), support="positive"),
        DistSig("lognormal", _p("mu", "sd:positive"), support="positive"),
        DistSig("beta", _p("a:positive", "b:positive"), support="unit"),
        DistSig("uniform", _p("lo", "hi"), support="interval"),
        DistSig("dirichlet", _p("alpha:positive"), support="simplex", event_ndim=1),
        DistSig(
            "bernoulli",
            (),
            alternatives=((Param("p", "unit"), Param("logit", "real")),),
            support="bool",
            discrete=True,
        ),
        DistSig(
            "binomial",
            _p("n:nonneg_int"),
            alternatives=((Param("p", "unit"), Param("logit", "real")),),
            support="nonneg_int",
            discrete=True,
        ),
        DistSig("poisson", _p("rate:positive"), support="nonneg_int", discrete=True),
        DistSig("neg_binomial", _p("mu:positive", "phi:positive"), support="nonneg_int", discrete=True),
        DistSig(
            "categorical",
            (),
            alternatives=((Param("logits", "real"), Param("p", "simplex")),),
            support="nonneg_int",
            discrete=True,
            event_ndim=0,
        ),
        DistSig("ordered_logistic", _p("eta", "cutpoints"), support="nonneg_int", discrete=True),
        DistSig("huber", _p("mu", "sd:positive", "delta:positive"), gbp="robust"),
        # Stan's further scalar distributions, in Stan's parametrizations (runtime/stan_distributions.py)
        DistSig("beta_binomial", _p("n:nonneg_int", "a:positive", "b:positive"), support="nonneg_int", discrete=True),
        DistSig("chi_square", _p("nu:positive"), support="positive"),
        DistSig("exp_mod_normal", _p("mu", "sigma:positive", "lambda:positive")),
        DistSig("frechet", _p("alpha:positive", "sigma:positive"), support="positive"),
        DistSig("gumbel", _p("mu", "beta:positive")),
        DistSig("inv_chi_square", _p("nu:positive"), support="positive"),
        DistSig("logistic", _p("mu", "sigma:positive")),
        DistSig("pareto", _p("y_min:positive", "alpha:positive"), support="positive"),
        DistSig("rayleigh", _p("sigma:positive"), support="positive"),
        DistSig("scaled_inv_chi_square", _p("nu:positive", "s:positive"), support="positive"),
        DistSig("skew_normal", _p("xi", "omega:positive", "alpha")),
        DistSig("von_mises", _p("mu", "kappa:positive")),
        DistSig("weibull", _p("alpha:positive", "sigma:positive"), support="positive"),
        # sparsity priors (SPEC section 6); `~ PRIOR` on vars or in factors
        DistSig("horseshoe", _p("scale:positive"), sparsity=True, gbp="sparsity"),
        DistSig(
            "reg_horseshoe",
            _p("scale:positive", "slab_scale:positive", "slab_df:positive"),
            sparsity=True,
            gbp="sparsity",
        ),
        DistSig("spike_slab", _p("p:unit", "slab_sd:positive", "spike_sd:positive"), sparsity=True, gbp="sparsity"),
        DistSig(
            "ard",
            (Param("a", "positive", 1e-3), Param("b", "positive", 1e-3)),
            sparsity=True,
            gbp="sparsity",
        ),
    ]
}

# Distributions on matrices (Stan's correlated hierarchical models): the LKJ
# priors on a correlation matrix or its Cholesky factor, whose size K the
# left side gives (NumPyro's LKJ takes it as `dimension`: see
# runtime/numpyro_distributions.distribution's `value_shape`), and the
# Wishart family on covariance matrices. event_ndim 2: one [K, K] matrix is one event.
DISTRIBUTIONS.update({
    d.name: d
    for d in [
        DistSig("lkj_corr_cholesky", _p("eta:positive"), support="corr_cholesky", event_ndim=2),
        DistSig("lkj_corr", _p("eta:positive"), support="corr_matrix", event_ndim=2),
        DistSig("wishart", (Param("nu", "positive"), Param("S", "any")), support="cov_matrix", event_ndim=2),
        DistSig("inv_wishart", (Param("nu", "positive"), Param("S", "any")), support="cov_matrix", event_ndim=2),
    ]
})

#: parameters that are one matrix per event ([..., d, d]): they do not broadcast
#: element by element against the left side (the checker's and the lowering's shape rules)
MATRIX_PARAMS: frozenset[str] = frozenset({"cov", "prec", "chol", "S"})

# Which var domains a distribution's support may serve as a prior for without
# leaving the var's support: a narrower var is fine (Stan's implicit truncation,
# `var s: positive ~ normal(0, 1)`), a wider one is not.
SUPPORT_ALLOWS: dict[str, frozenset[str]] = {
    "real": frozenset({"real", "positive", "unit", "interval", "ordered", "positive_ordered", "bounded", "affine"}),
    "positive": frozenset({"positive", "unit", "positive_ordered"}),
    "unit": frozenset({"unit"}),
    "interval": frozenset({"real", "positive", "unit", "interval", "ordered", "positive_ordered", "bounded", "affine"}),
    "simplex": frozenset({"simplex"}),
    "int": frozenset({"int", "bool"}),
    "nonneg_int": frozenset({"int", "bool"}),
    "bool": frozenset({"bool", "int"}),
    # the matrix types (compiler/matrix_types.py): a prior on one is on that type exactly
    "corr_cholesky": frozenset({"cholesky_factor_corr"}),
    "corr_matrix": frozenset({"corr_matrix"}),
    "cov_matrix": frozenset({"cov_matrix"}),
}


@dataclass(frozen=True)
class SparsityPrior:
    """How the backends run one sparsity prior (SPEC sections 3 and 6).

    ``scales`` are the arguments GBP's reweighting reads, in the order its
    engine takes them (the center, laplace's ``mu``, is not one: GBP reads
    it from the residual). ``defaults`` are what a direct caller of the
    sampling backend may omit: the signature's defaults, and a center of 0
    (the prior shrinks toward zero). ``aux`` are the suffixes of the
    auxiliary sites a sampling backend creates (``w__z``, ...); a prior with
    none has a closed-form density, so it may also be used in factors.
    """

    name: str
    params: tuple[str, ...]
    scales: tuple[str, ...]
    defaults: dict[str, float] = field(default_factory=dict)
    aux: tuple[str, ...] = ()

    @property
    def hierarchical(self) -> bool:
        return bool(self.aux)


def _sparsity(name: str, aux: tuple[str, ...] = (), center: str | None = None) -> SparsityPrior:
    sig = DISTRIBUTIONS[name]
    defaults = {p.name: p.default for p in sig.params if p.default is not None}
    if center is not None:
        defaults[center] = 0.0
    return SparsityPrior(name, sig.names, tuple(p for p in sig.names if p != center), defaults, aux)


SPARSITY: dict[str, SparsityPrior] = {
    p.name: p
    for p in [
        _sparsity("laplace", center="mu"),
        _sparsity("horseshoe", ("__z", "__local", "__global")),
        _sparsity("reg_horseshoe", ("__z", "__local", "__global", "__caux")),
        _sparsity("spike_slab"),
        _sparsity("ard", ("__z", "__precision")),
    ]
}
assert set(SPARSITY) == {n for n, d in DISTRIBUTIONS.items() if d.gbp == "sparsity"}

#: Every suffix an auxiliary site can have, so that summaries can hide them.
AUX_SUFFIXES: tuple[str, ...] = tuple(dict.fromkeys(s for p in SPARSITY.values() for s in p.aux))


# Distributions whose CDF lcdf()/lccdf() take (NumPyro's ``cdf``), and the
# parameters that must read no var there: JAX has no derivative of the
# incomplete beta function in its shape arguments, so a gradient through
# student_t's df, beta's a and b or neg_binomial's phi would fail mid-fit.
CDF: frozenset[str] = frozenset(
    "normal student_t cauchy laplace half_normal half_cauchy exponential gamma inv_gamma lognormal beta uniform "
    "poisson neg_binomial".split()
) | frozenset(  # Stan's further ones (runtime/stan_distributions.py)
    "chi_square exp_mod_normal frechet gumbel inv_chi_square logistic pareto rayleigh scaled_inv_chi_square "
    "weibull".split()
)
CDF_CONSTANT_PARAMS: dict[str, tuple[str, ...]] = {
    "student_t": ("df",), "beta": ("a", "b"), "neg_binomial": ("phi",),
}
