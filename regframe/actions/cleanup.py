"""Carrying out a stale-tag plan against the registry without ever losing a tag outside it.

Tags are removed one at a time with ``rmtag(..., expected_digest=..., method="placeholder")``: the tag
is checked by HEAD to still point at the digest the plan saw, moved to a unique throw-away manifest,
and that manifest is deleted. No image manifest is deleted by digest, so a tag another client puts on
the same image, or an index that lists it as a platform, keeps resolving. With ``delete_manifests``,
image manifests left without a reference are deleted afterwards, each after a fresh look at every tag.

Accessories (rows with a ``subject``) go after the images, and only when nothing references their
subject any more: their tags are removed the same way; the untagged referrers a fallback index lists
(or the referrers API names) have no tag, so with ``delete_manifests`` each is deleted by digest once a
fresh listing shows that nothing else references it (without it, it stays untagged, as its image does),
and its entry leaves the fallback index, whose tag goes when it is empty.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ..analysis._frames import bool_mask, require_columns
from ..client import errors as E
from ..client import referrers as R
from ..client import writes
from ..client.artifacts import fallback_tag_subject
from ..client.models import reachable
from ..client.reference import validate_digest, validate_repository, validate_tag

RESULT_COLUMNS = ["repository", "tag", "digest", "action", "method", "status", "reason"]
APPLY_INPUT_COLUMNS = ("repository", "tag", "digest", "stale")

Row = list  # [repository, tag, digest, action, method, status, reason]
Planned = tuple[str, str, str | None]  # tag, digest, subject (None for an image)
Hashes = dict[str, str | None]

# ``method`` of the rows: a tag removed through a placeholder, a fallback tag emptied, a manifest deleted by digest.
PLACEHOLDER, FALLBACK, BY_DIGEST = "placeholder", "fallback-index", "manifest"


def apply_cleanup(client, stale: pd.DataFrame, dry_run: bool = True, *, delete_manifests: bool = False) -> pd.DataFrame:
    """Remove the tags of ``stale`` whose ``stale`` is True; one row per tag says what was done and why.

    ``stale`` must be booleans or the exact strings "True"/"False" (a frame read back from CSV);
    anything else, and any malformed repository, tag, digest or subject among the rows to delete,
    raises a ValueError before the first request.

    Each repository's tags are listed with their digests first: a tag that moved or vanished since
    the analysis is skipped. Each removal then checks the tag again (``TagMovedError`` becomes a
    skipped row) and removes only that tag; its image manifest stays, so sibling tags, tags other
    clients add meanwhile and multi-platform indexes listing it keep resolving. The dry run makes
    the same listing and reads and reports what the real run would do, row for row.

    Rows with a ``subject`` (accessories: signatures, SBOMs, attestations, the referrers fallback tag)
    come after the images, and only if a fresh listing shows that no tag and no tagged index references
    their subject any more; otherwise they are skipped, naming what still references it. A fallback
    tag's entries are the untagged referrers of the subject: each whose manifest names that subject, and
    that no other tag or tagged index references, is deleted by digest with ``delete_manifests`` (a row
    without a tag, method ``manifest``) or else left untagged (status ``left untagged``: nothing is
    deleted by digest then); dangling entries are dropped too, and the index is rewritten without them
    (``remove_from_fallback_index``); its tag is removed when no entry remains (status ``updated``
    when some remain). Where the registry has the referrers API, the untagged referrers it names for a
    deleted subject are handled the same way.

    ``delete_manifests``: afterwards delete, by digest, each image manifest whose tags this run
    removed (and then the platforms of a deleted index) when, on a fresh listing of every tag right
    before, no tag points at it and no tagged index lists it; images first, then their accessories.
    This lets the registry's plain garbage collection reclaim the space; without it the images stay
    untagged until ``--delete-untagged``. It costs one tag listing per manifest deleted, and a tag
    another client puts on that image between that listing and the delete is lost with it.
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


