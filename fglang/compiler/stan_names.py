"""Stan's names for distributions, read as fglang's own (SPEC section 6).

A Stan user writes ``y ~ bernoulli_logit(eta)`` or ``poisson_log(eta)``
without thinking; fglang spells these as one distribution with a keyword
(``bernoulli(logit=eta)``) or a link in the argument. The parser rewrites
the Stan spelling into fglang's at the call, keeping every span, so the
checker, the IR and every backend see one distribution table and error
messages point at what the user wrote.
"""

from __future__ import annotations

from dataclasses import dataclass

from fglang.compiler import ast as A


@dataclass(frozen=True)
class StanName:
    """``target`` with Stan's positional arguments: ``keywords[i]`` names
    the i-th argument's keyword in fglang (None: positional), and an
    argument listed in ``exp_of`` is a log: fglang is given ``exp`` of it."""

    target: str
    keywords: tuple[str | None, ...]
    exp_of: tuple[int, ...] = ()
    meaning: str = ""


STAN_NAMES: dict[str, StanName] = {
    "bernoulli_logit": StanName("bernoulli", ("logit",), meaning="bernoulli(logit=eta)"),
    "binomial_logit": StanName("binomial", (None, "logit"), meaning="binomial(n, logit=eta)"),
    "categorical_logit": StanName("categorical", ("logits",), meaning="categorical(logits=beta)"),
    "poisson_log": StanName("poisson", (None,), (0,), meaning="poisson(exp(eta))"),
    "neg_binomial_2": StanName("neg_binomial", (None, None), meaning="neg_binomial(mu, phi)"),
    "neg_binomial_2_log": StanName("neg_binomial", (None, None), (0,), meaning="neg_binomial(exp(eta), phi)"),
    "double_exponential": StanName("laplace", (None, None), meaning="laplace(mu, b)"),
    "multi_normal": StanName("mvnormal", (None, "cov"), meaning="mvnormal(mu, cov=Sigma)"),
    "multi_normal_prec": StanName("mvnormal", (None, "prec"), meaning="mvnormal(mu, prec=Omega)"),
    "std_normal": StanName("normal", (), meaning="normal(0, 1)"),
}

# the matrix distributions (compiler/matrix_types.py); lkj_corr_cholesky, lkj_corr,
# wishart and inv_wishart are spelled as in Stan
STAN_NAMES["multi_normal_cholesky"] = StanName("mvnormal", (None, "chol"), meaning="mvnormal(mu, chol=L)")


# Stan's names for built-in functions fglang spells otherwise: the call is renamed
# (same arguments); name -> (fglang's built-in, how it reads)
STAN_FUNCTIONS: dict[str, tuple[str, str]] = {
    "binomial_coefficient_log": ("lchoose", "lchoose(n, k)"),
    "cholesky_decompose": ("cholesky", "cholesky(A)"),
    "cov_exp_quad": ("gp_exp_quad_cov", "gp_exp_quad_cov(x, alpha, rho)"),
    "diag_matrix": ("diag", "diag(v)"),
    "mdivide_left": ("solve", "solve(A, b)"),
    "mdivide_left_tri_low": ("solve", "solve(L, b)"),
    "mdivide_right_tri_low": ("mdivide_right", "mdivide_right(B, L)"),
}


def stan_meaning(name: str) -> str | None:
    """What a Stan name (a distribution's or a function's) reads as, or None."""
    if name in STAN_NAMES:
        return STAN_NAMES[name].meaning
    if name in STAN_FUNCTIONS:
        return STAN_FUNCTIONS[name][1]
    return None


def canonical_call(call: A.Call) -> A.Call:
    """The fglang spelling of a call to one of Stan's names (any other call
    unchanged). A call with keywords or another number of arguments is only
    renamed: the checker's arity message then names fglang's distribution
    (and ``STAN_NAMES``' ``meaning`` says how to write it)."""
    if call.func in STAN_FUNCTIONS:
        return A.Call(call.span, STAN_FUNCTIONS[call.func][0], call.func_span, call.args, call.kwargs)
    stan = STAN_NAMES.get(call.func)
    if stan is None:
        return call
    if call.kwargs or len(call.args) != len(stan.keywords):
        return A.Call(call.span, stan.target, call.func_span, call.args, call.kwargs)
    args: list[A.Expr] = []
    kwargs: list[A.Kwarg] = []
    for i, (a, kw) in enumerate(zip(call.args, stan.keywords)):
        if i in stan.exp_of:
            a = A.Call(a.span, "exp", a.span, (a,), ())
        if kw is None:
            args.append(a)
        else:
            kwargs.append(A.Kwarg(kw, a, a.span))
    if not stan.keywords:  # std_normal()
        args = [A.Num(call.span, 0, True), A.Num(call.span, 1, True)]
    return A.Call(call.span, stan.target, call.func_span, tuple(args), tuple(kwargs))
