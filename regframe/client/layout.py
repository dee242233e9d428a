"""OCI image layouts on disk (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``), written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from . import mediatypes as MT
from .errors import DigestMismatchError, MissingLayerError
from .reference import compute_digest, hasher_for, validate_digest
from .reads import verify_chunks, write_atomically

REF_NAME = "org.opencontainers.image.ref.name"
READ_CHUNK = 1 << 20


class ImageLayout:
    """A directory that skopeo, crane and podman read as ``oci:DIR``; also reads a flat folder of
    digest-named files (``sha256:<hex>`` or ``<hex>``) for pushing."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def blob_path(self, digest: str) -> Path:
        algorithm, hex_ = validate_digest(digest).split(":", 1)
        return self.root / "blobs" / algorithm / hex_

    def find_blob(self, digest: str) -> Path | None:
        algorithm, hex_ = validate_digest(digest).split(":", 1)
        for candidate in (self.blob_path(digest), self.root / digest, self.root / hex_):
            if candidate.is_file():
                return candidate
        return None

    def has_verified_blob(self, digest: str, size: int | None = None) -> bool:
        path = self.find_blob(digest)
        if path is None or (size is not None and path.stat().st_size != size):
            return False
        return file_digest(path, digest) == digest

    def write_blob(self, digest: str, chunks: Iterator[bytes]) -> Path:
        """Write a blob whose chunks are already verified (a BlobStream) or verify them here."""
        target = self.blob_path(digest)
        write_atomically(target, verify_chunks(chunks, digest))
        return target

    def write_bytes(self, digest: str, data: bytes) -> Path:
        return self.write_blob(digest, iter([data]))

    def read_blob(self, digest: str) -> bytes:
        path = self.find_blob(digest)
        if path is None:
            raise MissingLayerError(f"blob {digest} is not in {self.root}", digest=digest)
        data = path.read_bytes()
        actual = compute_digest(data, digest)
        if actual != digest:
            raise DigestMismatchError(f"{path} hashes to {actual}, not {digest}", expected=digest, actual=actual)
        return data

    def iter_blob(self, digest: str) -> Iterator[bytes]:
        path = self.find_blob(digest)
        if path is None:
            raise MissingLayerError(f"blob {digest} is not in {self.root}", digest=digest)
        with open(path, "rb") as handle:
            while chunk := handle.read(READ_CHUNK):
                yield chunk

    def index(self) -> dict:
        path = self.root / "index.json"
        if not path.is_file():
            return {"schemaVersion": 2, "mediaType": MT.OCI_INDEX, "manifests": []}
        return json.loads(path.read_text())

    def tag(self, descriptor: dict, ref_name: str) -> None:
        """Point ``ref_name`` at ``descriptor`` in index.json, replacing an older entry of that name."""
        self.root.mkdir(parents=True, exist_ok=True)
        layout = self.root / "oci-layout"
        if not layout.is_file():
            write_atomically(layout, iter([json.dumps({"imageLayoutVersion": "1.0.0"}).encode()]))
        index = self.index()
        entries = [m for m in index.get("manifests", [])
                   if (m.get("annotations") or {}).get(REF_NAME) != ref_name]
        entry = dict(descriptor)
        entry["annotations"] = {**(descriptor.get("annotations") or {}), REF_NAME: ref_name}
        entries.append(entry)
        index["manifests"] = entries
        write_atomically(self.root / "index.json", iter([json.dumps(index, indent=2).encode()]))

    def resolve(self, ref_name: str | None = None) -> dict:
        """The index.json descriptor named ``ref_name`` (or the only one)."""
        manifests = self.index().get("manifests", [])
        if ref_name is not None:
            for entry in manifests:
                if (entry.get("annotations") or {}).get(REF_NAME) == ref_name:
                    return entry
        elif len(manifests) == 1:
            return manifests[0]
        raise MissingLayerError(f"{self.root}/index.json has no image named {ref_name!r}")


def file_digest(path: Path, like: str) -> str:
    hasher = hasher_for(like)
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            hasher.update(chunk)
    return f"{like.split(':')[0]}:{hasher.hexdigest()}"
