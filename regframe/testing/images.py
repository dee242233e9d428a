"""Synthetic container images built in memory, and fleets of them pushed to a registry.

Everything here is deterministic: the same arguments give byte-identical layers, configs and
manifests, so every digest and size a test expects is known before anything is pushed. A
:class:`Fleet` is the plan of a whole registry in plain Python; tests compute expected crawl and
analysis results from ``fleet.records()`` instead of from the code under test.

No Docker engine is involved: layers are real gzip-compressed tar archives made with the standard
library, and pushing uses only three calls (``blob_exists``, ``upload_blob``, ``put_manifest``) that
both :class:`HTTPTarget` and ``regframe.client.RegistryClient`` provide.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import random
import struct
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, Protocol, TypeVar
from urllib.parse import urljoin

import requests

from regframe.client import mediatypes as mt
from regframe.client.errors import (DigestMismatchError, NotFoundError, RegistryAuthenticationError,
                                    RegistryAuthorizationError, RegistryError)
from regframe.client.reference import Platform, validate_repository, validate_tag

__all__ = [
    "Blob", "Layer", "Image", "ImageIndex", "Platform", "Fleet", "FleetSpec", "SeedResult",
    "PushTarget", "HTTPTarget", "layer", "build_image", "build_index", "make_fleet",
    "push_image", "seed", "seeded_registry", "DEFAULT_CREATED", "FAKE_CREATED_DATES", "MIN_LAYER_SIZE",
]

DEFAULT_CREATED = datetime(2024, 1, 1, tzinfo=timezone.utc)
# What reproducible builds (ko, Bazel, Nix, buildkit with SOURCE_DATE_EPOCH=0) write as `created`.
FAKE_CREATED_DATES = (datetime(1970, 1, 1, tzinfo=timezone.utc),
                      datetime(1980, 1, 1, tzinfo=timezone.utc))
# gzip header + tar header + end-of-archive blocks: an empty layer is already about this big.
MIN_LAYER_SIZE = 128
AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64", "v8")

_GZIP_LEVEL = 6


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Blobs, layers, images, indexes
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Blob:
    """Content as pushed: ``digest`` is the sha256 of ``data``; ``media_type`` is what descriptors say."""

    digest: str
    data: bytes = field(repr=False)
    media_type: str

    @classmethod
    def of(cls, data: bytes, media_type: str) -> Blob:
        return cls(_sha256(data), data, media_type)

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


_BLOCK = 512
_STORED_MAX = 65535
# gzip member header: magic, deflate, no flags, mtime 0, no extra flags, OS "unknown" (as Go writes it).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


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
        chunk = payload[start:start + _STORED_MAX]
        parts.append(struct.pack("<BHH", 0, len(chunk), len(chunk) ^ 0xFFFF))
        parts.append(chunk)
    return b"".join(parts)


def _stored_length(payload_size: int) -> int:
    return payload_size + 5 * -(-payload_size // _STORED_MAX)


@functools.lru_cache(maxsize=_BLOCK)
def _deflated_zeros_length(count: int) -> int:
    return len(_deflate(bytes(count), final=True))


def _layer_length(name: str, payload_size: int) -> int:
    return (len(_GZIP_HEADER) + len(_deflate(_tar_header(name, payload_size), final=False))
            + _stored_length(payload_size) + _deflated_zeros_length(_tar_trailer_length(payload_size)) + 8)


def _payload_size_for(name: str, size: int) -> int:
    """A payload length whose layer is ``size`` compressed bytes, or within a few bytes of it."""
    payload_size = max(0, size - 100)
    for _ in range(3):
        error = size - _layer_length(name, payload_size)
        if error == 0:
            break
        payload_size = max(0, payload_size + error)
    return payload_size


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
        raise ValueError(f"layer size {size} is below {MIN_LAYER_SIZE} bytes, about the size of a "
                         "gzip-compressed empty tar")
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
    compressed = b"".join([_GZIP_HEADER, _deflate(header, final=False), _stored(payload),
                           _deflate(trailer, final=True), struct.pack("<II", crc, raw_length & 0xFFFFFFFF)])
    return Layer(_sha256(compressed), compressed, "sha256:" + diff_id.hexdigest())


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"created must be timezone-aware (e.g. tzinfo=timezone.utc), got {moment!r}")
    moment = moment.astimezone(timezone.utc)
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
        return _distinct([self.config, *self.layers])

    def manifests(self) -> list[Image]:
        """Manifests to put, in order (the last one is what a tag points at)."""
        return [self]

    def descriptor(self) -> dict[str, Any]:
        """This manifest as an entry of an index, platform included."""
        platform = {"architecture": self.platform.architecture, "os": self.platform.os}
        if self.platform.variant:
            platform["variant"] = self.platform.variant
        return {"mediaType": self.media_type, "size": self.manifest_size, "digest": self.digest,
                "platform": platform}


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
        return _distinct(blob for child in self.children for blob in child.blobs())

    def manifests(self) -> list[Image | ImageIndex]:
        """Children first, then the index: a registry refuses an index whose children are missing."""
        return [*_distinct(self.children), self]


_Digested = TypeVar("_Digested", Blob, Image)


def _distinct(items: Iterable[_Digested]) -> list[_Digested]:
    seen: dict[str, _Digested] = {}
    for item in items:
        seen.setdefault(item.digest, item)
    return list(seen.values())


def build_image(layers: Sequence[Layer], *, os: str = "linux", architecture: str = "amd64",
                variant: str | None = None, created: datetime | None = DEFAULT_CREATED,
                labels: Mapping[str, str] | None = None, history: Sequence[str] | None = None,
                oci: bool = False) -> Image:
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
    commands = list(history) if history is not None else [
        f"/bin/sh -c #(nop) ADD file:{item.diff_id[7:23]} in / " for item in layers]

    stamp = {} if created_text is None else {"created": created_text}
    history_entries = [{**stamp, "created_by": command} for command in commands]
    config: dict[str, Any] = {"architecture": architecture, "os": os}
    if variant:
        config["variant"] = variant
    runtime: dict[str, Any] = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                               "Cmd": ["/bin/sh"]}
    if labels:
        runtime["Labels"] = labels
    config["config"] = runtime
    if created_text is not None:
        config["created"] = created_text
    config["history"] = history_entries
    config["rootfs"] = {"type": "layers", "diff_ids": [item.diff_id for item in layers]}

    config_type, layer_type, manifest_type = (
        (mt.OCI_CONFIG, mt.OCI_LAYER, mt.OCI_MANIFEST) if oci
        else (mt.DOCKER_CONFIG, mt.DOCKER_LAYER, mt.DOCKER_MANIFEST))
    config_blob = Blob.of(_dump(config, pretty=False), config_type)
    layer_blobs = tuple(item.blob(layer_type) for item in layers)
    manifest = {"schemaVersion": 2, "mediaType": manifest_type, "config": config_blob.descriptor(),
                "layers": [blob.descriptor() for blob in layer_blobs]}
    raw = _dump(manifest, pretty=not oci)
    return Image(manifest_raw=raw, media_type=manifest_type, digest=_sha256(raw), config=config_blob,
                 layers=layer_blobs, platform=Platform(os, architecture, variant or None),
                 created=None if created is None else created.astimezone(timezone.utc),
                 labels=MappingProxyType(labels), diff_ids=tuple(item.diff_id for item in layers))


def build_index(images: Sequence[Image], *, oci: bool = False) -> ImageIndex:
    """A Docker manifest list (or an OCI index with ``oci=True``) with one entry per image."""
    images = tuple(images)
    for item in images:
        if not isinstance(item, Image):
            raise TypeError(f"build_index takes Image objects, not {type(item).__name__}")
    media_type = mt.OCI_INDEX if oci else mt.DOCKER_LIST
    document = {"schemaVersion": 2, "mediaType": media_type,
                "manifests": [item.descriptor() for item in images]}
    raw = _dump(document, pretty=not oci)
    return ImageIndex(manifest_raw=raw, media_type=media_type, digest=_sha256(raw), children=images)


# ---------------------------------------------------------------------------------------------
# Fleets
# ---------------------------------------------------------------------------------------------

Tagged = Image | ImageIndex


class Fleet:
    """What a registry should hold: ``{repository: {tag: Image | ImageIndex}}``, read-only.

    Build one by hand for a small custom case or with :func:`make_fleet`. ``records()`` flattens it
    into the rows a crawler should find; ``blobs``/``manifests`` list the distinct content.
    """

    def __init__(self, tags: Mapping[str, Mapping[str, Tagged]], *, now: datetime | None = None,
                 spec: FleetSpec | None = None):
        plan: dict[str, Mapping[str, Tagged]] = {}
        for repository, repo_tags in tags.items():
            validate_repository(repository)
            checked: dict[str, Tagged] = {}
            for tag, item in repo_tags.items():
                validate_tag(tag)
                if not isinstance(item, (Image, ImageIndex)):
                    raise TypeError(f"{repository}:{tag} must be an Image or ImageIndex, "
                                    f"not {type(item).__name__}")
                checked[tag] = item
            plan[repository] = MappingProxyType(checked)
        self.tags: Mapping[str, Mapping[str, Tagged]] = MappingProxyType(plan)
        self.now = now
        self.spec = spec

    def __repr__(self) -> str:
        return (f"Fleet({len(self.tags)} repositories, {self.tag_count} tags, "
                f"{len(self.manifests)} manifests, {len(self.blobs)} blobs)")

    @property
    def repositories(self) -> list[str]:
        return list(self.tags)

    @property
    def tag_count(self) -> int:
        return sum(len(repo_tags) for repo_tags in self.tags.values())

    def items(self) -> Iterator[tuple[str, str, Tagged]]:
        """(repository, tag, image or index) for every tag."""
        for repository, repo_tags in self.tags.items():
            for tag, item in repo_tags.items():
                yield repository, tag, item

    @functools.cached_property
    def blobs(self) -> Mapping[str, Blob]:
        """Every distinct config and layer blob of the fleet, by digest (media type of its first use)."""
        return MappingProxyType({blob.digest: blob for _, _, item in self.items()
                                 for blob in item.blobs()})

    @functools.cached_property
    def manifests(self) -> Mapping[str, Tagged]:
        """Every distinct manifest (index children included), by digest."""
        return MappingProxyType({manifest.digest: manifest for _, _, item in self.items()
                                 for manifest in item.manifests()})

    def repository_blobs(self, repository: str) -> list[Blob]:
        """The distinct blobs ``repository`` needs: registries link blobs per repository."""
        return _distinct(blob for item in self.tags[repository].values() for blob in item.blobs())

    def repository_children(self, repository: str) -> list[Image]:
        """Images that ``repository`` must hold by digest because an index there names them."""
        return _distinct(child for item in self.tags[repository].values() for child in item.children)

    def records(self) -> list[dict[str, Any]]:
        """One dict per (repository, tag, platform), in plan order.

        ``digest`` is what the tag points at (the index for a multi-platform tag), ``manifest_digest``
        the platform image; ``media_type`` is the image manifest's, ``tag_media_type`` the tag's;
        ``size`` is config plus layers; ``created`` is None when the config has none.
        """
        rows = []
        for repository, tag, item in self.items():
            for image in item.images:
                rows.append({
                    "repository": repository,
                    "tag": tag,
                    "digest": item.digest,
                    "tag_media_type": item.media_type,
                    "manifest_digest": image.digest,
                    "media_type": image.media_type,
                    "manifest_size": image.manifest_size,
                    "platform": str(image.platform),
                    "os": image.platform.os,
                    "architecture": image.platform.architecture,
                    "variant": image.platform.variant,
                    "created": image.created,
                    "config_digest": image.config.digest,
                    "config_size": image.config.size,
                    "layers": [(blob.digest, blob.size) for blob in image.layers],
                    "size": image.size,
                    "labels": dict(image.labels),
                })
        return rows


@dataclass(frozen=True)
class FleetSpec:
    """The knobs of a synthetic fleet; :meth:`build` turns them into the same :class:`Fleet` every time.

    - ``tags_per_repo`` counts every tag, including the alias tags ``latest`` (the newest version)
      and ``stable`` (a recent older one) that point at another tag's digest (only ``latest``
      when ``tags_per_repo`` is 2, none when it is 1).
    - Exactly ``round(ratio * n)`` of the ``n`` version (non-alias) tags of the fleet are
      multi-platform (linux/amd64 + linux/arm64/v8), OCI, or carry a fake 1970/1980 ``created``.
    - ``base_layers`` distinct base layers per architecture, sized within ``base_layer_size_range``;
      most repositories start every image with the first 1..``base_layers`` of them, about one in
      ten are built ``FROM scratch``.
    - On top come a dependency layer that changes every few versions (none ``FROM scratch``) and an
      application layer that six versions in ten replace (the rest are rebuilds), both sized
      log-uniformly within ``layer_size_range``; every image has a config blob of its own. Seeding
      costs about three requests per blob, so blob count, not bytes, decides how long a push takes.
    - Versions are created between ``age_range_days`` before ``now`` (default: today, 00:00 UTC);
      about six repositories in ten are active (newest version within 30 days of the range's
      recent end), the others dormant for up to the whole range.
    """

    repositories: int = 50
    tags_per_repo: int = 40
    base_layers: int = 3
    multi_platform_ratio: float = 0.1
    alias_tags: bool = True
    oci_ratio: float = 0.5
    fake_created_ratio: float = 0.02
    seed: int = 0
    now: datetime | None = None
    age_range_days: tuple[float, float] = (1, 1500)
    layer_size_range: tuple[int, int] = (1_000, 50_000)
    base_layer_size_range: tuple[int, int] = (400_000, 1_200_000)

    def __post_init__(self) -> None:
        if self.repositories < 0:
            raise ValueError(f"repositories must be >= 0, got {self.repositories}")
        if self.tags_per_repo < 1:
            raise ValueError(f"tags_per_repo must be >= 1, got {self.tags_per_repo}")
        if self.base_layers < 0:
            raise ValueError(f"base_layers must be >= 0, got {self.base_layers}")
        for name in ("multi_platform_ratio", "oci_ratio", "fake_created_ratio"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        low, high = self.age_range_days
        if not 0 <= low <= high:
            raise ValueError(f"age_range_days must be (low, high) with 0 <= low <= high, got {(low, high)}")
        for name in ("layer_size_range", "base_layer_size_range"):
            low, high = getattr(self, name)
            if not MIN_LAYER_SIZE <= low <= high:
                raise ValueError(f"{name} must be (low, high) with {MIN_LAYER_SIZE} <= low <= high, "
                                 f"got {(low, high)}")
        if self.now is not None and self.now.tzinfo is None:
            raise ValueError(f"now must be timezone-aware, got {self.now!r}")

    @property
    def alias_count(self) -> int:
        return min(2, self.tags_per_repo - 1) if self.alias_tags else 0

    @property
    def versions_per_repo(self) -> int:
        return self.tags_per_repo - self.alias_count

    def build(self) -> Fleet:
        return _FleetBuilder(self).build()


def make_fleet(**options: Any) -> Fleet:
    """``FleetSpec(**options).build()``: a deterministic fleet plan (see :class:`FleetSpec`)."""
    return FleetSpec(**options).build()


# Share of versions that ship new code; the others are rebuilds whose only new layer (if any) is deps.
_NEW_CODE_RATIO = 0.6
_TEAMS = ("team-a", "team-b", "team-c", "payments", "data")
_SERVICES = ("api", "web", "worker", "gateway", "auth", "billing", "search", "ingest", "notifier",
             "scheduler", "frontend", "exporter", "proxy", "indexer", "mailer")
_NESTED = ("platform/infra", "platform/observability", "ml/training")
_TOOLS = ("tools", "base", "builder", "runner", "ci")


def _repository_name(index: int) -> str:
    service = f"{_SERVICES[index % len(_SERVICES)]}-{index:02d}"
    if index % 10 == 4:
        return f"{_TOOLS[index // 10 % len(_TOOLS)]}-{index:02d}"
    if index % 10 == 7:
        return f"{_NESTED[index // 10 % len(_NESTED)]}/{service}"
    return f"{_TEAMS[index % len(_TEAMS)]}/{service}"


def _version_tags(rng: random.Random, count: int, label: str) -> list[str]:
    """Tags in release order, in one of three styles real repositories use: 1.2.3, v1.2.3, main-<sha>."""
    style = rng.choice(("semver", "v-semver", "ci"))
    major, minor, patch = rng.randint(0, 3), rng.randint(0, 5), 0
    tags: dict[str, None] = {}
    for attempt in itertools.count():
        if len(tags) == count:
            break
        if style == "ci":
            tags["main-" + hashlib.sha256(f"{label}/{attempt}".encode()).hexdigest()[:7]] = None
            continue
        tags[("v" if style == "v-semver" else "") + f"{major}.{minor}.{patch}"] = None
        roll = rng.random()
        if roll < 0.05:
            major, minor, patch = major + 1, 0, 0
        elif roll < 0.3:
            minor, patch = minor + 1, 0
        else:
            patch += 1
    return list(tags)


def _exact_sample(rng: random.Random, population: int, ratio: float) -> set[int]:
    return set(rng.sample(range(population), round(ratio * population)))


class _FleetBuilder:
    """One build of a FleetSpec; every random choice flows from the spec's seed."""

    def __init__(self, spec: FleetSpec):
        self.spec = spec
        self.rng = random.Random(f"regframe-fleet/{spec.seed}")
        self.now = spec.now or datetime.now(timezone.utc).replace(hour=0, minute=0, second=0,
                                                                  microsecond=0)
        sizes = [self.rng.randint(*spec.base_layer_size_range) for _ in range(spec.base_layers)]
        self.base_sizes = sizes
        self._base: dict[Platform, list[Layer]] = {}

    def base(self, platform: Platform) -> list[Layer]:
        if platform not in self._base:
            self._base[platform] = [layer(f"{self.spec.seed}/base/{platform}/{i}", size)
                                    for i, size in enumerate(self.base_sizes)]
        return self._base[platform]

    def layer_size(self, rng: random.Random) -> int:
        low, high = self.spec.layer_size_range
        return min(high, max(low, round(math.exp(rng.uniform(math.log(low), math.log(high))))))

    def build(self) -> Fleet:
        spec = self.spec
        versions = spec.versions_per_repo
        total = spec.repositories * versions
        multi = _exact_sample(self.rng, total, spec.multi_platform_ratio)
        oci = _exact_sample(self.rng, total, spec.oci_ratio)
        fake = _exact_sample(self.rng, total, spec.fake_created_ratio)
        plan: dict[str, dict[str, Tagged]] = {}
        for index in range(spec.repositories):
            name = _repository_name(index)
            flags = [(index * versions + v in multi, index * versions + v in oci,
                      index * versions + v in fake) for v in range(versions)]
            plan[name] = self.repository(name, flags)
        return Fleet(plan, now=self.now, spec=spec)

    def repository(self, name: str, flags: list[tuple[bool, bool, bool]]) -> dict[str, Tagged]:
        spec = self.spec
        rng = random.Random(f"regframe-fleet/{spec.seed}/{name}")
        label = f"{spec.seed}/{name}"
        tags = _version_tags(rng, len(flags), label)
        scratch = spec.base_layers == 0 or rng.random() < 0.1
        depth = 0 if scratch else rng.randint(1, spec.base_layers)
        deps_every = rng.randint(3, 8)
        deps_sizes: dict[int, int] = {}

        low, high = spec.age_range_days
        oldest = rng.uniform(low, high)
        active = rng.random() < 0.6
        newest = rng.uniform(low, min(oldest, low + 30) if active else oldest)
        ages = sorted((rng.uniform(newest, oldest) for _ in range(len(flags))), reverse=True)
        team = name.split("/")[0] if "/" in name else None

        result: dict[str, Tagged] = {}
        for position, (tag, age, (is_multi, is_oci, is_fake)) in enumerate(zip(tags, ages, flags)):
            created = (self.now - timedelta(days=age)).replace(microsecond=0)
            if is_fake:
                created = rng.choice(FAKE_CREATED_DATES)
            labels = {"org.opencontainers.image.source": f"https://git.example.com/{name}",
                      "org.opencontainers.image.version": tag}
            if team:
                labels["team"] = team
            block = position // deps_every
            deps_size = deps_sizes.setdefault(block, self.layer_size(rng))
            if position == 0 or rng.random() < _NEW_CODE_RATIO:
                app, app_size = position, self.layer_size(rng)
            images = []
            for platform in ((AMD64, ARM64) if is_multi else (AMD64,)):
                layers = list(self.base(platform)[:depth])
                if not scratch:
                    layers.append(layer(f"{label}/deps/{block}/{platform}", deps_size))
                layers.append(layer(f"{label}/app/{app}/{platform}", app_size))
                images.append(build_image(layers, os=platform.os, architecture=platform.architecture,
                                          variant=platform.variant, created=created, labels=labels,
                                          oci=is_oci))
            result[tag] = build_index(images, oci=is_oci) if is_multi else images[0]

        if spec.alias_count >= 1:
            result["latest"] = result[tags[-1]]
        if spec.alias_count >= 2:
            candidates = tags[-4:-1] or tags[-1:]
            result["stable"] = result[rng.choice(candidates)]
        return result


