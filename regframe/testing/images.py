"""Image manifests and indexes built in memory, Docker schema2 or OCI, with their config blobs.

Everything is deterministic: the same layers and arguments give byte-identical configs and
manifests, so a test knows every digest and size before pushing (see :mod:`.seeding`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from regframe.client import mediatypes as mt
from regframe.client.reference import Platform, sha256_digest

from .layers import Blob, Layer

__all__ = [
    "DEFAULT_CREATED",
    "Image",
    "ImageIndex",
    "Platform",
    "Tagged",
    "build_image",
    "build_index",
    "distinct",
]

DEFAULT_CREATED = datetime(2024, 1, 1, tzinfo=UTC)


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"created must be timezone-aware (e.g. tzinfo=timezone.utc), got {moment!r}")
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _dump(document: Mapping[str, Any], *, pretty: bool) -> bytes:
    # Docker's tools indent schema2 manifests by three spaces, OCI tools write compact JSON: doing
    # both keeps consumers honest about digesting the raw bytes rather than re-serialised JSON.
    if pretty:
        return json.dumps(document, indent=3).encode()
    return json.dumps(document, separators=(",", ":")).encode()


class _Manifest:
    """Identity and parsed view of a built manifest: equal when the digests are."""

    manifest_raw: bytes
    digest: str

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest_raw)

    @property
    def manifest_size(self) -> int:
        return len(self.manifest_raw)


@dataclass(frozen=True, eq=False)
class Image(_Manifest):
    """One image manifest with its config and layers; equal images have equal digests."""

    manifest_raw: bytes = field(repr=False)
    media_type: str
    digest: str
    config: Blob
    layers: tuple[Blob, ...] = field(repr=False)
    platform: Platform
    created: datetime | None
    labels: Mapping[str, str] = field(repr=False)
    diff_ids: tuple[str, ...] = field(repr=False)

    @property
    def size(self) -> int:
        """Config plus compressed layers, as a registry UI or ``docker manifest inspect`` adds it up."""
        return self.config.size + sum(blob.size for blob in self.layers)

    @property
    def children(self) -> tuple[Image, ...]:
        return ()

    @property
    def images(self) -> tuple[Image, ...]:
        """Every platform image behind this tag: just this one."""
        return (self,)

    def blobs(self) -> list[Blob]:
        """Config and layers, each digest once, in push order."""
        return distinct([self.config, *self.layers])

    def manifests(self) -> list[Image]:
        """Manifests to put, in order (the last one is what a tag points at)."""
        return [self]

    def descriptor(self) -> dict[str, Any]:
        """This manifest as an entry of an index, platform included."""
        platform = {"architecture": self.platform.architecture, "os": self.platform.os}
        if self.platform.variant:
            platform["variant"] = self.platform.variant
        return {"mediaType": self.media_type, "size": self.manifest_size, "digest": self.digest, "platform": platform}


@dataclass(frozen=True, eq=False)
class ImageIndex(_Manifest):
    """A Docker manifest list or an OCI image index over several platform images."""

    manifest_raw: bytes = field(repr=False)
    media_type: str
    digest: str
    children: tuple[Image, ...]

    @property
    def images(self) -> tuple[Image, ...]:
        return self.children

    @property
    def platforms(self) -> list[Platform]:
        return [child.platform for child in self.children]

    def blobs(self) -> list[Blob]:
        return distinct(blob for child in self.children for blob in child.blobs())

    def manifests(self) -> list[Image | ImageIndex]:
        """Children first, then the index: a registry refuses an index whose children are missing."""
        return [*distinct(self.children), self]


Tagged = Image | ImageIndex


class _HasDigest(Protocol):
    @property
    def digest(self) -> str: ...


_Digested = TypeVar("_Digested", bound=_HasDigest)


def distinct(items: Iterable[_Digested]) -> list[_Digested]:
    """Each digest once, first occurrence first: registries store content by digest."""
    seen: dict[str, _Digested] = {}
    for item in items:
        seen.setdefault(item.digest, item)
    return list(seen.values())


def build_image(
    layers: Sequence[Layer],
    *,
    os: str = "linux",
    architecture: str = "amd64",
    variant: str | None = None,
    created: datetime | None = DEFAULT_CREATED,
    labels: Mapping[str, str] | None = None,
    history: Sequence[str] | None = None,
    oci: bool = False,
) -> Image:
    """A Docker schema2 image (or OCI with ``oci=True``) over ``layers``.

    ``created=None`` leaves ``created`` out of the config, as some builders do; ``history`` gives
    each layer's ``created_by`` (a plausible command is made up otherwise).
    """
    layers = tuple(layers)
    for item in layers:
        if not isinstance(item, Layer):
            raise TypeError(f"build_image takes Layer objects (see layer()), not {type(item).__name__}")
    if history is not None and len(history) != len(layers):
        raise ValueError(f"history has {len(history)} entries for {len(layers)} layers")
    created_text = None if created is None else _rfc3339(created)
    labels = dict(labels or {})
    commands = (
        list(history)
        if history is not None
        else [f"/bin/sh -c #(nop) ADD file:{item.diff_id[7:23]} in / " for item in layers]
    )

    stamp = {} if created_text is None else {"created": created_text}
    history_entries = [{**stamp, "created_by": command} for command in commands]
    config: dict[str, Any] = {"architecture": architecture, "os": os}
    if variant:
        config["variant"] = variant
    runtime: dict[str, Any] = {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["/bin/sh"],
    }
    if labels:
        runtime["Labels"] = labels
    config["config"] = runtime
    if created_text is not None:
        config["created"] = created_text
    config["history"] = history_entries
    config["rootfs"] = {"type": "layers", "diff_ids": [item.diff_id for item in layers]}

    config_type, layer_type, manifest_type = (
        (mt.OCI_CONFIG, mt.OCI_LAYER, mt.OCI_MANIFEST)
        if oci
        else (mt.DOCKER_CONFIG, mt.DOCKER_LAYER, mt.DOCKER_MANIFEST)
    )
    config_blob = Blob.of(_dump(config, pretty=False), config_type)
    layer_blobs = tuple(item.blob(layer_type) for item in layers)
    manifest = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config_blob.descriptor(),
        "layers": [blob.descriptor() for blob in layer_blobs],
    }
    raw = _dump(manifest, pretty=not oci)
    return Image(
        manifest_raw=raw,
        media_type=manifest_type,
        digest=sha256_digest(raw),
        config=config_blob,
        layers=layer_blobs,
        platform=Platform(os, architecture, variant or None),
        created=None if created is None else created.astimezone(UTC),
        labels=MappingProxyType(labels),
        diff_ids=tuple(item.diff_id for item in layers),
    )


def build_index(images: Sequence[Image], *, oci: bool = False) -> ImageIndex:
    """A Docker manifest list (or an OCI index with ``oci=True``) with one entry per image."""
    images = tuple(images)
    for item in images:
        if not isinstance(item, Image):
            raise TypeError(f"build_index takes Image objects, not {type(item).__name__}")
    media_type = mt.OCI_INDEX if oci else mt.DOCKER_LIST
    document = {"schemaVersion": 2, "mediaType": media_type, "manifests": [item.descriptor() for item in images]}
    raw = _dump(document, pretty=not oci)
    return ImageIndex(manifest_raw=raw, media_type=media_type, digest=sha256_digest(raw), children=images)
