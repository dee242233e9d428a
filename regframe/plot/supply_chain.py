"""Supply-chain coverage per repository: how many images are signed, have an SBOM, carry an attestation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from regframe.plot._style import (
    NEUTRAL,
    PALETTE,
    check_top,
    despine,
    empty_note,
    lighten,
    new_axes,
    require_columns,
    row_fontsize,
    row_height_inches,
    short_labels,
)
from regframe.units import format_bytes

_COLUMNS = ("repository", "images", "signed", "with_sbom", "with_attestation")
# (column, legend label, colour): one thin bar each, over a pale bar of all the repository's images.
SERIES = (
    ("signed", "signed", PALETTE[0]),
    ("with_sbom", "with SBOM", PALETTE[2]),
    ("with_attestation", "with attestation", PALETTE[3]),
)
IMAGES_LABEL = "images"


def supply_chain(summary: pd.DataFrame, *, top: int = 15, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """Per repository, a pale bar of its images and, over it, one thin bar each for the images that are
    signed, have an SBOM and carry an attestation; the repositories with the most images on top.

    ``summary`` is :func:`regframe.analysis.supply_chain` output; the sums of its rows title the chart,
    orphaned accessories included (``attrs`` totals only for a column the frame lacks, and only while they
    agree with its rows: a frame filtered to some repositories is titled with theirs). Repositories without
    images are left out; those beyond ``top`` are folded into one "other (N repositories)" row. Extra
    keyword arguments go to the three :meth:`Axes.barh` calls of the coverage bars, e.g. ``height``,
    ``alpha``.

    A frame without images draws an empty chart saying so. Raises ValueError when a column is missing
    (naming it) and for ``top`` other than a positive int.
    """
    require_columns(summary, _COLUMNS, "supply_chain()")
    check_top(top, "supply_chain()")
    rows = _fold(summary, top)
    ax = new_axes(ax, 9.5, row_height_inches(len(rows), per_row=0.5))
    if rows.empty:
        return empty_note(ax, "No images")

    y = np.arange(len(rows))
    images = rows["images"].to_numpy(float)
    ax.barh(y, images, height=0.86, color=lighten(NEUTRAL, 0.65), label=IMAGES_LABEL, linewidth=0)
    height = 0.26
    for number, (column, label, color) in enumerate(SERIES):
        offset = (number - 1) * height
        style = {"height": height * 0.9, "color": color, "label": label}
        ax.barh(y + offset, rows[column].to_numpy(float), **{**style, **kwargs})

    fontsize = row_fontsize(ax, len(rows))
    ax.set_yticks(y, labels=rows["label"].tolist(), fontsize=fontsize)
    ax.set_ylim(len(rows) - 0.45, -0.55)
    ax.tick_params(axis="y", length=0)
    peak = float(images.max()) if len(images) else 0.0
    for yi, (signed, total) in enumerate(zip(rows["signed"], rows["images"], strict=True)):
        ax.text(total + peak * 0.01, yi, f"{int(signed)}/{int(total)} signed", va="center", fontsize=fontsize * 0.85)
    ax.set_xlim(0, max(peak * 1.22, 1.0))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    ax.set_xlabel("images (distinct tagged digests)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    despine(ax)
    ax.set_title(_title(summary), loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    return ax


def _fold(summary: pd.DataFrame, top: int) -> pd.DataFrame:
    """Repositories with images, most first, plus one summed row for those beyond ``top``."""
    counts = ["images", *(column for column, _, _ in SERIES)]
    frame = pd.DataFrame({"repository": summary["repository"].astype(str).to_numpy()})
    for column in counts:
        frame[column] = pd.to_numeric(summary[column]).fillna(0).to_numpy(dtype=np.int64)
    frame = frame[frame["images"] > 0].sort_values(["images", "repository"], ascending=[False, True], kind="stable")
    head, rest = frame.iloc[:top].copy(), frame.iloc[top:]
    head["label"] = short_labels(head["repository"].tolist())
    if rest.empty:
        return head.reset_index(drop=True)
    noun = "repository" if len(rest) == 1 else "repositories"
    other = pd.DataFrame({column: [int(rest[column].sum())] for column in counts})
    other.insert(0, "repository", [f"other ({len(rest)} {noun})"])
    other["label"] = other["repository"]
    return pd.concat([head, other], ignore_index=True)


def _title(summary: pd.DataFrame) -> str:
    total = _totals(summary)
    images, signed = total("images"), total("signed")
    share = f" ({signed / images:.0%})" if images else ""
    title = f"Signed: {signed:,} of {images:,} images{share}; SBOM: {total('with_sbom'):,}"
    orphaned = total("orphaned")
    if orphaned:
        title += f"; {orphaned:,} orphaned accessories ({format_bytes(total('orphaned_bytes'))})"
    return title


def _totals(summary: pd.DataFrame) -> Callable[[str], int]:
    """A total by name: the sum of the frame's column; ``attrs`` only for a column the frame lacks, and only
    while they agree with every column it has. pandas keeps ``attrs`` through filtering, so on a frame cut
    down to some repositories they would count the whole registry."""

    def column_sum(name: str) -> int:
        return int(pd.to_numeric(summary[name]).fillna(0).sum())

    attrs = summary.attrs
    agree = all(
        isinstance(attrs.get(name), (int, np.integer)) and attrs[name] == column_sum(name) for name in _COLUMNS[1:]
    )

    def total(name: str) -> int:
        if name in summary.columns:
            return column_sum(name)
        value = attrs.get(name) if agree else None
        return int(value) if isinstance(value, (int, np.integer)) else 0

    return total
