"""The report's charts, drawn with ``regframe.plot`` and rendered as PNG and SVG bytes.

SVG text is drawn as paths, so the files need no font and carry no registry text as markup; ids and
metadata are fixed, so the same audit gives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import matplotlib
import pandas as pd
from matplotlib.axes import Axes

from .. import plot
from ..analysis import sharing_matrix
from ..plot._style import figure_of
from .model import AuditData, Chart

PNG_DPI = 144
SHARING_TOP = 20
STORAGE_TOP = 15
STALE_TOP = 25


def render(name: str, title: str, draw: Callable[[], Axes]) -> Chart:
    """Draw a chart on a figure of its own, render it both ways and close the figure (so a notebook does
    not show it a second time)."""
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "regframe-report"}):
        ax = draw()
        figure = figure_of(ax)
        try:
            png, svg = io.BytesIO(), io.BytesIO()
            figure.savefig(png, format="png", dpi=PNG_DPI, metadata={"Software": None})
            figure.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
        finally:
            plt.close(figure)
    return Chart(name=name, title=title, png=png.getvalue(), svg=svg.getvalue())


def audit_charts(audit: AuditData) -> list[Chart]:
    """Storage per repository, layer sharing, tag ages and layer sizes; supply-chain coverage when the
    crawl classified artifacts."""
    layers = audit.inventory.layers
    stale = audit.stale.copy()
    stale.attrs = {**audit.stale.attrs, "reclaimable_bytes": audit.reclaimable_bytes}
    charts = [
        render("storage", "Stored bytes per repository", lambda: plot.storage(audit.usage, top=STORAGE_TOP)),
        render(
            "sharing",
            "Bytes in common between repositories",
            lambda: plot.sharing_heatmap(_matrix(layers), top=SHARING_TOP),
        ),
        render("stale_tags", "Tag ages and stale tags", lambda: plot.stale_tags(stale, top=STALE_TOP)),
        render("layer_sizes", "Distinct layer sizes", lambda: plot.layer_sizes(layers)),
    ]
    if audit.supply_chain is not None:
        coverage = audit.supply_chain
        charts.append(render("supply_chain", "Supply-chain coverage", lambda: plot.supply_chain(coverage)))
    return charts


def _matrix(layers: pd.DataFrame) -> pd.DataFrame:
    matrix = sharing_matrix(layers, top=SHARING_TOP)
    matrix.attrs["total_repositories"] = int(layers["repository"].nunique())
    return matrix
