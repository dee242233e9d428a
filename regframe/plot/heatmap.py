"""Heatmap of the sharing matrix: how many bytes each pair of repositories has in common."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, MaxNLocator

from regframe.plot._style import (
    check_top,
    compact_bytes,
    empty_note,
    figure_of,
    new_axes,
    row_fontsize,
    short_labels,
)

ANNOTATE_MAX = 15
CMAP = "Blues"


def sharing_heatmap(matrix: pd.DataFrame, *, top: int = 20, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """Heatmap of bytes in common between repositories (diagonal: each one's stored bytes).

    ``matrix`` is :func:`regframe.analysis.sharing_matrix` output: square, the same repositories in
    the same order on both axes. Only the ``top`` repositories with the most stored bytes are drawn;
    the title says how many there were in all (``matrix.attrs["total_repositories"]`` when the matrix
    was already cut down, else its size). Extra keyword arguments go to :meth:`Axes.imshow`
    (``cmap``, ``vmax``, ``norm``, ...). The colour scale tops out at the largest off-diagonal value,
    so sharing stays visible next to the much larger diagonal; the colour bar's arrow marks that
    clipping.

    An empty matrix draws a chart saying there are no layers to compare. Raises ValueError for
    anything but a square DataFrame (a layers frame gets a hint to compute the matrix first) and
    for ``top`` other than a positive int.
    """
    check_top(top, "sharing_heatmap()")
    total_repos = max(_total_repositories(_check_square(matrix)), len(matrix))
    matrix = _restrict(matrix, top)
    n = len(matrix)
    side = 2.6 + (0.5 if n <= ANNOTATE_MAX else 0.38) * max(n, 1)
    ax = new_axes(ax, side + 1.4, side)
    if n == 0:
        return empty_note(ax, "No layers to compare")

    values = matrix.to_numpy(dtype=float)
    style: dict[str, Any] = {"cmap": CMAP, "interpolation": "nearest"}
    if "norm" not in kwargs:
        style.update(vmin=0, vmax=_colour_ceiling(values))
    image = ax.imshow(values, **{**style, **kwargs})
    vmax = max(float(image.get_clim()[1]), 1.0)
    clipped = bool(np.diag(values).max() > vmax)
    bar = ax.figure.colorbar(image, ax=ax, extend="max" if clipped else "neither", shrink=0.8)
    bar.ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10]))
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: compact_bytes(v)))
    bar.set_label("bytes in common" + (" (diagonal = stored, off scale)" if clipped else ""))

    labels = short_labels([str(r) for r in matrix.index])
    fontsize = row_fontsize(ax, n)
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels=labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=fontsize)
    ax.set_yticks(ticks, labels=labels, fontsize=fontsize)
    ax.set_xticks(ticks[:-1] + 0.5, minor=True)
    ax.set_yticks(ticks[:-1] + 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1.0)
    ax.tick_params(which="both", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if n <= ANNOTATE_MAX:
        _annotate(ax, values, vmax)

    title = "Bytes in common between repositories"
    if total_repos > n:
        title += f"\n(largest {n} of {total_repos} by stored bytes)"
    ax.set_title(title, loc="left")
    return ax


def _check_square(matrix: object) -> pd.DataFrame:
    if not isinstance(matrix, pd.DataFrame):
        raise ValueError(
            f"sharing_heatmap() needs the DataFrame regframe.analysis.sharing_matrix() returns, "
            f"got {type(matrix).__name__}"
        )
    if "layer_digest" in matrix.columns:
        raise ValueError(
            "sharing_heatmap() draws a sharing matrix, not a layers frame: pass "
            "regframe.analysis.sharing_matrix(layers) (or use layers.registry.plot_sharing_heatmap())"
        )
    if matrix.shape[0] != matrix.shape[1] or list(matrix.index) != list(matrix.columns):
        raise ValueError(
            "sharing_heatmap() matrix must be square with the same repositories, in the same order, "
            f"on both axes; got shape {matrix.shape}"
        )
    return matrix


def _total_repositories(matrix: pd.DataFrame) -> int:
    total = matrix.attrs.get("total_repositories")
    return int(total) if isinstance(total, (int, np.integer)) and not isinstance(total, bool) else 0


def _restrict(matrix: pd.DataFrame, top: int) -> pd.DataFrame:
    """Keep the ``top`` repositories with the most stored bytes (the diagonal)."""
    if len(matrix) <= top:
        return matrix
    diagonal = pd.Series(np.diag(matrix.to_numpy(dtype=float)), index=matrix.index)
    keep = diagonal.sort_values(ascending=False, kind="stable").index[:top]
    return matrix.loc[keep, keep]


def _colour_ceiling(values: np.ndarray) -> float:
    """Largest off-diagonal value, or the largest value when nothing is shared."""
    off = values[~np.eye(len(values), dtype=bool)]
    ceiling = float(off.max()) if off.size and off.max() > 0 else float(values.max())
    return max(ceiling, 1.0)


def _annotate(ax: Axes, values: np.ndarray, vmax: float) -> None:
    """Write each non-zero cell in compact human bytes, light on dark cells and dark on light ones."""
    n = len(values)
    cell_pt = ax.get_position().height * figure_of(ax).get_figheight() * 72 / n
    fontsize = float(np.clip(cell_pt / 4.2, 5.0, 9.0))
    for i in range(n):
        for j in range(n):
            value = values[i, j]
            if value <= 0:
                continue
            dark = min(value, vmax) / vmax > 0.55
            ax.text(
                j,
                i,
                compact_bytes(value),
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if dark else "#1A1A1A",
            )
