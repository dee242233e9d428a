"""Shared look of every chart: name shortening, colours, sizing and byte ticks.

Charts go through these helpers so that a repository reads the same (same short label, same
colour) wherever it appears, and byte axes use one unit system throughout (``regframe.units``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import SupportsFloat

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from regframe.units import format_bytes

# Muted, colour-blind tolerant hues. Grey is kept out: it means "other" / "not a repository".
PALETTE: tuple[str, ...] = (
    "#4C72B0",
    "#DD8452",
    "#55A868",
    "#8172B3",
    "#937860",
    "#DA8BC3",
    "#CCB974",
    "#64B5CD",
    "#2F6B5E",
    "#A7507D",
)
NEUTRAL = "#8C8C8C"
WARNING = "#D1495B"
ACCENT = "#1F3A5F"

ELLIPSIS = "..."
_MIN_HEAD = 6
_SEPARATORS = "/-_."


def compact_bytes(n: SupportsFloat | None) -> str:
    """Three significant digits for tight spots (ticks, heatmap cells): "595 MB", "1.4 GB", "2 GB"."""
    label = format_bytes(n)
    number, _, unit = label.partition(" ")
    if unit != "B" and "." in number and abs(float(number)) >= 100:
        number = f"{float(number):.0f}"
    if number.endswith(".0"):
        number = number[:-2]
    return f"{number} {unit}" if unit else label


def shorten(name: str, width: int = 28) -> str:
    """Fit ``name`` into ``width`` characters with a middle ellipsis: ``team-a/...-service``.

    The namespace (up to the first "/") and the last path segment carry the meaning of a
    repository name, so whichever of them fits is kept whole and the middle goes. Cuts snap to a
    separator when that costs little, so kept parts start or end at a word.
    """
    if width < len(ELLIPSIS) + 2:
        raise ValueError(f"shorten width must be at least {len(ELLIPSIS) + 2}, got {width}")
    name = str(name)
    if len(name) <= width:
        return name
    room = width - len(ELLIPSIS)
    first, last = name.find("/"), name.rfind("/")
    if 0 < first + 1 <= min(room - 1, room // 2 + 2):
        head = name[: first + 1]
        tail = _snap_tail(name[len(name) - (room - len(head)) :])
    elif last > 0 and len(name) - last <= room - _MIN_HEAD:
        tail = name[last:]
        head = _snap_head(name[: room - len(tail)])
    else:
        head = name[: (room + 1) // 2]
        tail = _snap_tail(name[len(name) - (room - len(head)) :])
    return f"{head}{ELLIPSIS}{tail}"


def _snap_head(head: str) -> str:
    """End the head just after a separator if one lies within its last third."""
    for i in range(len(head) - 1, len(head) - 1 - len(head) // 3, -1):
        if head[i] in _SEPARATORS and i > 0:
            return head[: i + 1]
    return head


def _snap_tail(tail: str) -> str:
    """Start the tail at a separator if one lies within its first third."""
    for i, char in enumerate(tail[: len(tail) // 3 + 1]):
        if char in _SEPARATORS and 0 < i < len(tail) - 1:
            return tail[i:]
    return tail


def short_labels(names: Sequence[str], width: int = 28) -> list[str]:
    """Shorten every name; names that would collide keep enough extra width to stay distinct."""
    labels = [shorten(n, width) for n in names]
    for _ in range(64):
        seen: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            seen.setdefault(label, []).append(i)
        clashes = [idx for idx in seen.values() if len(idx) > 1]
        if not clashes:
            break
        for idx in clashes:
            for i in idx:
                labels[i] = shorten(names[i], len(labels[i]) + 4)
    return labels


def repo_color(name: str) -> str:
    """Fixed palette colour for a repository, stable across calls, charts and processes.

    Uses a cryptographic digest rather than ``hash()``, which is salted per process.
    """
    digest = hashlib.blake2b(str(name).encode("utf-8"), digest_size=8).digest()
    return PALETTE[int.from_bytes(digest, "big") % len(PALETTE)]


def lighten(color: str, amount: float = 0.55) -> tuple[float, float, float]:
    """Blend ``color`` towards white; used for the "shared" half of a repository's bar."""
    r, g, b = to_rgb(color)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def bytes_axis(axis: Axis) -> None:
    """Human byte ticks on a linear axis; steps of 1, 2 or 5 keep labels exact after rounding."""
    axis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10], min_n_ticks=3))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: compact_bytes(v)))


def new_axes(ax: Axes | None, width: float, height: float) -> Axes:
    """Return ``ax`` untouched, or a fresh constrained-layout figure of the given size (inches)."""
    if ax is not None:
        return ax
    _fig, created = plt.subplots(figsize=(width, height), layout="constrained")
    return created


def row_height_inches(rows: int, per_row: float = 0.3, base: float = 1.6) -> float:
    """Figure height that gives every labelled row the same room however many rows there are."""
    return base + per_row * max(rows, 1)


def figure_of(ax: Axes) -> Figure:
    """The top-level Figure under an Axes (also for an Axes on a SubFigure): its size sets the room."""
    fig = ax.figure
    return fig if isinstance(fig, Figure) else fig.figure


def row_fontsize(ax: Axes, rows: int, *, largest: float = 10.0, smallest: float = 5.0) -> float:
    """Label font size (points) that fits ``rows`` labels into the Axes' current height."""
    fig = figure_of(ax)
    height_pt = ax.get_position().height * fig.get_figheight() * 72
    if rows <= 0:
        return largest
    return float(np.clip(height_pt / rows * 0.62, smallest, largest))


def require_columns(frame: object, columns: Iterable[str], what: str) -> None:
    """Raise a ValueError naming the columns a chart needs but did not get."""
    if not hasattr(frame, "columns"):
        raise ValueError(f"{what} needs a pandas DataFrame, got {type(frame).__name__}")
    present = set(getattr(frame, "columns", ()))
    missing = [c for c in columns if c not in present]
    if missing:
        raise ValueError(f"{what} needs columns {missing}; got {sorted(map(str, present))}")


def check_top(top: object, what: str) -> None:
    """Raise a ValueError unless ``top`` is a positive int (bools are not counts)."""
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"{what} top must be a positive int, got {top!r}")


def empty_note(ax: Axes, message: str) -> Axes:
    """Mark an Axes as intentionally empty, so a blank chart is never mistaken for a bug."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color=NEUTRAL)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def despine(ax: Axes, *, left: bool = False) -> None:
    """Drop the top and right frame lines (and the left one on request), seaborn-style."""
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    if left:
        ax.spines["left"].set_visible(False)


def marker_line(ax: Axes, x: float, label: str, *, gid: str, legend: str, linewidth: float = 1.4) -> None:
    """A dashed vertical line with its label just above the plot area, where no bar or dot hides it."""
    from matplotlib.transforms import blended_transform_factory

    ax.axvline(x, color=ACCENT, linestyle="--", linewidth=linewidth, label=legend, gid=gid)
    ax.annotate(
        label,
        xy=(x, 1.0),
        xycoords=blended_transform_factory(ax.transData, ax.transAxes),
        xytext=(0, 2),
        textcoords="offset points",
        ha="center",
        va="bottom",
        fontsize="small",
        color=ACCENT,
    )
