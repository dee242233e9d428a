"""Faults and hostile servers: a fault proxy in front of real registries (Debian docker-registry 2.8).

Every expected value comes from bytes the tests built and pushed themselves, or from recorded real
responses read here; never from the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import signal
import subprocess
import sys
import threading
import time
import traceback
import tracemalloc
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml

import regframe
from regframe.analysis import stale_tags
from regframe.client import mediatypes as MT
from regframe.policy import Policy
from regframe.testing import build_image, build_index, layer, local_registry, make_fleet, push_image, seed
from regframe.testing.faultproxy import (
    Action,
    Delay,
    DropHeader,
    FaultProxy,
    FlipBytes,
    ForeignLink,
    Hang,
    LoopLink,
    MalformedJSON,
    Oversize,
    RateLimit,
    RecordingServer,
    RedirectTo,
    Reset,
    Rule,
    SetHeader,
    Status,
    TagPagination,
    Truncate,
)

CASSETTES = Path(__file__).parent / "data" / "cassettes"
needs_cassettes = pytest.mark.skipif(not CASSETTES.is_dir(), reason=f"recorded responses not found at {CASSETTES}")
MB = 1024 * 1024
IMAGE = build_image([layer("faults-base", 3000), layer("faults-app", 200_000)], labels={"app": "faults"})
OTHER = build_image([layer("faults-other", 1500)])
INDEX = build_index(
    [
        build_image([layer("faults-amd", 1200)], oci=True),
        build_image([layer("faults-arm", 1300)], architecture="arm64", variant="v8", oci=True),
    ],
    oci=True,
)
REPO = "faults/app"
TAG_REPO = "faults/tags"
TAGS = ["v10", "latest", "v2", "alpha", "v1", "beta-3", "Zulu"]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def connect(url: str, **options) -> regframe.Registry:
    options.setdefault("docker_config", False)
    return regframe.connect(url, **options)


def applied(proxy: FaultProxy, rule: Rule) -> int:
    return next(s.applied for s in proxy.stats.rules if s.rule is rule)


def matched(proxy: FaultProxy, rule: Rule) -> int:
    return next(s.matched for s in proxy.stats.rules if s.rule is rule)


# -- actions the proxy does not ship ---------------------------------------------------------------


class SetHeaders(Action):
    """Several headers on one response (the first rule that fires is the only one applied)."""

    def __init__(self, headers: dict[str, str]):
        self.headers = headers

    def apply(self, ex) -> None:
        response = ex.forward()
        for name, value in self.headers.items():
            response.set(name, value)
        ex.respond(response)


class ForwardThenReset(Action):
    """The registry does the work, then the answer is lost: what a client sees when a link drops."""

    def apply(self, ex) -> None:
        ex.forward().read()
        ex.reset()


class RewriteRealm(Action):
    """Point the registry's bearer challenge at another token endpoint, keeping service and scope."""

    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def apply(self, ex) -> None:
        response = ex.forward()
        challenge = response.get("WWW-Authenticate")
        if challenge:
            response.set("WWW-Authenticate", challenge.replace(self.old, self.new))
        ex.respond(response)


# -- registries -------------------------------------------------------------------------------------

FLEET = make_fleet(
    repositories=4,
    tags_per_repo=6,
    base_layers=1,
    multi_platform_ratio=0.25,
    oci_ratio=0.5,
    seed=11,
    layer_size_range=(300, 2000),
    base_layer_size_range=(2000, 4000),
)


@pytest.fixture(scope="module")
def fleet_reg():
    """A registry holding only the fleet, for crawls."""
    with local_registry() as reg, connect(reg.url) as client:
        seed(client, FLEET)
        yield reg


@pytest.fixture(scope="module")
def registry():
    with local_registry() as reg, connect(reg.url) as client:
        push_image(client, REPO, "v1", IMAGE)
        push_image(client, REPO, "multi", INDEX)
        for tag in TAGS:
            push_image(client, TAG_REPO, tag, OTHER)
        yield reg


@pytest.fixture(scope="module")
def direct(registry):
    with connect(registry.url) as client:
        yield client


@pytest.fixture(scope="module")
def basic_reg():
    with local_registry(auth="basic") as reg:
        with connect(reg.url, user="alice", password=reg.users["alice"]) as client:
            push_image(client, REPO, "v1", IMAGE)
            push_image(client, REPO, "other", OTHER)
        yield reg


@pytest.fixture(scope="module")
def token_reg():
    with local_registry(auth="token") as reg:
        with connect(reg.url, user="alice", password=reg.users["alice"]) as client:
            push_image(client, REPO, "v1", IMAGE)
            push_image(client, REPO, "other", OTHER)
        yield reg


@pytest.fixture(params=["basic", "token"])
def auth_reg(request, basic_reg, token_reg):
    return basic_reg if request.param == "basic" else token_reg


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.url, seed=0) as fault_proxy:
        yield fault_proxy


def fleet_tag(index: int = 0) -> tuple[str, str]:
    repository, tag, _ = sorted(FLEET.items(), key=lambda item: (item[0], item[1]))[index]
    return repository, tag


# -- flaky networks -------------------------------------------------------------------------------


def test_crawl_through_random_resets_and_5xx_equals_the_clean_crawl(fleet_reg):
    with connect(fleet_reg.url) as client:
        baseline = client.inventory(progress=False, workers=4)
    assert baseline.errors.empty and len(baseline.tags) == FLEET.tag_count
    with FaultProxy(fleet_reg.url, seed=5) as proxy:
        for action, probability in ((Reset(), 0.05), (Status(502), 0.02), (Status(503), 0.02), (Status(504), 0.02)):
            proxy.add_rule(Rule(action=action, probability=probability))
        with connect(proxy.url, retries=6) as reg:
            before = dict(proxy.stats.actions)
            inv = reg.inventory(progress=False, workers=4)
        faults = {k: v - before.get(k, 0) for k, v in proxy.stats.actions.items()}
    assert faults.get("Reset", 0) > 0 and faults.get("Status", 0) > 0, faults
    assert inv.errors.empty, inv.errors
    for name in ("catalog", "tags", "manifests", "layers"):
        pd.testing.assert_frame_equal(getattr(inv, name), getattr(baseline, name))
    assert inv.stats["retries"] > 0
    assert inv.stats["retries"] == sum(faults.values()), "each fault cost exactly one retry"


def test_rate_limit_waits_for_retry_after_and_does_not_hammer(proxy):
    rule = proxy.add_rule(Rule(path=r"/tags/list", action=RateLimit(1), times=1))
    with connect(proxy.url) as reg:
        started = time.monotonic()
        result = reg.tags(TAG_REPO)
        elapsed = time.monotonic() - started
        assert sorted(result["tags"]) == sorted(TAGS)
        assert elapsed >= 0.95
        assert matched(proxy, rule) == 2, "one 429, then one request that succeeded"
        assert reg.stats["retries"] == {"429": 1}


def test_persistent_rate_limit_gives_up_after_the_retries(proxy):
    rule = proxy.add_rule(Rule(path=r"/tags/list", action=RateLimit(0.2)))
    with connect(proxy.url, retries=2) as reg:
        started = time.monotonic()
        with pytest.raises(regframe.RateLimitedError, match="429") as info:
            reg.tags(TAG_REPO)
        assert time.monotonic() - started >= 0.4
    assert info.value.retry_after == pytest.approx(0.2)
    assert applied(proxy, rule) == 3


def test_retry_after_beyond_reason_fails_at_once(proxy):
    rule = proxy.add_rule(Rule(path=r"/tags/list", action=RateLimit(3600)))
    with connect(proxy.url) as reg:
        started = time.monotonic()
        with pytest.raises(regframe.RateLimitedError) as info:
            reg.tags(TAG_REPO)
        assert time.monotonic() - started < 1
    assert info.value.retry_after == pytest.approx(3600, abs=1)
    assert applied(proxy, rule) == 1


def test_hung_server_times_out_naming_the_timeout(proxy):
    proxy.add_rule(Rule(path=r"/manifests/", method="GET", action=Hang()))
    with connect(proxy.url, read_timeout=0.5, retries=0) as reg:
        started = time.monotonic()
        with pytest.raises(regframe.RegistryTimeoutError, match=r"read_timeout=0\.5") as info:
            reg.manifest(REPO, "v1")
        elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 2.5
    assert f"/v2/{REPO}/manifests/v1" in str(info.value)


def test_crawl_with_one_hanging_manifest_records_it_and_goes_on(fleet_reg):
    repository, tag = fleet_tag(1)
    with FaultProxy(fleet_reg.url) as proxy:
        proxy.add_rule(Rule(path=f"^/v2/{repository}/manifests/{tag}$", method="GET", action=Hang()))
        with connect(proxy.url, read_timeout=0.5, retries=1) as reg:
            started = time.monotonic()
            inv = reg.inventory(progress=False, workers=4)
            elapsed = time.monotonic() - started
    assert elapsed < 5
    errors = inv.errors.astype(str)
    assert list(errors[["repository", "tag", "stage"]].itertuples(index=False, name=None)) == [
        (repository, tag, "manifest")
    ]
    assert "RegistryTimeoutError" in errors["error"].iloc[0] and "read_timeout" in errors["error"].iloc[0]
    got = set(zip(inv.tags["repository"].astype(str), inv.tags["tag"].astype(str), strict=True))
    assert got == {(r, t) for r, t, _ in FLEET.items()} - {(repository, tag)}


