"""Pictures: the factor graph of a model (Graphviz) and posterior plots (matplotlib).

Both need optional packages (``pip install 'fglang[plot]'``) and, for
rendering the graph to SVG/PNG, Graphviz's ``dot`` program; they are
imported only when a picture is asked for.
"""

from __future__ import annotations

from fglang.viz.graph import GRAPH_FORMATS, factor_graph, render
from fglang.viz.plot import PLOT_FORMATS, plot_posterior

__all__ = ["GRAPH_FORMATS", "PLOT_FORMATS", "factor_graph", "plot_posterior", "render"]
