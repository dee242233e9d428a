"""Carrying out a stale-tag plan against the registry without ever losing a tag outside it.

Tags are removed one at a time with ``rmtag(..., expected_digest=..., method="placeholder")``: the tag
is checked by HEAD to still point at the digest the plan saw, moved to a unique throw-away manifest,
and that manifest is deleted. No image manifest is deleted by digest, so a tag another client puts on
the same image, or an index that lists it as a platform, keeps resolving. With ``delete_manifests``,
image manifests left without a reference are deleted afterwards, each after a fresh look at every tag.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ..analysis._frames import bool_mask
from ..client import errors as E
from ..client.reference import validate_digest, validate_repository, validate_tag

RESULT_COLUMNS = ["repository", "tag", "digest", "action", "method", "status", "reason"]
PLAN_COLUMNS = ("repository", "tag", "digest", "stale")

Row = list  # [repository, tag, digest, action, method, status, reason]


def apply_cleanup(client, stale: pd.DataFrame, dry_run: bool = True, *, delete_manifests: bool = False) -> pd.DataFrame:
    """Remove the tags of ``stale`` whose ``stale`` is True; one row per tag says what was done and why.

    ``stale`` must be booleans or the exact strings "True"/"False" (a frame read back from CSV);
    anything else, and any malformed repository, tag or digest among the rows to delete, raises a
    ValueError before the first request.

    Each repository's tags are listed with their digests first: a tag that moved or vanished since
    the analysis is skipped. Each removal then checks the tag again (``TagMovedError`` becomes a
    skipped row) and removes only that tag; its image manifest stays, so sibling tags, tags other
    clients add meanwhile and multi-platform indexes listing it keep resolving. The dry run makes
    the same listing and reports what the real run would do, row for row.

    ``delete_manifests``: afterwards delete, by digest, each image manifest whose tags this run
    removed (and then the platforms of a deleted index) when, on a fresh listing of every tag right
    before, no tag points at it and no tagged index lists it. This lets the registry's plain garbage
    collection reclaim the space; without it the images stay untagged until ``--delete-untagged``.
    It costs one tag listing per manifest deleted, and a tag another client puts on that image
    between that listing and the delete is lost with it.
    """
    for name, flag in (("dry_run", dry_run), ("delete_manifests", delete_manifests)):
        if not isinstance(flag, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, not {flag!r}")
    plan = _plan(stale)
    rows: list[Row] = []
    for repository, planned in plan.items():
        rows += _clean_repository(client, repository, planned, bool(dry_run), bool(delete_manifests))
    result = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    result.attrs.update(dry_run=bool(dry_run), delete_manifests=bool(delete_manifests))
    return result


def _plan(stale: pd.DataFrame) -> dict[str, list[tuple[str, str]]]:
    """The rows to delete, checked in full before any request: {repository: [(tag, digest)]}."""
    if not isinstance(stale, pd.DataFrame):
        raise ValueError(f"apply_cleanup needs the DataFrame stale_tags() returns, got {type(stale).__name__}")
    missing = [c for c in PLAN_COLUMNS if c not in stale.columns]
    if missing:
        raise ValueError(f"stale frame lacks column(s) {', '.join(missing)}; pass the output of stale_tags()")
    todo = stale.loc[bool_mask(stale, "stale", "apply_cleanup"), ["repository", "tag", "digest"]]
    checks: dict[str, Callable[[object], str]] = {
        "repository": validate_repository,
        "tag": validate_tag,
        "digest": validate_digest,
    }
    plan: dict[str, dict[str, str]] = {}
    for position, values in enumerate(todo.astype(object).itertuples(index=False, name=None)):
        for column, value in zip(checks, values, strict=True):
            try:
                checks[column](value)
            except ValueError as exc:
                raise ValueError(
                    f"apply_cleanup: column {column!r} of stale row {position} holds {value!r}: {exc}"
                ) from None
        repository, tag, digest = values
        seen = plan.setdefault(repository, {}).setdefault(tag, digest)
        if seen != digest:
            raise ValueError(f"apply_cleanup: {repository}:{tag} appears with two digests, {seen} and {digest}")
    return {repo: sorted(tags.items()) for repo, tags in sorted(plan.items())}


def _clean_repository(
    client, repository: str, planned: list[tuple[str, str]], dry_run: bool, delete_manifests: bool
) -> list[Row]:
    try:
        listing = _hashes(client, repository)
    except E.RegistryError as exc:
        return [
            [repository, tag, digest, "delete", None, "error", f"listing tags failed: {exc}"] for tag, digest in planned
        ]

    rows, deletable = [], set()
    for tag, digest in planned:
        current = listing.get(tag)
        if current is None:
            rows.append([repository, tag, digest, "skip", None, "skipped", "tag no longer exists"])
        elif current != digest:
            rows.append(
                [repository, tag, digest, "skip", None, "skipped", f"tag moved to {current} since the analysis"]
            )
        else:
            rows.append([repository, tag, digest, "delete", "placeholder", "would delete", ""])
            deletable.add(tag)
    staying = {t: d for t, d in listing.items() if t not in deletable}
    for row in rows:
        if row[3] == "delete":
            others = sorted(t for t, d in staying.items() if d == row[2])
            row[6] = (
                f"manifest kept, also tagged {_names(others)}"
                if others
                else "manifest kept; no other tag pointed at it when listed"
            )

    if not dry_run:
        for row in rows:
            if row[3] == "delete":
                _remove_tag(client, repository, row)
    if delete_manifests:
        _delete_manifests(client, repository, rows, staying, dry_run)
    return rows


def _remove_tag(client, repository: str, row: Row) -> None:
    tag, digest = row[1], row[2]
    try:
        client.rmtag(repository, tag, expected_digest=digest, method="placeholder")
    except E.TagMovedError as exc:
        row[3:] = [
            "skip",
            None,
            "skipped",
            (
                f"tag moved to {exc.actual} just before deletion"
                if exc.actual
                else "tag removed by someone else just before deletion"
            ),
        ]
    except E.DeleteDisabledError:
        raise
    except E.RegistryError as exc:
        row[5:] = ["error", f"tag not removed: {exc}"]
    else:
        row[5] = "deleted"


def _delete_manifests(client, repository: str, rows: list[Row], staying: dict[str, str | None], dry_run: bool) -> None:
    """Delete the image manifests whose tags this run removed, each only if nothing references it.

    The dry run judges every manifest against the tags it expects to remain; the real run lists
    every tag afresh before each delete. A deleted index's platforms are judged the same way next.
    """
    manifests: dict[str, list[str]] = {}
    queue = list(dict.fromkeys(row[2] for row in rows if row[5] in ("deleted", "would delete")))
    outcome: dict[str, str] = {}
    while queue:
        digest = queue.pop(0)
        if digest in outcome:
            continue
        try:
            hashes = staying if dry_run else _hashes(client, repository)
            why = _referenced(client, repository, digest, hashes, manifests)
            if why is not None:
                outcome[digest] = f"kept, {why}"
                continue
            children = _children(client, repository, digest, manifests)
            if dry_run:
                outcome[digest] = "would be deleted"
            else:
                outcome[digest] = "deleted" if client.delete_manifest(repository, digest) else "already gone"
            queue += children
        except E.DeleteDisabledError:
            raise
        except E.RegistryError as exc:
            outcome[digest] = f"not deleted: {exc}"
    for row in rows:
        if row[2] in outcome and row[5] in ("deleted", "would delete"):
            row[6] = "manifest " + outcome[row[2]] + _platform_summary(row[2], manifests, outcome)


def _referenced(
    client, repository: str, digest: str, hashes: dict[str, str | None], manifests: dict[str, list[str]]
) -> str | None:
    """Why ``digest`` must stay (a tag on it, an unreadable tag, a tagged index listing it), or None."""
    tagged = sorted(t for t, d in hashes.items() if d == digest)
    if tagged:
        return f"tagged {_names(tagged)}"
    unknown = sorted(t for t, d in hashes.items() if d is None)
    if unknown:
        return f"tag {_names(unknown[:1])} could not be read"
    for tag, top in sorted((t, d) for t, d in hashes.items() if d is not None):
        if digest in _children(client, repository, top, manifests):
            return f"a platform of index tagged '{tag}'"
    return None


def _children(client, repository: str, digest: str, manifests: dict[str, list[str]]) -> list[str]:
    """The platform digests of an index (none for an image); manifests are cached, being immutable."""
    if digest not in manifests:
        manifest = client.manifest(repository, digest)
        manifests[digest] = (
            [c["digest"] for c in manifest.children if isinstance(c.get("digest"), str)]
            if manifest and manifest.is_index
            else []
        )
    return manifests[digest]


_GONE = ("deleted", "would be deleted", "already gone")


def _platform_summary(digest: str, manifests: dict[str, list[str]], outcome: dict[str, str]) -> str:
    children = manifests.get(digest, [])
    if not children or outcome[digest] not in _GONE:
        return ""
    done = sum(outcome.get(c) in _GONE for c in children)
    return f" with {done} of its {len(children)} platform manifests"


def _hashes(client, repository: str) -> dict[str, str | None]:
    return client.tags(repository, with_hashes=True, auto_paginate=True).get("hashes", {})


def _names(tags: list[str]) -> str:
    shown = ", ".join(f"'{t}'" for t in tags[:3])
    return shown + (f" and {len(tags) - 3} more" if len(tags) > 3 else "")
