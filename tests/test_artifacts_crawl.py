"""The crawl on a registry holding what today's tools publish: images, cosign signatures, attestations and
SBOMs (tag scheme and bundles), BuildKit attestation manifests, Notation signatures, the referrers tag schema,
a Helm chart, ORAS artifacts pushed with oras-py, an empty-config artifact, a 30 MB config, a binary and a
JSON-array image config, and an index whose entries have no ``platform``.

Everything runs against the real registry (distribution 2.8, which has no referrers API); the API path runs
through ``regframe.testing.referrers_proxy.ReferrersProxy``, which serves ``/v2/<name>/referrers/<digest>``
from that registry's own content. Every expected number comes from the content built here.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import defaultdict

import pandas as pd
import pytest
import requests

import regframe
from regframe.analysis import reclaimable_bytes, storage_usage
from regframe.client import mediatypes as MT
from regframe.client.errors import NotFoundError, RegistryProtocolError
from regframe.processes import free_port
from regframe.testing import build_image, layer, local_registry, push_image
from regframe.testing.faultproxy import Action, FaultProxy, Rule
from regframe.testing.layers import Blob
from regframe.testing.oci_artifacts import (
    PREDICATE_SIGN,
    PREDICATE_SLSA,
    PREDICATE_SPDX,
    artifact,
    buildx_index,
    cosign_attestation,
    cosign_sbom,
    cosign_signature,
    helm_chart,
    image_with_config,
    index_without_platforms,
    notation_signature,
    oras_push,
    push_artifact,
    referrers_index,
    sigstore_bundle,
)
from regframe.testing.referrers_proxy import ReferrersProxy

GHOST = build_image([layer("never pushed", 300)], oci=True)
BIG = random.Random(30).randbytes(30 * 1024 * 1024)
# An image config just over the client's 16 MiB limit for configs.
OVER_LIMIT = random.Random(17).randbytes(16 * 1024 * 1024 + 1)
MODEL_CONFIG = "application/vnd.example.model.config.v1+json"
DATASET = "application/vnd.example.dataset.v1"


class World:
    """What was pushed, and what each manifest row must say: (repository, tag, manifest digest) ->
    (kind, subject, platform, blobs as (digest, size, role))."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], tuple[str, str | None, str, list[tuple[str, int, str]]]] = {}
        self.accessories: dict[tuple[str, str, str], dict] = {}
        self.image_configs: set[str] = set()
        self.tags: dict[tuple[str, str], str] = {}

    def row(self, repo, tag, item, kind, subject=None, platform="unknown/unknown"):
        blobs = [(item.config.digest, item.config.size, "config")] + [(b.digest, b.size, "layer") for b in item.layers]
        self.rows[(repo, tag, item.digest)] = (kind, subject, platform, blobs)

    def image(self, repo, tag, image):
        self.row(repo, tag, image, "image", platform=str(image.platform))
        self.image_configs.add(image.config.digest)

    def accessory(self, repo, item, via, tag=None, subject=None, size=None, created=None):
        self.accessories[(repo, item.digest, subject or item.subject)] = {
            "kind": item.kind,
            "artifact_type": item.artifact_type,
            "media_type": item.media_type,
            "tag": tag,
            "size": size if size is not None else item.size,
            "created": created,
            "via": via,
        }


