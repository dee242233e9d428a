"""Hostile blob bodies and hostile layout directories: bodies are read no further than the size a
descriptor declares, and nothing inside an OCI layout is read or written through a symbolic link.

The registry is a real one (Debian docker-registry 2.8); bodies longer than declared, self-consistent
hostile manifests and configs, and registries that do not mount come from the fault proxy, because a
real registry cannot be made to serve them. Expected values come from the bytes the tests built.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import regframe
from regframe.client import mediatypes as MT
from regframe.client.atomic_files import write_atomically
from regframe.testing import build_image, build_index, layer, local_registry, push_image
from regframe.testing.faultproxy import Action, FaultProxy, Oversize, Rule

MB = 1024 * 1024
ENDLESS = 32 * MB
IMAGE = build_image([layer("security-base", 3000), layer("security-app", 200_000)], labels={"app": "security"})
INDEX = build_index(
    [
        build_image([layer("security-amd", 1200)], oci=True),
        build_image([layer("security-arm", 1300)], architecture="arm64", variant="v8", oci=True),
    ],
    oci=True,
)
REPO = "security/app"
SECRET = "alice:s3cret-password"
FAKE_DOCKER_CONFIG = json.dumps(
    {"auths": {"registry.example.com": {"auth": base64.b64encode(SECRET.encode()).decode()}}, "manifests": []}
).encode()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def connect(url: str) -> regframe.Registry:
    return regframe.connect(url, docker_config=False)


def files_under(root: Path) -> list[Path]:
    """Regular files only: a planted link is not part of what was written."""
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def applied(proxy: FaultProxy, rule: Rule) -> int:
    return next(s.applied for s in proxy.stats.rules if s.rule is rule)


class Serve(Action):
    """Answer with these bytes and a matching ``Docker-Content-Digest``: a hostile registry is self-consistent."""

    def __init__(self, body: bytes, content_type: str):
        self.body, self.content_type = body, content_type

    def apply(self, ex) -> None:
        ex.reply(200, self.body, {"Content-Type": self.content_type, "Docker-Content-Digest": sha(self.body)})


class NoMount(Action):
    """Start a plain upload instead of the cross-repository mount asked for, as a registry that cannot mount does."""

    def apply(self, ex) -> None:
        ex.respond(ex.forward(ex.path))


class Presigned(Action):
    """307 to the blob at another origin (``localhost`` for ``127.0.0.1``) with a signature in the query, as
    a registry on S3 or GCS storage hands out presigned URLs."""

    def __init__(self, port: int, signature: str):
        self.port, self.signature = port, signature

    def apply(self, ex) -> None:
        location = f"http://localhost:{self.port}{ex.path}?X-Amz-Signature={self.signature}"
        ex.reply(307, b"", {"Location": location})


@pytest.fixture(scope="module")
def registry():
    with local_registry() as reg, connect(reg.url) as client:
        push_image(client, REPO, "v1", IMAGE)
        push_image(client, REPO, "multi", INDEX)
        yield reg


@pytest.fixture(scope="module")
def direct(registry):
    with connect(registry.url) as client:
        yield client


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.url, seed=0) as fault_proxy:
        yield fault_proxy


def endless(digest: str, announce: bool = False) -> Rule:
    return Rule(path=f"/blobs/{digest}$", method="GET", action=Oversize(ENDLESS, announce=announce))


def assert_no_tagged_layout(root: Path) -> None:
    assert not (root / "index.json").exists()
    for path in files_under(root):  # what was written before the failure is complete and verified
        assert not path.name.endswith(".part")
        assert sha(path.read_bytes()) == f"sha256:{path.name}"


# -- bodies longer than declared -------------------------------------------------------------------


@pytest.mark.parametrize("announce", [False, True], ids=["streamed", "announced"])
def test_pull_stops_reading_a_layer_at_its_declared_size(proxy, tmp_path, announce):
    small = IMAGE.layers[0]
    proxy.add_rule(endless(small.digest, announce))
    with connect(proxy.url) as reg:
        with pytest.raises((regframe.RegistryProtocolError, regframe.DigestMismatchError), match=small.digest):
            reg.pull(REPO, "v1", tmp_path / "layout")
        read = reg.stats["bytes_read"]
    assert read <= IMAGE.manifest_size + IMAGE.config.size + 2 * small.size + 1
    assert not (tmp_path / "layout" / "blobs" / "sha256" / small.digest.split(":")[1]).exists()
    assert_no_tagged_layout(tmp_path / "layout")


def test_layer_without_a_declared_size_is_cut_at_the_size_the_registry_gives(proxy, tmp_path):
    manifest = json.loads(IMAGE.manifest_raw)
    del manifest["layers"][0]["size"]
    raw = json.dumps(manifest).encode()
    small = IMAGE.layers[0]
    proxy.add_rule(Rule(path=f"^/v2/{REPO}/manifests/v1$", method="GET", action=Serve(raw, MT.DOCKER_MANIFEST)))
    proxy.add_rule(endless(small.digest))
    with connect(proxy.url) as reg:
        with pytest.raises((regframe.RegistryProtocolError, regframe.DigestMismatchError), match=small.digest):
            reg.pull(REPO, "v1", tmp_path / "layout")
        read = reg.stats["bytes_read"]
    assert read <= len(raw) + IMAGE.config.size + 2 * small.size + 1
    assert_no_tagged_layout(tmp_path / "layout")


def test_copy_stops_reading_a_layer_at_its_declared_size(proxy, direct):
    small = IMAGE.layers[0]
    target = "security/copy-endless"
    proxy.add_rule(endless(small.digest))
    with connect(proxy.url) as source:
        with pytest.raises((regframe.RegistryProtocolError, regframe.DigestMismatchError), match=small.digest):
            source.copy(REPO, "v1", direct, target, "copied")
        read = source.stats["bytes_read"]
    assert read <= IMAGE.manifest_size + IMAGE.config.size + 2 * small.size + 1
    assert direct.manifest_exists(target, "copied") is None
    assert not direct.blob_exists(target, small.digest)


def test_tag_across_repositories_stops_reading_a_layer_at_its_declared_size(proxy, direct):
    small = IMAGE.layers[0]
    target = "security/tag-endless"
    mounts = proxy.add_rule(Rule(path=r"/blobs/uploads/\?.*mount=", method="POST", action=NoMount()))
    proxy.add_rule(endless(small.digest))
    with connect(proxy.url) as reg:
        with pytest.raises((regframe.RegistryProtocolError, regframe.DigestMismatchError), match=small.digest):
            reg.tag(REPO, "v1", target, "tagged")
        read = reg.stats["bytes_read"]
    assert applied(proxy, mounts) >= 1, "the blobs were streamed, not mounted"
    assert read <= IMAGE.manifest_size + IMAGE.config.size + 2 * small.size + 1
    assert direct.manifest_exists(target, "tagged") is None
    assert not direct.blob_exists(target, small.digest)


def test_blob_in_memory_stops_at_max_size_or_at_the_default_cap(proxy):
    small = IMAGE.layers[0]
    proxy.add_rule(Rule(path=f"/blobs/{small.digest}$", method="GET", action=Oversize(96 * MB)))
    with connect(proxy.url) as reg:
        with pytest.raises(regframe.RegistryProtocolError, match="over"):
            reg.blob(REPO, small.digest, max_size=small.size)
        capped = reg.stats["bytes_read"]
        with pytest.raises(regframe.RegistryProtocolError, match="path="):
            reg.blob(REPO, small.digest)
        default = reg.stats["bytes_read"] - capped
    assert capped <= 2 * small.size + 1
    assert default <= 64 * MB + MB


def test_platform_digest_reads_the_config_no_further_than_its_declared_size(proxy):
    proxy.add_rule(endless(IMAGE.config.digest))
    with connect(proxy.url) as reg:
        with pytest.raises(regframe.RegistryProtocolError, match=IMAGE.config.digest):
            reg.digest(REPO, "v1", platform="linux/amd64")
        read = reg.stats["bytes_read"]
    assert read <= IMAGE.manifest_size + 2 * IMAGE.config.size + 1


def hostile_image(config: bytes) -> bytes:
    """An OCI manifest naming ``config`` with its true digest and size."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MT.OCI_MANIFEST,
            "config": {"mediaType": MT.OCI_CONFIG, "digest": sha(config), "size": len(config)},
            "layers": [IMAGE.layers[0].descriptor()],
        }
    ).encode()


