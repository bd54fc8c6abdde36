"""Built-in functions and constants: their shape rules for the checker.

The JAX meaning of each lives in ``fglang.compiler.lower_jax``; the two
tables are kept in step by ``tests/test_builtins.py``.
"""

from __future__ import annotations

import math

CONSTANTS: dict[str, float] = {"inf": math.inf, "pi": math.pi}

# f(x) -> same shape, real
ELEMENTWISE = frozenset(
    "exp log log1p expm1 sqrt abs sin cos tan tanh sigmoid logit softplus relu lgamma wrap_angle "
    "square inv_logit floor ceil".split()
) | frozenset(  # Stan's math library (JAX in fglang.compiler.stanlib_jax)
    "log1m log1m_exp log1p_exp log_inv_logit log1m_inv_logit Phi Phi_approx inv_Phi erf erfc fabs inv inv_sqrt "
    "inv_square cbrt exp2 log2 log10 sinh cosh asin acos atan asinh acosh atanh digamma tgamma".split()
)
# f(x) -> scalar
REDUCING = frozenset("sum mean sd variance log_sum_exp norm".split()) | frozenset("prod dot_self".split())
# f(a, b) -> the broadcast shape, real (Stan's two-argument math functions)
BROADCAST = frozenset("pow fmin fmax hypot lbeta lchoose".split())
# linear algebra (shape rules in fglang.compiler.linalg)
LINALG = frozenset(
    "eye rep rep_vector rep_array diag diagonal cholesky solve log_determinant gp_exp_quad_cov".split()
) | frozenset(  # Stan's (JAX in fglang.compiler.stanlib_jax)
    "log_mix cumulative_sum squared_distance distance log_softmax quad_form diag_pre_multiply diag_post_multiply "
    "append_row append_col to_vector reverse tcrossprod crossprod mdivide_right".split()
)
# everything the checker knows by name (plus user fns and distributions)
ALL = ELEMENTWISE | REDUCING | BROADCAST | LINALG | frozenset(
    "leaky_relu atan2 log_diff_exp dot transpose min max where logp lcdf lccdf softmax".split()
)
