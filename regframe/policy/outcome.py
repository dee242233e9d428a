"""The tags a policy sees, and its decisions turned into a ``stale_tags``-shaped frame with safety rules applied.

Every format's evaluator works on one row per (repository, tag) and returns three arrays: deleted,
rule, reason. :func:`finish` then applies the rules ``stale_tags`` applies to any plan: a tag whose
creation date is unknown is kept, and a tag on the same digest as a kept tag of its repository is
kept (removing the image would take the kept tag with it). A deleted tag whose image is also a
platform of a kept multi-platform tag stays deleted (only its tag goes) and its reason says so.

Accessory tags (signatures, SBOMs, attestations, referrers fallback tags) are not shown to the rules,
so they take no ``keep_last`` or image-count place; :func:`finish` decides them by their subject, as
``stale_tags`` does. Only the rules' scope is asked about them: an orphan (no subject to follow) is deleted
only when the policy governs it, since a policy never touches a tag outside its scope.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..analysis._frames import pair_keys
from ..analysis.stale import (
    INTERRUPTED_REMOVAL,
    TagRows,
    as_utc,
    check_age_from,
    hold_safety_rules,
    interrupted_removals,
    tag_frame,
    tag_rows,
)


@dataclass
class TagTable:
    """One row per (repository, tag), newest first within each repository (the ``stale_tags`` order).

    ``created`` is what rules order and age by: with ``age_from="pushed"`` the push time where known.
    """

    rows: TagRows
    created: pd.DatetimeIndex
    known: np.ndarray
    age: pd.TimedeltaIndex
    now: pd.Timestamp
    # Tags left on rmtag's placeholder: like accessories, only the policy's scope decides them.
    leftover: np.ndarray

    @classmethod
    def of(cls, rows: TagRows, now: pd.Timestamp, leftover: np.ndarray | None = None) -> TagTable:
        return cls(
            rows=rows,
            created=rows.dated,
            known=np.asarray(pd.notna(rows.dated), dtype=bool),
            age=pd.TimedeltaIndex(now - rows.dated),
            now=now,
            leftover=np.zeros(len(rows), dtype=bool) if leftover is None else leftover,
        )

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def accessory(self) -> np.ndarray:
        return self.rows.accessory

    @property
    def apart(self) -> np.ndarray:
        """The tags the rules do not see: accessories and tags left on a placeholder."""
        return self.rows.accessory | self.leftover

    def governed(self) -> TagTable:
        """The table without the tags decided apart: what a policy's rules evaluate."""
        return TagTable.of(self.rows.take(~self.apart), self.now)

    def accessories(self) -> TagTable:
        """The tags decided apart, alone: what a policy's scope is asked about."""
        return TagTable.of(self.rows.take(self.apart), self.now)

    def spread(
        self, decided: tuple[np.ndarray, np.ndarray, np.ndarray], scope: tuple[np.ndarray, np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Decisions made on :meth:`governed` and the scope of :meth:`accessories` (governed, governing rules,
        reason when not governed) placed back on every row: deleted, rule, reason, and which accessory tags
        the policy governs. Accessory rows stay undecided until :func:`finish`."""
        keep = ~self.apart
        deleted = np.zeros(len(self), dtype=bool)
        rule = np.full(len(self), "", dtype=object)
        reason = np.full(len(self), "", dtype=object)
        governed = np.zeros(len(self), dtype=bool)
        deleted[keep], rule[keep], reason[keep] = decided
        governed[~keep], rule[~keep], reason[~keep] = scope
        return deleted, rule, reason, governed


def tag_table(
    manifests: pd.DataFrame, now: str | dt.datetime | pd.Timestamp | None, age_from: str = "created"
) -> TagTable:
    """The per-tag rows of ``manifests`` exactly as ``stale_tags`` builds them (a multi-platform tag's
    created is its newest platform's, its size the sum), so the result has its columns and dtypes."""
    check_age_from(age_from)
    at = as_utc(now)
    rows = tag_rows(manifests, age_from, "Policy.evaluate")
    return TagTable.of(rows, at, interrupted_removals(manifests, rows))


def finish(
    table: TagTable,
    manifests: pd.DataFrame,
    deleted: np.ndarray,
    rule: np.ndarray,
    reason: np.ndarray,
    governed: np.ndarray,
    *,
    attrs: dict | None = None,
    tags: pd.DataFrame | None = None,
    errors: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The result frame: ``stale_tags`` columns (``stale`` the final decision) plus ``rule``.

    ``governed`` marks the accessory tags the policy's scope covers: only those may go as orphans, and
    ``rule`` names the governing rules for orphans only (the others follow their subject, not a rule).
    ``attrs["followed_accessories"]`` counts the covered accessory tags that follow their subject, where
    a product seeing them as ordinary tags would decide them apart."""
    deleted = np.array(deleted, dtype=bool)
    reason = np.array(reason, dtype=object)
    rule = np.array(rule, dtype=object)

    undated = deleted & ~table.known
    reason[undated] = "kept: creation date unknown; " + _without_verdict(reason[undated])
    deleted &= ~undated
    leftover = table.leftover & governed
    deleted[leftover] = True
    reason[leftover] = INTERRUPTED_REMOVAL
    orphan = hold_safety_rules(
        manifests,
        table.rows,
        deleted,
        reason,
        former=_without_verdict,
        orphans=governed,
        tags=tags,
        errors=errors,
    )
    rule[table.accessory & ~orphan] = ""

    result = tag_frame(manifests, table.rows, table.age, deleted, reason)
    result["rule"] = rule
    followed = int((table.accessory & governed & ~orphan).sum())
    result.attrs = {"now": table.now, "followed_accessories": followed, **(attrs or {})}
    return result


def _without_verdict(texts: Iterable[str]) -> np.ndarray:
    """'deleted by rule ...' as 'rule ... would delete it' for a reason that ends up keeping the tag."""
    return np.array([f"would be {text}" if text.startswith("deleted") else text for text in texts], dtype=object)


@dataclass
class Artifacts:
    """One entry per (repository, digest) of a table: an image with all its tags, which ECR and Harbor
    select, count and expire as a whole."""

    of_row: np.ndarray
    repo: np.ndarray
    created: pd.DatetimeIndex
    known: np.ndarray
    order: np.ndarray

    def __len__(self) -> int:
        return len(self.repo)

    def any_tag(self, hit: np.ndarray) -> np.ndarray:
        """Per artifact, whether any of its rows (tags) is hit."""
        return np.bincount(self.of_row, weights=hit, minlength=len(self)) > 0

    def newer_selected(self, selected: np.ndarray) -> np.ndarray:
        """Per artifact, how many selected artifacts of its repository come before it newest first:
        the K newest selected are those below K."""
        chosen = selected[self.order].astype(np.int64)
        before = np.cumsum(chosen) - chosen
        repo = self.repo[self.order]
        first = np.r_[True, repo[1:] != repo[:-1]][: len(repo)]
        place = np.empty(len(self), dtype=np.int64)
        place[self.order] = before - before[np.flatnonzero(first)][np.cumsum(first) - 1]
        return place


def artifacts(table: TagTable) -> Artifacts:
    """The table's artifacts, dated by their newest tag and ordered per repository newest first (undated
    last, ties by first tag name), as ECR and Harbor count images."""
    rows = table.rows
    key = pair_keys(rows.repo, rows.digest + 1, len(rows.digest_values) + 1)
    of_row, keys = pd.factorize(key)
    of_row = of_row.astype(np.int64, copy=False)
    per_artifact = (
        pd.DataFrame({"created": table.created, "first_tag": rows.tag_rank[rows.tag]})
        .groupby(of_row, sort=True)
        .agg(created=("created", "max"), first_tag=("first_tag", "min"))
    )
    repo = np.asarray(keys, dtype=np.int64) // (len(rows.digest_values) + 1)
    created = pd.DatetimeIndex(per_artifact["created"])
    known = ~np.asarray(created.isna())
    newest = np.where(known, -created.asi8, np.iinfo(np.int64).max)
    order = np.lexsort((per_artifact["first_tag"].to_numpy(), newest, rows.repo_rank[repo]))
    return Artifacts(of_row=of_row, repo=repo, created=created, known=known, order=order)


def apply_verdicts(
    outcome: np.ndarray,
    verdict: Callable[[int], tuple[bool, str, str]],
    found: Artifacts,
    where: np.ndarray,
    decided: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """Write each artifact's (deleted, rule, reason) to its rows that ``where`` marks. ``outcome`` codes
    what decided each artifact, so ``verdict`` and its texts run once per distinct code, not per artifact."""
    codes, which = np.unique(outcome, return_inverse=True)
    verdicts = [verdict(code) for code in codes.tolist()]
    per_row = which.reshape(-1)[found.of_row[where]]
    deleted, rule, reason = decided
    deleted[where] = np.array([v[0] for v in verdicts], dtype=bool)[per_row]
    rule[where] = np.array([v[1] for v in verdicts], dtype=object)[per_row]
    reason[where] = np.array([v[2] for v in verdicts], dtype=object)[per_row]
