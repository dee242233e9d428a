"""The crawl: catalog -> tag lists -> manifests -> index children -> image config blobs, concurrently.

Every unique digest is fetched once per crawl; with a persistent cache, a re-crawl of an unchanged
registry makes only catalog, tag-list and one HEAD per tag requests, content that failed to summarise
included. Only image configs are downloaded: an artifact's config (which can be its whole payload) is
known from its descriptor. Referrers come from what the tags and indexes show (fallback indexes, cosign
tags, BuildKit attestation entries, ``subject`` fields) and, when asked, from the referrers API.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..client import artifacts as A
from ..client import errors as E
from ..client.arguments import check_count, check_flag
from ..client.models import INT64_MAX
from ..client.reads import HEAD_UNSERVED, MAX_PAGES
from ..client.reference import validate_repository
from .cache import CONFIG, MANIFEST, CacheWarning, DigestCache
from .concurrency import DEFAULT_MAX_WORKERS, Limit
from .pool import Cancelled, Once, TaskPool
from .quota import Quota
from .walk import placements, reads_config, wants_config

EXPECTED = (E.RegistryError, ValueError, KeyError, TypeError)
# A config blob is read up to this much; a larger one is recorded as unreadable without a download.
MAX_CONFIG_BYTES = 16 * 1024 * 1024
# A cached summary of content that cannot be summarised: the crawl reports it again without a download.
FAILED = "failed"
# The crawl's one read of the catalog when repositories are named (no digest or repository looks like it).
CATALOG_KEY = "\ncatalog"
# Calls that failed with 429 one after another, with nothing served in between, after which the registry
# is taken to refuse everything for now and the crawl stops.
REFUSED_IN_A_ROW = 5


class UnknownRepositoriesError(ValueError):
    """``repositories=`` names the registry's catalog does not list (``names``).

    Kept for callers that catch it; the crawl no longer raises it: a name the catalog does not list is
    crawled all the same (catalogs filtered by permissions leave out readable repositories), and one whose
    tag list answers 404 is a row of ``inv.errors``."""

    def __init__(self, names: list[str]):
        self.names = list(names)
        super().__init__(
            f"not in the registry's catalog: {', '.join(self.names)} (repositories= takes exact names; select by "
            "pattern with match=)"
        )


@dataclass
class CrawlResult:
    """Plain-Python record of what a crawl read; ``frames.py`` turns it into DataFrames."""

    repositories: dict[str, int] = field(default_factory=dict)
    tag_refs: list[tuple[str, str, str]] = field(default_factory=list)
    manifests: dict[str, dict] = field(default_factory=dict)
    configs: dict[str, dict] = field(default_factory=dict)
    errors: list[tuple[str, str | None, str, str]] = field(default_factory=list)
    # (repository, digest) of index entries that answered 404 there: present elsewhere, gone here.
    missing: set[tuple[str, str]] = field(default_factory=set)
    # (repository, subject digest, referrer descriptor) from the referrers API.
    api_referrers: list[tuple[str, str, dict]] = field(default_factory=list)
    # repository -> {manifest digest: upload and creation times}, where tags/list carries them (Google).
    upload_times: dict[str, dict[str, Any]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    complete: bool = True


def summarize_manifest(manifest) -> dict:
    """The fields of a manifest the frames need, and its classification skeleton; cached by digest.

    Content that cannot be summarised gives ``{"failed": reason}``, cached too."""
    config = manifest.config
    total = sum(int(d.get("size") or 0) for d in ([config] if config else []) + manifest.layers)
    if total > INT64_MAX:
        return {FAILED: f"manifest {manifest.digest}: its sizes add up to {total}, beyond an int64"}
    return {
        "media_type": manifest.media_type,
        "size": len(manifest.raw),
        "config": [config["digest"], int(config.get("size") or 0), config.get("mediaType")] if config else None,
        "layers": [
            [layer.get("digest"), int(layer.get("size") or 0), layer.get("mediaType")] for layer in manifest.layers
        ],
        "children": [
            [
                child.get("digest"),
                child.get("mediaType"),
                (child.get("platform") or {}).get("os"),
                (child.get("platform") or {}).get("architecture"),
                (child.get("platform") or {}).get("variant"),
            ]
            for child in manifest.children
        ],
        "skeleton": A.skeleton(manifest),
        "reads_config": reads_config(manifest),
    }


def unreadable_config(reason: str) -> dict:
    """An image config that says nothing usable: no platform, date or labels, and why."""
    return {"os": None, "architecture": None, "variant": None, "created": None, "labels": {}, "unreadable": reason}


def summarize_config(raw: bytes) -> dict:
    """An image config's platform, date and labels; content that is not a config object is recorded as
    unreadable (with the reason), never raised: a registry may hold any bytes under an image config type."""
    try:
        config = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return unreadable_config(f"not valid JSON ({str(exc)[:120]})")
    if not isinstance(config, dict):
        return unreadable_config(f"a JSON {type(config).__name__}, not an object")
    for key in ("os", "architecture", "variant"):
        if not isinstance(config.get(key) or "", str):
            return unreadable_config(f"{key!r} is {str(config[key])[:60]!r}, not a string")
    inner = config.get("config") or {}
    labels = (inner.get("Labels") if isinstance(inner, dict) else None) or {}
    return {
        "os": config.get("os"),
        "architecture": config.get("architecture"),
        "variant": config.get("variant"),
        "created": config.get("created"),
        "labels": labels if isinstance(labels, dict) else {},
    }


@dataclass(frozen=True)
class Selection:
    """Which repositories a crawl reads: the exact ``names`` given (None: the whole catalog), and of those
    the ones ``match`` accepts (None: all of them)."""

    names: tuple[str, ...] | None = None
    match: Callable[[str], bool] | None = None

    def pick(self, names: Iterable[str]) -> list[str]:
        """The names to crawl, in order, each once."""
        return [name for name in dict.fromkeys(names) if self.match is None or self.match(name)]


def exact_names(repositories, *, hub: bool = False) -> tuple[str, ...] | None:
    """Check ``repositories=`` before any request: None (the whole catalog), one exact repository name,
    or an iterable of exact names. On Docker Hub (``hub``) a single name is ``library/NAME``, as Hub itself
    names it, before duplicates are dropped: ``alpine`` and ``library/alpine`` are one repository, crawled
    once, and the frames say ``library/alpine`` whichever was given."""
    if isinstance(repositories, re.Pattern):
        raise ValueError("repositories takes exact repository names; select by pattern with match=")
    if repositories is None:
        return None
    if isinstance(repositories, str):
        names: Iterable[str] = (repositories,)
    elif isinstance(repositories, Iterable) and not isinstance(repositories, (bytes, bytearray)):
        names = repositories
    else:
        raise ValueError(
            "repositories must be None, a repository name or a list of repository names, "
            f"not {type(repositories).__name__}"
        )
    return tuple(dict.fromkeys(hub_name(validate_repository(name), hub) for name in names))


def hub_name(repository: str, hub: bool) -> str:
    """``repository`` as the registry names it: Docker Hub (``hub``) puts single names under ``library/``."""
    return f"library/{repository}" if hub and "/" not in repository else repository


def refuses_catalog(exc: BaseException) -> bool:
    """Whether a catalog error means the registry does not serve its catalog (to this user) at all."""
    return isinstance(exc, E.RegistryError) and (exc.status in (401, 403, 404) or exc.code == "UNSUPPORTED")


class Crawler:
    def __init__(
        self,
        client,
        selection: Selection | None = None,
        *,
        workers: int | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
        cache: DigestCache | None = None,
        progress=True,
        strict: bool = False,
        stop: threading.Event | None = None,
        max_pages: int = MAX_PAGES,
        referrers: bool = False,
        budget: int | str | None = None,
        reserve: int | float | None = None,
    ):
        check_flag("referrers", referrers)
        self.quota = Quota(budget, reserve, lambda: client.transport.rate_limit)
        self.referrers = referrers
        self.referrers_api: bool | None = None
        self.selection = selection if selection is not None else Selection()
        names = self.selection.names
        self.chosen = [] if names is None else self.selection.pick(names)
        self._strict_error: BaseException | None = None
        check_count("max_pages", max_pages)
        self.max_pages = max_pages
        self.client = client
        self.cache = cache if cache is not None else DigestCache()
        # HEADs are free where GETs count against a quota, and tell which digests the cache already knows.
        self.use_head = len(self.cache) > 0 or budget is not None
        self.strict = strict
        self.result = CrawlResult()
        self._fatal: BaseException | None = None
        transport = client.transport
        self.limit = Limit(
            max_workers,
            fixed=workers,
            congestion=lambda: transport.stats.congestion,
            latency=transport.stats.latency,
            on_change=self._limit_changed,
        )
        transport.keep_connections(self.limit.maximum)
        self.pool = TaskPool(self.limit)
        self.once = Once(self.pool)
        self._lock = threading.Lock()
        # The repository whose GET read (or tried to read) each index entry's content first, and every
        # (repository, digest) a GET has shown to be there.
        self._tried: dict[str, str] = {}
        self._seen_in: set[tuple[str, str]] = set()
        # The repository that read each tag digest's shared content (a digest found by HEAD).
        self._tag_read_in: dict[str, str] = {}
        # Nested indexes (an index entry that is an index) whose entries were asked for, per repository.
        self._nested: set[tuple[str, str]] = set()
        self._bar = _progress_bar(progress is True)
        self._report = progress if callable(progress) else None
        self._found = self._done = 0
        self._stop = stop
        # Config summaries read this crawl (what each blob showed, with its length), by digest.
        self._configs: dict[str, dict] = {}
        # (repository, digest) pairs the referrers API was asked about, so a cycle of referrers ends.
        self._asked: set[tuple[str, str]] = set()
        # Calls refused in a row, and how many answers the registry had served when the row began.
        self._refused = 0
        self._served_before = -1

    def _limit_changed(self, new: int, old: int) -> None:
        """More slots get their threads; fewer close the idle connections beyond them."""
        if new > old:
            self.pool.ensure_threads(new)
        else:
            self.client.transport.close_idle(new)

    # -- recording --------------------------------------------------------------------------------

    def _error(self, repository: str, tag: str | None, stage: str, exc: BaseException) -> None:
        with self._lock:
            self.result.errors.append((repository, tag, stage, f"{type(exc).__name__}: {exc}"))
        if self.strict:
            self._strict_error = exc
            self.pool.stop()
        elif isinstance(exc, E.RateLimitedError):
            self._rate_limited(exc)

    def _rate_limited(self, exc: E.RateLimitedError) -> None:
        """Stop, keeping what was read, once ``REFUSED_IN_A_ROW`` calls were refused with nothing served in
        between: a quota spent or a ban does not lift within a crawl's retries, and going on would only take
        each remaining tag through its retries and waits."""
        served = self.client.transport.pacer.served
        with self._lock:
            if served != self._served_before:
                self._served_before, self._refused = served, 0
            self._refused += 1
            if self._refused != REFUSED_IN_A_ROW:
                return
            self.result.complete = False
            self.result.errors.append(
                (
                    "",
                    None,
                    "rate-limited",
                    f"crawl stopped: the registry refused {REFUSED_IN_A_ROW} calls in a row (429) and served "
                    f"nothing in between (the last: {exc}); the frames hold what was read; crawl again later, "
                    "with the same cache= to read only the rest",
                )
            )
        self.pool.stop()

    def _tag_done(self) -> None:
        if self._bar is not None:
            self._bar.update(1)
        self._progress(done=1)

    def _progress(self, found: int = 0, done: int = 0) -> None:
        if self._report is None:
            return
        with self._lock:
            self._found += found
            self._done += done
            counts = self._done, self._found
        self._report(*counts)

    # -- stages --------------------------------------------------------------------------------------

    def _catalog(self) -> None:
        """A catalog that cannot be read to its end (e.g. past ``max_pages``) leaves the crawl incomplete."""
        try:
            names = list(self.client.catalog(max_pages=self.max_pages, stop=self.pool.stop_event))
        except EXPECTED as exc:
            if refuses_catalog(exc):
                self._fatal = E.CatalogUnavailableError(
                    f"{self.client.url} does not list its repositories: its catalog answered {exc}. Registries "
                    "such as Docker Hub, GHCR, Quay and GitLab.com refuse the catalog; pass the repositories to "
                    "crawl: inventory(repositories=[...]), or regframe audit --repositories NAME... / "
                    "--repositories-from FILE",
                    status=getattr(exc, "status", None),
                    code=getattr(exc, "code", None),
                    registry_message=getattr(exc, "registry_message", None),
                    url=getattr(exc, "url", None),
                )
                self.pool.stop()
                return
            self.result.complete = False
            self._error("", None, "catalog", exc)
            return
        for name in self.selection.pick(names):
            self.pool.submit(self._tags, name)

    def _tags(self, repository: str) -> None:
        """A repository's tag list. One named with ``repositories=`` is read whether or not any catalog lists
        it; a 404 there is a missing repository (an error row) unless the catalog lists the name."""
        named = self.selection.names is not None
        try:
            listing = self.client.tags(
                repository,
                auto_paginate=True,
                max_pages=self.max_pages,
                stop=self.pool.stop_event,
                missing_ok=not named,
            )
        except E.NotFoundError as exc:
            # The catalog is read once, by a task of its own: tasks waiting for it hold no slot.
            self.once.request(
                CATALOG_KEY, self._listed_names, functools.partial(self._not_listed, repository, exc), EXPECTED
            )
            return
        except EXPECTED as exc:
            self._error(repository, None, "tags", exc)
            return
        self._listed(repository, listing)

    def _listed(self, repository: str, listing: dict) -> None:
        tags = listing.get("tags", [])
        with self._lock:
            self.result.repositories[repository] = len(tags)
            if listing.get("manifests"):
                self.result.upload_times[repository] = listing["manifests"]
        if self._bar is not None:
            self._bar.total = (self._bar.total or 0) + len(tags)
        self._progress(found=len(tags))
        for tag in tags:
            self.pool.submit(self._resolve, repository, tag)

    def _listed_names(self) -> frozenset[str] | None:
        """The catalog, for named repositories whose tag list answered 404 (distribution keeps a repository
        whose tags were all deleted in its catalog); None when it cannot be read, whatever the reason (refused,
        failing, cut short): a crawl of named repositories needs no catalog."""
        try:
            names = frozenset(self.client.catalog(max_pages=self.max_pages, stop=self.pool.stop_event))
        except EXPECTED:
            return None
        return None if self.pool.stop_event.is_set() else names

    def _not_listed(self, repository: str, exc: E.NotFoundError, ok: bool, names) -> None:
        """A named repository whose tag list answered 404: empty when the catalog lists it, else missing."""
        listed = names if ok else None
        if listed is not None and repository in listed:
            self._listed(repository, {})
            return
        why = (
            "the registry's catalog cannot confirm the name (a misspelt name, or one whose tags were all deleted)"
            if listed is None
            else "the registry's catalog does not list it (a misspelt name? names are exact repository names, "
            "not patterns)"
        )
        self._error(
            repository,
            None,
            "tags",
            E.NotFoundError(
                f"repository {repository} not found: its tag list answered 404 and {why}",
                status=exc.status,
                code=exc.code,
                registry_message=exc.registry_message,
                url=exc.url,
            ),
        )

    def _resolve(self, repository: str, tag: str) -> None:
        """A tag's manifest: by HEAD first when a cache or a budget is there (a digest seen before costs no
        GET, and aliases of one digest share one GET), else by one GET."""
        gone = f"{repository}:{tag} disappeared during the crawl"
        try:
            digest = self._head(repository, tag) if self.use_head else ""
            if digest is None:
                raise E.NotFoundError(gone, status=404)
            if digest:
                self.once.request(
                    digest,
                    functools.partial(self._tag_content, repository, digest, gone),
                    functools.partial(self._tag_known, repository, tag, digest, gone),
                    EXPECTED,
                )
                return
            digest, summary = self._fetch_manifest(repository, tag)
            _check_summary(summary)
        except EXPECTED as exc:
            self._resolved(repository, tag, "", False, exc)
            return
        self._resolved(repository, tag, digest, True, summary)

    def _tag_content(self, repository: str, digest: str, gone: str) -> dict:
        """A tag's content by digest, shared by every tag on that digest; notes the repository that read it."""
        with self._lock:
            self._tag_read_in[digest] = repository
        return self._child(repository, digest, gone)

    def _tag_known(self, repository: str, tag: str, digest: str, gone: str, ok: bool, value) -> None:
        """A 404 where another repository read the shared content says nothing of this one, whose HEAD found
        the digest: it reads the content itself (another client may have deleted it there meanwhile)."""
        if not ok and isinstance(value, E.NotFoundError) and self._tag_read_in.get(digest) != repository:
            self.once.request(
                f"{repository}\n{digest}",
                functools.partial(self._child, repository, digest, gone),
                functools.partial(self._resolved, repository, tag, digest),
                EXPECTED,
            )
            return
        self._resolved(repository, tag, digest, ok, value)

    def _head(self, repository: str, tag: str) -> str | None:
        """A tag's digest by HEAD, within the budget: a registry may count HEADs against its quota too."""
        allowed, tracked = self.quota.take_head()
        if not allowed:
            self._out_of_budget()
            raise Cancelled
        try:
            return self.client.manifest_exists(repository, tag)
        finally:
            if tracked:
                self.quota.done()

    def _resolved(self, repository: str, tag: str, digest: str, ok: bool, value) -> None:
        if not ok:
            self._error(repository, tag, "manifest", value)
        else:
            with self._lock:
                self.result.tag_refs.append((repository, tag, digest))
            self._expand(repository, tag, digest, value)
        self._tag_done()

    def _fetch_manifest(self, repository: str, reference: str, missing: str | None = None) -> tuple[str, dict]:
        """GET a manifest and cache its summary; only freshly read digests are written to the cache.

        Each GET is one unit of a registry's pull quota: past the budget the crawl stops here."""
        if not self.quota.take():
            self._out_of_budget()
            raise Cancelled
        manifest = None
        try:
            manifest = self.client.manifest(repository, reference)
        finally:
            self.quota.done(manifest.headers if manifest is not None else None)
        if not manifest:
            raise E.NotFoundError(missing or f"{repository}:{reference} disappeared during the crawl", status=404)
        summary = summarize_manifest(manifest)
        self.cache.put(manifest.digest, summary)
        with self._lock:
            self._seen_in.add((repository, manifest.digest))
        if FAILED not in summary:
            self.once.seed(manifest.digest, summary)
        return manifest.digest, summary

    def _expand(self, repository: str, tag: str, digest: str, summary: dict) -> None:
        with self._lock:
            self.result.manifests.setdefault(digest, summary)
        self._entries(repository, tag, summary)
        if wants_config(summary):
            self._need_config(repository, tag, *summary["config"][:2])

    def _entries(self, repository: str, tag: str | None, summary: dict) -> None:
        for child in summary["children"]:
            child_digest = child[0]
            self.once.request(
                f"entry\n{child_digest}",
                functools.partial(self._entry_content, repository, child_digest),
                functools.partial(self._entry_known, repository, tag, child_digest),
                EXPECTED,
            )

    # An index entry's content is the same wherever its digest is, and is read once (or taken from the cache);
    # whether the entry is in a repository is not (``garbage-collect --delete-untagged`` removes it from one
    # repository and not another). So a repository other than the one whose GET read the content checks on
    # its own: a HEAD, a GET where HEAD is not served, its own GET after a 404 elsewhere. No task ever waits
    # for another: tasks waiting on one answer are callbacks of it and hold no thread.

    def _entry_content(self, repository: str, digest: str) -> tuple[str | None, dict]:
        """The entry's content and the repository whose GET read it (None: from the cache)."""
        summary = self.cache.get(digest, MANIFEST)
        if summary is not None:
            return None, summary
        with self._lock:
            self._tried[digest] = repository
        return repository, self._fetch_manifest(repository, digest, _missing_entry(digest, repository))[1]

    def _entry_known(self, repository: str, tag: str | None, digest: str, ok: bool, value) -> None:
        if ok:
            read_in, summary = value
            with self._lock:
                seen_here = (repository, digest) in self._seen_in
            if read_in == repository or seen_here:
                self._child_done(repository, tag, digest, True, summary)
                return
            fetch = functools.partial(self._entry_present, repository, digest, summary)
        elif isinstance(value, E.NotFoundError) and self._tried.get(digest) != repository:
            fetch = functools.partial(self._entry_read_here, repository, digest)
        else:
            self._child_done(repository, tag, digest, False, value)
            return
        self.once.request(
            f"{repository}\n{digest}", fetch, functools.partial(self._child_done, repository, tag, digest), EXPECTED
        )

    def _entry_present(self, repository: str, digest: str, summary: dict) -> dict:
        """``summary`` once the entry is shown to be in ``repository``: by HEAD, or by GET where HEAD is not
        served (400, 405, 501, as ``digest()`` falls back)."""
        try:
            found = self.client.manifest_exists(repository, digest)
        except E.RegistryError as exc:
            if exc.status not in HEAD_UNSERVED:
                raise
            return self._entry_read_here(repository, digest)
        if found is None:
            raise E.NotFoundError(_missing_entry(digest, repository), status=404)
        _check_summary(summary)
        return summary

    def _entry_read_here(self, repository: str, digest: str) -> dict:
        summary = self._fetch_manifest(repository, digest, _missing_entry(digest, repository))[1]
        _check_summary(summary)
        return summary

    def _child(self, repository: str, digest: str, missing: str | None = None) -> dict:
        summary = self.cache.get(digest, MANIFEST)
        if summary is None:
            missing = missing or _missing_entry(digest, repository)
            summary = self._fetch_manifest(repository, digest, missing)[1]
        _check_summary(summary)
        return summary

    def _child_done(
        self, repository: str, tag: str | None, digest: str, ok: bool, value, stage="child manifest"
    ) -> None:
        if not ok:
            if isinstance(value, E.NotFoundError):
                with self._lock:
                    self.result.missing.add((repository, digest))
            self._error(repository, tag, stage, value)
            return
        with self._lock:
            self.result.manifests[digest] = value
            # An index of indexes (the image spec allows it): the inner one's entries are read too, once per
            # repository, so a digest cycle a hostile registry serves ends here.
            nested = bool(value["children"]) and (repository, digest) not in self._nested
            self._nested.add((repository, digest))
        if nested:
            self._entries(repository, tag, value)
        if wants_config(value):
            self._need_config(repository, tag, *value["config"][:2])

    def _need_config(self, repository: str, tag: str | None, digest: str, size: int = 0) -> None:
        """An image config, decided per (digest, declared size): a descriptor declaring more than the limit
        gets a verdict without a download, which is about that descriptor, not the blob, so it is neither
        cached nor shared with a descriptor declaring another size. What the blob itself showed is cached by
        digest and read once per crawl (twice at most when two descriptors declaring different sizes ask at
        once); a descriptor declaring less than the blob holds fails as its own read would, whether or not the
        blob is known already."""
        over = size > MAX_CONFIG_BYTES

        def fetch() -> dict:
            if over:
                return unreadable_config(f"declares {size} bytes, over the {MAX_CONFIG_BYTES}-byte limit")
            known = self._configs.get(digest) or self.cache.get(digest, CONFIG)
            length = known.get("bytes") if known is not None else None
            if known is not None and not (size and isinstance(length, int) and size < length):
                return known
            blob = self.client.blob(repository, digest, max_size=size or MAX_CONFIG_BYTES)
            summary = {**summarize_config(blob.body), "bytes": len(blob.body)}
            self.cache.put(digest, summary)
            with self._lock:
                self._configs[digest] = summary
            return summary

        def done(ok: bool, value) -> None:
            if not ok:
                self._error(repository, tag, "config", value)
                return
            with self._lock:
                # The frames look configs up by digest: what the blob showed wins over a declared-size verdict.
                if over:
                    self.result.configs.setdefault(digest, value)
                else:
                    self.result.configs[digest] = value

        self.once.request(f"config\n{digest}\n{size}", fetch, done, EXPECTED)

    def _out_of_budget(self) -> None:
        """Stop the crawl once, keeping what was read, with one error row saying why."""
        with self._lock:
            if not self.result.complete and any(row[2] == "budget" for row in self.result.errors):
                return
            self.result.complete = False
            self.result.errors.append(
                (
                    "",
                    None,
                    "budget",
                    f"crawl stopped before its rate-limit budget ran out ({self.quota.reason}); the frames hold "
                    "what was read; crawl again with the same cache= later to read the rest",
                )
            )
        self.pool.stop()

    # -- the referrers API ---------------------------------------------------------------------------

    def _ask_referrers(self) -> None:
        """Once the tags are read, ask the referrers API once per distinct image digest (index digests and
        their platform manifests alike). The first question is the probe: a registry without the API gets no
        other."""
        wanted: dict[tuple[str, str], None] = {}
        for placement in placements(self.result.tag_refs, self.result.manifests, self.result.missing):
            if placement.kind == A.IMAGE:
                wanted[(placement.repository, placement.digest)] = None
                wanted[(placement.repository, placement.manifest_digest)] = None
        if not wanted:
            return
        first, *rest = wanted
        self._asked.update(wanted)
        answer = self._api_answer(*first)
        if answer is None:
            self.referrers_api = False
            return
        self.referrers_api = True
        self._record_referrers(*first, answer)
        for repository, digest in rest:
            self.pool.submit(self._referrers_of, repository, digest)

    def _api_answer(self, repository: str, digest: str) -> list[dict] | None:
        """The referrers API's answer for one digest, or None when the registry has no API (or the query failed,
        which is an error row)."""
        from ..client import referrers as R

        try:
            return R.api_referrers(self.client, repository, digest)
        except EXPECTED as exc:
            self._error(repository, None, "referrers", exc)
            return None

    def _referrers_of(self, repository: str, digest: str) -> None:
        answer = self._api_answer(repository, digest)
        if answer is not None:
            self._record_referrers(repository, digest, answer)

    def _record_referrers(self, repository: str, digest: str, found: list[dict]) -> None:
        """Keep each referrer the API named, read its manifest (once per digest), and ask the API about it in
        turn: a signature of an SBOM is a referrer of the SBOM, which only that question finds."""
        for descriptor in found:
            referrer = descriptor["digest"]
            with self._lock:
                self.result.api_referrers.append((repository, digest, descriptor))
            self.once.request(
                referrer,
                functools.partial(
                    self._child, repository, referrer, f"referrer {referrer} is missing from {repository}"
                ),
                functools.partial(self._referrer_read, repository, referrer),
                EXPECTED,
            )

    def _referrer_read(self, repository: str, referrer: str, ok: bool, value) -> None:
        self._child_done(repository, None, referrer, ok, value, stage="referrer")
        with self._lock:
            asked = (repository, referrer) in self._asked
            self._asked.add((repository, referrer))
        if ok and not asked:
            self.pool.submit(self._referrers_of, repository, referrer)

    # -- running -------------------------------------------------------------------------------------

    def run(self) -> CrawlResult:
        transport = self.client.transport
        previous_hook, transport.wait_hook = transport.wait_hook, self.pool.wait_off_slot
        try:
            return self._run()
        finally:
            transport.wait_hook = previous_hook

    def _run(self) -> CrawlResult:
        before = self.client.transport.stats.snapshot()
        hits0, misses0 = self.cache.hits, self.cache.misses
        started = time.perf_counter()
        try:
            if self.selection.names is None:
                self.pool.submit(self._catalog)
            else:
                for name in self.chosen:
                    self.pool.submit(self._tags, name)
            self._wait()
            if self.referrers and not self.pool.stopped and not (self._stop is not None and self._stop.is_set()):
                self._ask_referrers()
                self._wait()
        except KeyboardInterrupt:
            self.pool.stop()
            self.result.complete = False
            self.result.errors.append(("", None, "interrupted", "KeyboardInterrupt: crawl stopped by the user"))
        finally:
            self.pool.close()
            if self._bar is not None:
                self._bar.close()
        if self._fatal is not None:
            raise self._fatal
        if self._strict_error is not None:
            raise self._strict_error
        if self._stop is not None and self._stop.is_set():
            self.result.complete = False
            self.result.errors.append(("", None, "interrupted", "crawl stopped before it finished"))
        self._save_cache()
        after = self.client.transport.stats.snapshot()
        requests = {
            k: v - before["requests"].get(k, 0)
            for k, v in after["requests"].items()
            if v - before["requests"].get(k, 0)
        }
        self.result.stats = {
            "requests": requests,
            "total_requests": sum(requests.values()),
            "retries": after["total_retries"] - before["total_retries"],
            "bytes_read": after["bytes_read"] - before["bytes_read"],
            "seconds": round(time.perf_counter() - started, 3),
            "cache_hits": self.cache.hits - hits0,
            "cache_misses": self.cache.misses - misses0,
            "repositories": len(self.result.repositories),
            "tags": len(self.result.tag_refs),
            "errors": len(self.result.errors),
            "unreadable_configs": sum(1 for c in self.result.configs.values() if c.get("unreadable")),
            "quota": self.quota.stats(),
            "concurrency": self.limit.stats(),
        }
        if self.referrers:
            self.result.stats["referrers_api"] = self.referrers_api
        return self.result

    def _wait(self) -> None:
        self.pool.wait(stop=self._stop)

    def _save_cache(self) -> None:
        """Keep what the crawl learned for the next one; a cache that cannot be written (locked past SQLite's
        timeout, a read-only filesystem, a full disk, taken over by a newer regframe) is a warning: the crawl
        is never lost for the cache's sake."""
        try:
            self.cache.save()
        except (sqlite3.Error, OSError, ValueError) as exc:
            warnings.warn(
                CacheWarning(
                    f"cache {str(self.cache.path)!r} could not be written ({type(exc).__name__}: {exc}); the "
                    "inventory is returned whole, but what this crawl read is not kept, so the next crawl reads "
                    "it again"
                ),
                stacklevel=5,
            )


def _check_summary(summary: dict) -> None:
    """A cached failure is reported as it was first time, without reading the content again."""
    if FAILED in summary:
        raise E.RegistryProtocolError(summary[FAILED])


def _progress_bar(enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=0, unit="tag", desc="crawl", leave=False, mininterval=0.25)


def _missing_entry(digest: str, repository: str) -> str:
    """The error text of an index entry gone from ``repository`` (``dangling_entries`` reads it)."""
    return f"child manifest {digest} is missing from {repository}"
