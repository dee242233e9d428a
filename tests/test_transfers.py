"""Moving images between registries and OCI layouts loses nothing: push takes every layout pull writes (an
index of indexes, skopeo's unnamed image), copy keeps every platform asked for, a pull never tags a layout
on a blob outside ``blobs/``, a declined mount falls back to the local copy, and a blob cut short once by the
network is read again.

One registry for the module; the fault proxy serves what a real registry cannot be made to do (decline a
mount, cut one answer short), and says so where it does.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

import regframe
from regframe.client import mediatypes as MT
from regframe.testing import build_image, build_index, layer, local_registry, push_image
from regframe.testing.faultproxy import Action, FaultProxy, Rule, Truncate

AMD = build_image([layer("xfer-amd", 2000)], architecture="amd64", oci=True)
ARM = build_image([layer("xfer-arm", 2100)], architecture="arm64", oci=True)
INNER = build_index([AMD, ARM], oci=True)
ARM32 = build_image([layer("xfer-arm32", 1900)], architecture="arm", oci=True)
PLAIN = build_image([layer("xfer-plain", 300_000)], oci=True)


@pytest.fixture(scope="module")
def registry():
    with local_registry() as reg:
        yield reg


@pytest.fixture
def client(registry):
    with regframe.connect(registry.url, docker_config=False) as reg:
        yield reg


def index_of(*entries: dict) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": MT.OCI_INDEX, "manifests": list(entries)}).encode()


def test_push_takes_the_index_of_indexes_pull_wrote(client, tmp_path):
    push_image(client, "xfer/nested", "inner", INNER)
    inner = {"mediaType": MT.OCI_INDEX, "digest": INNER.digest, "size": len(INNER.manifest_raw)}
    outer = index_of(inner)
    client.put_manifest("xfer/nested", "outer", outer, MT.OCI_INDEX)
    client.pull("xfer/nested", "outer", tmp_path)
    pushed = client.push(None, tmp_path, "xfer/nested-pushed", "outer")
    assert pushed == client.digest("xfer/nested", "outer")
    for image in (AMD, ARM):
        assert client.manifest("xfer/nested-pushed", image.digest).raw == image.manifest_raw
    assert client.manifest("xfer/nested-pushed", INNER.digest).raw == INNER.manifest_raw


def test_copy_keeps_every_platform_asked_for_when_two_share_one_image(client):
    """One arm build listed for linux/arm/v6 and linux/arm/v7, as multi-arch builds of pure-Go programs are."""
    push_image(client, "xfer/shared", "arm", ARM32)
    entry = {"mediaType": MT.OCI_MANIFEST, "digest": ARM32.digest, "size": len(ARM32.manifest_raw)}
    variants = [dict(entry, platform={"os": "linux", "architecture": "arm", "variant": v}) for v in ("v6", "v7")]
    client.put_manifest("xfer/shared", "multi", index_of(*variants), MT.OCI_INDEX)
    client.copy("xfer/shared", "multi", client, "xfer/shared-copy", "multi", platforms=["linux/arm/v6", "linux/arm/v7"])
    listed = [m["platform"]["variant"] for m in client.manifest("xfer/shared-copy", "multi")["manifests"]]
    assert listed == ["v6", "v7"]
    client.copy("xfer/shared", "multi", client, "xfer/shared-copy", "one", platforms=["linux/arm/v7", "linux/arm/v7"])
    assert len(client.manifest("xfer/shared-copy", "one")["manifests"]) == 1, "one entry asked twice is one"


def test_pull_writes_every_blob_under_blobs_even_beside_a_flat_copy(client, tmp_path):
    """A flat ``<hex>`` file (how the gem's pull leaves blobs, and a form push reads) is not where the image
    layout spec puts a blob: a layout tagged on it would be incomplete to every other reader."""
    push_image(client, "xfer/flat", "v1", PLAIN)
    blob = PLAIN.layers[0]
    (tmp_path / blob.digest.split(":")[1]).write_bytes(blob.data)
    client.pull("xfer/flat", "v1", tmp_path)
    assert (tmp_path / "blobs" / "sha256" / blob.digest.split(":")[1]).read_bytes() == blob.data
    if shutil.which("skopeo"):
        read = subprocess.run(["skopeo", "inspect", f"oci:{tmp_path}:v1"], capture_output=True, text=True)
        assert read.returncode == 0, read.stderr


class DeclineMount(Action):
    """A registry that does not mount: the POST goes on without ``?mount=&from=``, so it answers 202 with a
    plain upload session, as the distribution spec allows (distribution 2.8 always mounts when it can)."""

    def apply(self, ex) -> None:
        ex.respond(ex.forward(ex.path.split("?", 1)[0]))


def test_push_uploads_the_local_copy_when_a_mount_is_declined(registry, client, tmp_path):
    push_image(client, "xfer/mount-src", "v1", AMD)
    client.pull("xfer/mount-src", "v1", tmp_path)
    with FaultProxy(registry.url) as proxy:
        rule = proxy.add_rule(Rule(path=r"mount=", method="POST", action=DeclineMount()))
        with regframe.connect(proxy.url, docker_config=False) as through:
            pushed = through.push(None, tmp_path, "xfer/mount-dst", "v1", mount_from=["xfer/mount-src"])
        assert next(s.applied for s in proxy.stats.rules if s.rule is rule) >= 1
    assert pushed == AMD.digest
    for blob in (AMD.config, *AMD.layers):
        assert client.blob("xfer/mount-dst", blob.digest).body == blob.data


def test_push_takes_the_only_image_of_a_layout_that_names_none(client, tmp_path):
    """``skopeo copy docker://... oci:DIR`` without a tag writes one unnamed entry; skopeo pushes it back."""
    if not shutil.which("skopeo"):
        pytest.skip("skopeo is not installed")
    push_image(client, "xfer/unnamed", "v1", AMD)
    host = client.url.split("//", 1)[1]
    subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", f"docker://{host}/xfer/unnamed:v1", f"oci:{tmp_path}"],
        check=True,
        capture_output=True,
    )
    assert client.push(None, tmp_path, "xfer/unnamed-pushed", "latest") == AMD.digest


