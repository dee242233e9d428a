"""Hostile servers cannot make one call hold memory or time without bound: error bodies are read up to a
cap, a drip of bytes hits a deadline, and retries wait a bounded total.

A real registry (Debian docker-registry 2.8) sits behind the fault proxy; the proxy plays the hostile
server (gzip bombs, endless error bodies, slow drips, Retry-After), which a real registry cannot be made
to be. Expected values are the limits these tests set or the documented defaults, never values read from
the code under test.
"""

from __future__ import annotations

import gzip
import threading
import time

import pytest
import urllib3

import regframe
from regframe.client.connections import DirectResponse
from regframe.client.transport import Transport
from regframe.testing import build_image, layer, local_registry, push_image
from regframe.testing.faultproxy import Drip, FaultProxy, HugeBody, RateLimit, Rule, Status

MB = 1024 * 1024
ERROR_CAP = 64 * 1024  # the documented cap on error bodies
IMAGE = build_image([layer("limits-small", 3000), layer("limits-big", 200_000)])
SMALL, BIG = IMAGE.layers
REPO = "limits/app"


def connect(url: str, **options) -> regframe.Registry:
    options.setdefault("docker_config", False)
    return regframe.connect(url, **options)


def applied(proxy: FaultProxy, rule: Rule) -> int:
    return next(s.applied for s in proxy.stats.rules if s.rule is rule)


@pytest.fixture(scope="module")
def registry():
    with local_registry() as reg, connect(reg.url) as client:
        push_image(client, REPO, "v1", IMAGE)
        yield reg


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.url, seed=0) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def error_bytes(monkeypatch):
    """Decoded bytes the client takes out of error responses (status 400 and up), counted where a response
    hands them out: urllib3's (other hosts, proxies) and the registry connection's. An instrument only,
    every byte still comes from the server."""
    counted: list[int] = []
    for cls in (urllib3.response.HTTPResponse, DirectResponse):
        original = cls.read

        def read(self, *args, _original=original, **kwargs):
            data = _original(self, *args, **kwargs)
            if self.status >= 400:
                counted.append(len(data))
            return data

        monkeypatch.setattr(cls, "read", read)
    return counted


def within(seconds: float, call):
    """Run ``call`` in a thread and return what it raised (None if nothing), failing if it still runs after
    ``seconds``: a hang fails the test instead of blocking it (stopping the proxy then frees the thread)."""
    outcome: dict = {}

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the call still runs after {seconds} s"
    outcome["elapsed"] = time.monotonic() - started
    return outcome.get("error"), outcome["elapsed"]


# -- the hostile server itself -------------------------------------------------------------------


@pytest.mark.parametrize("total", [0, 5, MB, 3 * MB + 7])
def test_proxy_gzip_bomb_is_valid_gzip_of_its_size(proxy, total):
    proxy.add_rule(Rule(path=r"^/bomb$", action=HugeBody(404, total, gzip=True, announce=True, fill=b"x")))
    http = urllib3.PoolManager()
    response = http.request("GET", proxy.url + "/bomb", decode_content=False, preload_content=False)
    wire = response.read(decode_content=False)
    assert response.status == 404 and response.headers["Content-Encoding"] == "gzip"
    assert int(response.headers["Content-Length"]) == len(wire) < 2000 + total // 1000
    assert gzip.decompress(wire) == b"x" * total


@pytest.mark.parametrize("headers", [False, True], ids=["body", "headers"])
def test_proxy_drip_relays_the_real_answer(proxy, headers):
    proxy.add_rule(Rule(path=f"/blobs/{SMALL.digest}", method="GET", action=Drip(0.001, size=7, headers=headers)))
    http = urllib3.PoolManager()
    response = http.request("GET", f"{proxy.url}/v2/{REPO}/blobs/{SMALL.digest}")
    assert response.status == 200 and response.data == SMALL.data


# -- error bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("announce", [False, True], ids=["chunked", "announced"])
def test_gzip_bomb_error_body_is_decoded_only_up_to_the_cap(proxy, error_bytes, announce):
    """128 MiB of spaces in about 130 KiB of gzip, as a blob's 404."""
    proxy.add_rule(
        Rule(path=f"/blobs/{SMALL.digest}", method="GET", action=HugeBody(404, 128 * MB, gzip=True, announce=announce))
    )
    with connect(proxy.url, retries=0) as reg:
        error, elapsed = within(30, lambda: reg.blob(REPO, SMALL.digest))
    assert isinstance(error, regframe.NotFoundError), error
    assert elapsed < 10
    assert 0 < sum(error_bytes) <= ERROR_CAP + 1


@pytest.mark.parametrize("announce", [False, True], ids=["chunked", "announced"])
def test_giant_error_body_is_read_up_to_the_cap_and_its_rest_never_drained(proxy, error_bytes, announce):
    proxy.add_rule(Rule(path=r"/manifests/v1$", method="GET", action=HugeBody(500, 128 * MB, announce=announce)))
    with connect(proxy.url, retries=0) as reg:
        error, elapsed = within(30, lambda: reg.manifest(REPO, "v1"))
    proxy.stop()
    assert isinstance(error, regframe.RegistryError) and error.status == 500, error
    assert elapsed < 10
    assert 0 < sum(error_bytes) <= ERROR_CAP + 1
    assert proxy.stats.bytes_sent < 16 * MB, "the connection was dropped, not drained to the end"


