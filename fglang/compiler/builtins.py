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
)
# f(x) -> scalar
REDUCING = frozenset("sum mean sd variance log_sum_exp norm".split())
# linear algebra (shape rules in fglang.compiler.linalg)
LINALG = frozenset("eye rep rep_vector rep_array diag diagonal cholesky solve log_determinant gp_exp_quad_cov".split())
# everything the checker knows by name (plus user fns and distributions)
ALL = ELEMENTWISE | REDUCING | LINALG | frozenset(
    "leaky_relu atan2 log_diff_exp dot transpose min max where logp lcdf lccdf softmax".split()
)
