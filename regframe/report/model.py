"""What a report is made of: the audit's frames, and charts, tables and sections ready to render."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from ..units import format_bytes

if TYPE_CHECKING:
    from ..inventory import Inventory

Align = Literal["left", "right"]


@dataclass(frozen=True)
class AuditData:
    """One audit's results: the crawl and the analyses every part of the report reads.

    ``rules`` says in words how stale tags were chosen. ``dangling`` is ``analysis.dangling_entries``
    output, computed once for the summary and both renderings. ``supply_chain`` is
    ``analysis.supply_chain`` output when the crawl classified artifacts, else None.
    """

    inventory: Inventory
    usage: pd.DataFrame
    shared: pd.DataFrame
    stale: pd.DataFrame
    reclaimable_bytes: int
    rules: str
    dangling: pd.DataFrame
    audited_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    supply_chain: pd.DataFrame | None = None

    @classmethod
    def from_inventory(
        cls,
        inventory: Inventory,
        stale: pd.DataFrame,
        *,
        rules: str,
        usage: pd.DataFrame | None = None,
        shared: pd.DataFrame | None = None,
        reclaimable_bytes: int | None = None,
        supply_chain: pd.DataFrame | None = None,
        dangling: pd.DataFrame | None = None,
    ) -> AuditData:
        """The report's data for a crawl and its stale-tag decisions; analyses not given are run here."""
        from .. import analysis

        return cls(
            inventory=inventory,
            usage=analysis.storage_usage(inventory.layers) if usage is None else usage,
            shared=analysis.shared_layers(inventory.layers) if shared is None else shared,
            stale=stale,
            reclaimable_bytes=int(
                analysis.reclaimable_bytes(stale, inventory.layers, inventory.referrers)
                if reclaimable_bytes is None
                else reclaimable_bytes
            ),
            rules=rules,
            dangling=analysis.dangling_entries(inventory.tags, inventory.errors) if dangling is None else dangling,
            audited_at=_crawled_at(inventory),
            supply_chain=supply_chain_of(inventory) if supply_chain is None else supply_chain,
        )

    @property
    def when(self) -> str:
        """The audit's time for people: ``2026-05-04 13:02 UTC``."""
        return self.audited_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _crawled_at(inventory: Inventory) -> datetime:
    stamp = inventory.crawled_at
    if stamp is None or pd.isna(stamp):
        return datetime.now(UTC)
    return pd.Timestamp(stamp).to_pydatetime()


def supply_chain_of(inventory: Inventory) -> pd.DataFrame | None:
    """Signature, SBOM and attestation coverage per repository when the crawl classified artifacts
    (a ``kind`` column); None otherwise."""
    from .. import analysis

    if "kind" not in inventory.manifests.columns:
        return None
    return analysis.supply_chain(inventory.manifests, inventory.referrers, tags=inventory.tags, errors=inventory.errors)


@dataclass(frozen=True)
class Chart:
    """A rendered chart: ``name`` is the file stem under ``charts/``."""

    name: str
    title: str
    png: bytes
    svg: bytes


@dataclass(frozen=True)
class Table:
    """Rows of display text with a header; ``align`` per column (numbers right)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[str]]
    align: Sequence[Align] = ()
    caption: str = ""
    more: str = ""

    def alignment(self, index: int) -> Align:
        return self.align[index] if index < len(self.align) else "left"

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        columns: Mapping[str, str],
        *,
        bytes_columns: Sequence[str] = (),
        change_columns: Sequence[str] = (),
        limit: int | None = None,
        caption: str = "",
        noun: str = "rows",
    ) -> Table:
        """A table of ``frame``'s ``columns`` (name -> header): sizes through ``format_bytes``, counts with
        thousands separators, at most ``limit`` rows and a line saying how many were left out. A size in
        ``change_columns`` is a change, shown with its sign (+100.5 KB beside -809.3 KB)."""
        shown = frame if limit is None else frame.head(limit)
        rows = [
            [_cell(shown[name].iloc[i], name in bytes_columns, name in change_columns) for name in columns]
            for i in range(len(shown))
        ]
        align: list[Align] = [
            "right" if name in bytes_columns or pd.api.types.is_numeric_dtype(frame[name]) else "left"
            for name in columns
        ]
        left_out = len(frame) - len(shown)
        more = f"{left_out:,} more {noun} not shown" if left_out > 0 else ""
        return cls(list(columns.values()), rows, align, caption, more)


def _cell(value: Any, is_bytes: bool, change: bool = False) -> str:
    if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
        return "" if not is_bytes else format_bytes(None)
    if is_bytes:
        return ("+" if change and int(value) > 0 else "") + format_bytes(int(value))
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return f"{float(value):,.2f}"
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    return str(value)


@dataclass(frozen=True)
class Section:
    """A part of the report made by another module (e.g. "Since the last audit"): rendered the same in
    HTML and Markdown. ``totals`` are (label, display value) pairs; charts appear in HTML only."""

    title: str
    anchor: str
    totals: Sequence[tuple[str, str]] = ()
    tables: Sequence[Table] = ()
    charts: Sequence[Chart] = ()
    note: str = ""
