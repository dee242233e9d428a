"""Registries in the wild, reproduced in front of a real registry (Debian docker-registry 2.8).

No registry on this machine refuses its catalog, counts pulls, answers 429 above a request rate or adds
upload times to its tag lists, so a fault proxy in front of the real one does; each test says what it
reproduces and where that behaviour is documented. Expected values come from the images the tests
pushed and the figures they gave the proxy, never from the code under test.
"""

from __future__ import annotations

import io
import threading
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

import regframe
from regframe.cli import main
from regframe.inventory.concurrency import START
from regframe.policy import Policy
from regframe.testing import build_image, build_index, layer, local_registry, make_fleet, push_image, seed
from regframe.testing.faultproxy import (
    FaultProxy,
    GoogleTagList,
    PullQuota,
    RateLimit,
    Reset,
    Rule,
    Status,
    TokenBucket,
)

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
# A wider fleet for crawls through a slow link: enough requests that 64 in flight beat 16.
WIDE = make_fleet(
    repositories=12,
    tags_per_repo=20,
    base_layers=1,
    multi_platform_ratio=0.1,
    seed=22,
    layer_size_range=(200, 800),
    base_layer_size_range=(800, 1600),
)
HUB_WINDOW = 21600


def connect(url: str, **options) -> regframe.Registry:
    options.setdefault("docker_config", False)
    return regframe.connect(url, **options)


@pytest.fixture(scope="module")
def fleet_reg():
    with local_registry() as reg, connect(reg.url) as client:
        seed(client, FLEET)
        yield reg


@pytest.fixture(scope="module")
def wide_reg():
    with local_registry(log_level="error") as reg, connect(reg.url) as client:
        seed(client, WIDE)
        yield reg


def tag_digests(fleet) -> set[tuple[str, str, str]]:
    return {(repository, tag, item.digest) for repository, tag, item in fleet.items()}


def crawled(inv) -> set[tuple[str, str, str]]:
    return set(zip(*(inv.tags[c].astype(str) for c in ("repository", "tag", "digest")), strict=True))


# -- registries without a catalog ------------------------------------------------------------------

REFUSALS = {
    # Docker Hub answers an anonymous or insufficiently scoped catalog request with 401 UNAUTHORIZED.
    "401": Status(401, headers={"WWW-Authenticate": 'Basic realm="registry"'}),
    # A token without registry:catalog:* gets 403 DENIED from registries that check scopes that way.
    "403": Status(403),
    # GHCR, Quay and GitLab.com do not serve /v2/_catalog to users: 404 NOT_FOUND.
    "404": Status(404),
    # The catalog is optional in the distribution spec; a registry without it may answer UNSUPPORTED.
    "unsupported": Status(405),
}


