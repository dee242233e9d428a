"""Distribution of distinct layer sizes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from regframe.plot._style import (
    PALETTE,
    compact_bytes,
    despine,
    empty_note,
    marker_line,
    new_axes,
    require_columns,
)
from regframe.units import format_bytes


def layer_sizes(layers: pd.DataFrame, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """Histogram of distinct layer sizes on log-spaced bins, with the median marked.

    ``layers`` is the crawl's layers frame (``Inventory.layers``): the distribution is read from it
    directly. Each layer digest counts once however many images use it, so the chart describes what
    the registry stores. Layer sizes span bytes to gigabytes, hence the logarithmic axis. Extra
    keyword arguments go to :meth:`Axes.hist`, e.g. ``color``, ``bins``.

    A frame without a layer of known size draws an empty chart that says so. Raises ValueError when
    ``layer_digest`` or ``size`` is missing.
    """
    require_columns(layers, ("layer_digest", "size"), "layer_sizes()")
    sizes = _distinct_sizes(layers)
    ax = new_axes(ax, 7.5, 4.2)
    if sizes.size == 0:
        return empty_note(ax, "No layers with a known size")

    # Empty layers (0 bytes) cannot sit on a log axis; they are counted in the lowest bin.
    placed = np.maximum(sizes, 1.0)
    style: dict[str, Any] = {"bins": _log_bins(placed), "color": PALETTE[0], "edgecolor": "white", "linewidth": 0.6}
    _counts, edges, _patches = ax.hist(placed, **{**style, **kwargs})
    ax.set_xscale("log")
    ax.set_xlim(edges[0], edges[-1])
    narrow = edges[-1] / edges[0] < 1000
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if narrow else (1.0,)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: compact_bytes(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))

    _mark_median(ax, float(np.median(sizes)))
    ax.set_xlabel("compressed layer size (log scale, decimal units)")
    ax.set_ylabel("distinct layers")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    despine(ax)
    ax.set_title(f"Layer sizes: {sizes.size} distinct layers, {format_bytes(sizes.sum())} in total", loc="left", pad=16)
    return ax


def _mark_median(ax: Axes, median: float) -> None:
    label = f"median {format_bytes(median)}"
    marker_line(ax, max(median, 1.0), label, gid="median", legend=label)


def _distinct_sizes(layers: pd.DataFrame) -> np.ndarray:
    if "role" in layers:
        layers = layers[layers["role"].astype(object) != "config"]
    distinct = layers[["layer_digest", "size"]].dropna().drop_duplicates("layer_digest")
    return pd.to_numeric(distinct["size"]).to_numpy(float)


def _log_bins(sizes: np.ndarray) -> np.ndarray:
    """About six bins per decade, between 8 and 40 in all; a single size gets a visible bar."""
    low, high = float(sizes.min()), float(sizes.max())
    if high / low < 1.5:
        low, high = low / 1.5, high * 1.5
    count = int(np.clip(np.ceil(np.log10(high / low) * 6), 8, 40))
    return np.geomspace(low, high, count + 1)
