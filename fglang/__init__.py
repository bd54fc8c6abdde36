"""fglang: a probabilistic programming language for factor graphs."""

from fglang.api import Model, compile, load
from fglang.errors import FgError
from fglang.runtime.posterior import Posterior, load_posterior

__version__ = "0.1.0"
__all__ = ["FgError", "Model", "Posterior", "compile", "load", "load_posterior", "__version__"]
