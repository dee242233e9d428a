"""Referrers: the manifests that name an image as their ``subject``, and cosign's tags beside it.

A registry with the OCI 1.1 referrers API lists them at ``GET /v2/<name>/referrers/<digest>``. One without
it (distribution 2.x and most hubs today) keeps them in the fallback tag ``sha256-<hex>``, an index that
every writer updates, and cosign's tag scheme puts signatures, attestations and SBOMs under
``sha256-<hex>.sig``, ``.att`` and ``.sbom``. ``referrers()`` reads all three and merges them, since a
copy by tags leaves fallback indexes on registries that have the API.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from . import artifacts, reads
from . import errors as E
from . import mediatypes as MT
from .artifacts import VIA_API as VIA_API
from .artifacts import VIA_COSIGN_TAG as VIA_COSIGN_TAG
from .artifacts import VIA_TAG_SCHEMA as VIA_TAG_SCHEMA
from .artifacts import classify, fallback_tag
from .core import ClientCore
from .models import Manifest
from .reference import validate_digest, validate_tag

__all__ = [
    "Referrer",
    "api_referrers",
    "cosign_referrers",
    "describe",
    "fallback_tag",
    "index_entry",
    "referrers",
    "subject_of",
    "supports_referrers",
    "tag_schema_referrers",
]
from .scopes import pull_scope
from .transport import DEFAULT_JSON_LIMIT, parse_json

Referrer = dict[str, Any]

# A registry without the API answers these (distribution 2.8: 404 text/plain from its router), or a
# 200 that is not an index; go-containerregistry and regclient fall back to the tag on each of them.
NO_API_STATUSES = (400, 404, 406)
COSIGN_SUFFIXES = (".sig", ".att", ".sbom")

_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(rf"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}(?:; ?{_RESTRICTED_NAME}={_RESTRICTED_NAME})*")


def check_artifact_type(artifact_type: object) -> str | None:
    """``artifact_type`` if it is None or a media type (RFC 6838 names, optional ``;name=value``), else
    ValueError naming it."""
    if artifact_type is None:
        return None
    if not isinstance(artifact_type, str):
        raise ValueError(f"artifact_type must be a media type string or None, not {type(artifact_type).__name__}")
    if not _MEDIA_TYPE.fullmatch(artifact_type):
        raise ValueError(f"artifact_type {artifact_type[:80]!r} is not a media type such as 'application/spdx+json'")
    return artifact_type


def cosign_tags(digest: str) -> list[str]:
    """cosign's ``.sig``, ``.att`` and ``.sbom`` tags for ``digest`` (none for a sha512 digest, whose
    tags would pass the 128-character limit)."""
    base = validate_digest(digest).replace(":", "-", 1)
    names = [base + suffix for suffix in COSIGN_SUFFIXES]
    return [name for name in names if len(name) <= 128 and validate_tag(name)]


def subject_of(manifest: Manifest) -> str | None:
    """The digest in a manifest's ``subject`` field, or None when it has none (or a malformed one)."""
    return artifacts.subject_field(manifest)


def describe(manifest: Manifest, via: str, tag: str | None = None) -> Referrer:
    """A manifest as a referrers descriptor (``digest``, ``mediaType``, ``artifactType``, ``size``,
    ``annotations``) plus ``kind`` (``artifacts.classify``) and ``via``, how it was found; one found by a
    cosign tag also carries that ``tag``."""
    referrer: Referrer = {
        "digest": manifest.digest,
        "mediaType": manifest.media_type,
        "artifactType": artifacts.referrers_artifact_type(manifest),
        "size": manifest.size,
        "annotations": _string_pairs(manifest.get("annotations")),
        "kind": classify(manifest, tag=tag, referrer=tag is None).kind,
        "via": via,
    }
    if tag is not None:
        referrer["tag"] = tag
    return referrer


