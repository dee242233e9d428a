"""Accessories follow their subject: a signature, SBOM, attestation or referrers list goes with its image.

An accessory tag is a tag all of whose manifest rows name a ``subject``: cosign's ``sha256-<hex>.sig``,
``.att`` and ``.sbom`` tags, the referrers fallback tag ``sha256-<hex>`` (its rows are the referrers it
lists), and tagged artifacts with a ``subject`` field. Its own dates and name never make it stale: it is
stale exactly when every tag that carries its subject (as the tag's digest or as one of its platforms) is
stale, and orphaned (stale too) when the subject is known to be absent: no tag in its repository carries
it and the crawl read every tag there. An accessory whose subject another repository carries, or in a
repository holding nothing but accessories, may be kept apart from its image (cosign's
``COSIGN_REPOSITORY``): it is never an orphan, and is kept. Accessories of accessories (a signature of an
attestation) follow in turn. :func:`orphaned` is that rule for callers that only count orphans (supply-chain coverage).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np
import pandas as pd

from ._frames import require_columns

# Carrier codes besides a tag's position: no tag carries the subject, or a tag with no row carries it.
_NONE, _UNREAD_TAG = -1, -2
# Crawl stages whose failure hides no tag: every tag read still has its manifest rows.
_HIDES_NO_TAG = frozenset({"config", "referrers", "referrer"})
# An index entry that answered 404 (a dangling entry): the entry is gone, so it hides nothing either. Any
# other failure of an entry may hide a platform that carries a subject.
_MISSING_CHILD = re.compile(r"child manifest ([a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+) is missing from ")


def missing_child(stage: object, message: object) -> str | None:
    """The digest of the index entry an ``errors`` row says is gone (404), or None for any other row."""
    if stage != "child manifest" or not isinstance(message, str):
        return None
    hit = _MISSING_CHILD.search(message)
    return hit.group(1) if hit else None


TAGS_COLUMNS = ("repository", "tag", "digest")
ERRORS_COLUMNS = ("repository", "stage")


class Accessories(NamedTuple):
    """The accessory tags among per-tag arrays: ``links`` holds one row per (position, subject) and
    ``subject`` the first subject (by digest) of each tag, None for tags that are not accessories."""

    links: pd.DataFrame
    subject: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return np.asarray(pd.notna(self.subject), dtype=bool)


def has_subjects(manifests: pd.DataFrame) -> bool:
    """Whether any row names a subject (frames from before artifact classification have no column)."""
    return "subject" in manifests.columns and bool(manifests["subject"].notna().any())


def no_accessories(count: int) -> Accessories:
    """``count`` tags, none an accessory."""
    empty = pd.DataFrame({"position": np.empty(0, dtype=np.int64), "subject": np.empty(0, dtype=object)})
    return Accessories(empty, np.full(count, None, dtype=object))


def find_accessories(manifests: pd.DataFrame, repository: np.ndarray, tag: np.ndarray) -> Accessories:
    """The accessory tags among the (``repository``, ``tag``) pairs given as object arrays."""
    if not has_subjects(manifests):
        return no_accessories(len(tag))
    subject = np.full(len(tag), None, dtype=object)
    links = _accessory_links(manifests)
    keys = pd.MultiIndex.from_arrays([np.asarray(repository, dtype=object), np.asarray(tag, dtype=object)])
    position = keys.get_indexer(pd.MultiIndex.from_frame(links[["repository", "tag"]]))
    links = pd.DataFrame({"position": position, "subject": links["subject"].to_numpy()})
    links = links[links["position"] >= 0].sort_values(["position", "subject"], kind="stable", ignore_index=True)
    first = links.drop_duplicates("position")
    subject[first["position"].to_numpy()] = first["subject"].to_numpy()
    return Accessories(links, subject)


def follow_subjects(
    manifests: pd.DataFrame,
    found: Accessories,
    repository: np.ndarray,
    tag: np.ndarray,
    stale: np.ndarray,
    reason: np.ndarray,
    *,
    fixed: np.ndarray | None = None,
    orphans: np.ndarray | None = None,
    tags: pd.DataFrame | None = None,
    errors: pd.DataFrame | None = None,
) -> np.ndarray:
    """Decide every accessory tag from its subject, in place: stale when each tag carrying a subject is
    stale, orphaned when the subject is known to be absent; kept otherwise. Returns which tags are orphans
    (no tag carries their subject), whatever was decided for them.

    ``fixed`` marks accessory tags whose decision stands (a keep pattern matched them). ``orphans`` marks the
    tags an orphan's fate may delete (a policy's governed tags; all when None): the others keep their
    reason. ``tags`` and ``errors`` (``inv.tags``, ``inv.errors``) say what a partial crawl saw besides the
    manifest rows; see :func:`orphaned`. The other tags' ``stale`` must be final."""
    n = len(tag)
    orphan = np.zeros(n, dtype=bool)
    if found.links.empty:
        return orphan
    todo = found.mask if fixed is None else found.mask & ~np.asarray(fixed, dtype=bool)
    if not todo.any():
        return orphan
    pairs = _carrier_pairs(manifests, found, repository, tag, tags)
    pairs = pairs[todo[pairs["position"].to_numpy()]].reset_index(drop=True)
    position = pairs["position"].to_numpy()
    carrier = pairs["carrier"].to_numpy()
    valid = carrier >= 0
    carried = np.zeros(n, dtype=bool)
    carried[position[carrier != _NONE]] = True
    apart = np.zeros(n, dtype=bool)
    names = np.asarray(repository, dtype=object)[position]
    np.logical_or.at(apart, position, kept_apart(names, pairs["subject"].to_numpy(), manifests, tags))
    orphan = todo & ~carried & ~apart
    allowed = np.ones(n, dtype=bool) if orphans is None else np.asarray(orphans, dtype=bool)
    unknown = orphan & allowed & unread(repository, errors)
    always_kept = (orphan & (unknown | ~allowed)) | (todo & ~carried & apart)
    always_kept[position[carrier == _UNREAD_TAG]] = True
    stale[todo] = False
    for _ in range(len(pairs) + 1):
        carrier_kept = np.zeros(len(pairs), dtype=bool)
        carrier_kept[valid] = ~stale[carrier[valid]]
        kept = always_kept.copy()
        kept[position[carrier_kept]] = True
        now_stale = todo & ~kept
        if np.array_equal(now_stale[todo], stale[todo]):
            break
        stale[todo] = now_stale[todo]
    _reasons(pairs, stale, reason, unknown, todo & ~carried & apart)
    return orphan


