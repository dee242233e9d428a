"""Uploads: blobs first, verified; manifests last, as their exact bytes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import errors as E
from .core import ClientCore
from .models import manifest_digest
from .reference import compute_digest, validate_digest, validate_reference
from .scopes import delete_scope, push_scope

DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def start_upload(
    core: ClientCore, repository: str, mount: str | None = None, mount_from: str | None = None
) -> tuple[str | None, bool]:
    """Open an upload session; with ``mount``, ask for a cross-repository mount first.

    Returns (location, mounted)."""
    path = f"/v2/{repository}/blobs/uploads/"
    scopes = push_scope(repository, *([mount_from] if mount_from else []))
    if mount and mount_from:
        path += "?" + urlencode({"mount": mount, "from": mount_from})
    response = core.transport.request("POST", path, scopes=scopes, kind="upload", headers={"Content-Length": "0"})
    response.close()
    if response.status_code == 201 and mount:
        return None, True
    location = response.headers.get("Location")
    if not location:
        raise E.RegistryProtocolError(f"upload to {repository}: no Location in the {response.status_code} answer")
    return core.transport.url(location) if location.startswith("/") else location, False


def cancel_upload(core: ClientCore, repository: str, location: str) -> None:
    try:
        core.transport.request("DELETE", location, scopes=push_scope(repository), kind="upload", ok=(404, 405)).close()
    except E.RegistryError:
        pass


def upload_blob(
    core: ClientCore, repository: str, data: bytes, digest: str | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> str:
    """Upload bytes as a blob (after checking they match ``digest``); returns the digest."""
    repository = core.repo(repository)
    digest = digest or compute_digest(data)
    validate_digest(digest)
    actual = compute_digest(data, digest)
    if actual != digest:
        raise E.DigestMismatchError(f"data to upload hashes to {actual}, not {digest}", expected=digest, actual=actual)
    return put_stream(core, repository, digest, [data], len(data), chunk_size)


def put_stream(
    core: ClientCore,
    repository: str,
    digest: str,
    chunks: Iterable[bytes],
    size: int,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    mount_from: str | None = None,
) -> str:
    """Upload a blob from chunks: monolithic PUT when it fits one chunk, PATCHes otherwise.

    A failed upload is cancelled (DELETE on its location) so no session is left open."""
    location, mounted = start_upload(core, repository, digest if mount_from else None, mount_from)
    if mounted:
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
                    location = core.transport.url(moved) if moved.startswith("/") else moved
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


def put_manifest(core: ClientCore, repository: str, reference: str, raw: bytes, media_type: str) -> str:
    """PUT a manifest's exact bytes with its own media type; returns its digest."""
    repository = core.repo(repository)
    validate_reference(reference)
    digest = manifest_digest(raw, media_type)
    if ":" in reference and reference != digest:
        raise E.DigestMismatchError(
            f"manifest bytes hash to {digest}, not {reference}", expected=reference, actual=digest
        )
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
    return digest


def delete_manifest(core: ClientCore, repository: str, reference: str) -> bool:
    """DELETE a manifest by digest (or by tag where the registry supports it); False when absent."""
    repository = core.repo(repository)
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
