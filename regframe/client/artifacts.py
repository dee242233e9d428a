"""What a manifest is, and which image it belongs to: pure rules from the published formats, no network.

Kinds: ``image``, ``signature``, ``attestation``, ``sbom``, ``helm-chart``, ``artifact``. An image is a
manifest whose config is a Docker or OCI image config and that no rule marks as an accessory. The rules
come from OCI image spec 1.1 (``artifactType``, ``subject``, the empty config), the distribution spec's
referrers tag schema (``sha256-<hex>`` holding an index of referrers), cosign's tag scheme
(``sha256-<hex>.sig|.att|.sbom``) and bundles, DSSE/in-toto envelopes, BuildKit's attestation manifests in
an index, Notation signatures, Helm charts and the SBOM media types. Tag names never decide a kind on
their own: they only name the subject of what the content already says is an accessory.

Order: (1) an index under a fallback tag, or one whose entries all carry ``artifactType`` and no
``platform``, is a referrers list, never an image; an index with ``artifactType`` is mapped like a
manifest; any other index is an image. (2) A manifest's ``artifactType``, else its config media type, is
looked up. (3) An image config's layers can still say signature (simple signing), attestation (DSSE,
in-toto) or SBOM (SPDX, CycloneDX, Syft). (4) Bundles and in-toto content are refined by predicate type.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple

from . import mediatypes as MT
from .errors import InvalidReferenceError
from .models import Manifest
from .reference import validate_digest

IMAGE: Final = "image"
SIGNATURE: Final = "signature"
ATTESTATION: Final = "attestation"
SBOM: Final = "sbom"
HELM_CHART: Final = "helm-chart"
ARTIFACT: Final = "artifact"
KINDS: Final = (IMAGE, SIGNATURE, ATTESTATION, SBOM, HELM_CHART, ARTIFACT)
ACCESSORY_KINDS: Final = frozenset(KINDS) - {IMAGE, HELM_CHART}

# How an accessory was found, most direct first.
VIA_API: Final = "api"
VIA_TAG_SCHEMA: Final = "tag-schema"
VIA_INDEX_ATTESTATION: Final = "index-attestation"
VIA_COSIGN_TAG: Final = "cosign-tag"
VIA_SUBJECT_FIELD: Final = "subject-field"
VIAS: Final = (VIA_API, VIA_TAG_SCHEMA, VIA_INDEX_ATTESTATION, VIA_COSIGN_TAG, VIA_SUBJECT_FIELD)

_FALLBACK_TAG = re.compile(r"sha256-([0-9a-f]{64})")
_COSIGN_TAG = re.compile(r"sha256-([0-9a-f]{64})\.(sig|att|sbom)")
_COSIGN_ARTIFACT_KINDS = {"sig": SIGNATURE, "att": ATTESTATION, "sbom": SBOM}
# The annotations classification reads; a crawl caches only these.
_KEPT_ANNOTATIONS = (
    *MT.PREDICATE_ANNOTATIONS,
    MT.ANNOTATION_CREATED,
    MT.ANNOTATION_REFERENCE_TYPE,
    MT.ANNOTATION_REFERENCE_DIGEST,
    MT.ANNOTATION_PLACEHOLDER,
)


class Classification(NamedTuple):
    """``kind`` (one of KINDS), ``artifact_type`` (the manifest's ``artifactType``, else its config media type
    when that is not an image config) and ``subject`` (the digest of the image an accessory belongs to)."""

    kind: str
    artifact_type: str | None
    subject: str | None


def base_type(media_type: object) -> str | None:
    """A media type without parameters, lower case (``…bundle+json;version=0.3`` -> ``…bundle+json``)."""
    if not isinstance(media_type, str):
        return None
    if media_type in _BASE_TYPES:
        return _BASE_TYPES[media_type]
    text = media_type.split(";", 1)[0].strip().lower() or None
    if len(_BASE_TYPES) < 1024:  # a registry can send any number of made-up types; the usual few are kept
        _BASE_TYPES[media_type] = text
    return text


# base_type is asked about the same few media types many times a manifest.
_BASE_TYPES: dict[str, str | None] = {}


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag for ``digest``: ``sha256:<hex>`` -> ``sha256-<hex>``."""
    algorithm, _, encoded = validate_digest(digest).partition(":")
    return f"{algorithm[:32]}-{encoded[:64]}"