def check_crawl_frames(tags: object, errors: object, caller: str) -> None:
    """Refuse a ``tags`` or ``errors`` frame without the columns the orphan rule reads, before any work."""
    if tags is not None:
        require_columns(tags, TAGS_COLUMNS, f"{caller} (tags)")
    if errors is not None:
        require_columns(errors, ERRORS_COLUMNS, f"{caller} (errors)")


def carriers(
    manifests: pd.DataFrame, tags: pd.DataFrame | None = None, digests: np.ndarray | None = None
) -> pd.DataFrame:
    """(repository, subject, tag) for every tag and each digest it carries: as its digest or one of its
    platforms in ``manifests``, or as its digest in ``tags`` (``inv.tags`` lists a tag whose manifest a
    partial crawl read but whose rows it could not complete). ``digests`` limits the subjects looked for."""
    sources = [(manifests, column) for column in ("digest", "manifest_digest") if column in manifests.columns]
    if tags is not None:
        sources.append((tags, "digest"))
    parts = [pd.DataFrame({"repository": [], "subject": [], "tag": []}, dtype=object)]
    for frame, column in sources:
        values = frame[column]
        hit = frame["tag"].notna().to_numpy() & frame["repository"].notna().to_numpy() & values.notna().to_numpy()
        if digests is not None:
            hit &= values.isin(digests).to_numpy()
        parts.append(
            pd.DataFrame(
                {
                    "repository": frame["repository"].astype(object).to_numpy()[hit],
                    "subject": values.astype(object).to_numpy()[hit],
                    "tag": frame["tag"].astype(object).to_numpy()[hit],
                }
            )
        )
    return pd.concat(parts, ignore_index=True).drop_duplicates(ignore_index=True)


