"""``Registry``: the HTTP client plus what turns a registry into DataFrames and acts on analyses."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable
from functools import partial

import pandas as pd

from .actions.cleanup import apply_cleanup
from .client.api import RegistryClient
from .client.arguments import check_count, check_flag
from .client.reads import MAX_PAGES
from .client.reference import validate_tag
from .inventory.cache import DigestCache
from .inventory.catalog import catalog_frame
from .inventory.concurrency import check_workers
from .inventory.crawl import Crawler, Selection, exact_names
from .inventory.frames import build_frames
from .inventory.inventory import Inventory, crawl_parameters
from .inventory.quota import check_budget
from .patterns import compile_pattern


def select_repositories(
    repositories: str | Iterable[str] | None = None, match: str | re.Pattern[str] | None = None, *, hub: bool = False
) -> Selection:
    """``inventory()``'s ``repositories=`` (exact names; Docker Hub's single names under ``library/`` when
    ``hub``) and ``match=`` (a regular expression searched in each name), checked before any request. The
    pattern runs under a time bound, so a catastrophic one raises ValueError instead of hanging the crawl."""
    names = exact_names(repositories, hub=hub)
    pattern = compile_pattern(match, "match")
    if pattern is None:
        return Selection(names)
    return Selection(names, partial(pattern.search, kind="repository"))


def _check_crawl_options(
    progress: object, strict: object, stop: object, cache: object, max_pages: object, referrers: object
) -> None:
    """``inventory()``'s plain options, before the cache is opened and any request is made: a value the crawl
    would misread (``strict=1``), or fail on only once it runs (``stop="yes"``), is named here instead."""
    if not (isinstance(progress, bool) or callable(progress)):
        raise ValueError(f"progress must be True, False or a callable (tags_done, tags_found), not {progress!r}")
    check_flag("strict", strict)
    check_flag("referrers", referrers)
    if stop is not None and not callable(getattr(stop, "is_set", None)):
        raise ValueError(f"stop must be None or a threading.Event (anything with is_set()), not {type(stop).__name__}")
    if not (cache is None or isinstance(cache, (str, os.PathLike, DigestCache))):
        raise ValueError(f"cache must be None, a path or a DigestCache, not {type(cache).__name__}")
    check_count("max_pages", max_pages)


class Registry(RegistryClient):
    """A registry connection with ``inventory()``, ``frames`` and ``apply_cleanup()``."""

    def inventory(
        self,
        repositories: str | Iterable[str] | None = None,
        *,
        match: str | re.Pattern[str] | None = None,
        workers: int | None = None,
        max_workers: int | None = None,
        cache: str | os.PathLike | DigestCache | None = None,
        progress: bool | Callable[[int, int], None] = True,
        strict: bool = False,
        stop: threading.Event | None = None,
        max_pages: int = MAX_PAGES,
        referrers: bool = False,
        budget: int | str | None = None,
        reserve: int | float | None = None,
    ) -> Inventory:
        """Crawl the catalog's repositories, every tag, manifest, index child and config, and return the frames.

        ``repositories``: exact names (one name, or a list, tuple or set of names), crawled without the
        catalog (read only when a tag list answers 404, to tell an emptied repository from a missing one,
        which is a row of ``inv.errors``); None for the whole catalog. ``match``: a regular expression
        (string, ``re.search`` semantics, or a compiled pattern) selecting repositories by name; with
        ``repositories`` too, only the listed names it matches are crawled. Bad values raise ValueError
        before any request.

        ``cache``: a path (or DigestCache) reused across crawls, so an unchanged registry costs one HEAD
        per tag; a path that cannot be opened, or a cache a newer regframe wrote, raises ValueError naming it.
        A damaged entry is read again, and a cache that cannot be written at the end is a ``CacheWarning``
        (the inventory is returned). A failure is recorded in
        ``inv.errors`` and the crawl goes on, unless ``strict``.
        ``progress``: True for a tqdm bar, False for none, or a callable ``(tags_done, tags_found)``
        called from the crawl's threads (widgets use it).
        ``stop``: an Event (anything with ``is_set()``) that ends the crawl early, keeping what was read
        (Ctrl-C does the same); every thread of the crawl has ended when this returns.
        ``max_pages``: the most pages followed in the catalog and in each tag list (default 10,000); past it
        the listing becomes a row of ``inv.errors``, and a catalog cut short makes ``inv.complete`` False.
        ``referrers``: also ask the referrers API, probed once per crawl, once per distinct image digest when
        the registry has it; without it (the default) accessories come from what the tags and indexes show
        (fallback indexes, cosign tags, BuildKit attestation entries, ``subject`` fields), with no extra request.

        Concurrency adapts: from 32 requests in flight it grows while throughput grows, up to ``max_workers``
        (None: 64), and halves on every 429, 503 or timeout; ``workers=N`` fixes it at N instead, and a
        ``max_workers`` given with it must not be below N. Each is at most 1024 (``MAX_WORKERS``): every request
        in flight is a thread. Connections follow: never more open at once than requests in flight.

        ``budget``: the manifest GETs (units of a pull quota such as Docker Hub's) the crawl may make, or
        ``"auto"`` to follow the registry's ``RateLimit-Remaining`` header. The crawl then stops before the
        remaining quota would fall below ``reserve`` (units, or a fraction of the limit; default 10% of the
        window's limit with "auto", none with a number, and refused when it leaves a number nothing to spend),
        returns what it read with ``inv.complete`` False and a ``budget`` row in ``inv.errors``. With a budget
        (or a non-empty cache) tags are resolved by HEAD, which quotas do not count, and only digests not seen
        before are fetched: a crawl stopped by its budget goes on where it stopped when run again with the same
        ``cache``.

        A registry that refuses its catalog (401, 403, 404, ``UNSUPPORTED``) raises ``CatalogUnavailableError``
        unless ``repositories`` names what to crawl."""
        selection = select_repositories(repositories, match, hub=self.hub)
        most = check_workers(workers, max_workers)
        check_budget(budget, reserve)
        _check_crawl_options(progress, strict, stop, cache, max_pages, referrers)
        digest_cache = cache if isinstance(cache, DigestCache) or cache is None else DigestCache(cache)
        crawler = Crawler(
            self,
            selection,
            workers=workers,
            max_workers=most,
            cache=digest_cache,
            progress=progress,
            strict=strict,
            stop=stop,
            max_pages=max_pages,
            referrers=referrers,
            budget=budget,
            reserve=reserve,
        )
        started = pd.Timestamp.now(tz="UTC")
        result = crawler.run()
        frames = build_frames(result)
        params = crawl_parameters(
            selection.names,
            match,
            strict=strict,
            max_pages=max_pages,
            referrers=referrers,
            **({} if budget is None else {"budget": budget}),
        )
        return Inventory(
            **frames, stats=result.stats, url=self.url, complete=result.complete, params=params, crawled_at=started
        )

    @property
    def frames(self) -> FrameReader:
        """Single frames without a whole crawl: ``reg.frames.tags("repo")`` and so on."""
        return FrameReader(self)

    def apply_cleanup(
        self, stale: pd.DataFrame, dry_run: bool = True, *, delete_manifests: bool = False
    ) -> pd.DataFrame:
        """Remove (or, with ``dry_run``, list) the stale tags of a ``stale_tags`` frame; a row per tag says
        what was done and why (columns repository, tag, digest, action, method, status, reason).

        Each tag is checked live and removed alone (``rmtag(..., expected_digest=, method="placeholder")``);
        image manifests are never deleted, so no tag outside the plan is lost, not even to a racing
        writer. ``delete_manifests`` also deletes the images this left unreferenced, so plain garbage
        collection frees their space; see ``regframe.actions.cleanup.apply_cleanup`` for its one race."""
        return apply_cleanup(self, stale, dry_run=dry_run, delete_manifests=delete_manifests)

    def _repr_html_(self) -> str:
        from html import escape

        user = escape(self.user) if self.user else "anonymous"
        return (
            f"<div><b>regframe Registry</b> <code>{escape(self.url)}</code> as {user}; "
            f"{self.stats['total_requests']} requests so far</div>"
        )


class FrameReader:
    """Each inventory frame alone, for one repository or tag."""

    def __init__(self, registry: Registry):
        self._registry = registry

    def _crawl(self, repositories, tag: str | None = None) -> Inventory:
        """The repositories' frames, cut to ``tag``'s rows; a tag that is not one is refused before the crawl
        (it would match no row, and read as a tag without manifests)."""
        if tag is not None:
            validate_tag(tag)
        inv = self._registry.inventory(repositories, progress=False)
        if tag is not None:
            for name in ("tags", "manifests", "layers"):
                frame = getattr(inv, name)
                setattr(inv, name, frame[frame["tag"] == tag].reset_index(drop=True))
        return inv

    def catalog(self) -> pd.DataFrame:
        return catalog_frame(self._registry)

    def tags(self, repo: str) -> pd.DataFrame:
        return self._crawl([repo]).tags

    def manifests(self, repo: str, tag: str | None = None) -> pd.DataFrame:
        return self._crawl([repo], tag).manifests

    def layers(self, repo: str, tag: str | None = None) -> pd.DataFrame:
        return self._crawl([repo], tag).layers


def connect(url: str = "https://registry.hub.docker.com", **options) -> Registry:
    """Connect to a registry and check that it answers, like ``DockerRegistry2.connect``.

    Options: ``user``, ``password`` (strings, both or neither; a user name holding ``:`` is refused, as
    HTTP Basic splits there), ``open_timeout`` (2 s), ``read_timeout`` (5 s), ``verify``, ``ca_bundle``,
    ``docker_config`` (True or False: read the credentials docker, podman and skopeo keep, when no user is given),
    ``allow_insecure_auth`` (send the password over plain http to a host other than this machine, or to a
    plain-http token endpoint of an https registry; refused otherwise).

    Time limits, each ending a call with ``RegistryTimeoutError`` or the last error: ``request_timeout``
    (60 s: headers and any body read whole, however slowly the server drips them), ``min_stream_rate``
    (1024 bytes/s: a blob download must average this over every ``request_timeout`` spent waiting on it;
    0 turns it off), ``max_retry_wait`` (60 s: one call's sleeps before retries, Retry-After included).

    CA certificates, first found wins: ``ca_bundle``, ``verify`` (False or a path), $REQUESTS_CA_BUNDLE,
    $SSL_CERT_FILE, the system store."""
    return Registry.open(url, **options)
