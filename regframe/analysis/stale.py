"""Which tags a cleanup may delete, with a human reason for every decision.

Keep rules always beat delete rules, and a tag that shares its digest with a kept
tag is kept too. A stale tag whose image is also a platform of a kept multi-platform
tag stays stale (its tag goes) and its reason says the manifest is kept. Accessories
(signatures, SBOMs, attestations, referrers lists) follow their subject
(``regframe.analysis.accessories``).

User-supplied patterns run with a time bound (the ``regex`` engine, in Python ``re``
syntax): a pattern that backtracks catastrophically raises a ValueError naming it
instead of hanging the caller.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ..patterns import BoundedPattern, compile_pattern
from ._frames import (
    STALE_COLUMNS,
    STALE_INPUT_COLUMNS,
    bool_mask,
    codes,
    each_name,
    lexical_rank,
    pair_keys,
    recode,
    require_columns,
    restore,
    text_array,
)
from .accessories import (
    Accessories,
    check_crawl_frames,
    find_accessories,
    follow_subjects,
    has_subjects,
    no_accessories,
)
from .duration import format_duration, parse_duration

PLAN_COLUMNS = ("repository", "tag", "digest", "created", "age", "reason")

Pattern = str | re.Pattern[str] | None


@dataclasses.dataclass(frozen=True)
class TagRows:
    """One row per (repository, tag) of a manifests frame, before any decision: what ``stale_tags`` and
    a policy's evaluation both decide on, built once. :func:`tag_rows` puts them in result order:
    repository, newest first, undated and accessory tags last, then tag name.

    Codes index the ``*_values``; ``repo_rank`` and ``tag_rank`` give each value's place in name order,
    so ties break the same for any dtype. ``created`` is the image's (its newest platform's), ``dated``
    what ages and ``keep_last`` go by: the push time where ``age_from="pushed"`` and ``by_push`` says
    it is known.
    """

    repo: np.ndarray
    tag: np.ndarray
    digest: np.ndarray
    created: pd.DatetimeIndex
    size: pd.api.extensions.ExtensionArray
    repo_values: pd.Index
    tag_values: pd.Index
    digest_values: pd.Index
    dated: pd.DatetimeIndex
    by_push: np.ndarray
    found: Accessories
    repo_rank: np.ndarray
    tag_rank: np.ndarray

    def __len__(self) -> int:
        return len(self.tag)

    @property
    def accessory(self) -> np.ndarray:
        return self.found.mask

    def names(self) -> tuple[np.ndarray, np.ndarray]:
        """Repository and tag names per row, as object arrays."""
        repo = np.asarray(self.repo_values.astype(object), dtype=object)[self.repo]
        tag = np.asarray(self.tag_values.astype(object), dtype=object)[self.tag]
        return repo, tag

    def take(self, rows: np.ndarray) -> TagRows:
        """The rows at the given positions, in that order, or those a boolean mask selects."""
        index = np.flatnonzero(rows) if rows.dtype == bool else rows
        return dataclasses.replace(
            self,
            repo=self.repo[index],
            tag=self.tag[index],
            digest=self.digest[index],
            created=self.created[index],
            size=self.size[index],
            dated=self.dated[index],
            by_push=self.by_push[index],
            found=_take_accessories(self.found, index),
        )


def check_stale_rules(
    older_than: str | int | dt.timedelta | pd.Timedelta = "90d",
    keep_last: int | None = None,
    keep: str | re.Pattern[str] | None = None,
    match: str | re.Pattern[str] | None = None,
) -> tuple[pd.Timedelta, int | None, BoundedPattern | None, BoundedPattern | None]:
    """``stale_tags``' rules checked, as it checks them (the threshold, the keep_last count and the compiled
    patterns): a widget or a diff refuses bad rules with these messages before any work."""
    return (
        parse_duration(older_than),
        _check_keep_last(keep_last),
        compile_pattern(keep, "keep"),
        compile_pattern(match, "match"),
    )


def stale_tags(
    manifests: pd.DataFrame,
    older_than: str | int | dt.timedelta | pd.Timedelta = "90d",
    keep_last: int | None = None,
    keep: Pattern = None,
    match: Pattern = None,
    now: str | dt.datetime | pd.Timestamp | None = None,
    age_from: str = "created",
    *,
    tags: pd.DataFrame | None = None,
    errors: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per (repository, tag) saying whether a cleanup may delete it, and why.

    A tag is stale when it matches ``match`` (``re.search``; every tag when None) and
    its image is older than ``older_than``. Kept regardless: tags matching ``keep``,
    the ``keep_last`` newest tags of each repository (ties broken by tag name), tags
    whose creation date is unknown, and any tag on the same digest as a kept tag in
    its repository. A stale tag whose digest is a platform (``manifest_digest``) of a
    kept multi-platform tag stays stale, and its reason adds that the manifest is kept:
    cleanup removes the tag, never the image the kept tag needs.

    Accessory tags (every row names a ``subject``: cosign's ``.sig``/``.att``/``.sbom`` tags, the
    referrers fallback tag ``sha256-<hex>``, tagged artifacts with a ``subject`` field) follow their
    subject: their own dates, ``older_than``, ``keep_last`` and ``match`` never decide them, and they
    take no ``keep_last`` place. One is stale exactly when every tag carrying its subject (as its digest
    or a platform) is stale ("subject sha256:... is deleted with tag '1.0'"), and orphaned when no tag
    of its repository carries the subject ("orphaned: subject sha256:... not found"); only ``keep``
    keeps it regardless. With a ``subject`` column in ``manifests``, the result has one too, naming each
    accessory's subject (missing for other tags).

    A tag on rmtag's throw-away manifest (a removal stopped between the placeholder's PUT and its DELETE,
    by SIGKILL say: the tag already names no image) is stale within ``match`` unless ``keep`` matches it,
    whatever its age, so the next cleanup finishes that removal.

    Give ``tags=inv.tags`` and ``errors=inv.errors`` when the crawl may be partial: a subject ``tags``
    shows tagged is never an orphan even when its manifest rows were not read, and in a repository the
    ``errors`` say was not read in full (or after a crawl that stopped early) a subject not found is not
    known to be absent, so its accessories are kept, saying so.

    A multi-platform tag's ``created`` is its newest platform's and
    its ``size`` the sum of its platforms' sizes. Untagged manifests are left out.
    Rows are sorted by repository, newest first, undated and accessory tags last.

    ``keep`` and ``match`` are Python ``re`` syntax (strings or compiled patterns);
    each search may take ``PATTERN_TIMEOUT`` seconds per tag before a ValueError.

    ``age_from="pushed"`` dates each tag by when its manifest was uploaded (the ``pushed`` column, which
    Google Artifact Registry and GCR reveal) for its age and the ``keep_last`` order; a tag without one
    falls back to its created date, and every dated reason says which date decided it.
    """
    check_age_from(age_from)
    check_crawl_frames(tags, errors, "stale_tags")
    threshold, limit, keep_rx, match_rx = check_stale_rules(older_than, keep_last, keep, match)
    at = as_utc(now)

    rows = tag_rows(manifests, age_from)
    accessory = rows.accessory
    known = pd.notna(rows.dated)
    newest = _among_newest(rows.repo_rank[rows.repo], known & ~accessory, limit)
    kept_by_pattern = _matches(keep_rx, rows, default=False)
    in_scope = _matches(match_rx, rows, default=True)
    age = at - rows.dated
    old = np.asarray(known & (age > threshold))
    words = format_duration(threshold)
    rules = [kept_by_pattern, newest, ~known, ~in_scope, ~old]
    reason = np.select(
        rules,
        [
            "kept: matches keep pattern",
            f"kept: among newest {limit}",
            "kept: creation date unknown",
            "kept: does not match pattern",
            f"newer than {words}",
        ],
        default=f"older than {words}",
    ).astype(object)
    if age_from == "pushed":
        _say_which_date(reason, ~kept_by_pattern & (newest | ~known | in_scope), known, rows.by_push)
    stale = ~np.logical_or.reduce(rules)
    stale[accessory] = False
    leftover = interrupted_removals(manifests, rows) & in_scope & ~kept_by_pattern
    stale[leftover] = True
    reason[leftover] = INTERRUPTED_REMOVAL
    hold_safety_rules(manifests, rows, stale, reason, fixed=kept_by_pattern, tags=tags, errors=errors)

    result = tag_frame(manifests, rows, age, stale, reason)
    result.attrs.update(older_than=threshold, now=at, keep=keep, keep_last=keep_last, match=match, age_from=age_from)
    return result


