"""OCI image layouts on disk (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``), written atomically.

Nothing inside a layout is read or written through a symbolic link, and only regular files are read:
whoever can write the directory could otherwise plant ``index.json`` pointing at a file of secrets (which
the next tag would copy into the new index.json) or ``blobs/`` pointing at a directory elsewhere. The
layout directory itself may be a link; that is the caller's choice.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

try:
    import fcntl
except ImportError:  # Windows has no fcntl: there a layout is not locked
    fcntl = None  # type: ignore[assignment]

from . import mediatypes as MT
from .atomic_files import link_refused, open_directory, write_atomically
from .digests import verify_chunks
from .errors import DigestMismatchError, MissingLayerError
from .models import Descriptor
from .reference import compute_digest, hasher_for, validate_digest

REF_NAME = "org.opencontainers.image.ref.name"
READ_CHUNK = 1 << 20
MAX_INDEX_BYTES = 64 * 1024 * 1024  # index.json is read into memory
# O_NONBLOCK: opening a FIFO planted in the layout must not block; regular files ignore it.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


class ImageLayout:
    """A directory that skopeo, crane and podman read as ``oci:DIR``; also reads a flat folder of
    digest-named files (``sha256:<hex>`` or ``<hex>``) for pushing."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def blob_path(self, digest: str) -> Path:
        algorithm, hex_ = validate_digest(digest).split(":", 1)
        return self.root / "blobs" / algorithm / hex_

    def check(self) -> None:
        """Refuse, before any work, a layout whose index.json, oci-layout or blob directories are links."""
        for name in ("index.json", "oci-layout"):
            fd = self._open((name,))
            if fd is not None:
                os.close(fd)
        for parts in (("blobs",), ("blobs", "sha256")):
            try:
                os.close(open_directory(self.root, parts))
            except FileNotFoundError:
                pass

    def _open(self, parts: tuple[str, ...]) -> int | None:
        """A read descriptor of the regular file ``root/parts``, or None when there is none."""
        *directories, name = parts
        try:
            dir_fd = open_directory(self.root, directories)
        except FileNotFoundError:
            return None
        try:
            return open_regular(dir_fd, name, self.root.joinpath(*parts))
        finally:
            os.close(dir_fd)

    def _open_blob(self, digest: str, *, flat: bool = True) -> tuple[BinaryIO, Path] | None:
        """The blob at ``blobs/<alg>/<hex>``, or (``flat``) at a flat ``<digest>`` or ``<hex>``, as the gem's
        pull leaves them; None when there is none."""
        algorithm, hex_ = validate_digest(digest).split(":", 1)
        for parts in (("blobs", algorithm, hex_), (digest,), (hex_,)) if flat else (("blobs", algorithm, hex_),):
            fd = self._open(parts)
            if fd is not None:
                return os.fdopen(fd, "rb"), self.root.joinpath(*parts)
        return None

    def find_blob(self, digest: str) -> Path | None:
        found = self._open_blob(digest)
        if found is None:
            return None
        found[0].close()
        return found[1]

    def has_verified_blob(self, digest: str, size: int | None = None) -> bool:
        """Whether the layout holds the blob where the image-layout spec puts it (``blobs/<alg>/<hex>``), whole:
        a pull may skip it then. A flat file of that name elsewhere does not count: a layout tagged on it would
        be incomplete to every other reader."""
        found = self._open_blob(digest, flat=False)
        if found is None:
            return False
        with found[0] as handle:
            if size is not None and os.fstat(handle.fileno()).st_size != size:
                return False
            return _hash(handle, digest) == digest

    def verified_size(self, digest: str) -> int | None:
        """The size of the local blob once it hashes to ``digest``; None when there is none."""
        found = self._open_blob(digest)
        if found is None:
            return None
        handle, path = found
        with handle:
            actual = _hash(handle, digest)
            if actual != digest:
                raise DigestMismatchError(f"{path} hashes to {actual}, not {digest}", expected=digest, actual=actual)
            return os.fstat(handle.fileno()).st_size

    def write_blob(self, digest: str, chunks: Iterable[bytes]) -> Path:
        """Write a blob whose chunks are already verified (a BlobStream) or verify them here."""
        target = self.blob_path(digest)
        if target.is_symlink():
            raise link_refused(target)
        write_atomically(target, verify_chunks(chunks, digest), root=self.root)
        return target

    def write_bytes(self, digest: str, data: bytes) -> Path:
        return self.write_blob(digest, iter([data]))

    def read_blob(self, digest: str, max_size: int | None = None) -> bytes:
        """A blob's bytes, checked against its digest; a file over ``max_size`` is refused unread."""
        found = self._open_blob(digest)
        if found is None:
            raise MissingLayerError(f"blob {digest} is not in {self.root}", digest=digest)
        handle, path = found
        with handle:
            data = handle.read() if max_size is None else handle.read(max_size + 1)
        if max_size is not None and len(data) > max_size:
            raise ValueError(f"{path} is over the {max_size} bytes expected of it")
        actual = compute_digest(data, digest)
        if actual != digest:
            raise DigestMismatchError(f"{path} hashes to {actual}, not {digest}", expected=digest, actual=actual)
        return data

    def iter_blob(self, digest: str, size: int | None = None) -> Iterator[bytes]:
        """A blob's bytes through one descriptor; with ``size``, exactly that many or ValueError."""
        found = self._open_blob(digest)
        if found is None:
            raise MissingLayerError(f"blob {digest} is not in {self.root}", digest=digest)
        handle, path = found
        read = 0
        with handle:
            while chunk := handle.read(READ_CHUNK if size is None else min(READ_CHUNK, size + 1 - read)):
                read += len(chunk)
                if size is not None and read > size:
                    raise ValueError(f"{path} is longer than the {size} bytes its descriptor declares")
                yield chunk
        if size is not None and read != size:
            raise ValueError(f"{path} is {read} bytes, shorter than the {size} its descriptor declares")

    def index(self) -> dict[str, Any]:
        path = self.root / "index.json"
        fd = self._open(("index.json",))
        if fd is None:
            return {"schemaVersion": 2, "mediaType": MT.OCI_INDEX, "manifests": []}
        with os.fdopen(fd, "rb") as handle:
            raw = handle.read(MAX_INDEX_BYTES + 1)
        if len(raw) > MAX_INDEX_BYTES:
            raise ValueError(f"{path} is over {MAX_INDEX_BYTES} bytes")
        try:
            index = json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ValueError(f"{path} is not valid JSON ({exc})") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
            raise ValueError(f"{path} is not an OCI image index (a JSON object with a list of manifests)")
        return index

    def tag(self, descriptor: Descriptor, name: str) -> None:
        """Point ``name`` at ``descriptor`` in index.json, replacing an older entry of that name."""
        marker = self._open(("oci-layout",))
        if marker is None:
            write_atomically(
                self.root / "oci-layout", [json.dumps({"imageLayoutVersion": "1.0.0"}).encode()], root=self.root
            )
        else:
            os.close(marker)
        entry = dict(descriptor)
        entry["annotations"] = {**(descriptor.get("annotations") or {}), REF_NAME: name}
        self.update_index(lambda listed: [*(m for m in listed if ref_name(m) != name), entry])

    def update_index(self, change: Callable[[list[Any]], list[Any]]) -> None:
        """Rewrite index.json's manifests as ``change`` makes them from the current ones, holding an exclusive
        lock on the layout directory from the read to the atomic write: pulls into one layout at once (two
        threads or two processes) would otherwise each write back what they read and lose the other's tag."""
        fd = open_directory(self.root, ())
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            index = self.index()
            index["manifests"] = change(list(index.get("manifests") or []))
            write_atomically(self.root / "index.json", [json.dumps(index, indent=2).encode()], root=self.root)
        finally:
            os.close(fd)

    def resolve(self, name: str | None = None) -> Descriptor:
        """The index.json descriptor named ``name``, or the only one: without ``name``, or when the layout's
        one image has no name at all (``skopeo copy ... oci:DIR`` without a tag writes it so)."""
        manifests = [m for m in self.index().get("manifests", []) if isinstance(m, dict)]
        if name is not None:
            for entry in manifests:
                if ref_name(entry) == name:
                    return entry
        if len(manifests) == 1 and (name is None or ref_name(manifests[0]) is None):
            return manifests[0]
        raise MissingLayerError(f"{self.root}/index.json has no image named {name!r}")


def open_regular(dir_fd: int | None, name: str, path: Path) -> int | None:
    """A read descriptor of the regular file ``name`` in ``dir_fd``, or None when there is none; a
    symbolic link, a FIFO or anything else but a regular file is refused, naming ``path``."""
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise link_refused(path) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd


def _hash(handle: BinaryIO, like: str) -> str:
    hasher = hasher_for(like)
    while chunk := handle.read(READ_CHUNK):
        hasher.update(chunk)
    return f"{like.split(':')[0]}:{hasher.hexdigest()}"


def ref_name(entry: object) -> object:
    """The ``org.opencontainers.image.ref.name`` of an index entry; None for a malformed entry."""
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    return annotations.get(REF_NAME) if isinstance(annotations, dict) else None
