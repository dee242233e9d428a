"""Charts of registry DataFrames (matplotlib only, no network).

Every chart takes the frame it draws first and everything else by keyword: ``storage(usage)`` and
``stale_tags(stale)`` draw :mod:`regframe.analysis` output (``storage_usage``, ``stale_tags``),
``sharing_heatmap(matrix)`` draws ``sharing_matrix`` output, ``layer_sizes(layers)`` reads the
layers frame it describes, ``supply_chain(summary)`` draws ``analysis.supply_chain`` output, and
``growth(history)`` draws ``regframe.history.load`` output. ``ax=``
draws into an existing Axes; without one a figure sized to the data is made. Extra keyword arguments
go to the matplotlib call that draws the data (each docstring names it). Every chart returns the Axes
so callers can adjust or save it; an empty frame gives a chart with a note saying so, and a wrong
frame raises ValueError naming what is missing.
"""

from regframe.plot._style import repo_color, shorten
from regframe.plot.growth import growth
from regframe.plot.heatmap import sharing_heatmap
from regframe.plot.sizes import layer_sizes
from regframe.plot.supply_chain import supply_chain
from regframe.plot.tag_ages import stale_tags
from regframe.plot.usage import storage
from regframe.units import format_bytes

__all__ = [
    "format_bytes",
    "growth",
    "layer_sizes",
    "repo_color",
    "sharing_heatmap",
    "shorten",
    "stale_tags",
    "storage",
    "supply_chain",
]