def outcome_count(result: pd.DataFrame, status: str) -> str:
    """How many rows of an ``apply_cleanup`` result have ``status``, in the plan's terms: the plan counts tags,
    so the untagged referrers deleted by digest with their subjects (rows without a tag) are counted apart
    ("19 tags and 4 untagged referrers"), never added to the tags."""
    chosen = (result["status"] == status).to_numpy(dtype=bool)
    untagged = (result["tag"].isna() | (result["tag"].astype(object) == "")).to_numpy(dtype=bool)
    tags, referrers = int((chosen & ~untagged).sum()), int((chosen & untagged).sum())
    text = f"{tags:,} tag{'s' if tags != 1 else ''}"
    return text + (f" and {referrers:,} untagged referrer{'s' if referrers != 1 else ''}" if referrers else "")


def _plan(stale: pd.DataFrame) -> dict[str, list[Planned]]:
    """The rows to delete, checked in full before any request: {repository: [(tag, digest, subject)]}."""
    require_columns(stale, APPLY_INPUT_COLUMNS, "apply_cleanup (the stale_tags() frame)")
    columns = ["repository", "tag", "digest", *(["subject"] if "subject" in stale.columns else [])]
    todo = stale.loc[bool_mask(stale, "stale", "apply_cleanup"), columns]
    checks: dict[str, Callable[[object], str]] = {
        "repository": validate_repository,
        "tag": validate_tag,
        "digest": validate_digest,
        "subject": validate_digest,
    }
    plan: dict[str, dict[str, tuple[str, str | None]]] = {}
    for position, values in enumerate(todo.astype(object).itertuples(index=False, name=None)):
        values = tuple(None if column == "subject" and pd.isna(v) else v for column, v in zip(columns, values))
        for column, value in zip(columns, values, strict=True):
            if column == "subject" and value is None:
                continue
            try:
                checks[column](value)
            except ValueError as exc:
                raise ValueError(
                    f"apply_cleanup: column {column!r} of stale row {position} holds {value!r}: {exc}"
                ) from None
        repository, tag, digest = values[:3]
        subject = values[3] if len(values) > 3 else None
        seen = plan.setdefault(repository, {}).setdefault(tag, (digest, subject))
        if seen[0] != digest:
            raise ValueError(f"apply_cleanup: {repository}:{tag} appears with two digests, {seen[0]} and {digest}")
    return {
        repo: [(tag, digest, subject) for tag, (digest, subject) in sorted(tags.items())]
        for repo, tags in sorted(plan.items())
    }


class _Run:
    """One repository's cleanup: the listing, the rows, and the manifests read (immutable, so cached)."""

    def __init__(self, client, repository: str, dry_run: bool, delete_manifests: bool = False):
        self.client = client
        self.repository = repository
        self.dry_run = dry_run
        self.delete_manifests = delete_manifests
        self.manifests: dict[str, list[str]] = {}
        self.outcome: dict[str, str] = {}
        self.still_listed: set[str] = set()

    def hashes(self) -> Hashes:
        return _hashes(self.client, self.repository)


