"""Stored bytes per repository across audit snapshots: who grew the registry."""

from __future__ import annotations

from typing import Any

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from regframe.plot._style import (
    NEUTRAL,
    PALETTE,
    bytes_axis,
    check_top,
    despine,
    empty_note,
    new_axes,
    repo_color,
    require_columns,
    short_labels,
)
from regframe.units import format_bytes

_COLUMNS = ("snapshot", "repository", "stored_bytes")
REST = "rest"


def growth(history: pd.DataFrame, *, top: int = 10, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """One line per repository of stored bytes over time, for the ``top`` largest at the latest snapshot,
    and one grey dashed line (gid ``"rest"``) adding up all the others.

    ``history`` is :func:`regframe.history.load` output (one row per snapshot and repository); a
    repository missing from a snapshot counts 0 there. Each line is labelled with the repository's
    name. Stored bytes count a layer once per repository, so the lines add up to more than the
    registry holds when layers are shared; ``attrs["total_bytes"]`` (the registry-wide figure per
    snapshot) titles the chart when it agrees with the frame's rows: pandas keeps ``attrs`` through
    filtering, so only the totals of the snapshots the frame holds count, and a frame left with some
    repositories only (their bytes do not reach a registry total) gets a title of its own. A snapshot
    ``attrs`` names with a total of 0 and no rows (one with no tagged repository) is drawn at 0; one
    with bytes and no rows was filtered out and is not drawn. Extra keyword arguments go to every
    :meth:`Axes.plot` call, e.g. ``linewidth``, ``marker``, ``alpha``.

    A frame without rows draws an empty chart saying there are no snapshots. Raises ValueError, before
    any figure is made, when a column is missing (naming it), for ``top`` other than a positive int and
    for an ``attrs["total_bytes"]`` key that is not a date.
    """
    require_columns(history, _COLUMNS, "growth()")
    check_top(top, "growth()")
    totals = _snapshot_totals(history.attrs.get("total_bytes"))
    ax = new_axes(ax, 9.5, 4.8)
    if history.empty:
        return empty_note(ax, "No snapshots")

    table = _by_snapshot(history)
    totals = {when: total for when, total in totals.items() if when in table.index or _is_zero(total)}
    table = table.reindex(table.index.union(pd.DatetimeIndex(list(totals))), fill_value=0.0).sort_index()
    x = table.index.to_numpy()
    latest = table.iloc[-1]
    order = sorted(table.columns, key=lambda name: (-latest[name], name))
    head, rest = order[:top], order[top:]
    colors = _distinct_colors(head)
    for name, label in zip(head, short_labels(head), strict=True):
        style = {"color": colors[name], "marker": "o", "linewidth": 1.8, "label": label}
        ax.plot(x, table[name].to_numpy(float), **{**style, **kwargs})
    if rest:
        noun = "repository" if len(rest) == 1 else "repositories"
        style = {
            "color": NEUTRAL,
            "linestyle": "--",
            "marker": "o",
            "linewidth": 1.5,
            "label": f"the rest ({len(rest)} {noun})",
            "gid": REST,
        }
        ax.plot(x, table[rest].sum(axis=1).to_numpy(float), **{**style, **kwargs})

    bytes_axis(ax.yaxis)
    ax.set_ylim(bottom=0)
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    if len(x) == 1:
        ax.set_xlim(x[0] - np.timedelta64(1, "D"), x[0] + np.timedelta64(1, "D"))
    ax.set_ylabel("stored bytes (decimal units)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    despine(ax)
    ax.set_title(_title(table, totals), loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    return ax


def _by_snapshot(history: pd.DataFrame) -> pd.DataFrame:
    """Snapshots (UTC, as naive datetime64) down, repositories across, stored bytes in the cells."""
    when = pd.to_datetime(history["snapshot"], utc=True).dt.tz_localize(None)
    frame = pd.DataFrame(
        {
            "snapshot": when.to_numpy(),
            "repository": history["repository"].astype(str).to_numpy(),
            "stored_bytes": pd.to_numeric(history["stored_bytes"]).fillna(0).to_numpy(float),
        }
    )
    return frame.pivot_table(
        index="snapshot", columns="repository", values="stored_bytes", aggfunc="sum", fill_value=0.0
    ).sort_index()


def _snapshot_totals(totals: object) -> dict[pd.Timestamp, Any]:
    """``attrs["total_bytes"]`` keyed by naive UTC time, read before any figure is made so that a refused
    frame leaves none open."""
    if not isinstance(totals, dict):
        return {}
    return {_naive_utc(key): value for key, value in totals.items()}


def _is_zero(total: object) -> bool:
    try:
        return float(total) == 0  # type: ignore[arg-type]  # anything else is not zero
    except (TypeError, ValueError):
        return False


def _naive_utc(key: object) -> pd.Timestamp:
    """A key of ``attrs["total_bytes"]`` as a naive UTC time: an ISO 8601 text in any of its forms (with or
    without a fraction of a second, any offset), a Timestamp or a datetime; naive times are taken as UTC.
    Each key is parsed on its own, so keys of different forms never have to share one format."""
    try:
        stamp = pd.Timestamp(key)  # type: ignore[arg-type]  # anything else is refused just below
        valid = not pd.isna(stamp)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"growth(): attrs['total_bytes'] has a key that is not a date and time: {key!r}")
    return stamp.tz_localize(None) if stamp.tzinfo is None else stamp.tz_convert("UTC").tz_localize(None)


def _distinct_colors(names: list[str]) -> dict[str, str]:
    """Each repository's own colour (``repo_color``) unless a larger one took it first: then the next free one."""
    taken: dict[str, str] = {}
    for name in names:
        color = repo_color(name)
        if color in taken.values():
            free = [c for c in PALETTE if c not in taken.values()]
            color = free[(PALETTE.index(color)) % len(free)] if free else color
        taken[name] = color
    return taken


def _title(table: pd.DataFrame, totals: dict[pd.Timestamp, Any]) -> str:
    count = len(table)
    noun = "snapshot" if count == 1 else "snapshots"
    first, last = table.index[0], table.index[-1]
    if first in totals and last in totals and _totals_agree(table, totals):
        change = totals[last] - totals[first]
        sign = "+" if change > 0 else ""
        return f"Registry {format_bytes(totals[last])} stored, {sign}{format_bytes(change)} over {count} {noun}"
    return f"Stored bytes per repository over {count} {noun}"


def _totals_agree(table: pd.DataFrame, totals: dict[pd.Timestamp, Any]) -> bool:
    """Whether each total can be the registry total of its snapshot's rows: no less than the largest
    repository and no more than all of them added up (shared layers count once in the total). A frame
    cut down to some repositories usually falls below its registry's totals."""
    for when, total in totals.items():
        row = table.loc[when].to_numpy(float)
        try:
            if not row.max() <= float(total) <= row.sum():
                return False
        except (TypeError, ValueError):
            return False
    return True
