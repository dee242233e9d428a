"""Signatures, attestations, SBOMs, Helm charts and other OCI artifacts, built as the tools that publish them do.

Each builder follows one published layout (cosign's tag scheme and bundles, BuildKit's attestation manifests,
Notation signatures, Helm charts, the referrers tag schema), byte for byte where the format fixes the bytes
and deterministically everywhere else, so a test knows every digest and size before pushing. ``kind`` on each
result is what the format means (a cosign ``.sig`` is a signature), as a test's expectation.

``push_artifact`` puts any of them (and images) into a registry with the regframe client; ``oras_push`` uses
oras-py, a third-party client (the test extra), to push an artifact as ORAS does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from regframe.client import mediatypes as mt
from regframe.client.artifacts import fallback_tag
from regframe.client.reference import sha256_digest

from .images import Image, ImageIndex, _Manifest, distinct
from .layers import Blob, layer
from .seeding import PushTarget

__all__ = [
    "PREDICATE_CYCLONEDX",
    "PREDICATE_SIGN",
    "PREDICATE_SLSA",
    "PREDICATE_SPDX",
    "Artifact",
    "ArtifactIndex",
    "artifact",
    "buildx_index",
    "cosign_attestation",
    "cosign_sbom",
    "cosign_signature",
    "empty_config",
    "helm_chart",
    "image_with_config",
    "index_without_platforms",
    "notation_signature",
    "oras_push",
    "push_artifact",
    "referrers_index",
    "sigstore_bundle",
]

PREDICATE_SIGN = mt.PREDICATE_COSIGN_SIGN
PREDICATE_SPDX = "https://spdx.dev/Document"
PREDICATE_CYCLONEDX = "https://cyclonedx.org/bom"
PREDICATE_SLSA = "https://slsa.dev/provenance/v0.2"
# cosign's tag-scheme manifests carry go-containerregistry's zero time.
COSIGN_ZERO_TIME = "0001-01-01T00:00:00Z"
DEFAULT_CREATED = "2024-01-02T03:04:05Z"


def _compact(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _fake_signature(seed: str) -> str:
    """Signature-shaped bytes (an ECDSA P-256 DER signature is about 70 bytes): nothing here verifies them."""
    return _b64(hashlib.sha512(seed.encode()).digest()[:70])


def _descriptor(item: Subject) -> dict[str, Any]:
    return {"mediaType": item.media_type, "digest": item.digest, "size": item.manifest_size}


def empty_config() -> Blob:
    """The empty descriptor's blob ``{}`` (image spec 1.1), the placeholder config of artifacts."""
    return Blob.of(mt.EMPTY_JSON, mt.OCI_EMPTY)


@dataclass(frozen=True, eq=False)
class Artifact(_Manifest):
    """One manifest that is not a plain image: an accessory (with a subject) or a standalone artifact."""

    manifest_raw: bytes = field(repr=False)
    media_type: str
    digest: str
    config: Blob
    layers: tuple[Blob, ...] = field(repr=False)
    kind: str
    artifact_type: str | None = None
    subject: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def children(self) -> tuple[Image | Artifact, ...]:
        return ()

    @property
    def size(self) -> int:
        """The manifest plus every blob it references, each reference counted (as ``inv.referrers`` sizes)."""
        return self.manifest_size + self.config.size + sum(blob.size for blob in self.layers)

    def blobs(self) -> list[Blob]:
        return distinct([self.config, *self.layers])

    def manifests(self) -> list[Artifact]:
        return [self]

    def entry(self, *, annotations: bool = True) -> dict[str, Any]:
        """This manifest as an entry of a referrers index: ``artifactType`` and (unless left out, as
        go-containerregistry did before v0.22.1) its annotations."""
        entry = _descriptor(self)
        if self.artifact_type:
            entry["artifactType"] = self.artifact_type
        if annotations and self.annotations:
            entry["annotations"] = dict(self.annotations)
        return entry


@dataclass(frozen=True, eq=False)
class ArtifactIndex(_Manifest):
    """An index whose entries are images and artifacts: BuildKit's image index with attestation manifests,
    or a referrers list (the fallback tag's index)."""

    manifest_raw: bytes = field(repr=False)
    media_type: str
    digest: str
    children: tuple[Image | Artifact, ...]
    entries: tuple[Mapping[str, Any], ...] = field(repr=False)

    @property
    def images(self) -> tuple[Image, ...]:
        return tuple(child for child in self.children if isinstance(child, Image))

    @property
    def artifacts(self) -> tuple[Artifact, ...]:
        return tuple(child for child in self.children if isinstance(child, Artifact))

    def blobs(self) -> list[Blob]:
        return distinct(blob for child in self.children for blob in child.blobs())

    def manifests(self) -> list[Image | Artifact | ArtifactIndex]:
        return [*distinct(self.children), self]