def unread(repository: np.ndarray, errors: pd.DataFrame | None) -> np.ndarray:
    """Per repository name, whether the crawl may have missed one of its tags, so that a subject not found
    there is not known to be absent: ``errors`` has a row for it, or one for the whole crawl (no repository:
    the catalog, a budget, an interruption). Unreadable configs and referrers hide no tag."""
    names = pd.Series(np.asarray(repository, dtype=object))
    if errors is None or errors.empty:
        return np.zeros(len(names), dtype=bool)
    stage = errors["stage"].astype(object).to_numpy()
    gone = [missing_child(where, text) is not None for where, text in zip(stage, _messages(errors), strict=True)]
    hides = ~pd.Series(stage).isin(_HIDES_NO_TAG).to_numpy() & ~np.asarray(gone, dtype=bool)
    where = errors["repository"].astype(object).to_numpy()[hides]
    if (pd.isna(where) | (where == "")).any():
        return np.ones(len(names), dtype=bool)
    return names.isin(set(where)).to_numpy()


def kept_apart(
    repository: np.ndarray, subject: np.ndarray, manifests: pd.DataFrame, tags: pd.DataFrame | None = None
) -> np.ndarray:
    """Whether each accessory (``repository``, ``subject``) may be kept apart from its image, as cosign does
    with ``COSIGN_REPOSITORY``: another repository's tag carries the subject, or the repository holds
    nothing but accessories (a signature store, whose images may sit in a repository the crawl did not
    read). Its subject missing here then says nothing, so it is never an orphan."""
    repository = np.asarray(repository, dtype=object)
    subject = np.asarray(subject, dtype=object)
    if len(subject) == 0:
        return np.zeros(0, dtype=bool)
    found = carriers(manifests, tags, pd.unique(subject))
    elsewhere = pd.MultiIndex.from_arrays([repository, subject]).isin(
        pd.MultiIndex.from_frame(found[["repository", "subject"]])
    )
    anywhere = pd.Series(subject).isin(set(found["subject"])).to_numpy()
    store = ~pd.Series(repository).isin(_repositories_with_images(manifests)).to_numpy()
    return np.asarray((anywhere & ~elsewhere) | store, dtype=bool)


def _repositories_with_images(manifests: pd.DataFrame) -> set[object]:
    """Repositories with at least one tag that is not an accessory (a row of it names no subject)."""
    tagged = manifests["tag"].notna().to_numpy() & manifests["repository"].notna().to_numpy()
    plain = tagged & (manifests["subject"].isna().to_numpy() if "subject" in manifests.columns else True)
    return set(manifests["repository"].astype(object).to_numpy()[plain])


def _messages(errors: pd.DataFrame) -> np.ndarray:
    if "error" not in errors.columns:
        return np.full(len(errors), None, dtype=object)
    return errors["error"].astype(object).to_numpy()


def orphaned(
    repository: np.ndarray,
    subject: np.ndarray,
    manifests: pd.DataFrame,
    *,
    tags: pd.DataFrame | None = None,
    errors: pd.DataFrame | None = None,
    present: pd.DataFrame | None = None,
) -> np.ndarray:
    """Whether each (``repository``, ``subject``) pair names a subject known to be absent: no tag of the
    repository carries it (:func:`carriers` of ``manifests`` and ``tags``), it is not among ``present``
    (more (repository, subject) pairs known to exist), and ``errors`` show the crawl read every tag there.
    A subject a partial crawl may have missed is never an orphan: deleting on a guess loses signatures."""
    repository = np.asarray(repository, dtype=object)
    subject = np.asarray(subject, dtype=object)
    found = carriers(manifests, tags, pd.unique(subject))[["repository", "subject"]]
    if present is not None:
        found = pd.concat([found, present[["repository", "subject"]].astype(object)], ignore_index=True)
    known = pd.MultiIndex.from_frame(found.drop_duplicates())
    absent = ~pd.MultiIndex.from_arrays([repository, subject]).isin(known)
    apart = kept_apart(repository, subject, manifests, tags)
    return np.asarray(absent & ~apart & ~unread(repository, errors), dtype=bool)


