"""The tags a policy sees, and its decisions turned into a ``stale_tags``-shaped frame with safety rules applied.

Every format's evaluator works on one row per (repository, tag) and returns three arrays: deleted,
rule, reason. :func:`finish` then applies the rules ``stale_tags`` applies to any plan: a tag whose
creation date is unknown is kept, and a tag on the same digest as a kept tag of its repository is
kept (removing the image would take the kept tag with it). A deleted tag whose image is also a
platform of a kept multi-platform tag stays deleted (only its tag goes) and its reason says so.

Accessory tags (signatures, SBOMs, attestations, referrers fallback tags) are not shown to the rules,
so they take no ``keep_last`` or image-count place; :func:`finish` decides them by their subject, as
``stale_tags`` does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..analysis.accessories import find_accessories, follow_subjects
from ..analysis.stale import stale_tags


@dataclass
class TagTable:
    """One row per (repository, tag), newest first within each repository (the ``stale_tags`` order)."""

    frame: pd.DataFrame
    repository: np.ndarray
    tag: np.ndarray
    digest: np.ndarray
    created: pd.DatetimeIndex
    known: np.ndarray
    age: pd.TimedeltaIndex
    now: pd.Timestamp
    subject: np.ndarray

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def accessory(self) -> np.ndarray:
        return np.asarray(pd.notna(self.subject), dtype=bool)

    def governed(self) -> TagTable:
        """The table without accessory tags: what a policy's rules evaluate."""
        keep = ~self.accessory
        return TagTable(
            frame=self.frame[keep].reset_index(drop=True),
            repository=self.repository[keep],
            tag=self.tag[keep],
            digest=self.digest[keep],
            created=self.created[keep],
            known=self.known[keep],
            age=self.age[keep],
            now=self.now,
            subject=self.subject[keep],
        )

    def spread(self, decided: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decisions made on :meth:`governed` placed back on every row; accessory rows undecided."""
        keep = ~self.accessory
        deleted = np.zeros(len(self), dtype=bool)
        rule = np.full(len(self), "", dtype=object)
        reason = np.full(len(self), "", dtype=object)
        deleted[keep], rule[keep], reason[keep] = decided
        return deleted, rule, reason


def tag_table(
    manifests: pd.DataFrame, now: str | dt.datetime | pd.Timestamp | None, age_from: str = "created"
) -> TagTable:
    """The per-tag rows of ``manifests`` (a multi-platform tag's created is its newest platform's,
    its size the sum), built by ``stale_tags`` so the columns and dtypes are exactly its own.
    With ``age_from="pushed"`` the table's ``created`` (what rules order and age by) is the push time
    where known; the frame's ``created`` column stays the image's."""
    frame = stale_tags(manifests, older_than=0, now=now, age_from=age_from).reset_index(drop=True)
    at = frame.attrs["now"]
    created = pd.DatetimeIndex(frame["created"] if age_from == "created" else at - frame["age"])
    return TagTable(
        frame=frame,
        repository=frame["repository"].astype(object).to_numpy(),
        tag=frame["tag"].astype(object).to_numpy(),
        digest=frame["digest"].astype(object).to_numpy(),
        created=created,
        known=~np.asarray(created.isna()),
        age=pd.TimedeltaIndex(frame["age"]),
        now=at,
        subject=(frame["subject"] if "subject" in frame.columns else pd.Series(None, index=frame.index))
        .astype(object)
        .to_numpy(),
    )


def finish(
    table: TagTable,
    manifests: pd.DataFrame,
    deleted: np.ndarray,
    rule: np.ndarray,
    reason: np.ndarray,
    *,
    attrs: dict | None = None,
) -> pd.DataFrame:
    """The result frame: ``stale_tags`` columns (``stale`` the final decision) plus ``rule``."""
    deleted = np.array(deleted, dtype=bool)
    reason = np.array(reason, dtype=object)
    rule = np.array(rule, dtype=object)

    undated = deleted & ~table.known
    reason[undated] = "kept: creation date unknown; " + _without_verdict(reason[undated])
    deleted &= ~undated

    _keep_digest_siblings(table, deleted, reason)
    accessory = table.accessory
    if accessory.any():
        found = find_accessories(manifests, table.repository, table.tag)
        follow_subjects(manifests, found, table.repository, table.tag, deleted, reason)
        _keep_digest_siblings(table, deleted, reason)
    _note_children_of_kept_indexes(table, manifests, deleted, reason)

    result = table.frame.copy()
    result["stale"] = deleted
    result["reason"] = reason
    result["rule"] = rule
    result.attrs = {"now": table.now, **(attrs or {})}
    return result


def _without_verdict(texts: Iterable[str]) -> np.ndarray:
    """'deleted by rule ...' as 'rule ... would delete it' for a reason that ends up keeping the tag."""
    return np.array([f"would be {text}" if text.startswith("deleted") else text for text in texts], dtype=object)


def _keep_digest_siblings(table: TagTable, deleted: np.ndarray, reason: np.ndarray) -> None:
    """Keep deleted tags whose digest a kept tag of the same repository carries; the reason names
    that tag (the first by name, so it is stable)."""
    kept_by: dict[tuple[str, str], str] = {}
    for i in np.flatnonzero(~deleted):
        key = (table.repository[i], table.digest[i])
        if table.digest[i] is not None and (key not in kept_by or table.tag[i] < kept_by[key]):
            kept_by[key] = table.tag[i]
    for i in np.flatnonzero(deleted):
        sibling = kept_by.get((table.repository[i], table.digest[i]))
        if sibling is not None:
            deleted[i] = False
            reason[i] = f"kept: shares digest with kept tag '{sibling}'; {_without_verdict([reason[i]])[0]}"


def _note_children_of_kept_indexes(
    table: TagTable, manifests: pd.DataFrame, deleted: np.ndarray, reason: np.ndarray
) -> None:
    """Say so when a deleted tag's image is also a platform of a kept multi-platform tag: only the tag
    goes, the kept index keeps resolving."""
    if "manifest_digest" not in manifests.columns or not deleted.any():
        return
    kept = pd.DataFrame({"repository": table.repository[~deleted], "tag": table.tag[~deleted]})
    rows = pd.DataFrame(
        {
            "repository": manifests["repository"].astype(object),
            "tag": manifests["tag"].astype(object),
            "digest": manifests["digest"].astype(object),
            "child": manifests["manifest_digest"].astype(object),
        }
    )
    rows = rows[rows["child"].notna() & (rows["child"] != rows["digest"])]
    rows = rows.merge(kept, on=["repository", "tag"])
    if rows.empty:
        return
    parent = rows.sort_values("tag").drop_duplicates(["repository", "child"])
    parent_of = dict(zip(zip(parent["repository"], parent["child"]), parent["tag"]))
    for i in np.flatnonzero(deleted):
        tag = parent_of.get((table.repository[i], table.digest[i]))
        if tag is not None:
            reason[i] = f"{reason[i]}; manifest kept as a child of kept index '{tag}'"


def push_known(manifests: pd.DataFrame, result: pd.DataFrame) -> np.ndarray:
    """Per row of a per-tag ``result``: whether ``manifests`` holds the tag's push time."""
    if "pushed" not in manifests.columns:
        return np.zeros(len(result), dtype=bool)
    rows = pd.DataFrame(
        {
            "repository": manifests["repository"].astype(object),
            "tag": manifests["tag"].astype(object),
            "pushed": pd.to_datetime(manifests["pushed"], utc=True),
        }
    )
    known = rows[rows["pushed"].notna()].drop_duplicates(["repository", "tag"])
    keys = pd.MultiIndex.from_frame(known[["repository", "tag"]])
    wanted = pd.MultiIndex.from_arrays([result["repository"].astype(object), result["tag"].astype(object)])
    return np.asarray(wanted.isin(keys), dtype=bool)


def newest_first(images: pd.DataFrame) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """Of a frame of images with ``tags`` (lists, sorted) and ``created``: the dates, which are known, and
    the order newest first (undated last, ties by first tag name), as ECR and Harbor count images."""
    created = pd.DatetimeIndex(images["created"])
    known = ~np.asarray(created.isna())
    newest = np.where(known, -created.asi8, np.iinfo(np.int64).max)
    order = np.lexsort(([t[0] for t in images["tags"]], newest))
    return created, known, order