def index_entry(referrer: Referrer) -> dict[str, Any]:
    """A referrer as an entry of a referrers index: descriptor fields only, ``artifactType`` and
    ``annotations`` when it has them."""
    entry: dict[str, Any] = {"mediaType": referrer["mediaType"], "digest": referrer["digest"], "size": referrer["size"]}
    if referrer.get("artifactType"):
        entry["artifactType"] = referrer["artifactType"]
    if referrer.get("annotations"):
        entry["annotations"] = dict(referrer["annotations"])
    return entry


# -- reading ------------------------------------------------------------------------------------------


def referrers(core: ClientCore, repo: str, digest: str, *, artifact_type: str | None = None) -> list[Referrer]:
    """Every manifest in ``repo`` that refers to ``digest``, as descriptor dicts: ``digest``, ``mediaType``,
    ``artifactType``, ``size``, ``annotations``, ``kind`` (signature, attestation, sbom, ...) and ``via``
    (``api``, ``tag-schema`` or ``cosign-tag``; cosign's also carry their ``tag``).

    The referrers API is used where the registry has it (probed once per client and repository), following
    its ``Link`` pages; the fallback tag ``sha256-<hex>`` is read too (each entry confirmed by its manifest's
    ``subject``, stale ones dropped), and so are cosign's ``.sig``, ``.att`` and ``.sbom`` tags. With
    ``artifact_type`` only referrers of that type are returned, filtered here when the registry did not."""
    repository = core.repo(repo)
    validate_digest(digest)
    wanted = check_artifact_type(artifact_type)
    found = api_referrers(core, repository, digest, artifact_type=wanted) or []
    found += tag_schema_referrers(core, repository, digest)
    found += cosign_referrers(core, repository, digest)
    unique: dict[str, Referrer] = {}
    for referrer in found:
        unique.setdefault(referrer["digest"], referrer)
    return [r for r in unique.values() if wanted is None or r["artifactType"] == wanted]


def supports_referrers(core: ClientCore, repo: str, digest: str) -> bool:
    """Whether the registry serves the referrers API for ``repo``, asked once per client and repository
    with ``digest``, which should be a manifest that exists there (a registry with the API may answer
    404 for an unknown subject: that answer is not remembered)."""
    repository = core.repo(repo)
    validate_digest(digest)
    known = core.referrers_api.get(repository)
    if known is None:
        _first_page(core, repository, digest, None)
        known = core.referrers_api.get(repository)
    return bool(known)


def api_referrers(
    core: ClientCore, repo: str, digest: str, *, artifact_type: str | None = None
) -> list[Referrer] | None:
    """The referrers API's answer, every page, or None when the registry has no API for ``repo``. Not
    filtered here: a registry may ignore ``artifactType`` (no ``OCI-Filters-Applied`` header)."""
    repository = core.repo(repo)
    validate_digest(digest)
    wanted = check_artifact_type(artifact_type)
    if core.referrers_api.get(repository) is False:
        return None
    first = _first_page(core, repository, digest, wanted)
    if first is None:
        return None
    entries, next_url = first
    if next_url is not None:
        what = f"GET /v2/{repository}/referrers/{digest}"
        for body, _ in reads.pages(core, next_url, pull_scope(repository), "referrers", max_pages=reads.MAX_PAGES - 1):
            entries += _entries(body, what)
    return entries