# ---------------------------------------------------------------------------------------------
# Pushing
# ---------------------------------------------------------------------------------------------

class PushTarget(Protocol):
    """The three registry calls seeding needs; RegistryClient and HTTPTarget both have them."""

    def blob_exists(self, repository: str, digest: str) -> bool: ...

    def upload_blob(self, repository: str, data: bytes, digest: str) -> object: ...

    def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> str: ...


@dataclass(frozen=True)
class SeedResult:
    """What a push did: blobs the registry already had are skipped, not uploaded again."""

    blobs_uploaded: int = 0
    blobs_skipped: int = 0
    bytes_uploaded: int = 0
    manifests_put: int = 0

    def __add__(self, other: SeedResult) -> SeedResult:
        return SeedResult(self.blobs_uploaded + other.blobs_uploaded,
                          self.blobs_skipped + other.blobs_skipped,
                          self.bytes_uploaded + other.bytes_uploaded,
                          self.manifests_put + other.manifests_put)


def _ensure_blob(target: PushTarget, repository: str, blob: Blob) -> SeedResult:
    if target.blob_exists(repository, blob.digest):
        return SeedResult(blobs_skipped=1)
    target.upload_blob(repository, blob.data, blob.digest)
    return SeedResult(blobs_uploaded=1, bytes_uploaded=blob.size)