def fallback_tag_subject(tag: object) -> str | None:
    """``sha256:<hex>`` when ``tag`` is a referrers fallback tag ``sha256-<hex>`` (no suffix), else None."""
    found = _FALLBACK_TAG.fullmatch(tag) if isinstance(tag, str) else None
    return f"sha256:{found.group(1)}" if found else None


def cosign_tag_subject(tag: object) -> str | None:
    """``sha256:<hex>`` when ``tag`` is one of cosign's ``sha256-<hex>.sig|.att|.sbom`` tags, else None."""
    found = _COSIGN_TAG.fullmatch(tag) if isinstance(tag, str) else None
    return f"sha256:{found.group(1)}" if found else None


def is_attestation_entry(entry: Mapping[str, Any] | None) -> bool:
    """An index entry BuildKit marks as an attestation manifest (any other reference type is ignored)."""
    return _annotations(entry).get(MT.ANNOTATION_REFERENCE_TYPE) == MT.REFERENCE_TYPE_ATTESTATION


def is_referrers_index(manifest: Manifest, tag: str | None = None) -> bool:
    """A referrers list: an index under a fallback tag, or one whose entries all carry ``artifactType`` and
    no ``platform``. Bookkeeping, never an image."""
    manifest = _sane(manifest)
    if not manifest.is_index:
        return False
    if fallback_tag_subject(tag):
        return True
    children = manifest.children
    return bool(children) and all(
        isinstance(child.get("artifactType"), str) and "platform" not in child for child in children
    )


def subject_of(
    manifest: Manifest, tag: str | None = None, entry: Mapping[str, Any] | None = None, *, referrer: bool = False
) -> tuple[str | None, str | None]:
    """``(subject digest, via)`` from what is at hand, or ``(None, None)``.

    ``tag`` is the tag the manifest was reached by (for an index entry: the index's tag), ``entry`` the
    index entry that lists it, and ``referrer`` True when a referrers list (a fallback index, the referrers
    API) named it. The ``subject`` field is authoritative; otherwise a BuildKit attestation entry names its
    image in ``vnd.docker.reference.digest``, a fallback index's entries belong to the digest in its tag, and
    a cosign tag names its image. ``via`` says which of these found the manifest."""
    manifest = _sane(manifest)
    declared = subject_field(manifest)
    if entry is not None:
        if is_attestation_entry(entry):
            return declared or _digest(_annotations(entry).get(MT.ANNOTATION_REFERENCE_DIGEST)), VIA_INDEX_ATTESTATION
        fallback = fallback_tag_subject(tag)
        if fallback:
            return declared or fallback, VIA_TAG_SCHEMA
    else:
        cosign = cosign_tag_subject(tag)
        if cosign:
            return declared or cosign, VIA_COSIGN_TAG
    if declared:
        return declared, VIA_SUBJECT_FIELD
    return None, None


def classify(
    manifest: Manifest,
    *,
    tag: str | None = None,
    entry: Mapping[str, Any] | None = None,
    referrer: bool = False,
) -> Classification:
    """The kind, artifact type and subject of ``manifest`` (rules in the module docstring).

    ``tag``: the tag it was reached by (for an entry of an index, the index's tag); ``entry``: the index
    entry that lists it, with its annotations and platform; ``referrer``: a referrers list named it (implied
    for the entries of an index under a fallback tag). A cosign tag name only supplies the subject of what
    the content says is an accessory. Never raises on odd field types."""
    manifest = _sane(manifest)
    subject, _via = subject_of(manifest, tag, entry, referrer=referrer)
    field = manifest.get("subject")
    listed = referrer or (entry is not None and fallback_tag_subject(tag) is not None)
    kind = _kind(manifest, tag, entry, listed or isinstance(field, dict))
    return Classification(kind, artifact_type(manifest), None if kind == IMAGE else subject)