Subject = Image | ImageIndex | Artifact | ArtifactIndex


def artifact(
    *,
    kind: str = "artifact",
    artifact_type: str | None = None,
    config: Blob | None = None,
    layers: Sequence[Blob] = (),
    subject: Subject | None = None,
    annotations: Mapping[str, str] | None = None,
    config_artifact_type: bool = False,
    media_type: str = mt.OCI_MANIFEST,
) -> Artifact:
    """An OCI manifest in the image spec's field order: ``artifactType``, config (the empty descriptor by
    default), layers, ``subject``, annotations. ``config_artifact_type`` also sets ``artifactType`` on the
    config descriptor, as cosign's bundles do."""
    config = config if config is not None else empty_config()
    config_descriptor = config.descriptor()
    if config_artifact_type and artifact_type:
        config_descriptor["artifactType"] = artifact_type
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type:
        document["artifactType"] = artifact_type
    document["config"] = config_descriptor
    document["layers"] = [blob.descriptor() for blob in layers]
    if subject is not None:
        document["subject"] = _descriptor(subject)
    if annotations:
        document["annotations"] = dict(annotations)
    raw = _compact(document)
    return Artifact(
        manifest_raw=raw,
        media_type=media_type,
        digest=sha256_digest(raw),
        config=config,
        layers=tuple(layers),
        kind=kind,
        artifact_type=artifact_type,
        subject=None if subject is None else subject.digest,
        annotations=MappingProxyType(dict(annotations or {})),
    )


@dataclass(frozen=True)
class _Annotated(Blob):
    """A layer blob with descriptor annotations (cosign's signatures, predicate types)."""

    layer_annotations: Mapping[str, str] = field(default_factory=dict)

    def descriptor(self) -> dict[str, Any]:
        descriptor = super().descriptor()
        if self.layer_annotations:
            descriptor["annotations"] = dict(self.layer_annotations)
        return descriptor


def _annotated(data: bytes, media_type: str, annotations: Mapping[str, str]) -> Blob:
    return _Annotated(sha256_digest(data), data, media_type, MappingProxyType(dict(annotations)))


# -- cosign, tag scheme -----------------------------------------------------------------------------------


def _cosign_tag(subject: Subject, suffix: str) -> str:
    return fallback_tag(subject.digest) + suffix


def _cosign_manifest(layers: Sequence[Blob], kind: str, docker: bool) -> Artifact:
    """go-containerregistry's empty image plus ``layers``: an image config with empty platform, the zero
    time, one history entry per layer; no ``subject``, no ``artifactType``."""
    config = {
        "architecture": "",
        "created": COSIGN_ZERO_TIME,
        "history": [{"created": COSIGN_ZERO_TIME} for _ in layers],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [blob.digest for blob in layers]},
        "config": {},
    }
    config_type, manifest_type = (mt.DOCKER_CONFIG, mt.DOCKER_MANIFEST) if docker else (mt.OCI_CONFIG, mt.OCI_MANIFEST)
    return artifact(kind=kind, config=Blob.of(_compact(config), config_type), layers=layers, media_type=manifest_type)


def cosign_signature(
    subject: Subject, *, repository: str = "example/app", signatures: int = 1, docker: bool = False
) -> tuple[str, Artifact]:
    """``cosign sign`` in the tag scheme: ``(tag, manifest)`` for ``sha256-<hex>.sig``, one simple-signing
    layer per signature (each with its own ``optional`` annotation, as ``cosign sign -a`` writes)."""
    layers = []
    for number in range(signatures):
        payload = {
            "critical": {
                "identity": {"docker-reference": repository},
                "image": {"docker-manifest-digest": subject.digest},
                "type": "cosign container image signature",
            },
            "optional": {"signer": f"signer-{number}"},
        }
        annotations = {"dev.cosignproject.cosign/signature": _fake_signature(f"{subject.digest}/{number}")}
        layers.append(_annotated(_compact(payload), mt.COSIGN_SIMPLESIGNING, annotations))
    return _cosign_tag(subject, ".sig"), _cosign_manifest(layers, "signature", docker)