def _accessory_links(manifests: pd.DataFrame) -> pd.DataFrame:
    """(repository, tag, subject) for every tag whose rows all name a subject, each distinct once."""
    has = manifests["subject"].notna().to_numpy()
    repo = manifests["repository"].astype(object).to_numpy()
    tag = manifests["tag"].astype(object).to_numpy()
    tagged = pd.notna(repo) & pd.notna(tag)
    rows = pd.MultiIndex.from_arrays([repo, tag])
    candidates = rows[has & tagged].unique()
    chosen = tagged & rows.isin(candidates)
    frame = pd.DataFrame(
        {
            "repository": repo[chosen],
            "tag": tag[chosen],
            "subject": manifests["subject"].astype(object).to_numpy()[chosen],
            "has": has[chosen],
        }
    )
    whole = frame.groupby(["repository", "tag"], sort=False)["has"].transform("all").to_numpy(dtype=bool)
    return frame.loc[whole, ["repository", "tag", "subject"]].drop_duplicates(ignore_index=True)


def _carrier_pairs(
    manifests: pd.DataFrame, found: Accessories, repository: np.ndarray, tag: np.ndarray, tags: pd.DataFrame | None
) -> pd.DataFrame:
    """One row per (accessory position, subject, carrier position, carrier tag name): carrier ``_NONE``
    when no other tag of the repository carries the subject, ``_UNREAD_TAG`` for a tag of ``tags`` that
    has no row (nothing here deletes it)."""
    links = found.links.assign(repository=np.asarray(repository, dtype=object)[found.links["position"].to_numpy()])
    carried = carriers(manifests, tags, links["subject"].unique()).rename(columns={"tag": "carrier_tag"})
    keys = pd.MultiIndex.from_arrays([np.asarray(repository, dtype=object), np.asarray(tag, dtype=object)])
    where = keys.get_indexer(pd.MultiIndex.from_frame(carried[["repository", "carrier_tag"]]))
    carried["carrier"] = np.where(where >= 0, where, _UNREAD_TAG)
    pairs = links.merge(carried, on=["repository", "subject"], how="left")
    carrier = pairs["carrier"].fillna(_NONE).to_numpy(dtype=np.int64, copy=True)
    carrier[carrier == pairs["position"].to_numpy()] = _NONE
    pairs["carrier"] = carrier
    pairs.loc[carrier == _NONE, "carrier_tag"] = None
    return pairs[["position", "subject", "carrier", "carrier_tag"]].drop_duplicates(ignore_index=True)


def _reasons(
    pairs: pd.DataFrame, stale: np.ndarray, reason: np.ndarray, unknown: np.ndarray, apart: np.ndarray
) -> None:
    """Name the subject that decided each accessory, and the tags that carry it; an orphan whose subject the
    crawl may have missed, or one kept apart from its image, says so. Other kept orphans keep their reason."""
    carriers: dict[int, dict[str, list[tuple[int, str]]]] = {}
    for position, subject, carrier, name in zip(
        pairs["position"], pairs["subject"], pairs["carrier"], pairs["carrier_tag"], strict=True
    ):
        found = carriers.setdefault(int(position), {}).setdefault(str(subject), [])
        if carrier != _NONE:
            found.append((int(carrier), str(name)))
    for position, subjects in carriers.items():
        ordered = sorted(subjects.items())
        if not stale[position]:
            for subject, found in ordered:
                kept = sorted({name for c, name in found if c < 0 or not stale[c]})
                if kept:
                    reason[position] = f"kept: subject {subject} is kept (tag {_names(kept)})"
                    break
            else:
                if apart[position]:
                    reason[position] = (
                        f"kept: subject {ordered[0][0]} is not in this repository, but signatures may be kept "
                        "apart from their images (cosign's COSIGN_REPOSITORY): another repository carries it, "
                        "or this one holds nothing but accessories"
                    )
                elif unknown[position]:
                    reason[position] = (
                        f"kept: subject {ordered[0][0]} not found, but the crawl did not read every tag of "
                        "this repository"
                    )
            continue
        carried = [(subject, found) for subject, found in ordered if found]
        if not carried:
            reason[position] = f"orphaned: subject {ordered[0][0]} not found"
        else:
            subject, found = carried[0]
            reason[position] = f"subject {subject} is deleted with tag {_names(sorted({name for _, name in found}))}"


def _names(tags: list[str]) -> str:
    shown = ", ".join(f"'{t}'" for t in tags[:3])
    return shown + (f" and {len(tags) - 3} more" if len(tags) > 3 else "")