def _clean_repository(
    client, repository: str, planned: list[Planned], dry_run: bool, delete_manifests: bool
) -> list[Row]:
    run = _Run(client, repository, dry_run, delete_manifests)
    try:
        listing = run.hashes()
    except E.RegistryError as exc:
        return [
            [repository, tag, digest, "delete", None, "error", f"listing tags failed: {exc}"]
            for tag, digest, _ in planned
        ]

    rows: list[Row] = []
    subjects: dict[int, str] = {}
    deletable = set()
    for tag, digest, subject in planned:
        current = listing.get(tag)
        if current is None:
            rows.append([repository, tag, digest, "skip", None, "skipped", "tag no longer exists"])
        elif current != digest:
            rows.append(
                [repository, tag, digest, "skip", None, "skipped", f"tag moved to {current} since the analysis"]
            )
        else:
            rows.append([repository, tag, digest, "delete", PLACEHOLDER, "would delete", ""])
            deletable.add(tag)
        if subject is not None:
            subjects[id(rows[-1])] = subject
    staying = {t: d for t, d in listing.items() if t not in deletable}
    for row in rows:
        if row[3] == "delete":
            others = sorted(t for t, d in staying.items() if d == row[2])
            row[6] = (
                f"manifest kept, also tagged {_names(others)}"
                if others
                else "manifest kept; no other tag pointed at it when listed"
            )
    images = [row for row in rows if id(row) not in subjects]
    accessories = [row for row in rows if id(row) in subjects]

    api = _api_referrers(run, images, accessories, subjects)
    if not dry_run:
        for row in images:
            if row[3] == "delete":
                _remove_tag(client, repository, row)
    failed: list[Row] = []
    if delete_manifests:
        failed += _delete_manifests(run, images, staying)
    gone = {row[1] for row in images if row[5] in _DONE}
    after = {t: d for t, d in listing.items() if t not in gone}
    extra = _clean_accessories(run, images, accessories, subjects, api, after)
    if delete_manifests:
        failed += _delete_manifests(run, accessories, staying)
    return images + accessories + extra + failed


def _api_referrers(
    run: _Run, images: list[Row], accessories: list[Row], subjects: dict[int, str]
) -> dict[str, list[str]]:
    """The untagged referrers the referrers API names for each digest this run may delete, read before
    anything is deleted (a registry may stop answering for a deleted subject); empty without the API."""
    candidates = [row[2] for row in images if row[3] == "delete"] + [subjects[id(row)] for row in accessories]
    found: dict[str, list[str]] = {}
    queue = list(dict.fromkeys(candidates))
    while queue:
        digest = queue.pop(0)
        if digest in found:
            continue
        try:
            answer = R.api_referrers(run.client, run.repository, digest)
        except E.RegistryError:
            answer = None
        if answer is None:
            if getattr(run.client, "referrers_api", {}).get(run.repository) is False:
                break
            continue
        found[digest] = [entry["digest"] for entry in answer]
        # The referrers of a referrer (a signature of an SBOM) go with it: ask about them too.
        queue += [listed for listed in found[digest] if listed not in found]
    return found


def _clean_accessories(
    run: _Run,
    images: list[Row],
    accessories: list[Row],
    subjects: dict[int, str],
    api: dict[str, list[str]],
    after: Hashes,
) -> list[Row]:
    """Remove the accessories whose subject nothing references now; returns the rows of untagged referrers.

    In rounds: removing one accessory can free another's subject (an SBOM listed in its image's fallback
    tag has a fallback tag of its own for its signature), so the rows whose subject was still referenced
    are judged again on a fresh listing after each round that removed something."""
    gone_images = [row[2] for row in images if row[5] in _DONE]
    pending = [row for row in accessories if row[3] == "delete"]
    if not pending and not any(digest in api for digest in gone_images):
        return []
    extra: list[Row] = []
    handled: set[str] = set()
    removed: set[str] = set()
    status: dict[str, str | None] = {}
    asked = [*(subjects[id(row)] for row in pending), *(d for d in gone_images if d in api)]
    # What this run removes: the images whose tags it removed, and with delete_manifests the manifests
    # (platforms included) it deletes or would delete.
    going = set(gone_images) | {digest for digest, outcome in run.outcome.items() if outcome in _GONE}
    while True:
        try:
            hashes = {t: d for t, d in after.items() if t not in removed} if run.dry_run else run.hashes()
            status.update({s: _referenced(run, s, hashes) for s in dict.fromkeys(asked)})
        except E.RegistryError as exc:
            for row in pending:
                row[5:] = ["error", f"checking its subject failed: {exc}"]
            return extra
        ready = [row for row in pending if status[subjects[id(row)]] is None]
        pending = [row for row in pending if status[subjects[id(row)]] is not None]
        ready = [row for row in ready if _subject_absent(run, row, subjects[id(row)], going)]
        if not ready:
            break
        before = len(removed)
        found = _remove_accessories(run, ready, subjects, after, removed, handled)
        extra += found
        going.update(row[2] for row in [*ready, *found] if row[5] in _GONE_NOW)
        if not pending or len(removed) == before:
            break
        asked = [subjects[id(row)] for row in pending]
    for row in pending:
        subject = subjects[id(row)]
        row[3:] = ["skip", None, "skipped", f"accessory kept: its subject {subject} is still {status[subject]}"]

    gone = [
        subject
        for subject in api
        if status.get(subject, "unknown") is None and (subject in going or _manifest_gone(run, subject))
    ]
    while gone:
        subject = gone.pop(0)
        for digest in api.get(subject, ()):
            if digest not in handled and digest not in hashes.values():
                handled.add(digest)
                row = _delete_untagged(run, digest, f"untagged referrer of {subject} (referrers API)", after, removed)
                extra.append(row)
                if row[5] in _GONE_NOW:
                    gone.append(digest)  # its own referrers follow it
    return extra


