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

from ..analysis.stale import TagRows, as_utc, check_age_from, hold_safety_rules, tag_frame, tag_rows


@dataclass
class TagTable:
    """One row per (repository, tag), newest first within each repository (the ``stale_tags`` order).

    ``created`` is what rules order and age by: with ``age_from="pushed"`` the push time where known.
    """

    rows: TagRows
    repository: np.ndarray
    tag: np.ndarray
    digest: np.ndarray
    created: pd.DatetimeIndex
    known: np.ndarray
    age: pd.TimedeltaIndex
    now: pd.Timestamp

    @classmethod
    def of(cls, rows: TagRows, now: pd.Timestamp) -> TagTable:
        repository, tag = rows.names()
        values = np.asarray(rows.digest_values, dtype=object)
        digest = np.asarray(pd.api.extensions.take(values, rows.digest, allow_fill=True), dtype=object)
        return cls(
            rows=rows,
            repository=repository,
            tag=tag,
            digest=digest,
            created=rows.dated,
            known=np.asarray(pd.notna(rows.dated), dtype=bool),
            age=pd.TimedeltaIndex(now - rows.dated),
            now=now,
        )

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def accessory(self) -> np.ndarray:
        return self.rows.accessory

    def governed(self) -> TagTable:
        """The table without accessory tags: what a policy's rules evaluate."""
        return TagTable.of(self.rows.take(~self.accessory), self.now)

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
    """The per-tag rows of ``manifests`` exactly as ``stale_tags`` builds them (a multi-platform tag's
    created is its newest platform's, its size the sum), so the result has its columns and dtypes."""
    check_age_from(age_from)
    at = as_utc(now)
    return TagTable.of(tag_rows(manifests, age_from, "Policy.evaluate"), at)


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
    hold_safety_rules(manifests, table.rows, deleted, reason, former=_without_verdict)

    result = tag_frame(manifests, table.rows, table.age, deleted, reason)
    result["rule"] = rule
    result.attrs = {"now": table.now, **(attrs or {})}
    return result


def _without_verdict(texts: Iterable[str]) -> np.ndarray:
    """'deleted by rule ...' as 'rule ... would delete it' for a reason that ends up keeping the tag."""
    return np.array([f"would be {text}" if text.startswith("deleted") else text for text in texts], dtype=object)


def newest_first(images: pd.DataFrame) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """Of a frame of images with ``tags`` (lists, sorted) and ``created``: the dates, which are known, and
    the order newest first (undated last, ties by first tag name), as ECR and Harbor count images."""
    created = pd.DatetimeIndex(images["created"])
    known = ~np.asarray(created.isna())
    newest = np.where(known, -created.asi8, np.iinfo(np.int64).max)
    order = np.lexsort(([t[0] for t in images["tags"]], newest))
    return created, known, order
