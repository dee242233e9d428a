"""Referrers: the OCI 1.1 API, the fallback tag schema and cosign's tags; copy, pull and tag carrying them.

Distribution 2.8 (the registry under test) answers 404 on ``/v2/<name>/referrers/<digest>`` and never sends
``OCI-Subject``, so the fallback paths (tag schema, cosign tags, fallback index maintenance) run against the
plain registry, and the API path runs through ``regframe.testing.referrers_proxy.ReferrersProxy``, which
serves the API from that registry's own content. Expected digests, sizes and types come from the bytes the
tests push themselves.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
import requests

import regframe
from regframe.client import RegistryClient
from regframe.client.errors import InvalidReferenceError, RegistryProtocolError
from regframe.processes import free_port
from regframe.testing import build_image, build_index, layer, local_registry, push_image
from regframe.testing.faultproxy import FaultProxy, Forward, HugeBody, Rule, Status
from regframe.testing.referrers_proxy import ReferrersProxy

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
SPDX = "application/spdx+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
NOTATION = "application/vnd.cncf.notary.signature"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
CREATED = "org.opencontainers.image.created"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compact(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def fallback_tag(digest: str) -> str:
    return digest.replace(":", "-")


def push_oci_image(client: RegistryClient, repo: str, tag: str, seed: str) -> Any:
    image = build_image([layer(seed, 400)], oci=True)
    push_image(client, repo, tag, image)
    return image


def push_oci_index(client: RegistryClient, repo: str, tag: str, seed: str) -> Any:
    amd = build_image([layer(seed + "-amd64", 400)], oci=True)
    arm = build_image([layer(seed + "-arm64", 400)], architecture="arm64", variant="v8", oci=True)
    index = build_index([amd, arm], oci=True)
    push_image(client, repo, tag, index)
    return index


def push_referrer(
    client: RegistryClient,
    repo: str,
    subject: dict[str, Any],
    artifact_type: str,
    payload: bytes,
    *,
    annotations: dict[str, str] | None = None,
    fallback: bool = True,
    tag: str | None = None,
) -> tuple[str, bytes]:
    """An OCI 1.1 artifact (empty config, one layer, ``subject``), as oras and cosign bundles push them."""
    client.upload_blob(repo, b"{}", EMPTY_DIGEST)
    client.upload_blob(repo, payload, sha256(payload))
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": sha256(payload), "size": len(payload)}],
        "subject": subject,
    }
    if annotations:
        manifest["annotations"] = annotations
    raw = compact(manifest)
    digest = client.put_manifest(repo, tag or sha256(raw), raw, OCI_MANIFEST, fallback_index=fallback)
    assert digest == sha256(raw)
    return digest, raw


def subject_of(item: Any) -> dict[str, Any]:
    return {"mediaType": item.media_type, "digest": item.digest, "size": item.manifest_size}


def descriptor(digest: str, raw: bytes) -> dict[str, Any]:
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(raw)}


def push_cosign(client: RegistryClient, repo: str, subject: str, suffix: str) -> tuple[str, bytes]:
    """A cosign tag-scheme accessory as cosign lays it out: an image-config manifest under
    ``sha256-<hex>.sig`` (simple-signing layer) or ``.att`` (DSSE layer), no subject, no artifactType."""
    if suffix == ".sig":
        payload = compact(
            {
                "critical": {
                    "identity": {"docker-reference": repo},
                    "image": {"docker-manifest-digest": subject},
                    "type": "cosign container image signature",
                },
                "optional": None,
            }
        )
        layer_type = SIMPLESIGNING
        annotations = {"dev.cosignproject.cosign/signature": base64.b64encode(b"sig-" + subject.encode()).decode()}
    else:
        payload = compact({"payloadType": "application/vnd.in-toto+json", "payload": "e30=", "signatures": []})
        layer_type = DSSE
        annotations = {"predicateType": "https://slsa.dev/provenance/v1"}
    config = compact(
        {
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [sha256(payload)]},
            "config": {},
        }
    )
    client.upload_blob(repo, payload, sha256(payload))
    client.upload_blob(repo, config, sha256(config))
    raw = compact(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": sha256(config)},
            "layers": [
                {"mediaType": layer_type, "size": len(payload), "digest": sha256(payload), "annotations": annotations}
            ],
        }
    )
    return client.put_manifest(repo, fallback_tag(subject) + suffix, raw, OCI_MANIFEST), raw


def found(referrers: list[dict[str, Any]]) -> set[tuple[str, str | None, int]]:
    return {(r["digest"], r["artifactType"], r["size"]) for r in referrers}


@pytest.fixture(scope="module")
def second_registry():
    """A second registry, for copies between registries."""
    with local_registry() as reg:
        yield reg


@pytest.fixture
def dead_client():
    """A client whose registry does not exist: any request it made would fail with a connection error."""
    with RegistryClient(f"http://127.0.0.1:{free_port()}", retries=0, docker_config=False) as client:
        yield client


# -- the fallback tag schema and cosign tags (plain distribution 2.8, which has no referrers API) ------


def test_referrers_from_the_fallback_tag_on_a_registry_without_the_api(anon, repo_name):
    """Distribution 2.8 has no referrers API: put_manifest(fallback_index=True) keeps the fallback index as
    the spec says, and referrers() reads it back, filtered by artifact type on request."""
    image = push_oci_image(anon, repo_name, "1", repo_name)
    sbom, sbom_raw = push_referrer(
        anon,
        repo_name,
        subject_of(image),
        SPDX,
        b'{"spdxVersion":"SPDX-2.3"}',
        annotations={CREATED: "2024-05-01T00:00:00Z"},
    )
    bundle, bundle_raw = push_referrer(anon, repo_name, subject_of(image), BUNDLE, b'{"bundle":1}')

    assert anon.supports_referrers(repo_name, image.digest) is False
    got = anon.referrers(repo_name, image.digest)
    assert found(got) == {(sbom, SPDX, len(sbom_raw)), (bundle, BUNDLE, len(bundle_raw))}
    assert {r["via"] for r in got} == {"tag-schema"}
    assert {r["digest"]: r["annotations"] for r in got} == {sbom: {CREATED: "2024-05-01T00:00:00Z"}, bundle: {}}
    assert {r["digest"]: r["kind"] for r in got} == {sbom: "sbom", bundle: "attestation"}
    assert [r["digest"] for r in anon.referrers(repo_name, image.digest, artifact_type=SPDX)] == [sbom]

    index = anon.manifest(repo_name, fallback_tag(image.digest))
    assert index.media_type == OCI_INDEX
    assert index["manifests"] == [
        {**descriptor(sbom, sbom_raw), "artifactType": SPDX, "annotations": {CREATED: "2024-05-01T00:00:00Z"}},
        {**descriptor(bundle, bundle_raw), "artifactType": BUNDLE},
    ]


def test_fallback_index_is_kept_as_the_spec_says(anon, repo_name):
    """Pushing the same referrer twice lists it once; without fallback_index nothing is written; a fallback
    tag holding something other than an index is refused, naming it, and left as it was."""
    image = push_oci_image(anon, repo_name, "1", repo_name)
    plain, _ = push_referrer(anon, repo_name, subject_of(image), SPDX, b"plain", fallback=False)
    assert fallback_tag(image.digest) not in anon.tags(repo_name)["tags"]
    assert anon.referrers(repo_name, image.digest) == []

    listed, _ = push_referrer(anon, repo_name, subject_of(image), BUNDLE, b"listed")
    push_referrer(anon, repo_name, subject_of(image), BUNDLE, b"listed")
    index = anon.manifest(repo_name, fallback_tag(image.digest))
    assert [entry["digest"] for entry in index["manifests"]] == [listed]

    other = push_oci_image(anon, repo_name, "2", repo_name + "-other")
    occupant = push_oci_image(anon, repo_name, fallback_tag(other.digest), repo_name + "-occupant")
    with pytest.raises(RegistryProtocolError, match=f"{fallback_tag(other.digest)} holds a .*not an OCI image index"):
        push_referrer(anon, repo_name, subject_of(other), SPDX, b"refused")
    assert anon.digest(repo_name, fallback_tag(other.digest)) == occupant.digest
    assert plain != listed


def test_fallback_entries_are_confirmed_by_their_subject(anon, repo_name):
    """An entry whose manifest is gone (dangling) or names another subject is dropped; an entry written
    without annotations (go-containerregistry before v0.22.1) is described from its manifest."""
    image = push_oci_image(anon, repo_name, "1", repo_name)
    other = push_oci_image(anon, repo_name, "2", repo_name + "-other")
    kept, kept_raw = push_referrer(
        anon,
        repo_name,
        subject_of(image),
        BUNDLE,
        b"kept",
        annotations={CREATED: "2024-02-02T00:00:00Z"},
        fallback=False,
    )
    stranger, stranger_raw = push_referrer(anon, repo_name, subject_of(other), SPDX, b"stranger", fallback=False)
    gone, gone_raw = push_referrer(anon, repo_name, subject_of(image), SPDX, b"gone", fallback=False)
    index = compact(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {**descriptor(kept, kept_raw), "artifactType": BUNDLE},
                {**descriptor(stranger, stranger_raw), "artifactType": SPDX},
                {**descriptor(gone, gone_raw), "artifactType": SPDX},
            ],
        }
    )
    anon.put_manifest(repo_name, fallback_tag(image.digest), index, OCI_INDEX)
    assert anon.delete_manifest(repo_name, gone)

    got = anon.referrers(repo_name, image.digest)
    assert found(got) == {(kept, BUNDLE, len(kept_raw))}
    assert got[0]["annotations"] == {CREATED: "2024-02-02T00:00:00Z"}


def test_cosign_tags_are_listed_with_their_kind(anon, repo_name):
    """cosign's tag scheme: ``sha256-<hex>.sig`` and ``.att`` manifests have no subject field and an image
    config; they are found by tag and told apart by their layers."""
    image = push_oci_image(anon, repo_name, "1", repo_name)
    assert anon.referrers(repo_name, image.digest) == []
    sig, sig_raw = push_cosign(anon, repo_name, image.digest, ".sig")
    att, att_raw = push_cosign(anon, repo_name, image.digest, ".att")

    got = {r["digest"]: r for r in anon.referrers(repo_name, image.digest)}
    assert set(got) == {sig, att}
    assert got[sig]["tag"] == fallback_tag(image.digest) + ".sig"
    assert got[att]["tag"] == fallback_tag(image.digest) + ".att"
    assert (got[sig]["kind"], got[att]["kind"]) == ("signature", "attestation")
    assert (got[sig]["size"], got[att]["size"]) == (len(sig_raw), len(att_raw))
    assert {r["via"] for r in got.values()} == {"cosign-tag"}


# -- the referrers API (served by ReferrersProxy in front of the real registry) -------------------------


def test_api_pages_are_followed_and_no_fallback_tag_is_written(registry_url, repo_name):
    """Through a proxy serving the API two per page: five referrers come back in three pages, each pushed
    with OCI-Subject answered, so the client writes no fallback tag."""
    with ReferrersProxy(registry_url, page_size=2) as proxy, regframe.connect(proxy.url) as client:
        image = push_oci_image(client, repo_name, "1", repo_name)
        pushed = {
            push_referrer(client, repo_name, subject_of(image), kind, f"payload-{n}".encode())
            for n, kind in enumerate([SPDX, BUNDLE, SPDX, NOTATION, BUNDLE])
        }
        expected = {(digest, json.loads(raw)["artifactType"], len(raw)) for digest, raw in pushed}

        assert client.supports_referrers(repo_name, image.digest) is True
        served = proxy.pages_served
        got = client.referrers(repo_name, image.digest)
        assert proxy.pages_served - served == 3
        assert found(got) == expected
        assert {r["via"] for r in got} == {"api"}
        assert fallback_tag(image.digest) not in client.tags(repo_name)["tags"]


@pytest.mark.parametrize("filters", [True, False], ids=["filtered-by-registry", "filter-ignored"])
def test_api_artifact_type_filter(registry_url, repo_name, filters):
    """artifact_type= gives only that type, whether the registry filtered (OCI-Filters-Applied) or ignored
    the filter and answered everything (then regframe filters)."""
    with ReferrersProxy(registry_url, filters=filters) as proxy, regframe.connect(proxy.url) as client:
        image = push_oci_image(client, repo_name, "1", repo_name)
        sbom, sbom_raw = push_referrer(client, repo_name, subject_of(image), SPDX, b"sbom")
        push_referrer(client, repo_name, subject_of(image), BUNDLE, b"bundle-1")
        push_referrer(client, repo_name, subject_of(image), BUNDLE, b"bundle-2")

        raw = requests.get(
            f"{proxy.url}/v2/{repo_name}/referrers/{image.digest}", params={"artifactType": SPDX}, timeout=10
        )
        assert ("OCI-Filters-Applied" in raw.headers) is filters
        assert len(raw.json()["manifests"]) == (1 if filters else 3)

        assert found(client.referrers(repo_name, image.digest, artifact_type=SPDX)) == {(sbom, SPDX, len(sbom_raw))}


def test_probe_is_made_once_per_repository(registry_url, repo_name):
    """Against plain distribution 2.8 (404 on the API), counted through a fault proxy that forwards: the
    API is asked once per client and repository, then only the fallback tags are read."""
    with FaultProxy(registry_url) as proxy, regframe.connect(proxy.url) as client:
        probes = proxy.add_rule(Rule(path=r"/referrers/", action=Forward()))
        image = push_oci_image(client, repo_name, "1", repo_name)
        client.referrers(repo_name, image.digest)
        client.referrers(repo_name, image.digest)
        assert client.supports_referrers(repo_name, image.digest) is False
        assert next(s for s in proxy.stats.rules if s.rule is probes).matched == 1
        push_oci_image(client, repo_name + "-b", "1", repo_name)
        client.referrers(repo_name + "-b", image.digest)
        assert next(s for s in proxy.stats.rules if s.rule is probes).matched == 2


def test_a_200_that_is_not_an_index_means_no_api(anon, registry_url, repo_name):
    """The probing rule: a 200 answer with another content type is no API; the fallback tag is read."""
    image = push_oci_image(anon, repo_name, "1", repo_name)
    sbom, sbom_raw = push_referrer(anon, repo_name, subject_of(image), SPDX, b"sbom")
    with ReferrersProxy(registry_url, content_type="application/json") as proxy, regframe.connect(proxy.url) as client:
        got = client.referrers(repo_name, image.digest)
        assert client.supports_referrers(repo_name, image.digest) is False
    assert found(got) == {(sbom, SPDX, len(sbom_raw))}
    assert got[0]["via"] == "tag-schema"


@pytest.mark.parametrize(
    "action, message",
    [
        (
            Status(
                200,
                {"manifests": [{"mediaType": OCI_MANIFEST, "digest": "sha256:abc", "size": 3}]},
                {"Content-Type": OCI_INDEX},
            ),
            "entry digest",
        ),
        (Status(200, {"manifests": {"not": "a list"}}, {"Content-Type": OCI_INDEX}), "not a list"),
        (
            Status(
                200,
                {"manifests": []},
                {"Content-Type": OCI_INDEX, "Link": '<http://elsewhere.example/v2/x/referrers/y>; rel="next"'},
            ),
            "another host",
        ),
        (HugeBody(200, 64 * 1024 * 1024 + 1, headers={"Content-Type": OCI_INDEX}), "over the"),
    ],
    ids=["bad-digest", "manifests-not-a-list", "foreign-link", "huge-body"],
)
def test_hostile_api_answers_are_refused(registry_url, repo_name, action, message):
    """Answers a real registry cannot be made to give, injected by the fault proxy: a malformed digest, a
    broken index, a next page on another host, a body past the JSON limit (read no further than it)."""
    with FaultProxy(registry_url) as proxy, regframe.connect(proxy.url) as client:
        image = push_oci_image(client, repo_name, "1", repo_name)
        proxy.add_rule(Rule(path=r"/referrers/", action=action))
        with pytest.raises(RegistryProtocolError, match=message):
            client.referrers(repo_name, image.digest)


def test_oras_pushed_referrer_found_through_the_api(registry_url, repo_name, tmp_path):
    """oras-py (a real third-party client) pushes an artifact with a subject and no artifactType; the
    API lists it with its config media type as artifactType, as the spec's rule says."""
    oras_provider = pytest.importorskip("oras.provider")
    oras_oci = pytest.importorskip("oras.oci")
    with ReferrersProxy(registry_url) as proxy, regframe.connect(proxy.url) as client:
        image = push_oci_image(client, repo_name, "1", repo_name)
        host = proxy.url.split("://", 1)[1]
        sbom_file, config_file = tmp_path / "sbom.spdx.json", tmp_path / "config.json"
        sbom_file.write_text('{"spdxVersion": "SPDX-2.3"}')
        config_file.write_text("{}")
        answer = oras_provider.Registry(hostname=host, insecure=True).push(
            target=f"{host}/{repo_name}:sbom",
            files=[f"{sbom_file}:{SPDX}"],
            manifest_config=f"{config_file}:{SPDX}",
            subject=oras_oci.Subject(mediaType=OCI_MANIFEST, digest=image.digest, size=image.manifest_size),
            disable_path_validation=True,
            quiet=True,
        )
        pushed = answer.headers["Docker-Content-Digest"]
        raw = client.manifest(repo_name, pushed).raw
        got = client.referrers(repo_name, image.digest)
    assert found(got) == {(pushed, SPDX, len(raw))}
    assert got[0]["kind"] == "sbom"


