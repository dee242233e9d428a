"""Charts of registry DataFrames (matplotlib only, no network).

Every chart takes the frame it draws and an optional ``ax``; without one it makes a figure sized
to the data. It returns the Axes so callers can adjust or save it.
"""

from regframe.plot._style import format_bytes, repo_color, shorten
from regframe.plot.sharing import shared_layers
from regframe.plot.sizes import layer_sizes
from regframe.plot.stale import stale_tags
from regframe.plot.usage import storage

__all__ = [
    "format_bytes",
    "layer_sizes",
    "repo_color",
    "shared_layers",
    "shorten",
    "stale_tags",
    "storage",
]