@pytest.mark.parametrize("how", ["pull", "copy"])
def test_a_blob_cut_short_once_is_read_again(registry, client, tmp_path, how):
    """The proxy cuts one blob answer off half way, as a dropped link does: the transfer reads it again and
    succeeds; a blob cut short every time still fails, as a digest mismatch saying it was cut short."""
    push_image(client, f"xfer/cut-{how}", "v1", PLAIN)
    blob = PLAIN.layers[0].digest
    with FaultProxy(registry.url) as proxy:
        proxy.add_rule(Rule(path=blob, method="GET", times=1, action=Truncate(0.5)))
        with regframe.connect(proxy.url, docker_config=False) as through:
            if how == "pull":
                through.pull(f"xfer/cut-{how}", "v1", tmp_path / "once")
                assert (tmp_path / "once" / "blobs" / "sha256" / blob.split(":")[1]).is_file()
            else:
                through.copy(f"xfer/cut-{how}", "v1", through, f"xfer/cut-{how}-copy", "v1")
                assert client.blob(f"xfer/cut-{how}-copy", blob).body == PLAIN.layers[0].data
        proxy.add_rule(Rule(path=blob, method="GET", action=Truncate(0.5)))
        with (
            regframe.connect(proxy.url, docker_config=False, retries=1) as through,
            pytest.raises(regframe.DigestMismatchError, match="cut short") as info,
        ):
            through.pull(f"xfer/cut-{how}", "v1", tmp_path / "always")
    assert info.value.cut_short
    assert (
        not (tmp_path / "always" / "index.json").exists()
        or "v1" not in (tmp_path / "always" / "index.json").read_text()
    )