def manifest_bytes(url: str, repo: str, reference: str) -> bytes:
    """A manifest read with plain requests, not with the code under test."""
    response = requests.get(f"{url}/v2/{repo}/manifests/{reference}", headers={"Accept": MT.OCI_MANIFEST}, timeout=10)
    response.raise_for_status()
    return response.content


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    files = tmp_path_factory.mktemp("oras")
    w = World()
    with local_registry() as reg, regframe.connect(reg.url, docker_config=False) as client:
        app = build_image([layer("art-base", 3000), layer("art-app", 1500)], oci=True)
        push_image(client, "shop/app", "v1", app)
        w.image("shop/app", "v1", app)
        w.tags[("shop/app", "v1")] = "image"

        for make, kind in ((lambda s: cosign_signature(s, signatures=2), "signature"),
                           (lambda s: cosign_attestation(s, PREDICATE_SLSA), "attestation"),
                           (cosign_sbom, "sbom")):  # fmt: skip
            tag, item = make(app)
            assert item.kind == kind
            push_artifact(client, "shop/app", tag, item)
            w.row("shop/app", tag, item, kind, subject=app.digest)
            w.accessory("shop/app", item, "cosign-tag", tag=tag, subject=app.digest)
            w.tags[("shop/app", tag)] = kind

        signed = sigstore_bundle(app, PREDICATE_SIGN)
        sbom = sigstore_bundle(app, PREDICATE_SPDX, created="2025-05-05T05:05:05Z")
        notation = notation_signature(app)
        fallback = referrers_index([signed, sbom, notation], annotations=False)
        fallback_tag = app.digest.replace(":", "-")
        push_artifact(client, "shop/app", fallback_tag, fallback)
        for item in (signed, sbom, notation):
            w.row("shop/app", fallback_tag, item, item.kind, subject=app.digest)
            w.accessory("shop/app", item, "tag-schema", created=item.annotations[MT.ANNOTATION_CREATED])
        w.tags[("shop/app", fallback_tag)] = "artifact"

        amd = build_image([layer("art-base", 3000), layer("art-amd", 1200)], oci=True)
        arm = build_image(
            [layer("art-base-arm", 2900), layer("art-arm", 1100)], architecture="arm64", variant="v8", oci=True
        )
        built = buildx_index([amd, arm], sbom=[True, False], oci_artifact=[False, True])
        push_artifact(client, "shop/app", "v2", built)
        for image in (amd, arm):
            w.image("shop/app", "v2", image)
        for image, item in zip((amd, arm), built.artifacts):
            w.row("shop/app", "v2", item, item.kind, subject=image.digest)
            w.accessory("shop/app", item, "index-attestation", subject=image.digest)
        w.tags[("shop/app", "v2")] = "image"

        orphan = sigstore_bundle(GHOST, PREDICATE_SIGN)
        push_artifact(client, "shop/app", "orphan-sig", orphan)
        w.row("shop/app", "orphan-sig", orphan, "signature", subject=GHOST.digest)
        w.accessory(
            "shop/app", orphan, "subject-field", tag="orphan-sig", created=orphan.annotations[MT.ANNOTATION_CREATED]
        )
        w.tags[("shop/app", "orphan-sig")] = "signature"

        # ORAS, packing as image-spec 1.0 does: the artifact type as the config media type, config "{}".
        (files / "config.json").write_bytes(b"{}")
        (files / "sbom.spdx.json").write_bytes(b'{"spdxVersion": "SPDX-2.3", "name": "app"}')
        (files / "notes.txt").write_bytes(b"release notes\n" * 40)
        oras_sbom = oras_push(
            reg.url, "shop/app", "oras-sbom", [(files / "sbom.spdx.json", MT.SPDX_JSON)],
            config=(files / "config.json", MT.SPDX_JSON), subject=app,
        )  # fmt: skip
        oras_plain = oras_push(reg.url, "shop/app", "oras-plain", [(files / "notes.txt", "text/plain")])
        oras_items = {}
        for tag, digest, kind, subject, payload in (
            ("oras-sbom", oras_sbom, "sbom", app.digest, files / "sbom.spdx.json"),
            ("oras-plain", oras_plain, "artifact", None, files / "notes.txt"),
        ):
            raw = manifest_bytes(reg.url, "shop/app", tag)
            config = b"{}"
            oras_items[tag] = (digest, raw, payload.stat().st_size)
            w.rows[("shop/app", tag, digest)] = (
                kind,
                subject,
                "unknown/unknown",
                [
                    (Blob.of(config, "x").digest, len(config), "config"),
                    (Blob.of(payload.read_bytes(), "x").digest, payload.stat().st_size, "layer"),
                ],
            )
            w.tags[("shop/app", tag)] = kind
        digest, raw, payload_size = oras_items["oras-sbom"]
        w.accessories[("shop/app", digest, app.digest)] = {
            "kind": "sbom",
            "artifact_type": MT.SPDX_JSON,
            "media_type": MT.OCI_MANIFEST,
            "tag": "oras-sbom",
            "size": len(raw) + 2 + payload_size,
            "created": None,
            "via": "subject-field",
        }

        tag, chart = helm_chart("web", "1.2.3+build.1", provenance=True)
        push_artifact(client, "charts/web", tag, chart)
        w.row("charts/web", tag, chart, "helm-chart")
        w.tags[("charts/web", tag)] = "helm-chart"

        data = artifact(artifact_type=DATASET, layers=[Blob.of(b"a,b\n1,2\n", "text/csv")])
        push_artifact(client, "shop/data", "data", data)
        w.row("shop/data", "data", data, "artifact")
        w.tags[("shop/data", "data")] = "artifact"

        model = artifact(config=Blob.of(BIG, MODEL_CONFIG), layers=[layer("weights", 2000).blob(MT.OCI_LAYER)])
        push_artifact(client, "shop/model", "weights", model)
        w.row("shop/model", "weights", model, "artifact")
        w.tags[("shop/model", "weights")] = "artifact"

        odd_layer = [layer("odd", 500).blob(MT.OCI_LAYER)]
        for tag, config in (("binary", bytes(range(256)) * 4), ("array", b"[1, 2, 3]"), ("big", OVER_LIMIT)):
            item = image_with_config(config, odd_layer)
            push_artifact(client, "shop/odd", tag, item)
            w.row("shop/odd", tag, item, "image")
            w.tags[("shop/odd", tag)] = "image"
            if len(config) <= 16 * 1024 * 1024:
                w.image_configs.add(item.config.digest)

        amd2 = build_image([layer("np-amd", 900)], oci=True)
        arm2 = build_image([layer("np-arm", 900)], architecture="arm64", variant="v8", oci=True)
        noplat = index_without_platforms([amd2, arm2])
        push_image(client, "shop/noplat", "multi", noplat)
        for image in (amd2, arm2):
            w.image("shop/noplat", "multi", image)
        w.tags[("shop/noplat", "multi")] = "image"

        w.url, w.reg, w.client = reg.url, reg, client
        w.app, w.amd2, w.arm2, w.model, w.fallback = app, amd2, arm2, model, fallback
        w.inv = client.inventory(progress=False)
        yield w


