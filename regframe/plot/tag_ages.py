"""Tag ages per repository against the staleness threshold."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

from regframe.analysis import reclaimable_bytes
from regframe.analysis._frames import bool_mask
from regframe.plot._style import (
    NEUTRAL,
    WARNING,
    check_top,
    despine,
    empty_note,
    marker_line,
    new_axes,
    require_columns,
    row_fontsize,
    row_height_inches,
    short_labels,
)
from regframe.units import format_bytes

_COLUMNS = ("repository", "tag", "age", "stale")
_DAY_SECONDS = 86_400.0
# Beyond this spread a linear axis squashes real tags against zero (fake 1970 build dates).
_LOG_SPREAD = 20.0


def stale_tags(
    stale: pd.DataFrame,
    *,
    layers: pd.DataFrame | None = None,
    top: int = 30,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """Strip of tag ages (days) per repository; stale tags in a warning colour.

    ``stale`` is :func:`regframe.analysis.stale_tags` output; its ``attrs["older_than"]`` draws the
    threshold line. Given the ``layers`` frame the tags come from, the title adds the bytes deleting
    the stale tags would reclaim (:func:`regframe.analysis.reclaimable_bytes`); without it, a
    ``stale.attrs["reclaimable_bytes"]`` set by the caller is shown. Repositories are ordered by
    number of stale tags; those beyond ``top`` share one "other" row, so every tag still gets its
    dot. Extra keyword arguments go to both :meth:`Axes.scatter` calls (kept and stale dots), e.g.
    ``s``, ``marker``, ``alpha``.

    A frame without tags, or whose tags all lack a creation date (NaT age, counted in a note), draws
    an empty chart that says so. ``stale`` holds booleans or the strings "True"/"False" a CSV gives back.
    Raises ValueError when ``stale`` or ``layers`` lacks a column it needs (naming them), for a ``stale``
    value that is neither, and for ``top`` other than a positive int.
    """
    require_columns(stale, _COLUMNS, "stale_tags()")
    check_top(top, "stale_tags()")
    reclaimable = stale.attrs.get("reclaimable_bytes") if layers is None else reclaimable_bytes(stale, layers)
    points = _points(stale)
    dated = points.dropna(subset=["days"])
    undated = len(points) - len(dated)
    labels, row_of = _row_order(dated, top)
    ax = new_axes(ax, 8.5, row_height_inches(len(labels)))
    threshold = _threshold_days(stale)
    if dated.empty:
        note = "No tag has a creation date" if undated else "No tags"
        return empty_note(ax, note)

    days, _ = _draw_dots(ax, dated.assign(row=dated["repository"].map(row_of)), len(labels), kwargs)
    _draw_rows(ax, labels)
    if threshold is not None:
        _threshold_line(ax, threshold)
    _age_axis(ax, days, threshold)
    xlabel = "tag age (days)"
    if undated:
        noun = "tag" if undated == 1 else "tags"
        xlabel += f"\n{undated} {noun} without a creation date not shown"
    ax.set_xlabel(xlabel)
    despine(ax, left=True)
    ax.set_title(_title(int(points["stale"].sum()), len(points), reclaimable), loc="left", pad=16)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    return ax


def _draw_dots(ax: Axes, dated: pd.DataFrame, rows: int, kwargs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """One dot per dated tag, jittered within its row; fixed seed so redraws look the same."""
    jitter = np.random.default_rng(0).uniform(-0.25, 0.25, len(dated))
    y = dated["row"].to_numpy(float) + jitter
    days = dated["days"].to_numpy(float)
    is_stale = dated["stale"].to_numpy(bool)
    size = float(np.clip(520 / rows, 16, 40))
    style: dict[str, Any] = {"s": size, "edgecolor": "white", "linewidth": 0.4}
    kept = {"color": NEUTRAL, "alpha": 0.75, "label": f"kept ({(~is_stale).sum()})", "gid": "kept"}
    marked = {"color": WARNING, "alpha": 0.9, "label": f"stale ({is_stale.sum()})", "gid": "stale"}
    ax.scatter(days[~is_stale], y[~is_stale], **{**style, **kept, **kwargs})
    ax.scatter(days[is_stale], y[is_stale], **{**style, **marked, **kwargs})
    return days, is_stale


def _draw_rows(ax: Axes, labels: list[str]) -> None:
    """Repository labels, first row on top, with faint separators between rows."""
    ax.set_yticks(range(len(labels)), labels=labels, fontsize=row_fontsize(ax, len(labels)))
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.tick_params(axis="y", length=0)
    for row in range(1, len(labels)):
        ax.axhline(row - 0.5, color="#EEEEEE", linewidth=0.8, zorder=0)


def _points(stale: pd.DataFrame) -> pd.DataFrame:
    """Repository, age in days and stale flag per tag; ``stale`` read as strictly as the analysis reads it,
    so a frame read back from CSV (the strings "True"/"False") draws what a cleanup of it would do."""
    age = pd.to_timedelta(stale["age"])
    return pd.DataFrame(
        {
            "repository": stale["repository"].astype(str).to_numpy(),
            "days": (age.dt.total_seconds() / _DAY_SECONDS).to_numpy(float, na_value=np.nan),
            "stale": bool_mask(stale, "stale", "stale_tags()"),
        }
    )


def _row_order(dated: pd.DataFrame, top: int) -> tuple[list[str], dict[str, int]]:
    """Row labels and each repository's row: most stale tags first, then oldest tag.

    Beyond ``top`` the remaining repositories share a final "other" row.
    """
    per_repo = dated.groupby("repository").agg(stale=("stale", "sum"), oldest=("days", "max")).reset_index()
    per_repo = per_repo.sort_values(["stale", "oldest", "repository"], ascending=[False, False, True], kind="stable")
    names = per_repo["repository"].tolist()
    if len(names) <= top:
        return short_labels(names), {name: i for i, name in enumerate(names)}
    head, rest = names[:top], names[top:]
    noun = "repository" if len(rest) == 1 else "repositories"
    labels = short_labels(head) + [f"other ({len(rest)} {noun})"]
    rows = {name: i for i, name in enumerate(head)} | {name: top for name in rest}
    return labels, rows


def _threshold_days(stale: pd.DataFrame) -> float | None:
    older_than = stale.attrs.get("older_than")
    if older_than is None or pd.isna(older_than):
        return None
    return pd.Timedelta(older_than).total_seconds() / _DAY_SECONDS


def _threshold_line(ax: Axes, days: float) -> None:
    marker_line(
        ax, days, f"older than {days:g} days", gid="threshold", legend=f"threshold ({days:g} days)", linewidth=1.2
    )


def _age_axis(ax: Axes, days: np.ndarray, threshold: float | None) -> None:
    """Linear days normally; symmetric-log when a few absurd ages would squash the rest."""
    reference = [d for d in (threshold, float(np.median(days))) if d]
    spread = float(np.nanmax(days)) / max(max(reference, default=1.0), 1.0)
    low = min(0.0, float(np.nanmin(days)))
    high = max(float(np.nanmax(days)), threshold or 0.0)
    if spread > _LOG_SPREAD:
        ax.set_xscale("symlog", linthresh=1.0)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
        ax.set_xlim(low, high * 1.4)
    else:
        margin = (high - low) * 0.03 + 0.5
        ax.set_xlim(low - margin, high + margin)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)


def _title(n_stale: int, n_tags: int, reclaimable: float | None) -> str:
    title = f"Tag ages: {n_stale} of {n_tags} tags stale"
    if reclaimable is not None:
        title += f", {format_bytes(reclaimable)} reclaimable"
    return title