@pytest.mark.parametrize("refusal", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_refused_catalog_raises_and_says_to_name_the_repositories(fleet_reg, refusal):
    """The proxy refuses /v2/_catalog as Docker Hub, GHCR, Quay and GitLab.com do (the Docker Registry
    HTTP API v2 makes the catalog optional and lets registries restrict it)."""
    with FaultProxy(fleet_reg.url) as proxy:
        proxy.add_rule(Rule(path=r"^/v2/_catalog", action=refusal))
        with connect(proxy.url) as reg:
            with pytest.raises(regframe.CatalogUnavailableError, match=r"repositories=") as caught:
                reg.inventory(progress=False)
            assert reg.stats["requests"].get("tags", 0) == 0
            assert reg.stats["requests"].get("manifest", 0) == 0
    assert isinstance(caught.value, regframe.RegistryError)
    assert "--repositories" in str(caught.value)


@pytest.mark.parametrize("refusal", [REFUSALS["404"], REFUSALS["unsupported"]], ids=["404", "unsupported"])
def test_named_repositories_are_crawled_without_a_catalog(fleet_reg, refusal):
    """The proxy answers /v2/_catalog 404 as GHCR and Quay do, or UNSUPPORTED; the named repositories are
    crawled whole."""
    wanted = FLEET.repositories[:2]
    with FaultProxy(fleet_reg.url) as proxy:
        proxy.add_rule(Rule(path=r"^/v2/_catalog", action=refusal))
        with connect(proxy.url) as reg:
            inv = reg.inventory(wanted, progress=False)
    assert inv.complete and inv.errors.empty
    assert crawled(inv) == {row for row in tag_digests(FLEET) if row[0] in wanted}


# What a real registry's catalog cannot be made to do: fail while the repositories answer, or leave out a
# repository the user may read.
CATALOG_FAILURES = {
    # Big S3-backed registries walk the whole bucket for the catalog: it times out behind a gateway, or fails.
    "500": Status(500),
    "504": Status(504),
    "429": Status(429, headers={"Retry-After": "1"}),
    "connection-reset": Reset(),
    # Harbor, self-managed GitLab and Artifactory filter the catalog by the user's permissions.
    "filtered": Status(200, body={"repositories": []}),
}


@pytest.mark.parametrize("failure", CATALOG_FAILURES.values(), ids=CATALOG_FAILURES)
def test_named_repositories_are_crawled_whatever_the_catalog_does(fleet_reg, failure):
    """The proxy makes /v2/_catalog fail (500, 504, 429, a reset connection) or answer 200 without the
    names, as an overloaded or permission-filtered catalog does; the named repositories are crawled whole,
    and a misspelt name is an error row naming it, the other names crawled all the same."""
    wanted = FLEET.repositories[:2]
    with FaultProxy(fleet_reg.url) as proxy:
        proxy.add_rule(Rule(path=r"^/v2/_catalog", action=failure))
        with connect(proxy.url, max_retry_wait=1) as reg:
            inv = reg.inventory(wanted, progress=False)
            typo = reg.inventory([wanted[0], "nope/missing"], progress=False)
    assert inv.complete and inv.errors.empty
    assert crawled(inv) == {row for row in tag_digests(FLEET) if row[0] in wanted}
    assert crawled(typo) == {row for row in tag_digests(FLEET) if row[0] == wanted[0]}
    assert typo.errors[["repository", "stage"]].astype(str).values.tolist() == [["nope/missing", "tags"]]
    error = str(typo.errors["error"].iloc[0])
    assert "repository nope/missing not found: its tag list answered 404" in error
    assert ("catalog does not list it" if failure is CATALOG_FAILURES["filtered"] else "cannot confirm") in error
    assert "nope/missing" not in set(typo.catalog["repository"].astype(str))


def test_audit_of_named_repositories_goes_on_past_a_failing_catalog(fleet_reg, tmp_path):
    """The proxy answers /v2/_catalog 500 (a real registry serves its catalog)."""
    first, second = FLEET.repositories[:2]
    with FaultProxy(fleet_reg.url) as proxy:
        proxy.add_rule(Rule(path=r"^/v2/_catalog", action=Status(500)))
        argv = ["audit", proxy.url, "--no-progress", "--out", str(tmp_path / "a"), "--repositories", first, second]
        assert main(argv) == 0
    tags = pd.read_csv(tmp_path / "a" / "tags.csv")
    assert set(tags["repository"]) == {first, second}
    assert len(tags) == len(FLEET.tags[first]) + len(FLEET.tags[second])


def test_a_named_repository_the_catalog_lists_is_empty_when_its_tag_list_answers_404(fleet_reg):
    """Some registries answer a repository whose tags were all deleted with a 404 tag list while their catalog
    still lists it (distribution 2.8 answers 200 there, so the proxy answers 404 NAME_UNKNOWN): named, it is
    an empty repository, the catalog read once to tell; with the catalog refused nothing tells it from a
    misspelt name, an error row. A crawl whose tag lists all answer needs no catalog."""
    first, emptied = FLEET.repositories[:2]
    unknown = {"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known to registry"}]}
    with FaultProxy(fleet_reg.url) as proxy:
        proxy.add_rule(Rule(path=rf"^/v2/{emptied}/tags/list", action=Status(404, body=unknown)))
        with connect(proxy.url) as reg:
            inv = reg.inventory([first, emptied], progress=False)
            assert inv.stats["requests"]["catalog"] == 1
            alone = reg.inventory([first], progress=False)
            assert "catalog" not in alone.stats["requests"], "no 404, no catalog read"
            proxy.add_rule(Rule(path=r"^/v2/_catalog", action=Status(404)))
            unconfirmed = reg.inventory([first, emptied], progress=False)
    assert inv.errors.empty and inv.complete
    counts = dict(zip(inv.catalog["repository"].astype(str), inv.catalog["tag_count"], strict=True))
    assert counts == {first: len(FLEET.tags[first]), emptied: 0}
    assert crawled(inv) == crawled(alone) == {row for row in tag_digests(FLEET) if row[0] == first}
    assert unconfirmed.errors[["repository", "stage"]].astype(str).values.tolist() == [[emptied, "tags"]]
    assert "catalog cannot confirm the name" in str(unconfirmed.errors["error"].iloc[0])


