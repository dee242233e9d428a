"""Where the bytes are: the storage chart, the top-repository table and the sharing heatmap; and which
images are signed, have an SBOM or an attestation."""

from __future__ import annotations

import ipywidgets as widgets
import pandas as pd

from regframe import analysis, plot
from regframe.inventory import Inventory

from . import _render

_USAGE_FORMATS = {name: _render.nbytes for name in ("logical_bytes", "stored_bytes", "exclusive_bytes", "shared_bytes")}
_SUPPLY_FORMATS = {name: _render.nbytes for name in ("orphaned_bytes", "accessory_bytes")}
HEATMAP_DEFAULT = 8


class StorageDashboard(widgets.VBox):
    """``top`` sets how many repositories the chart and table show; ``repositories`` (a multiple
    selection) which ones the heatmap compares.

    Current results: ``usage`` (``storage_usage``), ``top_table`` (the rows shown), ``matrix``
    (``sharing_matrix`` of the selected repositories), ``supply`` (``supply_chain`` coverage per repository,
    None for an inventory that does not classify artifacts) and ``dangling`` (``dangling_entries``).
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
        self.supply: pd.DataFrame | None = None
        self.dangling = analysis.dangling_entries(inventory.tags, inventory.errors)
        self.supply_summary = widgets.HTML()
        self.supply_chart = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.supply_table = widgets.HTML(layout=widgets.Layout(max_height="360px", overflow="auto"))
        self.supply_table.add_class("regframe-supply-table")
        self.show_supply_chain()

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
                widgets.HTML("<b>Supply chain</b>: signatures, SBOMs and attestations per repository"),
                self.supply_summary,
                self.supply_chart,
                self.supply_table,
            ]
        )
        self.add_class("regframe-storage")
        self.show_top()
        self.show_heatmap()

    def _summary(self) -> str:
        attrs = self.usage.attrs
        total, logical = attrs.get("total_bytes", 0), attrs.get("logical_bytes", 0)
        return (
            f"<b>{len(self.usage)}</b> repositories store <b>{_render.nbytes(total)}</b> of distinct blobs "
            "(layers and configs); "
            f"adding up every image gives {_render.nbytes(logical)} "
            f"({attrs.get('dedup_ratio', 1.0):.1f}x deduplication)"
        )

    def show_supply_chain(self) -> None:
        inv = self.inventory
        if "kind" not in inv.manifests.columns:
            self.supply_summary.value = _render.note("this inventory does not classify artifacts (crawled before)")
            self.supply_chart.layout.display = "none"
            return
        supply = analysis.supply_chain(inv.manifests, inv.referrers, tags=inv.tags, errors=inv.errors)
        self.supply = supply
        totals = supply.attrs
        images, signed = totals["images"], totals["signed"]
        share = f" ({signed / images:.0%})" if images else ""
        text = (
            f"<b>{signed:,}</b> of {_render.plural(images, 'image')} signed{share}; "
            f"<b>{totals['with_sbom']:,}</b> with an SBOM, <b>{totals['with_attestation']:,}</b> with an attestation; "
            f"{_render.plural(totals['orphaned'], 'orphaned accessory', 'orphaned accessories')} "
            f"({_render.nbytes(totals['orphaned_bytes'])})"
        )
        if len(self.dangling):
            text += (
                f"; {_render.plural(len(self.dangling), 'dangling index entry', 'dangling index entries')} "
                "(the index lists a manifest that is gone)"
            )
        self.supply_summary.value = text
        self.supply_chart.value = _render.png(lambda: plot.supply_chain(supply))
        self.supply_table.value = _render.table(supply, formatters=_SUPPLY_FORMATS)

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
