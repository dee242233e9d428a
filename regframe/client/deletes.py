"""Deletes: rmtag and rmrepo. Never removes a tag it was not asked to remove
(``rmtag(..., method="placeholder")`` not even under a racing writer)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Literal, NotRequired, TypedDict

from . import errors as E
from . import mediatypes as MT
from . import reads, writes
from .core import ClientCore
from .models import Manifest, media_type_of, reachable
from .reference import compute_digest, is_digest, validate_digest, validate_reference, validate_tag
from .scopes import delete_scope


class TagRemoval(TypedDict):
    """What ``rmtag`` did; ``kept`` lists the other tags on the digest that still resolve to it."""

    repository: str
    tag: str
    digest: str
    method: Literal["delete-by-tag", "delete-manifest", "placeholder"]
    kept: NotRequired[list[str]]


def deletes_enabled(core: ClientCore, repository: str) -> None:
    """Probe with a digest that cannot exist: 404 means deletes work; the transport turns the
    405 of a registry with deletion disabled into DeleteDisabledError. Probed once per repository
    and client, so a cleanup of many tags does not repeat it."""
    if repository not in core.deletes_ok:
        writes.delete_manifest(core, repository, "sha256:" + "0" * 64)
        core.deletes_ok.add(repository)


def rmtag(
    core: ClientCore,
    repo: str,
    tag: str,
    *,
    expected_digest: str | None = None,
    siblings: Iterable[str] | None = None,
    method: str = "auto",
) -> TagRemoval:
    """Remove only ``tag``; other tags on the same digest keep resolving to it.

    ``method="auto"``: tries DELETE by tag (OCI 1.1). Where the registry refuses that (distribution
    2.8 does), a tag with siblings is pointed at a unique throw-away manifest which is then deleted;
    so is a tag whose manifest another tag's index lists (one platform of a multi-platform image). A tag
    alone on its digest has its manifest deleted by digest. ``siblings``: the other tags known to share
    the digest (found by listing when not given). A tag another client puts on the same image between
    that listing and the delete goes with it: pass ``method="placeholder"`` when other clients may be
    writing.

    ``method="placeholder"``: always the throw-away manifest; no image manifest is ever deleted, so
    no other tag can be lost. The image stays, untagged, until garbage collection.

    ``expected_digest``: refuse with ``TagMovedError``, changing nothing, unless the tag still points
    at it. The check is a HEAD right before the write; the registry has no compare-and-swap, so a
    move landing in the moment between the two is overwritten. Returns what was done."""
    repository = core.repo(repo)
    if isinstance(tag, str) and is_digest(tag) and validate_reference(tag):
        raise E.InvalidReferenceError(
            f"rmtag removes one tag; {tag[:80]} is a digest, which would take every tag on it "
            "(delete a manifest by digest with delete_manifest)"
        )
    validate_tag(tag)
    if expected_digest is not None:
        validate_digest(expected_digest)
    if method not in ("auto", "placeholder"):
        raise ValueError(f"method must be 'auto' or 'placeholder', not {method!r}")
    deletes_enabled(core, repository)
    if method == "placeholder":
        return _untag(core, repository, tag, expected_digest)
    digest = _current_digest(core, repository, tag, expected_digest)
    response = core.transport.request(
        "DELETE",
        f"/v2/{repository}/manifests/{tag}",
        scopes=delete_scope(repository),
        kind="delete",
        ok=(400, 404, 405),
        retry=False,
    )
    response.close()
    if response.status_code == 202:
        return {"repository": repository, "tag": tag, "digest": digest, "method": "delete-by-tag"}
    hashes: dict[str, str | None] | None = None
    if siblings is None:
        hashes = reads.tags(core, repository, with_hashes=True, auto_paginate=True).get("hashes", {})
        # A listed tag whose digest cannot be read may share this one: treat it as a sibling.
        siblings = [t for t, d in hashes.items() if d in (digest, None) and t != tag]
    siblings = [t for t in siblings if t != tag]
    if not siblings:
        if hashes is None:
            hashes = reads.tags(core, repository, with_hashes=True, auto_paginate=True).get("hashes", {})
        siblings = _indexes_listing(core, repository, digest, {t: d for t, d in hashes.items() if t != tag})
    if not siblings:
        assert hashes is not None
        now = hashes.get(tag)
        if now != digest:
            # The listing came after the HEAD check: a tag moved since then keeps its new image.
            where = (
                f"now points at {now}" if now else ("could not be read again" if tag in hashes else "no longer exists")
            )
            raise E.TagMovedError(
                f"{repository}:{tag} {where}, not {digest}; nothing was deleted", expected=digest, actual=now
            )
        writes.delete_manifest(core, repository, digest)
        return {"repository": repository, "tag": tag, "digest": digest, "method": "delete-manifest"}
    return {**_untag(core, repository, tag, digest), "kept": sorted(siblings)}


def _indexes_listing(core: ClientCore, repository: str, digest: str, others: dict[str, str | None]) -> list[str]:
    """The other tags whose index lists ``digest`` as an entry, directly or through nested indexes (one
    platform of a multi-platform image, say): deleting the manifest by digest would leave those indexes
    naming a manifest that is gone."""
    entries: dict[str, list[str]] = {}

    def children_of(index: str) -> list[str]:
        if index not in entries:
            found = reads.manifest(core, repository, index)
            entries[index] = [c["digest"] for c in found.children if isinstance(c.get("digest"), str)] if found else []
        return entries[index]

    listing: list[str] = []
    checked: dict[str, bool] = {}
    for other, top in others.items():
        if top is None:
            continue  # listed, but gone by its HEAD: it references nothing
        if top not in checked:
            checked[top] = digest in reachable(top, children_of)
        if checked[top]:
            listing.append(other)
    return listing


def _current_digest(core: ClientCore, repository: str, tag: str, expected: str | None) -> str:
    """The tag's digest by HEAD; TagMovedError when it differs from ``expected`` (or is gone)."""
    try:
        current = reads.digest(core, repository, tag)
    except E.NotFoundError:
        if expected is None:
            raise
        current = None
    if current is None or (expected is not None and current != expected):
        where = f"now points at {current}" if current else "no longer exists"
        raise E.TagMovedError(
            f"{repository}:{tag} {where}, not {expected}; nothing was deleted", expected=expected, actual=current
        )
    return current