def manifest_rows(inv):
    frame = inv.manifests.astype(object)
    return {
        (r.repository, r.tag, r.manifest_digest): (r.kind, None if pd.isna(r.subject) else r.subject, r.platform)
        for r in frame.itertuples(index=False)
    }


def test_every_manifest_row_has_its_kind_subject_and_platform(world):
    inv = world.inv
    assert inv.errors.empty, inv.errors.to_string()
    expected = {key: (kind, subject, platform) for key, (kind, subject, platform, _) in world.rows.items()}
    assert manifest_rows(inv) == expected
    assert list(inv.manifests["kind"].cat.categories) == [
        "image",
        "signature",
        "attestation",
        "sbom",
        "helm-chart",
        "artifact",
    ]


def test_artifact_type_is_the_declared_type_else_a_non_image_config_type(world):
    frame = inv_frame = world.inv.manifests.astype(object).set_index(["repository", "tag"])
    assert frame.loc[("charts/web", "1.2.3_build.1"), "artifact_type"] == MT.HELM_CONFIG
    assert frame.loc[("shop/data", "data"), "artifact_type"] == DATASET
    assert frame.loc[("shop/model", "weights"), "artifact_type"] == MODEL_CONFIG
    assert frame.loc[("shop/app", "oras-sbom"), "artifact_type"] == MT.SPDX_JSON
    assert frame.loc[("shop/app", "orphan-sig"), "artifact_type"] == MT.SIGSTORE_BUNDLE
    assert pd.isna(frame.loc[("shop/app", "v1"), "artifact_type"])
    sig_tag = world.app.digest.replace(":", "-") + ".sig"
    assert pd.isna(inv_frame.loc[("shop/app", sig_tag), "artifact_type"])


def test_only_image_configs_are_downloaded_and_odd_ones_are_no_error(world):
    """63 MB of artifact configs used to be downloaded: only the images' own configs are, the 30 MB image
    config is recorded without a download, and binary or array configs are rows with no platform."""
    stats = world.inv.stats
    assert stats["requests"]["blob"] == len(world.image_configs)
    assert stats["bytes_read"] < 1024 * 1024
    assert stats["unreadable_configs"] == 3
    odd = world.inv.manifests[world.inv.manifests["repository"] == "shop/odd"]
    assert set(odd["platform"].astype(str)) == {"unknown/unknown"}
    assert odd["os"].isna().all()


def test_blob_rows_include_configs(world):
    frame = world.inv.layers.astype(object)
    got = defaultdict(list)
    for r in frame.itertuples(index=False):
        got[(r.repository, r.tag, r.manifest_digest)].append((r.layer_digest, r.size, r.role))
    expected = {key: blobs for key, (_, _, _, blobs) in world.rows.items()}
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in expected.items()}
    kinds = {(r.repository, r.tag, r.manifest_digest): r.kind for r in frame.itertuples(index=False)}
    assert kinds == {key: row[0] for key, row in world.rows.items()}
    assert frame.loc[frame["role"] == "config", "position"].isna().all()


