"""Fleets: the plan of a whole registry in plain Python, and a realistic one made from a few numbers.

A :class:`Fleet` maps repositories to tags to built images; tests compute the crawl and analysis
results they expect from ``fleet.records()`` instead of from the code under test. :func:`make_fleet`
makes the same fleet for the same arguments every time. A fleet can also carry what registries hold
beside images (signatures, SBOMs, buildx attestations, Helm charts, artifacts, orphans); their
expected rows come from ``fleet.referrer_records()`` and ``fleet.coverage()``.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from regframe.client import mediatypes as mt
from regframe.client.artifacts import fallback_tag
from regframe.client.reference import Platform, validate_repository, validate_tag

from .images import DEFAULT_CREATED, Image, ImageIndex, build_image, build_index, distinct
from .layers import MIN_LAYER_SIZE, Blob, Layer, layer
from .oci_artifacts import (
    PREDICATE_SIGN,
    Artifact,
    ArtifactIndex,
    artifact,
    buildx_index,
    cosign_sbom,
    cosign_signature,
    helm_chart,
    referrers_index,
    sigstore_bundle,
)

__all__ = ["FAKE_CREATED_DATES", "Content", "Fleet", "FleetSpec", "make_fleet"]

# What a tag can hold: an image, a multi-platform index (plain or buildx with attestations), an artifact.
Content = Image | ImageIndex | Artifact | ArtifactIndex
_COSIGN_TAG = re.compile(r"sha256-([0-9a-f]{64})\.(sig|att|sbom)")
_FALLBACK_TAG = re.compile(r"sha256-([0-9a-f]{64})")

# What reproducible builds (ko, Bazel, Nix, buildkit with SOURCE_DATE_EPOCH=0) write as `created`.
FAKE_CREATED_DATES = (datetime(1970, 1, 1, tzinfo=UTC), datetime(1980, 1, 1, tzinfo=UTC))
AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64", "v8")


class Fleet:
    """What a registry should hold: ``{repository: {tag: content}}``, read-only.

    Build one by hand for a small custom case or with :func:`make_fleet`. ``records()`` flattens it
    into the rows a crawler should find; ``blobs``/``manifests`` list the distinct content.
    ``accessories`` (``{repository: {tag: Artifact | ArtifactIndex}}``) are the tags of signatures,
    attestations and SBOMs (cosign's ``sha256-<hex>.sig|.att|.sbom``), the referrers fallback tags
    ``sha256-<hex>`` whose indexes list untagged referrers, and tagged artifacts with a ``subject``.
    """

    def __init__(
        self,
        tags: Mapping[str, Mapping[str, Content]],
        *,
        accessories: Mapping[str, Mapping[str, Artifact | ArtifactIndex]] | None = None,
        now: datetime | None = None,
        spec: FleetSpec | None = None,
    ):
        self.tags: Mapping[str, Mapping[str, Content]] = _checked(tags, (Image, ImageIndex, Artifact, ArtifactIndex))
        self.accessories: Mapping[str, Mapping[str, Artifact | ArtifactIndex]] = _checked(
            accessories or {}, (Artifact, ArtifactIndex)
        )
        unknown = sorted(set(self.accessories) - set(self.tags))
        if unknown:
            raise ValueError(f"accessories for repositories without tags: {unknown}")
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
        """Every tag the registry holds: content and accessory tags."""
        return sum(len(repo_tags) for repo_tags in self.tags.values()) + sum(
            len(repo_tags) for repo_tags in self.accessories.values()
        )

    def items(self) -> Iterator[tuple[str, str, Content]]:
        """(repository, tag, content) for every tag but the accessory tags."""
        for repository, repo_tags in self.tags.items():
            for tag, item in repo_tags.items():
                yield repository, tag, item

    def accessory_items(self) -> Iterator[tuple[str, str, Artifact | ArtifactIndex]]:
        """(repository, tag, manifest) for every accessory tag."""
        for repository, repo_tags in self.accessories.items():
            for tag, item in repo_tags.items():
                yield repository, tag, item

    def _everything(self) -> Iterator[tuple[str, str, Content]]:
        yield from self.items()
        yield from self.accessory_items()

    @functools.cached_property
    def blobs(self) -> Mapping[str, Blob]:
        """Every distinct config and layer blob of the fleet, by digest (media type of its first use)."""
        return MappingProxyType({blob.digest: blob for _, _, item in self._everything() for blob in item.blobs()})

    @functools.cached_property
    def manifests(self) -> Mapping[str, Content]:
        """Every distinct manifest (index children included), by digest."""
        return MappingProxyType(
            {manifest.digest: manifest for _, _, item in self._everything() for manifest in item.manifests()}
        )

    def _repository_items(self, repository: str) -> list[Content]:
        return [*self.tags[repository].values(), *self.accessories.get(repository, {}).values()]

    def index_entries(self) -> set[tuple[str, str]]:
        """(repository, digest) of every entry of the indexes each repository tags: what a warm crawl
        confirms with one HEAD each."""
        return {
            (repository, child.digest)
            for repository in self.repositories
            for item in self._repository_items(repository)
            for child in getattr(item, "children", ())
        }

    def repository_blobs(self, repository: str) -> list[Blob]:
        """The distinct blobs ``repository`` needs: registries link blobs per repository."""
        return distinct(blob for item in self._repository_items(repository) for blob in item.blobs())

    def repository_children(self, repository: str) -> list[Image | Artifact]:
        """Manifests that ``repository`` must hold by digest because an index there names them (platform
        images, attestation manifests, the untagged referrers of fallback indexes)."""
        children: dict[str, Image | Artifact] = {}
        for item in self._repository_items(repository):
            for child in item.children:
                children.setdefault(child.digest, child)
        return list(children.values())

    def records(self) -> list[dict[str, Any]]:
        """One dict per (repository, tag, platform image), in plan order; tags of artifacts (charts,
        accessories) have none.

        ``digest`` is what the tag points at (the index for a multi-platform tag), ``manifest_digest``
        the platform image; ``media_type`` is the image manifest's, ``tag_media_type`` the tag's;
        ``size`` is config plus layers; ``created`` is None when the config has none.
        """
        rows = []
        for repository, tag, item in self.items():
            for image in _images(item):
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

    def referrer_records(self) -> list[dict[str, Any]]:
        """One dict per accessory, each once, as ``inv.referrers`` lists it: ``repository``, ``subject``,
        ``digest``, ``kind``, ``tag`` (None when untagged), ``size`` (manifest, config and layers) and
        ``via``: attestation manifests of buildx indexes (``index-attestation``), cosign tags
        (``cosign-tag``), fallback index entries (``tag-schema``), tagged artifacts with a ``subject``."""
        rows = []
        for repository, _tag, item in self.items():
            if isinstance(item, ArtifactIndex):
                for entry, child in zip(item.entries, item.children, strict=True):
                    annotations = entry.get("annotations") or {}
                    if (
                        isinstance(child, Artifact)
                        and annotations.get(mt.ANNOTATION_REFERENCE_TYPE) == mt.REFERENCE_TYPE_ATTESTATION
                    ):
                        subject = annotations[mt.ANNOTATION_REFERENCE_DIGEST]
                        rows.append(_referrer(repository, subject, child, None, "index-attestation"))
        for repository, tag, item in self.accessory_items():
            cosign = _COSIGN_TAG.fullmatch(tag)
            if cosign and isinstance(item, Artifact):
                rows.append(_referrer(repository, f"sha256:{cosign.group(1)}", item, tag, "cosign-tag"))
            elif _FALLBACK_TAG.fullmatch(tag) and isinstance(item, ArtifactIndex):
                for child in item.artifacts:
                    rows.append(_referrer(repository, child.subject, child, None, "tag-schema"))
            elif isinstance(item, Artifact) and item.subject is not None:
                rows.append(_referrer(repository, item.subject, item, tag, "subject-field"))
        unique: dict[tuple[str, str, str | None], dict[str, Any]] = {}
        for row in rows:
            unique.setdefault((row["repository"], row["digest"], row["subject"]), row)
        return list(unique.values())

    def coverage(self) -> dict[str, dict[str, int]]:
        """Per repository, what ``analysis.supply_chain`` must find: ``images`` (distinct tagged image
        digests), ``signed``, ``with_sbom``, ``with_attestation``, ``unsigned``, ``orphaned`` (accessories
        whose subject the repository lacks), ``orphaned_bytes`` and ``accessory_bytes``."""
        accessories: dict[str, list[dict[str, Any]]] = {}
        for row in self.referrer_records():
            accessories.setdefault(row["repository"], []).append(row)
        result = {}
        for repository in self.repositories:
            images: dict[str, set[str]] = {}
            known = set()
            for item in self._repository_items(repository):
                known.add(item.digest)
                known.update(child.digest for child in item.children)
                if _images(item):
                    images[item.digest] = {item.digest, *(image.digest for image in _images(item))}
            found = accessories.get(repository, [])
            distinct_rows = {row["digest"]: row for row in found}
            known.update(distinct_rows)

            def covered(kind: str, found: list[dict[str, Any]] = found, images: dict[str, set[str]] = images) -> int:
                subjects = {row["subject"] for row in found if row["kind"] == kind}
                return sum(1 for parts in images.values() if parts & subjects)

            orphans = {row["digest"]: row for row in found if row["subject"] not in known}
            signed = covered("signature")
            result[repository] = {
                "images": len(images),
                "signed": signed,
                "with_sbom": covered("sbom"),
                "with_attestation": covered("attestation"),
                "unsigned": len(images) - signed,
                "orphaned": len(orphans),
                "orphaned_bytes": sum(row["size"] for row in orphans.values()),
                "accessory_bytes": sum(row["size"] for row in distinct_rows.values()),
            }
        return result


def _checked(tags: Mapping[str, Mapping[str, Any]], allowed: tuple[type, ...]) -> Mapping[str, Mapping[str, Any]]:
    plan: dict[str, Mapping[str, Any]] = {}
    for repository, repo_tags in tags.items():
        validate_repository(repository)
        checked: dict[str, Any] = {}
        for tag, item in repo_tags.items():
            validate_tag(tag)
            if not isinstance(item, allowed):
                names = " or ".join(kind.__name__ for kind in allowed)
                raise TypeError(f"{repository}:{tag} must be an {names}, not {type(item).__name__}")
            checked[tag] = item
        plan[repository] = MappingProxyType(checked)
    return MappingProxyType(plan)


def _images(item: Content) -> tuple[Image, ...]:
    """The runnable images behind a tag: none for an artifact."""
    return () if isinstance(item, Artifact) else item.images


def _referrer(repository: str, subject: str | None, item: Artifact, tag: str | None, via: str) -> dict[str, Any]:
    return {
        "repository": repository,
        "subject": subject,
        "digest": item.digest,
        "kind": item.kind,
        "tag": tag,
        "size": item.size,
        "via": via,
    }


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

    Beside images (all off by default, so a fleet without them is the same as before), drawn from a
    random stream of their own so the images stay the same whatever is added:

    - ``attestation_ratio``: exactly that share of versions is built as ``docker buildx`` does by
      default, an OCI index holding the platform images and one provenance attestation manifest each.
    - ``signed_ratio`` / ``sbom_ratio``: exactly that share of versions is signed / has an SBOM, each
      about half the time in cosign's tag scheme (``sha256-<hex>.sig`` / ``.sbom``), otherwise as an
      untagged referrer (a Sigstore bundle / an ORAS-style SPDX artifact) listed in the subject's
      referrers fallback tag ``sha256-<hex>``.
    - ``helm_charts``: that many versions of a Helm chart in the repository ``charts/platform``.
    - ``artifacts``: that many tagged artifacts with the empty config in ``artifacts/datasets``.
    - ``orphans``: that many signatures whose image is not in the registry (spread over the image
      repositories; alternately a cosign tag and a bundle in a fallback index).
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
    signed_ratio: float = 0.0
    sbom_ratio: float = 0.0
    attestation_ratio: float = 0.0
    helm_charts: int = 0
    artifacts: int = 0
    orphans: int = 0

    def __post_init__(self) -> None:
        if self.repositories < 0:
            raise ValueError(f"repositories must be >= 0, got {self.repositories}")
        if self.tags_per_repo < 1:
            raise ValueError(f"tags_per_repo must be >= 1, got {self.tags_per_repo}")
        if self.base_layers < 0:
            raise ValueError(f"base_layers must be >= 0, got {self.base_layers}")
        for name in ("helm_charts", "artifacts", "orphans"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if self.orphans and not self.repositories:
            raise ValueError("orphans need at least one image repository to sit in")
        for name in ("multi_platform_ratio", "oci_ratio", "fake_created_ratio", "signed_ratio", "sbom_ratio",
                     "attestation_ratio"):  # fmt: skip
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
        extra = random.Random(f"regframe-fleet/{spec.seed}/accessories")
        attested = _exact_sample(extra, total, spec.attestation_ratio)
        signed = _exact_sample(extra, total, spec.signed_ratio)
        sbom = _exact_sample(extra, total, spec.sbom_ratio)
        plan: dict[str, dict[str, Content]] = {}
        accessories: dict[str, dict[str, Artifact | ArtifactIndex]] = {}
        for index in range(spec.repositories):
            name = _repository_name(index)
            numbers = [index * versions + v for v in range(versions)]
            flags = [(n in multi, n in oci, n in fake, n in attested) for n in numbers]
            plan[name] = self.repository(name, flags)
            versions_built = [plan[name][tag] for tag in list(plan[name])[:versions]]
            found = _accessories(name, versions_built, [(n in signed, n in sbom) for n in numbers], extra)
            if found:
                accessories[name] = found
        for number in range(spec.orphans):
            name = _repository_name(number % spec.repositories)
            accessories.setdefault(name, {}).update(self.orphan(name, number))
        if spec.helm_charts:
            plan["charts/platform"] = self.charts(spec.helm_charts)
        if spec.artifacts:
            plan["artifacts/datasets"] = self.datasets(spec.artifacts)
        return Fleet(plan, accessories=accessories, now=self.now, spec=spec)

    def _date(self, days_ago: float) -> str:
        return (self.now - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def orphan(self, repository: str, number: int) -> dict[str, Artifact | ArtifactIndex]:
        """A signature of an image that is not in the registry (deleted by digest after signing)."""
        ghost = build_image([layer(f"{self.spec.seed}/ghost/{number}", MIN_LAYER_SIZE)], created=self.now)
        if number % 2 == 0:
            tag, sig = cosign_signature(ghost, repository=repository)
            return {tag: sig}
        bundle = sigstore_bundle(ghost, PREDICATE_SIGN, created=self._date(30 + number))
        return {fallback_tag(ghost.digest): referrers_index([bundle])}

    def charts(self, count: int) -> dict[str, Content]:
        low, high = self.spec.age_range_days
        charts: dict[str, Content] = {}
        for number in range(count):
            age = high - (high - low) * (number + 1) / (count + 1)
            tag, chart = helm_chart("platform", f"1.{number}.0", created=self._date(age))
            charts[tag] = chart
        return charts

    def datasets(self, count: int) -> dict[str, Content]:
        low, high = self.spec.age_range_days
        datasets: dict[str, Content] = {}
        for number in range(count):
            data = layer(f"{self.spec.seed}/dataset/{number}", MIN_LAYER_SIZE * (number + 1)).blob(_DATASET_LAYER)
            datasets[f"dataset-{number}"] = artifact(
                artifact_type=_DATASET_TYPE,
                layers=[data],
                annotations={mt.ANNOTATION_CREATED: self._date(high - (high - low) * (number + 1) / (count + 1))},
            )
        return datasets

    def repository(self, name: str, flags: list[tuple[bool, bool, bool, bool]]) -> dict[str, Content]:
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

        result: dict[str, Content] = {}
        for position, (tag, age, (is_multi, is_oci, is_fake, is_attested)) in enumerate(
            zip(tags, ages, flags, strict=True)
        ):
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
            if is_attested:
                result[tag] = buildx_index(images, sbom=False, provenance=True)
            else:
                result[tag] = build_index(images, oci=is_oci) if is_multi else images[0]

        if spec.alias_count >= 1:
            result["latest"] = result[tags[-1]]
        if spec.alias_count >= 2:
            candidates = tags[-4:-1] or tags[-1:]
            result["stable"] = result[rng.choice(candidates)]
        return result


_DATASET_TYPE = "application/vnd.example.dataset.v1"
_DATASET_LAYER = "application/vnd.example.dataset.layer.v1.tar"


def _accessories(
    repository: str, versions: list[Content], wanted: list[tuple[bool, bool]], rng: random.Random
) -> dict[str, Artifact | ArtifactIndex]:
    """Signatures and SBOMs of a repository's versions: cosign tags, or referrers in a fallback index."""
    found: dict[str, Artifact | ArtifactIndex] = {}
    for item, (signed, with_sbom) in zip(versions, wanted, strict=True):
        referrers: list[Artifact] = []
        created = _created(item)
        if signed:
            if rng.random() < 0.5:
                tag, sig = cosign_signature(item, repository=repository)
                found[tag] = sig
            else:
                referrers.append(sigstore_bundle(item, PREDICATE_SIGN, created=created))
        if with_sbom:
            if rng.random() < 0.5:
                tag, document = cosign_sbom(item)
                found[tag] = document
            else:
                referrers.append(_oras_sbom(item, created))
        if referrers:
            found[fallback_tag(item.digest)] = referrers_index(referrers)
    return found


def _created(item: Content) -> str:
    dates = [image.created for image in _images(item) if image.created is not None]
    moment = max(dates) if dates else DEFAULT_CREATED
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _oras_sbom(item: Content, created: str) -> Artifact:
    """``oras attach --artifact-type application/spdx+json``: the SPDX document as the one layer."""
    document = (
        '{"spdxVersion":"SPDX-2.3","dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT",'
        f'"name":"{item.digest}","packages":[]}}'
    ).encode()
    return artifact(
        kind="sbom",
        artifact_type=mt.SPDX_JSON,
        layers=[Blob.of(document, mt.SPDX_JSON)],
        subject=item,
        annotations={mt.ANNOTATION_CREATED: created},
    )