HOSTILE_CONFIGS = {
    "30-MB": json.dumps({"os": "linux", "architecture": "amd64", "pad": "x" * 30_000_000}).encode(),
    "binary": bytes(range(128, 256)),
    "json-array": b'[{"os": "linux", "architecture": "amd64"}]',
    "not-json": b"os=linux architecture=amd64",
    "os-number": b'{"os": 5, "architecture": "amd64"}',
}


@pytest.mark.parametrize("config", HOSTILE_CONFIGS.values(), ids=HOSTILE_CONFIGS.keys())
def test_hostile_config_is_a_protocol_error_for_platform_digest(proxy, config):
    proxy.add_rule(
        Rule(path=f"^/v2/{REPO}/manifests/v1$", method="GET", action=Serve(hostile_image(config), MT.OCI_MANIFEST))
    )
    blob = proxy.add_rule(Rule(path=f"/blobs/{sha(config)}$", method="GET", action=Serve(config, MT.OCI_CONFIG)))
    with connect(proxy.url) as reg:
        with pytest.raises(regframe.RegistryProtocolError, match="config"):
            reg.digest(REPO, "v1", platform="linux/amd64")
        read = reg.stats["bytes_read"]
    assert read <= 17 * MB
    if len(config) > 16 * MB:
        assert applied(proxy, blob) == 0, "a config declared over the cap is refused before it is requested"


