"""Reads: connect, catalog, tags, manifests, digests and blobs, every byte checked against its digest."""

from __future__ import annotations

import errno
import os
import secrets
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator
from urllib.parse import parse_qs, urlsplit

from . import errors as E
from . import mediatypes as MT
from .auth import RegistryAuth
from .dockerconfig import load_credentials
from .models import Blob, Manifest, check_structure, manifest_digest
from .reference import (Platform, hasher_for, is_digest, parse_platform, validate_digest,
                        validate_reference, validate_repository, validate_tag)
from .transport import (DEFAULT_MAX_RETRY_WAIT, DEFAULT_MIN_STREAM_RATE, DEFAULT_REQUEST_TIMEOUT,
                        check_time_limits)
from .transport import DEFAULT_JSON_LIMIT, Response, Transport, is_http_url, join_url, parse_json

DOCKER_HUB_API = "https://registry-1.docker.io"
_HUB_ALIASES = {"registry.hub.docker.com", "hub.docker.com", "docker.io", "index.docker.io",
                "registry-1.docker.io"}
Progress = Callable[[int, int], None]


def normalize_url(url: str) -> str:
    """Check a registry URL and map Docker Hub's public names to its API host."""
    if not isinstance(url, str) or not url.strip():
        raise E.InvalidReferenceError("registry URL must be a non-empty string")
    url = url.strip()
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise E.InvalidReferenceError(f"registry URL scheme must be http or https, not {parts.scheme!r}")
    if parts.username is not None or parts.password is not None:
        raise E.InvalidReferenceError(
            "credentials inside the registry URL are not supported (RFC 3986 discourages them): "
            "pass user= and password= instead")
    if not parts.hostname:
        raise E.InvalidReferenceError(f"registry URL {url!r} has no host")
    if parts.hostname in _HUB_ALIASES:
        return DOCKER_HUB_API
    path = parts.path.rstrip("/")
    if path.endswith("/v2"):
        path = path[:-3]
    return f"{parts.scheme}://{parts.netloc}{path}"


def pull_scope(repository: str) -> tuple[str, ...]:
    return (f"repository:{repository}:pull",)


def push_scope(repository: str, *mount_from: str) -> tuple[str, ...]:
    return (f"repository:{repository}:pull,push",) + tuple(f"repository:{r}:pull" for r in mount_from)


def delete_scope(repository: str) -> tuple[str, ...]:
    return (f"repository:{repository}:delete,pull",)


CATALOG_SCOPE = ("registry:catalog:*",)
# The most pages one paginated listing (the catalog, one repository's tags) is followed for, so a
# registry whose Link pages never end cannot keep a call running forever: 10,000 pages of the
# registry's usual 100 names are a million repositories.
MAX_PAGES = 10_000


def check_max_pages(max_pages) -> None:
    if not isinstance(max_pages, int) or isinstance(max_pages, bool) or max_pages < 1:
        raise ValueError(f"max_pages must be a positive integer, not {max_pages!r}")


