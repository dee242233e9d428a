"""Content-addressed blobs and deterministic layers: real gzip-compressed tar archives, no Docker.

The same ``(seed, size)`` always gives byte-identical layers, so every digest a test expects is known
before anything is pushed.
"""

from __future__ import annotations

import functools
import hashlib
import random
import struct
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import Any

from regframe.client.reference import sha256_digest

__all__ = ["MIN_LAYER_SIZE", "Blob", "Layer", "layer"]

# gzip header + tar header + end-of-archive blocks: an empty layer is already about this big.
MIN_LAYER_SIZE = 128

_GZIP_LEVEL = 6
_BLOCK = 512
_STORED_MAX = 65535
# gzip member header: magic, deflate, no flags, mtime 0, no extra flags, OS "unknown" (as Go writes it).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


@dataclass(frozen=True)
class Blob:
    """Content as pushed: ``digest`` is the sha256 of ``data``; ``media_type`` is what descriptors say."""

    digest: str
    data: bytes = field(repr=False)
    media_type: str

    @classmethod
    def of(cls, data: bytes, media_type: str) -> Blob:
        return cls(sha256_digest(data), data, media_type)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "size": self.size, "digest": self.digest}


@dataclass(frozen=True)
class Layer:
    """A gzip-compressed tar, before a manifest format gives it a media type.

    The same bytes serve Docker and OCI images alike (registries store blobs by digest only), which
    is how one base layer ends up shared by images of both formats.
    """

    digest: str
    data: bytes = field(repr=False)
    diff_id: str

    @property
    def size(self) -> int:
        return len(self.data)

    def blob(self, media_type: str) -> Blob:
        return Blob(self.digest, self.data, media_type)


def layer(seed: int | str, size: int) -> Layer:
    """A deterministic layer of ``size`` compressed bytes: same (seed, size), same bytes, same digest.

    The tar holds one file whose content is ``random.Random(seed).randbytes(n)``, with ``n`` chosen so
    the gzip stream is ``size`` bytes long (often exactly, otherwise a few bytes off where deflate's
    framing jumps; ``layer.size`` is always the true length). The tar headers and padding are
    deflated; the random content goes into stored blocks, which is what zlib picks for incompressible
    data anyway, minus a futile match search that made a 2,000-tag fleet take seconds to build.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, str)):
        raise TypeError(f"layer seed must be an int or a str, not {type(seed).__name__}")
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"layer size must be an int, not {type(size).__name__}")
    if size < MIN_LAYER_SIZE:
        raise ValueError(
            f"layer size {size} is below {MIN_LAYER_SIZE} bytes, about the size of a gzip-compressed empty tar"
        )
    name = "layer/" + hashlib.sha256(repr(seed).encode()).hexdigest()[:16] + ".bin"
    payload = random.Random(seed).randbytes(_payload_size_for(name, size))
    header = _tar_header(name, len(payload))
    trailer = bytes(_tar_trailer_length(len(payload)))
    raw_length = len(header) + len(payload) + len(trailer)
    diff_id = hashlib.sha256(header)
    crc = zlib.crc32(header)
    for part in (payload, trailer):
        diff_id.update(part)
        crc = zlib.crc32(part, crc)
    compressed = b"".join(
        [
            _GZIP_HEADER,
            _deflate(header, final=False),
            _stored(payload),
            _deflate(trailer, final=True),
            struct.pack("<II", crc, raw_length & 0xFFFFFFFF),
        ]
    )
    return Layer(sha256_digest(compressed), compressed, "sha256:" + diff_id.hexdigest())


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _tar_trailer_length(payload_size: int) -> int:
    """Padding to a 512-byte block, then the two zero blocks that end an archive (as Go's archive/tar)."""
    return -payload_size % _BLOCK + 2 * _BLOCK


def _deflate(data: bytes, *, final: bool) -> bytes:
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)


def _stored(payload: bytes) -> bytes:
    """Deflate stored blocks (never final): what zlib itself emits for incompressible input."""
    parts = []
    for start in range(0, len(payload), _STORED_MAX):
        chunk = payload[start : start + _STORED_MAX]
        parts.append(struct.pack("<BHH", 0, len(chunk), len(chunk) ^ 0xFFFF))
        parts.append(chunk)
    return b"".join(parts)


def _stored_length(payload_size: int) -> int:
    return payload_size + 5 * -(-payload_size // _STORED_MAX)


@functools.lru_cache(maxsize=_BLOCK)
def _deflated_zeros_length(count: int) -> int:
    return len(_deflate(bytes(count), final=True))


def _layer_length(name: str, payload_size: int) -> int:
    return (
        len(_GZIP_HEADER)
        + len(_deflate(_tar_header(name, payload_size), final=False))
        + _stored_length(payload_size)
        + _deflated_zeros_length(_tar_trailer_length(payload_size))
        + 8
    )


def _payload_size_for(name: str, size: int) -> int:
    """A payload length whose layer is ``size`` compressed bytes, or within a few bytes of it."""
    payload_size = max(0, size - 100)
    for _ in range(3):
        error = size - _layer_length(name, payload_size)
        if error == 0:
            break
        payload_size = max(0, payload_size + error)
    return payload_size
