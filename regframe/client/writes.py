"""Uploads: blobs first, verified; manifests last, as their exact bytes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import errors as E
from . import mediatypes as MT
from . import reads, referrers
from .arguments import check_count, check_flag
from .core import ClientCore
from .models import Manifest, manifest_digest
from .reference import compute_digest, is_digest, validate_digest, validate_reference
from .scopes import delete_scope, push_scope
from .transport import Response, is_http_url, join_url

DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def start_upload(
    core: ClientCore, repository: str, mount: str | None = None, mount_from: str | None = None
) -> str | None:
    """Open an upload session; with ``mount``, ask for a cross-repository mount first.

    Returns the session's location, or None when the registry mounted the blob instead."""
    path = f"/v2/{repository}/blobs/uploads/"
    scopes = push_scope(repository, *([mount_from] if mount_from else []))
    if mount and mount_from:
        path += "?" + urlencode({"mount": mount, "from": mount_from})
    response = core.transport.request("POST", path, scopes=scopes, kind="upload", headers={"Content-Length": "0"})
    response.close()
    if response.status_code == 201 and mount:
        return None
    location = response.headers.get("Location")
    if not location:
        raise E.RegistryProtocolError(f"upload to {repository}: no Location in the {response.status_code} answer")
    return _session_url(response, location)


def _session_url(response: Response, location: str) -> str:
    """An upload ``Location`` resolved against the URL of the request it answered (RFC 9110 section 10.2.2):
    a registry served under a path prefix hands out ``/prefix/v2/...``, which is not relative to the prefix.
    One that parsers would read differently, or that is not http(s), is refused before anything is sent."""
    target = join_url(response.url, location)
    if not is_http_url(target):
        raise E.RegistryProtocolError(
            f"the registry gave upload location {E.bare_url(location)[:120]!r}, which is not a URL regframe sends to",
            url=E.bare_url(response.url),
        )
    return target


def cancel_upload(core: ClientCore, repository: str, location: str) -> None:
    try:
        core.transport.request("DELETE", location, scopes=push_scope(repository), kind="upload", ok=(404, 405)).close()
    except E.RegistryError:
        pass


def upload_blob(
    core: ClientCore, repo: str, data: bytes, digest: str | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> str:
    """Upload bytes as a blob (after checking they match ``digest``); returns the digest."""
    repository = core.repo(repo)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"data must be bytes, not {type(data).__name__}")
    data = bytes(data)
    digest = digest or compute_digest(data)
    validate_digest(digest)
    actual = compute_digest(data, digest)
    if actual != digest:
        raise E.DigestMismatchError(f"data to upload hashes to {actual}, not {digest}", expected=digest, actual=actual)
    return put_stream(core, repository, digest, [data], len(data), chunk_size)


def put_stream(
    core: ClientCore,
    repo: str,
    digest: str,
    chunks: Iterable[bytes],
    size: int,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    mount_from: str | None = None,
) -> str:
    """Upload a blob from chunks: monolithic PUT when it fits one chunk, PATCHes otherwise.

    A failed upload is cancelled (DELETE on its location) so no session is left open."""
    repository = core.repo(repo)
    validate_digest(digest)
    check_count("size", size, minimum=0)
    check_count("chunk_size", chunk_size)
    if mount_from is not None:
        mount_from = core.repo(mount_from)
    location = start_upload(core, repository, digest if mount_from else None, mount_from)
    if location is None:
        return digest
    scopes = push_scope(repository)
    try:
        if size <= chunk_size:
            body = b"".join(chunks)
            response = core.transport.request(
                "PUT",
                _with_query(location, digest=digest),
                body=body,
                scopes=scopes,
                kind="upload",
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(body))},
                retry=False,
            )
        else:
            offset = 0
            for piece in _rechunk(chunks, chunk_size):
                response = core.transport.request(
                    "PATCH",
                    location,
                    body=piece,
                    scopes=scopes,
                    kind="upload",
                    retry=False,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + len(piece) - 1}",
                        "Content-Length": str(len(piece)),
                    },
                )
                response.close()
                offset += len(piece)
                moved = response.headers.get("Location")
                if moved:
                    location = _session_url(response, moved)
            response = core.transport.request(
                "PUT",
                _with_query(location, digest=digest),
                body=b"",
                scopes=scopes,
                kind="upload",
                headers={"Content-Length": "0"},
                retry=False,
            )
        response.close()
    except BaseException:
        cancel_upload(core, repository, location)
        raise
    return digest


def put_manifest(
    core: ClientCore, repo: str, reference: str, raw: bytes, media_type: str, *, fallback_index: bool = False
) -> str:
    """PUT a manifest's exact bytes with its own media type; returns its digest.

    With ``fallback_index=True``, a manifest with a ``subject`` that the registry stores without answering
    ``OCI-Subject`` (it has no referrers API) is also listed in its subject's fallback tag index
    (``sha256-<hex>``), as the distribution spec asks of clients; a fallback tag that holds something else
    raises RegistryProtocolError once the manifest itself is stored, and is left as it was."""
    return send_manifest(core, repo, reference, raw, media_type, fallback_index=fallback_index).digest


@dataclass(frozen=True)
class ManifestPut:
    """What a manifest PUT did: the digest, and the ``OCI-Subject`` answer of a registry that has the
    referrers API and recorded the manifest as a referrer (None otherwise)."""

    digest: str
    oci_subject: str | None