class RegistryReads:
    """Connection setup and every read operation. Thread-safe: one pooled HTTP session shared by all calls."""

    def __init__(self, url: str = "https://registry.hub.docker.com", *, user: str | None = None,
                 password: str | None = None, open_timeout: float = 2, read_timeout: float = 5,
                 verify: bool = True, ca_bundle: str | os.PathLike | None = None,
                 docker_config: bool = True, retries: int = 3, pool_size: int = 32,
                 allow_insecure_auth: bool = False, request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
                 min_stream_rate: float = DEFAULT_MIN_STREAM_RATE, max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT):
        """``request_timeout`` (60 s) bounds the wait for each response and every body read whole; a blob
        body must instead keep up ``min_stream_rate`` bytes/s (1024) over each such period; ``max_retry_wait``
        (60 s) bounds one call's sleeps between retries. See ``Transport``."""
        self.url = normalize_url(url)
        check_time_limits(request_timeout=request_timeout, min_stream_rate=min_stream_rate,
                          max_retry_wait=max_retry_wait)
        if not isinstance(allow_insecure_auth, bool):
            raise ValueError(f"allow_insecure_auth must be True or False, not {allow_insecure_auth!r}")
        explicit_credentials = user is not None
        self._hub = self.url == DOCKER_HUB_API
        if (user is None) != (password is None):
            raise ValueError("give both user= and password=, or neither")
        if user is None and docker_config:
            found = load_credentials(urlsplit(self.url).netloc)
            if found:
                user, password = found
        if ca_bundle is not None:
            if not Path(ca_bundle).is_file():
                raise ValueError(f"ca_bundle {str(ca_bundle)!r} is not a file")
            verify = str(ca_bundle)
        for name, value in (("open_timeout", open_timeout), ("read_timeout", read_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        self.user = user
        self._deletes_ok: set[str] = set()  # repositories where a delete probe answered 404
        self.auth = RegistryAuth(user, password, origin=self.url, allow_insecure=allow_insecure_auth)
        if explicit_credentials:
            self.auth.check_cleartext(self.url)
        self.transport = Transport(self.url, self.auth, open_timeout=open_timeout, read_timeout=read_timeout,
                                   verify=verify, retries=retries, pool_size=pool_size,
                                   request_timeout=request_timeout, min_stream_rate=min_stream_rate,
                                   max_retry_wait=max_retry_wait)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, user={self.user!r})"

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    @property
    def stats(self) -> dict:
        """Requests made by kind, retries and bytes read since this client was created."""
        return self.transport.stats.snapshot()

    @property
    def rate_limit(self):
        """Docker Hub style ``RateLimit-*`` headers as last seen, or None if the registry sends none."""
        return self.transport.rate_limit

    def _repo(self, repository: str) -> str:
        validate_repository(repository)
        if self._hub and "/" not in repository:
            return f"library/{repository}"
        return repository

    # -- connecting -----------------------------------------------------------------------------

    def ping(self) -> None:
        """Check that a v2 registry answers and the credentials are good."""
        response = self.transport.request("GET", "/v2/", kind="ping", ok=(404,))
        response.close()
        if response.status_code == 404:
            raise E.RegistryVersionError(f"{self.url} does not serve the registry v2 API (/v2/ is 404)", status=404)

    # -- catalog and tags -------------------------------------------------------------------------

    def _pages(self, first: str, scopes: tuple[str, ...], kind: str, *, follow: bool = True,
               ok_missing: bool = False, max_pages: int = MAX_PAGES,
               stop: threading.Event | None = None) -> Iterator[tuple[dict, str | None]]:
        """Yield (body, next_url) per page, following ``Link: rel="next"`` as given (opaque tokens),
        refusing links that loop, lead to another host or go past ``max_pages``; a set ``stop``
        ends the listing before the next request."""
        url, seen = self.transport.url(first), set()
        while url:
            if stop is not None and stop.is_set():
                return
            if url in seen:
                raise E.RegistryProtocolError(f"pagination loops: {urlsplit(url).path} was already visited")
            if len(seen) >= max_pages:
                raise E.RegistryProtocolError(
                    f"GET {urlsplit(first).path}: pagination goes on past max_pages={max_pages} pages; "
                    "not followed further (pass a larger max_pages= to read more)")
            seen.add(url)
            what = f"GET {urlsplit(url).path}"
            response, raw = self.transport.fetch("GET", url, limit=DEFAULT_JSON_LIMIT, what=what, scopes=scopes,
                                                 kind=kind, ok=(404,) if ok_missing else ())
            if response.status_code == 404:
                return
            body = parse_json(raw, what, url)
            if not isinstance(body, dict):
                raise E.RegistryProtocolError(f"GET {urlsplit(url).path}: expected a JSON object")
            nxt = _next_link(response.headers.get("Link"), url)
            if nxt and not self.transport.same_origin(nxt):
                raise E.RegistryProtocolError(
                    f"pagination link points to another host ({urlsplit(nxt).netloc}); not followed")
            yield body, nxt
            url = nxt if follow else None

    def catalog(self, page_size: int | None = None, *, max_pages: int = MAX_PAGES,
                stop: threading.Event | None = None) -> Iterator[str]:
        """Every repository name, page by page.

        At most ``max_pages`` pages (default ``MAX_PAGES``, 10,000) are read: a catalog whose pages go
        on raises ``RegistryProtocolError`` naming the limit. A set ``stop`` Event ends the listing
        before its next request."""
        check_max_pages(max_pages)
        first = "/v2/_catalog" + (f"?n={int(page_size)}" if page_size else "")
        pages = self._pages(first, CATALOG_SCOPE, "catalog", max_pages=max_pages, stop=stop)
        return (name for body, _ in pages for name in _strings(body, "repositories", "GET /v2/_catalog"))

    def search(self, pattern: str = "") -> list[str]:
        """Repository names containing ``pattern``, from the whole (paginated) catalog."""
        if not isinstance(pattern, str):
            raise ValueError(f"search pattern must be a string, not {type(pattern).__name__}")
        return [name for name in self.catalog() if pattern in name]

    def tags(self, repo: str, count: int | None = None, last: str = "", with_hashes: bool = False,
             auto_paginate: bool = False, *, max_pages: int = MAX_PAGES, stop: threading.Event | None = None) -> dict:
        """``{"name", "tags"[, "hashes"][, "last"]}``; ``{}`` for an unknown repository or one with no tags."""
        repository = self._repo(repo)
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
            raise ValueError(f"count must be a positive integer, not {count!r}")
        check_max_pages(max_pages)
        if last:
            validate_tag(last)
        query = "&".join(p for p in (f"n={count}" if count else "", f"last={last}" if last else "") if p)
        first = f"/v2/{repository}/tags/list" + (f"?{query}" if query else "")
        name, tags, next_url = repository, [], None
        found = False
        for body, next_url in self._pages(first, pull_scope(repository), "tags", follow=auto_paginate,
                                          ok_missing=True, max_pages=max_pages, stop=stop):
            found = True
            name = body.get("name") if isinstance(body.get("name"), str) and body["name"] else name
            tags.extend(_strings(body, "tags", f"GET /v2/{repository}/tags/list"))
        if not found or not tags:
            return {}
        result: dict = {"name": name, "tags": tags}
        if next_url and not auto_paginate:
            result["last"] = (parse_qs(urlsplit(next_url).query).get("last") or [tags[-1]])[0]
        if with_hashes:
            result["hashes"] = self._hashes(repository, tags)
        return result

    def _hashes(self, repository: str, tags: list[str], workers: int = 16) -> dict[str, str | None]:
        def one(tag: str) -> str | None:
            try:
                return self.digest(repository, tag)
            except E.NotFoundError:
                return None

        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(tags)))) as pool:
            return dict(zip(tags, pool.map(one, tags)))

    # -- manifests ----------------------------------------------------------------------------------

    def manifest(self, repo: str, reference: str = "latest") -> Manifest:
        """The manifest, digest-checked against its bytes; an empty Manifest when not found."""
        repository = self._repo(repo)
        validate_reference(reference)
        what = f"manifest {repository}:{reference}"
        response, raw = self.transport.fetch("GET", f"/v2/{repository}/manifests/{reference}",
                                             limit=MT.MAX_MANIFEST_BYTES, what=what,
                                             headers={"Accept": MT.MANIFEST_ACCEPT},
                                             scopes=pull_scope(repository), kind="manifest", ok=(404,))
        if response.status_code == 404:
            return Manifest(repository=repository, reference=reference)
        return verified_manifest(raw, response.headers, repository, reference)

    def manifest_exists(self, repo: str, reference: str) -> str | None:
        """The digest by HEAD, or None when the manifest does not exist."""
        repository = self._repo(repo)
        validate_reference(reference)
        response = self.transport.request("HEAD", f"/v2/{repository}/manifests/{reference}",
                                          headers={"Accept": MT.MANIFEST_ACCEPT},
                                          scopes=pull_scope(repository), kind="manifest_head", ok=(404,))
        response.close()
        if response.status_code == 404:
            return None
        found = response.headers.get("Docker-Content-Digest") or ""
        # A malformed digest is no answer: digest() then hashes the GET body instead.
        return found if _well_formed(found) else ""

    def digest(self, repo: str, tag: str, platform: str | None = None) -> str:
        """The manifest digest by HEAD (GET and hash when HEAD gives none); ``platform`` picks an index child."""
        repository = self._repo(repo)
        validate_reference(tag)
        wanted = parse_platform(platform) if platform is not None else None
        if wanted is None:
            try:
                found = self.manifest_exists(repository, tag)
            except E.RegistryError as exc:
                if exc.status not in (400, 405, 501):
                    raise
                found = ""
            if found is None:
                raise E.NotFoundError(f"{repository}:{tag} not found", status=404)
            if found:
                return found
        manifest = self.manifest(repository, tag)
        if not manifest:
            raise E.NotFoundError(f"{repository}:{tag} not found", status=404)
        if wanted is None:
            return manifest.digest
        return self._platform_child(manifest, wanted)["digest"]

    def _platform_child(self, manifest: Manifest, wanted: Platform) -> dict:
        if manifest.is_index:
            for child in manifest.children:
                found = Platform.from_descriptor(child.get("platform"))
                if found is not None and wanted.matches(found):
                    return child
            raise E.NotFoundError(f"{manifest.repository}:{manifest.reference} has no {wanted} image "
                                  f"(it has {', '.join(manifest.platforms()) or 'none'})", status=404)
        config = self._platform_config(manifest) if manifest.config else {}
        fields = [config.get(key) for key in ("os", "architecture", "variant")]
        if not all(isinstance(value, str) for value in fields if value is not None):
            raise E.RegistryProtocolError(f"config {manifest.config['digest']} of {manifest.repository}:"
                                          f"{manifest.reference}: os, architecture and variant must be strings")
        found = Platform(fields[0] or "", fields[1] or "", fields[2] or None)
        if not wanted.matches(found):
            raise E.NotFoundError(f"{manifest.repository}:{manifest.reference} is a single {found} image, "
                                  f"not {wanted}", status=404)
        return {"digest": manifest.digest, "mediaType": manifest.media_type, "size": manifest.size}

    def _platform_config(self, manifest: Manifest) -> dict:
        """The config as a JSON object, read no further than its declared size and never past
        MAX_CONFIG_BYTES, so a hostile registry cannot make a platform lookup hold a huge body."""
        descriptor = manifest.config
        where = f"config {descriptor['digest']} of {manifest.repository}:{manifest.reference}"
        declared = descriptor.get("size")
        if declared is not None and declared > MAX_CONFIG_BYTES:
            raise E.RegistryProtocolError(f"{where}: declares {declared} bytes, over the {MAX_CONFIG_BYTES}-byte "
                                          "limit for a config")
        with self.open_blob(manifest.repository, descriptor["digest"], max_size=MAX_CONFIG_BYTES,
                            size=declared) as stream:
            config = parse_json(b"".join(stream.chunks()), where)
        if not isinstance(config, dict):
            raise E.RegistryProtocolError(f"{where}: a {type(config).__name__}, not a JSON object")
        return config

    def manifest_sum(self, manifest: Manifest) -> int:
        """Compressed bytes of the layers; for an index, of every child's layers (NotFoundError names a
        child the registry no longer has)."""
        if not manifest:
            return 0
        if manifest.is_index:
            return sum(self.manifest_sum(self._child_manifest(manifest, child)) for child in manifest.children)
        if manifest.is_schema1:
            return sum(self.blob_size(manifest.repository, layer["digest"]) for layer in manifest.layers)
        return sum(int(layer.get("size") or 0) for layer in manifest.layers)

    def _child_manifest(self, index: Manifest, child: dict) -> Manifest:
        """A child of ``index``, read no further than the size its descriptor declares and checked against
        it; NotFoundError naming the index and the child when the registry no longer has it."""
        repository, digest = index.repository, child["digest"]
        declared = child.get("size")
        limit = MT.MAX_MANIFEST_BYTES if declared is None else min(declared, MT.MAX_MANIFEST_BYTES)
        what = f"manifest {repository}@{digest}"
        response, raw = self.transport.fetch("GET", f"/v2/{repository}/manifests/{digest}", limit=limit,
                                             what=what, headers={"Accept": MT.MANIFEST_ACCEPT},
                                             scopes=pull_scope(repository), kind="manifest", ok=(404,))
        if response.status_code == 404:
            raise E.NotFoundError(f"{repository}:{index.reference} (index {index.digest}) lists child manifest "
                                  f"{digest}, which the registry does not have", status=404)
        found = verified_manifest(raw, response.headers, repository, digest)
        if declared is not None and found.size != declared:
            raise E.RegistryProtocolError(f"{what} is {found.size} bytes, but index {index.digest} declares "
                                          f"{declared}")
        return found

    # -- blobs ----------------------------------------------------------------------------------------

    def blob_size(self, repo: str, digest: str) -> int:
        repository = self._repo(repo)
        return int(self._head_blob(repository, digest).headers.get("Content-Length") or 0)

    def blob_exists(self, repository: str, digest: str) -> bool:
        return self._head_blob(self._repo(repository), digest, ok=(404,)).status_code != 404

    def _head_blob(self, repository: str, digest: str, ok: tuple[int, ...] = ()) -> Response:
        validate_digest(digest)
        response = self.transport.request("HEAD", f"/v2/{repository}/blobs/{digest}",
                                          scopes=pull_scope(repository), kind="blob_head", ok=ok)
        response.close()
        return response

    def blob(self, repo: str, digest: str, path: str | os.PathLike | None = None, *,
             progress: Progress | None = None, max_size: int | None = None) -> Blob:
        """Fetch a blob, sha-checked; with ``path`` streamed to a temporary file renamed on success.

        ``max_size`` refuses (RegistryProtocolError) a body longer than that, e.g. the size a manifest
        declares, so a hostile server cannot make a small read fill memory or disk. Without ``path`` the
        body is held in memory, so ``max_size`` defaults to MAX_MEMORY_BLOB (64 MiB)."""
        repository = self._repo(repo)
        validate_digest(digest)
        _check_size("max_size", max_size)
        target = Path(path) if path is not None else None
        hint = ""
        if target is None and max_size is None:
            max_size, hint = MAX_MEMORY_BLOB, "; pass path= to stream it to a file, or a larger max_size="
        with self.open_blob(repository, digest, max_size=max_size, hint=hint) as stream:
            if target is None:
                body = b"".join(stream.chunks(progress))
                return Blob(stream.headers, body=body, digest=digest, size=len(body))
            write_atomically(target, stream.chunks(progress))
            return Blob(stream.headers, path=target, digest=digest, size=stream.read)

    def open_blob(self, repository: str, digest: str, *, max_size: int | None = None, size: int | None = None,
                  hint: str = "") -> BlobStream:
        """A blob body as a verified stream. ``size`` is what a descriptor declares: the body must be exactly
        that long and is never read past it. ``max_size`` only bounds it."""
        _check_size("max_size", max_size)
        _check_size("size", size)
        response = self.transport.request("GET", f"/v2/{repository}/blobs/{digest}",
                                          scopes=pull_scope(repository), kind="blob", stream=True)
        return BlobStream(self.transport, response, digest, max_size, size=size, hint=hint)


