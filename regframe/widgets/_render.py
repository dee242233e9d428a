"""HTML tables and PNG charts for widgets.

Widgets show frames and charts through ``HTML`` and ``Image`` values rather than ``Output`` captures:
a value can be set from any thread (crawls finish in a background thread) and read back in tests.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Mapping
from html import escape
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from regframe.units import format_bytes

Formatter = Callable[[Any], str]

_PLOT_LOCK = threading.Lock()
_TABLE_STYLE = (
    "border-collapse:collapse;font-size:12px;line-height:1.4;font-family:var(--jp-code-font-family, monospace)"
)
_CELL_STYLE = "padding:2px 10px 2px 4px;border-bottom:1px solid #e6e6e6;text-align:left;white-space:nowrap"
_NOTE_COLORS = {"info": "#1F3A5F", "warning": "#8a5300", "error": "#b00020"}


def table(
    frame: pd.DataFrame,
    *,
    formatters: Mapping[str, Formatter] | None = None,
    max_rows: int = 200,
    css_class: str = "regframe-table",
) -> str:
    """``frame`` as a compact HTML table, at most ``max_rows`` rows with a note on the rest."""
    formatters = dict(formatters or {})
    shown = frame.head(max_rows)
    head = "".join(f"<th style='{_CELL_STYLE}'>{escape(str(c))}</th>" for c in shown.columns)
    rows = []
    for values in shown.itertuples(index=False, name=None):
        cells = "".join(
            f"<td style='{_CELL_STYLE}'>{escape(_cell(value, formatters.get(column)))}</td>"
            for column, value in zip(shown.columns, values, strict=True)
        )
        rows.append(f"<tr>{cells}</tr>")
    more = len(frame) - len(shown)
    caption = plural(len(frame), "row") + (f", first {len(shown)} shown" if more else "")
    return (
        f"<table class='{css_class}' style='{_TABLE_STYLE}'>"
        f"<caption style='caption-side:bottom;text-align:left;color:#666'>{caption}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _cell(value: Any, formatter: Formatter | None) -> str:
    if formatter is not None:
        return formatter(value)
    return "" if _missing(value) else str(value)


def _missing(value: Any) -> bool:
    """None, NA, NaT or NaN; containers (labels dicts) are never missing."""
    return pd.api.types.is_scalar(value) and bool(pd.isna(value))


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count} {word if count == 1 else many or word + 's'}"


def note(text: str, kind: str = "info") -> str:
    """A one-line message in the widget's own colours (``info``, ``warning`` or ``error``)."""
    return f"<div style='color:{_NOTE_COLORS[kind]}'>{escape(text)}</div>"


def nbytes(value: Any) -> str:
    """Byte counts in the same decimal units as the charts; blank when unknown."""
    return "" if _missing(value) else format_bytes(int(value))


def date(value: Any) -> str:
    return "unknown" if _missing(value) else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")


def days(value: Any) -> str:
    return "" if _missing(value) else f"{pd.Timedelta(value).total_seconds() / 86400:.0f} d"


def short_digest(value: Any) -> str:
    text = "" if _missing(value) else str(value)
    algorithm, _, hexa = text.partition(":")
    return f"{algorithm}:{hexa[:12]}" if hexa else text


def png(draw: Callable[[], Axes], dpi: int = 90) -> bytes:
    """Run a ``regframe.plot`` call that makes its own figure and return the figure as PNG bytes.

    Interactive mode is off while drawing and the figure is closed right after, so a notebook's
    inline backend never shows it a second time below the widget. pyplot's figure registry is
    global, hence the lock.
    """
    import matplotlib.pyplot as plt

    with _PLOT_LOCK, plt.ioff():
        figure = draw().get_figure()
        if not isinstance(figure, Figure):
            raise TypeError(f"the chart was not drawn on a figure of its own: {figure!r}")
        try:
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
        finally:
            plt.close(figure)
    return buffer.getvalue()
