"""Content checked against its digest: blob streams and manifest bytes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from . import errors as E
from . import mediatypes as MT
from .models import Manifest, check_structure, manifest_digest
from .reference import hasher_for, is_digest, validate_digest


def verify_chunks(chunks: Iterable[bytes], digest: str) -> Iterator[bytes]:
    """Pass chunks through, holding the last one back until the whole stream hashes to ``digest``,
    so a consumer that writes or uploads them never completes with bad content."""
    hasher = hasher_for(digest)
    pending = None
    for chunk in chunks:
        if pending is not None:
            yield pending
        hasher.update(chunk)
        pending = chunk
    actual = f"{digest.split(':')[0]}:{hasher.hexdigest()}"
    if actual != digest:
        raise E.DigestMismatchError(f"content hashes to {actual}, not {digest}", expected=digest, actual=actual)
    if pending is not None:
        yield pending


def verified_manifest(raw: bytes, headers: Mapping[str, str], repository: str, reference: str) -> Manifest:
    """Parse a manifest and refuse it unless its bytes match every digest claimed for it."""
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip()
    manifest = Manifest.parse(raw, headers=headers, repository=repository, reference=reference)
    body_type = manifest.get("mediaType")
    if body_type and content_type in MT.MANIFEST_TYPES and body_type != content_type:
        raise E.RegistryProtocolError(
            f"manifest {repository}:{reference}: Content-Type {content_type} disagrees with its mediaType {body_type}"
        )
    if body_type is not None and not isinstance(body_type, str):
        raise E.RegistryProtocolError(f"manifest {repository}:{reference}: mediaType {body_type!r} is not a string")
    media_type = body_type or (content_type if content_type in MT.MANIFEST_TYPES else None)
    if media_type is None:
        if manifest.get("schemaVersion") == 1:
            media_type = MT.DOCKER_SCHEMA1_SIGNED if "signatures" in manifest else MT.DOCKER_SCHEMA1
        elif "manifests" in manifest:
            media_type = MT.OCI_INDEX
        elif "layers" in manifest:
            media_type = MT.OCI_MANIFEST
    claimed = [d for d in (reference if is_digest(reference) else None, headers.get("Docker-Content-Digest")) if d]
    algorithm = claimed[0].split(":")[0] if claimed else "sha256"
    if algorithm not in ("sha256", "sha512"):
        raise E.RegistryProtocolError(f"manifest {repository}:{reference}: unsupported digest {claimed[0]!r}")
    actual = manifest_digest(raw, media_type, algorithm)
    for digest in claimed:
        if digest != actual:
            raise E.DigestMismatchError(
                f"manifest {repository}:{reference} hashes to {actual}, but {digest} was claimed",
                expected=digest,
                actual=actual,
            )
    manifest.media_type = media_type
    manifest.digest = actual
    check_structure(manifest)
    return manifest


def well_formed(digest: str) -> bool:
    try:
        validate_digest(digest)
    except E.InvalidReferenceError:
        return False
    return True
