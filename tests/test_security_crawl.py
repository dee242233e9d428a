"""Endless pagination from a hostile registry: listings are bounded, and stopping a crawl ends every thread.

A real registry never sends pages without end, so a fault-proxy action answers the catalog (or one
tag list) itself, each page linking to a next page never seen before: loop detection cannot stop it.
"""

from __future__ import annotations

import itertools
import json
import threading
import time

import pytest

import regframe
from regframe.client.reads import MAX_PAGES
from regframe.testing import build_image, layer, local_registry, push_image
from regframe.testing.faultproxy import Action, FaultProxy, Rule

REPO = "pages/app"
IMAGE = build_image([layer("pages-base", 900)])


class EndlessPages(Action):
    """Each page holds one new name and links to a page never seen before."""

    def __init__(self, key: str, prefix: str):
        self.key, self.prefix = key, prefix
        self._count = itertools.count()

    def apply(self, ex) -> None:
        name = f"{self.prefix}{next(self._count):07d}"
        ex.reply(
            200,
            json.dumps({"name": REPO, self.key: [name]}).encode(),
            {"Link": f'<{ex.path}?n=1&last={name}>; rel="next"'},
        )


def connect(url: str) -> regframe.Registry:
    return regframe.connect(url, docker_config=False)


def matched(proxy: FaultProxy, rule: Rule) -> int:
    return next(s.matched for s in proxy.stats.rules if s.rule is rule)


def crawl_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("regframe-crawl")]


def bounded(call, seconds: float = 120):
    """``call()``'s result or exception, failing (not hanging) if an unbounded listing never returns."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(("value", call()))
        except Exception as exc:
            outcome.append(("error", exc))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"still running after {seconds} s: the listing is not bounded"
    return outcome[0]


@pytest.fixture(scope="module")
def upstream():
    with local_registry() as reg, connect(reg.url) as client:
        push_image(client, REPO, "v1", IMAGE)
        yield reg


@pytest.fixture
def proxy(upstream):
    with FaultProxy(upstream.url) as fault_proxy:
        yield fault_proxy


def endless_catalog(proxy: FaultProxy) -> Rule:
    return proxy.add_rule(Rule(path=r"^/v2/_catalog", action=EndlessPages("repositories", "endless/r")))


def endless_tags(proxy: FaultProxy) -> Rule:
    return proxy.add_rule(Rule(path=f"^/v2/{REPO}/tags/list", action=EndlessPages("tags", "t")))


def test_endless_catalog_stops_at_max_pages(proxy):
    rule = endless_catalog(proxy)
    with connect(proxy.url) as reg:
        kind, error = bounded(lambda: list(reg.catalog(max_pages=25)))
        assert kind == "error" and isinstance(error, regframe.RegistryProtocolError)
        assert "max_pages=25" in str(error)
        assert matched(proxy, rule) == 25
        _, inv = bounded(lambda: reg.inventory(progress=False, max_pages=40))
    assert matched(proxy, rule) == 25 + 40
    assert list(inv.errors["stage"].astype(str)) == ["catalog"]
    assert "max_pages=40" in inv.errors["error"].iloc[0]
    assert inv.complete is False
    assert inv.catalog.empty


def test_endless_catalog_ends_at_the_default_bound(proxy):
    rule = endless_catalog(proxy)
    with connect(proxy.url) as reg:
        kind, error = bounded(lambda: list(reg.catalog()))
    assert kind == "error" and isinstance(error, regframe.RegistryProtocolError)
    assert "max_pages=10000" in str(error)
    assert matched(proxy, rule) == MAX_PAGES == 10_000


def test_endless_tag_list_is_an_error_row_and_the_rest_is_crawled(proxy):
    rule = endless_tags(proxy)
    with connect(proxy.url) as reg:
        kind, error = bounded(lambda: reg.tags(REPO, auto_paginate=True, max_pages=15))
        assert kind == "error" and isinstance(error, regframe.RegistryProtocolError)
        assert "max_pages=15" in str(error)
        _, inv = bounded(lambda: reg.inventory([REPO], progress=False, max_pages=30))
    assert matched(proxy, rule) == 15 + 30
    assert [(str(r.repository), str(r.stage)) for r in inv.errors.itertuples()] == [(REPO, "tags")]
    assert "max_pages=30" in inv.errors["error"].iloc[0]


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "100"])
def test_bad_max_pages_is_refused_before_any_request(proxy, bad):
    with connect(proxy.url) as reg:
        before = proxy.stats.requests
        with pytest.raises(ValueError, match="max_pages"):
            reg.catalog(max_pages=bad)
        with pytest.raises(ValueError, match="max_pages"):
            reg.tags(REPO, max_pages=bad)
        with pytest.raises(ValueError, match="max_pages"):
            reg.inventory(progress=False, max_pages=bad)
        assert proxy.stats.requests == before
    assert crawl_threads() == []


@pytest.mark.parametrize("stage", ["catalog", "tags"])
def test_stop_ends_the_crawl_and_every_thread(proxy, stage):
    rule = endless_catalog(proxy) if stage == "catalog" else endless_tags(proxy)
    stop = threading.Event()
    done: dict = {}

    def run() -> None:
        with connect(proxy.url) as reg:
            done["inv"] = reg.inventory(None if stage == "catalog" else [REPO], progress=False, stop=stop)

    crawl = threading.Thread(target=run, name="test-crawl-caller", daemon=True)
    crawl.start()
    deadline = time.monotonic() + 30
    while matched(proxy, rule) < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert matched(proxy, rule) >= 30, "the endless listing never got going"
    stop.set()
    crawl.join(timeout=30)
    assert not crawl.is_alive(), "inventory() did not return after stop"
    assert crawl_threads() == []
    after_return = matched(proxy, rule)
    time.sleep(1.5)
    assert matched(proxy, rule) == after_return, "requests went on after inventory() returned"
    inv = done["inv"]
    assert inv.complete is False
    assert "interrupted" in set(inv.errors["stage"].astype(str))