def test_small_error_bodies_keep_their_message_and_the_connection(proxy):
    missing = "sha256:" + "0" * 64
    with connect(proxy.url) as reg:
        for _ in range(3):
            with pytest.raises(regframe.NotFoundError, match="BLOB_UNKNOWN"):
                reg.blob(REPO, missing)
    assert proxy.stats.connections == 1, "a small error body is read to the end and the connection reused"


# -- deadlines ------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [False, True], ids=["body", "headers"])
def test_drip_fed_manifest_ends_at_the_request_timeout(proxy, headers):
    """One byte every 0.5 s, well inside read_timeout=2: only an overall deadline can end it."""
    proxy.add_rule(Rule(path=r"/manifests/v1$", method="GET", action=Drip(0.5, headers=headers)))
    with connect(proxy.url, read_timeout=2, request_timeout=2, retries=0) as reg:
        error, _ = within(10, lambda: reg.manifest(REPO, "v1"))
    assert isinstance(error, regframe.RegistryTimeoutError), error
    assert "request_timeout=2" in str(error)
    assert f"/v2/{REPO}/manifests/v1" in str(error)


def test_drip_fed_blob_is_cut_below_the_minimum_rate(proxy):
    proxy.add_rule(Rule(path=f"/blobs/{BIG.digest}", method="GET", action=Drip(0.5)))
    with connect(proxy.url, read_timeout=2, request_timeout=2, retries=0) as reg:
        error, _ = within(10, lambda: reg.blob(REPO, BIG.digest))
    assert isinstance(error, regframe.RegistryTimeoutError), error
    assert "min_stream_rate=1024" in str(error) and "request_timeout=2" in str(error)


def test_slow_blob_above_the_minimum_rate_outlasts_the_request_timeout(proxy):
    """About 80 KB/s: slower than request_timeout allows for a whole read, far above min_stream_rate."""
    proxy.add_rule(Rule(path=f"/blobs/{BIG.digest}", method="GET", action=Drip(0.05, size=4096)))
    with connect(proxy.url, request_timeout=0.5) as reg:
        started = time.monotonic()
        blob = reg.blob(REPO, BIG.digest)
        elapsed = time.monotonic() - started
    assert blob.body == BIG.data
    assert elapsed > 0.5, "the download took longer than request_timeout"


# -- waiting between retries ----------------------------------------------------------------------


def test_retry_after_is_honoured_within_max_retry_wait_per_call(proxy):
    """Retry-After: 60 on every answer; the waits are recorded through the injectable sleep, not slept."""
    rule = proxy.add_rule(Rule(path=r"/tags/list", action=RateLimit(60)))
    waits: list[float] = []
    with connect(proxy.url) as reg:
        transport = Transport(reg.url, reg.auth, retries=3, sleep=waits.append)
        with pytest.raises(regframe.RateLimitedError) as info:
            transport.request("GET", f"/v2/{REPO}/tags/list")
        transport.close()
    assert waits == [60]
    assert sum(waits) <= 60, "the default max_retry_wait is 60 s"
    assert "gave up after waiting 60 s in total (max_retry_wait=60)" in str(info.value)
    assert applied(proxy, rule) == 2


def test_backoff_waits_are_bounded_too(proxy):
    rule = proxy.add_rule(Rule(path=r"/manifests/v1$", method="GET", action=Status(503)))
    waits: list[float] = []
    with connect(proxy.url) as reg:
        transport = Transport(reg.url, reg.auth, retries=20, max_retry_wait=1, sleep=waits.append)
        with pytest.raises(regframe.RegistryError) as info:
            transport.request("GET", f"/v2/{REPO}/manifests/v1")
        transport.close()
    assert 0 < sum(waits) <= 1
    assert info.value.status == 503 and "max_retry_wait=1)" in str(info.value)
    assert applied(proxy, rule) == len(waits) + 1 < 21


def test_a_pause_the_refused_call_does_not_wait_holds_no_other_call(proxy):
    """A 429 asking for 20 s, where max_retry_wait=1 lets the call wait 1 s at most: the call fails at once,
    and holds no other call for those 20 s either (a pause is kept only by a call that waits it out)."""
    proxy.add_rule(Rule(path=r"/tags/list", action=RateLimit(20), times=1))
    with connect(proxy.url, max_retry_wait=1) as reg:
        error, _ = within(10, lambda: reg.tags(REPO))
        assert isinstance(error, regframe.RateLimitedError), error
        started = time.monotonic()
        assert reg.tags(REPO)["tags"]
        assert time.monotonic() - started < 10, "the next call was held for the 20 s pause"


def test_max_retry_wait_is_a_connect_option(proxy):
    rule = proxy.add_rule(Rule(path=r"/tags/list", action=RateLimit(0.4)))
    with connect(proxy.url, max_retry_wait=0.5) as reg:
        error, _ = within(10, lambda: reg.tags(REPO))
    assert isinstance(error, regframe.RateLimitedError), error
    assert "max_retry_wait=0.5" in str(error)
    assert applied(proxy, rule) == 2, "one wait of 0.4 s fits in 0.5 s, a second does not"


@pytest.mark.parametrize(
    "option, value",
    [
        ("request_timeout", 0),
        ("request_timeout", -1),
        ("request_timeout", float("inf")),
        ("request_timeout", True),
        ("min_stream_rate", -1),
        ("min_stream_rate", float("nan")),
        ("min_stream_rate", "fast"),
        ("max_retry_wait", -0.5),
        ("max_retry_wait", float("nan")),
        ("max_retry_wait", None),
    ],
)
def test_bad_limits_are_refused_before_any_request(proxy, option, value):
    with pytest.raises(ValueError, match=option):
        connect(proxy.url, **{option: value})
    assert proxy.stats.requests == 0