def _put(target: PushTarget, repository: str, reference: str, manifest: Tagged) -> SeedResult:
    digest = target.put_manifest(repository, reference, manifest.manifest_raw, manifest.media_type)
    if digest != manifest.digest:
        raise DigestMismatchError(
            f"registry stored {repository}:{reference} as {digest}, but its bytes hash to {manifest.digest}",
            expected=manifest.digest, actual=digest)
    return SeedResult(manifests_put=1)


def push_image(target: PushTarget, repository: str, tag: str, image: Tagged) -> SeedResult:
    """Push one image or index under ``repository:tag``, the tag's manifest last.

    Blobs the repository already has are skipped; index children are put by digest before the index.
    """
    validate_repository(repository)
    validate_tag(tag)
    result = SeedResult()
    for blob in image.blobs():
        result += _ensure_blob(target, repository, blob)
    for child in _distinct(image.children):
        result += _put(target, repository, child.digest, child)
    return result + _put(target, repository, tag, image)


_Job = TypeVar("_Job")


def _run_all(pool: ThreadPoolExecutor, work: Callable[[_Job], SeedResult], jobs: list[_Job]) -> SeedResult:
    futures = [pool.submit(work, job) for job in jobs]
    total = SeedResult()
    try:
        for future in futures:
            total += future.result()
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    return total


