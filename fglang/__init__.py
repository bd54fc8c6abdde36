"""fglang: a probabilistic programming language for factor graphs."""

from fglang.api import Model, compile, load
from fglang.errors import FgError

__version__ = "0.1.0"
__all__ = ["FgError", "Model", "compile", "load", "__version__"]