def artifact_type(manifest: Manifest) -> str | None:
    """The manifest's ``artifactType``, else its config media type when that is not an image config;
    ``PLACEHOLDER_TYPE`` for rmtag's throw-away manifest."""
    if _is_placeholder(manifest):
        return MT.PLACEHOLDER_TYPE
    declared = manifest.get("artifactType")
    if isinstance(declared, str) and declared:
        return declared
    config = manifest.config
    media_type = config.get("mediaType") if config else None
    if isinstance(media_type, str) and media_type and base_type(media_type) not in MT.IMAGE_CONFIG_TYPES:
        return media_type
    return None


def _is_placeholder(manifest: Manifest) -> bool:
    """rmtag's throw-away manifest: its annotation on an image manifest with the empty config and no layer,
    so no manifest that holds anything is ever taken for one."""
    config = manifest.config
    return (
        MT.ANNOTATION_PLACEHOLDER in _annotations(manifest)
        and not manifest.is_index
        and not manifest.layers
        and config is not None
        and config.get("mediaType") == MT.OCI_EMPTY
    )


def referrers_artifact_type(manifest: Manifest) -> str | None:
    """The referrers API's rule: ``artifactType``, else the config's media type (image configs included);
    an index without ``artifactType`` has none."""
    declared = manifest.get("artifactType")
    if isinstance(declared, str) and declared:
        return declared
    config = manifest.config
    if manifest.is_index or config is None:
        return None
    media_type = config.get("mediaType")
    return media_type if isinstance(media_type, str) and media_type else None


def subject_field(manifest: Manifest) -> str | None:
    """The well-formed digest in the manifest's ``subject`` field, else None."""
    field = manifest.get("subject")
    return _digest(field.get("digest")) if isinstance(field, dict) else None


def predicate_types(manifest: Manifest, entry: Mapping[str, Any] | None = None) -> list[str]:
    """Every predicate type named in the manifest's, the entry's and the layers' annotations."""
    sources = [_annotations(manifest), _annotations(entry), *(_annotations(layer) for layer in manifest.layers)]
    return [
        value
        for annotations in sources
        for key in MT.PREDICATE_ANNOTATIONS
        if isinstance(value := annotations.get(key), str)
    ]


def skeleton(manifest: Manifest) -> dict[str, Any]:
    """The parts of a manifest ``classify`` reads, JSON-able and small, so a crawl can cache them by digest
    and classify again in any context: ``classify(Manifest(skeleton(m)), ...) == classify(m, ...)``."""
    manifest = _sane(manifest)
    out: dict[str, Any] = {key: manifest[key] for key in ("schemaVersion", "mediaType") if key in manifest}
    if manifest.media_type is not None:
        out["mediaType"] = manifest.media_type
    if isinstance(manifest.get("artifactType"), str):
        out["artifactType"] = manifest["artifactType"]
    subject = manifest.get("subject")
    if isinstance(subject, dict):
        out["subject"] = {key: subject[key] for key in ("digest", "mediaType") if isinstance(subject.get(key), str)}
    kept = _kept(manifest)
    if kept:
        out["annotations"] = kept
    config = manifest.config
    if config is not None:
        out["config"] = {"mediaType": config.get("mediaType")} if isinstance(config.get("mediaType"), str) else {}
    if manifest.is_schema1:
        return out
    if "layers" in manifest:
        out["layers"] = [_descriptor_skeleton(layer, ("mediaType",)) for layer in manifest.layers]
    if manifest.is_index:
        out["manifests"] = [
            _descriptor_skeleton(child, ("mediaType", "digest", "artifactType", "platform"))
            for child in manifest.children
        ]
    return out


# -- the rules ----------------------------------------------------------------------------------------


def _kind(manifest: Manifest, tag: str | None, entry: Mapping[str, Any] | None, referred: bool) -> str:
    """``referred``: the manifest has a ``subject`` field or a referrers list names it."""
    if manifest.is_schema1:
        return IMAGE
    if manifest.is_index:
        if is_referrers_index(manifest, tag):
            return ARTIFACT
        declared = base_type(manifest.get("artifactType"))
        if declared:
            return _lookup(declared, manifest, entry)
        return ARTIFACT if referred or is_attestation_entry(entry) else IMAGE
    config = manifest.config
    declared = base_type(manifest.get("artifactType")) or base_type(config.get("mediaType") if config else None)
    if declared is None and config is None:
        return ARTIFACT
    if declared is None or declared in MT.IMAGE_CONFIG_TYPES:
        from_layers = _from_layers(manifest, entry)
        if from_layers is not None:
            return from_layers
        if is_attestation_entry(entry):
            return _refine(predicate_types(manifest, entry))
        if referred:
            return ARTIFACT
        return IMAGE
    return _lookup(declared, manifest, entry)