def test_referrers_frame_lists_each_accessory_once(world):
    frame = world.inv.referrers.astype(object)
    got = {}
    for r in frame.itertuples(index=False):
        got[(r.repository, r.digest, r.subject)] = {
            "kind": r.kind,
            "artifact_type": None if pd.isna(r.artifact_type) else r.artifact_type,
            "media_type": r.media_type,
            "tag": None if pd.isna(r.tag) else r.tag,
            "size": r.size,
            "created": None if pd.isna(r.created) else r.created,
            "via": r.via,
        }
    expected = {
        key: {**row, "created": None if row["created"] is None else pd.Timestamp(row["created"])}
        for key, row in world.accessories.items()
    }
    assert got == expected
    assert list(world.inv.referrers["via"].cat.categories) == [
        "api",
        "tag-schema",
        "index-attestation",
        "cosign-tag",
        "subject-field",
    ]


def test_tags_say_what_they_point_at_and_images_count_only_images(world):
    frame = world.inv.tags.astype(object)
    assert {(r.repository, r.tag): r.kind for r in frame.itertuples(index=False)} == world.tags
    images = sum(1 for kind, *_ in world.rows.values() if kind == "image")
    assert world.inv.image_count() == images == 8
    fallback = frame[frame["tag"] == world.app.digest.replace(":", "-")].iloc[0]
    assert fallback["kind"] == "artifact"


def test_storage_counts_every_blob_and_splits_by_kind(world):
    """Configs are blobs too (here a 30 MB one is an artifact's payload); each kind's stored bytes are the
    distinct blobs its manifests reference, computed from what was pushed."""
    by_kind = defaultdict(dict)
    by_repo = defaultdict(dict)
    everything = {}
    for (repo, _tag, _digest), (kind, _s, _p, blobs) in world.rows.items():
        for digest, size, _role in blobs:
            by_kind[kind][digest] = size
            by_repo[repo][digest] = size
            everything[digest] = size
    usage = storage_usage(world.inv.layers, by="kind").set_index("kind")
    assert {k: usage.loc[k, "stored_bytes"] for k in usage.index} == {k: sum(v.values()) for k, v in by_kind.items()}
    owners = defaultdict(set)
    for kind, blobs in by_kind.items():
        for digest in blobs:
            owners[digest].add(kind)
    for kind, blobs in by_kind.items():
        assert usage.loc[kind, "exclusive_bytes"] == sum(s for d, s in blobs.items() if owners[d] == {kind})
    assert usage.attrs["total_bytes"] == sum(everything.values())
    per_repo = storage_usage(world.inv.layers).set_index("repository")
    assert {r: per_repo.loc[r, "stored_bytes"] for r in per_repo.index} == {
        r: sum(v.values()) for r, v in by_repo.items()
    }
    assert per_repo.loc["shop/model", "stored_bytes"] > 30 * 1024 * 1024
    both = storage_usage(world.inv.layers, by=["repository", "kind"])
    row = both[(both["repository"] == "shop/app") & (both["kind"] == "signature")].iloc[0]
    signature_blobs = {
        d: s
        for (repo, _t, _d), (kind, _s, _p, blobs) in world.rows.items()
        if repo == "shop/app" and kind == "signature"
        for d, s, _r in blobs
    }
    assert row["stored_bytes"] == sum(signature_blobs.values())
    with pytest.raises(ValueError, match="by must be"):
        storage_usage(world.inv.layers, by="platform")


def test_reclaimable_counts_an_artifacts_config(world):
    stale = world.inv.manifests[["repository", "tag"]].drop_duplicates().astype(object)
    stale["stale"] = (stale["repository"] == "shop/model").to_numpy()
    model = world.model
    assert reclaimable_bytes(stale, world.inv.layers) == model.config.size + sum(b.size for b in model.layers)


def test_frames_round_trip(world, tmp_path):
    inv = world.inv
    for writer in ("to_csv", "to_parquet"):
        loaded = regframe.Inventory.load(getattr(inv, writer)(tmp_path / writer))
        for name, frame in inv.frames().items():
            pd.testing.assert_frame_equal(getattr(loaded, name), frame, check_categorical=False)
        assert list(loaded.referrers["kind"].cat.categories) == list(inv.referrers["kind"].cat.categories)
        assert len(loaded.referrers) == len(world.accessories)