def test_proxy_lists_untagged_referrers_from_storage(repo_name):
    """The harness proxy itself: a referrer pushed straight to the registry, untagged and not in any
    fallback index, is served only when the proxy reads the registry's storage."""
    with local_registry() as reg, regframe.connect(reg.url) as direct:
        image = push_oci_image(direct, repo_name, "1", repo_name)
        hidden, raw = push_referrer(direct, repo_name, subject_of(image), SPDX, b"hidden", fallback=False)
        with ReferrersProxy(reg.url) as blind, regframe.connect(blind.url) as client:
            assert client.referrers(repo_name, image.digest) == []
        with ReferrersProxy(reg.url, storage=reg.storage) as seeing, regframe.connect(seeing.url) as client:
            assert found(client.referrers(repo_name, image.digest)) == {(hidden, SPDX, len(raw))}


# -- copy, pull and tag with accessories --------------------------------------------------------------


def seed_accessories(client: RegistryClient, repo: str) -> dict[str, Any]:
    """A multi-platform image with an SBOM on the index, a signature bundle on one child, a cosign
    signature on the index and a Notation signature on the SBOM (an accessory of an accessory)."""
    index = push_oci_index(client, repo, "1", repo)
    amd64 = index.children[0]
    sbom, sbom_raw = push_referrer(
        client, repo, subject_of(index), SPDX, b"sbom-of-index", annotations={CREATED: "2024-03-03T00:00:00Z"}
    )
    bundle, bundle_raw = push_referrer(client, repo, subject_of(amd64), BUNDLE, b"bundle-of-amd64")
    cosign, cosign_raw = push_cosign(client, repo, index.digest, ".sig")
    notation, notation_raw = push_referrer(client, repo, descriptor(sbom, sbom_raw), NOTATION, b"notation-of-sbom")
    return {
        "index": index,
        "cosign": cosign,
        "expected": {
            index.digest: {(sbom, SPDX, len(sbom_raw)), (cosign, OCI_CONFIG, len(cosign_raw))},
            amd64.digest: {(bundle, BUNDLE, len(bundle_raw))},
            index.children[1].digest: set(),
            sbom: {(notation, NOTATION, len(notation_raw))},
        },
    }


