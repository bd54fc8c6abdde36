"""fglang: a probabilistic programming language for factor graphs."""

from fglang.runtime.xla_options import configure as _configure_xla

_configure_xla()  # before anything starts a JAX backend


from fglang.api import Model, compile, load  # noqa: E402
from fglang.errors import FgError  # noqa: E402
from fglang.runtime.posterior import Posterior, load_posterior  # noqa: E402

__version__ = "0.1.0"
__all__ = ["FgError", "Model", "Posterior", "compile", "load", "load_posterior", "__version__"]
