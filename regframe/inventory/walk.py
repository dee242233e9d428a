"""Where each manifest a crawl read sits (which tag, which index entry) and what it is there.

A manifest's kind and subject depend on how it was reached: a BuildKit attestation is an entry of its
image's index, a referrer is an entry of a fallback index, a cosign signature sits under a tag named after
its image. The crawl caches each manifest's skeleton by digest and this module classifies it in place,
for the frames and for the crawl's referrers queries alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..client import artifacts as A
from ..client import mediatypes as MT
from ..client.models import Manifest

Declared = tuple[str | None, str | None, str | None]


@dataclass(frozen=True)
class Placement:
    """One manifest under one tag: the tag's own manifest, or one entry of the index the tag points at."""

    repository: str
    tag: str
    digest: str
    manifest_digest: str
    summary: dict[str, Any]
    entry: dict[str, Any] | None
    declared: Declared | None
    kind: str
    artifact_type: str | None
    subject: str | None
    via: str | None


def skeleton_of(summary: dict[str, Any]) -> Manifest:
    return Manifest(summary.get("skeleton") or {"mediaType": summary.get("media_type")})


def placements(
    tag_refs: list[tuple[str, str, str]],
    manifests: dict[str, dict[str, Any]],
    missing: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
) -> Iterator[Placement]:
    """Every (tag, manifest) pair of a crawl, classified in place, in (repository, tag) order; an index
    entry ``missing`` from its repository (read in another) is left out there.

    An index entry takes the index's kind and subject when it looks like an image inside an index that
    is itself an accessory. A nested index (an index entry that is an index, as the image spec allows) is
    not a placement itself: its entries are, under the same tag, each digest once per tag."""
    for repository, tag, digest in sorted(tag_refs):
        top = manifests.get(digest)
        if top is None:
            continue
        top_manifest = skeleton_of(top)
        if not top["children"]:
            found = A.classify(top_manifest, tag=tag)
            via = A.subject_of(top_manifest, tag)[1] if found.subject else None
            yield Placement(repository, tag, digest, digest, top, None, None, *found, via)
            continue
        listed = A.is_referrers_index(top_manifest, tag)
        parent = A.classify(top_manifest, tag=tag)
        # A fallback index lists the referrers of the digest in its tag; an entry whose subject says otherwise
        # does not belong to it (the spec has clients confirm each entry by its subject) and is left out.
        owner = A.fallback_tag_subject(tag)
        for child_digest, child, entry, declared in _entries(repository, digest, top, manifests, missing):
            child_manifest = skeleton_of(child)
            found = A.classify(child_manifest, tag=tag, entry=entry, referrer=listed)
            if owner is not None and found.subject not in (None, owner):
                continue
            via = A.subject_of(child_manifest, tag, entry, referrer=listed)[1] if found.subject else None
            if found.kind == A.IMAGE and parent.kind != A.IMAGE and not listed:
                found = A.Classification(parent.kind, parent.artifact_type, parent.subject)
                via = A.subject_of(top_manifest, tag)[1] if parent.subject else None
            yield Placement(repository, tag, digest, child_digest, child, entry, declared, *found, via)


def _entries(
    repository: str,
    digest: str,
    top: dict[str, Any],
    manifests: dict[str, dict[str, Any]],
    missing: set[tuple[str, str]] | frozenset[tuple[str, str]],
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any], Declared | None]]:
    """An index's entries that are not indexes, through nested indexes, depth first in listed order: (digest,
    summary, the entry's descriptor, its declared platform). Each digest comes once, so a cycle ends."""
    seen = {digest}
    stack = [top]
    while stack:
        index = stack.pop()
        listed = skeleton_of(index).get("manifests") or []
        nested = []
        for position, (child_digest, _media_type, os_, arch, variant) in enumerate(index["children"]):
            child = manifests.get(child_digest)
            if child is None or child_digest in seen or (repository, child_digest) in missing:
                continue
            seen.add(child_digest)
            if child["children"]:
                nested.append(child)
                continue
            entry = listed[position] if position < len(listed) and isinstance(listed[position], dict) else {}
            declared = (os_, arch, variant) if os_ is not None or arch is not None else None
            yield child_digest, child, entry, declared
        stack.extend(reversed(nested))


def index_accessory(tag: str, summary: dict[str, Any]) -> tuple[A.Classification, str | None] | None:
    """An index that is itself an accessory (``artifactType`` or ``subject`` on an index that is not a
    referrers list), with how it was found; None for image indexes and referrers lists."""
    manifest = skeleton_of(summary)
    if not summary["children"] or A.is_referrers_index(manifest, tag):
        return None
    found = A.classify(manifest, tag=tag)
    if found.kind == A.IMAGE or found.subject is None:
        return None
    return found, A.subject_of(manifest, tag)[1]


def reads_config(manifest: Manifest) -> bool:
    """Only an image's Docker or OCI image config is read; any other config is known from its descriptor."""
    config = manifest.config
    if not config or A.base_type(config.get("mediaType")) not in MT.IMAGE_CONFIG_TYPES:
        return False
    return A.classify(manifest).kind == A.IMAGE


def wants_config(summary: dict[str, Any]) -> bool:
    """``reads_config`` for a manifest's summary: decided when it was summarised, or (a summary cached
    before that was recorded) decided again from its skeleton."""
    decided = summary.get("reads_config")
    if isinstance(decided, bool):
        return decided
    return reads_config(skeleton_of(summary))