def send_manifest(
    core: ClientCore, repo: str, reference: str, raw: bytes, media_type: str, *, fallback_index: bool = False
) -> ManifestPut:
    """``put_manifest``, telling also whether the registry answered ``OCI-Subject``."""
    repository = core.repo(repo)
    validate_reference(reference)
    if not isinstance(raw, bytes):
        raise ValueError(f"raw must be the manifest's bytes, not {type(raw).__name__}")
    if not isinstance(media_type, str) or not media_type:
        raise ValueError(f"media_type must be a media type string, not {media_type!r}")
    check_flag("fallback_index", fallback_index)
    by_digest = is_digest(reference)
    digest = manifest_digest(raw, media_type, reference.split(":", 1)[0] if by_digest else "sha256")
    if by_digest and reference != digest:
        raise E.DigestMismatchError(
            f"manifest bytes hash to {digest}, not {reference}", expected=reference, actual=digest
        )
    referrer = Manifest.parse(raw, media_type=media_type, digest=digest) if fallback_index else None
    response = core.transport.request(
        "PUT",
        f"/v2/{repository}/manifests/{reference}",
        body=raw,
        scopes=push_scope(repository),
        kind="manifest_put",
        headers={"Content-Type": media_type, "Content-Length": str(len(raw))},
    )
    response.close()
    returned = response.headers.get("Docker-Content-Digest")
    if returned and returned != digest:
        raise E.DigestMismatchError(
            f"registry stored the manifest as {returned}, expected {digest}", expected=digest, actual=returned
        )
    oci_subject = response.headers.get("OCI-Subject")
    subject = referrers.subject_of(referrer) if referrer is not None else None
    if referrer is not None and subject is not None and oci_subject is None:
        add_to_fallback_index(core, repository, subject, referrers.describe(referrer, referrers.VIA_TAG_SCHEMA))
    return ManifestPut(digest, oci_subject)


def add_to_fallback_index(core: ClientCore, repo: str, subject: str, referrer: Mapping[str, Any]) -> bool:
    """List ``referrer`` (a descriptor: mediaType, digest, size[, artifactType, annotations]) in the fallback
    tag index of ``subject``, as the distribution spec says: a missing tag starts an empty index, a tag
    holding anything but an OCI index is refused (RegistryProtocolError, nothing written), an entry already
    listed is left alone (False). The read-modify-write is not atomic: a writer racing it can lose an entry."""
    repository = core.repo(repo)
    tag = referrers.fallback_tag(subject)
    entry = referrers.index_entry(dict(referrer))
    validate_digest(entry["digest"])
    current = reads.manifest(core, repository, tag)
    if current and current.media_type != MT.OCI_INDEX:
        raise E.RegistryProtocolError(
            f"{repository}:{tag} holds a {current.media_type}, not an OCI image index; "
            f"referrer {entry['digest']} was not listed in it"
        )
    listed = current.get("manifests") if current else None
    entries = list(listed) if isinstance(listed, list) else []
    if any(isinstance(e, dict) and e.get("digest") == entry["digest"] for e in entries):
        return False
    document = dict(current) if current else {"schemaVersion": 2, "mediaType": MT.OCI_INDEX}
    document["manifests"] = [*entries, entry]
    put_manifest(core, repository, tag, json.dumps(document, separators=(",", ":")).encode(), MT.OCI_INDEX)
    return True


def remove_from_fallback_index(core: ClientCore, repo: str, subject: str, digests: Iterable[str]) -> int | None:
    """Drop the entries for ``digests`` from the fallback tag index of ``subject``, as the distribution spec
    asks of a client deleting referrers on a registry without the referrers API; returns how many entries
    remain, or None when there is no fallback tag. When none remain the tag is removed alone (a placeholder
    manifest is put over it and deleted, checked against the index just read), so the emptied index stays
    only as an untagged manifest. A tag holding anything but an OCI index raises RegistryProtocolError and
    is left as it was. Like ``add_to_fallback_index``, a read-modify-write that a concurrent writer can race;
    an index that changed before the tag is removed raises TagMovedError, nothing removed."""
    from . import deletes

    repository = core.repo(repo)
    tag = referrers.fallback_tag(subject)
    wanted = {validate_digest(digest) for digest in digests}
    current = reads.manifest(core, repository, tag)
    if not current:
        return None
    if current.media_type != MT.OCI_INDEX:
        raise E.RegistryProtocolError(
            f"{repository}:{tag} holds a {current.media_type}, not an OCI image index; no entry was removed from it"
        )
    listed = current.get("manifests")
    entries = list(listed) if isinstance(listed, list) else []
    kept = [e for e in entries if not (isinstance(e, dict) and e.get("digest") in wanted)]
    if len(kept) == len(entries):
        return len(kept)
    if not kept:
        deletes.rmtag(core, repository, tag, expected_digest=current.digest, method="placeholder")
        return 0
    document = {**current, "manifests": kept}
    put_manifest(core, repository, tag, json.dumps(document, separators=(",", ":")).encode(), MT.OCI_INDEX)
    return len(kept)


def delete_manifest(core: ClientCore, repo: str, reference: str) -> bool:
    """DELETE a manifest by digest (or by tag where the registry supports it); False when absent."""
    repository = core.repo(repo)
    validate_reference(reference)
    response = core.transport.request(
        "DELETE", f"/v2/{repository}/manifests/{reference}", scopes=delete_scope(repository), kind="delete", ok=(404,)
    )
    response.close()
    return response.status_code != 404


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)
