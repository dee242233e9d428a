"""Retries after timeouts, stops that reach requests waiting to be retried, rate-limit headers in the forms
the IETF draft and HTTP allow, and repository lists saved with a byte-order mark.

Every test runs against a real registry (Debian docker-registry 2.8) started by the harness. A real
registry does not stall, answer 429 or count pulls on demand, so where a test needs that a fault proxy in
front of it does, and the test says so. Expected values come from the images the tests pushed and the
figures they gave the proxy, never from the code under test.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pandas as pd
import pytest

import regframe
from regframe.cli import main
from regframe.testing import build_image, layer, local_registry, make_fleet, push_image, seed
from regframe.testing.faultproxy import Action, Delay, Drip, FaultProxy, Hang, PullQuota, RateLimit, Rule, Status

FLEET = make_fleet(
    repositories=4,
    tags_per_repo=8,
    base_layers=1,
    multi_platform_ratio=0.25,
    oci_ratio=0.5,
    seed=21,
    layer_size_range=(300, 1500),
    base_layer_size_range=(1500, 3000),
)
IMAGE = build_image([layer("retries-base", 2000), layer("retries-app", 5000)])
REPO = "retries/app"
HUB_WINDOW = 21600


def connect(url: str, **options) -> regframe.Registry:
    options.setdefault("docker_config", False)
    return regframe.connect(url, **options)


def applied(proxy: FaultProxy, rule: Rule) -> int:
    return next(s.applied for s in proxy.stats.rules if s.rule is rule)


def tag_digests(fleet) -> set[tuple[str, str, str]]:
    return {(repository, tag, item.digest) for repository, tag, item in fleet.items()}


def crawled(inv) -> set[tuple[str, str, str]]:
    return set(zip(*(inv.tags[c].astype(str) for c in ("repository", "tag", "digest")), strict=True))


@pytest.fixture(scope="module")
def fleet_reg():
    with local_registry() as reg, connect(reg.url) as client:
        seed(client, FLEET)
        yield reg


@pytest.fixture(scope="module")
def registry():
    with local_registry() as reg, connect(reg.url) as client:
        push_image(client, REPO, "v1", IMAGE)
        yield reg


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.url, seed=0) as fault_proxy:
        yield fault_proxy


# -- a wait for an answer that runs out of read_timeout ---------------------------------------------


def test_a_stall_longer_than_read_timeout_is_retried_and_the_crawl_reads_every_tag(fleet_reg):
    """The proxy holds the first manifest GETs of a crawl (as many as there are tags) 2 s, past
    read_timeout=1: the registry stalled once. Each is retried as a reset or a 503 would be, and the crawl
    reads every tag."""
    with FaultProxy(fleet_reg.url) as proxy:
        rule = proxy.add_rule(Rule(path=r"/manifests/", method="GET", times=FLEET.tag_count, action=Delay(2)))
        with connect(proxy.url, read_timeout=1) as reg:
            inv = reg.inventory(progress=False)
            retries = reg.stats["retries"]
        assert applied(proxy, rule) == FLEET.tag_count
    assert inv.errors.empty, inv.errors["error"].tolist()
    assert inv.complete and crawled(inv) == tag_digests(FLEET)
    assert set(retries) == {"timeout"} and retries["timeout"] >= FLEET.tag_count, "each stalled request retried"
    assert inv.stats["retries"] == retries["timeout"]
    assert inv.stats["concurrency"]["decreases"] >= 1, "the timeouts count as congestion"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_hung_read_is_retried_within_the_retries_then_names_read_timeout(proxy, method):
    """A registry that never answers (the proxy holds the request): GET and HEAD are sent 1 + retries
    times, with backoff between, and then fail naming read_timeout."""
    rule = proxy.add_rule(Rule(path=rf"^/v2/{REPO}/manifests/v1$", method=method, action=Hang()))
    with connect(proxy.url, read_timeout=0.3, retries=2) as reg:
        started = time.monotonic()
        with pytest.raises(regframe.RegistryTimeoutError, match=r"read_timeout=0\.3"):
            if method == "GET":
                reg.manifest(REPO, "v1")
            else:
                reg.manifest_exists(REPO, "v1")
        elapsed = time.monotonic() - started
        assert reg.stats["retries"] == {"timeout": 2}
    assert applied(proxy, rule) == 3, "one attempt and two retries, no more"
    assert elapsed >= 3 * 0.3 + (0.25 + 0.5) * 0.5, "three waits of read_timeout and two backoff sleeps"


class StallBody(Action):
    """Send the head and half the body at once, then nothing for ``seconds``, then the rest."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def apply(self, ex) -> None:
        response = ex.forward()
        data = response.read()

        def body():
            yield data[: len(data) // 2]
            if ex.wait(self.seconds):
                yield data[len(data) // 2 :]

        response.body = body()
        ex.respond(response)


def test_a_body_that_stalls_past_read_timeout_is_fetched_again(proxy):
    """The proxy sends the manifest's head and half its body, then stalls 2 s, past read_timeout=0.5 (once):
    the GET is sent again and the manifest read whole from the second answer."""
    rule = proxy.add_rule(Rule(path=rf"^/v2/{REPO}/manifests/v1$", method="GET", times=1, action=StallBody(2)))
    with connect(proxy.url, read_timeout=0.5) as reg:
        manifest = reg.manifest(REPO, "v1")
        assert reg.stats["retries"] == {"timeout": 1}
    assert manifest.raw == IMAGE.manifest_raw
    assert applied(proxy, rule) == 1


def test_timeout_retries_stay_within_max_retry_wait(proxy):
    """max_retry_wait=0 leaves no time to sleep before a retry: the hung GET is sent once, and the error
    says why it was not sent again."""
    rule = proxy.add_rule(Rule(path=rf"^/v2/{REPO}/manifests/v1$", method="GET", action=Hang()))
    with (
        connect(proxy.url, read_timeout=0.3, retries=3, max_retry_wait=0) as reg,
        pytest.raises(regframe.RegistryTimeoutError, match=r"read_timeout=0\.3.*gave up after waiting"),
    ):
        reg.manifest(REPO, "v1")
    assert applied(proxy, rule) == 1


def test_a_write_that_times_out_is_not_sent_again(proxy):
    """An upload's POST the proxy holds past read_timeout: the registry may be acting on it, so it is not
    sent again."""
    rule = proxy.add_rule(Rule(path=r"/blobs/uploads/$", method="POST", action=Hang()))
    with connect(proxy.url, read_timeout=0.3, retries=3) as reg:
        with pytest.raises(regframe.RegistryTimeoutError, match="read_timeout"):
            reg.upload_blob("retries/post", b"a write that times out")
        assert reg.stats["total_retries"] == 0
    assert applied(proxy, rule) == 1


def test_a_read_out_of_request_timeout_is_not_sent_again(proxy):
    """The proxy drips the answer a byte every 0.2 s, inside read_timeout=1 but past request_timeout=1:
    the request's whole budget is spent, and it is not sent again."""
    rule = proxy.add_rule(Rule(path=rf"^/v2/{REPO}/manifests/v1$", method="GET", action=Drip(0.2, headers=True)))
    with connect(proxy.url, read_timeout=1, request_timeout=1, retries=3) as reg:
        with pytest.raises(regframe.RegistryTimeoutError, match="request_timeout=1"):
            reg.manifest(REPO, "v1")
        assert reg.stats["total_retries"] == 0
    assert applied(proxy, rule) == 1


# -- stopping a crawl whose requests wait to be retried ---------------------------------------------


class Refuse(Action):
    """429 with ``Retry-After`` (None: without), as a rate-limited registry answers, to every request or to
    the ``first`` ones (the rest are forwarded); ``paths`` records every request, in order. With
    ``together``, the ``first`` refusals are answered only once all of them have arrived (or after 5 s), so
    the client sees them as one round of refusals, not one round after another."""

    def __init__(self, retry_after: float | None, first: int | None = None, together: bool = False):
        self.retry_after, self.first = retry_after, first
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._all_arrived = threading.Event()
        if not together:
            self._all_arrived.set()

    def apply(self, ex) -> None:
        with self._lock:
            self.paths.append(f"{ex.method} {ex.path}")
            refused = self.first is None or len(self.paths) <= self.first
            if self.first is not None and len(self.paths) >= self.first:
                self._all_arrived.set()
        if refused:
            self._all_arrived.wait(5)
        if refused and self.retry_after is None:
            Status(429).apply(ex)
        elif refused:
            RateLimit(self.retry_after).apply(ex)
        else:
            super().apply(ex)


def stop_after(seconds: float, stop, proxy: FaultProxy) -> dict:
    """Call ``stop()`` after ``seconds``; the returned dict then holds when, and the requests made by then."""
    mark: dict = {}

    def run() -> None:
        time.sleep(seconds)
        mark["requests"], mark["at"] = proxy.stats.requests, time.monotonic()
        stop()

    threading.Thread(target=run, daemon=True).start()
    return mark


@pytest.mark.parametrize("how", ["stop event", "ctrl-c"])
def test_a_stop_ends_the_waits_before_retries_and_nothing_is_sent_after_it(fleet_reg, how):
    """Every manifest GET is refused by the proxy with 429 and Retry-After: 5, so at the stop every request
    of the crawl waits to be retried. inventory() returns at once, with no request after the stop and the
    tags it had not read counted as not read, not as failures."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    refuse = Refuse(retry_after=5)
    with FaultProxy(fleet_reg.url) as proxy:
        proxy.add_rule(Rule(path=r"/manifests/", action=refuse))
        with connect(proxy.url) as reg:
            event = threading.Event()
            if how == "stop event":
                mark = stop_after(1.0, event.set, proxy)
            else:
                mark = stop_after(1.0, lambda: os.kill(os.getpid(), signal.SIGINT), proxy)
            inv = reg.inventory(progress=False, stop=event)
            returned = time.monotonic()
            sent_after = proxy.stats.requests - mark["requests"]
    assert returned - mark["at"] < 1, "inventory() returned as soon as the crawl was stopped"
    assert sent_after == 0, "no request followed the stop"
    assert len(refuse.paths) == len(set(refuse.paths)), "no refused request was sent again"
    assert not inv.complete
    assert list(inv.errors["stage"].astype(str)) == ["interrupted"]
    assert not [t for t in threading.enumerate() if t.name.startswith("regframe-crawl")], "its threads ended"


def test_a_spent_budget_ends_the_waits_before_retries(fleet_reg):
    """The proxy refuses the first 8 manifest HEADs with 429 and forwards the rest: budget=3 stops the
    crawl at its fourth GET while those 8 wait to be retried; they are not sent again, and inventory() does
    not wait them out. The 429s carry no Retry-After, which would pause every request (see test_pacing),
    and the client's backoff is raised so that each of the 8 waits at least 4 s; workers=16 leaves threads
    for the other tags meanwhile. The 8 are answered together: refusals one after another would each halve
    the client's pace (test_pacing) and slow the rest of the crawl past those 4 s."""
    refuse = Refuse(retry_after=None, first=8, together=True)
    with FaultProxy(fleet_reg.url) as proxy:
        proxy.add_rule(Rule(path=r"/manifests/", method="HEAD", action=refuse))
        with connect(proxy.url) as reg:
            reg.transport.backoff = 10.0
            started = time.monotonic()
            inv = reg.inventory(progress=False, budget=3, workers=16)
            elapsed = time.monotonic() - started
            assert reg.stats["requests"].get("manifest", 0) <= 3
    assert elapsed < 4, "the 5 s waits before retries were not waited out"
    refused = refuse.paths[:8]
    assert len(refused) == 8 and len(set(refused)) == 8
    assert not set(refused) & set(refuse.paths[8:]), "no refused HEAD was sent again"
    assert list(inv.errors["stage"].astype(str)) == ["budget"]


# -- rate-limit headers in the forms HTTP and the IETF draft allow ----------------------------------


class WrittenQuota(PullQuota):
    """Docker Hub's pull counting (GETs take one, HEADs are free), with its figures written in the given
    forms: ``{l}`` is the limit, ``{r}`` what is left; a form None leaves that field out."""

    def __init__(self, limit_form: str | None, remaining_form: str | None, *, limit=100, remaining=30):
        super().__init__(limit, remaining=remaining, window=HUB_WINDOW)
        self.forms = limit_form, remaining_form

    def apply(self, ex) -> None:
        with self._lock:
            refused = ex.method == "GET" and self.remaining <= 0
            if ex.method == "GET" and not refused:
                self.remaining -= 1
                self.counted += 1
            self.refused += refused
            headers = {}
            if self.forms[0] is not None:
                headers["ratelimit-limit"] = self.forms[0].format(l=self.limit)
            if self.forms[1] is not None:
                headers["ratelimit-remaining"] = self.forms[1].format(r=self.remaining)
        if refused:
            return ex.error(429, "TOOMANYREQUESTS", "pull rate limit reached", headers)
        response = ex.forward()
        for name, value in headers.items():
            response.set(name, value)
        ex.respond(response)


def crawl_with(upstream: str, quota: PullQuota, **options):
    with FaultProxy(upstream) as proxy:
        proxy.add_rule(Rule(path=r"/manifests/", action=quota))
        with connect(proxy.url) as reg:
            return reg.inventory(progress=False, budget="auto", **options)


def budget_row(inv) -> str:
    rows = inv.errors[inv.errors["stage"].astype(str) == "budget"]
    assert len(rows) == 1, inv.errors
    return str(rows["error"].iloc[0])


@pytest.mark.parametrize(
    "forms",
    [
        ("{l}, {l};w=21600", "{r}, {r};w=21600"),  # the IETF draft's list; repeated fields combined
        ("{l};w=21600", "{r}.0;w=21600"),  # a decimal remaining
        ("{l}.0", "{r}.00"),  # decimals everywhere, no window
    ],
    ids=["list", "decimal", "decimals"],
)
def test_auto_budget_reads_lists_and_whole_decimals(fleet_reg, forms):
    """A pull quota served by the proxy with 30 of 100 pulls left, its figures written as lists or decimals:
    the crawl keeps 10% of the limit and never meets a 429."""
    assert len(FLEET.manifests) > 30, "the fleet must need more GETs than the quota allows"
    quota = WrittenQuota(*forms)
    inv = crawl_with(fleet_reg.url, quota)
    assert quota.refused == 0 and quota.remaining >= 10
    assert "reserve reached" in budget_row(inv) and "of 100 pulls" in budget_row(inv)
    assert inv.stats["quota"]["limit"] == 100


def test_reg_rate_limit_reads_the_first_element_of_a_list(proxy):
    """The proxy answers a manifest GET with the IETF draft's list form."""
    quota = WrittenQuota("{l}, {l};w=21600", "{r}, {r};w=21600")
    proxy.add_rule(Rule(path=r"/manifests/", action=quota))
    with connect(proxy.url) as reg:
        reg.manifest(REPO, "v1")
        figures = reg.rate_limit
    assert (figures.limit, figures.remaining, figures.window_seconds, figures.unreadable) == (100, 29, 21600, None)


@pytest.mark.parametrize("reserve, kept", [(5, 5), (None, 3)], ids=["units", "fraction"])
def test_remaining_without_a_limit_still_keeps_the_reserve(fleet_reg, reserve, kept):
    """The proxy sends ratelimit-remaining alone (30 left at first, as the HEADs made first report). A
    reserve in units needs nothing more; 10% is of the most reported left (30: 3 kept)."""
    quota = WrittenQuota(None, "{r};w=21600")
    inv = crawl_with(fleet_reg.url, quota, reserve=reserve)
    assert quota.refused == 0 and quota.remaining >= kept
    row = budget_row(inv)
    assert "reserve reached" in row and f"{kept} are kept in reserve" in row
    if reserve is None:
        assert "no ratelimit-limit" in row


@pytest.mark.parametrize(
    "forms, named",
    [
        (("{l};w=21600", "about {r};w=21600"), "ratelimit-remaining: 'about 30;w=21600'"),
        (("{l};w=21600", "{r}.5;w=21600"), "ratelimit-remaining: '30.5;w=21600'"),
        (("{l};w=21600", None), "ratelimit-limit: '100;w=21600' without a ratelimit-remaining"),
        (("{l};w=21600", "about {r};w=21600;" + "x" * 200), "ratelimit-remaining: 'about 30;w=21600;xxx"),
    ],
    ids=["words", "fraction", "limit-alone", "long"],
)
def test_unreadable_rate_limit_headers_stop_an_auto_budget(fleet_reg, forms, named):
    """The proxy counts pulls but writes its figures in forms that tell nothing of what is left, on HEADs
    (free, and made first under a budget) as on GETs: the crawl stops before its first GET, with a budget
    row naming the field and its value (shortened)."""
    quota = WrittenQuota(*forms)
    inv = crawl_with(fleet_reg.url, quota)
    assert quota.counted == 0 and quota.refused == 0
    assert not inv.complete
    row = budget_row(inv)
    assert "rate-limit headers could not be read" in row and named in row
    assert "x" * 100 not in row, "a long value is shortened"


# -- repository lists saved with a byte-order mark --------------------------------------------------


def test_repositories_from_a_file_with_a_utf8_bom(fleet_reg, tmp_path):
    """A list saved as "UTF-8 with BOM" (Notepad, PowerShell's Out-File) and CRLF line ends crawls exactly
    its names."""
    first, second = FLEET.repositories[:2]
    listing = tmp_path / "repos.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + f"{first}\r\n{second}\r\n".encode())
    out = tmp_path / "out"
    assert main(["audit", fleet_reg.url, "--out", str(out), "--no-progress", "--repositories-from", str(listing)]) == 0
    tags = pd.read_csv(out / "tags.csv")
    assert set(tags["repository"]) == {first, second}
    assert len(tags) == len(FLEET.tags[first]) + len(FLEET.tags[second])