# A platform lookup reads the config into memory: configs are a few KiB, so this is generous.
MAX_CONFIG_BYTES = 16 * 1024 * 1024
# blob() without a path holds the body in memory; beyond this it asks for a path (or max_size=).
MAX_MEMORY_BLOB = DEFAULT_JSON_LIMIT
READ_CHUNK = 1 << 20


def _check_size(name: str, value) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ValueError(f"{name} must be a non-negative integer or None, not {value!r}")


class BlobStream:
    """A blob body as verified chunks: the last chunk is released only after the digest checks out, and
    no byte past ``max_size`` or the declared ``size`` is asked for (beyond one read of slack)."""

    def __init__(self, transport: Transport, response: Response, digest: str,
                 max_size: int | None = None, *, size: int | None = None, hint: str = ""):
        self.transport = transport
        self.response = response
        self.digest = digest
        limits = [limit for limit in (max_size, size) if limit is not None]
        self.max_size = min(limits) if limits else None
        self.size = size
        self.hint = hint
        self.headers = dict(response.headers)
        length = response.headers.get("Content-Length")
        self.total = int(length) if length and length.isdigit() else None
        self.read = 0
        if self.max_size is not None and self.total is not None and self.total > self.max_size:
            response.close()
            raise E.RegistryProtocolError(f"blob {digest}: body of {self.total} bytes is over the expected "
                                          f"{self.max_size}{hint}", url=response.url)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
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
                    raise E.RegistryProtocolError(f"blob {self.digest}: body is over the expected {limit} "
                                                  f"bytes{self.hint}", url=self.response.url)
                if progress:
                    progress(self.read, self.total or 0)
                yield chunk
        except E.RegistryConnectionError as exc:
            raise E.DigestMismatchError(
                f"blob {self.digest} cut short after {self.read} bytes ({exc})", expected=self.digest) from None
        if self.size is not None and self.read != self.size:
            raise E.DigestMismatchError(f"blob {self.digest} ended after {self.read} of the {self.size} bytes "
                                        "its descriptor declares", expected=self.digest)