# -- an index whose child is gone ------------------------------------------------------------------


def test_a_presigned_storage_url_is_not_logged_with_its_signature(registry, proxy, caplog):
    """A presigned URL's query is a credential for the blob: urllib3's DEBUG log line of the storage request
    (the debug logging a user turns on to see what regframe sends) shows the path, not the signature."""
    signature = "b5f0c3d2e1presigned"
    proxy.add_rule(Rule(path=r"/blobs/sha256:", method="GET", action=Presigned(urlsplit(registry.url).port, signature)))
    caplog.set_level(logging.DEBUG)
    with connect(proxy.url) as reg:
        layer_digest = IMAGE.manifest["layers"][0]["digest"]
        assert reg.blob(REPO, layer_digest).body
    pool = [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool"]
    [storage] = [line for line in pool if '"GET ' in line and "localhost" in line]
    assert f"/blobs/{layer_digest}?" in storage
    assert signature not in caplog.text


def test_index_with_a_missing_child_is_a_clear_not_found_error(direct, tmp_path):
    repository = "security/missing-child"
    push_image(direct, repository, "multi", INDEX)
    present, gone = INDEX.children
    assert direct.delete_manifest(repository, gone.digest)
    for platform in (None, "linux/arm64"):
        with pytest.raises(regframe.NotFoundError, match=gone.digest) as info:
            direct.pull(repository, "multi", tmp_path / "layout", platform=platform)
        assert INDEX.digest in str(info.value)
        assert not (tmp_path / "layout" / "index.json").exists()
    with pytest.raises(regframe.NotFoundError, match=gone.digest):
        direct.copy(repository, "multi", direct, "security/missing-child-copy", "multi")
    assert direct.manifest_exists("security/missing-child-copy", "multi") is None
    with pytest.raises(regframe.NotFoundError, match=gone.digest):
        direct.manifest_sum(direct.manifest(repository, "multi"))
    pulled = direct.pull(repository, "multi", tmp_path / "amd", platform="linux/amd64")
    assert pulled.raw == present.manifest_raw


# -- pushing from a layout -------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [100, 300_000])
def test_push_refuses_a_local_blob_whose_size_differs_from_its_descriptor(direct, tmp_path, declared):
    root = tmp_path / "layout"
    direct.pull(REPO, "v1", root)
    manifest = json.loads(IMAGE.manifest_raw)
    big = manifest["layers"][1]
    big["size"] = declared
    target = f"security/push-size-{declared}"
    uploads = direct.stats["requests"].get("upload", 0)
    with pytest.raises(ValueError, match=big["digest"]):
        direct.push(manifest, root, target, "v1")
    assert direct.stats["requests"].get("upload", 0) == uploads, "nothing was uploaded"
    assert direct.manifest_exists(target, "v1") is None


# -- links planted in the layout -------------------------------------------------------------------


def plant(root: Path, what: str, victim_dir: Path) -> tuple[Path, Path]:
    """A link at ``what`` inside ``root`` pointing at a victim outside it; returns the link and the victim."""
    config_name = IMAGE.config.digest.split(":")[1]
    link = root / what
    victim_dir.mkdir()
    if what in ("index.json", "oci-layout"):
        victim = victim_dir / "config.json"
        victim.write_bytes(FAKE_DOCKER_CONFIG)
        root.mkdir()
        (root / what).symlink_to(victim)
    elif what == "blob":
        victim = victim_dir / "config.json"
        victim.write_bytes(IMAGE.config.data)  # even the right bytes are refused behind a link
        (root / "blobs" / "sha256").mkdir(parents=True)
        link = root / "blobs" / "sha256" / config_name
        link.symlink_to(victim)
    elif what == "blobs":
        victim = victim_dir
        root.mkdir()
        (root / "blobs").symlink_to(victim_dir, target_is_directory=True)
    else:
        victim = victim_dir
        (root / "blobs").mkdir(parents=True)
        (root / "blobs" / "sha256").symlink_to(victim_dir, target_is_directory=True)
    return link, victim


@pytest.mark.parametrize("what", ["index.json", "oci-layout", "blob", "blobs", "blobs/sha256"])
def test_pull_refuses_links_planted_in_the_layout(direct, tmp_path, what):
    root = tmp_path / "layout"
    link, victim = plant(root, what, tmp_path / "victim")
    before = {p: p.read_bytes() for p in ([victim] if victim.is_file() else victim.iterdir())}
    with pytest.raises(OSError, match="symbolic link") as info:
        direct.pull(REPO, "v1", root)
    assert str(link) in str(info.value), "the error names the path"
    after = {p: p.read_bytes() for p in ([victim] if victim.is_file() else victim.iterdir())}
    assert after == before, "the victim is untouched"
    assert link.is_symlink(), "the link was neither followed nor replaced"
    assert not (root / "index.json").exists() or (root / "index.json").is_symlink()
    for path in files_under(root):
        assert SECRET.encode() not in path.read_bytes()
        assert base64.b64encode(SECRET.encode()) not in path.read_bytes()


def test_pushing_from_a_layout_with_a_linked_index_json_is_refused(direct, tmp_path):
    root = tmp_path / "layout"
    direct.pull(REPO, "v1", root)
    victim = tmp_path / "victim.json"
    victim.write_bytes((root / "index.json").read_bytes())
    (root / "index.json").unlink()
    (root / "index.json").symlink_to(victim)
    with pytest.raises(OSError, match=r"index\.json"):
        direct.push(None, root, "security/push-linked", "v1")
    assert direct.manifest_exists("security/push-linked", "v1") is None


# -- permissions and atomic writes -----------------------------------------------------------------


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_pulled_files_follow_the_umask(direct, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        direct.pull(REPO, "v1", tmp_path / "layout")
    finally:
        os.umask(old)
    files = files_under(tmp_path / "layout")
    assert len(files) == 2 + 1 + 1 + len(IMAGE.layers)  # oci-layout, index.json, manifest, config, layers
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {mode}


def test_write_atomically_replaces_a_planted_link_and_follows_the_umask(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.txt").symlink_to(victim)
    old = os.umask(0o022)
    try:
        written = write_atomically(out / "summary.txt", [b"new ", b"content"])
    finally:
        os.umask(old)
    assert written == len(b"new content")
    assert victim.read_text() == "keep me"
    assert not (out / "summary.txt").is_symlink()
    assert (out / "summary.txt").read_bytes() == b"new content"
    assert stat.S_IMODE((out / "summary.txt").stat().st_mode) == 0o644
    assert [p.name for p in out.iterdir()] == ["summary.txt"], "no temporary file left"


def test_write_atomically_under_a_root_refuses_a_linked_directory(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "sub").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OSError, match=r"symbolic link.*sub"):
        write_atomically(root / "sub" / "file.csv", [b"x"], root=root)
    assert list(elsewhere.iterdir()) == []
    assert write_atomically(root / "new" / "file.csv", [b"x"], root=root) == 1
    assert (root / "new" / "file.csv").read_bytes() == b"x"
