"""Supply-chain coverage: which images carry signatures, SBOMs and attestations, and what points at nothing.

An image is a distinct tagged digest of kind ``image`` (a multi-platform tag is one image); an accessory
covers it when its ``subject`` is that digest or one of its platforms. An orphan is an accessory whose
subject is known to be absent from its repository: ``accessories.orphaned``, the rule ``stale_tags`` and
policies delete orphans by (here the accessories ``referrers`` lists count as present too). A dangling
entry is the reverse: an index lists a manifest that answers 404, as distribution 2.8's
``garbage-collect --delete-untagged`` leaves behind in multi-platform indexes and in referrers fallback
indexes.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ._frames import require_columns, text_array
from .accessories import check_crawl_frames, missing_child, orphaned

SUPPLY_CHAIN_COLUMNS = (
    "repository",
    "images",
    "signed",
    "with_sbom",
    "with_attestation",
    "unsigned",
    "orphaned",
    "orphaned_bytes",
    "accessory_bytes",
)
_COVERAGE = {"signed": "signature", "with_sbom": "sbom", "with_attestation": "attestation"}
DANGLING_COLUMNS = ("repository", "tag", "index_digest", "digest", "index")
# The crawl records a child that answers 404 as this error at stage "child manifest".
_FALLBACK_TAG = re.compile(r"sha256-[0-9a-f]{64}")


def supply_chain(
    manifests: pd.DataFrame,
    referrers: pd.DataFrame,
    *,
    tags: pd.DataFrame | None = None,
    errors: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per repository: ``images`` (distinct tagged image digests), how many are ``signed``, have an
    SBOM (``with_sbom``) or an attestation (``with_attestation``), ``unsigned``, accessories ``orphaned``
    (subject known to be absent from the repository) and their bytes (``orphaned_bytes``), and
    ``accessory_bytes`` (every accessory's manifest and blobs, as ``inv.referrers`` sizes them, each
    accessory once).

    ``manifests`` and ``referrers`` are ``inv.manifests`` and ``inv.referrers``; give ``tags=inv.tags`` and
    ``errors=inv.errors`` too, so that a partial crawl counts no healthy accessory as an orphan (as in
    ``stale_tags``). Totals are in ``attrs`` (the same names, plus ``signed_ratio``). Rows are sorted by
    repository.
    """
    require_columns(manifests, ("repository", "tag", "digest", "manifest_digest", "kind"), "supply_chain (manifests)")
    require_columns(referrers, ("repository", "subject", "digest", "kind", "size"), "supply_chain (referrers)")
    check_crawl_frames(tags, errors, "supply_chain")
    rows = _strings(manifests, ("repository", "tag", "digest", "manifest_digest", "kind"))
    rows = rows[rows["tag"].notna() & rows["repository"].notna()]
    images = rows[rows["kind"] == "image"]
    parts = pd.concat(
        [
            pd.DataFrame({"repository": images["repository"], "image": images["digest"], "part": images["digest"]}),
            pd.DataFrame(
                {"repository": images["repository"], "image": images["digest"], "part": images["manifest_digest"]}
            ),
        ],
        ignore_index=True,
    ).dropna()
    parts = parts.drop_duplicates(ignore_index=True)
    accessories = _strings(referrers, ("repository", "subject", "digest", "kind"))
    accessories["size"] = pd.to_numeric(referrers["size"]).fillna(0).to_numpy(dtype=np.int64)
    accessories = accessories.dropna(subset=["repository", "digest"])

    repositories = sorted(set(rows["repository"]) | set(accessories["repository"]))
    result = pd.DataFrame({"repository": pd.Series(repositories, dtype=object)})
    result["images"] = _count(images.drop_duplicates(["repository", "digest"]), repositories)
    covered = accessories.merge(parts, left_on=["repository", "subject"], right_on=["repository", "part"])
    for column, kind in _COVERAGE.items():
        hits = covered.loc[covered["kind"] == kind, ["repository", "image"]].drop_duplicates()
        result[column] = _count(hits, repositories)
    result["unsigned"] = result["images"] - result["signed"]

    lost = orphaned(
        accessories["repository"].to_numpy(),
        accessories["subject"].to_numpy(),
        manifests,
        tags=tags,
        errors=errors,
        present=accessories[["repository", "digest"]].rename(columns={"digest": "subject"}),
    )
    distinct = accessories.drop_duplicates(["repository", "digest"])
    orphans = accessories[lost].drop_duplicates(["repository", "digest"])
    result["orphaned"] = _count(orphans, repositories)
    result["orphaned_bytes"] = _sum(orphans, repositories)
    result["accessory_bytes"] = _sum(distinct, repositories)
    for column in SUPPLY_CHAIN_COLUMNS[1:]:
        result[column] = result[column].astype(np.int64)
    totals = {column: int(result[column].sum()) for column in SUPPLY_CHAIN_COLUMNS[1:]}
    result.attrs.update(totals)
    result.attrs["signed_ratio"] = totals["signed"] / totals["images"] if totals["images"] else None
    return result


def dangling_entries(tags: pd.DataFrame, errors: pd.DataFrame) -> pd.DataFrame:
    """One row per index entry whose manifest answered 404 in the crawl: ``repository``, ``tag`` (the index's),
    ``index_digest``, ``digest`` (the missing entry) and ``index``: ``fallback`` for a referrers fallback
    tag (``sha256-<hex>``), ``image`` for any other index (a multi-platform image). These are not orphans:
    the index still exists and names content that is gone. Read from ``inv.tags`` and ``inv.errors``."""
    require_columns(tags, ("repository", "tag", "digest"), "dangling_entries (tags)")
    require_columns(errors, ("repository", "tag", "stage", "error"), "dangling_entries (errors)")
    stage = errors["stage"].astype(object).to_numpy()
    text = errors["error"].astype(object).to_numpy()
    found = []
    for repository, tag, where, message in zip(errors["repository"], errors["tag"], stage, text, strict=True):
        digest = missing_child(where, message)
        if digest is not None and pd.notna(tag):
            found.append((str(repository), str(tag), digest))
    frame = pd.DataFrame(found, columns=["repository", "tag", "digest"])
    listed = _strings(tags, ("repository", "tag", "digest")).rename(columns={"digest": "index_digest"})
    frame = frame.merge(listed, on=["repository", "tag"], how="left")
    frame["index"] = np.where([bool(_FALLBACK_TAG.fullmatch(tag)) for tag in frame["tag"]], "fallback", "image").astype(
        object
    )
    frame = frame[list(DANGLING_COLUMNS)].drop_duplicates(ignore_index=True)
    frame = frame.sort_values(["repository", "tag", "digest"], kind="stable", ignore_index=True)
    for column in DANGLING_COLUMNS:
        frame[column] = text_array(frame[column])
    frame.attrs.update(fallback=int((frame["index"] == "fallback").sum()), image=int((frame["index"] == "image").sum()))
    return frame


def _strings(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame({column: frame[column].astype(object).to_numpy() for column in columns})


def _count(frame: pd.DataFrame, repositories: list[str]) -> np.ndarray:
    counts = frame["repository"].value_counts()
    return counts.reindex(repositories, fill_value=0).to_numpy(dtype=np.int64)


def _sum(frame: pd.DataFrame, repositories: list[str]) -> np.ndarray:
    sums = frame.groupby("repository")["size"].sum()
    return sums.reindex(repositories, fill_value=0).to_numpy(dtype=np.int64)
