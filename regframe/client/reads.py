"""Reads: catalog, tags, manifests, digests and blobs, every byte checked against its digest."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self, TypedDict
from urllib.parse import parse_qs, unquote, urlsplit

from . import errors as E
from . import mediatypes as MT
from .arguments import check_count, check_flag, check_progress
from .artifacts import base_type
from .atomic_files import write_atomically
from .core import ClientCore
from .digests import verified_manifest, verify_chunks, well_formed
from .headers import plain_headers
from .models import Blob, Descriptor, Manifest
from .reference import (
    Platform,
    parse_platform,
    validate_digest,
    validate_reference,
    validate_repository,
    validate_tag,
)
from .scopes import CATALOG_SCOPE, pull_scope
from .transport import DEFAULT_JSON_LIMIT, Response, Transport, is_http_url, join_url, parse_json

Progress = Callable[[int, int], None]
# The most pages one paginated listing (the catalog, one repository's tags) is followed for, so a
# registry whose Link pages never end cannot keep a call running forever: 10,000 pages of the
# registry's usual 100 names are a million repositories.
MAX_PAGES = 10_000


class ManifestTimes(TypedDict):
    """One entry of the ``manifest`` map Google Artifact Registry and GCR add to ``tags/list``: the
    manifest's tags, when it was uploaded and when its image was created (milliseconds since the epoch,
    None when not given), and its media type."""

    tags: list[str]
    uploaded_ms: int | None
    created_ms: int | None
    media_type: str | None


class TagList(TypedDict, total=False):
    """What ``tags`` returns; empty for an unknown repository or one with no tags. ``manifests`` is there
    only when the registry extends the listing with upload times (Google Artifact Registry, GCR)."""

    name: str
    tags: list[str]
    hashes: dict[str, str | None]
    last: str
    manifests: dict[str, ManifestTimes]


def pages(
    core: ClientCore,
    first: str,
    scopes: tuple[str, ...],
    kind: str,
    *,
    follow: bool = True,
    ok_missing: bool = False,
    max_pages: int = MAX_PAGES,
    stop: threading.Event | None = None,
) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Yield (body, next_url) per page, following ``Link: rel="next"`` as given (opaque tokens),
    refusing links that loop, lead to another host or another listing, or go past ``max_pages``; a set
    ``stop`` ends the listing before the next request. ``ok_missing``: a 404 on the first page is an empty
    listing; on any later page it is an error, since the listing would be silently cut short."""
    url: str | None = core.transport.url(first)
    seen: set[str] = set()
    while url:
        if stop is not None and stop.is_set():
            return
        if url in seen:
            raise E.RegistryProtocolError(f"pagination loops: {urlsplit(url).path} was already visited")
        if len(seen) >= max_pages:
            raise E.RegistryProtocolError(
                f"GET {urlsplit(first).path}: pagination goes on past max_pages={max_pages} pages; "
                "not followed further (pass a larger max_pages= to read more)"
            )
        seen.add(url)
        what = f"GET {urlsplit(url).path}"
        later = len(seen) > 1
        response, raw = core.transport.fetch(
            "GET",
            url,
            limit=DEFAULT_JSON_LIMIT,
            what=what,
            scopes=scopes,
            kind=kind,
            ok=(404,) if ok_missing or later else (),
        )
        if response.status_code == 404:
            if later:
                raise E.RegistryProtocolError(
                    f"{what}: page {len(seen)} of the listing answered 404; the listing is incomplete",
                    status=404,
                    url=url,
                )
            return
        body = parse_json(raw, what, url)
        if not isinstance(body, dict):
            raise E.RegistryProtocolError(f"GET {urlsplit(url).path}: expected a JSON object")
        nxt = next_page(core, response.headers.get("Link"), url, what)
        yield body, nxt
        url = nxt if follow else None


