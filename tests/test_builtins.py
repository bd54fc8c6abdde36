"""The checker's table of built-ins (``fglang.compiler.builtins``) and their
JAX meaning (``fglang.compiler.lower_jax``) name the same functions."""

from fglang.compiler import builtins as B
from fglang.compiler.lower_jax import UNARY

# built-ins with their own rule in Evaluator.call rather than an entry in UNARY
_SPECIAL = {"leaky_relu", "atan2", "dot", "min", "max", "where", "logp", "eye"}


def test_every_builtin_has_a_jax_rule():
    assert set(UNARY) <= B.ALL
    assert B.ALL - set(UNARY) == _SPECIAL


def test_sd_and_variance_are_stans_sample_ones():
    """Stan's ``sd`` and ``variance`` divide by n - 1 (over every element)."""
    import jax
    import numpy as np
    import pytest

    import fglang

    model = fglang.compile("model m\ndata N: int\ndata x[N, 2]: real\nvar w: real ~ normal(0, 1)\n"
                         "factor f: potential w * sd(x) + variance(x)\n")
    x = np.array([[1.0, 2.5], [-0.3, 4.0], [7.0, 0.1]])
    data = {"N": 3, "x": x.tolist()}
    model.bind(data)
    with jax.enable_x64(True):
        lp = model.log_density({"w": np.float64(2.0)}, data)
    want = -0.5 * 2.0**2 - 0.5 * np.log(2 * np.pi) + 2.0 * np.std(x, ddof=1) + np.var(x, ddof=1)
    assert float(lp) == pytest.approx(want, rel=1e-12)
