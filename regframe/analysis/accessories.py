"""Accessories follow their subject: a signature, SBOM, attestation or referrers list goes with its image.

An accessory tag is a tag all of whose manifest rows name a ``subject``: cosign's ``sha256-<hex>.sig``,
``.att`` and ``.sbom`` tags, the referrers fallback tag ``sha256-<hex>`` (its rows are the referrers it
lists), and tagged artifacts with a ``subject`` field. Its own dates and name never make it stale: it is
stale exactly when every tag that carries its subject (as the tag's digest or as one of its platforms) is
stale, and orphaned (stale too) when no tag in its repository carries the subject. Accessories of
accessories (a signature of an attestation) follow in turn.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd


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
) -> None:
    """Decide every accessory tag from its subject, in place: stale when each tag carrying a subject is
    stale, orphaned when none does; kept otherwise. ``fixed`` marks accessory tags whose decision stands
    (a keep pattern matched them). The other tags' ``stale`` must be final."""
    if found.links.empty:
        return
    n = len(tag)
    todo = found.mask if fixed is None else found.mask & ~np.asarray(fixed, dtype=bool)
    if not todo.any():
        return
    pairs = _carrier_pairs(manifests, found, repository, tag)
    pairs = pairs[todo[pairs["position"].to_numpy()]].reset_index(drop=True)
    position = pairs["position"].to_numpy()
    carrier = pairs["carrier"].to_numpy()
    valid = carrier >= 0
    stale[todo] = False
    for _ in range(len(pairs) + 1):
        carrier_kept = np.zeros(len(pairs), dtype=bool)
        carrier_kept[valid] = ~stale[carrier[valid]]
        kept = np.zeros(n, dtype=bool)
        kept[position[carrier_kept]] = True
        now_stale = todo & ~kept
        if np.array_equal(now_stale[todo], stale[todo]):
            break
        stale[todo] = now_stale[todo]
    _reasons(pairs, valid, stale, tag, reason)


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
    manifests: pd.DataFrame, found: Accessories, repository: np.ndarray, tag: np.ndarray
) -> pd.DataFrame:
    """One row per (accessory position, subject, carrier position), carrier -1 when no other tag of the
    repository carries the subject (as its digest or one of its platforms)."""
    links = found.links.assign(repository=np.asarray(repository, dtype=object)[found.links["position"].to_numpy()])
    subjects = pd.unique(links["subject"])
    parts = []
    for column in ("digest", "manifest_digest"):
        if column not in manifests.columns:
            continue
        values = manifests[column]
        hit = values.isin(subjects).to_numpy() & manifests["tag"].notna().to_numpy()
        parts.append(
            pd.DataFrame(
                {
                    "repository": manifests["repository"].astype(object).to_numpy()[hit],
                    "subject": values.astype(object).to_numpy()[hit],
                    "tag": manifests["tag"].astype(object).to_numpy()[hit],
                }
            )
        )
    carriers = pd.concat(parts, ignore_index=True).drop_duplicates(ignore_index=True)
    keys = pd.MultiIndex.from_arrays([np.asarray(repository, dtype=object), np.asarray(tag, dtype=object)])
    carriers["carrier"] = keys.get_indexer(pd.MultiIndex.from_frame(carriers[["repository", "tag"]]))
    carriers = carriers.loc[carriers["carrier"] >= 0, ["repository", "subject", "carrier"]]
    pairs = links.merge(carriers, on=["repository", "subject"], how="left")
    carrier = pairs["carrier"].fillna(-1).to_numpy(dtype=np.int64, copy=True)
    carrier[carrier == pairs["position"].to_numpy()] = -1
    pairs["carrier"] = carrier
    return pairs[["position", "subject", "carrier"]].drop_duplicates(ignore_index=True)


def _reasons(pairs: pd.DataFrame, valid: np.ndarray, stale: np.ndarray, tag: np.ndarray, reason: np.ndarray) -> None:
    """Name the subject that decided each accessory, and the tags that carry it."""
    carriers: dict[int, dict[str, list[int]]] = {}
    for position, subject, carrier, ok in zip(
        pairs["position"], pairs["subject"], pairs["carrier"], valid, strict=True
    ):
        found = carriers.setdefault(int(position), {}).setdefault(str(subject), [])
        if ok:
            found.append(int(carrier))
    for position, subjects in carriers.items():
        ordered = sorted(subjects.items())
        if not stale[position]:
            for subject, found in ordered:
                kept = sorted({str(tag[c]) for c in found if not stale[c]})
                if kept:
                    reason[position] = f"kept: subject {subject} is kept (tag {_names(kept)})"
                    break
            continue
        carried = [(subject, found) for subject, found in ordered if found]
        if not carried:
            reason[position] = f"orphaned: subject {ordered[0][0]} not found"
        else:
            subject, found = carried[0]
            reason[position] = f"subject {subject} is deleted with tag {_names(sorted({str(tag[c]) for c in found}))}"


def _names(tags: list[str]) -> str:
    shown = ", ".join(f"'{t}'" for t in tags[:3])
    return shown + (f" and {len(tags) - 3} more" if len(tags) > 3 else "")
