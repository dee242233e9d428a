"""Reads against a real registry: search, tags, manifest, digest, blob, blob_size, manifest_sum."""

from __future__ import annotations

import hashlib
import json
from contextlib import suppress

import pytest

import regframe
from regframe.client import RegistryClient
from regframe.client import mediatypes as MT
from regframe.testing import build_image, build_index, layer, push_image
from regframe.testing.faultproxy import DropHeader, FaultProxy, Rule, SetHeader


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def image():
    return build_image([layer("reads-base", 3000), layer("reads-app", 1500)], labels={"team": "a"})


@pytest.fixture
def index():
    amd = build_image([layer("idx-amd", 2000)], architecture="amd64", oci=True)
    arm = build_image([layer("idx-arm", 2500)], architecture="arm64", variant="v8", oci=True)
    return build_index([amd, arm], oci=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://me:secret@registry.example.com",
        # A '/', '?' or '#' in the password ends the authority where urlsplit looks for userinfo.
        "https://me:se/cret@registry.example.com",
        "https://me:2024/secret@registry.example.com",
        "me:se?cret@registry.example.com",
        "https://me:se#cret@registry.example.com",
    ],
)
def test_connect_refuses_credentials_in_url_without_repeating_them(url):
    with pytest.raises(regframe.InvalidReferenceError, match="credentials inside the registry URL") as info:
        regframe.connect(url)
    assert "cret" not in str(info.value)


def test_connect_maps_docker_hub_to_its_api_host():
    reg = RegistryClient("https://registry.hub.docker.com", docker_config=False)
    assert reg.url == "https://registry-1.docker.io"
    assert reg.repo("ubuntu") == "library/ubuntu"
    assert RegistryClient("docker.io", docker_config=False).url == "https://registry-1.docker.io"


def test_unknown_registry_raises_registry_unknown_error():
    with pytest.raises(regframe.RegistryUnknownError):
        regframe.connect("http://127.0.0.1:9", open_timeout=1, docker_config=False)


def test_search_follows_catalog_pages(anon, repo_name, image):
    names = [f"{repo_name}-{i}" for i in range(5)]
    for name in names:
        push_image(anon, name, "v1", image)
    # Page size 2 forces the client through several Link: rel="next" pages.
    listed = list(anon.catalog(page_size=2))
    assert set(names) <= set(listed)
    assert anon.stats["requests"]["catalog"] >= 3
    assert sorted(anon.search(repo_name)) == sorted(names)
    assert anon.search("no-such-name-anywhere") == []


def test_tags_and_hashes(anon, repo_name, image, index):
    push_image(anon, repo_name, "1.0", image)
    push_image(anon, repo_name, "latest", image)
    push_image(anon, repo_name, "multi", index)
    result = anon.tags(repo_name, with_hashes=True)
    assert result["name"] == repo_name
    assert sorted(result["tags"]) == ["1.0", "latest", "multi"]
    assert result["hashes"] == {
        "1.0": sha(image.manifest_raw),
        "latest": sha(image.manifest_raw),
        "multi": sha(index.manifest_raw),
    }
    assert "last" not in result
    assert "hashes" not in anon.tags(repo_name)


def test_tags_of_unknown_repository_is_empty_dict(anon):
    assert anon.tags("no/such-repository") == {}


def test_manifest_keeps_exact_bytes_and_checks_digest(anon, repo_name, image):
    push_image(anon, repo_name, "v1", image)
    manifest = anon.manifest(repo_name, "v1")
    assert manifest.raw == image.manifest_raw
    assert manifest.digest == sha(image.manifest_raw)
    assert manifest.media_type == MT.DOCKER_MANIFEST
    assert manifest["config"]["digest"] == image.config.digest
    assert manifest.headers["Docker-Content-Digest"] == sha(image.manifest_raw)
    by_digest = anon.manifest(repo_name, manifest.digest)
    assert by_digest.raw == image.manifest_raw


