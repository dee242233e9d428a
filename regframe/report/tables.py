"""The report's tables, as display text shared by the HTML and Markdown renderers."""

from __future__ import annotations

import pandas as pd

from ..analysis import cleanup_plan, reclaimable_by_repository
from .model import Table

TOP_REPOSITORIES = 10


def top_table(usage: pd.DataFrame, limit: int = TOP_REPOSITORIES) -> Table:
    """Repositories by exclusive bytes: what deleting each one would free."""
    ordered = usage.sort_values(["exclusive_bytes", "repository"], ascending=[False, True], kind="stable")
    return Table.from_frame(
        ordered,
        {
            "repository": "Repository",
            "exclusive_bytes": "Exclusive",
            "shared_bytes": "Shared",
            "stored_bytes": "Stored",
            "tags": "Tags",
            "images": "Images",
        },
        bytes_columns=("exclusive_bytes", "shared_bytes", "stored_bytes"),
        limit=limit,
        caption=f"Top {limit} repositories by exclusive bytes (what deleting the repository would free)",
        noun="repositories",
    )


def stale_by_repository_table(
    stale: pd.DataFrame, layers: pd.DataFrame, limit: int = 20, referrers: pd.DataFrame | None = None
) -> Table:
    """Stale tags per repository and the bytes deleting them frees among the layers they use (``referrers``:
    ``inv.referrers``, so that untagged referrers only the referrers API lists count with their subject)."""
    per_repo = reclaimable_by_repository(stale, layers, referrers)
    return Table.from_frame(
        per_repo,
        {"repository": "Repository", "stale_tags": "Stale tags", "reclaimable_bytes": "Reclaimable"},
        bytes_columns=("reclaimable_bytes",),
        limit=limit,
        caption="Stale tags by repository (a layer freed in several repositories counts in each)",
        noun="repositories",
    )


def cleanup_plan_table(stale: pd.DataFrame, limit: int | None = None) -> Table:
    """The tags a cleanup would delete, oldest first within each repository, with the reason."""
    plan = cleanup_plan(stale)
    frame = pd.DataFrame(
        {
            "repository": plan["repository"].astype(str),
            "tag": plan["tag"].astype(str),
            "digest": plan["digest"].astype(str).str.slice(0, 19),
            "created": plan["created"],
            "age_days": (pd.to_timedelta(plan["age"]).dt.days).astype("Int64"),
            "reason": plan["reason"].astype(str),
        }
    )
    return Table.from_frame(
        frame,
        {
            "repository": "Repository",
            "tag": "Tag",
            "digest": "Digest",
            "created": "Created",
            "age_days": "Age (days)",
            "reason": "Reason",
        },
        limit=limit,
        noun="tags (see cleanup_plan.csv)",
    )


def errors_table(errors: pd.DataFrame, limit: int | None = None) -> Table:
    return Table.from_frame(
        errors,
        {"repository": "Repository", "tag": "Tag", "stage": "Stage", "error": "Error"},
        limit=limit,
        noun="errors (see errors.csv)",
    )


_SUPPLY_CHAIN_COLUMNS = {
    "repository": "Repository",
    "images": "Images",
    "signed": "Signed",
    "unsigned": "Unsigned",
    "with_sbom": "With SBOM",
    "with_attestation": "With attestation",
    "orphaned": "Orphaned accessories",
    "accessory_bytes": "Accessory bytes",
}


def supply_chain_table(coverage: pd.DataFrame, limit: int | None = None) -> Table:
    present = {name: header for name, header in _SUPPLY_CHAIN_COLUMNS.items() if name in coverage.columns}
    return Table.from_frame(coverage, present, bytes_columns=("accessory_bytes",), limit=limit, noun="repositories")


def dangling_table(dangling: pd.DataFrame, limit: int | None = None) -> Table:
    """Index entries whose manifest is gone: the index (a tag) still lists them."""
    frame = dangling.assign(digest=dangling["digest"].astype(str).str.slice(0, 19))
    return Table.from_frame(
        frame,
        {"repository": "Repository", "tag": "Index tag", "index": "Index", "digest": "Missing entry"},
        limit=limit,
        caption="Dangling index entries (the index lists a manifest that is gone)",
        noun="entries (see dangling.csv)",
    )


def supply_chain_note(audit_supply_chain: pd.DataFrame, dangling: pd.DataFrame) -> str:
    """Orphans and dangling entries in words: two different faults."""
    attrs = audit_supply_chain.attrs
    orphaned = int(attrs.get("orphaned", int(audit_supply_chain["orphaned"].sum())))
    text = (
        f"{orphaned:,} orphaned accessories: signatures, SBOMs or attestations whose image is not in their "
        "repository; a cleanup deletes them."
    )
    if len(dangling):
        text += (
            f" {len(dangling):,} dangling index entries ({int(dangling.attrs.get('image', 0)):,} in image indexes, "
            f"{int(dangling.attrs.get('fallback', 0)):,} in referrers fallback indexes): the index is there, the "
            "manifest it lists is gone, as garbage-collect --delete-untagged leaves them on distribution 2.x."
        )
    return text