def test_older_exports_load_without_the_new_frame_and_columns(world, tmp_path):
    out = world.inv.to_csv(tmp_path / "old")
    (out / "referrers.csv").unlink()
    manifests = pd.read_csv(out / "manifests.csv", dtype=str, keep_default_na=False)
    manifests.drop(columns=["kind", "artifact_type", "subject"]).to_csv(out / "manifests.csv", index=False)
    loaded = regframe.Inventory.load(out)
    assert loaded.referrers.empty and list(loaded.referrers.columns) == list(world.inv.referrers.columns)
    assert loaded.manifests["kind"].isna().all()
    assert len(loaded.manifests) == len(world.inv.manifests)


def test_warm_crawl_downloads_nothing_it_has_seen(world, tmp_path):
    """Unreadable configs (binary, array, over the limit) are cached like any other summary, so the second
    crawl is catalog, tag lists, one HEAD per tag and one per index entry (whether an entry is still in its
    repository is not something a cache can know), and gives the same frames."""
    cold = world.client.inventory(progress=False, cache=tmp_path / "cache")
    warm = world.client.inventory(progress=False, cache=tmp_path / "cache")
    rows = cold.manifests.astype({"repository": object, "digest": object, "manifest_digest": object})
    entries = rows.loc[rows["manifest_digest"] != rows["digest"], ["repository", "manifest_digest"]].drop_duplicates()
    assert len(entries) > 0
    assert warm.stats["requests"] == {"catalog": 1, "tags": 6, "manifest_head": len(world.tags) + len(entries)}
    for name in ("tags", "manifests", "layers", "referrers", "errors"):
        pd.testing.assert_frame_equal(getattr(warm, name), getattr(cold, name))
    pd.testing.assert_frame_equal(cold.referrers, world.inv.referrers)


def test_index_entries_without_platform_resolve_by_config(world, tmp_path):
    client, amd2, arm2 = world.client, world.amd2, world.arm2
    assert client.digest("shop/noplat", "multi", platform="linux/amd64") == amd2.digest
    assert client.digest("shop/noplat", "multi", platform="linux/arm64/v8") == arm2.digest
    with pytest.raises(NotFoundError, match="no linux/s390x image"):
        client.digest("shop/noplat", "multi", platform="linux/s390x")
    pulled = client.pull("shop/noplat", "multi", tmp_path / "layout", platform="linux/arm64")
    assert pulled.digest == arm2.digest
    assert (tmp_path / "layout" / "blobs" / "sha256" / arm2.layers[0].digest.split(":")[1]).is_file()
    entry = json.loads((tmp_path / "layout" / "index.json").read_text())["manifests"][0]
    assert entry["digest"] == arm2.digest
    assert entry["platform"]["os"] == "linux" and entry["platform"]["architecture"] == "arm64"


def test_platform_lookups_never_parse_odd_configs(world):
    """A 30 MB, binary or array image config is a RegistryProtocolError; an artifact's config is opaque
    and never read (the artifact is simply not an image of that platform)."""
    client = world.client
    before = client.transport.stats.snapshot()["bytes_read"]
    for tag, message in (
        ("big", "over the 16777216-byte limit"),
        ("binary", "not valid JSON"),
        ("array", "not a JSON object"),
    ):
        with pytest.raises(RegistryProtocolError, match=message):
            client.digest("shop/odd", tag, platform="linux/amd64")
    with pytest.raises(NotFoundError, match="not an image"):
        client.digest("shop/model", "weights", platform="linux/amd64")
    assert client.transport.stats.snapshot()["bytes_read"] - before < 64 * 1024


def test_referrers_true_without_the_api_probes_once(world):
    inv = world.client.inventory(progress=False, referrers=True)
    assert inv.stats["requests"].get("referrers") == 1
    assert inv.stats["referrers_api"] is False
    assert inv.errors.empty
    pd.testing.assert_frame_equal(inv.referrers, world.inv.referrers)