@pytest.mark.parametrize("action", [Reset(), Status(502), Status(503), Status(504)], ids=repr)
def test_idempotent_requests_are_retried_a_bounded_number_of_times(proxy, action):
    path = f"^/v2/{REPO}/manifests/v1$"
    persistent = proxy.add_rule(Rule(path=path, method="GET", action=action))
    with connect(proxy.url, retries=2) as reg:
        started = time.monotonic()
        with pytest.raises(regframe.RegistryError) as info:
            reg.manifest(REPO, "v1")
        elapsed = time.monotonic() - started
    assert applied(proxy, persistent) == 3, "one attempt and two retries, no more"
    assert elapsed >= 0.25 * 0.5 + 0.5 * 0.5, "two backoff sleeps of at least half their nominal length"
    if isinstance(action, Reset):
        assert isinstance(info.value, regframe.RegistryConnectionError)
    else:
        assert info.value.status == action.code
    proxy.clear_rules()
    transient = proxy.add_rule(Rule(path=path, method="GET", action=action, times=2))
    with connect(proxy.url, retries=2) as reg:
        assert reg.manifest(REPO, "v1").raw == IMAGE.manifest_raw
        assert reg.stats["total_retries"] == 2
    assert matched(proxy, transient) == 3


@pytest.mark.parametrize("action", [Reset(), Status(502), Status(503)], ids=repr)
def test_upload_post_is_not_blindly_retried(proxy, action):
    rule = proxy.add_rule(Rule(path=r"/blobs/uploads/$", method="POST", action=action))
    data = b"post-not-retried-" + repr(action).encode()
    with connect(proxy.url, retries=3) as reg:
        with pytest.raises(regframe.RegistryError):
            reg.upload_blob("faults/post", data)
        assert reg.stats["total_retries"] == 0
    assert matched(proxy, rule) == 1


def test_upload_post_is_retried_after_429(proxy):
    rule = proxy.add_rule(Rule(path=r"/blobs/uploads/$", method="POST", action=RateLimit(0.1), times=1))
    data = b"post-retried-after-429"
    with connect(proxy.url) as reg:
        assert reg.upload_blob("faults/post", data) == sha(data)
        assert reg.blob("faults/post", sha(data)).body == data
    assert matched(proxy, rule) == 2


# -- corrupt content ----------------------------------------------------------------------------


BLOB_FAULTS = [Truncate(0.5), FlipBytes(3)]


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("action", BLOB_FAULTS, ids=repr)
def test_corrupt_blob_is_refused_and_leaves_no_file(proxy, tmp_path, action):
    big = IMAGE.layers[1]
    proxy.add_rule(Rule(path=f"/blobs/{big.digest}$", method="GET", action=action))
    target = tmp_path / "out" / "layer.tar.gz"
    with connect(proxy.url) as reg:
        with pytest.raises(regframe.DigestMismatchError, match=big.digest):
            reg.blob(REPO, big.digest, path=target)
        with pytest.raises(regframe.DigestMismatchError):
            reg.blob(REPO, big.digest)
    assert not target.exists()
    assert files_under(tmp_path) == [], "no temporary file left behind"


@pytest.mark.parametrize("action", BLOB_FAULTS, ids=repr)
def test_corrupt_blob_fails_pull_without_a_tagged_layout(proxy, tmp_path, action):
    big = IMAGE.layers[1]
    proxy.add_rule(Rule(path=f"/blobs/{big.digest}$", method="GET", action=action))
    with connect(proxy.url) as reg, pytest.raises(regframe.DigestMismatchError):
        reg.pull(REPO, "v1", tmp_path / "layout")
    left = files_under(tmp_path)
    assert not (tmp_path / "layout" / "blobs" / "sha256" / big.digest.split(":")[1]).exists()
    assert not (tmp_path / "layout" / "index.json").exists()
    assert not [p for p in left if p.name.endswith(".part")]
    for path in left:  # whatever was written before the failure is complete and verified
        assert sha(path.read_bytes()) == f"sha256:{path.name}"


@pytest.mark.parametrize("action", BLOB_FAULTS, ids=repr)
def test_corrupt_blob_fails_copy_and_pushes_nothing(proxy, direct, action):
    big = IMAGE.layers[1]
    target = f"faults/copy-corrupt-{type(action).__name__.lower()}"
    proxy.add_rule(Rule(path=f"/blobs/{big.digest}$", method="GET", action=action))
    with connect(proxy.url) as source, pytest.raises(regframe.DigestMismatchError):
        source.copy(REPO, "v1", direct, target, "copied")
    assert direct.manifest_exists(target, "copied") is None
    assert not direct.blob_exists(target, big.digest)
    assert direct.digest(REPO, "v1") == sha(IMAGE.manifest_raw), "the source is untouched"


WRONG_DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "action, error",
    [
        (FlipBytes(2), (regframe.DigestMismatchError, regframe.RegistryProtocolError)),
        (SetHeader("Docker-Content-Digest", WRONG_DIGEST), regframe.DigestMismatchError),
        (SetHeader("Content-Type", MT.OCI_MANIFEST), regframe.RegistryProtocolError),
    ],
    ids=["flipped-bytes", "wrong-digest-header", "content-type-disagrees"],
)
def test_manifest_that_does_not_match_is_refused(proxy, action, error):
    assert json.loads(IMAGE.manifest_raw)["mediaType"] == MT.DOCKER_MANIFEST
    proxy.add_rule(Rule(path=r"/manifests/", method="GET", action=action))
    with connect(proxy.url) as reg:
        with pytest.raises(error) as info:
            reg.manifest(REPO, "v1")
        assert str(info.value)
        with pytest.raises(error):
            reg.manifest(REPO, sha(IMAGE.manifest_raw))
        with pytest.raises(error):
            reg.manifest_sum(reg.manifest(REPO, "v1"))


@pytest.mark.parametrize(
    "action",
    [
        FlipBytes(2),
        SetHeader("Docker-Content-Digest", WRONG_DIGEST),
        SetHeader("Content-Type", MT.DOCKER_LIST),
    ],
    ids=["flipped-bytes", "wrong-digest-header", "content-type-disagrees"],
)
def test_refused_manifest_is_an_error_row_in_a_crawl(fleet_reg, action):
    repository, tag = next(
        (r, t) for r, t, item in sorted(FLEET.items(), key=lambda i: i[:2]) if item.media_type == MT.DOCKER_MANIFEST
    )
    with FaultProxy(fleet_reg.url) as proxy:
        proxy.add_rule(Rule(path=f"^/v2/{repository}/manifests/{tag}$", method="GET", action=action))
        with connect(proxy.url) as reg:
            inv = reg.inventory(progress=False, workers=4)
    errors = inv.errors.astype(str)
    assert list(errors[["repository", "tag", "stage"]].itertuples(index=False, name=None)) == [
        (repository, tag, "manifest")
    ]
    for frame in (inv.tags, inv.manifests, inv.layers):
        rows = frame[(frame["repository"] == repository) & (frame["tag"] == tag)]
        assert rows.empty, "a refused manifest gives no numbers"
    assert len(inv.tags) == FLEET.tag_count - 1


# -- hostile answers ---------------------------------------------------------------------------------


class Serve(Action):
    """Answer with these bytes as a registry would, ``Docker-Content-Digest`` matching them: a hostile
    registry's content is self-consistent, so only checks of the content itself can refuse it."""

    def __init__(self, body: bytes, content_type: str):
        self.body, self.content_type = body, content_type

    def apply(self, ex) -> None:
        ex.reply(200, self.body, {"Content-Type": self.content_type, "Docker-Content-Digest": sha(self.body)})


def oci(**fields) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": MT.OCI_MANIFEST,
        "config": {"mediaType": MT.OCI_CONFIG, "digest": IMAGE.config.digest, "size": IMAGE.config.size},
        "layers": [{"mediaType": MT.OCI_LAYER, "digest": IMAGE.layers[0].digest, "size": IMAGE.layers[0].size}],
    }
    document.update(fields)
    return json.dumps(document).encode()


def oci_index(**child_fields) -> bytes:
    child = {
        "mediaType": MT.OCI_MANIFEST,
        "digest": sha(IMAGE.manifest_raw),
        "size": IMAGE.manifest_size,
        "platform": {"os": "linux", "architecture": "amd64"},
    }
    child.update(child_fields)
    return json.dumps({"schemaVersion": 2, "mediaType": MT.OCI_INDEX, "manifests": [child]}).encode()


LAYER = {"mediaType": MT.OCI_LAYER, "digest": IMAGE.layers[0].digest, "size": IMAGE.layers[0].size}
HOSTILE_MANIFESTS = {
    "infinite-size": (oci().replace(b'"size": %d}' % IMAGE.config.size, b'"size": 1e400}', 1), MT.OCI_MANIFEST),
    "negative-size": (oci(layers=[{**LAYER, "size": -5}]), MT.OCI_MANIFEST),
    "size-beyond-int64": (oci(layers=[{**LAYER, "size": 2**63}]), MT.OCI_MANIFEST),
    "size-as-string": (oci(layers=[{**LAYER, "size": "12"}]), MT.OCI_MANIFEST),
    "fractional-size": (oci(layers=[{**LAYER, "size": 1.5}]), MT.OCI_MANIFEST),
    "layer-without-digest": (oci(layers=[{**LAYER, "digest": None}]), MT.OCI_MANIFEST),
    "layer-digest-path": (oci(layers=[{**LAYER, "digest": "sha256:../../etc/passwd"}]), MT.OCI_MANIFEST),
    "layers-not-a-list": (oci(layers="abc"), MT.OCI_MANIFEST),
    "config-not-an-object": (oci(config="x"), MT.OCI_MANIFEST),
    "media-type-not-a-string": (oci(mediaType=5), "application/json"),
    "platform-as-string": (oci_index(platform="linux/amd64"), MT.OCI_INDEX),
    "platform-of-numbers": (oci_index(platform={"os": 5, "architecture": ["x"]}), MT.OCI_INDEX),
    "child-by-tag": (oci_index(digest="latest"), MT.OCI_INDEX),
    "children-not-a-list": (
        json.dumps({"schemaVersion": 2, "mediaType": MT.OCI_INDEX, "manifests": {}}).encode(),
        MT.OCI_INDEX,
    ),
    "schema1-layers-not-a-list": (json.dumps({"schemaVersion": 1, "fsLayers": "x"}).encode(), MT.DOCKER_SCHEMA1),
    "deeply-nested": (b"[" * 200_000 + b"]" * 200_000, MT.OCI_MANIFEST),
}