def test_audit_crawls_the_repositories_given_on_the_command_line_or_in_a_file(fleet_reg, tmp_path, monkeypatch):
    """Through a proxy whose catalog answers 404 (GHCR, Quay): --repositories and --repositories-from
    (a file with comments, or standard input) crawl exactly the names given."""
    first, second, third = FLEET.repositories[:3]
    listing = tmp_path / "repos.txt"
    listing.write_text(f"# repositories to audit\n{first}\n\n  {second}   # the second one\n")
    with FaultProxy(fleet_reg.url) as proxy:
        proxy.add_rule(Rule(path=r"^/v2/_catalog", action=Status(404)))
        argv = ["audit", proxy.url, "--no-progress"]
        assert main([*argv, "--out", str(tmp_path / "a"), "--repositories", first, third]) == 0
        assert main([*argv, "--out", str(tmp_path / "b"), "--repositories-from", str(listing)]) == 0
        monkeypatch.setattr("sys.stdin", io.StringIO(f"{third}\n"))
        assert main([*argv, "--out", str(tmp_path / "c"), "--repositories-from", "-"]) == 0
        assert main([*argv, "--out", str(tmp_path / "d")]) == 2
    for folder, names in (("a", {first, third}), ("b", {first, second}), ("c", {third})):
        tags = pd.read_csv(tmp_path / folder / "tags.csv")
        assert set(tags["repository"]) == names
        assert len(tags) == sum(len(FLEET.tags[name]) for name in names)


def test_a_crawl_of_some_repositories_says_its_reclaimable_figure_is_an_upper_bound(fleet_reg, tmp_path, capsys):
    """Blobs are stored once for the whole registry: a crawl of some repositories cannot see the others using
    the blobs it would free, so the audit's summary and the cleanup plan say their figure is an upper bound;
    a crawl of the whole catalog says nothing of the kind."""
    note = "so the reclaimable figure is an upper bound"
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rules]]\nname = "all"\ntags = ".*"\n')
    some = ["--repositories", FLEET.repositories[0]]
    assert main(["audit", fleet_reg.url, "--no-progress", "--out", str(tmp_path / "some"), *some]) == 0
    assert note in " ".join(capsys.readouterr().out.split())
    assert main(["cleanup", fleet_reg.url, "--policy", str(policy), *some]) == 0
    assert note in capsys.readouterr().out
    assert main(["audit", fleet_reg.url, "--no-progress", "--out", str(tmp_path / "all")]) == 0
    assert note not in " ".join(capsys.readouterr().out.split())
    assert main(["cleanup", fleet_reg.url, "--policy", str(policy)]) == 0
    assert note not in capsys.readouterr().out


def test_bad_repository_names_stop_the_audit_before_any_request(tmp_path, capsys):
    """A name against the distribution grammar, in a file, is reported with its line before connecting
    (the proxy has no upstream: any request would reach it and be counted)."""
    listing = tmp_path / "repos.txt"
    listing.write_text("team/api\n# fine so far\nTeam/Upper\n")
    with FaultProxy(None) as proxy:
        out = str(tmp_path / "out")
        assert main(["audit", proxy.url, "--out", out, "--repositories-from", str(listing)]) == 2
        assert "line 3" in capsys.readouterr().err
        assert main(["audit", proxy.url, "--out", out, "--repositories", "ok/name", "bad//name"]) == 2
        assert "bad//name" in capsys.readouterr().err
        empty = tmp_path / "empty.txt"
        empty.write_text("# nothing\n")
        assert main(["audit", proxy.url, "--out", out, "--repositories-from", str(empty)]) == 2
        assert "no repository names" in capsys.readouterr().err
        assert main(["audit", proxy.url, "--out", out, "--workers", "0"]) == 2
        assert "workers" in capsys.readouterr().err
        assert proxy.stats.requests == 0
    with pytest.raises(SystemExit):
        main(["audit", "http://127.0.0.1:9", "--out", out, "--repositories", "a/b", "--repositories-from", "f"])
    with pytest.raises(SystemExit):
        main(["audit", "http://127.0.0.1:9", "--out", out, "--budget", "lots"])


# -- rate-limit budgets ----------------------------------------------------------------------------


def hub_proxy(upstream: str, quota: PullQuota) -> FaultProxy:
    """Docker Hub's pull quota on manifest requests (https://docs.docker.com/docker-hub/usage/pulls/): GETs
    count, HEADs are free, and both answer ``ratelimit-limit``/``ratelimit-remaining`` with ``;w=21600``."""
    proxy = FaultProxy(upstream).start()
    proxy.add_rule(Rule(path=r"/manifests/", action=quota))
    return proxy


def auto_budget_crawl(upstream: str, quota: PullQuota):
    """A crawl with budget="auto" through ``hub_proxy``."""
    proxy = hub_proxy(upstream, quota)
    try:
        with connect(proxy.url) as reg:
            return reg.inventory(progress=False, budget="auto")
    finally:
        proxy.stop()


def test_auto_budget_stops_before_the_reserve_when_heads_count_too(fleet_reg):
    """A registry whose quota counts HEADs as well (the proxy's; Docker Hub's does not): under budget="auto"
    a crawl resolves tags by HEAD, and those lower ``remaining`` too. It stops once the registry reports the
    reserve reached, whatever spent it, and never meets a 429."""
    quota = PullQuota(100, remaining=30, window=HUB_WINDOW, counts_heads=True)
    assert FLEET.tag_count + len(FLEET.manifests) > 30, "the crawl must need more requests than the quota allows"
    inv = auto_budget_crawl(fleet_reg.url, quota)
    assert not inv.complete
    assert quota.refused == 0, "the crawl stopped before the registry had to refuse it"
    assert quota.remaining == 10, "10% of the 100-pull limit is left, and no more: the crawl spent the rest"
    budget_rows = inv.errors[inv.errors["stage"] == "budget"]
    assert len(budget_rows) == 1 and "reserve" in budget_rows["error"].iloc[0]