def _first_page(
    core: ClientCore, repository: str, digest: str, artifact_type: str | None
) -> tuple[list[Referrer], str | None] | None:
    """The first page and the link to the next, or None when the answer says there is no API (recorded
    in the core, except for a JSON 404: the route exists and only the subject is unknown)."""
    path = f"/v2/{repository}/referrers/{digest}"
    what = f"GET {path}"
    query = f"?{urlencode({'artifactType': artifact_type})}" if artifact_type else ""
    response, raw = core.transport.fetch(
        "GET",
        path + query,
        limit=DEFAULT_JSON_LIMIT,
        what=what,
        headers={"Accept": MT.OCI_INDEX},
        scopes=pull_scope(repository),
        kind="referrers",
        ok=NO_API_STATUSES,
    )
    content_type = artifacts.base_type(response.headers.get("Content-Type")) or ""
    if response.status_code != 200 or content_type != MT.OCI_INDEX:
        if not (response.status_code == 404 and content_type == "application/json"):
            core.referrers_api[repository] = False
        return None
    core.referrers_api[repository] = True
    body = parse_json(raw, what, response.url)
    if not isinstance(body, dict):
        raise E.RegistryProtocolError(f"{what}: expected a JSON object (an image index)", url=response.url)
    return _entries(body, what), reads.next_page(core, response.headers.get("Link"), response.url, what)


def _entries(body: dict[str, Any], what: str) -> list[Referrer]:
    manifests = body.get("manifests")
    if manifests is None:
        return []  # Harbor answers {} for a subject it does not know
    if not isinstance(manifests, list):
        raise E.RegistryProtocolError(f"{what}: 'manifests' is {type(manifests).__name__}, not a list")
    return [_api_descriptor(entry, what) for entry in manifests]


def _api_descriptor(entry: object, what: str) -> Referrer:
    """One entry of a referrers answer, every field checked, so a hostile answer fails here naming it."""
    if not isinstance(entry, dict):
        raise E.RegistryProtocolError(f"{what}: an entry is {type(entry).__name__}, not a descriptor object")
    digest = entry.get("digest")
    try:
        validate_digest(digest)
    except E.InvalidReferenceError as exc:
        raise E.RegistryProtocolError(f"{what}: entry digest: {exc}") from None
    media_type, artifact_type, size = entry.get("mediaType"), entry.get("artifactType"), entry.get("size")
    annotations = entry.get("annotations")
    if not isinstance(media_type, str) or not media_type:
        raise E.RegistryProtocolError(f"{what}: entry {digest} has no mediaType string")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MT.MAX_MANIFEST_BYTES:
        raise E.RegistryProtocolError(f"{what}: entry {digest} size {size!r} is not a manifest's byte count")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise E.RegistryProtocolError(f"{what}: entry {digest} artifactType is not a string")
    if annotations is not None and not (
        isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values())
    ):
        raise E.RegistryProtocolError(f"{what}: entry {digest} annotations are not string pairs")
    # The kind as far as a descriptor tells it: artifactType, and the predicate in the annotations.
    outline = Manifest({"mediaType": media_type, "artifactType": artifact_type, "annotations": annotations or {}})
    return {
        "digest": digest,
        "mediaType": media_type,
        "artifactType": artifact_type or None,
        "size": size,
        "annotations": dict(annotations or {}),
        "kind": classify(outline, referrer=True).kind,
        "via": VIA_API,
    }


def tag_schema_referrers(core: ClientCore, repo: str, digest: str) -> list[Referrer]:
    """The entries of the fallback tag's index whose manifest still exists and names ``digest`` as its
    subject, described from that manifest (older writers left out annotations); none when the tag holds
    no index, as the distribution spec says."""
    repository = core.repo(repo)
    index = reads.manifest(core, repository, fallback_tag(digest))
    if not index or not index.is_index:
        return []
    found = []
    for child in index.children:
        try:
            manifest = reads.child_manifest(core, index, child)
        except E.NotFoundError:
            continue
        if subject_of(manifest) == digest:
            found.append(describe(manifest, VIA_TAG_SCHEMA))
    return found


def cosign_referrers(core: ClientCore, repo: str, digest: str) -> list[Referrer]:
    """The manifests under cosign's ``.sig``, ``.att`` and ``.sbom`` tags for ``digest``, each with its ``tag``."""
    repository = core.repo(repo)
    found = []
    for tag in cosign_tags(digest):
        manifest = reads.manifest(core, repository, tag)
        if manifest:
            found.append(describe(manifest, VIA_COSIGN_TAG, tag))
    return found


def _string_pairs(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