def test_copy_carries_accessories_to_a_registry_without_the_api(anon, repo_name, second_registry):
    """After copy() to another plain 2.8 registry, referrers() there equals the source's for the index, each
    child and the SBOM; the destination's fallback index is kept; copy(referrers=False) carries none."""
    seeded = seed_accessories(anon, repo_name)
    index = seeded["index"]
    with regframe.connect(second_registry.url) as dest:
        assert anon.copy(repo_name, "1", dest, "copied/" + repo_name, "1") == index.digest
        for subject, expected in seeded["expected"].items():
            assert found(anon.referrers(repo_name, subject)) == expected
            assert found(dest.referrers("copied/" + repo_name, subject)) == expected
        tags = set(dest.tags("copied/" + repo_name)["tags"])
        assert {fallback_tag(index.digest), fallback_tag(index.digest) + ".sig"} <= tags

        anon.copy(repo_name, "1", dest, "bare/" + repo_name, "1", referrers=False)
        for subject in seeded["expected"]:
            assert dest.referrers("bare/" + repo_name, subject) == []


def test_copy_into_a_registry_with_the_api(anon, repo_name, second_registry):
    """Copy from plain 2.8 (fallback tags) to a destination serving the API (ReferrersProxy): the referrers
    are equal there, listed by the API, and no fallback tag is written since it answers OCI-Subject."""
    seeded = seed_accessories(anon, repo_name)
    index = seeded["index"]
    target = "api/" + repo_name
    with ReferrersProxy(second_registry.url) as proxy, regframe.connect(proxy.url) as dest:
        anon.copy(repo_name, "1", dest, target, "1")
        for subject, expected in seeded["expected"].items():
            assert found(dest.referrers(target, subject)) == expected
        assert dest.supports_referrers(target, index.digest) is True
        assert set(dest.tags(target)["tags"]) == {"1", fallback_tag(index.digest) + ".sig"}