def test_auto_budget_stops_before_the_reserve_and_keeps_what_it_read(fleet_reg):
    """Docker Hub's headers and quota, served by the proxy: with budget="auto" the crawl stops while 10% of
    the limit is left, never meets a 429, and returns what it read."""
    quota = PullQuota(40, remaining=30, window=HUB_WINDOW)
    assert len(FLEET.manifests) > 30, "the fleet must need more GETs than the quota allows"
    proxy = hub_proxy(fleet_reg.url, quota)
    try:
        with connect(proxy.url) as reg:
            inv = reg.inventory(progress=False, budget="auto")
            repository, tag, _ = next(FLEET.items())
            reg.manifest_exists(repository, tag)  # a HEAD: free, and it brings the latest figures
            figures = reg.rate_limit
    finally:
        proxy.stop()
    assert not inv.complete
    budget_rows = inv.errors[inv.errors["stage"] == "budget"]
    assert len(budget_rows) == 1 and "reserve" in budget_rows["error"].iloc[0]
    assert quota.refused == 0, "the crawl stopped before the registry had to refuse it"
    assert quota.remaining == 4, "10% of the 40-pull limit is left, and no more: the crawl spent the rest"
    assert len(inv.tags) > 0 and quota.counted < len(FLEET.manifests), "some was read, not all"
    assert crawled(inv) <= tag_digests(FLEET)
    assert inv.stats["quota"]["manifest_gets"] == quota.counted
    assert (figures.limit, figures.remaining, figures.window_seconds) == (40, quota.remaining, HUB_WINDOW)


def test_auto_budget_finishes_a_crawl_the_quota_allows_however_many_requests_are_in_flight(fleet_reg):
    """Docker Hub's headers and quota, served by the proxy, with just enough left for the crawl's GETs and the
    reserve. Dozens of requests are in flight at once, far more than the margin: the crawl waits for their
    answers (HEADs cost Hub nothing) rather than stopping while the quota still allows it, and finishes."""
    needed = len(FLEET.manifests)
    quota = PullQuota(100, remaining=needed + 10, window=HUB_WINDOW)
    inv = auto_budget_crawl(fleet_reg.url, quota)
    assert inv.complete and inv.errors.empty, inv.errors
    assert crawled(inv) == tag_digests(FLEET)
    assert quota.counted == needed and quota.remaining == 10 and quota.refused == 0


def test_a_numeric_budget_caps_the_manifest_gets_and_a_reserve_keeps_some(fleet_reg):
    """Pulls counted by the proxy as Docker Hub counts them: budget=10 makes at most 10 manifest GETs,
    budget=10 with reserve=4 at most 6."""
    for reserve, most in ((None, 10), (4, 6)):
        quota = PullQuota(100, window=HUB_WINDOW)
        proxy = hub_proxy(fleet_reg.url, quota)
        try:
            with connect(proxy.url) as reg:
                inv = reg.inventory(progress=False, budget=10, reserve=reserve)
        finally:
            proxy.stop()
        assert not inv.complete
        assert 0 < quota.counted <= most
        assert list(inv.errors["stage"].astype(str)) == ["budget"]


def test_a_budget_costs_one_get_per_distinct_manifest_and_a_warm_crawl_none(fleet_reg, tmp_path):
    """Docker Hub counts manifest GETs, not HEADs (https://docs.docker.com/docker-hub/usage/pulls/), served
    by the proxy: under a budget tags are resolved by HEAD, so aliases cost nothing; with a warm cache no GET
    is made at all."""
    quota = PullQuota(1000, window=HUB_WINDOW)
    proxy = hub_proxy(fleet_reg.url, quota)
    try:
        with connect(proxy.url) as reg:
            cold = reg.inventory(progress=False, budget="auto", cache=tmp_path / "cache")
            assert cold.complete and cold.errors.empty
            assert quota.counted == len(FLEET.manifests), "one GET per distinct manifest, index children included"
            counted = quota.counted
            warm = reg.inventory(progress=False, budget="auto", cache=tmp_path / "cache")
    finally:
        proxy.stop()
    assert warm.complete and warm.errors.empty
    assert quota.counted == counted, "the warm crawl took no pull"
    assert warm.stats["requests"] == {
        "catalog": 1,
        "tags": len(FLEET.repositories),
        "manifest_head": FLEET.tag_count + len(FLEET.index_entries()),
    }
    assert crawled(warm) == crawled(cold) == tag_digests(FLEET)