# The artifact type a crawl gives rmtag's placeholder (``client.mediatypes.PLACEHOLDER_TYPE``; analysis
# imports nothing from the client, and the SIGKILL test in test_faults.py checks the two agree).
PLACEHOLDER_TYPE = "application/vnd.io.regframe.placeholder"
INTERRUPTED_REMOVAL = (
    "on regframe's placeholder: a removal was stopped before its end, and removing the tag finishes it"
)


def interrupted_removals(manifests: pd.DataFrame, rows: TagRows) -> np.ndarray:
    """Which of ``rows`` are tags left on rmtag's throw-away manifest (``artifact_type`` is
    ``PLACEHOLDER_TYPE``): the image they named was already untagged when the removal stopped."""
    if "artifact_type" not in manifests.columns:
        return np.zeros(len(rows), dtype=bool)
    hit = manifests["artifact_type"].astype(object).to_numpy() == PLACEHOLDER_TYPE
    if not hit.any():
        return np.zeros(len(rows), dtype=bool)
    on_placeholder = rows.digest_values.isin(manifests["digest"].astype(object).to_numpy()[hit])
    found: np.ndarray = np.asarray(on_placeholder, dtype=bool)[rows.digest] & (rows.digest >= 0)
    return found


AGE_FROM = ("created", "pushed")
# The words a reason ends with under age_from="pushed", saying which date decided it.
BY_PUSH_TIME = "by push time"
BY_CREATED_DATE = "by created date; push time not available"


