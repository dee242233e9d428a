"""Per-repository storage bars: what each repository holds alone and what it shares."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from regframe.analysis.storage import USAGE_CHART_COLUMNS
from regframe.plot._style import (
    NEUTRAL,
    bytes_axis,
    check_top,
    despine,
    empty_note,
    lighten,
    new_axes,
    repo_color,
    require_columns,
    row_fontsize,
    row_height_inches,
    short_labels,
)
from regframe.units import format_bytes

SHARED_HATCH = "////"


def storage(usage: pd.DataFrame, *, top: int = 15, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """Horizontal stacked bars of exclusive vs shared bytes per repository, largest on top.

    ``usage`` is :func:`regframe.analysis.storage_usage` output; its ``attrs`` (``total_bytes``,
    ``dedup_ratio``) title the chart. Repositories beyond ``top`` are folded into one
    "other (N repositories)" bar so the chart stays legible on big registries. Extra keyword
    arguments go to both :meth:`Axes.barh` calls (exclusive and shared bars), e.g. ``height``,
    ``alpha``, ``color``.

    A frame without rows draws an empty chart saying there are no repositories. Raises ValueError
    when a column is missing (naming it) and for ``top`` other than a positive int.
    """
    require_columns(usage, USAGE_CHART_COLUMNS, "storage()")
    check_top(top, "storage()")
    rows = _fold(usage, top)
    ax = new_axes(ax, 9.5, row_height_inches(len(rows)))
    if rows.empty:
        return empty_note(ax, "No repositories")

    y = np.arange(len(rows))
    colors = [
        NEUTRAL if other else repo_color(name) for name, other in zip(rows["repository"], rows["other"], strict=True)
    ]
    exclusive = rows["exclusive_bytes"].to_numpy(float)
    shared = rows["shared_bytes"].to_numpy(float)
    ax.barh(y, exclusive, **{"color": colors, "height": 0.72, "label": "exclusive", **kwargs})
    shared_style: dict[str, Any] = {
        "left": exclusive,
        "color": [lighten(c) for c in colors],
        "edgecolor": colors,
        "linewidth": 0,
        "hatch": SHARED_HATCH,
        "height": 0.72,
        "label": "shared",
    }
    ax.barh(y, shared, **{**shared_style, **kwargs})

    fontsize = row_fontsize(ax, len(rows))
    ax.set_yticks(y, labels=rows["label"].tolist(), fontsize=fontsize)
    ax.set_ylim(len(rows) - 0.45, -0.55)
    ax.tick_params(axis="y", length=0)
    _annotate_totals(ax, y, exclusive + shared, fontsize)

    bytes_axis(ax.xaxis)
    ax.set_xlabel("stored bytes (decimal units)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    despine(ax)
    ax.set_title(_title(usage), loc="left")
    ax.legend(
        handles=_legend_handles(),
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        fontsize="small",
    )
    return ax


def _fold(usage: pd.DataFrame, top: int) -> pd.DataFrame:
    """Top repositories by stored bytes, plus one summed row for the rest."""
    frame = pd.DataFrame(
        {
            "repository": usage["repository"].astype(str).to_numpy(),
            "stored_bytes": pd.to_numeric(usage["stored_bytes"]).fillna(0).to_numpy(float),
            "exclusive_bytes": pd.to_numeric(usage["exclusive_bytes"]).fillna(0).to_numpy(float),
            "shared_bytes": pd.to_numeric(usage["shared_bytes"]).fillna(0).to_numpy(float),
        }
    ).sort_values(["stored_bytes", "repository"], ascending=[False, True], kind="stable")
    head, rest = frame.iloc[:top].copy(), frame.iloc[top:]
    head["other"] = False
    head["label"] = short_labels(head["repository"].tolist())
    if rest.empty:
        return head.reset_index(drop=True)
    noun = "repository" if len(rest) == 1 else "repositories"
    other = pd.DataFrame(
        {
            "repository": [f"other ({len(rest)} {noun})"],
            "stored_bytes": [rest["stored_bytes"].sum()],
            "exclusive_bytes": [rest["exclusive_bytes"].sum()],
            "shared_bytes": [rest["shared_bytes"].sum()],
            "other": [True],
        }
    )
    other["label"] = other["repository"]
    return pd.concat([head, other], ignore_index=True)


def _annotate_totals(ax: Axes, y: np.ndarray, totals: np.ndarray, fontsize: float) -> None:
    """Write each bar's stored total past its end; widen the axis so the text fits."""
    peak = float(totals.max()) if len(totals) else 0.0
    pad = peak * 0.01
    for yi, total in zip(y, totals, strict=True):
        ax.text(
            total + pad,
            yi,
            format_bytes(total),
            va="center",
            ha="left",
            fontsize=fontsize * 0.9,
            color="#333333",
        )
    ax.set_xlim(0, max(peak * 1.16, 1.0))


def _title(usage: pd.DataFrame) -> str:
    attrs = usage.attrs
    total = attrs.get("total_bytes")
    if total is None:
        return "Stored bytes per repository"
    ratio = attrs.get("dedup_ratio")
    logical = attrs.get("logical_bytes")
    if ratio is None and logical is not None and total:
        ratio = logical / total
    title = f"Registry total {format_bytes(total)} stored"
    return title if ratio is None else f"{title}, {float(ratio):.1f}x dedup"


def _legend_handles() -> list[Patch]:
    dark = "#5A5A5A"
    return [
        Patch(facecolor=dark, label="exclusive to the repository"),
        Patch(
            facecolor=lighten(dark),
            edgecolor=dark,
            hatch=SHARED_HATCH,
            linewidth=0,
            label="shared with others",
        ),
    ]