def catalog(
    core: ClientCore, page_size: int | None = None, *, max_pages: int = MAX_PAGES, stop: threading.Event | None = None
) -> Iterator[str]:
    """Every repository name, page by page.

    At most ``max_pages`` pages (default ``MAX_PAGES``, 10,000) are read: a catalog whose pages go
    on raises ``RegistryProtocolError`` naming the limit. A set ``stop`` Event ends the listing
    before its next request."""
    check_count("page_size", page_size, optional=True)
    check_count("max_pages", max_pages)
    first = "/v2/_catalog" + (f"?n={page_size}" if page_size else "")
    listing = pages(core, first, CATALOG_SCOPE, "catalog", max_pages=max_pages, stop=stop)
    return (name for body, _ in listing for name in _strings(body, "repositories", "GET /v2/_catalog"))


def search(core: ClientCore, pattern: str = "") -> list[str]:
    """Repository names containing ``pattern``, from the whole (paginated) catalog."""
    if not isinstance(pattern, str):
        raise ValueError(f"search pattern must be a string, not {type(pattern).__name__}")
    return [name for name in catalog(core) if pattern in name]


def tags(
    core: ClientCore,
    repo: str,
    count: int | None = None,
    last: str = "",
    with_hashes: bool = False,
    auto_paginate: bool = False,
    *,
    max_pages: int = MAX_PAGES,
    stop: threading.Event | None = None,
    missing_ok: bool = True,
) -> TagList:
    """``{"name", "tags"[, "hashes"][, "last"]}``; ``{}`` for an unknown repository or one with no tags.

    ``missing_ok=False``: an unknown repository (404) raises ``NotFoundError`` instead, for a name that
    nothing else confirms exists (a typo would otherwise read as an empty repository)."""
    repository = core.repo(repo)
    check_count("count", count, optional=True)
    check_count("max_pages", max_pages)
    check_flag("with_hashes", with_hashes)
    check_flag("auto_paginate", auto_paginate)
    check_flag("missing_ok", missing_ok)
    if last:
        validate_tag(last)
    query = "&".join(p for p in (f"n={count}" if count else "", f"last={last}" if last else "") if p)
    first = f"/v2/{repository}/tags/list" + (f"?{query}" if query else "")
    name, tags, next_url = repository, list[str](), None
    times: dict[str, ManifestTimes] = {}
    found = False
    for body, next_url in pages(  # noqa: B007  (the last page's next link is read after the loop)
        core,
        first,
        pull_scope(repository),
        "tags",
        follow=auto_paginate,
        ok_missing=missing_ok,
        max_pages=max_pages,
        stop=stop,
    ):
        listed = body.get("name")
        if not found and isinstance(listed, str) and listed:
            name = listed
        found = True
        tags.extend(_strings(body, "tags", f"GET /v2/{repository}/tags/list"))
        times.update(manifest_times(body.get("manifest")))
    if not found or not tags:
        return {}
    tags = list(dict.fromkeys(tags))  # a registry that repeats a tag across pages lists it once
    result: TagList = {"name": name, "tags": tags}
    if times:
        result["manifests"] = times
    if next_url and not auto_paginate:
        result["last"] = (parse_qs(urlsplit(next_url).query).get("last") or [tags[-1]])[0]
    if with_hashes:
        result["hashes"] = tag_hashes(core, repository, tags)
    return result


def tag_hashes(core: ClientCore, repository: str, tags: list[str], workers: int = 16) -> dict[str, str | None]:
    def one(tag: str) -> str | None:
        try:
            return digest(core, repository, tag)
        except E.NotFoundError:
            return None

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(tags)))) as pool:
        return dict(zip(tags, pool.map(one, tags)))


# -- manifests ----------------------------------------------------------------------------------


def manifest(core: ClientCore, repo: str, reference: str = "latest") -> Manifest:
    """The manifest, digest-checked against its bytes; an empty Manifest when not found."""
    repository = core.repo(repo)
    validate_reference(reference)
    what = f"manifest {repository}:{reference}"
    response, raw = _fetch_manifest(core, repository, reference, MT.MAX_MANIFEST_BYTES, what)
    if response.status_code == 404:
        return Manifest(repository=repository, reference=reference)
    return verified_manifest(raw, response.headers, repository, reference)