@pytest.mark.parametrize("body, content_type", HOSTILE_MANIFESTS.values(), ids=HOSTILE_MANIFESTS.keys())
def test_hostile_but_self_consistent_manifest_is_refused(proxy, body, content_type):
    proxy.add_rule(Rule(path=f"^/v2/{REPO}/manifests/v1$", method="GET", action=Serve(body, content_type)))
    with connect(proxy.url) as reg:
        with pytest.raises(regframe.RegistryProtocolError) as info:
            reg.manifest(REPO, "v1")
        assert str(info.value)
        inv = reg.inventory([REPO], progress=False)
    errors = inv.errors.astype(str)
    assert list(errors[["repository", "tag", "stage"]].itertuples(index=False, name=None)) == [(REPO, "v1", "manifest")]
    assert "RegistryProtocolError" in errors["error"].iloc[0]
    assert set(inv.tags["tag"].astype(str)) == {"multi"}, "no numbers from the hostile manifest"
    assert set(inv.manifests["tag"].astype(str)) == {"multi"}


def test_sizes_adding_up_beyond_int64_are_an_error_row(proxy):
    # Each size is a valid int64, so the manifest itself is readable; its total is not a number a frame holds.
    body = oci(layers=[{**LAYER, "size": 2**62}] * 2)
    proxy.add_rule(Rule(path=f"^/v2/{REPO}/manifests/v1$", method="GET", action=Serve(body, MT.OCI_MANIFEST)))
    with connect(proxy.url) as reg:
        assert reg.manifest(REPO, "v1").raw == body
        inv = reg.inventory([REPO], progress=False)
    assert list(inv.errors[["tag", "stage"]].astype(str).itertuples(index=False, name=None)) == [("v1", "manifest")]
    assert "beyond an int64" in inv.errors["error"].iloc[0]
    assert set(inv.tags["tag"].astype(str)) == {"multi"}


def hostile_config_rules(config: bytes) -> list[Rule]:
    """A manifest naming ``config`` (with its true digest and size) and the config blob itself."""
    manifest = oci(config={"mediaType": MT.OCI_CONFIG, "digest": sha(config), "size": len(config)})
    return [
        Rule(path=f"^/v2/{REPO}/manifests/v1$", method="GET", action=Serve(manifest, MT.OCI_MANIFEST)),
        Rule(path=f"/blobs/{sha(config)}$", method="GET", action=Serve(config, MT.OCI_CONFIG)),
    ]


@pytest.mark.parametrize(
    "config",
    [b'{"os": 5, "architecture": "amd64"}', b"[1, 2]", b"not json", b"[" * 100_000 + b"]" * 100_000],
    ids=["os-number", "list", "text", "nested"],
)
def test_hostile_config_is_recorded_unreadable_not_an_error_row(proxy, config):
    """A config that is not a config object says nothing about the image, but the registry is not broken:
    the row stays, with no platform, and the crawl has no error (``regframe audit`` exits 0)."""
    for rule in hostile_config_rules(config):
        proxy.add_rule(rule)
    with connect(proxy.url) as reg:
        inv = reg.inventory([REPO], progress=False)
    assert inv.errors.empty
    rows = inv.manifests.astype(object)
    row = rows[rows["tag"] == "v1"].iloc[0]
    assert (row["platform"], row["kind"]) == ("unknown/unknown", "image")
    assert pd.isna(row["os"]) and pd.isna(row["architecture"])
    assert inv.stats["unreadable_configs"] == 1


def test_endless_config_blob_is_cut_at_its_declared_size(proxy):
    proxy.add_rule(Rule(path=f"/blobs/{IMAGE.config.digest}$", method="GET", action=Oversize(100 * MB)))
    with connect(proxy.url) as reg:
        inv = reg.inventory([REPO], progress=False)
    assert list(inv.errors["stage"].astype(str)) == ["config"]
    assert "RegistryProtocolError" in inv.errors["error"].iloc[0]
    assert inv.stats["bytes_read"] < 2 * MB + IMAGE.config.size


WRONG_SHAPES = {
    "catalog-string": (r"^/v2/_catalog", {"repositories": "abc"}, lambda r: list(r.catalog())),
    "catalog-object": (r"^/v2/_catalog", {"repositories": {"a": 1}}, lambda r: list(r.catalog())),
    "catalog-array": (r"^/v2/_catalog", ["faults/app"], lambda r: list(r.catalog())),
    "tags-string": (r"/tags/list", {"name": TAG_REPO, "tags": "latest"}, lambda r: r.tags(TAG_REPO)),
    "tags-number": (r"/tags/list", {"name": TAG_REPO, "tags": 7}, lambda r: r.tags(TAG_REPO)),
}


@pytest.mark.parametrize("path, body, call", WRONG_SHAPES.values(), ids=WRONG_SHAPES.keys())
def test_json_of_the_wrong_shape_is_refused(proxy, path, body, call):
    proxy.add_rule(Rule(path=path, method="GET", action=Status(200, body=body)))
    with (
        connect(proxy.url) as reg,
        pytest.raises(regframe.RegistryProtocolError, match=r"not a list|expected a JSON object"),
    ):
        call(reg)


def test_null_tag_list_is_an_empty_repository(proxy):
    # distribution answers {"tags": null} once every manifest of a repository is deleted
    proxy.add_rule(Rule(path=r"/tags/list", action=Status(200, body={"name": TAG_REPO, "tags": None})))
    with connect(proxy.url) as reg:
        assert reg.tags(TAG_REPO) == {}


BAD_URLS = {
    "link-broken-ipv6": (r"^/v2/_catalog", SetHeader("Link", '<http://[::1>; rel="next"'), "catalog"),
    "link-port-out-of-range": (
        r"^/v2/_catalog",
        SetHeader("Link", '<http://127.0.0.1:99999/v2/_catalog>; rel="next"'),
        "catalog",
    ),
    "link-file-scheme": (r"^/v2/_catalog", SetHeader("Link", '<file:///etc/passwd>; rel="next"'), "catalog"),
    "location-broken-ipv6": (r"/blobs/", Status(307, body=b"", headers={"Location": "http://[::1/x"}), "blob"),
    "location-file-scheme": (r"/blobs/", Status(302, body=b"", headers={"Location": "file:///etc/passwd"}), "blob"),
    "redirect-loop": (
        r"/blobs/",
        Status(307, body=b"", headers={"Location": f"/v2/{REPO}/blobs/{IMAGE.config.digest}"}),
        "blob",
    ),
}


@pytest.mark.parametrize("path, action, call", BAD_URLS.values(), ids=BAD_URLS.keys())
def test_unusable_links_and_redirects_are_refused(proxy, path, action, call):
    proxy.add_rule(Rule(path=path, method="GET", action=action))
    with connect(proxy.url) as reg, pytest.raises(regframe.RegistryProtocolError) as info:
        list(reg.catalog()) if call == "catalog" else reg.blob(REPO, IMAGE.config.digest)
    assert str(info.value)


def test_malformed_digest_header_on_head_falls_back_to_hashing(proxy):
    proxy.add_rule(Rule(path=r"/manifests/", method="HEAD", action=SetHeader("Docker-Content-Digest", "sha256:xyz")))
    with connect(proxy.url) as reg:
        assert reg.digest(REPO, "v1") == sha(IMAGE.manifest_raw)
        assert reg.manifest_exists(REPO, "v1") == ""


def test_truncated_manifest_is_fetched_again(proxy):
    rule = proxy.add_rule(Rule(path=f"^/v2/{REPO}/manifests/v1$", method="GET", action=Truncate(0.5), times=1))
    with connect(proxy.url, retries=2) as reg:
        assert reg.manifest(REPO, "v1").raw == IMAGE.manifest_raw
        assert reg.stats["retries"] == {"body": 1}
    assert matched(proxy, rule) == 2
    proxy.clear_rules()
    persistent = proxy.add_rule(Rule(path=f"^/v2/{REPO}/manifests/v1$", method="GET", action=Truncate(0.5)))
    with connect(proxy.url, retries=2) as reg, pytest.raises(regframe.RegistryConnectionError, match="cut short"):
        reg.manifest(REPO, "v1")
    assert applied(proxy, persistent) == 3