# Statuses of a row this run carried out (or, dry, would).
_DONE = ("deleted", "would delete")
# An untagged referrer of a subject that goes, when delete_manifests is off: it stays, untagged and unlisted.
LEFT = "left untagged"
# Statuses of a row whose manifest (a tag's, or an untagged one's) this run removes or leaves untagged.
_GONE_NOW = (*_DONE, "already gone", LEFT)


def _subject_absent(run: _Run, row: Row, subject: str, going: set[str]) -> bool:
    """Whether an accessory whose subject no tag or tagged index references may go: yes when this run
    removes the subject, else only when the subject's manifest is gone from the repository. An image left
    untagged (its tag pushed again onto another image, or pushed by digest) can still be pulled, and
    verified, by digest: its signatures stay (the row is skipped, or an error when the check fails)."""
    if subject in going:
        return True
    try:
        if _manifest_gone(run, subject, quiet=False):
            return True
    except E.RegistryError as exc:
        row[5:] = ["error", f"checking whether its subject {subject} is still there failed: {exc}"]
        return False
    row[3:] = [
        "skip",
        None,
        "skipped",
        f"accessory kept: its subject {subject} is still in the repository, untagged (it can be pulled by digest)",
    ]
    return False


def _manifest_gone(run: _Run, digest: str, quiet: bool = True) -> bool:
    """Whether ``digest`` is gone from the repository (a HEAD answers 404). ``quiet``: a failed check says
    it is not, so nothing goes on a guess; else the error is raised."""
    try:
        return run.client.manifest_exists(run.repository, digest) is None
    except E.RegistryError:
        if quiet:
            return False
        raise


def _remove_accessories(
    run: _Run, ready: list[Row], subjects: dict[int, str], after: Hashes, removed: set[str], handled: set[str]
) -> list[Row]:
    """Remove the accessory tags of ``ready`` (their subjects referenced by nothing) and empty the fallback
    indexes among them; adds the tags that go to ``removed`` and returns the rows of untagged referrers."""
    tagged, fallbacks = [], []
    for row in ready:
        subject = subjects[id(row)]
        if fallback_tag_subject(row[1]) == subject:
            fallbacks.append(row)
        else:
            row[6] = f"accessory of {subject}, which nothing references now; {row[6]}"
            tagged.append(row)
    if not run.dry_run:
        for row in tagged:
            _remove_tag(run.client, run.repository, row)
    removed.update(row[1] for row in tagged if row[5] in _DONE)
    extra: list[Row] = []
    for row in fallbacks:
        extra += _empty_fallback_index(run, row, subjects[id(row)], after, removed, handled)
        if row[5] in _DONE:
            removed.add(row[1])
    return extra


