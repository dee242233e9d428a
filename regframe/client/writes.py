"""Uploads and deletes: blobs first, verified; manifests last, as their exact bytes."""

from __future__ import annotations

import json
import uuid

from typing import Iterable, Iterator
from urllib.parse import urlencode, urlsplit, parse_qsl, urlunsplit

from . import errors as E
from . import mediatypes as MT
from .models import manifest_digest
from .reference import compute_digest, validate_digest, validate_reference
from .reads import delete_scope, push_scope

DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


class RegistryWrites:
    """Blob uploads (monolithic and chunked), manifest PUT and DELETE; mixed into RegistryClient."""

    def _start_upload(self, repository: str, mount: str | None = None, mount_from: str | None = None) -> tuple[str | None, bool]:
        """Open an upload session; with ``mount``, ask for a cross-repository mount first.

        Returns (location, mounted)."""
        path = f"/v2/{repository}/blobs/uploads/"
        scopes = push_scope(repository, *([mount_from] if mount_from else []))
        if mount and mount_from:
            path += "?" + urlencode({"mount": mount, "from": mount_from})
        response = self.transport.request("POST", path, scopes=scopes, kind="upload",
                                          headers={"Content-Length": "0"})
        response.close()
        if response.status_code == 201 and mount:
            return None, True
        location = response.headers.get("Location")
        if not location:
            raise E.RegistryProtocolError(f"upload to {repository}: no Location in the {response.status_code} answer")
        return self.transport.url(location) if location.startswith("/") else location, False

    def _cancel_upload(self, repository: str, location: str) -> None:
        try:
            self.transport.request("DELETE", location, scopes=push_scope(repository), kind="upload",
                                   ok=(404, 405)).close()
        except E.RegistryError:
            pass

    def upload_blob(self, repository: str, data: bytes, digest: str | None = None,
                 chunk_size: int = DEFAULT_CHUNK_SIZE) -> str:
        """Upload bytes as a blob (after checking they match ``digest``); returns the digest."""
        repository = self._repo(repository)
        digest = digest or compute_digest(data)
        validate_digest(digest)
        actual = compute_digest(data, digest)
        if actual != digest:
            raise E.DigestMismatchError(f"data to upload hashes to {actual}, not {digest}",
                                        expected=digest, actual=actual)
        return self.put_stream(repository, digest, [data], len(data), chunk_size)

    def put_stream(self, repository: str, digest: str, chunks: Iterable[bytes], size: int,
                   chunk_size: int = DEFAULT_CHUNK_SIZE, mount_from: str | None = None) -> str:
        """Upload a blob from chunks: monolithic PUT when it fits one chunk, PATCHes otherwise.

        A failed upload is cancelled (DELETE on its location) so no session is left open."""
        location, mounted = self._start_upload(repository, digest if mount_from else None, mount_from)
        if mounted:
            return digest
        scopes = push_scope(repository)
        try:
            if size <= chunk_size:
                body = b"".join(chunks)
                response = self.transport.request(
                    "PUT", _with_query(location, digest=digest), body=body, scopes=scopes, kind="upload",
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(body))},
                    retry=False)
            else:
                offset = 0
                for piece in _rechunk(chunks, chunk_size):
                    response = self.transport.request(
                        "PATCH", location, body=piece, scopes=scopes, kind="upload", retry=False,
                        headers={"Content-Type": "application/octet-stream",
                                 "Content-Range": f"{offset}-{offset + len(piece) - 1}",
                                 "Content-Length": str(len(piece))})
                    response.close()
                    offset += len(piece)
                    moved = response.headers.get("Location")
                    if moved:
                        location = self.transport.url(moved) if moved.startswith("/") else moved
                response = self.transport.request(
                    "PUT", _with_query(location, digest=digest), body=b"", scopes=scopes, kind="upload",
                    headers={"Content-Length": "0"}, retry=False)
            response.close()
        except BaseException:
            self._cancel_upload(repository, location)
            raise
        return digest

    def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> str:
        """PUT a manifest's exact bytes with its own media type; returns its digest."""
        repository = self._repo(repository)
        validate_reference(reference)
        digest = manifest_digest(raw, media_type)
        if ":" in reference and reference != digest:
            raise E.DigestMismatchError(f"manifest bytes hash to {digest}, not {reference}",
                                        expected=reference, actual=digest)
        response = self.transport.request(
            "PUT", f"/v2/{repository}/manifests/{reference}", body=raw, scopes=push_scope(repository),
            kind="manifest_put", headers={"Content-Type": media_type, "Content-Length": str(len(raw))})
        response.close()
        returned = response.headers.get("Docker-Content-Digest")
        if returned and returned != digest:
            raise E.DigestMismatchError(f"registry stored the manifest as {returned}, expected {digest}",
                                        expected=digest, actual=returned)
        return digest

    def delete_manifest(self, repository: str, reference: str) -> bool:
        """DELETE a manifest by digest (or by tag where the registry supports it); False when absent."""
        repository = self._repo(repository)
        validate_reference(reference)
        response = self.transport.request("DELETE", f"/v2/{repository}/manifests/{reference}",
                                          scopes=delete_scope(repository), kind="delete", ok=(404,))
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