@pytest.mark.parametrize("oci", [False, True])
def test_manifest_reads_all_four_media_types(anon, repo_name, oci):
    amd = build_image([layer(f"mt-{oci}", 900)], oci=oci)
    arm = build_image([layer(f"mt-arm-{oci}", 900)], architecture="arm64", variant="v8", oci=oci)
    idx = build_index([amd, arm], oci=oci)
    push_image(anon, repo_name, "img", amd)
    push_image(anon, repo_name, "idx", idx)
    assert anon.manifest(repo_name, "img").media_type == (MT.OCI_MANIFEST if oci else MT.DOCKER_MANIFEST)
    listed = anon.manifest(repo_name, "idx")
    assert listed.media_type == (MT.OCI_INDEX if oci else MT.DOCKER_LIST)
    assert listed.is_index
    assert listed.platforms() == ["linux/amd64", "linux/arm64/v8"]


def test_missing_manifest_is_empty(anon, repo_name, image):
    push_image(anon, repo_name, "v1", image)
    assert anon.manifest(repo_name, "nope") == {}
    assert not anon.manifest("no/such-repo", "latest")


def test_digest_by_head_and_platform(anon, repo_name, index):
    push_image(anon, repo_name, "multi", index)
    before = anon.stats["requests"].get("manifest", 0)
    assert anon.digest(repo_name, "multi") == sha(index.manifest_raw)
    assert anon.stats["requests"].get("manifest", 0) == before, "a plain digest needs only a HEAD"
    arm = index.children[1]
    assert anon.digest(repo_name, "multi", platform="linux/arm64/v8") == sha(arm.manifest_raw)
    assert anon.digest(repo_name, "multi", platform="linux/arm64") == sha(arm.manifest_raw)
    with pytest.raises(regframe.NotFoundError, match="no linux/s390x image"):
        anon.digest(repo_name, "multi", platform="linux/s390x")
    with pytest.raises(regframe.NotFoundError):
        anon.digest(repo_name, "missing")


def test_platform_variants_are_compared_as_containerd_normalises_them(anon, repo_name, tmp_path):
    """Many indexes list arm64 without a variant; arm64 with none is v8 (the README's own example asks for
    linux/arm64/v8), and arm with none is v7. Other architectures' variants must match exactly."""
    amd, arm64, arm = (
        build_image([layer("norm-amd", 500)]),
        build_image([layer("norm-arm64", 600)], architecture="arm64"),
        build_image([layer("norm-arm", 700)], architecture="arm"),
    )
    push_image(anon, repo_name, "multi", build_index([amd, arm64, arm]))
    for platform in ("linux/arm64/v8", "linux/arm64/8", "linux/arm64"):
        assert anon.digest(repo_name, "multi", platform=platform) == sha(arm64.manifest_raw), platform
    assert anon.digest(repo_name, "multi", platform="linux/arm/v7") == sha(arm.manifest_raw)
    for platform in ("linux/arm64/v9", "linux/arm/v6", "linux/amd64/v2"):
        with pytest.raises(regframe.NotFoundError, match=f"no {platform} image"):
            anon.digest(repo_name, "multi", platform=platform)
    pulled = anon.pull(repo_name, "multi", tmp_path / "arm64", platform="linux/arm64/v8")
    assert pulled.digest == sha(arm64.manifest_raw)


def test_blob_in_memory_and_streamed_to_path(anon, repo_name, image, tmp_path):
    push_image(anon, repo_name, "v1", image)
    config = image.config
    blob = anon.blob(repo_name, config.digest)
    assert blob.body == config.data
    assert json.loads(blob.body)["config"]["Labels"] == {"team": "a"}
    target = tmp_path / "sub" / "layer.tar.gz"
    seen = []
    streamed = anon.blob(repo_name, image.layers[0].digest, target, progress=lambda d, t: seen.append((d, t)))
    assert target.read_bytes() == image.layers[0].data
    assert streamed.path == target
    assert seen[-1] == (len(image.layers[0].data), len(image.layers[0].data))
    assert [p.name for p in target.parent.iterdir()] == ["layer.tar.gz"], "no temporary file left"
    before = anon.stats["total_requests"]
    with pytest.raises(IsADirectoryError, match=f"blob path= is a directory.*{target.parent.name}"):
        anon.blob(repo_name, image.layers[0].digest, target.parent)
    assert anon.stats["total_requests"] == before, "refused before any request"