def manifest_exists(core: ClientCore, repo: str, reference: str) -> str | None:
    """The digest by HEAD, or None when the manifest does not exist."""
    repository = core.repo(repo)
    validate_reference(reference)
    response = core.transport.request(
        "HEAD",
        f"/v2/{repository}/manifests/{reference}",
        headers={"Accept": MT.MANIFEST_ACCEPT},
        scopes=pull_scope(repository),
        kind="manifest_head",
        ok=(404,),
    )
    response.close()
    if response.status_code == 404:
        return None
    found = response.headers.get("Docker-Content-Digest") or ""
    # A malformed digest is no answer: digest() then hashes the GET body instead.
    return found if well_formed(found) else ""


# A registry that serves no HEAD on manifests answers one of these; a GET then tells the digest.
HEAD_UNSERVED = frozenset({400, 405, 501})


def digest(core: ClientCore, repo: str, tag: str, platform: str | None = None) -> str:
    """The manifest digest by HEAD (GET and hash when HEAD gives none); ``platform`` picks an index child."""
    repository = core.repo(repo)
    validate_reference(tag)
    wanted = parse_platform(platform) if platform is not None else None
    if wanted is None:
        try:
            found = manifest_exists(core, repository, tag)
        except E.RegistryError as exc:
            if exc.status not in HEAD_UNSERVED:
                raise
            found = ""
        if found is None:
            raise E.NotFoundError(f"{repository}:{tag} not found", status=404)
        if found:
            return found
    found_manifest = manifest(core, repository, tag)
    if not found_manifest:
        raise E.NotFoundError(f"{repository}:{tag} not found", status=404)
    if wanted is None:
        return validate_digest(found_manifest.digest)
    return validate_digest(platform_child(core, found_manifest, wanted)["digest"])


def platform_child(core: ClientCore, manifest: Manifest, wanted: Platform) -> Descriptor:
    """The entry of an index (or the single image) for ``wanted``. An entry without ``platform`` (the field is
    optional) is matched by its image config, as containerd does, after every entry that declares one."""
    if manifest.is_index:
        for child in manifest.children:
            found = Platform.from_descriptor(child.get("platform"))
            if found is not None and wanted.matches(found):
                return child
        for child in manifest.children:
            if "platform" not in child and child.get("mediaType") not in MT.INDEX_TYPES:
                found = image_platform(core, child_manifest(core, manifest, child))
                if found is not None and wanted.matches(found):
                    return child
        raise E.NotFoundError(
            f"{manifest.repository}:{manifest.reference} has no {wanted} image "
            f"(it has {', '.join(manifest.platforms()) or 'none'})",
            status=404,
        )
    found = image_platform(core, manifest)
    if found is None or not wanted.matches(found):
        what = f"a single {found} image" if found is not None else "not an image (its config is not an image config)"
        raise E.NotFoundError(f"{manifest.repository}:{manifest.reference} is {what}, not {wanted}", status=404)
    return {"digest": manifest.digest, "mediaType": manifest.media_type, "size": manifest.size}


def image_platform(core: ClientCore, manifest: Manifest) -> Platform | None:
    """An image manifest's platform from its config (read capped); None when its config is not a Docker or
    OCI image config, whose bytes are opaque (an artifact's). A bad image config is a RegistryProtocolError."""
    descriptor = manifest.config
    media_type = descriptor.get("mediaType") if descriptor else None
    if descriptor is None or manifest.is_index or not isinstance(media_type, str):
        return None
    if base_type(media_type) not in MT.IMAGE_CONFIG_TYPES:
        return None
    config = platform_config(core, manifest, descriptor)
    fields = [config.get(key) for key in ("os", "architecture", "variant")]
    if not all(isinstance(value, str) for value in fields if value is not None):
        raise E.RegistryProtocolError(
            f"config {descriptor['digest']} of {manifest.repository}:"
            f"{manifest.reference}: os, architecture and variant must be strings"
        )
    return Platform(fields[0] or "", fields[1] or "", fields[2] or None)