def test_a_crawl_stopped_by_its_budget_goes_on_with_the_same_cache(fleet_reg, tmp_path):
    """Pulls counted by the proxy as Docker Hub counts them: a second crawl with the cache of one stopped
    by its budget reads the rest, and no manifest is fetched twice."""
    quota = PullQuota(1000, window=HUB_WINDOW)
    proxy = hub_proxy(fleet_reg.url, quota)
    try:
        with connect(proxy.url) as reg:
            first = reg.inventory(progress=False, budget=12, cache=tmp_path / "cache")
            second = reg.inventory(progress=False, budget="auto", cache=tmp_path / "cache")
    finally:
        proxy.stop()
    assert not first.complete and second.complete and second.errors.empty
    assert quota.counted == len(FLEET.manifests)
    assert crawled(second) == tag_digests(FLEET)


def test_audit_with_a_budget_writes_what_it_read_and_says_why_it_stopped(fleet_reg, tmp_path):
    """Docker Hub's pull quota served by the proxy: ``regframe audit --budget 8`` makes at most 8 manifest
    GETs, writes its report, records the stop in errors.csv and exits 1 (items not read)."""
    quota = PullQuota(100, window=HUB_WINDOW)
    proxy = hub_proxy(fleet_reg.url, quota)
    try:
        code = main(["audit", proxy.url, "--out", str(tmp_path), "--no-progress", "--budget", "8"])
    finally:
        proxy.stop()
    assert code == 1
    assert 0 < quota.counted <= 8
    errors = pd.read_csv(tmp_path / "errors.csv")
    assert list(errors["stage"]) == ["budget"]
    assert (tmp_path / "report.html").is_file()


def test_auto_budget_on_a_registry_without_headers_reads_everything(fleet_reg):
    """The real registry sends no rate-limit headers (nor does Docker Hub to paid accounts): nothing to keep."""
    with connect(fleet_reg.url) as reg:
        inv = reg.inventory(progress=False, budget="auto")
        assert reg.rate_limit is None
    assert inv.complete and inv.errors.empty
    assert crawled(inv) == tag_digests(FLEET)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"budget": 0}, "budget must be"),
        ({"budget": -5}, "budget must be"),
        ({"budget": "lots"}, "budget must be"),
        ({"budget": True}, "budget must be"),
        ({"budget": 2.5}, "budget must be"),
        ({"reserve": 3}, "reserve= needs a budget"),
        ({"budget": "auto", "reserve": 1.5}, "fraction must be in"),
        ({"budget": "auto", "reserve": -1}, "must not be negative"),
        ({"budget": 5, "reserve": 5}, "leaves nothing"),
        ({"workers": 0}, "workers must be"),
        ({"workers": 2.0}, "workers must be"),
        ({"max_workers": 0}, "max_workers must be"),
    ],
)
def test_bad_budgets_and_workers_are_refused_before_any_request(fleet_reg, options, message):
    with connect(fleet_reg.url) as reg:
        before = reg.stats["total_requests"]
        with pytest.raises(ValueError, match=message):
            reg.inventory(progress=False, **options)
        assert reg.stats["total_requests"] == before


# -- adaptive concurrency ----------------------------------------------------------------------------