def test_blob_size_and_manifest_sum(anon, repo_name, image, index):
    push_image(anon, repo_name, "v1", image)
    push_image(anon, repo_name, "multi", index)
    assert anon.blob_size(repo_name, image.layers[0].digest) == len(image.layers[0].data)
    assert anon.manifest_sum(anon.manifest(repo_name, "v1")) == sum(len(b.data) for b in image.layers)
    expected = sum(len(b.data) for child in index.children for b in child.layers)
    assert anon.manifest_sum(anon.manifest(repo_name, "multi")) == expected
    parsed = json.loads(image.manifest_raw)
    assert anon.manifest_sum(parsed) == sum(len(b.data) for b in image.layers), "a parsed manifest, as in Ruby"
    with pytest.raises(ValueError, match="pass what manifest\\(\\) returned"):
        anon.manifest_sum(json.loads(index.manifest_raw))
    with pytest.raises(ValueError, match="not str"):
        anon.manifest_sum("sha256:" + "0" * 64)
    with pytest.raises(regframe.NotFoundError):
        anon.blob_size(repo_name, "sha256:" + "1" * 64)


@pytest.mark.parametrize(
    ("action", "shown"),
    [
        (DropHeader("Content-Length"), "no Content-Length"),
        (SetHeader("Content-Length", "abc"), "Content-Length 'abc'"),
        (SetHeader("Content-Length", "-1"), "Content-Length '-1'"),
    ],
    ids=["missing", "not a number", "negative"],
)
def test_blob_size_without_a_usable_content_length_is_an_error(anon, repo_name, image, action, shown):
    """A HEAD answer without a size gave 0 (and a bad one a bare ValueError); the registry always sends one,
    so the fault proxy takes it away."""
    push_image(anon, repo_name, "v1", image)
    digest = image.layers[0].digest
    with FaultProxy(anon.url) as proxy:
        proxy.add_rule(Rule(path="/blobs/", method="HEAD", action=action))
        with (
            regframe.connect(proxy.url, docker_config=False) as client,
            pytest.raises(regframe.RegistryProtocolError) as error,
        ):
            client.blob_size(repo_name, digest)
    assert str(error.value).startswith(f"blob {digest} in {repo_name}: the registry's HEAD answer gives no size")
    assert shown in str(error.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.tags("../etc"),
        lambda r: r.tags("UPPER/case"),
        lambda r: r.manifest("ok/name", "bad tag"),
        lambda r: r.manifest("ok/name", "sha256:short"),
        lambda r: r.blob("ok/name", "md5:" + "0" * 32),
        lambda r: r.digest("ok/name", "v1", platform="linux"),
        lambda r: r.tags("", count=1),
        lambda r: r.tags("a" * 256),
    ],
)
def test_bad_input_never_reaches_the_network(anon, call):
    before = anon.stats["total_requests"]
    with pytest.raises(regframe.InvalidReferenceError):
        call(anon)
    assert anon.stats["total_requests"] == before


def test_open_timeout_bounds_connecting():
    # A real registry always accepts; a listening socket whose accept queue is full drops the
    # SYN instead, which is what an unreachable host looks like to the client.
    import socket
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.2)
    started = time.perf_counter()
    try:
        with pytest.raises(regframe.RegistryTimeoutError, match=r"open_timeout=0\.5"):
            regframe.connect(
                f"http://127.0.0.1:{port}", open_timeout=0.5, read_timeout=30, retries=0, docker_config=False
            )
        assert time.perf_counter() - started < 5, "bounded by open_timeout, not read_timeout"
    finally:
        for sock in [server, *fillers]:
            sock.close()