def platform_config(core: ClientCore, manifest: Manifest, descriptor: Descriptor) -> dict[str, Any]:
    """The config ``descriptor`` of ``manifest`` names, as a JSON object, read no further than its declared
    size and never past MAX_CONFIG_BYTES, so a hostile registry cannot make a platform lookup hold a huge body."""
    where = f"config {descriptor['digest']} of {manifest.repository}:{manifest.reference}"
    declared = descriptor.get("size")
    if declared is not None and declared > MAX_CONFIG_BYTES:
        raise E.RegistryProtocolError(
            f"{where}: declares {declared} bytes, over the {MAX_CONFIG_BYTES}-byte limit for a config"
        )
    repository = validate_repository(manifest.repository)
    with open_blob(core, repository, descriptor["digest"], max_size=MAX_CONFIG_BYTES, size=declared) as stream:
        config = parse_json(b"".join(stream.chunks()), where)
    if not isinstance(config, dict):
        raise E.RegistryProtocolError(f"{where}: a {type(config).__name__}, not a JSON object")
    return config


def manifest_sum(core: ClientCore, manifest: Manifest | dict[str, Any]) -> int:
    """Compressed bytes of the layers; for an index, of every child's layers (NotFoundError names a
    child the registry no longer has). A plain dict (parsed JSON, as docker_registry2 takes) serves for
    an image manifest; an index or a schema1 manifest needs the ``Manifest`` that ``manifest()`` returns,
    which knows its repository."""
    if not isinstance(manifest, dict):
        raise ValueError(
            f"manifest must be a manifest (a dict or what manifest() returns), not {type(manifest).__name__}"
        )
    if not isinstance(manifest, Manifest):
        manifest = Manifest(manifest)
    if not manifest:
        return 0
    if (manifest.is_index or manifest.is_schema1) and manifest.repository is None:
        raise ValueError(
            "manifest_sum of an index or a schema1 manifest reads from the registry: pass what manifest() "
            "returned, which knows its repository, not a plain dict"
        )
    if manifest.is_index:
        return sum(manifest_sum(core, child_manifest(core, manifest, child)) for child in manifest.children)
    if manifest.is_schema1:
        repository = validate_repository(manifest.repository)
        return sum(blob_size(core, repository, layer["digest"]) for layer in manifest.layers)
    return sum(int(layer.get("size") or 0) for layer in manifest.layers)


def child_manifest(core: ClientCore, index: Manifest, child: Descriptor) -> Manifest:
    """A child of ``index``, read no further than the size its descriptor declares and checked against
    it; NotFoundError naming the index and the child when the registry no longer has it."""
    repository, digest = validate_repository(index.repository), child["digest"]
    declared = child.get("size")
    limit = MT.MAX_MANIFEST_BYTES if declared is None else min(declared, MT.MAX_MANIFEST_BYTES)
    what = f"manifest {repository}@{digest}"
    response, raw = _fetch_manifest(core, repository, digest, limit, what)
    if response.status_code == 404:
        raise E.NotFoundError(
            f"{repository}:{index.reference} (index {index.digest}) lists child manifest "
            f"{digest}, which the registry does not have",
            status=404,
        )
    found = verified_manifest(raw, response.headers, repository, digest)
    if declared is not None and found.size != declared:
        raise E.RegistryProtocolError(f"{what} is {found.size} bytes, but index {index.digest} declares {declared}")
    return found


# -- blobs ----------------------------------------------------------------------------------------


def blob_size(core: ClientCore, repo: str, digest: str) -> int:
    """The blob's size, from the Content-Length of the registry's HEAD answer; RegistryProtocolError naming
    the blob when that answer gives none or one that is not a number (0 would be taken for a real size)."""
    repository = core.repo(repo)
    response = head_blob(core, repository, digest)
    size = content_length(response)
    if size is None:
        given = response.headers.get("Content-Length")
        raise E.RegistryProtocolError(
            f"blob {digest} in {repository}: the registry's HEAD answer gives no size "
            + ("(no Content-Length)" if given is None else f"(Content-Length {given[:40]!r})"),
            url=response.url,
        )
    return size


def content_length(response: Response) -> int | None:
    """An answer's Content-Length when it is a plain decimal number, else None."""
    value = (response.headers.get("Content-Length") or "").strip()
    return int(value) if value.isascii() and value.isdigit() else None


def blob_exists(core: ClientCore, repo: str, digest: str) -> bool:
    return head_blob(core, core.repo(repo), digest, ok=(404,)).status_code != 404


