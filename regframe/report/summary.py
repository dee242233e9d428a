"""Every total of an audit as one flat mapping (``summary.json``), with the unit in each key's name.

Keys ending in ``_bytes`` are bytes, ``_percent`` percent, ``_ratio`` a ratio; the rest are counts.
A few totals exist only with extra data (``Total.needs``): supply-chain counts when the crawl
classified artifacts, growth when a previous audit is given. Such a key is left out, never set to 0,
so a gate on it can tell "not computed" from "none".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from .. import __version__
from ..units import format_bytes
from .model import AuditData

Unit = Literal["bytes", "count", "percent", "ratio"]

ARTIFACTS = "artifact classification (a crawl that records each manifest's kind and its referrers)"
HISTORY = "a previous audit to compare with (regframe audit --history DIR, from the second audit on)"


@dataclass(frozen=True)
class Total:
    """One key of ``summary.json``: its unit, a label for people, the short name gates accept, and the
    data it needs when it cannot always be computed."""

    key: str
    unit: Unit
    label: str
    short: str | None = None
    needs: str | None = None


TOTALS: tuple[Total, ...] = (
    Total("repositories", "count", "repositories"),
    Total("tags", "count", "tags"),
    Total("images", "count", "images (platforms)"),
    Total("blobs", "count", "distinct blobs (layers and configs)"),
    Total("stored_bytes", "bytes", "stored (each blob counted once)", "stored"),
    Total("logical_bytes", "bytes", "logical (naive per-tag sum)", "logical"),
    Total("dedup_ratio", "ratio", "dedup ratio", "dedup"),
    Total("stale_tags", "count", "stale tags", "stale"),
    Total("reclaimable_bytes", "bytes", "reclaimable after garbage collection", "reclaimable"),
    Total("errors", "count", "items that could not be read"),
    Total("signed_images", "count", "signed images", "signed", ARTIFACTS),
    Total("unsigned_images", "count", "unsigned images", "unsigned", ARTIFACTS),
    Total("sbom_images", "count", "images with an SBOM", "sbom", ARTIFACTS),
    Total("attested_images", "count", "images with an attestation", "attested", ARTIFACTS),
    Total("orphaned_accessories", "count", "orphaned accessories", "orphaned", ARTIFACTS),
    Total("accessory_bytes", "bytes", "bytes of signatures, SBOMs and attestations", "accessory", ARTIFACTS),
    Total("dangling_index_entries", "count", "image-index entries whose manifest is gone"),
    Total("dangling_fallback_entries", "count", "fallback-index entries whose manifest is gone"),
    Total("growth_bytes", "bytes", "stored bytes added since the last audit", None, HISTORY),
    Total("growth_percent", "percent", "stored bytes growth since the last audit", "growth", HISTORY),
)
BY_KEY: Mapping[str, Total] = {total.key: total for total in TOTALS}
# Short names for gates: the key without its unit suffix.
SHORT_NAMES: Mapping[str, str] = {total.short: total.key for total in TOTALS if total.short}

# ``analysis.supply_chain`` columns, summed over repositories.
_SUPPLY_CHAIN = {
    "signed_images": "signed",
    "unsigned_images": "unsigned",
    "sbom_images": "with_sbom",
    "attested_images": "with_attestation",
    "orphaned_accessories": "orphaned",
    "accessory_bytes": "accessory_bytes",
}


def build_summary(
    audit: AuditData,
    *,
    previous_stored_bytes: int | None = None,
    compared_stored_bytes: int | None = None,
    growth_unknown: str | None = None,
) -> dict[str, Any]:
    """The audit's totals, and what it was run on (``registry``, ``audited_at``, ``complete``,
    ``stale_rules``, ``regframe_version``), ready for ``json.dumps``.

    ``previous_stored_bytes`` (the stored bytes of the previous audit of the same registry) adds
    ``growth_bytes`` and ``growth_percent``; growth in percent is left out when the previous audit
    stored nothing. ``compared_stored_bytes``: this audit's stored bytes over the same repositories
    (a diff's ``stored_bytes_after``, when the two audits covered different ones); default all of them.
    ``growth_unknown``: why no growth can be given at all (no repository could be compared, say after an
    audit that stopped early); it is kept as ``growth_unknown`` and neither growth total is given.
    """
    inv = audit.inventory
    stored = int(audit.usage.attrs.get("total_bytes", 0))
    summary: dict[str, Any] = {
        "registry": inv.url,
        "audited_at": pd.Timestamp(audit.audited_at).isoformat(),
        "complete": bool(inv.complete),
        "stale_rules": audit.rules,
        "regframe_version": __version__,
        "repositories": inv.repository_count(),
        "tags": len(inv.tags),
        "images": inv.image_count(),
        "blobs": int(inv.layers["layer_digest"].nunique()),
        "stored_bytes": stored,
        "logical_bytes": int(audit.usage.attrs.get("logical_bytes", 0)),
        "dedup_ratio": round(float(audit.usage.attrs.get("dedup_ratio", 1.0)), 4),
        "stale_tags": int(audit.stale["stale"].astype(bool).sum()),
        "reclaimable_bytes": int(audit.reclaimable_bytes),
        "errors": len(inv.errors),
    }
    summary["dangling_index_entries"] = int(audit.dangling.attrs["image"])
    summary["dangling_fallback_entries"] = int(audit.dangling.attrs["fallback"])
    if audit.supply_chain is not None:
        for key, column in _SUPPLY_CHAIN.items():
            if column in audit.supply_chain.columns:
                summary[key] = int(pd.to_numeric(audit.supply_chain[column]).fillna(0).sum())
    if growth_unknown:
        summary["growth_unknown"] = growth_unknown
    elif previous_stored_bytes is not None:
        now = stored if compared_stored_bytes is None else int(compared_stored_bytes)
        summary["growth_bytes"] = now - int(previous_stored_bytes)
        if previous_stored_bytes > 0:
            summary["growth_percent"] = round(100.0 * (now - previous_stored_bytes) / previous_stored_bytes, 4)
    return summary


def totals(summary: Mapping[str, Any]) -> list[Total]:
    """The totals present in ``summary``, in report order."""
    return [total for total in TOTALS if total.key in summary]


def display(total: Total, value: Any) -> str:
    """A total as people read it: sizes in decimal units, counts with separators."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if total.unit == "bytes":
        return format_bytes(value)
    if total.unit == "percent":
        return f"{value:+.1f}%"
    if total.unit == "ratio":
        return f"{value:.2f}x"
    return f"{int(value):,}"