def check_age_from(age_from: object) -> None:
    if age_from not in AGE_FROM:
        raise ValueError(f"age_from must be 'created' or 'pushed', not {age_from!r}")


def _dates(manifests: pd.DataFrame, rows: TagRows, age_from: str) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Each tag's date for its age, and whether it is its push time: with ``age_from="pushed"`` the
    ``pushed`` column where known, else ``created``."""
    no_push = np.zeros(len(rows.tag), dtype=bool)
    if age_from != "pushed" or "pushed" not in manifests.columns:
        return rows.created, no_push
    repo, _ = codes(manifests["repository"])
    tag, _ = codes(manifests["tag"])
    tagged = (repo >= 0) & (tag >= 0)
    width = len(rows.tag_values)
    pushed = pd.Series(pd.to_datetime(manifests["pushed"], utc=True).array[tagged])
    per_tag = pushed.groupby(pair_keys(repo[tagged], tag[tagged], width)).max()
    when = pd.DatetimeIndex(per_tag.reindex(pair_keys(rows.repo, rows.tag, width)).to_numpy(), tz="UTC")
    by_push = ~np.asarray(when.isna())
    return pd.DatetimeIndex(np.where(by_push, when, rows.created), tz="UTC").as_unit("ns"), by_push


def _say_which_date(reason: np.ndarray, dated_reason: np.ndarray, known: np.ndarray, by_push: np.ndarray) -> None:
    """With ``age_from="pushed"``: each reason a date decided names the date, or that there was none."""
    reason[dated_reason & known & by_push] += f" ({BY_PUSH_TIME})"
    reason[dated_reason & known & ~by_push] += f" ({BY_CREATED_DATE})"
    reason[dated_reason & ~known] = "kept: push time and creation date unknown"


def tag_rows(manifests: pd.DataFrame, age_from: str, caller: str = "stale_tags") -> TagRows:
    """The per-tag rows of ``manifests`` in result order, dated as ``age_from`` says; ``caller`` is named
    when a column is missing."""
    require_columns(manifests, STALE_INPUT_COLUMNS, caller)
    rows = _per_tag(manifests)
    dated, by_push = _dates(manifests, rows, age_from)
    found = _accessories(manifests, rows)
    ranked = pd.notna(dated) & ~found.mask
    newest_first = np.where(ranked, -dated.asi8, np.iinfo(np.int64).max)
    order = np.lexsort((rows.tag_rank[rows.tag], newest_first, rows.repo_rank[rows.repo]))
    return dataclasses.replace(rows, dated=dated, by_push=by_push, found=found).take(order)


def tag_frame(
    manifests: pd.DataFrame, rows: TagRows, age: pd.TimedeltaIndex, stale: np.ndarray, reason: np.ndarray
) -> pd.DataFrame:
    """The ``stale_tags`` frame of ``rows`` with these decisions; the value columns keep the input's dtypes."""
    result = pd.DataFrame(
        {
            "repository": _names(rows.repo, rows.repo_values, manifests["repository"]),
            "tag": _names(rows.tag, rows.tag_values, manifests["tag"]),
            "digest": _names(rows.digest, rows.digest_values, manifests["digest"]),
            "created": rows.created,
            "age": pd.TimedeltaIndex(age),
            "size": rows.size,
            "stale": stale,
            "reason": text_array(reason),
        }
    )
    if "subject" in manifests.columns:
        result["subject"] = text_array(rows.found.subject)
    return result