def head_blob(core: ClientCore, repository: str, digest: str, ok: tuple[int, ...] = ()) -> Response:
    validate_digest(digest)
    response = core.transport.request(
        "HEAD", f"/v2/{repository}/blobs/{digest}", scopes=pull_scope(repository), kind="blob_head", ok=ok
    )
    response.close()
    return response


def blob(
    core: ClientCore,
    repo: str,
    digest: str,
    path: str | os.PathLike[str] | None = None,
    *,
    progress: Progress | None = None,
    max_size: int | None = None,
) -> Blob:
    """Fetch a blob, sha-checked; with ``path`` streamed to a temporary file renamed on success.

    ``max_size`` refuses (RegistryProtocolError) a body longer than that, e.g. the size a manifest
    declares, so a hostile server cannot make a small read fill memory or disk. Without ``path`` the
    body is held in memory, so ``max_size`` defaults to MAX_MEMORY_BLOB (64 MiB)."""
    repository = core.repo(repo)
    validate_digest(digest)
    check_count("max_size", max_size, minimum=0, optional=True)
    check_progress(progress)
    target = Path(path) if path is not None else None
    if target is not None and target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "blob path= is a directory; give the file to write", str(target))
    hint = ""
    if target is None and max_size is None:
        max_size, hint = MAX_MEMORY_BLOB, "; pass path= to stream it to a file, or a larger max_size="
    with open_blob(core, repository, digest, max_size=max_size, hint=hint) as stream:
        if target is None:
            body = b"".join(stream.chunks(progress))
            return Blob(stream.headers, body=body, digest=digest, size=len(body))
        write_atomically(target, stream.chunks(progress))
        return Blob(stream.headers, path=target, digest=digest, size=stream.read)


def open_blob(
    core: ClientCore,
    repo: str,
    digest: str,
    *,
    max_size: int | None = None,
    size: int | None = None,
    hint: str = "",
) -> BlobStream:
    """A blob body as a verified stream. ``size`` is what a descriptor declares: the body must be exactly
    that long and is never read past it. ``max_size`` only bounds it."""
    repository = core.repo(repo)
    validate_digest(digest)
    check_count("max_size", max_size, minimum=0, optional=True)
    check_count("size", size, minimum=0, optional=True)
    response = core.transport.request(
        "GET", f"/v2/{repository}/blobs/{digest}", scopes=pull_scope(repository), kind="blob"
    )
    return BlobStream(core.transport, response, digest, max_size, size=size, hint=hint)


# A platform lookup reads the config into memory: configs are a few KiB, so this is generous.
MAX_CONFIG_BYTES = 16 * 1024 * 1024
# blob() without a path holds the body in memory; beyond this it asks for a path (or max_size=).
MAX_MEMORY_BLOB = DEFAULT_JSON_LIMIT
READ_CHUNK = 1 << 20


