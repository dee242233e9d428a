"""Media types of the Docker v2 and OCI image formats."""

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

INDEX_TYPES = frozenset({DOCKER_LIST, OCI_INDEX})
IMAGE_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})
MANIFEST_TYPES = INDEX_TYPES | IMAGE_TYPES | SCHEMA1_TYPES

# Without an Accept header distribution 2.8 down-converts to schema1 and hides OCI manifests.
MANIFEST_ACCEPT = ", ".join(
    [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED + ";q=0.5", DOCKER_SCHEMA1 + ";q=0.5"]
)

# The OCI distribution spec lets registries refuse manifests above 4 MiB.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

# -- artifacts: signatures, attestations, SBOMs and other non-image content -----------------------
# Image spec 1.1 and the formats of the tools that publish them (cosign, BuildKit, Notation, Helm, ...).

IMAGE_CONFIG_TYPES = frozenset({DOCKER_CONFIG, OCI_CONFIG})
DOCKER_PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"

COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_ARTIFACT_PREFIX = "application/vnd.dev.cosign.artifact."
COSIGN_ARTIFACT_SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
COSIGN_ARTIFACT_SBOM = "application/vnd.dev.cosign.artifact.sbom.v1+json"
SIGSTORE_BUNDLE_PREFIX = "application/vnd.dev.sigstore.bundle"
SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
BUILDKIT_ATTESTATION = "application/vnd.docker.attestation.manifest.v1+json"

NOTARY_SIGNATURE = "application/vnd.cncf.notary.signature"
NOTARY_JWS = "application/jose+json"
NOTARY_COSE = "application/cose"

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
HELM_PROVENANCE = "application/vnd.cncf.helm.chart.provenance.v1.prov"
HELM_PLUGIN = "application/vnd.helm.plugin.v1+json"

SPDX_JSON = "application/spdx+json"
SPDX3_JSON = "application/spdx3+json"
SPDX_TEXT = "text/spdx"
SPDX_TEXT_JSON = "text/spdx+json"
SPDX_TEXT_XML = "text/spdx+xml"
CYCLONEDX = "application/vnd.cyclonedx"
CYCLONEDX_JSON = "application/vnd.cyclonedx+json"
CYCLONEDX_XML = "application/vnd.cyclonedx+xml"
SYFT_JSON = "application/vnd.syft+json"
SBOM_TYPES = frozenset(
    {
        SPDX_JSON,
        SPDX3_JSON,
        SPDX_TEXT,
        SPDX_TEXT_JSON,
        SPDX_TEXT_XML,
        CYCLONEDX,
        CYCLONEDX_JSON,
        CYCLONEDX_XML,
        SYFT_JSON,
    }
)

WASM_CONFIG_V0 = "application/vnd.wasm.config.v0+json"
WASM_CONFIG_V1 = "application/vnd.wasm.config.v1+json"
WASM_LAYER = "application/wasm"
WASM_CONTENT_LAYER = "application/vnd.wasm.content.layer.v1+wasm"

# The empty descriptor's blob ``{}``: a placeholder config (and layer) of artifacts.
EMPTY_JSON = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

# Annotations.
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_REFERENCE_TYPE = "vnd.docker.reference.type"
ANNOTATION_REFERENCE_DIGEST = "vnd.docker.reference.digest"
REFERENCE_TYPE_ATTESTATION = "attestation-manifest"
ANNOTATION_BUNDLE_PREDICATE = "dev.sigstore.bundle.predicateType"
ANNOTATION_IN_TOTO_PREDICATE = "in-toto.io/predicate-type"
ANNOTATION_COSIGN_PREDICATE = "predicateType"
PREDICATE_ANNOTATIONS = (ANNOTATION_BUNDLE_PREDICATE, ANNOTATION_IN_TOTO_PREDICATE, ANNOTATION_COSIGN_PREDICATE)
# rmtag's throw-away manifest carries this annotation; a crawl gives such a manifest this artifact type, so
# a tag left on one (a removal stopped between the placeholder's PUT and its DELETE) can be found and removed.
ANNOTATION_PLACEHOLDER = "io.regframe.placeholder"
PLACEHOLDER_TYPE = "application/vnd.io.regframe.placeholder"

# in-toto predicate types that decide a kind; any other predicate is an attestation.
PREDICATE_COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"
PREDICATE_SBOM_PREFIXES = ("https://spdx.dev/Document", "https://cyclonedx.org/bom")