def _names(idx: np.ndarray, values: pd.Index, like: pd.Series) -> Any:
    """``restore``, with plain names given the text dtype rather than left to inference, which makes a column
    without rows object."""
    column = restore(idx, values, like)
    if isinstance(column, pd.Categorical) or pd.api.types.infer_dtype(column, skipna=True) not in ("string", "empty"):
        return column
    return text_array(column)


def _per_tag(manifests: pd.DataFrame) -> TagRows:
    """Collapse platform rows to one per (repository, tag): newest created, summed size; dated by
    created, no accessories yet."""
    repo, repo_values = codes(manifests["repository"])
    tag, tag_values = codes(manifests["tag"])
    digest, digest_values = codes(manifests["digest"])
    tagged = (repo >= 0) & (tag >= 0)
    group, _ = pd.factorize(pair_keys(repo[tagged], tag[tagged], len(tag_values)))
    first = np.flatnonzero(tagged)[pd.Series(group).drop_duplicates().index.to_numpy()]

    created = pd.Series(pd.to_datetime(manifests["created"], utc=True).array[tagged])
    size = pd.Series(manifests["size"].astype("Int64").array[tagged])
    newest = pd.DatetimeIndex(created.groupby(group, sort=True).max()).as_unit("ns")
    return TagRows(
        repo=repo[first],
        tag=tag[first],
        digest=digest[first],
        created=newest,
        size=size.groupby(group, sort=True).sum(min_count=1).array,
        repo_values=repo_values,
        tag_values=tag_values,
        digest_values=digest_values,
        dated=newest,
        by_push=np.zeros(len(first), dtype=bool),
        found=no_accessories(len(first)),
        repo_rank=lexical_rank(repo_values),
        tag_rank=lexical_rank(tag_values),
    )


def _accessories(manifests: pd.DataFrame, rows: TagRows) -> Accessories:
    if not has_subjects(manifests):
        return no_accessories(len(rows))
    return find_accessories(manifests, *rows.names())