def _empty_fallback_index(
    run: _Run, row: Row, subject: str, after: Hashes, removed: set[str], handled: set[str]
) -> list[Row]:
    """Delete the referrers the fallback index of ``subject`` lists, drop their entries, and remove the tag
    when none is left; ``row`` is the fallback tag's row."""
    tag, digest = row[1], row[2]
    try:
        index = run.client.manifest(run.repository, digest)
    except E.RegistryError as exc:
        row[5:] = ["error", f"reading the fallback index failed: {exc}"]
        return []
    if not index or not index.is_index:
        row[3:] = ["skip", None, "skipped", f"{digest} is no longer an index"]
        return []
    entries = [c["digest"] for c in index.children if isinstance(c.get("digest"), str)]
    rows: list[Row] = []
    gone, dangling, others = [], 0, 0
    for entry in dict.fromkeys(entries):
        handled.add(entry)
        try:
            referrer = run.client.manifest(run.repository, entry)
        except E.RegistryError as exc:
            rows.append([run.repository, None, entry, "delete", BY_DIGEST, "error", f"reading it failed: {exc}"])
            others += 1
            continue
        if not referrer:
            gone.append(entry)
            dangling += 1
        elif R.subject_of(referrer) != subject:
            others += 1
        else:
            done = _delete_untagged(
                run, entry, f"untagged referrer of {subject} listed in fallback tag '{tag}'", after, removed, tag
            )
            rows.append(done)
            if done[5] in (*_DONE, LEFT):
                gone.append(entry)
            else:
                others += 1
    left = len(dict.fromkeys(entries)) - len(gone)
    run.still_listed.update(entry for entry in entries if entry not in gone)
    if not gone:
        row[3:] = [
            "skip",
            None,
            "skipped",
            f"fallback index of {subject}: every entry is still referenced, so it stays",
        ]
        return rows
    if not run.dry_run:
        try:
            left = writes.remove_from_fallback_index(run.client, run.repository, subject, gone) or 0
        except E.TagMovedError as exc:
            row[3:] = ["skip", None, "skipped", f"fallback index changed while it was being emptied: {exc}"]
            return rows
        except E.RegistryError as exc:
            row[5:] = ["error", f"updating the fallback index failed: {exc}"]
            return rows
    note = f" ({dangling} dangling)" if dangling else ""
    what = f"fallback index of {subject}: {len(gone)} entr{'y' if len(gone) == 1 else 'ies'} removed{note}"
    row[4] = FALLBACK
    if left:
        row[3] = "update"
        row[5] = "would update" if run.dry_run else "updated"
        row[6] = f"{what}, {left} left, so the tag stays"
    else:
        row[5] = "would delete" if run.dry_run else "deleted"
        row[6] = f"{what}, none left, so the tag is removed"
    return rows


def _delete_untagged(
    run: _Run, digest: str, what: str, after: Hashes, removed: set[str], listed_by: str | None = None
) -> Row:
    """Delete an untagged referrer by digest when no tag and no tagged index (but the fallback tag
    ``listed_by``) references it: a fresh listing in the real run, the expected one in the dry run.

    Only with ``delete_manifests``, whose one window (a tag another client puts on it between that listing
    and the DELETE goes with it) README documents; without it nothing is deleted by digest, and the
    referrer stays untagged, as its image does (status ``left untagged``)."""
    if not run.delete_manifests:
        return [
            run.repository,
            None,
            digest,
            "keep",
            None,
            LEFT,
            f"{what}: left untagged, as delete_manifests is off (nothing is deleted by digest)",
        ]
    row: Row = [run.repository, None, digest, "delete", BY_DIGEST, "would delete", ""]
    try:
        hashes = (
            {t: d for t, d in after.items() if t not in removed and t != listed_by}
            if run.dry_run
            else {t: d for t, d in run.hashes().items() if t != listed_by}
        )
        why = _referenced(run, digest, hashes)
        if why is not None:
            row[3:] = ["skip", None, "skipped", f"{what}, kept: {why}"]
            return row
        if not run.dry_run:
            row[5] = "deleted" if run.client.delete_manifest(run.repository, digest) else "already gone"
        row[6] = f"{what}: nothing else references it, so its manifest is deleted by digest"
    except E.DeleteDisabledError:
        raise
    except E.RegistryError as exc:
        row[5:] = ["error", f"{what}: not deleted: {exc}"]
    return row


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


