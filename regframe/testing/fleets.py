"""Fleets: the plan of a whole registry in plain Python, and a realistic one made from a few numbers.

A :class:`Fleet` maps repositories to tags to built images; tests compute the crawl and analysis
results they expect from ``fleet.records()`` instead of from the code under test. :func:`make_fleet`
makes the same fleet for the same arguments every time.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from regframe.client.reference import Platform, validate_repository, validate_tag

from .images import Image, ImageIndex, Tagged, build_image, build_index, distinct
from .layers import MIN_LAYER_SIZE, Blob, Layer, layer

__all__ = ["FAKE_CREATED_DATES", "Fleet", "FleetSpec", "make_fleet"]

# What reproducible builds (ko, Bazel, Nix, buildkit with SOURCE_DATE_EPOCH=0) write as `created`.
FAKE_CREATED_DATES = (datetime(1970, 1, 1, tzinfo=UTC), datetime(1980, 1, 1, tzinfo=UTC))
AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64", "v8")


class Fleet:
    """What a registry should hold: ``{repository: {tag: Image | ImageIndex}}``, read-only.

    Build one by hand for a small custom case or with :func:`make_fleet`. ``records()`` flattens it
    into the rows a crawler should find; ``blobs``/``manifests`` list the distinct content.
    """

    def __init__(
        self, tags: Mapping[str, Mapping[str, Tagged]], *, now: datetime | None = None, spec: FleetSpec | None = None
    ):
        plan: dict[str, Mapping[str, Tagged]] = {}
        for repository, repo_tags in tags.items():
            validate_repository(repository)
            checked: dict[str, Tagged] = {}
            for tag, item in repo_tags.items():
                validate_tag(tag)
                if not isinstance(item, (Image, ImageIndex)):
                    raise TypeError(f"{repository}:{tag} must be an Image or ImageIndex, not {type(item).__name__}")
                checked[tag] = item
            plan[repository] = MappingProxyType(checked)
        self.tags: Mapping[str, Mapping[str, Tagged]] = MappingProxyType(plan)
        self.now = now
        self.spec = spec

    def __repr__(self) -> str:
        return (
            f"Fleet({len(self.tags)} repositories, {self.tag_count} tags, "
            f"{len(self.manifests)} manifests, {len(self.blobs)} blobs)"
        )

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
        return MappingProxyType({blob.digest: blob for _, _, item in self.items() for blob in item.blobs()})

    @functools.cached_property
    def manifests(self) -> Mapping[str, Tagged]:
        """Every distinct manifest (index children included), by digest."""
        return MappingProxyType(
            {manifest.digest: manifest for _, _, item in self.items() for manifest in item.manifests()}
        )

    def repository_blobs(self, repository: str) -> list[Blob]:
        """The distinct blobs ``repository`` needs: registries link blobs per repository."""
        return distinct(blob for item in self.tags[repository].values() for blob in item.blobs())

    def repository_children(self, repository: str) -> list[Image]:
        """Images that ``repository`` must hold by digest because an index there names them."""
        return distinct(child for item in self.tags[repository].values() for child in item.children)

    def records(self) -> list[dict[str, Any]]:
        """One dict per (repository, tag, platform), in plan order.

        ``digest`` is what the tag points at (the index for a multi-platform tag), ``manifest_digest``
        the platform image; ``media_type`` is the image manifest's, ``tag_media_type`` the tag's;
        ``size`` is config plus layers; ``created`` is None when the config has none.
        """
        rows = []
        for repository, tag, item in self.items():
            for image in item.images:
                rows.append(
                    {
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
                    }
                )
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
                raise ValueError(f"{name} must be (low, high) with {MIN_LAYER_SIZE} <= low <= high, got {(low, high)}")
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
_SERVICES = (
    "api",
    "web",
    "worker",
    "gateway",
    "auth",
    "billing",
    "search",
    "ingest",
    "notifier",
    "scheduler",
    "frontend",
    "exporter",
    "proxy",
    "indexer",
    "mailer",
)
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
        self.now = spec.now or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        sizes = [self.rng.randint(*spec.base_layer_size_range) for _ in range(spec.base_layers)]
        self.base_sizes = sizes
        self._base: dict[Platform, list[Layer]] = {}

    def base(self, platform: Platform) -> list[Layer]:
        if platform not in self._base:
            self._base[platform] = [
                layer(f"{self.spec.seed}/base/{platform}/{i}", size) for i, size in enumerate(self.base_sizes)
            ]
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
            flags = [
                (index * versions + v in multi, index * versions + v in oci, index * versions + v in fake)
                for v in range(versions)
            ]
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
        for position, (tag, age, (is_multi, is_oci, is_fake)) in enumerate(zip(tags, ages, flags, strict=True)):
            created = (self.now - timedelta(days=age)).replace(microsecond=0)
            if is_fake:
                created = rng.choice(FAKE_CREATED_DATES)
            labels = {
                "org.opencontainers.image.source": f"https://git.example.com/{name}",
                "org.opencontainers.image.version": tag,
            }
            if team:
                labels["team"] = team
            block = position // deps_every
            deps_size = deps_sizes.setdefault(block, self.layer_size(rng))
            if position == 0 or rng.random() < _NEW_CODE_RATIO:
                app, app_size = position, self.layer_size(rng)
            images = []
            for platform in (AMD64, ARM64) if is_multi else (AMD64,):
                layers = list(self.base(platform)[:depth])
                if not scratch:
                    layers.append(layer(f"{label}/deps/{block}/{platform}", deps_size))
                layers.append(layer(f"{label}/app/{app}/{platform}", app_size))
                images.append(
                    build_image(
                        layers,
                        os=platform.os,
                        architecture=platform.architecture,
                        variant=platform.variant,
                        created=created,
                        labels=labels,
                        oci=is_oci,
                    )
                )
            result[tag] = build_index(images, oci=is_oci) if is_multi else images[0]

        if spec.alias_count >= 1:
            result["latest"] = result[tags[-1]]
        if spec.alias_count >= 2:
            candidates = tags[-4:-1] or tags[-1:]
            result["stable"] = result[rng.choice(candidates)]
        return result
