"""The synthetic layers, images and fleets, offline, and seeding them into a real registry.

Expected values are recomputed here from raw bytes (hashlib, gzip, tarfile, json) rather than
taken from the builder; the registry is Debian's distribution 2.8 started by ``local_registry``,
and seeding goes through the regframe client.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta, timezone

import pytest
import requests

import regframe
from regframe.client.errors import RegistryAuthenticationError, RegistryError
from regframe.testing import (
    Fleet,
    FleetSpec,
    build_image,
    build_index,
    layer,
    local_registry,
    make_fleet,
    push_image,
    seed,
)
from regframe.testing.images import ImageIndex
from regframe.testing.layers import MIN_LAYER_SIZE

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ALL_MANIFEST_TYPES = ", ".join([DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX])
INDEX_TYPES = {DOCKER_LIST, OCI_INDEX}

CREATED = datetime(2022, 5, 6, 7, 8, 9, tzinfo=UTC)
NOW = datetime(2025, 3, 1, tzinfo=UTC)
# The distribution grammar, written out here so the test does not lean on regframe's own validator.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------
# Layers
# ------------------------------------------------------------------------------------------


def test_layer_is_deterministic_and_depends_on_seed_and_size():
    first, again = layer(7, 5_000), layer(7, 5_000)
    assert first.data == again.data
    assert first.digest == again.digest
    assert layer(8, 5_000).digest != first.digest
    assert layer(7, 6_000).digest != first.digest
    assert layer("7", 5_000).digest != first.digest


def test_layer_digest_size_and_diff_id_hash_the_bytes():
    item = layer("base", 20_000)
    assert item.digest == sha256(item.data)
    assert item.size == len(item.data)
    assert item.diff_id == sha256(gzip.decompress(item.data))


def test_layer_is_a_reproducible_gzip_tar_of_seeded_random_content():
    item = layer(42, 3_000)
    assert item.data[:3] == b"\x1f\x8b\x08"
    assert item.data[4:8] == b"\x00\x00\x00\x00", "gzip mtime must be 0 for reproducible builds"
    with tarfile.open(fileobj=io.BytesIO(item.data), mode="r:gz") as archive:
        members = archive.getmembers()
        assert len(members) == 1
        assert members[0].isfile()
        assert members[0].mtime == 0
        content = archive.extractfile(members[0]).read()
    assert len(content) > 2_500
    assert content == random.Random(42).randbytes(len(content))


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
def test_layer_is_read_by_gnu_tar():
    item = layer("cli", 70_000)
    listing = subprocess.run(["tar", "-tvzf", "-"], input=item.data, capture_output=True, check=True)
    lines = listing.stdout.decode().splitlines()
    assert len(lines) == 1
    with tarfile.open(fileobj=io.BytesIO(item.data), mode="r:gz") as archive:
        name = archive.getnames()[0]
    assert lines[0].endswith(name)


@pytest.mark.parametrize("size", [MIN_LAYER_SIZE, 700, 1_000, 4_321, 50_000, 2 * 65_535 + 17, 1_000_000])
def test_layer_compressed_size_is_close_to_the_request(size):
    item = layer(size, size)
    assert abs(len(item.data) - size) <= 16


def test_layer_rejects_unusable_arguments():
    with pytest.raises(ValueError, match="below"):
        layer(1, MIN_LAYER_SIZE - 1)
    with pytest.raises(TypeError, match="seed"):
        layer(1.5, 1_000)
    with pytest.raises(TypeError, match="size"):
        layer(1, 1_000.0)


# ------------------------------------------------------------------------------------------
# Images and indexes
# ------------------------------------------------------------------------------------------


def test_docker_image_manifest_and_config():
    layers = [layer("a", 2_000), layer("b", 3_000)]
    image = build_image(layers, created=CREATED, labels={"team": "x"})

    manifest = json.loads(image.manifest_raw)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == DOCKER_MANIFEST == image.media_type
    assert manifest["config"] == {
        "mediaType": DOCKER_CONFIG,
        "size": len(image.config.data),
        "digest": sha256(image.config.data),
    }
    assert manifest["layers"] == [
        {"mediaType": DOCKER_LAYER, "size": len(item.data), "digest": sha256(item.data)} for item in layers
    ]
    assert image.digest == sha256(image.manifest_raw)

    config = json.loads(image.config.data)
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert "variant" not in config
    assert config["created"] == "2022-05-06T07:08:09Z"
    assert config["config"]["Labels"] == {"team": "x"}
    assert config["rootfs"] == {"type": "layers", "diff_ids": [sha256(gzip.decompress(item.data)) for item in layers]}
    assert len(config["history"]) == 2
    assert all(entry["created"] == "2022-05-06T07:08:09Z" for entry in config["history"])
    assert all(entry["created_by"] for entry in config["history"])

    assert image.size == len(image.config.data) + len(layers[0].data) + len(layers[1].data)
    expected_blobs = [sha256(image.config.data)] + [sha256(item.data) for item in layers]
    assert [blob.digest for blob in image.blobs()] == expected_blobs
    assert image.labels == {"team": "x"}
    assert image.created == CREATED


def test_oci_image_with_variant_history_and_offset_timezone():
    created = datetime(2020, 1, 1, 12, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=2)))
    item = layer("arm", 1_500)
    image = build_image(
        [item], architecture="arm64", variant="v8", created=created, history=["COPY app /app"], oci=True
    )

    manifest = json.loads(image.manifest_raw)
    assert manifest["mediaType"] == OCI_MANIFEST == image.media_type
    assert manifest["config"]["mediaType"] == OCI_CONFIG
    assert [entry["mediaType"] for entry in manifest["layers"]] == [OCI_LAYER]
    config = json.loads(image.config.data)
    assert (config["architecture"], config["variant"]) == ("arm64", "v8")
    assert config["created"] == "2020-01-01T10:00:00.25Z"
    assert config["history"] == [{"created": "2020-01-01T10:00:00.25Z", "created_by": "COPY app /app"}]
    assert str(image.platform) == "linux/arm64/v8"


def test_one_layer_serves_both_formats_under_its_own_digest():
    item = layer("shared", 2_000)
    docker, oci = build_image([item]), build_image([item], oci=True)
    assert docker.layers[0].digest == oci.layers[0].digest == sha256(item.data)
    assert (docker.layers[0].media_type, oci.layers[0].media_type) == (DOCKER_LAYER, OCI_LAYER)
    assert docker.digest != oci.digest


def test_image_without_created_or_labels():
    image = build_image([layer("bare", 1_000)], created=None)
    config = json.loads(image.config.data)
    assert "created" not in config
    assert all("created" not in entry for entry in config["history"])
    assert "Labels" not in config["config"]
    assert image.created is None
    assert dict(image.labels) == {}


def test_image_arguments_are_checked():
    item = layer("x", 1_000)
    with pytest.raises(ValueError, match="timezone"):
        build_image([item], created=datetime(2020, 1, 1))
    with pytest.raises(ValueError, match="history"):
        build_image([item], history=["one", "two"])
    with pytest.raises(TypeError, match="Layer"):
        build_image([item.data])
    with pytest.raises(TypeError, match="Image"):
        build_index([item])


@pytest.mark.parametrize("oci", [False, True])
def test_index_lists_each_platform_with_its_manifest_digest(oci):
    shared = layer("base", 4_000)
    amd = build_image([shared, layer("amd", 1_000)], created=CREATED, oci=oci)
    arm = build_image([shared, layer("arm", 1_000)], architecture="arm64", variant="v8", created=CREATED, oci=oci)
    index = build_index([amd, arm], oci=oci)

    document = json.loads(index.manifest_raw)
    child_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    assert document["schemaVersion"] == 2
    assert document["mediaType"] == (OCI_INDEX if oci else DOCKER_LIST) == index.media_type
    assert document["manifests"] == [
        {
            "mediaType": child_type,
            "size": len(amd.manifest_raw),
            "digest": sha256(amd.manifest_raw),
            "platform": {"architecture": "amd64", "os": "linux"},
        },
        {
            "mediaType": child_type,
            "size": len(arm.manifest_raw),
            "digest": sha256(arm.manifest_raw),
            "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        },
    ]
    assert index.digest == sha256(index.manifest_raw)

    expected_blobs = {sha256(amd.config.data), sha256(arm.config.data)} | {
        entry["digest"] for child in (amd, arm) for entry in json.loads(child.manifest_raw)["layers"]
    }
    assert [blob.digest for blob in index.blobs()] == list(dict.fromkeys(b.digest for b in index.blobs()))
    assert {blob.digest for blob in index.blobs()} == expected_blobs
    assert len(expected_blobs) == 5, "the shared base layer is listed once"
    assert [m.digest for m in index.manifests()] == [amd.digest, arm.digest, index.digest]


# ------------------------------------------------------------------------------------------
# Fleet plans
# ------------------------------------------------------------------------------------------

SMALL = FleetSpec(
    repositories=20,
    tags_per_repo=10,
    multi_platform_ratio=0.25,
    oci_ratio=0.5,
    fake_created_ratio=0.1,
    now=NOW,
    layer_size_range=(200, 2_000),
    base_layer_size_range=(5_000, 20_000),
    seed=3,
)


@pytest.fixture(scope="module")
def small_fleet() -> Fleet:
    return SMALL.build()


def version_tags(fleet: Fleet, repository: str) -> list[str]:
    return [tag for tag in fleet.tags[repository] if tag not in ("latest", "stable")]


def test_fleet_has_the_requested_repositories_and_tags(small_fleet):
    assert len(small_fleet.repositories) == 20
    assert len(set(small_fleet.repositories)) == 20
    for repository in small_fleet.repositories:
        assert REPOSITORY_RE.fullmatch(repository), repository
        assert len(small_fleet.tags[repository]) == 10
        assert all(TAG_RE.fullmatch(tag) for tag in small_fleet.tags[repository])
    depths = Counter(repository.count("/") for repository in small_fleet.repositories)
    assert depths[0] >= 1, "some single-component names"
    assert depths[1] >= 1, "namespaced names such as team-a/service"
    assert depths[2] >= 1, "some nested namespaces"
    assert small_fleet.now == NOW


def test_alias_tags_share_the_digest_of_a_version_tag(small_fleet):
    for repository, tags in small_fleet.tags.items():
        versions = version_tags(small_fleet, repository)
        assert len(versions) == 8
        version_digests = {sha256(tags[tag].manifest_raw) for tag in versions}
        assert len(version_digests) == 8, "every version is a distinct image"
        assert sha256(tags["latest"].manifest_raw) == sha256(tags[versions[-1]].manifest_raw)
        assert sha256(tags["stable"].manifest_raw) in version_digests


def test_exact_shares_of_multi_platform_oci_and_fake_created_tags(small_fleet):
    versions = [
        (repo, tag, small_fleet.tags[repo][tag])
        for repo in small_fleet.repositories
        for tag in version_tags(small_fleet, repo)
    ]
    assert len(versions) == 160
    documents = [json.loads(item.manifest_raw) for _, _, item in versions]
    indexes = [doc for doc in documents if doc["mediaType"] in INDEX_TYPES]
    assert len(indexes) == round(0.25 * 160)
    for doc in indexes:
        platforms = [p["platform"] for p in doc["manifests"]]
        assert platforms == [
            {"architecture": "amd64", "os": "linux"},
            {"architecture": "arm64", "os": "linux", "variant": "v8"},
        ]
        expected_child = OCI_MANIFEST if doc["mediaType"] == OCI_INDEX else DOCKER_MANIFEST
        assert {p["mediaType"] for p in doc["manifests"]} == {expected_child}
    assert sum(doc["mediaType"] in (OCI_MANIFEST, OCI_INDEX) for doc in documents) == round(0.5 * 160)

    fake = 0
    for _, _, item in versions:
        children = item.children if isinstance(item, ImageIndex) else (item,)
        years = {json.loads(child.config.data)["created"][:4] for child in children}
        assert len(years) == 1, "all platforms of a tag are built at the same moment"
        fake += years.pop() in ("1970", "1980")
    assert fake == round(0.1 * 160)


def test_creation_dates_spread_from_years_to_days_before_now(small_fleet):
    ages = []
    for record in small_fleet.records():
        written = json.loads(small_fleet.blobs[record["config_digest"]].data)["created"]
        created = datetime.fromisoformat(written.replace("Z", "+00:00"))
        assert created == record["created"]
        if created.year in (1970, 1980):
            continue
        age = NOW - created
        assert timedelta(days=1) <= age <= timedelta(days=1500, seconds=1)
        ages.append(age)
    assert max(ages) > timedelta(days=365)
    assert min(ages) < timedelta(days=60)


def test_base_layers_are_shared_across_repositories_and_formats(small_fleet):
    records = small_fleet.records()
    repositories_of = defaultdict(set)
    media_types_of = defaultdict(set)
    for record in records:
        for digest, _ in record["layers"]:
            repositories_of[digest].add(record["repository"])
            media_types_of[digest].add(record["media_type"])
    shared_first = [r for r in records if r["layers"] and len(repositories_of[r["layers"][0][0]]) > 1]
    assert len(shared_first) / len(records) >= 0.6, "most images start with a base layer used elsewhere"
    widely_shared = [d for d, repos in repositories_of.items() if len(repos) >= 5]
    assert widely_shared
    assert any(media_types_of[d] == {DOCKER_MANIFEST, OCI_MANIFEST} for d in widely_shared)
    unique = [d for d, repos in repositories_of.items() if len(repos) == 1]
    assert len(unique) > len(widely_shared), "images also have layers of their own"


def test_records_agree_with_the_bytes_of_the_plan(small_fleet):
    records = small_fleet.records()
    expected_rows = 0
    for tags in small_fleet.tags.values():
        for item in tags.values():
            document = json.loads(item.manifest_raw)
            expected_rows += len(document["manifests"]) if document["mediaType"] in INDEX_TYPES else 1
    assert len(records) == expected_rows

    for record in records:
        tagged = small_fleet.tags[record["repository"]][record["tag"]]
        assert record["digest"] == sha256(tagged.manifest_raw)
        image_raw = small_fleet.manifests[record["manifest_digest"]].manifest_raw
        assert sha256(image_raw) == record["manifest_digest"]
        manifest = json.loads(image_raw)
        assert manifest["mediaType"] == record["media_type"]
        assert manifest["config"]["digest"] == record["config_digest"]
        config = small_fleet.blobs[record["config_digest"]].data
        assert sha256(config) == record["config_digest"]
        assert len(config) == record["config_size"]
        platform = json.loads(config)
        assert record["platform"] == "/".join(
            filter(None, [platform["os"], platform["architecture"], platform.get("variant")])
        )
        assert record["labels"] == platform["config"]["Labels"]
        assert record["labels"]["org.opencontainers.image.version"] in small_fleet.tags[record["repository"]]
        assert record["layers"] == [(entry["digest"], entry["size"]) for entry in manifest["layers"]]
        for digest, size in record["layers"]:
            assert len(small_fleet.blobs[digest].data) == size
            assert sha256(small_fleet.blobs[digest].data) == digest
        assert record["size"] == record["config_size"] + sum(size for _, size in record["layers"])


def test_fleet_is_deterministic_and_seed_dependent(small_fleet):
    again = SMALL.build()
    assert again.records() == small_fleet.records()
    other = FleetSpec(**{**SMALL.__dict__, "seed": 4}).build()
    assert {r["manifest_digest"] for r in other.records()}.isdisjoint(
        {r["manifest_digest"] for r in small_fleet.records()}
    )


def test_fleet_digests_do_not_depend_on_the_process(small_fleet):
    script = (
        "import json, sys; from datetime import datetime, timezone; "
        "from regframe.testing import FleetSpec; "
        "options = {k: tuple(v) if isinstance(v, list) else v "
        "           for k, v in json.loads(sys.argv[1]).items()}; "
        "fleet = FleetSpec(**options, now=datetime(2025, 3, 1, tzinfo=timezone.utc)).build(); "
        "print(' '.join(r['digest'] for r in fleet.records()))"
    )
    options = json.dumps({k: v for k, v in SMALL.__dict__.items() if k != "now"})
    outputs = set()
    for hash_seed in ("1", "2"):
        completed = subprocess.run(
            [sys.executable, "-c", script, options],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        )
        outputs.add(completed.stdout.strip())
    assert outputs == {" ".join(sha256(item.manifest_raw) for _, _, item in small_fleet.items() for _ in item.images)}


def test_default_fleet_is_the_documented_shape_and_stays_small():
    fleet = make_fleet(now=NOW)
    assert len(fleet.repositories) == 50
    assert all(len(tags) == 40 for tags in fleet.tags.values())
    assert all({"latest", "stable"} <= set(tags) for tags in fleet.tags.values())
    version_items = [
        item for repo in fleet.repositories for tag, item in fleet.tags[repo].items() if tag not in ("latest", "stable")
    ]
    media_types = [json.loads(item.manifest_raw)["mediaType"] for item in version_items]
    assert sum(media_type in INDEX_TYPES for media_type in media_types) == round(0.1 * 1900)

    repositories_of = defaultdict(set)
    for record in fleet.records():
        for digest, _ in record["layers"]:
            repositories_of[digest].add(record["repository"])
    sizes = {digest: len(fleet.blobs[digest].data) for digest in repositories_of}
    base = {d for d, repos in repositories_of.items() if len(repos) > 1}
    assert all(1_000 - 16 <= size <= 50_000 + 16 for d, size in sizes.items() if d not in base)
    assert 3 <= len(base) <= 6, "three base layers per architecture"
    assert sum(sizes[d] for d in base) <= 2 * 3_600_016
    assert sum(len(blob.data) for blob in fleet.blobs.values()) < 100_000_000


def test_a_custom_fleet_from_a_dict():
    image = build_image([layer("c", 1_000)], created=CREATED, labels={"a": "b"})
    index = build_index([image, build_image([layer("d", 1_000)], architecture="arm64", created=CREATED)], oci=True)
    fleet = Fleet({"solo": {"v1": image, "latest": image}, "team/multi": {"1.0": index}})
    records = fleet.records()
    assert [(r["repository"], r["tag"], r["platform"]) for r in records] == [
        ("solo", "v1", "linux/amd64"),
        ("solo", "latest", "linux/amd64"),
        ("team/multi", "1.0", "linux/amd64"),
        ("team/multi", "1.0", "linux/arm64"),
    ]
    assert records[0]["digest"] == records[1]["digest"] == sha256(image.manifest_raw)
    assert records[2]["digest"] == records[3]["digest"] == sha256(index.manifest_raw)
    assert records[2]["manifest_digest"] == sha256(image.manifest_raw)
    assert records[0]["created"] == CREATED
    assert set(fleet.manifests) == {
        sha256(m) for m in (image.manifest_raw, index.manifest_raw, index.children[1].manifest_raw)
    }
    assert fleet.tag_count == 3
    assert fleet.now is None and fleet.spec is None
    with pytest.raises(TypeError):
        fleet.tags["solo"]["v2"] = image


def test_fleet_and_spec_reject_invalid_input():
    image = build_image([layer("c", 1_000)])
    with pytest.raises(ValueError, match="upper-case"):
        Fleet({"Team/App": {"v1": image}})
    with pytest.raises(ValueError, match="tag"):
        Fleet({"app": {".hidden": image}})
    with pytest.raises(TypeError, match="app:v1"):
        Fleet({"app": {"v1": image.manifest_raw}})
    with pytest.raises(ValueError, match="oci_ratio"):
        FleetSpec(oci_ratio=1.5)
    with pytest.raises(ValueError, match="tags_per_repo"):
        FleetSpec(tags_per_repo=0)
    with pytest.raises(ValueError, match="layer_size_range"):
        FleetSpec(layer_size_range=(5_000, 1_000))
    with pytest.raises(ValueError, match="timezone"):
        FleetSpec(now=datetime(2025, 1, 1))


# ------------------------------------------------------------------------------------------
# Pushing to a real registry
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry():
    with local_registry() as reg:
        yield reg


@pytest.fixture(scope="module")
def target(registry):
    with regframe.connect(registry.url, docker_config=False) as client:
        yield client


def get(registry, path: str, accept: str | None = None, method: str = "GET", **kwargs) -> requests.Response:
    headers = {"Accept": accept} if accept else {}
    with requests.Session() as session:
        session.trust_env = False
        return session.request(method, registry.url + path, headers=headers, timeout=10, **kwargs)


@pytest.mark.parametrize("oci", [False, True], ids=["docker", "oci"])
def test_pushed_image_reads_back_byte_for_byte(registry, target, oci):
    repository = f"push/{'oci' if oci else 'docker'}"
    layers = [layer(f"{repository}/0", 30_000), layer(f"{repository}/1", 2_000)]
    image = build_image(layers, created=CREATED, labels={"org.example.app": repository}, oci=oci)

    result = push_image(target, repository, "v1", image)
    assert result.blobs_uploaded == 3
    assert result.bytes_uploaded == len(image.config.data) + sum(len(item.data) for item in layers)
    assert result.manifests_put == 1

    media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    response = get(registry, f"/v2/{repository}/manifests/v1", media_type)
    assert response.status_code == 200
    assert response.content == image.manifest_raw
    assert response.headers["Docker-Content-Digest"] == sha256(image.manifest_raw)
    assert response.headers["Content-Type"] == media_type

    config_digest = json.loads(response.content)["config"]["digest"]
    config = get(registry, f"/v2/{repository}/blobs/{config_digest}").json()
    assert config["created"] == "2022-05-06T07:08:09Z"
    assert config["config"]["Labels"] == {"org.example.app": repository}
    for item in layers:
        head = get(registry, f"/v2/{repository}/blobs/{sha256(item.data)}", method="HEAD")
        assert head.status_code == 200
        assert int(head.headers["Content-Length"]) == len(item.data)


def test_pushing_again_skips_every_blob(registry, target):
    image = build_image([layer("again", 5_000)], created=CREATED)
    first = push_image(target, "push/again", "one", image)
    second = push_image(target, "push/again", "two", image)
    assert (first.blobs_uploaded, first.blobs_skipped) == (2, 0)
    assert (second.blobs_uploaded, second.blobs_skipped, second.bytes_uploaded) == (0, 2, 0)
    for tag in ("one", "two"):
        head = get(registry, f"/v2/push/again/manifests/{tag}", DOCKER_MANIFEST, method="HEAD")
        assert head.headers["Docker-Content-Digest"] == sha256(image.manifest_raw)


@pytest.mark.parametrize("oci", [False, True], ids=["docker-list", "oci-index"])
def test_pushed_index_and_children_read_back(registry, target, oci):
    base = layer("index-base", 8_000)
    children = [
        build_image(
            [base, layer(f"index-{oci}-{arch}", 1_000)],
            architecture=arch,
            variant="v8" if arch == "arm64" else None,
            created=CREATED,
            oci=oci,
        )
        for arch in ("amd64", "arm64")
    ]
    index = build_index(children, oci=oci)
    repository = "push/index"
    result = push_image(target, repository, f"multi-{'oci' if oci else 'docker'}", index)
    assert result.manifests_put == 3

    response = get(
        registry, f"/v2/{repository}/manifests/multi-{'oci' if oci else 'docker'}", OCI_INDEX if oci else DOCKER_LIST
    )
    assert response.content == index.manifest_raw
    assert response.headers["Docker-Content-Digest"] == sha256(index.manifest_raw)
    for entry, child in zip(json.loads(response.content)["manifests"], children, strict=True):
        by_digest = get(registry, f"/v2/{repository}/manifests/{entry['digest']}", entry["mediaType"])
        assert by_digest.status_code == 200
        assert by_digest.content == child.manifest_raw


def test_push_target_reports_registry_errors(registry, target):
    unpushed = build_image([layer("never-uploaded", 1_000)])
    assert target.blob_exists("push/errors", sha256(unpushed.config.data)) is False
    with pytest.raises(RegistryError) as caught:
        target.put_manifest("push/errors", "v1", unpushed.manifest_raw, unpushed.media_type)
    assert caught.value.status == 400
    assert caught.value.code == "MANIFEST_BLOB_UNKNOWN"


def test_seeding_with_basic_auth():
    image = build_image([layer("basic", 2_000)], created=CREATED)
    fleet = Fleet({"secured/app": {"v1": image}})
    with local_registry(auth="basic") as reg:
        user, password = next(iter(reg.users.items()))
        with regframe.Registry(reg.url, docker_config=False) as anonymous:
            with pytest.raises(RegistryAuthenticationError):
                anonymous.blob_exists("secured/app", image.config.digest)
            with pytest.raises(RegistryAuthenticationError):
                seed(anonymous, fleet, workers=2)
        with regframe.connect(reg.url, user=user, password=password, docker_config=False) as authenticated:
            assert seed(authenticated, fleet, workers=2).manifests_put == 1
        response = get(reg, "/v2/secured/app/manifests/v1", DOCKER_MANIFEST, auth=(user, password))
        assert response.content == image.manifest_raw


def test_seeding_over_tls_uses_the_given_ca():
    image = build_image([layer("tls", 2_000)], created=CREATED)
    with local_registry(tls=True) as reg:
        with regframe.connect(reg.url, ca_bundle=reg.ca_path, docker_config=False) as secure:
            assert push_image(secure, "tls/app", "v1", image).manifests_put == 1
        response = requests.get(
            f"{reg.url}/v2/tls/app/manifests/v1",
            headers={"Accept": DOCKER_MANIFEST},
            verify=str(reg.ca_path),
            timeout=10,
        )
        assert response.content == image.manifest_raw


# ------------------------------------------------------------------------------------------
# Seeding a whole fleet
# ------------------------------------------------------------------------------------------

SEED_SPEC = FleetSpec(
    repositories=5,
    tags_per_repo=4,
    multi_platform_ratio=0.3,
    oci_ratio=0.5,
    now=NOW,
    layer_size_range=(500, 5_000),
    base_layer_size_range=(10_000, 30_000),
    seed=11,
)


def blobs_per_repository(fleet: Fleet) -> int:
    pairs = set()
    for record in fleet.records():
        pairs.add((record["repository"], record["config_digest"]))
        pairs.update((record["repository"], digest) for digest, _ in record["layers"])
    return len(pairs)


@pytest.fixture(scope="module")
def seeded():
    fleet = SEED_SPEC.build()
    with local_registry() as reg, regframe.connect(reg.url, docker_config=False) as client:
        result = seed(client, fleet, workers=4)
        yield reg, client, fleet, result


def test_seed_uploads_each_blob_once_per_repository(seeded):
    _, _, fleet, result = seeded
    children = {(repo, child.digest) for repo, _, item in fleet.items() for child in item.children}
    assert children, "the spec must produce at least one multi-platform tag"
    assert result.blobs_uploaded == blobs_per_repository(fleet)
    assert result.blobs_skipped == 0
    assert result.manifests_put == fleet.tag_count + len(children)


def test_seeded_catalog_and_tags_match_the_plan(seeded):
    registry, _, fleet, _ = seeded
    catalog = get(registry, "/v2/_catalog?n=1000").json()["repositories"]
    assert sorted(catalog) == sorted(fleet.repositories)
    for repository in fleet.repositories:
        listed = get(registry, f"/v2/{repository}/tags/list").json()["tags"]
        assert sorted(listed) == sorted(fleet.tags[repository])


def test_every_seeded_tag_points_at_the_planned_digest(seeded):
    registry, _, fleet, _ = seeded
    for repository, tag, item in fleet.items():
        head = get(registry, f"/v2/{repository}/manifests/{tag}", ALL_MANIFEST_TYPES, method="HEAD")
        assert head.status_code == 200
        assert head.headers["Docker-Content-Digest"] == sha256(item.manifest_raw)
        assert head.headers["Content-Type"] == json.loads(item.manifest_raw)["mediaType"]


def test_seeding_again_uploads_nothing(seeded):
    _, client, fleet, _ = seeded
    again = seed(client, fleet, workers=4)
    assert again.blobs_uploaded == 0
    assert again.bytes_uploaded == 0
    assert again.blobs_skipped == blobs_per_repository(fleet)


# A fresh interpreter in which importing any of ``BLOCKED`` fails, as on a machine without them.
BLOCKING_PRELUDE = """
import sys
from importlib.abc import MetaPathFinder