def verify_chunks(chunks: Iterable[bytes], digest: str) -> Iterator[bytes]:
    """Pass chunks through, holding the last one back until the whole stream hashes to ``digest``,
    so a consumer that writes or uploads them never completes with bad content."""
    hasher = hasher_for(digest)
    pending = None
    for chunk in chunks:
        if pending is not None:
            yield pending
        hasher.update(chunk)
        pending = chunk
    actual = f"{digest.split(':')[0]}:{hasher.hexdigest()}"
    if actual != digest:
        raise E.DigestMismatchError(f"content hashes to {actual}, not {digest}", expected=digest, actual=actual)
    if pending is not None:
        yield pending


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC


def link_refused(path: str | os.PathLike) -> OSError:
    return OSError(errno.ELOOP, "refusing to follow a symbolic link", str(path))


def open_directory(root: str | os.PathLike, parts: Iterable[str], *, create: bool = False) -> int:
    """A descriptor of ``root``/``parts`` in which every part is a real directory, never a symbolic link
    (created when missing with ``create``). ``root`` itself is the caller's choice and may be a link."""
    path = Path(root)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, _DIRECTORY)
    try:
        for part in parts:
            if part in ("", ".", "..") or "/" in part:
                raise ValueError(f"{part!r} is not a directory name")
            path = path / part
            if create:
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                inner = os.open(part, _DIRECTORY | _NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                if stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode):
                    raise link_refused(path) from None
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(path)) from None
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_atomically(target: Path, chunks: Iterable[bytes], *, root: str | os.PathLike | None = None,
                     mode: int = 0o666) -> int:
    """Write chunks to a new temporary file beside ``target`` and rename it into place; on any error,
    remove the temporary file and leave ``target`` as it was.

    The temporary file is created exclusively (O_EXCL, O_NOFOLLOW) under an unpredictable name, so a
    planted file or link is never written through, and the rename replaces a link at ``target``, not
    the file it points to. The file gets ``mode`` less the umask, as ``open()`` gives. With ``root``,
    every directory from ``root`` down to ``target`` must be a real directory, not a symbolic link."""
    target = Path(target)
    if root is None:
        target.parent.mkdir(parents=True, exist_ok=True)
        dir_fd = os.open(target.parent, _DIRECTORY)
    else:
        dir_fd = open_directory(root, target.parent.relative_to(root).parts, create=True)
    try:
        tmp = f".{target.name}.{secrets.token_hex(8)}.part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode, dir_fd=dir_fd)
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    written += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            raise
        return written
    finally:
        os.close(dir_fd)