def _delete_manifests(run: _Run, rows: list[Row], staying: Hashes) -> list[Row]:
    """Delete the manifests whose tags this run removed, each only if nothing references it; returns an
    ``error`` row (without a tag, method ``manifest``) for each delete that failed, so that a run whose
    manifests stay, and whose garbage collection then frees nothing, does not read as done.

    The dry run judges every manifest against the tags it expects to remain; the real run lists
    every tag afresh before each delete. A deleted index's platforms are judged the same way next.
    """
    removed = [row for row in rows if row[4] in (PLACEHOLDER, FALLBACK) and row[5] in _REMOVED]
    queue = list(dict.fromkeys(row[2] for row in removed))
    outcome = run.outcome
    failures: list[Row] = []
    while queue:
        digest = queue.pop(0)
        if digest in outcome:
            continue
        try:
            hashes = staying if run.dry_run else run.hashes()
            why = "listed in a fallback index" if digest in run.still_listed else _referenced(run, digest, hashes)
            if why is not None:
                outcome[digest] = f"kept, {why}"
                continue
            children = _children(run, digest)
            if run.dry_run:
                outcome[digest] = "would be deleted"
            else:
                outcome[digest] = "deleted" if run.client.delete_manifest(run.repository, digest) else "already gone"
            queue += children
        except E.DeleteDisabledError:
            raise
        except E.RegistryError as exc:
            outcome[digest] = f"not deleted: {exc}"
            failures.append(
                [
                    run.repository,
                    None,
                    digest,
                    "delete",
                    BY_DIGEST,
                    "error",
                    f"its tags were removed; manifest not deleted: {exc}",
                ]
            )
    for row in removed:
        if row[2] not in outcome:
            continue
        if row[4] == FALLBACK:
            row[6] += (
                "; index manifest " + outcome[row[2]] + _platform_summary(row[2], run.manifests, outcome, "entries")
            )
            continue
        said = "manifest " + outcome[row[2]] + _platform_summary(row[2], run.manifests, outcome)
        head = row[6].partition("; ")[0] + "; " if row[6].startswith("accessory of ") else ""
        row[6] = head + said
    return failures


_REMOVED = ("deleted", "would delete", "updated", "would update")


def _referenced(run: _Run, digest: str, hashes: Hashes) -> str | None:
    """Why ``digest`` must stay (a tag on it, a tagged index listing it, directly or
    through nested indexes), or None."""
    tagged = sorted(t for t, d in hashes.items() if d == digest)
    if tagged:
        return f"tagged {_names(tagged)}"
    # A tag without a digest was listed but gone by its HEAD (404): it references nothing. A tag that could
    # not be read fails the listing instead.
    for tag, top in sorted((t, d) for t, d in hashes.items() if d is not None):
        if digest in reachable(top, lambda index: _children(run, index)):
            return f"a platform of index tagged '{tag}'"
    return None


def _children(run: _Run, digest: str) -> list[str]:
    """The platform digests of an index (none for an image); manifests are cached, being immutable."""
    if digest not in run.manifests:
        manifest = run.client.manifest(run.repository, digest)
        run.manifests[digest] = (
            [c["digest"] for c in manifest.children if isinstance(c.get("digest"), str)]
            if manifest and manifest.is_index
            else []
        )
    return run.manifests[digest]


_GONE = ("deleted", "would be deleted", "already gone")


def _platform_summary(
    digest: str, manifests: dict[str, list[str]], outcome: dict[str, str], noun: str = "platform manifests"
) -> str:
    children = manifests.get(digest, [])
    if not children or outcome[digest] not in _GONE:
        return ""
    done = sum(outcome.get(c) in _GONE for c in children)
    return f" with {done} of its {len(children)} {noun}"


def _hashes(client, repository: str) -> Hashes:
    return client.tags(repository, with_hashes=True, auto_paginate=True).get("hashes", {})


def _names(tags: list[str]) -> str:
    shown = ", ".join(f"'{t}'" for t in tags[:3])
    return shown + (f" and {len(tags) - 3} more" if len(tags) > 3 else "")