class BlobStream:
    """A blob body as verified chunks: the last chunk is released only after the digest checks out, and
    no byte past ``max_size`` or the declared ``size`` is asked for (beyond one read of slack)."""

    def __init__(
        self,
        transport: Transport,
        response: Response,
        digest: str,
        max_size: int | None = None,
        *,
        size: int | None = None,
        hint: str = "",
    ):
        self.transport = transport
        self.response = response
        self.digest = digest
        limits = [limit for limit in (max_size, size) if limit is not None]
        self.max_size = min(limits) if limits else None
        self.size = size
        self.hint = hint
        self.headers = plain_headers(response.headers)
        length = response.headers.get("Content-Length")
        self.total = int(length) if length and length.isdigit() else None
        self.read = 0
        if self.max_size is not None and self.total is not None and self.total > self.max_size:
            response.close()
            raise E.RegistryProtocolError(
                f"blob {digest}: body of {self.total} bytes is over the expected {self.max_size}{hint}",
                url=response.url,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.response.close()

    def chunks(self, progress: Progress | None = None) -> Iterator[bytes]:
        return verify_chunks(self._counted(progress), self.digest)

    def _counted(self, progress: Progress | None) -> Iterator[bytes]:
        limit = self.max_size
        chunk_size = READ_CHUNK if limit is None else min(READ_CHUNK, limit + 1)
        try:
            for chunk in self.transport.iter_body(self.response, chunk_size):
                self.read += len(chunk)
                if limit is not None and self.read > limit:
                    self.response.close()
                    raise E.RegistryProtocolError(
                        f"blob {self.digest}: body is over the expected {limit} bytes{self.hint}", url=self.response.url
                    )
                if progress:
                    progress(self.read, self.total or 0)
                yield chunk
        except E.RegistryConnectionError as exc:
            raise E.DigestMismatchError(
                f"blob {self.digest} cut short by the connection ({exc})", expected=self.digest, cut_short=True
            ) from None
        if self.size is not None and self.read != self.size:
            raise E.DigestMismatchError(
                f"blob {self.digest} ended after {self.read} of the {self.size} bytes its descriptor declares",
                expected=self.digest,
            )


def next_page(core: ClientCore, header: str | None, current: str, what: str) -> str | None:
    """The ``rel="next"`` page a ``Link`` header names, refused when it leads to another host or to another
    listing (another repository's tags, say), whose entries would be taken for this one's."""
    url = _next_link(header, current)
    if url is None:
        return None
    if not core.transport.same_origin(url):
        raise E.RegistryProtocolError(
            f"{what}: pagination link points to another host ({urlsplit(url).netloc}); not followed"
        )
    if _listing(url) != _listing(current):
        raise E.RegistryProtocolError(
            f"{what}: pagination link points to another listing ({_listing(url)[:200]}); not followed"
        )
    return url


def _listing(url: str) -> str:
    """The API path of a listing page (from ``/v2/`` on, so a registry served under a path prefix matches
    its own links with or without the prefix), query left out."""
    path = unquote(urlsplit(url).path)
    return path[path.find("/v2/") :] if "/v2/" in path else path


def _next_link(header: str | None, current: str) -> str | None:
    if not header:
        return None
    for part in header.split(","):
        if 'rel="next"' in part or "rel=next" in part:
            start, end = part.find("<"), part.find(">")
            if 0 <= start < end:
                url = join_url(current, part[start + 1 : end].strip())
                if not is_http_url(url):
                    raise E.RegistryProtocolError(f"pagination Link header {header[:120]!r} is not an http(s) URL")
                return url
    return None


def manifest_times(value: object) -> dict[str, ManifestTimes]:
    """Google's ``manifest`` map of a tag list (``{digest: {"tag": [...], "timeUploadedMs": "...",
    "timeCreatedMs": "...", "mediaType": ...}}``), its well-formed entries only: the map is an optional
    extension, so an entry with a malformed digest or time is left out rather than failing the listing."""
    if not isinstance(value, dict):
        return {}
    found: dict[str, ManifestTimes] = {}
    for digest, entry in value.items():
        if not isinstance(digest, str) or not well_formed(digest) or not isinstance(entry, dict):
            continue
        tags = entry.get("tag")
        media_type = entry.get("mediaType")
        found[digest] = {
            "tags": [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else [],
            "uploaded_ms": _milliseconds(entry.get("timeUploadedMs")),
            "created_ms": _milliseconds(entry.get("timeCreatedMs")),
            "media_type": media_type if isinstance(media_type, str) else None,
        }
    return found


def _milliseconds(value: object) -> int | None:
    """A time in milliseconds since the epoch, sent as a string of digits (Google's form) or an integer."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 10**15 else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and 0 < len(value) <= 15:
        return int(value) or None
    return None


def _strings(body: dict[str, Any], key: str, what: str) -> list[str]:
    """The strings of a JSON list field (``null`` counts as empty); anything but a list is refused."""
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise E.RegistryProtocolError(f"{what}: {key!r} is {type(value).__name__}, not a list")
    return [item for item in value if isinstance(item, str)]


def _fetch_manifest(core: ClientCore, repository: str, reference: str, limit: int, what: str) -> tuple[Response, bytes]:
    """GET a manifest with every type accepted (distribution converts to schema1 otherwise); 404 comes back."""
    return core.transport.fetch(
        "GET",
        f"/v2/{repository}/manifests/{reference}",
        limit=limit,
        what=what,
        headers={"Accept": MT.MANIFEST_ACCEPT},
        scopes=pull_scope(repository),
        kind="manifest",
        ok=(404,),
    )