def _lookup(media_type: str, manifest: Manifest, entry: Mapping[str, Any] | None) -> str:
    """Section 5's table for an ``artifactType`` or a config media type that is not an image config."""
    if media_type.startswith(MT.COSIGN_ARTIFACT_PREFIX):
        name = media_type[len(MT.COSIGN_ARTIFACT_PREFIX) :].split(".", 1)[0]
        return _COSIGN_ARTIFACT_KINDS.get(name, ARTIFACT)
    if media_type.startswith(MT.SIGSTORE_BUNDLE_PREFIX) or media_type in (
        MT.DSSE_ENVELOPE,
        MT.IN_TOTO,
        MT.BUILDKIT_ATTESTATION,
    ):
        return _refine(predicate_types(manifest, entry))
    if media_type == MT.NOTARY_SIGNATURE:
        return SIGNATURE
    if media_type == MT.HELM_CONFIG:
        return HELM_CHART
    if media_type in MT.SBOM_TYPES:
        return SBOM
    return ARTIFACT


def _from_layers(manifest: Manifest, entry: Mapping[str, Any] | None) -> str | None:
    """What the layers of an image-config manifest say, if anything: cosign's tag-scheme accessories and
    BuildKit's legacy attestation manifests look like images until their layers are read."""
    types = {base_type(layer.get("mediaType")) for layer in manifest.layers}
    if MT.COSIGN_SIMPLESIGNING in types:
        return SIGNATURE
    if types & {MT.DSSE_ENVELOPE, MT.IN_TOTO} or any(t and t.startswith(MT.SIGSTORE_BUNDLE_PREFIX) for t in types):
        return _refine(predicate_types(manifest, entry))
    if types & MT.SBOM_TYPES:
        return SBOM
    return None


def _refine(predicates: Iterable[str]) -> str:
    """By predicate type: cosign's signing predicate is a signature, SPDX or CycloneDX an SBOM, anything
    else (or none) an attestation. One SBOM predicate among several makes the whole an SBOM."""
    found = list(predicates)
    if MT.PREDICATE_COSIGN_SIGN in found:
        return SIGNATURE
    if any(p.startswith(MT.PREDICATE_SBOM_PREFIXES) for p in found):
        return SBOM
    return ATTESTATION


_SHAPES: dict[str, type] = {"mediaType": str, "config": dict, "layers": list, "manifests": list, "fsLayers": list}


def _sane(manifest: Manifest) -> Manifest:
    """``manifest``, or a copy without the fields whose JSON type is wrong (a verified manifest never has
    such fields; anything else is classified from what remains)."""
    bad = [key for key, shape in _SHAPES.items() if key in manifest and not isinstance(manifest[key], shape)]
    odd_type = manifest.media_type is not None and not isinstance(manifest.media_type, str)
    if not bad and not odd_type:
        return manifest
    copy = Manifest({key: value for key, value in manifest.items() if key not in bad})
    if odd_type or "mediaType" in bad:
        copy.media_type = None
    else:
        copy.media_type = manifest.media_type
    return copy


def _annotations(item: Mapping[str, Any] | None) -> dict[str, Any]:
    annotations = item.get("annotations") if item is not None else None
    return annotations if isinstance(annotations, dict) else {}


def _kept(item: Mapping[str, Any] | None) -> dict[str, str]:
    annotations = _annotations(item)
    if not annotations:
        return {}
    return {key: annotations[key] for key in _KEPT_ANNOTATIONS if isinstance(annotations.get(key), str)}


def _descriptor_skeleton(descriptor: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    out = {key: descriptor[key] for key in keys if key in descriptor}
    kept = _kept(descriptor)
    if kept:
        out["annotations"] = kept
    return out


def _digest(value: object) -> str | None:
    """``value`` when it is a well-formed digest, else None (a hostile annotation names nothing)."""
    if not isinstance(value, str):
        return None
    try:
        return validate_digest(value)
    except InvalidReferenceError:
        return None