def test_pull_with_referrers_writes_them_into_the_layout(anon, repo_name, tmp_path):
    """pull(referrers=True) writes every accessory (blobs, then manifest) and lists it in index.json, the
    cosign one under its tag name; a plain pull lists only the image."""
    seeded = seed_accessories(anon, repo_name)
    index = seeded["index"]
    accessories = {digest for expected in seeded["expected"].values() for digest, _, _ in expected}

    anon.pull(repo_name, "1", tmp_path / "plain")
    plain = json.loads((tmp_path / "plain" / "index.json").read_text())
    assert [entry["digest"] for entry in plain["manifests"]] == [index.digest]

    anon.pull(repo_name, "1", tmp_path / "full", referrers=True)
    listed = json.loads((tmp_path / "full" / "index.json").read_text())["manifests"]
    assert {entry["digest"] for entry in listed} == {index.digest} | accessories
    names = {entry["digest"]: entry.get("annotations", {}).get("org.opencontainers.image.ref.name") for entry in listed}
    assert names[index.digest] == "1"
    assert names[seeded["cosign"]] == fallback_tag(index.digest) + ".sig"
    assert all(names[digest] is None for digest in accessories - {seeded["cosign"]})
    for digest in accessories:
        manifest = json.loads((tmp_path / "full" / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())
        for blob in [manifest["config"], *manifest["layers"]]:
            data = (tmp_path / "full" / "blobs" / "sha256" / blob["digest"].split(":")[1]).read_bytes()
            assert sha256(data) == blob["digest"]


def test_tag_across_repositories_carries_accessories_when_asked(anon, repo_name):
    """tag(referrers=True) into another repository brings the accessories (mounted, no re-upload); the
    default tag() brings only the image."""
    seeded = seed_accessories(anon, repo_name)
    anon.tag(repo_name, "1", repo_name + "-plain", "1")
    anon.tag(repo_name, "1", repo_name + "-full", "1", referrers=True)
    for subject, expected in seeded["expected"].items():
        assert anon.referrers(repo_name + "-plain", subject) == []
        assert found(anon.referrers(repo_name + "-full", subject)) == expected


# -- bad input ------------------------------------------------------------------------------------------


DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda c: c.referrers("Bad_Name", DIGEST), "upper-case"),
        (lambda c: c.referrers("app", "latest"), "algorithm:hex"),
        (lambda c: c.referrers("app", "sha256:abc"), "64 lower-case hex"),
        (lambda c: c.referrers("app", DIGEST, artifact_type=""), "not a media type"),
        (lambda c: c.referrers("app", DIGEST, artifact_type=7), "media type string"),
        (lambda c: c.referrers("app", DIGEST, artifact_type="application/x\r\nX-Injected: 1"), "not a media type"),
        (lambda c: c.supports_referrers("app", "sha512:00"), "128 lower-case hex"),
        (lambda c: c.copy("app", "1", c, "other", "1", referrers="yes"), "referrers must be True or False"),
        (lambda c: c.pull("app", "1", "/nonexistent-dir", referrers=1), "referrers must be True or False"),
        (lambda c: c.tag("app", "1", "other", "1", referrers=None), "referrers must be True or False"),
        (lambda c: c.put_manifest("app", "1", b"{}", OCI_MANIFEST, fallback_index="no"), "fallback_index must be"),
    ],
    ids=[
        "bad-repository",
        "tag-not-digest",
        "short-digest",
        "empty-artifact-type",
        "artifact-type-not-str",
        "artifact-type-injection",
        "probe-bad-digest",
        "copy-flag",
        "pull-flag",
        "tag-flag",
        "put-manifest-flag",
    ],
)
def test_bad_input_is_refused_before_any_request(dead_client, call, message):
    """Each mistake raises ValueError naming it, and the client sent nothing (its registry does not exist)."""
    with pytest.raises(ValueError, match=message):
        call(dead_client)
    assert dead_client.stats["total_requests"] == 0


def test_bad_digest_is_an_invalid_reference(dead_client):
    with pytest.raises(InvalidReferenceError):
        dead_client.referrers("app", "sha256:" + "G" * 64)