def _statement(subject: Subject, predicate_type: str, predicate: Mapping[str, Any]) -> bytes:
    return _compact(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": predicate_type,
            "subject": [{"name": "example/app", "digest": {"sha256": subject.digest.split(":", 1)[1]}}],
            "predicate": dict(predicate),
        }
    )


def _kind_of_predicate(predicate_type: str) -> str:
    if predicate_type == PREDICATE_SIGN:
        return "signature"
    if predicate_type.startswith((PREDICATE_SPDX, PREDICATE_CYCLONEDX)):
        return "sbom"
    return "attestation"


def cosign_attestation(
    subject: Subject, predicate_type: str = PREDICATE_SLSA, *, docker: bool = False
) -> tuple[str, Artifact]:
    """``cosign attest`` in the tag scheme: ``sha256-<hex>.att``, a DSSE envelope layer whose ``predicateType``
    annotation names the predicate (an SPDX or CycloneDX predicate makes it an SBOM)."""
    statement = _statement(subject, predicate_type, {"builder": {"id": "https://example.com/builder"}})
    envelope = {
        "payloadType": mt.IN_TOTO,
        "payload": _b64(statement),
        "signatures": [{"keyid": "", "sig": _fake_signature(statement.decode())}],
    }
    blob = _annotated(_compact(envelope), mt.DSSE_ENVELOPE, {"predicateType": predicate_type})
    return _cosign_tag(subject, ".att"), _cosign_manifest([blob], _kind_of_predicate(predicate_type), docker)


def _spdx_document(subject: Subject) -> bytes:
    return _compact(
        {
            "spdxVersion": "SPDX-2.3",
            "dataLicense": "CC0-1.0",
            "SPDXID": "SPDXRef-DOCUMENT",
            "name": subject.digest,
            "packages": [{"name": "busybox", "SPDXID": "SPDXRef-Package-busybox", "versionInfo": "1.36.1"}],
        }
    )


def cosign_sbom(subject: Subject, media_type: str = mt.SPDX_TEXT_JSON) -> tuple[str, Artifact]:
    """``cosign attach sbom``: ``sha256-<hex>.sbom``, the SBOM itself as the layer, typed as cosign types it."""
    return _cosign_tag(subject, ".sbom"), _cosign_manifest(
        [Blob.of(_spdx_document(subject), media_type)], "sbom", False
    )


# -- referrers (OCI 1.1) -------------------------------------------------------------------------------------


def sigstore_bundle(
    subject: Subject, predicate_type: str = PREDICATE_SIGN, *, created: str = DEFAULT_CREATED
) -> Artifact:
    """cosign's bundle format (``cosign sign``/``attest`` from v3, GitHub's actions/attest): a referrer with
    ``artifactType`` the bundle type, the empty config (carrying ``artifactType`` too), the bundle as the
    one layer, and the predicate type in the manifest's annotations."""
    statement = _statement(subject, predicate_type, {})
    bundle = {
        "mediaType": mt.SIGSTORE_BUNDLE,
        "verificationMaterial": {"publicKey": {"hint": "example"}},
        "dsseEnvelope": {
            "payload": _b64(statement),
            "payloadType": mt.IN_TOTO,
            "signatures": [{"sig": _fake_signature(statement.decode())}],
        },
    }
    annotations = {
        mt.ANNOTATION_CREATED: created,
        "dev.sigstore.bundle.content": "dsse-envelope",
        mt.ANNOTATION_BUNDLE_PREDICATE: predicate_type,
    }
    return artifact(
        kind=_kind_of_predicate(predicate_type),
        artifact_type=mt.SIGSTORE_BUNDLE,
        layers=[Blob.of(_compact(bundle), mt.SIGSTORE_BUNDLE)],
        subject=subject,
        annotations=annotations,
        config_artifact_type=True,
    )