def test_the_crawl_converges_under_a_429_rate_threshold(wide_reg):
    """The proxy answers 429 (Retry-After: 1) above 100 requests a second (a token bucket holding half a
    second's worth), as rate-limited registries do (Docker Hub, GHCR, Quay; RFC 6585), and adds 50 ms per
    request: 100/s at 50 ms is 5 requests in flight. Starting from 32 (``START``) and growing, the crawl halves on the
    429s, finishes without a failure, and ends within twice that, well below its highest limit."""
    latency, rate = 0.05, 100
    bucket = TokenBucket(rate, burst=rate // 2)
    with FaultProxy(wide_reg.url, latency=latency) as proxy:
        proxy.add_rule(Rule(action=bucket))
        with connect(proxy.url) as reg:
            inv = reg.inventory(progress=False)
    assert inv.complete and inv.errors.empty
    assert crawled(inv) == tag_digests(WIDE)
    concurrency = inv.stats["concurrency"]
    assert concurrency["decreases"] >= 2
    assert concurrency["final"] <= 2 * rate * latency, concurrency
    assert bucket.refused < 0.25 * bucket.admitted, "few refusals: the crawl backed off"


def test_a_low_rate_limit_is_kept_by_pacing_and_no_tag_fails(fleet_reg):
    """The proxy admits 10 requests a second with a burst of 2 and answers the rest 429 with Retry-After: 1,
    as a registry limiting each client's request rate does (RFC 6585; Quay and GitLab.com limit rates so).
    On loopback even one request in flight goes far faster, so fewer in flight cannot keep the limit:
    the crawl pauses every request for the Retry-After, then paces them. Every tag is read, and the
    refusals stay a small share of the requests admitted."""
    bucket = TokenBucket(10, burst=2)
    with FaultProxy(fleet_reg.url) as proxy:
        proxy.add_rule(Rule(action=bucket))
        with connect(proxy.url) as reg:
            inv = reg.inventory(progress=False)
    assert inv.complete and inv.errors.empty, inv.errors
    assert crawled(inv) == tag_digests(FLEET)
    assert bucket.refused < 0.25 * bucket.admitted, (bucket.refused, bucket.admitted)


def test_a_registry_refusing_everything_stops_the_crawl(fleet_reg):
    """Every manifest request answered 429 with Retry-After: 1, as a registry whose pull quota is spent or
    that has banned the client answers until the quota resets (Docker Hub answers so for hours). Retries
    cannot help: after rounds of refusals with nothing served, calls stop retrying, and after 5 such calls
    in a row the crawl stops with a row saying why, keeping the tag lists it read."""
    with FaultProxy(fleet_reg.url) as proxy:
        proxy.add_rule(Rule(path=r"/manifests/", action=RateLimit(1)))
        with connect(proxy.url) as reg:
            inv = reg.inventory(progress=False)
            manifest_requests = reg.stats["requests"]["manifest"]
    assert not inv.complete
    stages = list(inv.errors["stage"].astype(str))
    assert stages[-1] == "rate-limited" and stages.count("rate-limited") == 1
    assert "refused 5 calls in a row (429)" in inv.errors["error"].iloc[-1]
    assert set(stages[:-1]) == {"manifest"} and len(stages) - 1 < FLEET.tag_count
    assert len(inv.catalog) == len(FLEET.tags)
    assert manifest_requests < 2 * FLEET.tag_count, "most tags were never tried"


def test_connections_never_exceed_the_requests_in_flight(fleet_reg):
    """Concurrent connections counted at the proxy (20 ms per request, a fresh proxy per crawl): a fixed
    workers=3 crawl never has more than 3 open; an adaptive one never more than its highest limit."""
    with FaultProxy(fleet_reg.url, latency=0.02) as proxy, connect(proxy.url) as reg:
        fixed = reg.inventory(progress=False, workers=3)
        assert fixed.complete and proxy.stats.peak_connections <= 3
    with FaultProxy(fleet_reg.url, latency=0.02) as proxy, connect(proxy.url) as reg:
        adaptive = reg.inventory(progress=False, max_workers=8)
        peak = proxy.stats.peak_connections
    assert adaptive.complete and adaptive.errors.empty
    assert adaptive.stats["concurrency"]["peak"] <= 8
    assert peak <= adaptive.stats["concurrency"]["peak"]


def test_a_crawl_through_100_ms_finishes_within_its_bound(wide_reg):
    """The proxy adds 100 ms per request, a registry across a long link. The crawl raises its limit past
    its start and finishes within three times what its request count, the latency and max_workers
    allow (plus the five rounds its stages need one after another), plus 2 s."""
    latency = 0.1
    with FaultProxy(wide_reg.url, latency=latency) as proxy, connect(proxy.url) as reg:
        started = time.monotonic()
        inv = reg.inventory(progress=False)
        took = time.monotonic() - started
    assert inv.complete and crawled(inv) == tag_digests(WIDE)
    requests = inv.stats["total_requests"]
    bound = 3 * (requests / 64 + 5) * latency + 2
    assert took < bound, f"{took:.1f} s for {requests} requests at {latency * 1000:.0f} ms (bound {bound:.1f} s)"
    assert inv.stats["concurrency"]["peak"] > START


# -- upload times from Google's tag lists --------------------------------------------------------------

GOOGLE_REPO = "google/app"
NOW = datetime.now(UTC)
OLD_BUILD = build_image([layer("g-old", 700)], created=datetime(2020, 1, 1, tzinfo=UTC))
RECENT_PUSH_OLD_BUILD = build_image([layer("g-rebuilt", 700)], created=datetime(2019, 6, 1, tzinfo=UTC))
UNDATED = build_image([layer("g-undated", 700)], created=None)
UNLISTED = build_image([layer("g-unlisted", 700)], created=datetime(2020, 3, 1, tzinfo=UTC))
BUILT_2021 = datetime(2021, 1, 1, tzinfo=UTC)
MULTI = build_index(
    [
        build_image([layer("g-amd", 600)], created=BUILT_2021),
        build_image(
            [layer("g-arm", 600)], architecture="arm64", variant="v8", created=datetime(2021, 1, 1, tzinfo=UTC)
        ),
    ]
)
PUSHED = {
    "fresh": NOW - timedelta(days=40),  # built in 2019, pushed (re-pushed) 40 days ago
    "stale": NOW - timedelta(days=400),
    "undated": NOW - timedelta(days=300),
    "multi": NOW - timedelta(days=10),
}
CREATED_UNDATED = datetime(2023, 5, 1, tzinfo=UTC)


def ms(when: datetime) -> str:
    return str(int(when.timestamp() * 1000))


def google_map() -> dict:
    """The ``manifest`` map Google Artifact Registry and GCR add to tags/list, as their documentation and
    go-containerregistry's ``google.Tags`` show it: digest -> imageSizeBytes, mediaType, tag, timeCreatedMs,
    timeUploadedMs (strings of milliseconds); index children listed untagged. Two malformed entries too."""
    images = {"fresh": RECENT_PUSH_OLD_BUILD, "stale": OLD_BUILD, "undated": UNDATED, "multi": MULTI}
    entries = {}
    for tag, image in images.items():
        created = CREATED_UNDATED if image is UNDATED else datetime(2019, 6, 1, tzinfo=UTC)
        entries[image.digest] = {
            "imageSizeBytes": "700",
            "layerId": "",
            "mediaType": image.media_type,
            "tag": [tag, "alias"] if tag == "fresh" else [tag],
            "timeCreatedMs": ms(created),
            "timeUploadedMs": ms(PUSHED[tag]),
        }
    for child in MULTI.children:
        entries[child.digest] = {"mediaType": child.media_type, "tag": [], "timeUploadedMs": ms(PUSHED["multi"])}
    entries["not-a-digest"] = {"tag": ["x"], "timeUploadedMs": ms(NOW)}
    entries[UNLISTED.digest] = {"tag": ["unlisted"], "timeUploadedMs": "soon"}
    return entries


@pytest.fixture(scope="module")
def google():
    """A real registry holding the images, and a proxy adding Google's map to google/app's tag list."""
    with local_registry() as reg, connect(reg.url) as client:
        for tag, image in (
            ("fresh", RECENT_PUSH_OLD_BUILD),
            ("alias", RECENT_PUSH_OLD_BUILD),
            ("stale", OLD_BUILD),
            ("undated", UNDATED),
            ("unlisted", UNLISTED),
            ("multi", MULTI),
        ):
            push_image(client, GOOGLE_REPO, tag, image)
        push_image(client, "plain/app", "1.0", OLD_BUILD)
        with FaultProxy(reg.url) as proxy, connect(proxy.url) as registry:
            proxy.add_rule(Rule(action=GoogleTagList({GOOGLE_REPO: google_map()})))
            yield registry.inventory(progress=False)


def stamp(when: datetime) -> pd.Timestamp:
    return pd.Timestamp(int(when.timestamp() * 1000), unit="ms", tz="UTC")


def test_google_upload_times_fill_pushed(google):
    """Google's tag-list extension, served by the proxy on top of the real registry's tags/list: every tag
    and platform row of google/app gets its manifest's timeUploadedMs; a tag whose entry is malformed, and
    every other repository, get none."""
    inv = google
    assert inv.errors.empty
    assert str(inv.tags["pushed"].dtype) == "datetime64[ns, UTC]"
    assert str(inv.manifests["pushed"].dtype) == "datetime64[ns, UTC]"
    pushed = {(str(r), str(t)): p for r, t, p in inv.tags[["repository", "tag", "pushed"]].itertuples(index=False)}
    expected = {**{tag: stamp(when) for tag, when in PUSHED.items()}, "alias": stamp(PUSHED["fresh"])}
    for tag, when in expected.items():
        assert pushed[(GOOGLE_REPO, tag)] == when, tag
    assert pd.isna(pushed[(GOOGLE_REPO, "unlisted")])
    assert pd.isna(pushed[("plain/app", "1.0")])
    rows = inv.manifests[inv.manifests["tag"] == "multi"]
    assert len(rows) == 2 and (rows["pushed"] == stamp(PUSHED["multi"])).all()


def test_google_creation_time_stands_in_for_a_config_without_one(google):
    """Google's timeCreatedMs (served by the proxy) dates an image whose config has no ``created``."""
    rows = google.manifests.set_index("tag")
    assert rows.loc["undated", "created"] == stamp(CREATED_UNDATED)
    assert rows.loc["stale", "created"] == pd.Timestamp("2020-01-01", tz="UTC"), "the config's own date wins"


def test_stale_tags_by_push_time_fall_back_to_created_with_a_reason(google):
    """With Google's upload times (served by the proxy), age_from="pushed" dates tags by their push: a
    2019 build pushed 40 days ago is not stale after 180 days; a tag without a push time falls back to its
    created date, and the reason says which date decided."""
    manifests = google.manifests[google.manifests["repository"] == GOOGLE_REPO]
    by_push = manifests.registry.stale_tags(older_than="180d", age_from="pushed").set_index("tag")
    by_created = manifests.registry.stale_tags(older_than="180d").set_index("tag")
    assert not by_push.loc["fresh", "stale"] and by_created.loc["fresh", "stale"]
    assert by_push.loc["fresh", "reason"] == "newer than 180 days (by push time)"
    assert by_push.loc["stale", "stale"] and by_push.loc["stale", "reason"] == "older than 180 days (by push time)"
    assert by_push.loc["unlisted", "stale"]
    assert by_push.loc["unlisted", "reason"] == "older than 180 days (by created date; push time not available)"
    assert by_push.attrs["age_from"] == "pushed"
    with pytest.raises(ValueError, match="age_from must be"):
        manifests.registry.stale_tags(age_from="uploaded")


EVERY_REPOSITORY = {"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}


def test_ecr_and_harbor_policies_use_push_time_when_the_registry_reveals_it(google):
    """ECR's sinceImagePushed and Harbor's nDaysSinceLastPush count from the push, which Google's tag lists
    (served by the proxy) reveal; elsewhere the created date stands in and the reason says so."""
    manifests = google.manifests[google.manifests["repository"] == GOOGLE_REPO]
    ecr = Policy.from_ecr(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "selection": {
                        "tagStatus": "any",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": 180,
                    },
                    "action": {"type": "expire"},
                }
            ]
        }
    )
    result = ecr.evaluate(manifests).set_index("tag")
    assert not result.loc["fresh", "stale"] and result.loc["stale", "stale"]
    assert result.loc["fresh", "reason"].endswith("(by push time)")
    assert result.loc["unlisted", "reason"].endswith("(by created date; push time not available)")
    assert ecr.evaluate(manifests, age_from="created").set_index("tag").loc["fresh", "stale"]
    harbor = Policy.from_harbor(
        {
            "algorithm": "or",
            "rules": [
                {
                    "action": "retain",
                    "template": "nDaysSinceLastPush",
                    "params": {"nDaysSinceLastPush": 180},
                    "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
                    "scope_selectors": {
                        "repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]
                    },
                }
            ],
        }
    )
    kept = harbor.evaluate(manifests).set_index("tag")
    assert not kept.loc["fresh", "stale"] and kept.loc["stale", "stale"]
    assert kept.loc["fresh", "reason"].endswith("(by push time)")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_pushed_survives_export_and_load(google, tmp_path, fmt):
    """Frames with upload times (Google's extension, served by the proxy) round-trip through CSV and Parquet."""
    getattr(google, f"to_{fmt}")(tmp_path)
    loaded = regframe.Inventory.load(tmp_path)
    pd.testing.assert_series_equal(loaded.tags["pushed"], google.tags["pushed"])
    pd.testing.assert_series_equal(loaded.manifests["pushed"], google.manifests["pushed"])


