"""Which repositories share layers, and how many bytes they have in common."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, MaxNLocator

from regframe.analysis import sharing_matrix
from regframe.plot._style import (
    compact_bytes,
    empty_note,
    new_axes,
    require_columns,
    row_fontsize,
    short_labels,
)

ANNOTATE_MAX = 15
CMAP = "Blues"


def shared_layers(
    layers: pd.DataFrame | None,
    top: int = 20,
    ax: Axes | None = None,
    matrix: pd.DataFrame | None = None,
) -> Axes:
    """Heatmap of bytes in common between repositories (diagonal: each one's stored bytes).

    The matrix comes from :func:`regframe.analysis.sharing_matrix`; pass ``matrix``
    (square, repositories on both axes) to reuse one already computed.
    The colour scale tops out at the largest off-diagonal value, so sharing stays visible next to
    the much larger diagonal; the colour bar's arrow marks that clipping.
    """
    if top < 1:
        raise ValueError(f"shared_layers() top must be at least 1, got {top}")
    if matrix is None:
        if layers is None:
            raise ValueError("shared_layers() needs either layers or matrix")
        require_columns(layers, ("repository", "layer_digest", "size"), "shared_layers()")
        matrix = sharing_matrix(layers, top=top)
        total_repos = _repository_count(layers)
    else:
        total_repos = len(matrix)
        matrix = _restrict(_check_square(matrix), top)
    n = len(matrix)
    side = 2.6 + (0.5 if n <= ANNOTATE_MAX else 0.38) * max(n, 1)
    ax = new_axes(ax, side + 1.4, side)
    if n == 0:
        return empty_note(ax, "No layers to compare")

    values = matrix.to_numpy(dtype=float)
    vmax = _colour_ceiling(values)
    image = ax.imshow(values, cmap=CMAP, vmin=0, vmax=vmax, interpolation="nearest")
    clipped = bool(np.diag(values).max() > vmax)
    bar = ax.get_figure().colorbar(image, ax=ax, extend="max" if clipped else "neither", shrink=0.8)
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


def _repository_count(layers: pd.DataFrame) -> int:
    return int(layers["repository"].dropna().astype(str).nunique())


def _check_square(matrix: pd.DataFrame) -> pd.DataFrame:
    if matrix.shape[0] != matrix.shape[1] or list(matrix.index) != list(matrix.columns):
        raise ValueError(
            "shared_layers() matrix must be square with the same repositories, in the same order, "
            f"on both axes; got shape {matrix.shape}"
        )
    return matrix


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
    cell_pt = ax.get_position().height * ax.get_figure().get_figheight() * 72 / n
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