def _untag(core: ClientCore, repository: str, tag: str, expected: str | None) -> TagRemoval:
    """Point ``tag`` at a unique throw-away manifest and delete that: only this tag goes.

    Everything that can be prepared (the image's bytes, to put the tag back should the PUT or the
    DELETE fail, and the placeholder) comes before the HEAD check, so the check and the PUT are
    one round trip apart."""
    digest = expected or _current_digest(core, repository, tag, None)
    original = reads.manifest(core, repository, digest)
    if not original:
        raise E.TagMovedError(
            f"{repository}:{tag}: its manifest {digest} no longer exists; nothing was deleted",
            expected=digest,
            actual=None,
        )
    placeholder = _placeholder_manifest(core, repository, tag)
    placeholder_digest = compute_digest(placeholder)
    _current_digest(core, repository, tag, digest)
    placed = False
    try:
        writes.put_manifest(core, repository, tag, placeholder, MT.OCI_MANIFEST)
        placed = True
        writes.delete_manifest(core, repository, placeholder_digest)
    except BaseException as exc:
        known, now = _after_failure(core, repository, tag, digest, placeholder_digest, original, exc)
        if isinstance(exc, E.RegistryError) and known and now != digest:
            if now is None and placed:
                # Only the answer to our DELETE failed: the tag is gone, as asked.
                return {"repository": repository, "tag": tag, "digest": digest, "method": "placeholder"}
            raise E.TagMovedError(
                f"{repository}:{tag} {'now points at ' + now if now else 'was removed'} by another client "
                f"while it was being removed, and was left so ({exc})",
                expected=digest,
                actual=now,
            ) from exc
        raise
    _check_gone(core, repository, tag, digest)
    return {"repository": repository, "tag": tag, "digest": digest, "method": "placeholder"}


def _check_gone(core: ClientCore, repository: str, tag: str, digest: str) -> None:
    """After the placeholder's DELETE: the tag is gone, or another client pushed it again between the PUT and
    the DELETE (which untags only what points at the placeholder), and then TagMovedError says so."""
    try:
        now = reads.digest(core, repository, tag)
    except E.NotFoundError:
        return
    raise E.TagMovedError(
        f"{repository}:{tag} was pushed again by another client while it was being removed: it now points at "
        f"{now}, which stays",
        expected=digest,
        actual=now,
    )


def _after_failure(
    core: ClientCore,
    repository: str,
    tag: str,
    digest: str,
    placeholder_digest: str,
    original: Manifest,
    exc: BaseException,
) -> tuple[bool, str | None]:
    """After a failed placeholder PUT or DELETE: put the image back when the tag is (or may be) on the
    placeholder, never over a tag another client pushed meanwhile. Returns whether the tag's digest is
    known, and that digest (None: the tag is gone)."""
    try:
        now = reads.digest(core, repository, tag)
    except E.NotFoundError:
        return True, None
    except E.RegistryError as again:
        exc.add_note(f"where {repository}:{tag} points could not be read ({again}); putting it back on {digest}")
        now = placeholder_digest
    if now != placeholder_digest:
        return True, now
    try:
        writes.put_manifest(core, repository, tag, original.raw, media_type_of(original))
    except E.RegistryError as again:
        exc.add_note(f"{repository}:{tag} could not be put back on {digest}: {again}")
        return False, None
    return True, digest


def _placeholder_manifest(core: ClientCore, repository: str, tag: str) -> bytes:
    empty = b"{}"
    empty_digest = compute_digest(empty)
    if not reads.blob_exists(core, repository, empty_digest):
        writes.upload_blob(core, repository, empty, empty_digest)
    body = {
        "schemaVersion": 2,
        "mediaType": MT.OCI_MANIFEST,
        "config": {"mediaType": MT.OCI_EMPTY, "digest": empty_digest, "size": 2},
        "layers": [],
        "annotations": {MT.ANNOTATION_PLACEHOLDER: f"{tag}:{uuid.uuid4()}"},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def rmrepo(core: ClientCore, repo: str) -> list[str]:
    """Delete every manifest in the repository (children of indexes too); returns the digests deleted.

    Distribution keeps the name in the catalog with an empty tag list; disk is freed by garbage collection."""
    repository = core.repo(repo)
    deletes_enabled(core, repository)
    hashes = reads.tags(core, repository, with_hashes=True, auto_paginate=True).get("hashes", {})
    tops = list(dict.fromkeys(d for d in hashes.values() if d))
    children = []
    for digest in tops:
        manifest = reads.manifest(core, repository, digest)
        children += [c["digest"] for c in manifest.children]
    deleted = []
    for digest in tops + [c for c in dict.fromkeys(children) if c not in tops]:
        if writes.delete_manifest(core, repository, digest):
            deleted.append(digest)
    return deleted
