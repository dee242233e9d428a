"""Writes against real registries: pull, push, tag, copy, rmtag, rmrepo, and that none of them loses data."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

import regframe
from regframe.testing import build_image, build_index, layer, local_registry, push_image
from regframe.testing.faultproxy import Action, FaultProxy, Rule, Status


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def second():
    """A second registry, the destination of copies and pushes."""
    with local_registry() as reg, regframe.connect(reg.url) as client:
        yield client


@pytest.fixture(scope="module")
def no_delete():
    with local_registry(delete=False) as reg, regframe.connect(reg.url) as client:
        yield client


IMAGE = build_image([layer("w-base", 4000), layer("w-app", 2200)], labels={"app": "w"})
INDEX = build_index(
    [
        build_image([layer("w-amd", 1800)], oci=True),
        build_image([layer("w-arm", 1900)], architecture="arm64", variant="v8", oci=True),
    ],
    oci=True,
)


def layout_digests(root) -> set[str]:
    return {f"sha256:{p.name}" for p in (root / "blobs" / "sha256").iterdir()}


def test_round_trip_push_pull_push(anon, second, repo_name, tmp_path):
    push_image(anon, repo_name, "v1", IMAGE)
    progress = []
    manifest = anon.pull(repo_name, "v1", tmp_path / "img", progress=lambda d, t: progress.append((d, t)))
    assert manifest.raw == IMAGE.manifest_raw
    expected = {IMAGE.config.digest, *(b.digest for b in IMAGE.layers), sha(IMAGE.manifest_raw)}
    assert layout_digests(tmp_path / "img") == expected
    for digest in expected:
        data = (tmp_path / "img" / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
        assert sha(data) == digest
    index = json.loads((tmp_path / "img" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == sha(IMAGE.manifest_raw)
    assert progress[-1] == (IMAGE.config.size + sum(b.size for b in IMAGE.layers),) * 2
    pushed = second.push(manifest, tmp_path / "img", repo_name, "copied")
    assert pushed == sha(IMAGE.manifest_raw) == second.digest(repo_name, "copied")


def test_pull_is_idempotent(anon, repo_name, tmp_path):
    push_image(anon, repo_name, "v1", IMAGE)
    anon.pull(repo_name, "v1", tmp_path)
    before = anon.stats["requests"].get("blob", 0)
    anon.pull(repo_name, "v1", tmp_path)
    assert anon.stats["requests"].get("blob", 0) == before, "verified blobs are not fetched again"


def test_pull_missing_returns_empty(anon, tmp_path):
    assert anon.pull("no/such", "v1", tmp_path / "x") == {}
    assert not (tmp_path / "x").exists()


def test_pulls_into_one_layout_at_once_keep_every_tag(anon, repo_name, tmp_path):
    """Each pull rewrites index.json; without a lock, pulls running together each write back what they read
    and lose the others' tags."""
    tags = [f"t{i}" for i in range(12)]
    for tag in tags:
        push_image(anon, repo_name, tag, build_image([layer(f"together-{tag}", 300)]))
    layout = tmp_path / "layout"

    def pull(tag: str) -> None:
        with regframe.connect(anon.url, docker_config=False) as client:
            client.pull(repo_name, tag, layout)

    with ThreadPoolExecutor(len(tags)) as pool:
        list(pool.map(pull, tags))
    index = json.loads((layout / "index.json").read_text())
    assert sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]) == sorted(tags)