def _take_accessories(found: Accessories, index: np.ndarray) -> Accessories:
    """``found`` for the tags at ``index``, as ``find_accessories`` would give it for them."""
    if found.links.empty:
        return Accessories(found.links, found.subject[index])
    moved = np.full(len(found.subject), -1, dtype=np.int64)
    moved[index] = np.arange(len(index))
    links = found.links.assign(position=moved[found.links["position"].to_numpy()])
    links = links[links["position"] >= 0].sort_values(["position", "subject"], kind="stable", ignore_index=True)
    return Accessories(links, found.subject[index])


def cleanup_plan(stale: pd.DataFrame) -> pd.DataFrame:
    """The stale rows only, oldest first within each repository: what the deletion step gets."""
    require_columns(stale, STALE_COLUMNS, "cleanup_plan")
    mask = bool_mask(stale, "stale", "cleanup_plan")
    plan = stale.loc[mask, list(PLAN_COLUMNS)]
    plan = plan.sort_values(
        ["repository", "created", "tag"], key=_lexical_key, na_position="last", kind="stable", ignore_index=True
    )
    plan.attrs = dict(stale.attrs)
    return plan


def _lexical_key(column: pd.Series) -> pd.Series:
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.astype(str)
    return column


def _check_keep_last(keep_last: object) -> int | None:
    if keep_last is None:
        return None
    if isinstance(keep_last, bool) or not isinstance(keep_last, (int, np.integer)) or keep_last < 0:
        raise ValueError(f"keep_last must be a non-negative int or None, got {keep_last!r}")
    return int(keep_last)


def as_utc(now: object) -> pd.Timestamp:
    if now is None:
        return pd.Timestamp.now(tz="UTC")
    if not isinstance(now, (str, int, float, dt.date, np.datetime64, np.integer)):
        raise ValueError(f"now={now!r} is not a date/time")
    try:
        stamp = pd.Timestamp(now)
    except (ValueError, TypeError, OverflowError) as err:
        raise ValueError(f"now={now!r} is not a date/time: {err}") from None
    if pd.isna(stamp):
        raise ValueError(f"now={now!r} is not a date/time")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _matches(rx: BoundedPattern | None, rows: TagRows, default: bool) -> np.ndarray:
    """``rx.search`` per tag, run once per distinct tag name, each within the pattern time bound."""
    if rx is None:
        return np.full(len(rows), default)
    return each_name(rx.search, rows.tag, rows.tag_values, rows.tag_rank)


def _among_newest(repo_rank: np.ndarray, known: npt.NDArray[np.bool_], limit: int | None) -> np.ndarray:
    """The ``limit`` newest dated tags of each repository, given rows sorted by
    repository, then newest first (undated last), then tag name."""
    if not limit:
        return np.zeros(len(repo_rank), dtype=bool)
    group_start = np.flatnonzero(np.r_[True, repo_rank[1:] != repo_rank[:-1]])
    sizes = np.diff(np.r_[group_start, len(repo_rank)])
    position = np.arange(len(repo_rank)) - np.repeat(group_start, sizes)
    return (position < limit) & known


def hold_safety_rules(
    manifests: pd.DataFrame,
    rows: TagRows,
    stale: np.ndarray,
    reason: np.ndarray,
    *,
    fixed: np.ndarray | None = None,
    former: Callable[[np.ndarray], np.ndarray] | None = None,
    orphans: np.ndarray | None = None,
    tags: pd.DataFrame | None = None,
    errors: pd.DataFrame | None = None,
) -> np.ndarray:
    """The rules every cleanup decision ends with, whoever made it, applied in place; returns which tags are
    orphaned accessories.

    Digest siblings of kept tags are kept, accessories follow their subject (``fixed`` marks those whose
    decision stands; ``stale`` must be False for the others; ``orphans``, ``tags`` and ``errors`` as
    :func:`~regframe.analysis.accessories.follow_subjects` takes them), and a stale tag whose image a kept
    index lists says so. ``former`` is :func:`_keep_digest_siblings`' wording of a sibling's former reason.
    """
    _keep_digest_siblings(stale, reason, rows, former=former)
    orphan = np.zeros(len(rows), dtype=bool)
    if rows.accessory.any():
        orphan = follow_subjects(
            manifests, rows.found, *rows.names(), stale, reason, fixed=fixed, orphans=orphans, tags=tags, errors=errors
        )
        _keep_digest_siblings(stale, reason, rows, former=former)
    _note_children_of_kept_indexes(manifests, stale, reason, rows)
    return orphan


