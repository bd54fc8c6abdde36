"""The checker's table of built-ins (``fglang.compiler.builtins``) and their
JAX meaning (``fglang.compiler.lower_jax``) name the same functions."""

from fglang.compiler import builtins as B
from fglang.compiler.lower_jax import UNARY

# built-ins with their own rule in Evaluator.call rather than an entry in UNARY
_SPECIAL = {"leaky_relu", "atan2", "log_diff_exp", "dot", "min", "max", "where", "logp", "lcdf", "lccdf", "eye",
            "rep", "rep_vector", "rep_array"}


def test_every_builtin_has_a_jax_rule():
    assert set(UNARY) <= B.ALL
    assert B.ALL - set(UNARY) == _SPECIAL