@pytest.mark.parametrize("value", ["soon", "-3", "nan", "0"])
def test_odd_retry_after_values_are_survived(proxy, value):
    rule = proxy.add_rule(Rule(path=r"/tags/list", action=Status(429, headers={"Retry-After": value}), times=1))
    with connect(proxy.url) as reg:
        started = time.monotonic()
        assert sorted(reg.tags(TAG_REPO)["tags"]) == sorted(TAGS)
        assert time.monotonic() - started < 2
    assert matched(proxy, rule) == 2


@pytest.mark.parametrize("value", ["inf", "1e309", "Wed, 21 Oct 2099 07:28:00 GMT"])
def test_retry_after_too_far_ahead_fails_at_once(proxy, value):
    rule = proxy.add_rule(Rule(path=r"/tags/list", action=Status(429, headers={"Retry-After": value})))
    with connect(proxy.url) as reg:
        started = time.monotonic()
        with pytest.raises(regframe.RateLimitedError):
            reg.tags(TAG_REPO)
        assert time.monotonic() - started < 1
    assert applied(proxy, rule) == 1


# -- recorded real responses ------------------------------------------------------------------------


def load_cassette(name: str) -> dict:
    """The first interaction of a VCR cassette: request path, status, headers (as lists) and body bytes."""
    document = yaml.safe_load((CASSETTES / name).read_text())
    interaction = document["http_interactions"][0]
    response = interaction["response"]
    return {
        "path": requests.utils.urlparse(interaction["request"]["uri"]).path,
        "status": response["status"]["code"],
        "message": response["status"]["message"],
        "headers": response["headers"],
        "body": response["body"]["string"].encode("utf-8"),
    }


class _CassetteHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one response per connection, as recorded (even a lying Content-Length)

    def do_GET(self) -> None:
        recorded = self.server.cassette
        if self.path == "/v2/":
            status, message, headers, body = 200, "OK", {"Content-Length": ["2"]}, b"{}"
        elif self.path == recorded["path"]:
            status, message, headers, body = (
                recorded["status"],
                recorded["message"],
                recorded["headers"],
                recorded["body"],
            )
        else:
            status, message, headers, body = 404, "Not Found", {"Content-Length": ["0"]}, b""
        self.send_response_only(status, message)
        for name, values in headers.items():
            for value in values:
                self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args) -> None:
        pass