def test_pull_index_one_platform_or_all(anon, repo_name, tmp_path):
    push_image(anon, repo_name, "multi", INDEX)
    arm = INDEX.children[1]
    one = anon.pull(repo_name, "multi", tmp_path / "arm", platform="linux/arm64")
    assert one.digest == sha(arm.manifest_raw)
    assert layout_digests(tmp_path / "arm") == {arm.config.digest, arm.layers[0].digest, sha(arm.manifest_raw)}
    anon.pull(repo_name, "multi", tmp_path / "all")
    every = {sha(INDEX.manifest_raw)} | {
        d for c in INDEX.children for d in (sha(c.manifest_raw), c.config.digest, c.layers[0].digest)
    }
    assert layout_digests(tmp_path / "all") == every


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed (make test installs it)")
def test_pulled_layout_is_readable_by_skopeo(anon, repo_name, tmp_path):
    # skopeo 1.9 (Debian 12) reads only OCI-typed manifests from a layout; the layout itself keeps
    # whatever type the registry served, so the digest stays the registry's.
    image = build_image([layer("skopeo-a", 3000), layer("skopeo-b", 1000)], oci=True)
    push_image(anon, repo_name, "v1", image)
    anon.pull(repo_name, "v1", tmp_path)
    done = subprocess.run(["skopeo", "inspect", f"oci:{tmp_path}:v1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["Digest"] == sha(image.manifest_raw)
    assert info["Layers"] == [b.digest for b in image.layers]


def test_push_index_from_layout_and_skip_existing(anon, second, repo_name, tmp_path):
    push_image(anon, repo_name, "multi", INDEX)
    manifest = anon.pull(repo_name, "multi", tmp_path)
    assert second.push(manifest, tmp_path, repo_name, "multi") == sha(INDEX.manifest_raw)
    uploads = second.stats["requests"].get("upload", 0)
    assert second.push(manifest, tmp_path, repo_name, "multi") == sha(INDEX.manifest_raw)
    assert second.stats["requests"].get("upload", 0) == uploads, "a second push uploads nothing"


def test_push_chunked_upload(anon, second, repo_name, tmp_path):
    push_image(anon, repo_name, "v1", IMAGE)
    manifest = anon.pull(repo_name, "v1", tmp_path)
    seen = []
    second.push(manifest, tmp_path, repo_name, "chunked", chunk_size=1000, progress=lambda d, t: seen.append((d, t)))
    total = IMAGE.config.size + sum(b.size for b in IMAGE.layers)
    assert seen[-1] == (total, total)
    assert second.blob(repo_name, IMAGE.layers[0].digest).body == IMAGE.layers[0].data


PREFIX = "/registry"


class UnderPrefix(Action):
    """What nginx's ``location /registry/ { proxy_pass http://registry:5000/; }`` does: strip the prefix,
    and (its default ``proxy_redirect``) turn the registry's absolute ``Location`` into ``/registry/v2/...``.
    No registry on this machine serves under a path prefix, so the fault proxy plays nginx."""

    def apply(self, ex) -> None:
        response = ex.forward(ex.target[len(PREFIX) :])
        location = response.get("Location")
        if location is not None and location.startswith(ex.client_origin + "/"):
            response.set("Location", PREFIX + location[len(ex.client_origin) :])
        ex.respond(response)


def test_uploads_reach_a_registry_served_under_a_path_prefix(anon, second, repo_name):
    """An upload ``Location`` of ``/registry/v2/...`` (the POST's and each PATCH's) is resolved against the
    request URL, not appended to the registry URL, which holds the prefix already."""
    push_image(anon, repo_name, "v1", IMAGE)
    data = b"under a path prefix" * 100
    with FaultProxy(second.url) as proxy:
        proxy.add_rule(Rule(path=f"^{PREFIX}/", action=UnderPrefix()))
        proxy.add_rule(Rule(action=Status(404)))
        with regframe.connect(proxy.url + PREFIX, docker_config=False) as under:
            copied = anon.copy(repo_name, "v1", under, repo_name, "v1")
            chunked = under.upload_blob(repo_name, data, chunk_size=256)
    assert copied == sha(IMAGE.manifest_raw) == second.digest(repo_name, "v1")
    assert second.blob(repo_name, chunked).body == data


def test_put_manifest_by_sha512_hashes_with_sha512(anon, repo_name):
    """The bytes are checked with the reference's own algorithm. Distribution 2.8 refuses sha512 manifests
    (400 DIGEST_INVALID), so the registry's answer decides; a registry with sha512 support is played by the
    fault proxy, answering 201 with that digest as distribution 3 does."""
    push_image(anon, repo_name, "v1", IMAGE)
    raw = IMAGE.manifest_raw
    sha512 = "sha512:" + hashlib.sha512(raw).hexdigest()
    sent = anon.stats["total_requests"]
    with pytest.raises(regframe.RegistryError) as refused:
        anon.put_manifest(repo_name, sha512, raw, IMAGE.media_type)
    assert not isinstance(refused.value, regframe.DigestMismatchError)
    assert (refused.value.status, refused.value.code) == (400, "DIGEST_INVALID")
    assert anon.stats["total_requests"] > sent
    with FaultProxy(anon.url) as proxy:
        proxy.add_rule(
            Rule(path="/manifests/sha512:", method="PUT", action=Status(201, b"", {"Docker-Content-Digest": sha512}))
        )
        with regframe.connect(proxy.url, docker_config=False) as capable:
            assert capable.put_manifest(repo_name, sha512, raw, IMAGE.media_type) == sha512
            wrong = "sha512:" + hashlib.sha512(raw + b" ").hexdigest()
            sent = capable.stats["total_requests"]
            with pytest.raises(regframe.DigestMismatchError, match=f"hash to {sha512}, not {wrong}"):
                capable.put_manifest(repo_name, wrong, raw, IMAGE.media_type)
            assert capable.stats["total_requests"] == sent


def test_push_missing_layer_fails_before_manifest(anon, second, repo_name, tmp_path):
    push_image(anon, repo_name, "v1", IMAGE)
    manifest = anon.pull(repo_name, "v1", tmp_path)
    missing = IMAGE.layers[1].digest
    (tmp_path / "blobs" / "sha256" / missing.split(":")[1]).unlink()
    with pytest.raises(regframe.MissingLayerError, match=missing) as info:
        second.push(manifest, tmp_path, repo_name + "-missing", "v1")
    assert info.value.digest == missing
    assert second.tags(repo_name + "-missing") == {}


def test_push_mounts_from_another_repository(anon, repo_name, tmp_path):
    push_image(anon, repo_name, "v1", IMAGE)
    manifest = anon.pull(repo_name, "v1", tmp_path)
    for blob in (tmp_path / "blobs" / "sha256").iterdir():
        if f"sha256:{blob.name}" != sha(IMAGE.manifest_raw):
            blob.unlink()
    assert anon.push(manifest, tmp_path, repo_name + "-mounted", "v1", mount_from=[repo_name])
    assert anon.blob(repo_name + "-mounted", IMAGE.layers[0].digest).body == IMAGE.layers[0].data


def test_tag_within_and_across_repositories(anon, repo_name):
    push_image(anon, repo_name, "v1", IMAGE)
    push_image(anon, repo_name, "multi", INDEX)
    assert anon.tag(repo_name, "v1", repo_name, "stable") == sha(IMAGE.manifest_raw)
    assert anon.manifest(repo_name, "stable").raw == IMAGE.manifest_raw
    assert anon.tag(repo_name, "multi", repo_name + "-other", "m") == sha(INDEX.manifest_raw)
    assert anon.manifest(repo_name + "-other", "m").raw == INDEX.manifest_raw
    arm = INDEX.children[1]
    assert anon.blob(repo_name + "-other", arm.layers[0].digest).body == arm.layers[0].data


def test_copy_multi_platform_index(anon, second, repo_name):
    push_image(anon, repo_name, "multi", INDEX)
    progress = []
    digest = anon.copy(repo_name, "multi", second, repo_name, "multi", progress=lambda d, t: progress.append(d))
    assert digest == sha(INDEX.manifest_raw) == second.digest(repo_name, "multi")
    assert progress[-1] == sum(b.size for child in INDEX.children for b in (child.config, *child.layers))
    for child in INDEX.children:
        assert second.manifest(repo_name, sha(child.manifest_raw)).raw == child.manifest_raw
    blobs = second.stats["requests"].get("upload", 0)
    anon.copy(repo_name, "multi", second, repo_name, "multi")
    assert second.stats["requests"].get("upload", 0) == blobs, "a second copy transfers nothing"


def test_copy_selected_platforms(anon, second, repo_name):
    push_image(anon, repo_name, "multi", INDEX)
    anon.copy(repo_name, "multi", second, repo_name, "arm-only", platforms=["linux/arm64/v8"])
    copied = second.manifest(repo_name, "arm-only")
    assert copied.platforms() == ["linux/arm64/v8"]


def test_copy_of_selected_platforms_refuses_an_empty_or_string_list_and_lists_each_platform_once(
    anon, second, repo_name
):
    push_image(anon, repo_name, "multi", INDEX)
    before = anon.stats["total_requests"]
    with pytest.raises(ValueError, match="platforms is empty"):
        anon.copy(repo_name, "multi", second, repo_name, "none", platforms=[])
    with pytest.raises(ValueError, match="platforms must be a list"):
        anon.copy(repo_name, "multi", second, repo_name, "str", platforms="linux/amd64")
    with pytest.raises(ValueError, match="newregistry must be a client"):
        anon.copy(repo_name, "multi", second.url, repo_name, "url")
    assert anon.stats["total_requests"] == before, "refused before any request"
    anon.copy(repo_name, "multi", second, repo_name, "twice", platforms=["linux/amd64", "linux/amd64"])
    assert second.manifest(repo_name, "twice").platforms() == ["linux/amd64"]


def test_a_single_image_of_another_platform_is_neither_pulled_nor_copied(anon, second, repo_name, tmp_path):
    """``digest(platform=)`` says an arm64-only image has no linux/amd64; pull and copy agree."""
    arm = INDEX.children[1]
    push_image(anon, repo_name, "arm", arm)
    with pytest.raises(regframe.NotFoundError, match="linux/amd64"):
        anon.pull(repo_name, "arm", tmp_path / "layout", platform="linux/amd64")
    with pytest.raises(regframe.NotFoundError, match="linux/amd64"):
        anon.copy(repo_name, "arm", second, repo_name, "arm", platforms=["linux/amd64"])
    assert second.tags(repo_name) == {}
    assert anon.pull(repo_name, "arm", tmp_path / "layout", platform="linux/arm64/v8").digest == sha(arm.manifest_raw)


def test_an_index_of_indexes_is_pulled_and_copied_whole(anon, second, repo_name, tmp_path):
    """An index may list another index (OCI image spec); every manifest and blob under it comes along."""
    push_image(anon, repo_name, "inner", INDEX)
    entry = {"mediaType": INDEX.media_type, "digest": sha(INDEX.manifest_raw), "size": len(INDEX.manifest_raw)}
    outer = json.dumps({"schemaVersion": 2, "mediaType": INDEX.media_type, "manifests": [entry]}).encode()
    anon.put_manifest(repo_name, "outer", outer, INDEX.media_type)
    layout = tmp_path / "layout"
    anon.pull(repo_name, "outer", layout)
    everything = {sha(outer), sha(INDEX.manifest_raw)} | {
        digest
        for child in INDEX.children
        for digest in (sha(child.manifest_raw), child.config.digest, *(b.digest for b in child.layers))
    }
    assert everything <= layout_digests(layout)
    anon.copy(repo_name, "outer", second, repo_name, "outer")
    for child in INDEX.children:
        assert second.manifest(repo_name, sha(child.manifest_raw)).raw == child.manifest_raw
        assert all(second.blob_exists(repo_name, b.digest) for b in (child.config, *child.layers))
    assert second.digest(repo_name, "outer") == sha(outer)


def test_rmtag_spares_tags_on_the_same_digest(anon, repo_name):
    for tag in ("a", "b", "c"):
        push_image(anon, repo_name, tag, IMAGE)
    result = anon.rmtag(repo_name, "b")
    assert result["method"] in ("placeholder", "delete-by-tag")
    hashes = anon.tags(repo_name, with_hashes=True)["hashes"]
    assert hashes == {"a": sha(IMAGE.manifest_raw), "c": sha(IMAGE.manifest_raw)}


@pytest.mark.parametrize("method", ["auto", "placeholder"])
def test_rmtag_refuses_a_digest_and_loses_no_tag(anon, repo_name, method):
    """A digest in place of the tag would take every tag on the image with it."""
    for tag in ("v1", "latest", "stable"):
        push_image(anon, repo_name, tag, IMAGE)
    before = anon.stats["total_requests"]
    with pytest.raises(regframe.InvalidReferenceError, match=r"rmtag removes one tag; sha256:\w+ is a digest"):
        anon.rmtag(repo_name, sha(IMAGE.manifest_raw), method=method)
    assert anon.stats["total_requests"] == before, "refused before any request"
    assert sorted(anon.tags(repo_name)["tags"]) == ["latest", "stable", "v1"]


def test_rmtag_of_a_platform_another_tags_index_lists_keeps_that_platform(anon, repo_name):
    """A per-architecture tag on one entry of a multi-platform image: deleting its manifest by digest would
    take that platform from the image's tag too."""
    arm = INDEX.children[1]
    push_image(anon, repo_name, "v1", INDEX)
    push_image(anon, repo_name, "v1-arm64", arm)
    result = anon.rmtag(repo_name, "v1-arm64")
    assert (result["method"], result["kept"]) == ("placeholder", ["v1"])
    assert anon.tags(repo_name)["tags"] == ["v1"]
    assert anon.manifest(repo_name, sha(arm.manifest_raw)).raw == arm.manifest_raw, "the platform is still there"


def test_rmtag_alone_deletes_the_manifest(anon, repo_name):
    push_image(anon, repo_name, "only", IMAGE)
    assert anon.rmtag(repo_name, "only")["method"] == "delete-manifest"
    assert anon.manifest(repo_name, sha(IMAGE.manifest_raw)) == {}


def test_rmrepo_deletes_every_manifest(anon, repo_name):
    push_image(anon, repo_name, "v1", IMAGE)
    push_image(anon, repo_name, "multi", INDEX)
    deleted = anon.rmrepo(repo_name)
    assert set(deleted) == {
        sha(IMAGE.manifest_raw),
        sha(INDEX.manifest_raw),
        *(sha(c.manifest_raw) for c in INDEX.children),
    }
    assert anon.tags(repo_name) == {}


def test_deletion_disabled_is_a_clear_error_and_loses_nothing(no_delete, repo_name):
    for tag in ("a", "b"):
        push_image(no_delete, repo_name, tag, IMAGE)
    with pytest.raises(regframe.DeleteDisabledError, match="deletion disabled"):
        no_delete.rmtag(repo_name, "a")
    with pytest.raises(regframe.DeleteDisabledError):
        no_delete.rmrepo(repo_name)
    assert sorted(no_delete.tags(repo_name)["tags"]) == ["a", "b"]
    assert no_delete.digest(repo_name, "a") == sha(IMAGE.manifest_raw)