def notation_signature(
    subject: Subject, *, legacy: bool = False, envelope: str = mt.NOTARY_JWS, created: str = DEFAULT_CREATED
) -> Artifact:
    """``notation sign``: one envelope layer (JWS or COSE), the certificate thumbprints annotation and
    ``subject``; ``artifactType`` the Notary type with the empty config, or (``legacy``, Notary spec 1.1.0
    and earlier) no ``artifactType`` and the Notary type as the config media type."""
    payload = _compact({"targetArtifact": _descriptor(subject)})
    signed = _compact({"payload": _b64(payload), "protected": _b64(b'{"alg":"PS256"}'), "signature": "c2ln"})
    annotations = {
        "io.cncf.notary.x509chain.thumbprint#S256": json.dumps([hashlib.sha256(b"leaf").hexdigest()]),
        mt.ANNOTATION_CREATED: created,
    }
    if legacy:
        return artifact(
            kind="signature",
            config=Blob.of(mt.EMPTY_JSON, mt.NOTARY_SIGNATURE),
            layers=[Blob.of(signed, envelope)],
            subject=subject,
            annotations=annotations,
        )
    return artifact(
        kind="signature",
        artifact_type=mt.NOTARY_SIGNATURE,
        layers=[Blob.of(signed, envelope)],
        subject=subject,
        annotations=annotations,
    )