def test_index_entries_shared_by_repositories_need_no_head_and_never_wait_on_each_other():
    """Repositories tagging one index: its entries are read once and checked in each repository with a HEAD,
    or a GET where the registry serves no HEAD (the proxy answers 405, as some registries and caches do), so
    no read error appears. And a 429 with Retry-After on the shared entry's GET (the proxy's) holds no other
    repository's thread: the crawl ends soon after the wait, as it did before entries were checked per
    repository (it used to hang for good)."""
    amd = build_image([layer("shared-entry-amd", 500)], oci=True)
    arm = build_image([layer("shared-entry-arm", 500)], architecture="arm64", oci=True)
    multi = build_index([amd, arm], oci=True)
    with local_registry() as reg:
        with connect(reg.url) as client:
            for i in range(8):
                push_image(client, f"shared/r{i}", "1.0", multi)
            for i in range(30):
                push_image(client, f"other/r{i:02d}", "1.0", build_image([layer(f"shared-other-{i}", 200)], oci=True))
        with FaultProxy(reg.url) as proxy:
            proxy.add_rule(Rule(path=r"/manifests/", method="HEAD", action=Status(405)))
            with connect(proxy.url) as client:
                inv = client.inventory(["shared/r0", "shared/r1"], progress=False)
        assert inv.errors.empty, inv.errors
        assert inv.manifests.groupby("repository", observed=True)["manifest_digest"].nunique().to_dict() == {
            "shared/r0": 2,
            "shared/r1": 2,
        }
        with FaultProxy(reg.url, latency=0.05) as proxy:
            proxy.add_rule(Rule(path=rf"/manifests/{amd.digest}", method="GET", times=1, action=RateLimit(3)))
            with connect(proxy.url) as client:
                stop, done = threading.Event(), {}
                crawl = threading.Thread(
                    target=lambda: done.update(inv=client.inventory(progress=False, max_workers=4, stop=stop)),
                    daemon=True,
                )
                crawl.start()
                crawl.join(45)
                hung = crawl.is_alive()
                stop.set()
                crawl.join(15)
    assert not hung, "the crawl ended within 45 s of a 3 s Retry-After"
    assert done["inv"].complete and done["inv"].errors.empty
