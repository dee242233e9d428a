"""The fault proxy in front of a real registry (Debian docker-registry 2.8), driven with plain requests.

Expected values come from the bytes the tests pushed themselves, never from the proxy's code.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import random
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain

import pytest
import requests

from regframe.processes import free_port
from regframe.testing import local_registry
from regframe.testing.faultproxy import (
    Delay,
    DropHeader,
    FaultProxy,
    FlipBytes,
    ForeignLink,
    Forward,
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

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
REPO = "fp/app"
TAG_REPO = "fp/tags"
# Pushed in this (unsorted) order; the registry returns them in its own order.
TAGS = ["v10", "latest", "v2", "alpha", "v1", "beta-3", "Zulu"]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    layer: bytes
    big: bytes
    config: bytes
    manifest: bytes
    locations: list[str]

    @property
    def layer_digest(self) -> str:
        return sha256(self.layer)

    @property
    def manifest_digest(self) -> str:
        return sha256(self.manifest)


def push_blob(
    session: requests.Session, base: str, repo: str, data: bytes, *, chunked: bool, locations: list[str]
) -> None:
    started = session.post(f"{base}/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    locations.append(location)
    if chunked:
        pieces = (data[i : i + 10_000] for i in range(0, len(data), 10_000))
        patched = session.patch(location, data=pieces, headers={"Content-Type": "application/octet-stream"})
        assert patched.status_code == 202, patched.text
        location = patched.headers["Location"]
        locations.append(location)
        done = session.put(location, params={"digest": sha256(data)})
    else:
        done = session.put(
            location, params={"digest": sha256(data)}, data=data, headers={"Content-Type": "application/octet-stream"}
        )
    assert done.status_code == 201, done.text
    locations.append(done.headers["Location"])


def push_manifest(
    session: requests.Session, base: str, repo: str, ref: str, manifest: bytes, locations: list[str]
) -> None:
    done = session.put(f"{base}/v2/{repo}/manifests/{ref}", data=manifest, headers={"Content-Type": OCI_MANIFEST})
    assert done.status_code == 201, done.text
    locations.append(done.headers["Location"])


@pytest.fixture(scope="module")
def registry():
    with local_registry() as reg:
        yield reg


@pytest.fixture(scope="module")
def image(registry) -> Image:
    """An image and a 7-tag repository, pushed through a proxy (uploads follow rewritten Locations)."""
    rng = random.Random(1)
    layer = rng.randbytes(300_000)
    big = rng.randbytes(2_500_000)  # over the proxy's in-memory request-body limit: streamed
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(blob), "size": len(blob)}
                for blob in (layer, big)
            ],
        },
        indent=2,
    ).encode()
    locations: list[str] = []
    with FaultProxy(registry.url) as proxy, requests.Session() as session:
        for repo in (REPO, TAG_REPO):
            push_blob(session, proxy.url, repo, config, chunked=False, locations=locations)
            push_blob(session, proxy.url, repo, layer, chunked=True, locations=locations)
            push_blob(session, proxy.url, repo, big, chunked=False, locations=locations)
        push_manifest(session, proxy.url, REPO, "latest", manifest, locations)
        for tag in TAGS:
            push_manifest(session, proxy.url, TAG_REPO, tag, manifest, locations)
        proxy_url = proxy.url
    return Image(layer, big, config, manifest, [loc.replace(proxy_url, "PROXY") for loc in locations])


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.url, seed=0) as p:
        yield p


def blob_url(base: str, image: Image) -> str:
    return f"{base}/v2/{REPO}/blobs/{image.layer_digest}"


def manifest_url(base: str) -> str:
    return f"{base}/v2/{REPO}/manifests/latest"


# -- plain forwarding ----------------------------------------------------------------------


def test_uploads_through_the_proxy_follow_rewritten_locations(registry, image):
    # per repository: 2 monolithic uploads (POST, PUT) and 1 chunked (POST, PATCH, PUT); then manifests
    assert len(image.locations) == 2 * (2 + 2 + 3) + 1 + len(TAGS)
    assert all(loc.startswith("PROXY/v2/") for loc in image.locations), image.locations
    # What the proxy stored upstream is exactly what was pushed: read it back around the proxy.
    for data in (image.layer, image.big, image.config):
        direct = requests.get(f"{registry.url}/v2/{REPO}/blobs/{sha256(data)}")
        assert direct.content == data
    direct = requests.get(manifest_url(registry.url), headers={"Accept": ACCEPT})
    assert direct.content == image.manifest
    assert direct.headers["Docker-Content-Digest"] == image.manifest_digest


def test_keep_alive_reuses_one_connection_each_way(proxy, image):
    with requests.Session() as session:
        head = session.head(manifest_url(proxy.url), headers={"Accept": ACCEPT})
        for _ in range(3):
            assert session.get(blob_url(proxy.url, image)).content == image.layer
        missing = session.delete(f"{proxy.url}/v2/{REPO}/manifests/sha256:{'0' * 64}")
        assert session.get(f"{proxy.url}/v2/").status_code == 200
    assert head.headers["Docker-Content-Digest"] == image.manifest_digest
    assert int(head.headers["Content-Length"]) == len(image.manifest)
    assert missing.status_code == 404
    stats = proxy.stats
    assert (stats.requests, stats.forwarded) == (6, 6)
    assert (stats.connections, stats.upstream_connections) == (1, 1)
    assert stats.actions == {}


def test_counters_are_exact_under_concurrency(proxy):
    proxy.add_rule(Rule(path=r"^/v2/$", every=5, action=Status(503)))

    def client(_: int) -> list[int]:
        with requests.Session() as session:
            return [session.get(f"{proxy.url}/v2/").status_code for _ in range(25)]

    with ThreadPoolExecutor(8) as pool:
        codes = list(chain.from_iterable(pool.map(client, range(8))))
    assert codes.count(503) == 8 * 25 // 5
    stats = proxy.stats
    assert (stats.requests, stats.forwarded, stats.connections) == (200, 160, 8)
    assert (stats.rules[0].matched, stats.rules[0].applied) == (200, 40)


def test_https_upstream_with_ca(image):
    with local_registry(tls=True) as tls_registry, FaultProxy(tls_registry.url, ca_path=tls_registry.ca_path) as p:
        answer = requests.get(f"{p.url}/v2/")
        assert answer.status_code == 200
        assert answer.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_credentials_pass_through_and_realm_is_kept():
    with local_registry(auth="basic") as basic, FaultProxy(basic.url) as p:
        refused = requests.get(f"{p.url}/v2/")
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="regframe"'
        assert requests.get(f"{p.url}/v2/", auth=basic.credentials("alice")).status_code == 200
        assert requests.get(f"{p.url}/v2/", auth=("alice", "wrong")).status_code == 401


def test_headers_reach_the_upstream_untouched_except_hop_by_hop():
    with RecordingServer(body=b"ok") as upstream, FaultProxy(upstream.url) as p:
        answer = requests.get(
            f"{p.url}/v2/x?a=1",
            headers={
                "Authorization": "Bearer abc.def",
                "Proxy-Authorization": "Basic cHJveHk=",
                "X-Custom": "kept",
                "Connection": "keep-alive, X-Hop",
                "X-Hop": "dropped",
            },
        )
        assert answer.content == b"ok"
        [seen] = upstream.requests
    assert (seen.method, seen.path) == ("GET", "/v2/x?a=1")
    assert seen.headers["authorization"] == "Bearer abc.def"
    assert seen.headers["x-custom"] == "kept"
    assert seen.headers["host"] == upstream.host
    assert "proxy-authorization" not in seen.headers and "x-hop" not in seen.headers


def test_upstream_down_answers_502_with_an_oci_error():
    with FaultProxy(f"http://127.0.0.1:{free_port()}") as p:
        answer = requests.get(f"{p.url}/v2/")
    assert answer.status_code == 502
    assert answer.json()["errors"][0]["code"] == "UNAVAILABLE"


# -- rule triggers ---------------------------------------------------------------------------


def test_every_nth_matching_request_with_method_filter(proxy, image):
    proxy.add_rule(Rule(path=r"/manifests/", method="GET", every=3, action=Status(503)))
    gets, heads = [], []
    with requests.Session() as session:
        for _ in range(9):
            gets.append(session.get(manifest_url(proxy.url), headers={"Accept": ACCEPT}))
            heads.append(session.head(manifest_url(proxy.url), headers={"Accept": ACCEPT}))
        blob = session.get(blob_url(proxy.url, image))
    assert [r.status_code for r in gets] == [200, 200, 503] * 3
    assert all(r.status_code == 200 for r in heads) and blob.status_code == 200
    assert gets[2].json()["errors"][0]["code"] == "UNAVAILABLE"
    assert gets[0].content == image.manifest
    stats = proxy.stats
    assert (stats.rules[0].matched, stats.rules[0].applied) == (9, 3)
    assert stats.actions == {"Status": 3}
    assert (stats.requests, stats.forwarded) == (19, 16)


def outcomes(registry, seed: int, count: int = 40) -> list[int]:
    with FaultProxy(registry.url, seed=seed) as p, requests.Session() as session:
        p.add_rule(Rule(probability=0.5, action=Status(503)))
        codes = [session.get(f"{p.url}/v2/").status_code for _ in range(count)]
        assert p.stats.rules[0].applied == codes.count(503)
    return codes


def test_probability_is_deterministic_for_a_seed(registry):
    first, again, other = outcomes(registry, 7), outcomes(registry, 7), outcomes(registry, 8)
    assert first == again
    assert first != other
    assert set(first) == {200, 503}
    assert 8 <= first.count(503) <= 32


def test_times_caps_applications_then_later_rules_apply(proxy):
    proxy.add_rule(Rule(times=2, action=Status(500)))
    proxy.add_rule(Rule(path=r"^/v2/$", times=1, action=Status(504)))
    codes = [requests.get(f"{proxy.url}/v2/").status_code for _ in range(5)]
    assert codes == [500, 500, 504, 200, 200]
    assert [(r.matched, r.applied) for r in proxy.stats.rules] == [(5, 2), (3, 1)]


def test_forward_rule_exempts_paths_and_clear_rules(proxy):
    proxy.add_rule(Rule(path=r"^/v2/$", action=Forward()))
    proxy.add_rule(Rule(action=Status(404)))
    assert requests.get(f"{proxy.url}/v2/").status_code == 200
    assert requests.get(f"{proxy.url}/v2/_catalog").status_code == 404
    proxy.clear_rules()
    assert requests.get(f"{proxy.url}/v2/_catalog").status_code == 200
    assert proxy.stats.rules == ()
    assert proxy.stats.actions == {"Forward": 1, "Status": 1}


@pytest.mark.parametrize("kwargs", [{"every": 0}, {"probability": 1.5}, {"times": -1}])
def test_rule_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        Rule(action=Reset(), **kwargs)


# -- actions ---------------------------------------------------------------------------------


def test_reset_raises_connection_error_and_the_proxy_carries_on(proxy, image):
    proxy.add_rule(Rule(path=r"/blobs/", times=1, action=Reset()))
    with requests.Session() as session:
        with pytest.raises(requests.ConnectionError):
            session.get(blob_url(proxy.url, image))
        assert session.get(blob_url(proxy.url, image)).content == image.layer
    assert proxy.stats.actions == {"Reset": 1}


def test_rate_limit_and_custom_status(proxy):
    proxy.add_rule(Rule(path="_catalog", action=RateLimit(retry_after=3)))
    proxy.add_rule(Rule(action=Status(500, body={"hello": "world"}, headers={"X-Why": "test"})))
    limited = requests.get(f"{proxy.url}/v2/_catalog")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert limited.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    failed = requests.get(f"{proxy.url}/v2/")
    assert (failed.status_code, failed.json(), failed.headers["X-Why"]) == (500, {"hello": "world"}, "test")


def test_status_on_an_upload_keeps_the_connection_usable(proxy, image):
    proxy.add_rule(Rule(method="PUT", times=1, action=Status(503)))
    with requests.Session() as session:
        refused = session.put(
            f"{proxy.url}/v2/{REPO}/manifests/other", data=image.manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        assert refused.status_code == 503
        assert session.get(f"{proxy.url}/v2/").status_code == 200
    assert proxy.stats.connections == 1


def test_truncate_sends_fewer_bytes_than_announced(proxy, image):
    proxy.add_rule(Rule(path=r"/blobs/", times=1, action=Truncate(keep=1000)))
    proxy.add_rule(Rule(path=r"/blobs/", times=1, action=Truncate(keep=0.25)))
    for expected in (1000, len(image.layer) // 4):
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
        conn.request("GET", f"/v2/{REPO}/blobs/{image.layer_digest}")
        answer = conn.getresponse()
        assert int(answer.getheader("Content-Length")) == len(image.layer)
        with pytest.raises(http.client.IncompleteRead) as cut:
            answer.read()
        assert cut.value.partial == image.layer[:expected]
        conn.close()
    assert requests.get(blob_url(proxy.url, image)).content == image.layer


def test_flip_bytes_changes_the_digest_not_the_length(registry, image):
    def fetch(seed: int) -> bytes:
        with FaultProxy(registry.url, seed=seed) as p:
            p.add_rule(Rule(action=FlipBytes(count=3)))
            return requests.get(blob_url(p.url, image)).content

    first, again = fetch(5), fetch(5)
    assert len(first) == len(image.layer)
    assert sha256(first) != image.layer_digest
    changed = [i for i, (a, b) in enumerate(zip(first, image.layer, strict=True)) if a != b]
    assert len(changed) == 3
    assert all(bin(first[i] ^ image.layer[i]).count("1") == 1 for i in changed)
    assert again == first


def test_malformed_json_keeps_the_content_type(proxy, image):
    proxy.add_rule(Rule(path=r"/manifests/", action=MalformedJSON()))
    answer = requests.get(manifest_url(proxy.url), headers={"Accept": ACCEPT})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == OCI_MANIFEST
    assert int(answer.headers["Content-Length"]) == len(answer.content)
    with pytest.raises(ValueError):
        json.loads(answer.content)


def test_delay_and_latency_mode(registry, proxy):
    proxy.add_rule(Rule(action=Delay(0.3)))
    started = time.monotonic()
    assert requests.get(f"{proxy.url}/v2/").status_code == 200
    assert time.monotonic() - started >= 0.3
    with FaultProxy(registry.url, latency=0.05) as slow, requests.Session() as session:
        started = time.monotonic()
        assert all(session.get(f"{slow.url}/v2/").status_code == 200 for _ in range(4))
        assert time.monotonic() - started >= 4 * 0.05
        assert slow.stats.forwarded == 4


def test_hang_times_out_and_the_proxy_still_stops_quickly(registry):
    p = FaultProxy(registry.url).start()
    url = p.url
    idle = requests.Session()
    try:
        assert idle.get(f"{url}/v2/").status_code == 200  # leaves a keep-alive connection open
        p.add_rule(Rule(action=Hang()))
        with pytest.raises(requests.ReadTimeout):
            requests.get(f"{url}/v2/", timeout=0.5)
    finally:
        started = time.monotonic()
        p.stop()
        stopped_in = time.monotonic() - started
        idle.close()
    assert stopped_in < 1.0
    assert p.stats.actions == {"Hang": 1}
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/v2/", timeout=1)


def test_oversize_streams_without_holding_the_body(proxy, image):
    total = 60 * 1024 * 1024
    proxy.add_rule(Rule(path=r"/manifests/", times=1, action=Oversize(total)))
    tracemalloc.start()
    try:
        with requests.get(manifest_url(proxy.url), headers={"Accept": ACCEPT}, stream=True) as answer:
            assert "Content-Length" not in answer.headers
            assert answer.headers["Transfer-Encoding"] == "chunked"
            received, head = 0, b""
            for chunk in answer.iter_content(256 * 1024):
                head = head or chunk[: len(image.manifest)]
                received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == total
    assert head == image.manifest  # the real document first, padding after
    assert peak < 16 * 1024 * 1024


def test_oversize_announced_or_overrunning_its_length(proxy, image):
    proxy.add_rule(Rule(times=1, action=Oversize(10 * 1024 * 1024, announce=True)))
    with requests.get(manifest_url(proxy.url), headers={"Accept": ACCEPT}, stream=True) as answer:
        assert int(answer.headers["Content-Length"]) == 10 * 1024 * 1024
    proxy.add_rule(Rule(times=1, action=Oversize(100_000, keep_length=True)))
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    conn.request("GET", f"/v2/{REPO}/manifests/latest", headers={"Accept": ACCEPT})
    answer = conn.getresponse()
    assert int(answer.getheader("Content-Length")) == len(image.manifest)
    assert answer.read() == image.manifest
    overrun = conn.sock.recv(1000)  # the bytes past the announced length follow on the socket
    assert overrun and set(overrun) == {ord(" ")}
    conn.close()


def test_loop_and_foreign_links(proxy):
    proxy.add_rule(Rule(times=1, action=LoopLink()))
    proxy.add_rule(Rule(times=1, action=ForeignLink("http://elsewhere.invalid/v2/_catalog?n=1")))
    looped = requests.get(f"{proxy.url}/v2/_catalog?n=1")
    assert looped.links["next"]["url"] == "/v2/_catalog?n=1"
    foreign = requests.get(f"{proxy.url}/v2/_catalog?n=1")
    assert foreign.links["next"]["url"] == "http://elsewhere.invalid/v2/_catalog?n=1"


def test_link_headers_are_kept_relative_or_rewritten_to_the_proxy(registry, image):
    with FaultProxy(registry.url) as inner:
        relative = requests.get(f"{inner.url}/v2/_catalog?n=1")
        assert relative.json()["repositories"] == [REPO]
        assert relative.headers["Link"] == f'</v2/_catalog?last={REPO.replace("/", "%2F")}&n=1>; rel="next"'
        inner.add_rule(Rule(action=SetHeader("Link", f'<{inner.url}/v2/_catalog?n=1>; rel="next"')))
        with FaultProxy(inner.url) as outer:
            rewritten = requests.get(f"{outer.url}/v2/_catalog?n=1")
            assert rewritten.headers["Link"] == f'<{outer.url}/v2/_catalog?n=1>; rel="next"'


def test_drop_and_set_headers(proxy, image):
    fake = "sha256:" + "0" * 64
    proxy.add_rule(Rule(times=1, action=DropHeader("Docker-Content-Digest")))
    proxy.add_rule(Rule(times=1, action=SetHeader("Docker-Content-Digest", fake)))
    dropped = requests.head(manifest_url(proxy.url), headers={"Accept": ACCEPT})
    falsified = requests.head(manifest_url(proxy.url), headers={"Accept": ACCEPT})
    honest = requests.head(manifest_url(proxy.url), headers={"Accept": ACCEPT})
    assert "Docker-Content-Digest" not in dropped.headers
    assert falsified.headers["Docker-Content-Digest"] == fake
    assert honest.headers["Docker-Content-Digest"] == image.manifest_digest


def follow_tag_pages(base: str, first: str) -> list[list[str]]:
    pages: list[list[str]] = []
    url: str | None = base + first
    with requests.Session() as session:
        while url:
            answer = session.get(url)
            assert answer.status_code == 200, answer.text
            assert answer.json()["name"] == TAG_REPO
            pages.append(answer.json()["tags"])
            url = base + answer.links["next"]["url"] if "next" in answer.links else None
            assert len(pages) <= len(TAGS) + 1, "pagination does not end"
    return pages


def test_tag_pagination_pages_per_the_oci_spec(registry, proxy, image):
    unpaged = requests.get(f"{registry.url}/v2/{TAG_REPO}/tags/list?n=3").json()["tags"]
    assert sorted(unpaged) == sorted(TAGS)  # distribution 2.8 ignores n: the proxy must page
    expected = sorted(TAGS)
    proxy.add_rule(Rule(path=r"/tags/list", action=TagPagination(page_size=5)))
    path = f"/v2/{TAG_REPO}/tags/list"
    pages = follow_tag_pages(proxy.url, f"{path}?n=3")
    assert pages == [expected[0:3], expected[3:6], expected[6:7]]
    first = requests.get(f"{proxy.url}{path}?n=3")
    assert first.headers["Link"] == f'<{path}?last={expected[2]}&n=3>; rel="next"'
    assert follow_tag_pages(proxy.url, path) == [expected[:5], expected[5:]]
    after = requests.get(f"{proxy.url}{path}", params={"last": "beta-3", "n": 2}).json()["tags"]
    assert after == [t for t in expected if t > "beta-3"][:2]
    for n in range(1, 9):
        paged = follow_tag_pages(proxy.url, f"{path}?n={n}")
        assert list(chain.from_iterable(paged)) == expected
        assert len(paged) == math.ceil(len(TAGS) / n)
    assert requests.get(f"{proxy.url}{path}?n=-1").status_code == 400
    unknown = requests.get(f"{proxy.url}/v2/fp/nothing/tags/list?n=2")
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["code"] == "NAME_UNKNOWN"


def test_redirect_to_recording_server_serves_real_bytes(registry, proxy, image):
    with RecordingServer(registry.url) as storage:
        proxy.add_rule(Rule(path=r"/blobs/sha256:", method="GET", action=RedirectTo(storage.url)))
        with requests.Session() as session:
            session.headers["Authorization"] = "Bearer registry-only"
            answer = session.get(blob_url(proxy.url, image))
        assert answer.status_code == 200 and answer.content == image.layer
        assert [r.status_code for r in answer.history] == [307]
        assert answer.history[0].headers["Location"] == blob_url(storage.url, image)
        [seen] = storage.requests
    assert (seen.method, seen.path) == ("GET", f"/v2/{REPO}/blobs/{image.layer_digest}")
    assert "authorization" not in seen.headers
    assert storage.stats.forwarded == 1
    assert proxy.stats.forwarded == 0