def referrers_index(referrers: Sequence[Artifact], *, annotations: bool = True) -> ArtifactIndex:
    """The referrers tag schema's index (push it under ``sha256-<hex>`` of the subject): one entry per
    referrer with ``artifactType`` and annotations (``annotations=False``: as go-containerregistry wrote
    entries before v0.22.1)."""
    entries = tuple(item.entry(annotations=annotations) for item in referrers)
    raw = _compact({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": list(entries)})
    return ArtifactIndex(raw, mt.OCI_INDEX, sha256_digest(raw), tuple(referrers), entries)


# -- BuildKit ----------------------------------------------------------------------------------------------


def buildx_index(
    images: Sequence[Image],
    *,
    sbom: Sequence[bool] | bool = True,
    provenance: bool = True,
    oci_artifact: Sequence[bool] | bool = False,
) -> ArtifactIndex:
    """``docker buildx build --sbom --provenance``: an OCI index with the platform images, then one attestation
    manifest per image (platform ``unknown/unknown``, ``vnd.docker.reference.*`` annotations) holding in-toto
    layers. Legacy format: an image config with os and architecture ``unknown``; ``oci_artifact``: the
    BuildKit artifact type, the empty config and ``subject``. ``sbom`` and ``oci_artifact`` may be given per
    image. An attestation manifest with an SBOM layer is an SBOM."""
    count = len(images)
    sboms = [sbom] * count if isinstance(sbom, bool) else list(sbom)
    artifacts = [oci_artifact] * count if isinstance(oci_artifact, bool) else list(oci_artifact)
    attestations: list[Artifact] = []
    for image, with_sbom, as_artifact in zip(images, sboms, artifacts):
        layers = []
        if with_sbom:
            data = _statement(image, PREDICATE_SPDX, {"spdxVersion": "SPDX-2.3", "name": "sbom"})
            layers.append(_annotated(data, mt.IN_TOTO, {mt.ANNOTATION_IN_TOTO_PREDICATE: PREDICATE_SPDX}))
        if provenance:
            data = _statement(image, PREDICATE_SLSA, {"buildType": "https://mobyproject.org/buildkit@v1"})
            layers.append(_annotated(data, mt.IN_TOTO, {mt.ANNOTATION_IN_TOTO_PREDICATE: PREDICATE_SLSA}))
        kind = "sbom" if with_sbom else "attestation"
        if as_artifact:
            attestations.append(
                artifact(kind=kind, artifact_type=mt.BUILDKIT_ATTESTATION, layers=layers, subject=image)
            )
        else:
            config = {
                "architecture": "unknown",
                "os": "unknown",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [blob.digest for blob in layers]},
            }
            attestations.append(artifact(kind=kind, config=Blob.of(_compact(config), mt.OCI_CONFIG), layers=layers))
    entries = [image.descriptor() for image in images]
    for image, item in zip(images, attestations):
        entries.append(
            {
                **_descriptor(item),
                "annotations": {
                    mt.ANNOTATION_REFERENCE_DIGEST: image.digest,
                    mt.ANNOTATION_REFERENCE_TYPE: mt.REFERENCE_TYPE_ATTESTATION,
                },
                "platform": {"architecture": "unknown", "os": "unknown"},
            }
        )
    raw = _compact({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries})
    return ArtifactIndex(raw, mt.OCI_INDEX, sha256_digest(raw), (*images, *attestations), tuple(entries))


# -- Helm and other artifacts -------------------------------------------------------------------------------


def helm_chart(
    name: str, version: str, *, provenance: bool = False, size: int = 2048, created: str = DEFAULT_CREATED
) -> tuple[str, Artifact]:
    """``helm push``: ``(tag, manifest)`` with the Chart.yaml as the JSON config, the chart archive (and its
    provenance file) as layers sorted by digest, Chart.yaml's annotations, and the version as the tag
    (``+`` written ``_``)."""
    chart = {
        "apiVersion": "v2",
        "name": name,
        "version": version,
        "description": f"{name} chart",
        "type": "application",
    }
    layers = [layer(f"helm/{name}/{version}", size).blob(mt.HELM_CHART)]
    if provenance:
        text = f"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nname: {name}\nversion: {version}\n"
        layers.append(Blob.of(text.encode(), mt.HELM_PROVENANCE))
    annotations = {
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.description": chart["description"],
        mt.ANNOTATION_CREATED: created,
    }
    item = artifact(
        kind="helm-chart",
        config=Blob.of(_compact(chart), mt.HELM_CONFIG),
        layers=sorted(layers, key=lambda blob: blob.digest),
        annotations=annotations,
    )
    return version.replace("+", "_"), item


def image_with_config(config: bytes, layers: Sequence[Blob], *, media_type: str = mt.OCI_CONFIG) -> Artifact:
    """An image manifest whose config blob holds ``config`` as it is (binary, a JSON array, 30 MB...), typed as
    an image config unless ``media_type`` says otherwise: content a registry stores without checking it."""
    kind = "image" if media_type in mt.IMAGE_CONFIG_TYPES else "artifact"
    return artifact(kind=kind, config=Blob.of(config, media_type), layers=layers)


def index_without_platforms(images: Sequence[Image], *, oci: bool = True) -> ImageIndex:
    """An index whose entries leave out ``platform`` (the field is optional): a reader must take each
    image's platform from its config, as containerd does."""
    media_type = mt.OCI_INDEX if oci else mt.DOCKER_LIST
    entries = [{k: v for k, v in image.descriptor().items() if k != "platform"} for image in images]
    raw = _compact({"schemaVersion": 2, "mediaType": media_type, "manifests": entries})
    return ImageIndex(manifest_raw=raw, media_type=media_type, digest=sha256_digest(raw), children=tuple(images))


# -- pushing ---------------------------------------------------------------------------------------------------


def push_artifact(
    target: PushTarget, repository: str, reference: str, item: Image | ImageIndex | Artifact | ArtifactIndex
) -> None:
    """Push with a regframe client: blobs the repository lacks, then index entries by digest, then the
    manifest under ``reference`` (a tag, or its own digest to leave it untagged)."""
    for blob in item.blobs():
        if not target.blob_exists(repository, blob.digest):
            target.upload_blob(repository, blob.data, blob.digest)
    for child in distinct(item.children):
        target.put_manifest(repository, child.digest, child.manifest_raw, child.media_type)
    target.put_manifest(repository, reference, item.manifest_raw, item.media_type)


def oras_push(
    url: str,
    repository: str,
    tag: str,
    files: Sequence[tuple[str | os.PathLike[str], str]],
    *,
    config: tuple[str | os.PathLike[str], str] | None = None,
    subject: Subject | None = None,
    annotations: Mapping[str, str] | None = None,
) -> str:
    """Push ``files`` (path, media type) to ``repository:tag`` of a plain-http registry with oras-py's Python
    API, as ``oras push`` (``config``: path and media type; ``subject``: attach to that manifest). Returns the
    manifest digest the registry answered. Needs the ``oras`` package (the test extra)."""
    import oras.oci
    import oras.provider

    host = url.split("://", 1)[-1].rstrip("/")
    client = oras.provider.Registry(hostname=host, insecure=True)
    response = client.push(
        target=f"{host}/{repository}:{tag}",
        files=[f"{Path(path)}:{media_type}" for path, media_type in files],
        disable_path_validation=True,
        manifest_config=None if config is None else f"{Path(config[0])}:{config[1]}",
        manifest_annotations=dict(annotations or {}),
        subject=None if subject is None else oras.oci.Subject(**_descriptor(subject)),
        quiet=True,
    )
    digest = response.headers.get("Docker-Content-Digest")
    if not digest:
        raise RuntimeError(
            f"oras push to {repository}:{tag} got no Docker-Content-Digest (status {response.status_code})"
        )
    return str(digest)