@contextmanager
def serve_cassette(name: str):
    """Replay one recording from a local server: a registry cannot be made to send these bytes."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CassetteHandler)
    server.cassette = load_cassette(name)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.cassette
    finally:
        server.shutdown()
        server.server_close()


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@needs_cassettes
def test_recorded_signed_schema1_manifest_is_accepted():
    with serve_cassette("manifest/hello-world-v1_latest.yml") as (url, recorded):
        body = recorded["body"]
        assert len(body) == 2787
        protected = json.loads(_b64url(json.loads(body)["signatures"][0]["protected"]))
        payload = body[: protected["formatLength"]] + _b64url(protected["formatTail"])
        expected = sha(payload)
        assert expected == recorded["headers"]["Docker-Content-Digest"][0]
        assert expected.startswith("sha256:6d28b970") and sha(body) != expected
        with connect(url) as reg:
            manifest = reg.manifest("hello-world-v1", "latest")
    assert manifest.digest == expected
    assert manifest.media_type == MT.DOCKER_SCHEMA1_SIGNED
    assert manifest.raw == body
    assert [layer["digest"] for layer in manifest.layers] == [
        entry["blobSum"] for entry in reversed(json.loads(body)["fsLayers"])
    ]


@needs_cassettes
@pytest.mark.parametrize(
    "name", ["versions/685337003881/manifest/multiarch_ubuntu.yml", "versions/993f14fdfe5c/manifest/ubuntu.yml"]
)
def test_recorded_good_manifests_are_accepted(name):
    with serve_cassette(name) as (url, recorded):
        body = recorded["body"]
        claimed = recorded["headers"].get("Docker-Content-Digest", [sha(body)])[0]
        assert claimed == sha(body)
        repository, _, reference = recorded["path"].removeprefix("/v2/").partition("/manifests/")
        with connect(url) as reg:
            manifest = reg.manifest(repository, reference)
            assert reg.digest(repository, reference) == sha(body)
    assert manifest.digest == sha(body)
    assert manifest.raw == body
    assert manifest.media_type == json.loads(body)["mediaType"]
    if "manifests" in json.loads(body):
        assert manifest.platforms() == [
            f"{m['platform']['os']}/{m['platform']['architecture']}" for m in json.loads(body)["manifests"]
        ]


@needs_cassettes
def test_recorded_body_changed_under_the_same_digest_is_refused():
    with serve_cassette("manifest/multiarch_ubuntu.yml") as (url, recorded):
        claimed = recorded["headers"]["Docker-Content-Digest"][0]
        assert sha(recorded["body"]) != claimed
        with connect(url) as reg:
            with pytest.raises(regframe.DigestMismatchError) as info:
                reg.manifest("my-ubuntu", "17.04")
            with pytest.raises(regframe.DigestMismatchError):
                reg.digest("my-ubuntu", "17.04", platform="linux/arm64")
    assert (info.value.expected, info.value.actual) == (claimed, sha(recorded["body"]))


@needs_cassettes
def test_recorded_wrong_digest_header_is_refused():
    with serve_cassette("manifest/ubuntu.yml") as (url, recorded):
        claimed = recorded["headers"]["Docker-Content-Digest"][0]
        with connect(url) as reg, pytest.raises(regframe.DigestMismatchError) as info:
            reg.manifest("my-image", "2.0")
    assert (info.value.expected, info.value.actual) == (claimed, sha(recorded["body"]))


@needs_cassettes
def test_recorded_lying_content_length_is_refused():
    with serve_cassette("manifest/multiarch_php_variant.yml") as (url, recorded):
        assert (recorded["headers"]["Content-Length"], len(recorded["body"])) == (["743"], 987)
        with connect(url) as reg, pytest.raises(regframe.RegistryProtocolError, match="not valid JSON"):
            reg.manifest("php", "latest")


@needs_cassettes
@pytest.mark.parametrize("name", ["manifest/hello-world-v1_non_existent.yml", "manifest/hello-world-v99_latest.yml"])
def test_recorded_unknown_manifest_is_empty(name):
    with serve_cassette(name) as (url, recorded):
        repository, _, reference = recorded["path"].removeprefix("/v2/").partition("/manifests/")
        with connect(url) as reg:
            assert reg.manifest(repository, reference) == {}


# -- oversized and endless answers ----------------------------------------------------------------


@pytest.mark.parametrize("announce", [False, True], ids=["streamed", "announced"])
@pytest.mark.parametrize("target", ["manifest", "catalog", "tags"])
def test_oversized_body_is_refused_without_reading_it(proxy, target, announce):
    path, call, limit = {
        "manifest": (r"/manifests/", lambda r: r.manifest(REPO, "v1"), MT.MAX_MANIFEST_BYTES),
        "catalog": (r"^/v2/_catalog", lambda r: list(r.catalog()), 64 * MB),
        "tags": (r"/tags/list", lambda r: r.tags(TAG_REPO), 64 * MB),
    }[target]
    proxy.add_rule(Rule(path=path, method="GET", action=Oversize(100 * MB, announce=announce)))
    with connect(proxy.url) as reg:
        before = reg.stats["bytes_read"]
        tracemalloc.start()
        try:
            with pytest.raises(regframe.RegistryProtocolError, match="limit"):
                call(reg)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        read = reg.stats["bytes_read"] - before
    assert read <= limit + MB
    assert peak <= limit + 8 * MB
    if announce:
        assert read == 0, "an announced oversized body is refused before reading it"


def test_looping_catalog_link_is_stopped(proxy):
    rule = proxy.add_rule(Rule(path=r"^/v2/_catalog", action=LoopLink()))
    with connect(proxy.url) as reg:
        with pytest.raises(regframe.RegistryProtocolError, match="loops"):
            list(reg.catalog())
        inv = reg.inventory(progress=False)
    assert matched(proxy, rule) == 2, "one request per attempt, none after the loop was seen"
    assert list(inv.errors["stage"].astype(str)) == ["catalog"]
    assert "loops" in inv.errors["error"].iloc[0]


def test_foreign_catalog_link_is_not_followed(basic_reg):
    evil = json.dumps({"repositories": ["evil/repo"]}).encode()
    user, password = basic_reg.credentials("alice")
    with RecordingServer(body=evil, content_type="application/json") as foreign, FaultProxy(basic_reg.url) as proxy:
        proxy.add_rule(Rule(path=r"^/v2/_catalog", action=ForeignLink(f"{foreign.url}/v2/_catalog?last=x")))
        with connect(proxy.url, user=user, password=password) as reg:
            with pytest.raises(regframe.RegistryProtocolError, match="another host"):
                list(reg.catalog())
            inv = reg.inventory(progress=False)
        assert foreign.requests == []
    assert list(inv.errors["stage"].astype(str)) == ["catalog"]
    assert "evil/repo" not in set(inv.catalog["repository"].astype(str))


# -- credentials and redirects --------------------------------------------------------------------


def test_blob_redirect_to_another_host_gets_no_credentials(auth_reg):
    big = IMAGE.layers[1]
    user, password = auth_reg.credentials("alice")
    with RecordingServer(body=big.data) as storage, RecordingServer(auth_reg.url) as proxy:
        proxy.add_rule(Rule(path=r"^/v2/$", action=SetHeader("Set-Cookie", "session=s3cr3t; Path=/")))
        proxy.add_rule(Rule(path=f"/blobs/{big.digest}$", method="GET", action=RedirectTo(storage.url)))
        with connect(proxy.url, user=user, password=password) as reg:
            assert reg.blob(REPO, big.digest).body == big.data
            reg.manifest(REPO, "v1")
        at_registry = proxy.requests
        at_storage = storage.requests
    # The client keeps no cookie jar: a cookie the registry sets is never sent anywhere.
    assert not any("cookie" in r.headers for r in at_registry)
    assert any("authorization" in r.headers for r in at_registry), "there was a credential to leak"
    assert [(r.method, r.path) for r in at_storage] == [("GET", f"/v2/{REPO}/blobs/{big.digest}")]
    assert "authorization" not in at_storage[0].headers
    assert "cookie" not in at_storage[0].headers


def test_a_signed_storage_url_stays_out_of_the_error(registry, caplog):
    """Registries send blob GETs to pre-signed storage URLs whose query is a credential; the storage here
    refuses the signature, as an expired one is refused (no real storage runs on this machine)."""
    caplog.set_level(logging.DEBUG, logger="regframe")
    big = IMAGE.layers[1]
    with FaultProxy(registry.url) as storage, FaultProxy(registry.url) as proxy:
        storage.add_rule(Rule(action=Status(403)))
        signed = f"{storage.url}/bucket/blob?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=SECRETSIG123"

        class Signed(Action):
            def apply(self, ex) -> None:
                ex.reply(307, b"", {"Location": signed})

        proxy.add_rule(Rule(path=f"/blobs/{big.digest}$", method="GET", action=Signed()))
        with connect(proxy.url) as reg, pytest.raises(regframe.RegistryAuthorizationError) as info:
            reg.blob(REPO, big.digest)
    assert info.value.url == f"{storage.url}/bucket/blob"
    shown = [str(info.value), repr(info.value), repr(vars(info.value)), caplog.text]
    assert not [text for text in shown if "SECRETSIG123" in text or "AKIAEXAMPLE" in text]


def test_digest_falls_back_to_get_when_head_has_no_digest(proxy):
    proxy.add_rule(Rule(path=r"/manifests/", method="HEAD", action=DropHeader("Docker-Content-Digest")))
    with connect(proxy.url) as reg:
        assert reg.digest(REPO, "v1") == sha(IMAGE.manifest_raw)
        assert reg.stats["requests"]["manifest"] == 1
    proxy.clear_rules()
    proxy.add_rule(Rule(path=r"/manifests/", action=DropHeader("Docker-Content-Digest")))
    with connect(proxy.url) as reg:
        assert reg.digest(REPO, "multi") == sha(INDEX.manifest_raw)


def test_rate_limit_headers_are_reported(proxy):
    proxy.add_rule(
        Rule(path=r"^/v2/$", action=SetHeaders({"RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "42"}))
    )
    with connect(proxy.url) as reg:
        limit = reg.rate_limit
    assert (limit.limit, limit.remaining, limit.window_seconds) == (100, 42, 21600)


MALFORMED_CHALLENGES = {
    "unterminated-quote": ('Bearer realm="http://127.0.0.1:1/token', "malformed WWW-Authenticate"),
    "empty-realm": ('Bearer realm=""', "no realm"),
    "no-realm": ('Bearer service="regframe-local-registry"', "no realm"),
    "ftp-realm": ('Bearer realm="ftp://127.0.0.1/token"', "not an http"),
    "broken-ipv6-realm": ('Bearer realm="http://[::1/token"', "realm"),
    "empty-header": ("", "without a WWW-Authenticate challenge"),
    "token68": ("Negotiate abc==", "unsupported authentication scheme 'negotiate'"),
    "port-out-of-range": ('Bearer realm="http://127.0.0.1:99999/token"', "not an http"),
    "no-host": ('Bearer realm="http:///token"', "not an http"),
    "garbage": ('=,="', "malformed WWW-Authenticate"),
    "unknown-scheme": ('Mutual realm="x"', "unsupported authentication scheme"),
}


@pytest.mark.parametrize("header, message", MALFORMED_CHALLENGES.values(), ids=MALFORMED_CHALLENGES.keys())
def test_malformed_challenge_is_a_clear_authentication_error(token_reg, header, message):
    user, password = token_reg.credentials("alice")
    with FaultProxy(token_reg.url) as proxy:
        proxy.add_rule(Rule(action=SetHeader("WWW-Authenticate", header)))
        with pytest.raises(regframe.RegistryAuthenticationError, match=message):
            connect(proxy.url, user=user, password=password)


TOKEN_FAULTS = {
    "500": (Status(500), "answered HTTP 500"),
    "html": (
        Status(200, body="<html><body>Sign in</body></html>", headers={"Content-Type": "text/html"}),
        "not a token .text/html",
    ),
    "json-without-token": (Status(200, body={"detail": "ok"}), "not a token"),
    "token-not-a-string": (Status(200, body={"token": 12345}), "not a token"),
    "malformed-json": (MalformedJSON(), "not a token"),
    "huge": (Oversize(5 * MB), "not a token"),
    "deeply-nested": (Status(200, body=b"[" * 100_000 + b"]" * 100_000), "not a token"),
    "401": (Status(401), "rejected the credentials"),
    # float() of a 400-digit integer overflows: the crawl must see an authentication error, not a crash.
    "expires-in-overflows": (Status(200, body=b'{"token": "t", "expires_in": 1' + b"0" * 400 + b"}"), "not a token"),
    "token-with-crlf": (Status(200, body={"token": "abc\r\nX-Injected: 1"}), "cannot carry"),
    "token-not-latin-1": (Status(200, body={"token": "abc\u2028def"}), "cannot carry"),
}


@contextmanager
def token_endpoint_proxy(reg):
    """A FaultProxy in front of the token server, and one in front of the registry whose
    challenges name that proxy as their realm."""
    with FaultProxy(reg.token_server.url) as token_proxy, FaultProxy(reg.url) as proxy:
        proxy.add_rule(Rule(action=RewriteRealm(reg.token_server.url, token_proxy.url)))
        yield proxy, token_proxy


@pytest.mark.parametrize("action, message", TOKEN_FAULTS.values(), ids=TOKEN_FAULTS.keys())
def test_broken_token_endpoint_is_a_clear_authentication_error(token_reg, action, message):
    user, password = token_reg.credentials("alice")
    with token_endpoint_proxy(token_reg) as (proxy, token_proxy):
        rule = token_proxy.add_rule(Rule(path=r"^/token", action=action))
        with pytest.raises(regframe.RegistryAuthenticationError, match=message) as info:
            connect(proxy.url, user=user, password=password)
        assert applied(token_proxy, rule) == 1
    assert info.value.__context__ is None, "the parser's exception (holding the response) is not chained"


def test_token_endpoint_redirect_is_followed_within_its_origin_only(token_reg):
    """A token realm that redirects (a moved endpoint, a trailing-slash rule) works as with docker and
    podman, whose HTTP client follows it; one to another origin is refused, since the request carries the
    password. The token server cannot be made to redirect, so the proxy in front of it does."""
    user, password = token_reg.credentials("alice")
    with token_endpoint_proxy(token_reg) as (proxy, token_proxy):
        rule = token_proxy.add_rule(Rule(path=r"^/token", times=1, action=RedirectTo(token_proxy.url)))
        with connect(proxy.url, user=user, password=password) as reg:
            assert reg.manifest(REPO, "v1").raw == IMAGE.manifest_raw
        assert applied(token_proxy, rule) == 1
    with token_endpoint_proxy(token_reg) as (proxy, token_proxy), RecordingServer(body=b"") as elsewhere:
        token_proxy.add_rule(Rule(path=r"^/token", action=RedirectTo(f"http://localhost:{elsewhere.port}")))
        with pytest.raises(regframe.RegistryAuthenticationError, match="another origin; not followed"):
            connect(proxy.url, user=user, password=password)
        assert elsewhere.requests == []


def test_token_without_expires_in_works_for_60_seconds(token_reg):
    server = token_reg.token_server
    user, password = token_reg.credentials("alice")
    now = [1000.0]
    saved, server.expires_in = server.expires_in, None
    try:
        with token_endpoint_proxy(token_reg) as (proxy, _), connect(proxy.url, user=user, password=password) as reg:
            reg.auth._clock = lambda: now[0]
            assert reg.manifest(REPO, "v1").raw == IMAGE.manifest_raw
            fetched = server.issued_count(f"repository:{REPO}:pull")
            assert server.issued[-1].expires_in is None
            now[0] += 45
            reg.manifest(REPO, "v1")
            assert server.issued_count(f"repository:{REPO}:pull") == fetched, "still valid at 45 s"
            now[0] += 16
            reg.manifest(REPO, "v1")
            assert server.issued_count(f"repository:{REPO}:pull") == fetched + 1, "renewed after 60 s"
    finally:
        server.expires_in = saved


def test_odd_expires_in_values_fall_back_to_a_default(token_reg):
    server = token_reg.token_server
    user, password = token_reg.credentials("alice")
    from regframe.testing.tokenserver import Scope

    token = server.make_token(user, [Scope("repository", REPO, ("pull",))], ttl=300)
    for expires_in in ("soon", None, -5, 10**30, True):
        with token_endpoint_proxy(token_reg) as (proxy, token_proxy):
            token_proxy.add_rule(
                Rule(path=r"^/token", action=Status(200, body={"token": token, "expires_in": expires_in}))
            )
            with connect(proxy.url, user=user, password=password) as reg:
                assert reg.manifest(REPO, "v1").raw == IMAGE.manifest_raw


# -- tag pagination (OCI) ----------------------------------------------------------------------------


def test_tag_pagination_per_the_oci_spec(registry):
    ordered = sorted(TAGS)
    with FaultProxy(registry.url) as proxy:
        proxy.add_rule(Rule(action=TagPagination(page_size=3)))
        with connect(proxy.url) as reg:
            first = reg.tags(TAG_REPO, count=3)
            assert first == {"name": TAG_REPO, "tags": ordered[:3], "last": ordered[2]}
            second = reg.tags(TAG_REPO, count=3, last=first["last"])
            assert second == {"name": TAG_REPO, "tags": ordered[3:6], "last": ordered[5]}
            third = reg.tags(TAG_REPO, count=3, last=second["last"])
            assert third == {"name": TAG_REPO, "tags": ordered[6:]}
            everything = reg.tags(TAG_REPO, auto_paginate=True, with_hashes=True)
            assert everything["tags"] == ordered
            assert everything["hashes"] == {tag: sha(OTHER.manifest_raw) for tag in TAGS}
            before = reg.stats["requests"]["tags"]
            inv = reg.inventory([TAG_REPO], progress=False)
            assert reg.stats["requests"]["tags"] - before == 3, "7 tags in pages of 3"
            catalog = reg.frames.catalog().set_index("repository")
    assert catalog.loc[TAG_REPO, "tag_count"] == len(TAGS), "the catalog frame counts every page of tags"
    assert sorted(inv.tags["tag"].astype(str)) == ordered
    assert set(inv.tags["digest"].astype(str)) == {sha(OTHER.manifest_raw)}


def test_a_later_page_answering_404_fails_the_listing_and_deletes_nothing(registry, direct):
    """A 404 on the first page is an unknown repository; on a later one the listing would be cut short
    without a word, and a cleanup would miss the tags on the unread pages. The proxy pages tag lists
    (distribution 2.8 does not) and answers 404 from page 2 on, as no real registry can be made to."""
    repository = "faults/page404"
    push_image(direct, repository, "a-old", IMAGE)
    push_image(direct, repository, "z-keep", IMAGE)
    with FaultProxy(registry.url) as proxy:
        proxy.add_rule(Rule(path=r"/tags/list\?.*last=", action=Status(404)))
        proxy.add_rule(Rule(action=TagPagination(page_size=1)))
        with connect(proxy.url) as reg:
            assert reg.tags(repository, count=1)["tags"] == ["a-old"], "one page on its own still reads"
            with pytest.raises(regframe.RegistryProtocolError, match="page 2 of the listing answered 404"):
                reg.tags(repository, auto_paginate=True)
            inv = reg.inventory([repository], progress=False)
            with pytest.raises(regframe.RegistryProtocolError, match="answered 404"):
                reg.rmtag(repository, "a-old")
    assert len(inv.tags) == 0
    assert inv.errors[["repository", "stage"]].astype(str).values.tolist() == [[repository, "tags"]]
    assert "listing is incomplete" in str(inv.errors["error"].iloc[0])
    assert sorted(direct.tags(repository)["tags"]) == ["a-old", "z-keep"], "nothing was deleted"


def test_pagination_links_to_another_listing_are_refused_and_repeated_tags_listed_once(registry, direct):
    """A next link naming another repository's tags would file that repository's tags under this one;
    the proxy sends one (same host) and, on another path, a second page that repeats a tag. No real
    registry answers either way on demand."""
    push_image(direct, "faults/other-listing", "secret-tag", OTHER)
    with FaultProxy(registry.url) as proxy:
        proxy.add_rule(
            Rule(
                path=r"^/v2/faults/tags/tags/list$",
                action=Status(
                    200,
                    body={"name": TAG_REPO, "tags": ["v1"]},
                    headers={"Link": '</v2/faults/other-listing/tags/list>; rel="next"'},
                ),
            )
        )
        proxy.add_rule(
            Rule(
                path=r"^/v2/faults/app/tags/list$",
                action=Status(
                    200,
                    body={"name": REPO, "tags": ["v1", "multi"]},
                    headers={"Link": f'</v2/{REPO}/tags/list?last=multi>; rel="next"'},
                ),
            )
        )
        later = Status(200, body={"name": "other", "tags": ["multi"]})
        proxy.add_rule(Rule(path=r"^/v2/faults/app/tags/list\?last=", action=later))
        with connect(proxy.url) as reg:
            with pytest.raises(regframe.RegistryProtocolError, match=r"another listing \(/v2/faults/other-listing"):
                reg.tags(TAG_REPO, auto_paginate=True)
            listed = reg.tags(REPO, auto_paginate=True)
            inv = reg.inventory([TAG_REPO, REPO], progress=False)
    assert listed == {"name": REPO, "tags": ["v1", "multi"]}, "one entry per tag; the name is the first page's"
    assert sorted(inv.tags["tag"].astype(str)) == ["multi", "v1"]
    assert inv.errors[["repository", "stage"]].astype(str).values.tolist() == [[TAG_REPO, "tags"]]
    assert "secret-tag" not in inv.tags["tag"].astype(str).tolist()


def test_a_named_repository_the_catalog_cannot_confirm_and_that_answers_404_is_an_error(registry):
    """Docker Hub-like registries refuse the catalog, so a misspelt repositories= name would read as an
    empty repository; the proxy refuses the catalog (Docker Hub answers 401 or 404 there)."""
    with FaultProxy(registry.url) as proxy:
        proxy.add_rule(Rule(path=r"^/v2/_catalog", action=Status(404)))
        with connect(proxy.url) as reg:
            inv = reg.inventory(["faults/tagz", TAG_REPO], progress=False)
    assert sorted(inv.tags["tag"].astype(str)) == sorted(TAGS)
    assert inv.errors[["repository", "stage"]].astype(str).values.tolist() == [["faults/tagz", "tags"]]
    assert "repository faults/tagz not found" in str(inv.errors["error"].iloc[0])
    assert "faults/tagz" not in set(inv.catalog["repository"].astype(str))


# -- secrets --------------------------------------------------------------------------------------


def test_credentials_never_appear_in_errors_logs_reprs_or_frames(auth_reg, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    user, password = auth_reg.credentials("alice")
    texts: list[str] = []

    def remember(exc: BaseException) -> None:
        texts.extend(
            [str(exc), repr(exc), "".join(traceback.format_exception(exc)), repr({k: v for k, v in vars(exc).items()})]
        )

    with FaultProxy(auth_reg.url, seed=3) as proxy:
        proxy.add_rule(Rule(path=f"^/v2/{REPO}/manifests/other$", method="GET", action=Status(500)))
        proxy.add_rule(
            Rule(
                path=f"^/v2/{REPO}/manifests/v1$", method="GET", action=SetHeader("Docker-Content-Digest", WRONG_DIGEST)
            )
        )
        proxy.add_rule(Rule(path=r"/blobs/", action=Reset(), probability=0.1))
        proxy.add_rule(Rule(action=Status(503), probability=0.1))
        with connect(proxy.url, user=user, password=password, retries=6) as reg:
            inv = reg.inventory(progress=False, workers=2)
            for call in (
                lambda: reg.manifest(REPO, "v1"),
                lambda: reg.manifest(REPO, "other"),
                lambda: connect(proxy.url, user=user, password=password + "x"),
            ):
                try:
                    call()
                except regframe.RegistryError as exc:
                    remember(exc)
            texts += [
                repr(reg),
                str(reg),
                repr(reg.auth),
                reg._repr_html_(),
                repr(inv),
                inv._repr_html_(),
                repr(inv.stats),
            ]
            inv.to_csv(tmp_path / "csv")
            texts += [p.read_text() for p in (tmp_path / "csv").iterdir()]
            texts += [frame.to_string() for frame in inv.frames().values()]
    texts.append(caplog.text)
    assert len(inv.errors) >= 1 and "HTTP 500" in " ".join(inv.errors["error"].astype(str))
    assert caplog.text, "DEBUG logging was on"
    secrets = [password, base64.b64encode(f"{user}:{password}".encode()).decode()]
    if auth_reg.token_server is not None:
        secrets += [t.token for t in auth_reg.token_server.issued]
        secrets += [t.token.rsplit(".", 1)[1] for t in auth_reg.token_server.issued]
    everything = "\n".join(texts)
    for secret in secrets:
        assert secret not in everything


# -- uploads, copies and deletes that fail half way -------------------------------------------------


UPLOAD_FAULTS = [("PUT", Status(500)), ("PUT", Reset()), ("PATCH", Status(500)), ("PATCH", Reset())]


@pytest.mark.parametrize("method, action", UPLOAD_FAULTS, ids=lambda v: v if isinstance(v, str) else repr(v))
def test_failed_upload_is_cancelled_and_a_retry_stores_the_same_digest(registry, direct, method, action):
    data = hashlib.sha512(f"{method}{action!r}".encode()).digest() * 800
    digest = sha(data)
    repository = f"faults/upload-{method.lower()}-{type(action).__name__.lower()}"
    with RecordingServer(registry.url) as proxy:
        rule = proxy.add_rule(Rule(path=r"/blobs/uploads/.", method=method, action=action))
        with connect(proxy.url, retries=1) as reg, pytest.raises(regframe.RegistryError):
            reg.upload_blob(repository, data, digest, chunk_size=20_000)
        seen = proxy.requests
    assert applied(proxy, rule) == 1, "an upload PUT or PATCH is not retried on its own"
    failed = [r for r in seen if r.method == method][-1].path.split("?")[0]
    deletes = [r.path.split("?")[0] for r in seen if r.method == "DELETE"]
    assert deletes == [failed], "the upload session that failed is cancelled"
    assert requests.get(registry.url + failed, timeout=5).status_code == 404, "the session is gone"
    assert not direct.blob_exists(repository, digest)
    with connect(registry.url) as reg:
        assert reg.upload_blob(repository, data, digest, chunk_size=20_000) == digest
    assert direct.blob(repository, digest).body == data


def layout_snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha(p.read_bytes()) for p in files_under(root)}


def test_push_failing_half_way_leaves_no_tag_and_a_retry_completes(registry, direct, tmp_path):
    direct.pull(REPO, "v1", tmp_path)
    before = layout_snapshot(tmp_path)
    target = "faults/push-half"
    with RecordingServer(registry.url) as proxy:
        proxy.add_rule(Rule(path=r"/blobs/uploads/.", method="PUT", every=2, action=Status(500)))
        with connect(proxy.url) as reg, pytest.raises(regframe.RegistryError, match="500"):
            reg.push(None, tmp_path, target, "v1")
        assert not [r for r in proxy.requests if "/manifests/" in r.path and r.method == "PUT"]
    assert direct.manifest_exists(target, "v1") is None
    assert layout_snapshot(tmp_path) == before, "the source layout is untouched"
    with connect(registry.url) as reg:
        assert reg.push(None, tmp_path, target, "v1") == sha(IMAGE.manifest_raw)
    for blob in (IMAGE.config, *IMAGE.layers):
        assert sha(direct.blob(target, blob.digest).body) == blob.digest


def test_copy_failing_half_way_leaves_no_tag_and_the_source_untouched(registry, direct):
    target = "faults/copy-half"
    with FaultProxy(registry.url) as proxy:
        proxy.add_rule(Rule(path=r"/blobs/uploads/.", method="PUT", every=2, action=Status(500)))
        with connect(proxy.url) as destination, pytest.raises(regframe.RegistryError, match="500"):
            direct.copy(REPO, "multi", destination, target, "m")
    assert direct.manifest_exists(target, "m") is None
    assert direct.digest(REPO, "multi") == sha(INDEX.manifest_raw)
    for child in INDEX.children:
        for blob in (child.config, *child.layers):
            assert sha(direct.blob(REPO, blob.digest).body) == blob.digest
    assert direct.copy(REPO, "multi", direct, target, "m") == sha(INDEX.manifest_raw)


PLACEHOLDER_DELETE = r"/manifests/sha256:(?!0{64})"  # not the all-zero probe for deletes being enabled
RMTAG_FAULTS = {
    "500-on-placeholder-delete": Rule(path=PLACEHOLDER_DELETE, method="DELETE", action=Status(500)),
    "reset-on-placeholder-delete": Rule(path=PLACEHOLDER_DELETE, method="DELETE", action=Reset(), times=1),
    "placeholder-deleted-answer-lost": Rule(
        path=PLACEHOLDER_DELETE, method="DELETE", action=ForwardThenReset(), times=1
    ),
    "500-on-placeholder-put": Rule(path=r"/manifests/b$", method="PUT", action=Status(500)),
    "answer-lost-on-placeholder-put": Rule(path=r"/manifests/b$", method="PUT", action=ForwardThenReset(), times=1),
    "500-on-tag-listing": Rule(path=r"/tags/list", action=Status(500)),
    "500-on-original-manifest": Rule(path=r"/manifests/sha256:", method="GET", action=Status(500)),
    "sibling-head-lies-404": Rule(path=r"/manifests/[ac]$", method="HEAD", action=Status(404)),
}


class PushThen(Action):
    """Another client pushes ``tag`` -> ``image`` straight to the registry, then the request goes on (or
    fails with ``status``): a racing writer landing at one exact request, which only a proxy can time."""

    def __init__(self, client, repository: str, tag: str, image, status: int | None = None):
        self.client, self.repository, self.tag, self.image, self.status = client, repository, tag, image, status

    def apply(self, ex) -> None:
        push_image(self.client, self.repository, self.tag, self.image)
        if self.status is None:
            ex.respond(ex.forward())
        else:
            ex.error(self.status, "UNKNOWN", "storage backend hiccup")


@pytest.mark.parametrize("rule", RMTAG_FAULTS.values(), ids=RMTAG_FAULTS.keys())
def test_rmtag_never_loses_a_sibling(registry, direct, request, rule):
    repository = f"faults/rmtag-{list(RMTAG_FAULTS).index(request.node.callspec.id)}"
    for tag in ("a", "b", "c"):
        push_image(direct, repository, tag, IMAGE)
    push_image(direct, repository, "d", OTHER)
    original = sha(IMAGE.manifest_raw)
    with FaultProxy(registry.url) as proxy:
        proxy.add_rule(rule)
        with connect(proxy.url, retries=1) as reg, suppress(regframe.RegistryError):
            reg.rmtag(repository, "b")
        assert applied(proxy, rule) >= 1
    assert direct.manifest_exists(repository, "b") in (original, None)
    assert direct.digest(repository, "a") == direct.digest(repository, "c") == original
    assert direct.digest(repository, "d") == sha(OTHER.manifest_raw)
    if direct.manifest_exists(repository, "b"):
        direct.rmtag(repository, "b")
    assert direct.tags(repository, with_hashes=True)["hashes"] == {
        "a": original,
        "c": original,
        "d": sha(OTHER.manifest_raw),
    }


def test_a_failed_placeholder_delete_never_puts_the_image_back_over_a_racing_push(registry, direct):
    """The placeholder's DELETE fails (500) just after another client pushed the tag anew: the image
    goes back only over regframe's own placeholder, so the other client's push stays and the removal is
    reported as a moved tag."""
    repository = "faults/rmtag-race-rollback"
    push_image(direct, repository, "release", IMAGE)
    push_image(direct, repository, "other", IMAGE)
    rule = Rule(
        path=PLACEHOLDER_DELETE, method="DELETE", times=1, action=PushThen(direct, repository, "release", OTHER, 500)
    )
    with FaultProxy(registry.url) as proxy:
        proxy.add_rule(rule)
        with connect(proxy.url) as reg, pytest.raises(regframe.TagMovedError, match="by another client") as info:
            reg.rmtag(repository, "release", expected_digest=sha(IMAGE.manifest_raw), method="placeholder")
        assert applied(proxy, rule) == 1
    assert info.value.actual == sha(OTHER.manifest_raw)
    assert direct.tags(repository, with_hashes=True)["hashes"] == {
        "other": sha(IMAGE.manifest_raw),
        "release": sha(OTHER.manifest_raw),
    }


def test_a_placeholder_delete_whose_answer_is_lost_counts_as_done(registry, direct):
    """The registry removed the tag but the answer was lost: the tag is gone as asked, so rmtag reports
    the removal rather than putting the image back under an error."""
    repository = "faults/rmtag-answer-lost"
    push_image(direct, repository, "a", IMAGE)
    push_image(direct, repository, "b", IMAGE)
    rule = Rule(path=PLACEHOLDER_DELETE, method="DELETE", action=ForwardThenReset(), times=1)
    with FaultProxy(registry.url) as proxy:
        proxy.add_rule(rule)
        with connect(proxy.url, retries=0) as reg:
            removal = reg.rmtag(repository, "b", method="placeholder")
        assert applied(proxy, rule) == 1
    assert removal["method"] == "placeholder"
    assert direct.tags(repository, with_hashes=True)["hashes"] == {"a": sha(IMAGE.manifest_raw)}


def rmtag_while_pushed_again(registry, direct, repository: str, tag: str, path: str, method: str, match: str):
    """``rmtag`` of ``tag`` (on IMAGE) through a proxy where another client pushes it again onto OTHER right
    before the DELETE ``path`` matches; the TagMovedError it raises, the push having stayed."""
    push_image(direct, repository, tag, IMAGE)
    rule = Rule(path=path, method="DELETE", times=1, action=PushThen(direct, repository, tag, OTHER))
    with FaultProxy(registry.url) as proxy:
        proxy.add_rule(rule)
        with connect(proxy.url) as reg, pytest.raises(regframe.TagMovedError, match=match) as info:
            reg.rmtag(repository, tag, expected_digest=sha(IMAGE.manifest_raw), method=method)
        assert applied(proxy, rule) == 1
    assert info.value.actual == sha(OTHER.manifest_raw)
    assert direct.digest(repository, tag) == sha(OTHER.manifest_raw)
    return info.value


def test_rmtag_auto_refuses_a_tag_moved_after_its_check(registry, direct):
    """Distribution refuses DELETE by tag; as it does, another client moves the tag. The listing rmtag
    makes next shows the move: nothing is deleted, the old image stays, and the error says so."""
    repository = "faults/rmtag-auto-moved"
    rmtag_while_pushed_again(
        registry, direct, repository, "release", r"/manifests/release$", "auto", "nothing was deleted"
    )
    assert direct.manifest(repository, sha(IMAGE.manifest_raw)).raw == IMAGE.manifest_raw


@contextmanager
def cleanup_held_at_the_placeholder_delete(registry, direct, tmp_path, repository: str):
    """``regframe cleanup --apply`` of tag ``old`` (``latest`` kept) in its own process, through a proxy that
    holds the placeholder's DELETE: yields the process once that DELETE is in flight, for a signal to land
    at that exact moment."""
    push_image(direct, repository, "old", IMAGE)
    push_image(direct, repository, "latest", OTHER)
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rules]]\nname = "old"\ntags = "^old$"\n')
    rule = Rule(path=PLACEHOLDER_DELETE, method="DELETE", action=Hang())
    with FaultProxy(registry.url) as proxy:
        proxy.add_rule(rule)
        command = [sys.executable, "-m", "regframe", "cleanup", proxy.url, "--policy", str(policy)]
        process = subprocess.Popen(
            [*command, "--repositories", repository, "--apply", "--yes"], stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60
        while not matched(proxy, rule) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert matched(proxy, rule) == 1, "the cleanup reached the placeholder's DELETE"
        yield process, policy


def test_sigterm_during_cleanup_apply_puts_the_tag_back(registry, direct, tmp_path):
    """SIGTERM (a CI timeout, ``kill``, a service stop) while the placeholder's DELETE is in flight: the
    command unwinds through the removal's rollback as for Ctrl-C, so the tag is back on its image rather
    than left on an empty placeholder, and it exits 143. The proxy holds the DELETE so the signal lands
    at that exact moment."""
    repository = "faults/cleanup-sigterm"
    with cleanup_held_at_the_placeholder_delete(registry, direct, tmp_path, repository) as (process, _):
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert "put back on its image" in stderr
    assert direct.tags(repository, with_hashes=True)["hashes"] == {
        "latest": sha(OTHER.manifest_raw),
        "old": sha(IMAGE.manifest_raw),
    }


def test_a_tag_left_on_a_placeholder_by_sigkill_is_removed_by_the_next_cleanup(registry, direct, tmp_path):
    """SIGKILL (an OOM kill, a power cut) cannot be caught: killed between the placeholder's PUT and its
    DELETE, a cleanup leaves the tag on regframe's empty placeholder. The next crawl recognises it, every
    plan that reaches the tag marks it stale whatever its age, and the next cleanup finishes the removal;
    ``keep`` and ``match`` still hold, and a policy finishes it only where it governs."""
    repository = "faults/cleanup-sigkill"
    with cleanup_held_at_the_placeholder_delete(registry, direct, tmp_path, repository) as (process, policy):
        process.kill()
        process.communicate(timeout=30)
    left = direct.digest(repository, "old")
    assert left not in (sha(IMAGE.manifest_raw), None), "the tag is on the placeholder"

    inv = direct.inventory([repository], progress=False)
    stale = stale_tags(inv.manifests, older_than="36500d", tags=inv.tags, errors=inv.errors).set_index("tag")
    assert bool(stale.loc["old", "stale"]) and "removal was stopped" in stale.loc["old", "reason"]
    assert not stale.loc["latest", "stale"]
    kept = stale_tags(inv.manifests, older_than="36500d", keep="^old$").set_index("tag")
    assert not kept.loc["old", "stale"]
    outside = stale_tags(inv.manifests, older_than="36500d", match="^latest$").set_index("tag")
    assert not outside.loc["old", "stale"]
    elsewhere = Policy.from_dict({"rules": [{"name": "latest-only", "tags": "^latest$", "keep_last": 5}]})
    assert not elsewhere.evaluate(inv.manifests).set_index("tag").loc["old", "stale"]

    done = subprocess.run(
        [sys.executable, "-m", "regframe", "cleanup", registry.url, "--policy", str(policy), "--apply", "--yes"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "removal was stopped" in done.stdout
    assert direct.tags(repository, with_hashes=True)["hashes"] == {"latest": sha(OTHER.manifest_raw)}
    assert direct.manifest(repository, sha(IMAGE.manifest_raw)).raw == IMAGE.manifest_raw, "the image stays"


def test_a_failed_manifest_delete_is_an_error_of_the_cleanup(registry, direct, tmp_path):
    """``--delete-manifests``: the registry answers the image manifest's DELETE with 500 (the proxy's doing:
    a real registry fails it on a storage fault). The tag is gone but the manifest stays, so garbage
    collection would free nothing of what the plan announced: the run reports an error row for the
    manifest, prints it, and exits 1."""
    repository = "faults/cleanup-manifest-500"
    push_image(direct, repository, "old", IMAGE)
    push_image(direct, repository, "latest", OTHER)
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rules]]\nname = "old"\ntags = "^old$"\n')
    image = sha(IMAGE.manifest_raw)
    rule = Rule(path=f"/v2/{repository}/manifests/{image}$", method="DELETE", action=Status(500))
    with FaultProxy(registry.url) as proxy:
        proxy.add_rule(rule)
        done = subprocess.run(
            [sys.executable, "-m", "regframe", "cleanup", proxy.url, "--policy", str(policy), "--repositories"]
            + [repository, "--apply", "--yes", "--delete-manifests", "--out", str(tmp_path / "out")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert applied(proxy, rule) >= 1
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Deleted 1 tag; skipped 0; errors 1." in done.stdout
    assert f"error  {repository}@{image}  its tags were removed; manifest not deleted:" in done.stdout
    result = pd.read_csv(tmp_path / "out" / "cleanup_result.csv")
    failed = result[result["status"] == "error"]
    assert list(failed["digest"]) == [image] and failed["tag"].isna().all()
    assert direct.tags(repository, with_hashes=True)["hashes"] == {"latest": sha(OTHER.manifest_raw)}
    assert direct.manifest(repository, image).raw == IMAGE.manifest_raw


class UntagThen(Action):
    """Another client removes ``tag`` straight from the registry, then the request goes on: a racing
    cleanup landing at one exact request, which only a proxy can time."""

    def __init__(self, client, repository: str, tag: str):
        self.client, self.repository, self.tag = client, repository, tag

    def apply(self, ex) -> None:
        self.client.rmtag(self.repository, self.tag, method="placeholder")
        ex.respond(ex.forward())


def test_a_tag_removed_during_the_listing_before_a_manifest_delete_references_nothing(registry, direct):
    """``delete_manifests``: while the cleanup lists every tag afresh before deleting the planned image's
    manifest, another client removes the unrelated tag ``tmp`` (the proxy times it at ``tmp``'s second HEAD,
    so the tag list still names it and its HEAD answers 404). A tag that is gone references nothing: the
    image is deleted, not kept because ``tmp`` "could not be read"."""
    repository = "faults/cleanup-listing-race"
    push_image(direct, repository, "old", IMAGE)
    push_image(direct, repository, "tmp", OTHER)
    image = sha(IMAGE.manifest_raw)
    rule = Rule(path=r"/manifests/tmp$", method="HEAD", every=2, times=1, action=UntagThen(direct, repository, "tmp"))
    stale = pd.DataFrame({"repository": [repository], "tag": ["old"], "digest": [image], "stale": [True]})
    with FaultProxy(registry.url) as proxy:
        proxy.add_rule(rule)
        with connect(proxy.url) as reg:
            result = reg.apply_cleanup(stale, dry_run=False, delete_manifests=True)
        assert applied(proxy, rule) == 1
    assert list(result["status"]) == ["deleted"]
    assert result["reason"].iloc[0] == "manifest deleted"
    assert direct.tags(repository, with_hashes=True, missing_ok=True).get("hashes", {}) == {}
    assert not direct.manifest(repository, image)


def test_a_tag_pushed_again_between_the_placeholder_put_and_delete_is_reported_moved(registry, direct):
    """Another client pushes ``old`` again right before the placeholder's DELETE (the proxy times it). That
    DELETE untags only what points at the placeholder, so the new push stays, and rmtag says the tag moved
    instead of reporting it removed."""
    rmtag_while_pushed_again(
        registry, direct, "faults/rmtag-repushed", "old", PLACEHOLDER_DELETE, "placeholder", "pushed again"
    )


class DeleteManifestThen(Action):
    """Another client deletes ``digest`` from ``repository`` straight at the registry, then the request goes on."""

    def __init__(self, client, repository: str, digest: str):
        self.client, self.repository, self.digest = client, repository, digest

    def apply(self, ex) -> None:
        self.client.delete_manifest(self.repository, self.digest)
        ex.respond(ex.forward())


def test_an_image_deleted_from_one_repository_during_a_crawl_stays_read_in_another(registry, direct):
    """Two repositories tag one image, and a crawl with a budget resolves tags by HEAD and reads each digest's
    content once. Another client deletes the image from the first repository right before the crawl's GET
    there (the proxy times it; the second repository's HEAD is held until then). That tag is an error; the
    second repository's tag, whose HEAD found the image, is read there and is not."""
    first, second = "faults/shared-gone-a", "faults/shared-gone-b"
    push_image(direct, first, "v1", OTHER)
    push_image(direct, second, "v1", OTHER)
    image = sha(OTHER.manifest_raw)
    with FaultProxy(registry.url) as proxy:
        deleting = DeleteManifestThen(direct, first, image)
        proxy.add_rule(Rule(path=f"^/v2/{first}/manifests/sha256:", method="GET", times=1, action=deleting))
        proxy.add_rule(Rule(path=f"^/v2/{second}/manifests/v1$", method="HEAD", action=Delay(0.5)))
        with connect(proxy.url) as reg:
            inv = reg.inventory([first, second], progress=False, budget=100)
    tags = set(zip(inv.tags["repository"].astype(str), inv.tags["digest"].astype(str), strict=True))
    assert tags == {(second, image)}
    assert list(zip(inv.errors["repository"].astype(str), inv.errors["stage"].astype(str), strict=True)) == [
        (first, "manifest")
    ]
    assert set(inv.manifests["repository"].astype(str)) == {second}
