"""Where the bytes are: the storage chart, the top-repository table and the sharing heatmap."""

from __future__ import annotations

import ipywidgets as widgets
import pandas as pd

from regframe import analysis, plot
from regframe.inventory import Inventory

from . import _render

_USAGE_FORMATS = {name: _render.nbytes for name in ("logical_bytes", "stored_bytes", "exclusive_bytes", "shared_bytes")}
HEATMAP_DEFAULT = 8


class StorageDashboard(widgets.VBox):
    """``top`` sets how many repositories the chart and table show; ``repositories`` (a multiple
    selection) which ones the heatmap compares.

    Current results: ``usage`` (``storage_usage``), ``top_table`` (the rows shown), ``matrix``
    (``sharing_matrix`` of the selected repositories).
    """

    def __init__(self, inventory: Inventory, *, top: int = 15, selected: list[str] | None = None):
        self.inventory = inventory
        self.usage = analysis.storage_usage(inventory.layers)
        self.top_table: pd.DataFrame = self.usage.head(0)
        self.matrix: pd.DataFrame | None = None
        names = self.usage["repository"].astype(str).tolist()
        count = max(len(names), 1)

        self.summary = widgets.HTML(self._summary())
        self.top = widgets.IntSlider(
            value=min(top, count),
            min=1,
            max=count,
            description="Top repositories",
            continuous_update=False,
            style={"description_width": "initial"},
        )
        self.chart = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.table = widgets.HTML(layout=widgets.Layout(max_height="360px", overflow="auto"))
        self.table.add_class("regframe-storage-table")
        chosen = names[:HEATMAP_DEFAULT] if selected is None else [n for n in selected if n in names]
        unknown = [] if selected is None else [n for n in selected if n not in names]
        self.repositories = widgets.SelectMultiple(
            options=names,
            value=chosen,
            rows=min(max(len(names), 2), 12),
            description="Compare",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="360px"),
        )
        self._unknown = _render.note(f"not in this inventory: {', '.join(unknown)}", "warning") if unknown else ""
        self.message = widgets.HTML(self._unknown)
        self.heatmap = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))

        self.top.observe(lambda _change: self.show_top(), names="value")
        self.repositories.observe(lambda _change: self.show_heatmap(), names="value")
        super().__init__(
            [
                self.summary,
                self.top,
                self.chart,
                self.table,
                widgets.HTML("<b>Layers in common</b> (select repositories; Ctrl/Shift-click for several)"),
                widgets.HBox([self.repositories, self.heatmap]),
                self.message,
            ]
        )
        self.add_class("regframe-storage")
        self.show_top()
        self.show_heatmap()

    def _summary(self) -> str:
        attrs = self.usage.attrs
        total, logical = attrs.get("total_bytes", 0), attrs.get("logical_bytes", 0)
        return (
            f"<b>{len(self.usage)}</b> repositories store <b>{_render.nbytes(total)}</b> of distinct layers; "
            f"adding up every image gives {_render.nbytes(logical)} "
            f"({attrs.get('dedup_ratio', 1.0):.1f}x deduplication)"
        )

    def show_top(self) -> None:
        top = self.top.value
        self.top_table = self.usage.head(top)
        self.chart.value = _render.png(lambda: plot.storage(self.usage, top=top))
        self.table.value = _render.table(self.top_table, formatters=_USAGE_FORMATS)

    def show_heatmap(self) -> None:
        selected = list(self.repositories.value)
        if not selected:
            self.matrix = None
            self.heatmap.value = b""
            self.heatmap.layout.display = "none"
            self.message.value = self._unknown + _render.note("select at least one repository to compare")
            return
        layers = self.inventory.layers
        matrix = analysis.sharing_matrix(layers[layers["repository"].isin(selected)])
        self.matrix = matrix
        self.heatmap.value = _render.png(lambda: plot.sharing_heatmap(matrix, top=len(selected)))
        self.heatmap.layout.display = None
        self.message.value = self._unknown


def storage_dashboard(inventory: Inventory, *, top: int = 15, selected: list[str] | None = None) -> StorageDashboard:
    """Storage per repository (shared layers counted once) and the layers selected repositories share.

    ``selected``: repositories for the heatmap (default: the largest eight).
    """
    return StorageDashboard(inventory, top=top, selected=selected)