def test_referrers_true_asks_the_api_once_per_image_digest_and_referrer():
    """Through a proxy serving the API from the registry's storage: an untagged referrer that no tag or index
    shows is found only by asking, becomes a row ``via`` api, and its blobs count (rows without a tag)."""
    with local_registry() as reg, regframe.connect(reg.url, docker_config=False) as direct:
        app = build_image([layer("api-app", 1000)], oci=True)
        amd = build_image([layer("api-amd", 900)], oci=True)
        arm = build_image([layer("api-arm", 900)], architecture="arm64", oci=True)
        push_image(direct, "api/app", "v1", app)
        multi = buildx_index([amd, arm], sbom=False)
        push_artifact(direct, "api/app", "v2", multi)
        hidden = sigstore_bundle(app, PREDICATE_SPDX)
        push_artifact(direct, "api/app", hidden.digest, hidden)
        listed = notation_signature(app)
        push_artifact(direct, "api/app", app.digest.replace(":", "-"), referrers_index([listed]))
        with ReferrersProxy(reg.url, storage=reg.storage) as proxy, regframe.connect(proxy.url) as client:
            plain = client.inventory(progress=False)
            asked = client.inventory(progress=False, referrers=True)
    assert hidden.digest not in set(plain.referrers["digest"].astype(str))
    # Image digests: v1's manifest, v2's index and its two platform manifests; then, in turn, the two
    # referrers the API names for v1 (the hidden bundle and the Notation signature).
    assert asked.stats["requests"]["referrers"] == 4 + 2
    assert asked.stats["referrers_api"] is True
    assert asked.errors.empty
    rows = {
        (r.digest, r.subject): (r.kind, r.via, None if pd.isna(r.tag) else r.tag)
        for r in asked.referrers.astype(object).itertuples(index=False)
    }
    assert rows[(hidden.digest, app.digest)] == ("sbom", "api", None)
    assert rows[(listed.digest, app.digest)] == ("signature", "api", None)
    untagged = asked.layers[asked.layers["manifest_digest"] == hidden.digest]
    assert untagged["tag"].isna().all()
    assert sorted(untagged["layer_digest"].astype(str)) == sorted(b.digest for b in (hidden.config, *hidden.layers))
    stale = asked.manifests[["repository", "tag"]].drop_duplicates().astype(object)
    stale["stale"] = False
    assert reclaimable_bytes(stale, asked.layers) == 0


def test_audit_of_a_registry_with_odd_configs_succeeds_and_counts_images_only(world, tmp_path, capsys):
    """A healthy registry with artifacts, binary and array configs is no failure: ``regframe audit`` exits 0,
    and its image count leaves out signatures, SBOMs, attestations and other artifacts."""
    from regframe.cli import main

    assert main(["audit", world.url, "--out", str(tmp_path / "report"), "--no-progress"]) == 0
    summary = (tmp_path / "report" / "summary.txt").read_text()
    assert re.search(r"images \(platforms\) +8\n", summary)


class ServeManifest(Action):
    """Answer GET and HEAD of a manifest with these bytes and their true digest."""

    def __init__(self, body: bytes):
        self.body = body

    def apply(self, ex) -> None:
        digest = "sha256:" + hashlib.sha256(self.body).hexdigest()
        ex.reply(200, self.body, {"Content-Type": MT.OCI_MANIFEST, "Docker-Content-Digest": digest})


def test_a_summary_that_failed_is_cached_too(tmp_path):
    """A manifest whose layer sizes add up past an int64 is an error row in every crawl, and the warm crawl
    does not read it again. Served by the fault proxy: no registry holds blobs that large."""
    image = build_image([layer("cached-failure", 400)], oci=True)
    document = json.loads(image.manifest_raw)
    document["layers"] = [{**document["layers"][0], "size": 2**62}] * 2
    body = json.dumps(document).encode()
    with local_registry() as reg, regframe.connect(reg.url, docker_config=False) as direct:
        push_image(direct, "fail/app", "v1", image)
        with FaultProxy(reg.url) as proxy, regframe.connect(proxy.url, docker_config=False) as client:
            proxy.add_rule(Rule(action=ServeManifest(body), path="^/v2/fail/app/manifests/v1$", method=("GET", "HEAD")))
            cold = client.inventory(progress=False, cache=tmp_path / "cache")
            warm = client.inventory(progress=False, cache=tmp_path / "cache")
    for inv in (cold, warm):
        assert list(inv.errors[["tag", "stage"]].astype(str).itertuples(index=False, name=None)) == [("v1", "manifest")]
        assert "beyond an int64" in inv.errors["error"].iloc[0]
    assert cold.stats["requests"]["manifest"] == 1
    assert warm.stats["requests"] == {"catalog": 1, "tags": 1, "manifest_head": 1}


def test_bad_referrers_option_is_refused_before_any_request():
    with regframe.Registry(f"http://127.0.0.1:{free_port()}", retries=0, docker_config=False) as client:
        with pytest.raises(ValueError, match="referrers must be True or False, not 'yes'"):
            client.inventory(progress=False, referrers="yes")
        assert client.stats["total_requests"] == 0