class RegistryDeletes:
    """rmtag and rmrepo; mixed into RegistryClient. Never removes a tag it was not asked to remove
    (``rmtag(..., method="placeholder")`` not even under a racing writer)."""

    def _deletes_enabled(self, repository: str) -> None:
        """Probe with a digest that cannot exist: 404 means deletes work; the transport turns the
        405 of a registry with deletion disabled into DeleteDisabledError. Probed once per repository
        and client, so a cleanup of many tags does not repeat it."""
        if repository not in self._deletes_ok:
            self.delete_manifest(repository, "sha256:" + "0" * 64)
            self._deletes_ok.add(repository)

    def rmtag(self, repo: str, tag: str, *, expected_digest: str | None = None,
              siblings: Iterable[str] | None = None, method: str = "auto") -> dict:
        """Remove only ``tag``; other tags on the same digest keep resolving to it.

        ``method="auto"``: tries DELETE by tag (OCI 1.1). Where the registry refuses that (distribution
        2.8 does), a tag with siblings is pointed at a unique throw-away manifest which is then deleted;
        a tag alone on its digest has its manifest deleted by digest. ``siblings``: the other tags known
        to share the digest (found by listing when not given). A tag another client puts on the same
        image between that listing and the delete goes with it: pass ``method="placeholder"`` when
        other clients may be writing.

        ``method="placeholder"``: always the throw-away manifest; no image manifest is ever deleted, so
        no other tag can be lost. The image stays, untagged, until garbage collection.

        ``expected_digest``: refuse with ``TagMovedError``, changing nothing, unless the tag still points
        at it. The check is a HEAD right before the write; the registry has no compare-and-swap, so a
        move landing in the moment between the two is overwritten. Returns what was done."""
        repository = self._repo(repo)
        validate_reference(tag)
        if expected_digest is not None:
            validate_digest(expected_digest)
        if method not in ("auto", "placeholder"):
            raise ValueError(f"method must be 'auto' or 'placeholder', not {method!r}")
        self._deletes_enabled(repository)
        if method == "placeholder":
            return self._untag(repository, tag, expected_digest)
        digest = self._current_digest(repository, tag, expected_digest)
        response = self.transport.request("DELETE", f"/v2/{repository}/manifests/{tag}",
                                          scopes=delete_scope(repository), kind="delete",
                                          ok=(400, 404, 405), retry=False)
        response.close()
        if response.status_code == 202:
            return {"repository": repository, "tag": tag, "digest": digest, "method": "delete-by-tag"}
        if siblings is None:
            hashes = self.tags(repository, with_hashes=True, auto_paginate=True).get("hashes", {})
            # A listed tag whose digest cannot be read may share this one: treat it as a sibling.
            siblings = [t for t, d in hashes.items() if d in (digest, None) and t != tag]
        siblings = [t for t in siblings if t != tag]
        if not siblings:
            self.delete_manifest(repository, digest)
            return {"repository": repository, "tag": tag, "digest": digest, "method": "delete-manifest"}
        return {**self._untag(repository, tag, digest), "kept": sorted(siblings)}

    def _current_digest(self, repository: str, tag: str, expected: str | None) -> str:
        """The tag's digest by HEAD; TagMovedError when it differs from ``expected`` (or is gone)."""
        try:
            current = self.digest(repository, tag)
        except E.NotFoundError:
            if expected is None:
                raise
            current = None
        if expected is not None and current != expected:
            where = f"now points at {current}" if current else "no longer exists"
            raise E.TagMovedError(f"{repository}:{tag} {where}, not {expected}; nothing was deleted",
                                  expected=expected, actual=current)
        return current

    def _untag(self, repository: str, tag: str, expected: str | None) -> dict:
        """Point ``tag`` at a unique throw-away manifest and delete that: only this tag goes.

        Everything that can be prepared (the image's bytes, to put the tag back should the PUT or the
        DELETE fail, and the placeholder) comes before the HEAD check, so the check and the PUT are
        one round trip apart."""
        digest = expected or self._current_digest(repository, tag, None)
        original = self.manifest(repository, digest)
        if not original:
            raise E.TagMovedError(f"{repository}:{tag}: its manifest {digest} no longer exists; nothing was deleted",
                                  expected=digest, actual=None)
        placeholder = self._placeholder_manifest(repository, tag)
        self._current_digest(repository, tag, digest)
        try:
            placeholder_digest = self.put_manifest(repository, tag, placeholder, MT.OCI_MANIFEST)
            self.delete_manifest(repository, placeholder_digest)
        except BaseException as exc:
            try:
                self.put_manifest(repository, tag, original.raw, original.media_type)
            except E.RegistryError as again:
                exc.add_note(f"{repository}:{tag} could not be put back on {digest}: {again}")
            raise
        return {"repository": repository, "tag": tag, "digest": digest, "method": "placeholder"}

    def _placeholder_manifest(self, repository: str, tag: str) -> bytes:
        empty = b"{}"
        empty_digest = compute_digest(empty)
        if not self.blob_exists(repository, empty_digest):
            self.upload_blob(repository, empty, empty_digest)
        body = {"schemaVersion": 2, "mediaType": MT.OCI_MANIFEST,
                "config": {"mediaType": MT.OCI_EMPTY, "digest": empty_digest, "size": 2},
                "layers": [],
                "annotations": {"io.regframe.placeholder": f"{tag}:{uuid.uuid4()}"}}
        return json.dumps(body, separators=(",", ":")).encode()

    def rmrepo(self, repo: str) -> list[str]:
        """Delete every manifest in the repository (children of indexes too); returns the digests deleted.

        Distribution keeps the name in the catalog with an empty tag list; disk is freed by garbage collection."""
        repository = self._repo(repo)
        self._deletes_enabled(repository)
        hashes = self.tags(repository, with_hashes=True, auto_paginate=True).get("hashes", {})
        tops = list(dict.fromkeys(d for d in hashes.values() if d))
        children = []
        for digest in tops:
            manifest = self.manifest(repository, digest)
            children += [c["digest"] for c in manifest.children]
        deleted = []
        for digest in tops + [c for c in dict.fromkeys(children) if c not in tops]:
            if self.delete_manifest(repository, digest):
                deleted.append(digest)
        return deleted
