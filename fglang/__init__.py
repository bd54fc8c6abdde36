"""fglang: a probabilistic programming language for factor graphs."""

from fglang.runtime.xla_options import configure as _configure_xla

_configure_xla()  # before anything starts a JAX backend


from fglang.api import Model, compile, load  # noqa: E402
from fglang.errors import FgError  # noqa: E402
from fglang.runtime.posterior import Posterior, load_posterior, register_plotter  # noqa: E402


def _plot(post, path, names):
    """``Posterior.plot``: the pictures sit above the runtime, so they are
    handed to it here, at the top, and imported only when a plot is asked for."""
    from fglang.viz.plot import plot_posterior

    return plot_posterior(post, path, names)


register_plotter(_plot)

from fglang.version import __version__  # noqa: E402

__all__ = ["FgError", "Model", "Posterior", "compile", "load", "load_posterior", "__version__"]