class Blocked(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Blocked())
"""


def test_seeding_uses_the_regframe_client_and_no_second_http_client():
    """Seeding works where ``requests`` (the second HTTP client the harness once had) cannot be imported."""
    spec = {
        "repositories": 2,
        "tags_per_repo": 3,
        "multi_platform_ratio": 0.5,
        "seed": 5,
        "layer_size_range": [300, 900],
        "base_layer_size_range": [2_000, 4_000],
    }
    script = (
        BLOCKING_PRELUDE
        + """
BLOCKED = {"requests"}
import json
from datetime import datetime, timezone
import regframe
from regframe.testing import make_fleet, seeded_registry

options = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(sys.argv[1]).items()}
fleet = make_fleet(**options, now=datetime(2025, 3, 1, tzinfo=timezone.utc))
with seeded_registry(fleet, workers=2) as reg, regframe.connect(reg.url, docker_config=False) as client:
    found = {repo: {tag: client.digest(repo, tag) for tag in client.tags(repo)["tags"]}
             for repo in client.search()}
print(json.dumps({"found": found, "loaded": sorted(m for m in sys.modules if m.split(".")[0] == "requests")}))
"""
    )
    completed = subprocess.run(
        [sys.executable, "-c", script, json.dumps(spec)], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    answer = json.loads(completed.stdout)
    assert answer["loaded"] == []
    planned = make_fleet(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}, now=NOW)
    assert answer["found"] == {
        repo: {tag: sha256(item.manifest_raw) for tag, item in tags.items()} for repo, tags in planned.tags.items()
    }