def verified_manifest(raw: bytes, headers, repository: str, reference: str) -> Manifest:
    """Parse a manifest and refuse it unless its bytes match every digest claimed for it."""
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip()
    manifest = Manifest.parse(raw, headers=headers, repository=repository, reference=reference)
    body_type = manifest.get("mediaType")
    if body_type and content_type in MT.MANIFEST_TYPES and body_type != content_type:
        raise E.RegistryProtocolError(
            f"manifest {repository}:{reference}: Content-Type {content_type} disagrees with its mediaType {body_type}")
    if body_type is not None and not isinstance(body_type, str):
        raise E.RegistryProtocolError(f"manifest {repository}:{reference}: mediaType {body_type!r} is not a string")
    media_type = body_type or (content_type if content_type in MT.MANIFEST_TYPES else None)
    if media_type is None:
        if manifest.get("schemaVersion") == 1:
            media_type = MT.DOCKER_SCHEMA1_SIGNED if "signatures" in manifest else MT.DOCKER_SCHEMA1
        elif "manifests" in manifest:
            media_type = MT.OCI_INDEX
        elif "layers" in manifest:
            media_type = MT.OCI_MANIFEST
    claimed = [d for d in (reference if is_digest(reference) else None,
                           headers.get("Docker-Content-Digest")) if d]
    algorithm = claimed[0].split(":")[0] if claimed else "sha256"
    if algorithm not in ("sha256", "sha512"):
        raise E.RegistryProtocolError(f"manifest {repository}:{reference}: unsupported digest {claimed[0]!r}")
    actual = manifest_digest(raw, media_type, algorithm)
    for digest in claimed:
        if digest != actual:
            raise E.DigestMismatchError(
                f"manifest {repository}:{reference} hashes to {actual}, but {digest} was claimed",
                expected=digest, actual=actual)
    manifest.media_type = media_type
    manifest.digest = actual
    check_structure(manifest)
    return manifest


def _next_link(header: str | None, current: str) -> str | None:
    if not header:
        return None
    for part in header.split(","):
        if 'rel="next"' in part or "rel=next" in part:
            start, end = part.find("<"), part.find(">")
            if 0 <= start < end:
                url = join_url(current, part[start + 1:end].strip())
                if not is_http_url(url):
                    raise E.RegistryProtocolError(f"pagination Link header {header[:120]!r} is not an http(s) URL")
                return url
    return None


def _strings(body: dict, key: str, what: str) -> list[str]:
    """The strings of a JSON list field (``null`` counts as empty); anything but a list is refused."""
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise E.RegistryProtocolError(f"{what}: {key!r} is {type(value).__name__}, not a list")
    return [item for item in value if isinstance(item, str)]


def _well_formed(digest: str) -> bool:
    try:
        validate_digest(digest)
    except E.InvalidReferenceError:
        return False
    return True
