"""Classification of manifests as image, signature, attestation, sbom, helm-chart or artifact, and their subject.

Pure logic, no registry: each manifest is written out here as the publishing tool lays it out (cosign's tag
scheme and bundles, BuildKit's attestation manifests, Notation, Helm, ORAS, the referrers tag schema), and the
expected kind is the one the format's documentation gives it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regframe.client import artifacts as A
from regframe.client import mediatypes as MT
from regframe.client.models import Manifest


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


IMAGE = digest_of("the image")
OTHER = digest_of("another image")
FALLBACK = IMAGE.replace(":", "-")
LAYER = {"mediaType": MT.OCI_LAYER, "digest": digest_of("layer"), "size": 1000}
OCI_CONFIG = {"mediaType": MT.OCI_CONFIG, "digest": digest_of("config"), "size": 300}
EMPTY = {"mediaType": MT.OCI_EMPTY, "digest": MT.EMPTY_DIGEST, "size": 2}
SUBJECT = {"mediaType": MT.OCI_MANIFEST, "digest": IMAGE, "size": 500}


def manifest(**fields: Any) -> Manifest:
    document = {"schemaVersion": 2, "mediaType": MT.OCI_MANIFEST, "config": OCI_CONFIG, "layers": [LAYER], **fields}
    return Manifest(document)


def layer(media_type: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    found = {"mediaType": media_type, "digest": digest_of(media_type + json.dumps(annotations)), "size": 200}
    if annotations:
        found["annotations"] = annotations
    return found


def index(entries: list[dict[str, Any]], **fields: Any) -> Manifest:
    return Manifest({"schemaVersion": 2, "mediaType": MT.OCI_INDEX, "manifests": entries, **fields})


def attestation_entry(reference: str = IMAGE, kind: str = MT.REFERENCE_TYPE_ATTESTATION) -> dict[str, Any]:
    return {
        "mediaType": MT.OCI_MANIFEST,
        "digest": digest_of("attestation"),
        "size": 800,
        "annotations": {MT.ANNOTATION_REFERENCE_TYPE: kind, MT.ANNOTATION_REFERENCE_DIGEST: reference},
        "platform": {"architecture": "unknown", "os": "unknown"},
    }


COSIGN_SIG = manifest(layers=[layer(MT.COSIGN_SIMPLESIGNING, {"dev.cosignproject.cosign/signature": "MEUC"})] * 2)
COSIGN_ATT_SLSA = manifest(layers=[layer(MT.DSSE_ENVELOPE, {"predicateType": "https://slsa.dev/provenance/v1"})])
COSIGN_ATT_SPDX = manifest(layers=[layer(MT.DSSE_ENVELOPE, {"predicateType": "https://spdx.dev/Document"})])
COSIGN_ATT_CDX = manifest(layers=[layer(MT.DSSE_ENVELOPE, {"predicateType": "https://cyclonedx.org/bom"})])
COSIGN_SBOM = manifest(layers=[layer(MT.SPDX_TEXT_JSON)])


def bundle(predicate: str | None, media_type: str = MT.SIGSTORE_BUNDLE, subject: str = IMAGE) -> Manifest:
    annotations = {"dev.sigstore.bundle.content": "dsse-envelope", MT.ANNOTATION_CREATED: "2025-01-01T00:00:00Z"}
    if predicate is not None:
        annotations[MT.ANNOTATION_BUNDLE_PREDICATE] = predicate
    return manifest(
        artifactType=media_type,
        config={**EMPTY, "artifactType": media_type},
        layers=[layer(media_type)],
        subject={**SUBJECT, "digest": subject},
        annotations=annotations,
    )


def legacy_buildx(*predicates: str) -> Manifest:
    """BuildKit before v0.32: an image config whose os and architecture are ``unknown``, in-toto layers."""
    config = {"mediaType": MT.OCI_CONFIG, "digest": digest_of("unknown/unknown"), "size": 170}
    return manifest(config=config, layers=[layer(MT.IN_TOTO, {MT.ANNOTATION_IN_TOTO_PREDICATE: p}) for p in predicates])


CASES = [
    # (name, manifest, context, kind, artifact_type, subject)
    ("oci image", manifest(), {}, "image", None, None),
    (
        "docker image",
        Manifest(
            {
                "schemaVersion": 2,
                "mediaType": MT.DOCKER_MANIFEST,
                "config": {**OCI_CONFIG, "mediaType": MT.DOCKER_CONFIG},
                "layers": [{**LAYER, "mediaType": MT.DOCKER_LAYER}],
            }
        ),
        {},
        "image",
        None,
        None,
    ),
    (
        "schema1",
        Manifest({"schemaVersion": 1, "fsLayers": [{"blobSum": LAYER["digest"]}]}, media_type=MT.DOCKER_SCHEMA1),
        {},
        "image",
        None,
        None,
    ),
    ("cosign .sig", COSIGN_SIG, {"tag": FALLBACK + ".sig"}, "signature", None, IMAGE),
    ("cosign .sig under another tag", COSIGN_SIG, {"tag": "signature"}, "signature", None, None),
    (
        "cosign .sig, docker media types",
        Manifest(
            {
                "schemaVersion": 2,
                "mediaType": MT.DOCKER_MANIFEST,
                "config": {**OCI_CONFIG, "mediaType": MT.DOCKER_CONFIG},
                "layers": [layer(MT.COSIGN_SIMPLESIGNING)],
            }
        ),
        {"tag": FALLBACK + ".sig"},
        "signature",
        None,
        IMAGE,
    ),
    ("an image under a cosign-looking tag", manifest(), {"tag": FALLBACK + ".sig"}, "image", None, None),
    ("cosign .att provenance", COSIGN_ATT_SLSA, {"tag": FALLBACK + ".att"}, "attestation", None, IMAGE),
    ("cosign .att spdx", COSIGN_ATT_SPDX, {"tag": FALLBACK + ".att"}, "sbom", None, IMAGE),
    ("cosign .att cyclonedx", COSIGN_ATT_CDX, {"tag": FALLBACK + ".att"}, "sbom", None, IMAGE),
    ("cosign .sbom", COSIGN_SBOM, {"tag": FALLBACK + ".sbom"}, "sbom", None, IMAGE),
    (
        "cosign .sbom cyclonedx with a version parameter",
        manifest(layers=[layer(MT.CYCLONEDX_JSON + ";version=1.5")]),
        {"tag": FALLBACK + ".sbom"},
        "sbom",
        None,
        IMAGE,
    ),
    ("bundle, cosign sign", bundle(MT.PREDICATE_COSIGN_SIGN), {}, "signature", MT.SIGSTORE_BUNDLE, IMAGE),
    ("bundle, spdx", bundle("https://spdx.dev/Document/v2.3"), {}, "sbom", MT.SIGSTORE_BUNDLE, IMAGE),
    ("bundle, provenance", bundle("https://slsa.dev/provenance/v1"), {}, "attestation", MT.SIGSTORE_BUNDLE, IMAGE),
    ("bundle without a predicate", bundle(None), {}, "attestation", MT.SIGSTORE_BUNDLE, IMAGE),
    (
        "older bundle media type",
        bundle(MT.PREDICATE_COSIGN_SIGN, "application/vnd.dev.sigstore.bundle+json;version=0.2"),
        {},
        "signature",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        IMAGE,
    ),
    (
        "cosign oci-1-1 signature",
        manifest(
            artifactType=MT.COSIGN_ARTIFACT_SIG,
            config={**EMPTY, "mediaType": MT.COSIGN_ARTIFACT_SIG},
            layers=[layer(MT.COSIGN_SIMPLESIGNING)],
            subject=SUBJECT,
        ),
        {},
        "signature",
        MT.COSIGN_ARTIFACT_SIG,
        IMAGE,
    ),
    (
        "cosign oci-1-1 sbom",
        manifest(artifactType=MT.COSIGN_ARTIFACT_SBOM, config=EMPTY, layers=[layer(MT.SPDX_JSON)], subject=SUBJECT),
        {},
        "sbom",
        MT.COSIGN_ARTIFACT_SBOM,
        IMAGE,
    ),
    (
        "notation",
        manifest(artifactType=MT.NOTARY_SIGNATURE, config=EMPTY, layers=[layer(MT.NOTARY_JWS)], subject=SUBJECT),
        {},
        "signature",
        MT.NOTARY_SIGNATURE,
        IMAGE,
    ),
    (
        "notation, legacy",
        manifest(config={**EMPTY, "mediaType": MT.NOTARY_SIGNATURE}, layers=[layer(MT.NOTARY_COSE)], subject=SUBJECT),
        {},
        "signature",
        MT.NOTARY_SIGNATURE,
        IMAGE,
    ),
    (
        "helm chart",
        manifest(
            config={**OCI_CONFIG, "mediaType": MT.HELM_CONFIG},
            layers=[layer(MT.HELM_CHART), layer(MT.HELM_PROVENANCE)],
        ),
        {"tag": "1.2.3"},
        "helm-chart",
        MT.HELM_CONFIG,
        None,
    ),
    (
        "helm 4 plugin",
        manifest(artifactType=MT.HELM_PLUGIN, config=EMPTY, layers=[layer(MT.OCI_LAYER)]),
        {},
        "artifact",
        MT.HELM_PLUGIN,
        None,
    ),
    (
        "empty config with an artifact type",
        manifest(artifactType="application/vnd.example.data", config=EMPTY),
        {},
        "artifact",
        "application/vnd.example.data",
        None,
    ),
    ("empty config without an artifact type", manifest(config=EMPTY), {}, "artifact", MT.OCI_EMPTY, None),
    (
        "oras sbom referrer",
        manifest(artifactType=MT.SPDX_JSON, config=EMPTY, layers=[layer(MT.SPDX_JSON)], subject=SUBJECT),
        {},
        "sbom",
        MT.SPDX_JSON,
        IMAGE,
    ),
    (
        "oras default config",
        manifest(config={**OCI_CONFIG, "mediaType": "application/vnd.unknown.config.v1+json"}),
        {},
        "artifact",
        "application/vnd.unknown.config.v1+json",
        None,
    ),
    (
        "wasm",
        manifest(config={**OCI_CONFIG, "mediaType": MT.WASM_CONFIG_V0}, layers=[layer(MT.WASM_LAYER)]),
        {},
        "artifact",
        MT.WASM_CONFIG_V0,
        None,
    ),
    (
        "docker plugin",
        manifest(config={**OCI_CONFIG, "mediaType": MT.DOCKER_PLUGIN_CONFIG}),
        {},
        "artifact",
        MT.DOCKER_PLUGIN_CONFIG,
        None,
    ),
    (
        "an image config and a subject field",
        manifest(subject=SUBJECT),
        {},
        "artifact",
        None,
        IMAGE,
    ),
    (
        "buildx legacy attestation entry, provenance",
        legacy_buildx("https://slsa.dev/provenance/v0.2"),
        {"tag": "v1", "entry": attestation_entry(OTHER)},
        "attestation",
        None,
        OTHER,
    ),
    (
        "buildx legacy attestation entry, sbom and provenance",
        legacy_buildx("https://spdx.dev/Document", "https://slsa.dev/provenance/v0.2"),
        {"tag": "v1", "entry": attestation_entry(OTHER)},
        "sbom",
        None,
        OTHER,
    ),
    (
        "buildx entry whose layers say nothing",
        manifest(),
        {"tag": "v1", "entry": attestation_entry(OTHER)},
        "attestation",
        None,
        OTHER,
    ),
    (
        "buildx oci-artifact attestation: the subject field wins",
        manifest(
            artifactType=MT.BUILDKIT_ATTESTATION,
            config=EMPTY,
            layers=[layer(MT.IN_TOTO, {MT.ANNOTATION_IN_TOTO_PREDICATE: "https://slsa.dev/provenance/v1"})],
            subject=SUBJECT,
        ),
        {"tag": "v1", "entry": attestation_entry(OTHER)},
        "attestation",
        MT.BUILDKIT_ATTESTATION,
        IMAGE,
    ),
    (
        "an entry whose reference type is not an attestation",
        manifest(),
        {"tag": "v1", "entry": attestation_entry(OTHER, kind="something-else")},
        "image",
        None,
        None,
    ),
    (
        "an image-shaped entry of a fallback index",
        manifest(),
        {"tag": FALLBACK, "entry": {"mediaType": MT.OCI_MANIFEST, "digest": OTHER, "size": 3}},
        "artifact",
        None,
        IMAGE,
    ),
    (
        "a fallback entry whose own subject differs",
        bundle(MT.PREDICATE_COSIGN_SIGN, subject=OTHER),
        {"tag": FALLBACK, "entry": {"mediaType": MT.OCI_MANIFEST, "digest": OTHER, "size": 3}},
        "signature",
        MT.SIGSTORE_BUNDLE,
        OTHER,
    ),
    (
        "a referrers-API answer entry",
        manifest(),
        {"entry": {"mediaType": MT.OCI_MANIFEST, "digest": OTHER, "size": 3}, "referrer": True},
        "artifact",
        None,
        None,
    ),
]


@pytest.mark.parametrize(
    "found, context, kind, artifact_type, subject", [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_classification_follows_the_published_formats(found, context, kind, artifact_type, subject):
    assert A.classify(found, **context) == (kind, artifact_type, subject)


@pytest.mark.parametrize("found, context", [(case[1], case[2]) for case in CASES], ids=[case[0] for case in CASES])
def test_skeleton_classifies_the_same_in_every_context(found, context):
    """What a crawl caches by digest is enough to classify the manifest again, wherever it is found."""
    kept = A.skeleton(found)
    assert json.loads(json.dumps(kept)) == kept
    assert A.classify(Manifest(kept), **context) == A.classify(found, **context)


def test_skeleton_leaves_out_what_classification_does_not_read():
    signed = manifest(
        layers=[layer(MT.COSIGN_SIMPLESIGNING, {"dev.cosignproject.cosign/signature": "M" * 5000})],
        annotations={"org.example.big": "x" * 5000, MT.ANNOTATION_CREATED: "2025-01-01T00:00:00Z"},
    )
    kept = A.skeleton(signed)
    assert len(json.dumps(kept)) < 600
    assert kept["annotations"] == {MT.ANNOTATION_CREATED: "2025-01-01T00:00:00Z"}


def test_fallback_index_is_never_an_image():
    entries = [
        {"mediaType": MT.OCI_MANIFEST, "digest": OTHER, "size": 800, "artifactType": MT.SIGSTORE_BUNDLE},
        {"mediaType": MT.OCI_MANIFEST, "digest": digest_of("sbom"), "size": 700, "artifactType": MT.SPDX_JSON},
    ]
    fallback = index(entries)
    assert A.is_referrers_index(fallback, FALLBACK)
    assert A.classify(fallback, tag=FALLBACK).kind == "artifact"
    # The same shape under any tag: every entry has artifactType and none has platform.
    assert A.is_referrers_index(fallback, "whatever")
    assert A.classify(fallback, tag="whatever").kind == "artifact"
    # An empty referrers list is still one under its tag; an empty index elsewhere is not.
    assert A.is_referrers_index(index([]), FALLBACK)
    assert not A.is_referrers_index(index([]), "latest")


def test_image_index_and_artifact_index():
    platform = {"architecture": "amd64", "os": "linux"}
    images = index([{"mediaType": MT.OCI_MANIFEST, "digest": OTHER, "size": 500, "platform": platform}])
    assert not A.is_referrers_index(images, "v1")
    assert A.classify(images, tag="v1") == ("image", None, None)
    with_buildx = index([*images["manifests"], attestation_entry(OTHER)])
    assert A.classify(with_buildx, tag="v1") == ("image", None, None)
    typed = index(images["manifests"], artifactType=MT.SPDX_JSON, subject=SUBJECT)
    assert A.classify(typed, tag="sboms") == ("sbom", MT.SPDX_JSON, IMAGE)
    referring = index(images["manifests"], subject=SUBJECT)
    assert A.classify(referring, tag="x") == ("artifact", None, IMAGE)


def test_subject_and_how_it_was_found():
    entry = {"mediaType": MT.OCI_MANIFEST, "digest": OTHER, "size": 3}
    assert A.subject_of(COSIGN_SIG, FALLBACK + ".sig") == (IMAGE, "cosign-tag")
    assert A.subject_of(manifest(), FALLBACK, entry) == (IMAGE, "tag-schema")
    assert A.subject_of(legacy_buildx(), "v1", attestation_entry(OTHER)) == (OTHER, "index-attestation")
    assert A.subject_of(bundle(MT.PREDICATE_COSIGN_SIGN), "signed") == (IMAGE, "subject-field")
    assert A.subject_of(manifest(), "v1") == (None, None)
    # A malformed digest, in the field or in an annotation, names nothing.
    assert A.subject_of(manifest(subject={"digest": "sha256:nothex"}), "x") == (None, None)
    assert A.subject_of(legacy_buildx(), "v1", attestation_entry("not a digest"))[0] is None


def test_tag_helpers():
    hexpart = IMAGE.split(":")[1]
    assert A.fallback_tag(IMAGE) == FALLBACK
    assert A.fallback_tag_subject(FALLBACK) == IMAGE
    assert A.fallback_tag_subject(FALLBACK + ".sig") is None
    assert A.fallback_tag_subject("sha256-" + hexpart.upper()) is None
    assert A.fallback_tag_subject("sha256-" + hexpart[:-1]) is None
    for suffix in (".sig", ".att", ".sbom"):
        assert A.cosign_tag_subject(FALLBACK + suffix) == IMAGE
    assert A.cosign_tag_subject(FALLBACK) is None
    assert A.cosign_tag_subject(FALLBACK + ".sig2") is None
    assert A.cosign_tag_subject(None) is None


def test_hostile_fields_never_raise():
    odd = Manifest(
        {
            "mediaType": MT.OCI_MANIFEST,
            "artifactType": 7,
            "config": {"mediaType": ["x"]},
            "layers": [None, 5, {"mediaType": None, "annotations": "nope"}],
            "subject": "sha256:abc",
            "annotations": ["not", "a", "dict"],
        }
    )
    assert A.classify(odd, tag=FALLBACK + ".sig", entry={"annotations": 5}) == ("image", None, None)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    ["mediaType", "artifactType", "config", "layers", "manifests", "subject", "annotations", "schemaVersion"]
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(FIELDS, JSON, max_size=8),
    st.one_of(st.none(), st.just(FALLBACK), st.just(FALLBACK + ".att"), st.text(max_size=10)),
    st.one_of(st.none(), st.dictionaries(st.sampled_from(["annotations", "platform", "artifactType"]), JSON)),
)
def test_any_json_gets_a_kind_and_never_raises(document, tag, entry):
    found = A.classify(Manifest(document), tag=tag, entry=entry)
    assert found.kind in A.KINDS
    assert found.subject is None or found.subject.startswith("sha256:")
    assert A.classify(Manifest(A.skeleton(Manifest(document))), tag=tag, entry=entry) == found


def _annotated(config_type: str, layers: list[dict[str, Any]]) -> Manifest:
    body = {
        "schemaVersion": 2,
        "mediaType": MT.OCI_MANIFEST,
        "config": {"mediaType": config_type, "digest": "sha256:" + "4" * 64, "size": 2},
        "layers": layers,
        "annotations": {MT.ANNOTATION_PLACEHOLDER: "old:2f1c"},
    }
    manifest = Manifest(body)
    manifest.media_type = MT.OCI_MANIFEST
    return manifest


def test_only_rmtags_empty_manifest_is_taken_for_its_placeholder():
    """The placeholder's annotation alone is not enough: a manifest holding a layer, or an image config,
    carrying it (copied by a careless tool) stays what it is, so it is never made stale as a leftover."""
    placeholder = _annotated(MT.OCI_EMPTY, [])
    assert A.classify(placeholder).artifact_type == MT.PLACEHOLDER_TYPE
    assert A.classify(Manifest(A.skeleton(placeholder))).artifact_type == MT.PLACEHOLDER_TYPE
    layer = {"mediaType": MT.OCI_LAYER, "digest": "sha256:" + "5" * 64, "size": 10}
    assert A.classify(_annotated(MT.OCI_EMPTY, [layer])).artifact_type != MT.PLACEHOLDER_TYPE
    assert A.classify(_annotated(MT.OCI_CONFIG, [layer])).artifact_type != MT.PLACEHOLDER_TYPE
