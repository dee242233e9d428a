"""What reads return: a Manifest is the parsed JSON plus the exact bytes and headers it came with."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, Unpack

from ..units import format_bytes
from . import mediatypes as MT
from .errors import InvalidReferenceError, RegistryProtocolError
from .headers import plain_headers
from .reference import Platform, compute_digest, validate_digest

INT64_MAX = 2**63 - 1  # a descriptor's size is an int64 in the image spec

# A content descriptor as parsed JSON (mediaType, digest, size[, platform, annotations]); ``check_structure``
# has checked the types of those fields in every descriptor a verified manifest holds.
Descriptor = dict[str, Any]


class _ManifestDetails(TypedDict, total=False):
    headers: Mapping[str, str] | None
    media_type: str | None
    digest: str | None
    repository: str | None
    reference: str | None


class Manifest(dict[str, Any]):
    """The parsed manifest JSON (a dict, as in docker_registry2), with ``raw`` bytes, ``headers``,
    ``media_type`` and the verified ``digest``. Empty when the registry has no such manifest."""

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        raw: bytes = b"",
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        digest: str | None = None,
        repository: str | None = None,
        reference: str | None = None,
    ) -> None:
        super().__init__(data or {})
        self.raw = raw
        self.headers = plain_headers(headers)
        self.media_type: str | None = media_type or (self.get("mediaType") if data else None)
        self.digest = digest
        self.repository = repository
        self.reference = reference

    @classmethod
    def parse(cls, raw: bytes, **kw: Unpack[_ManifestDetails]) -> Manifest:
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise RegistryProtocolError(f"manifest is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise RegistryProtocolError("manifest JSON is not an object")
        return cls(data, raw=raw, **kw)

    @property
    def is_index(self) -> bool:
        return self.media_type in MT.INDEX_TYPES or (
            self.media_type is None and "manifests" in self and "layers" not in self
        )

    @property
    def is_schema1(self) -> bool:
        return self.media_type in MT.SCHEMA1_TYPES or self.get("schemaVersion") == 1

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def config(self) -> Descriptor | None:
        config = self.get("config")
        return config if isinstance(config, dict) else None

    @property
    def layers(self) -> list[Descriptor]:
        """Layer descriptors; for schema1, ``fsLayers`` in base-first order without sizes."""
        if self.is_schema1:
            return [{"digest": entry.get("blobSum")} for entry in reversed(self.get("fsLayers") or [])]
        layers = self.get("layers") or []
        return [layer for layer in layers if isinstance(layer, dict)]

    @property
    def children(self) -> list[Descriptor]:
        """Child manifest descriptors of an index (empty for an image)."""
        if not self.is_index:
            return []
        return [child for child in self.get("manifests") or [] if isinstance(child, dict)]

    def platforms(self) -> list[str]:
        return [
            str(Platform.from_descriptor(child.get("platform"))) for child in self.children if child.get("platform")
        ]

    def blob_descriptors(self) -> list[Descriptor]:
        """Every blob this image manifest references: config first, then layers."""
        return ([self.config] if self.config else []) + self.layers

    def __repr__(self) -> str:
        kind = self.media_type or "unknown"
        if not self:
            return "Manifest({})"
        return f"Manifest({self.repository or '?'}@{self.digest}, {kind}, {len(self.raw)} bytes)"

    def _repr_html_(self) -> str:
        from html import escape

        if not self:
            return "<div><b>Manifest</b>: not found</div>"
        rows = [
            ("repository", self.repository),
            ("reference", self.reference),
            ("digest", self.digest),
            ("media type", self.media_type),
        ]
        if self.is_index:
            rows.append(("platforms", ", ".join(self.platforms())))
        else:
            total = sum(int(layer.get("size") or 0) for layer in self.layers)
            rows.append(("layers", f"{len(self.layers)} ({format_bytes(total)} compressed)"))
        body = "".join(
            f"<tr><th style='text-align:left'>{escape(k)}</th><td><code>{escape(str(v))}</code></td></tr>"
            for k, v in rows
            if v is not None
        )
        return f"<div><b>Manifest</b><table>{body}</table></div>"


def reachable(top: str, children_of: Callable[[str], list[str]]) -> set[str]:
    """Every digest an index's entries lead to, through indexes nested at any depth (the image spec allows
    an index of indexes), ``top`` left out unless an entry names it. ``children_of`` gives a manifest's
    entries (none for an image); each digest is asked about once, so a registry serving a cycle ends too."""
    found: set[str] = set()
    queue = [top]
    while queue:
        for child in children_of(queue.pop()):
            if child not in found:
                found.add(child)
                queue.append(child)
    return found


def media_type_of(manifest: Manifest) -> str:
    """The media type to put ``manifest``'s bytes back with; RegistryProtocolError when neither its body
    nor its registry named one."""
    if not isinstance(manifest.media_type, str) or not manifest.media_type:
        raise RegistryProtocolError(f"manifest {manifest.repository}@{manifest.digest} has no media type")
    return manifest.media_type


def check_structure(manifest: Manifest) -> None:
    """Refuse a manifest whose descriptors break the image spec (RegistryProtocolError), so a broken or
    hostile one fails here, naming the field, rather than later as a KeyError or as a wrong number."""
    where = f"manifest {manifest.repository}:{manifest.reference}"
    if manifest.is_schema1:
        for entry in _list_field(manifest, "fsLayers", where):
            if not isinstance(entry, dict):
                raise RegistryProtocolError(f"{where}: an fsLayers entry is not an object")
            _check_digest(entry.get("blobSum"), f"{where}: fsLayers blobSum")
        return
    if "config" in manifest:
        _check_descriptor(manifest["config"], f"{where}: config")
    for layer in _list_field(manifest, "layers", where):
        _check_descriptor(layer, f"{where}: layer")
    for child in _list_field(manifest, "manifests", where):
        _check_descriptor(child, f"{where}: child manifest")
        platform = child.get("platform")
        if platform is None:
            continue
        if (
            not isinstance(platform, dict)
            or not all(isinstance(platform.get(key), str) for key in ("os", "architecture"))
            or not isinstance(platform.get("variant", ""), str)
        ):
            raise RegistryProtocolError(
                f"{where}: child platform {_short(platform)} is not {{os, architecture[, variant]}} strings"
            )


def _list_field(manifest: Manifest, key: str, where: str) -> list[Any]:
    value = manifest.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise RegistryProtocolError(f"{where}: {key!r} is {type(value).__name__}, not a list")
    return value


def _check_descriptor(descriptor: object, where: str) -> None:
    if not isinstance(descriptor, dict):
        raise RegistryProtocolError(f"{where} descriptor is {_short(descriptor)}, not an object")
    _check_digest(descriptor.get("digest"), f"{where} digest")
    size = descriptor.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= INT64_MAX):
        raise RegistryProtocolError(f"{where} size {_short(size)} is not a non-negative int64")
    if not isinstance(descriptor.get("mediaType", ""), str):
        raise RegistryProtocolError(f"{where} mediaType {_short(descriptor['mediaType'])} is not a string")


def _check_digest(digest: object, where: str) -> None:
    try:
        validate_digest(digest)
    except InvalidReferenceError as exc:
        raise RegistryProtocolError(f"{where}: {exc}") from None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class Blob:
    """A blob's headers and, unless it was streamed to ``path``, its bytes."""

    headers: dict[str, str]
    body: bytes | None = None
    path: Path | None = None
    digest: str | None = None
    size: int = 0

    def json(self) -> Any:
        if self.body is not None:
            return json.loads(self.body)
        if self.path is None:
            raise ValueError("this Blob holds neither bytes nor a path to read them from")
        return json.loads(Path(self.path).read_bytes())


def schema1_payload(raw: bytes) -> bytes:
    """The bytes a signed schema1 manifest's digest covers: the JWS payload without signatures."""
    try:
        signatures = json.loads(raw)["signatures"]
        protected = signatures[0]["protected"]
        header = json.loads(_b64url(protected))
        length = int(header["formatLength"])
        tail = _b64url(header["formatTail"])
    except (ValueError, KeyError, IndexError, TypeError, RecursionError):
        return raw
    return raw[:length] + tail


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def manifest_digest(raw: bytes, media_type: str | None, algorithm: str = "sha256") -> str:
    payload = schema1_payload(raw) if media_type == MT.DOCKER_SCHEMA1_SIGNED else raw
    return compute_digest(payload, f"{algorithm}:")