def seed(target: PushTarget, fleet: Fleet, workers: int = 8) -> SeedResult:
    """Push a whole fleet with ``workers`` threads, in three waves so no manifest precedes its content.

    Blobs of every repository go first (skipping those already there, so seeding twice is cheap),
    then index children by digest, then every tag. ``target`` must be safe to share between
    threads. The registry spends milliseconds of CPU on each upload and manifest PUT (a missing-blob
    HEAD is nearly free), so the number of blobs, not their bytes, sets the time.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    blob_jobs = [(repository, blob) for repository in fleet.repositories
                 for blob in fleet.repository_blobs(repository)]
    blob_jobs.sort(key=lambda job: -job[1].size)
    child_jobs = [(repository, child.digest, child) for repository in fleet.repositories
                  for child in fleet.repository_children(repository)]
    tag_jobs = list(fleet.items())
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="regframe-seed") as pool:
        result = _run_all(pool, lambda job: _ensure_blob(target, *job), blob_jobs)
        result += _run_all(pool, lambda job: _put(target, *job), child_jobs)
        result += _run_all(pool, lambda job: _put(target, *job), tag_jobs)
    return result


class HTTPTarget:
    """A minimal :class:`PushTarget` over ``requests`` for anonymous and HTTP-basic registries.

    It exists so tests and the demo can seed a registry without the full client. Token auth is not
    supported. Each thread gets its own pooled session (those of finished threads are closed as new
    ones open); proxies and CA bundles from the environment are ignored (``verify`` is what counts),
    since targets are usually throw-away local registries.
    """

    def __init__(self, url: str, *, user: str | None = None, password: str | None = None,
                 verify: bool | str = True, timeout: float = 30.0):
        if (user is None) != (password is None):
            raise ValueError("give both user and password, or neither")
        self.url = url.rstrip("/")
        self.auth = (user, password) if user is not None else None
        self.verify = verify
        self.timeout = timeout
        self._local = threading.local()
        self._sessions: dict[threading.Thread, requests.Session] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HTTPTarget({self.url!r}, user={self.auth[0] if self.auth else None!r})"

    def __enter__(self) -> HTTPTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            session.auth = self.auth
            session.headers["User-Agent"] = "regframe-testing"
            self._local.session = session
            with self._lock:
                finished = [thread for thread in self._sessions if not thread.is_alive()]
                for thread in finished:
                    self._sessions.pop(thread).close()
                self._sessions[threading.current_thread()] = session
        return session

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        if not url.startswith(("http://", "https://")):
            url = urljoin(self.url + "/", url)
        return self._session().request(method, url, verify=self.verify, timeout=self.timeout, **kwargs)

    def blob_exists(self, repository: str, digest: str) -> bool:
        response = self._request("HEAD", f"/v2/{repository}/blobs/{digest}")
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise _error(response, f"checking blob {digest} in {repository}")

    def upload_blob(self, repository: str, data: bytes, digest: str) -> None:
        started = self._request("POST", f"/v2/{repository}/blobs/uploads/")
        if started.status_code != 202 or "Location" not in started.headers:
            raise _error(started, f"starting an upload to {repository}")
        finished = self._request("PUT", started.headers["Location"], params={"digest": digest}, data=data,
                                 headers={"Content-Type": "application/octet-stream"})
        if finished.status_code != 201:
            raise _error(finished, f"uploading blob {digest} to {repository}")

    def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> str:
        response = self._request("PUT", f"/v2/{repository}/manifests/{reference}", data=raw,
                                 headers={"Content-Type": media_type})
        if response.status_code != 201:
            raise _error(response, f"putting manifest {repository}:{reference}")
        return response.headers.get("Docker-Content-Digest") or _sha256(raw)


def _error(response: requests.Response, doing: str) -> RegistryError:
    code = message = None
    try:
        first = (response.json().get("errors") or [{}])[0]
        code, message = first.get("code"), first.get("message")
    except (ValueError, AttributeError, IndexError, TypeError):
        pass
    status = response.status_code
    text = f"{doing} failed: HTTP {status}" + (f" {code}: {message}" if code else "")
    kwargs = {"status": status, "code": code, "registry_message": message, "url": response.url}
    if status == 401:
        challenge = response.headers.get("WWW-Authenticate", "")
        if challenge.lower().startswith("bearer"):
            text += " (the registry wants token auth; HTTPTarget speaks only anonymous and basic auth)"
        return RegistryAuthenticationError(text, **kwargs)
    if status == 403:
        return RegistryAuthorizationError(text, **kwargs)
    if status == 404:
        return NotFoundError(text, **kwargs)
    return RegistryError(text, **kwargs)


@contextmanager
def seeded_registry(fleet: Fleet, **registry_options: Any) -> Iterator[Any]:
    """A harness registry (``local_registry(**registry_options)``) holding ``fleet``; yields the
    ``LocalRegistry``. For anonymous registries, as tests, demos and notebooks use them."""
    from regframe.client.registry import connect
    from .registry import local_registry

    with local_registry(**registry_options) as reg:
        with connect(reg.url, ca_bundle=reg.ca_path, docker_config=False) as client:
            seed(client, fleet)
        yield reg