def _keep_digest_siblings(
    stale: np.ndarray, reason: np.ndarray, rows: TagRows, *, former: Callable[[np.ndarray], np.ndarray] | None = None
) -> None:
    """Keep stale tags whose digest a kept tag of the same repository also carries.

    The reason names the kept sibling that comes first by name, so it is stable. It replaces the
    former reason, or goes on with ``former(former reasons)`` after "; " when that is given.
    """
    keys = pair_keys(rows.repo, rows.digest, len(rows.digest_values))
    tag_rank = rows.tag_rank[rows.tag]
    kept = ~stale & (rows.digest >= 0)
    first_kept = (
        pd.DataFrame({"key": keys[kept], "rank": tag_rank[kept], "tag": rows.tag[kept]})
        .sort_values("rank", kind="stable")
        .drop_duplicates("key")
    )
    where = pd.Index(first_kept["key"]).get_indexer(keys)
    saved = stale & (where >= 0) & (rows.digest >= 0)
    if not saved.any():
        return
    sibling = rows.tag_values.take(first_kept["tag"].to_numpy()[where[saved]]).astype(str)
    words = "kept: shares digest with kept tag '" + pd.Series(sibling) + "'"
    if former is not None:
        words = words + "; " + pd.Series(former(reason[saved]), dtype=object)
    reason[saved] = words.to_numpy()
    stale[saved] = False


def _note_children_of_kept_indexes(
    manifests: pd.DataFrame, stale: np.ndarray, reason: np.ndarray, rows: TagRows
) -> None:
    """Say so when a stale tag's image is also a platform of a kept multi-platform tag.

    The tag stays stale: cleanup removes tags without deleting their images, so the kept
    index keeps resolving. The reason names the kept index tag first by name.
    """
    if "manifest_digest" not in manifests.columns or not stale.any():
        return
    repo, _ = codes(manifests["repository"])
    tag, _ = codes(manifests["tag"])
    digest, _ = codes(manifests["digest"])
    child = recode(manifests["manifest_digest"], rows.digest_values)
    n_tag, n_digest = len(rows.tag_values), len(rows.digest_values)
    kept_tags = pair_keys(rows.repo[~stale], rows.tag[~stale], n_tag)
    platform_row = (repo >= 0) & (tag >= 0) & (child >= 0) & (child != digest)
    platform_row &= pd.Series(pair_keys(repo, tag, n_tag)).isin(kept_tags).to_numpy()
    if not platform_row.any():
        return
    parents = (
        pd.DataFrame(
            {
                "key": pair_keys(repo[platform_row], child[platform_row], n_digest),
                "rank": rows.tag_rank[tag[platform_row]],
                "tag": tag[platform_row],
            }
        )
        .sort_values("rank", kind="stable")
        .drop_duplicates("key")
    )
    where = pd.Index(parents["key"]).get_indexer(pair_keys(rows.repo, rows.digest, n_digest))
    noted = stale & (where >= 0) & (rows.digest >= 0)
    if not noted.any():
        return
    parent = rows.tag_values.take(parents["tag"].to_numpy()[where[noted]]).astype(str)
    reason[noted] = (
        pd.Series(reason[noted].astype(str)) + "; manifest kept as a child of kept index '" + pd.Series(parent) + "'"
    ).to_numpy()
