"""HTTP transport: one connection pool, timeouts, retries, redirects, and the single place
where urllib3 failures and HTTP statuses become regframe errors.

urllib3 directly rather than requests: a crawl is thousands of small requests, and requests' own
bookkeeping (cookies, hooks, environment merging) doubles the client CPU per request."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Callable, Iterable, Iterator
from urllib.parse import urljoin, urlsplit

import urllib.request

import urllib3
from urllib3.exceptions import (ConnectTimeoutError, DecodeError, HTTPError, LocationParseError,
                                NewConnectionError, ProtocolError, ReadTimeoutError, SSLError)

from . import errors as E

log = logging.getLogger("regframe.client")

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_JSON_LIMIT = 64 * 1024 * 1024


@dataclass
class Request:
    """One HTTP request as the auth flow sees it; ``scopes`` are the token scopes it needs."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] | None = None
    scopes: tuple[str, ...] = ()
    kind: str = "other"
    stream: bool = False
    authenticated: bool = True


class RequestStats:
    """Thread-safe counters of what a client did: requests by kind, retries, bytes read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.bytes_read = 0

    def count(self, kind: str) -> None:
        with self._lock:
            self.requests[kind] += 1

    def retried(self, reason: str) -> None:
        with self._lock:
            self.retries[reason] += 1

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes_read += n

    def snapshot(self) -> dict:
        with self._lock:
            return {"requests": dict(self.requests), "total_requests": sum(self.requests.values()),
                    "retries": dict(self.retries), "total_retries": sum(self.retries.values()),
                    "bytes_read": self.bytes_read}


@dataclass(frozen=True)
class RateLimit:
    """Docker Hub style rate-limit headers, as last seen."""

    limit: int | None
    remaining: int | None
    window_seconds: int | None


class Response:
    """An HTTP answer: status, case-insensitive headers, and a body read at most once."""

    __slots__ = ("raw", "status_code", "headers", "url", "method", "_content")

    def __init__(self, raw: urllib3.BaseHTTPResponse, url: str, method: str):
        self.raw = raw
        self.status_code = raw.status
        self.headers = raw.headers
        self.url = url
        self.method = method
        self._content: bytes | None = None

    @property
    def content(self) -> bytes:
        if self._content is None:
            self._content = self.raw.read(decode_content=True)
        return self._content

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        yield from self.raw.stream(chunk_size, decode_content=True)

    def close(self) -> None:
        """Hand the connection back to the pool when the rest of the body is small, else close it."""
        raw = self.raw
        try:
            length = raw.headers.get("Content-Length")
            if self.method == "HEAD" or self._content is not None or (
                    length is not None and length.isdigit() and int(length) <= 65536):
                raw.drain_conn()
                raw.release_conn()
            else:
                raw.close()
        except (HTTPError, OSError):
            raw.close()


def is_http_url(url: str) -> bool:
    """Whether a URL a server gave (Location, Link, token realm) is http(s) with a host and a valid port;
    urllib raises ValueError on some malformed ones, which must not escape as a crash."""
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError when out of range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def join_url(base: str, reference: str) -> str:
    """``urljoin``, with "" for a reference it cannot parse (``is_http_url`` then refuses it)."""
    try:
        return urljoin(base, reference)
    except ValueError:
        return ""


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, f"{(parts.hostname or '').lower()}:{port}"


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def oci_error(response: Response) -> tuple[str | None, str | None]:
    """The first ``{"errors": [{code, message}]}`` entry of an error body, if any."""
    if response.method == "HEAD":
        return None, None
    try:
        text = response.content[:65536]
        body = json.loads(text)
        first = body["errors"][0]
        return str(first.get("code") or "") or None, str(first.get("message") or "") or None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError, HTTPError, OSError):
        return None, None


def _describe(method: str, url: str) -> str:
    parts = urlsplit(url)
    return f"{method} {parts.scheme}://{parts.netloc}{parts.path}"


def error_for_response(response: Response, what: str | None = None) -> E.RegistryError:
    """Map an HTTP error status to the regframe exception for it."""
    status = response.status_code
    code, message = oci_error(response)
    where = what or _describe(response.method, response.url)
    detail = f": {code} {message}" if code else ""
    kw = dict(status=status, code=code, registry_message=message, url=response.url)
    if status == 401:
        return E.RegistryAuthenticationError(f"{where}: authentication required or refused (401){detail}", **kw)
    if status == 403:
        return E.RegistryAuthorizationError(f"{where}: access denied (403){detail}", **kw)
    if status == 404:
        return E.NotFoundError(f"{where}: not found (404){detail}", **kw)
    if status == 405 and response.method == "DELETE":
        return E.DeleteDisabledError(
            f"{where}: the registry has deletion disabled (405); enable storage.delete in its config{detail}", **kw)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return E.RateLimitedError(f"{where}: rate limited (429), retry after {retry_after} s{detail}",
                                  retry_after=retry_after, **kw)
    return E.RegistryError(f"{where}: HTTP {status}{detail}", **kw)


class Transport:
    """Sends requests through an auth flow, retries what is safe to retry, and maps failures."""

    def __init__(self, base_url: str, auth, *, open_timeout: float = 2, read_timeout: float = 5,
                 verify: bool | str = True, retries: int = 3, backoff: float = 0.25,
                 max_retry_after: float = 60.0, pool_size: int = 32,
                 sleep: Callable[[float], None] = time.sleep):
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeout = (open_timeout, read_timeout)
        self._timeout = urllib3.Timeout(connect=open_timeout, read=read_timeout)
        self.verify = verify
        self.retries = retries
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self.stats = RequestStats()
        self.rate_limit: RateLimit | None = None
        self._sleep = sleep
        self._origin = origin(self.base_url)
        self.pool = self._new_pool(pool_size)
        # Requests to the registry itself skip the pool manager's per-request URL and key work.
        self._home = self.pool.connection_from_url(self.base_url)
        parts = urlsplit(self.base_url)
        self._home_prefix = f"{parts.scheme}://{parts.netloc}"
        # Cross-host redirects (blob storage) go through a pool that has never seen our credentials.
        self._foreign = self._new_pool(pool_size)

    def _new_pool(self, pool_size: int) -> urllib3.PoolManager:
        """Proxies from the environment (honouring no_proxy), and the CA the user gave, nothing else:
        unlike requests, REQUESTS_CA_BUNDLE cannot silently replace a ``ca_bundle``."""
        if self.verify is False:
            tls = {"cert_reqs": "CERT_NONE"}
        elif isinstance(self.verify, str):
            tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": self.verify}
        else:
            tls = {"cert_reqs": "CERT_REQUIRED"}
        options = dict(num_pools=8, maxsize=pool_size, block=False, retries=False,
                       headers={"User-Agent": "regframe/0.1"}, **tls)
        host = urlsplit(self.base_url).hostname or ""
        proxy = None if urllib.request.proxy_bypass(host) else urllib.request.getproxies().get(
            urlsplit(self.base_url).scheme)
        if proxy:
            return urllib3.ProxyManager(proxy, **options)
        return urllib3.PoolManager(**options)

    def close(self) -> None:
        self.pool.clear()
        self._foreign.clear()

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.base_url + path_or_url

    def same_origin(self, url: str) -> bool:
        return origin(url) == self._origin

    # -- sending ---------------------------------------------------------------------------

    def request(self, method: str, path_or_url: str, *, headers: dict | None = None,
                body: bytes | None = None, scopes: tuple[str, ...] = (), kind: str = "other",
                stream: bool = False, ok: Iterable[int] = (), retry: bool | None = None,
                follow_redirects: bool = True) -> Response:
        """Send one logical request and return a 2xx response (or one whose status is in ``ok``).

        Retries idempotent requests (or any with ``retry=True``) on resets and 502/503/504: the
        server may have acted on a request whose answer was lost. A 429 says it did nothing, so it
        is retried (honouring Retry-After) whatever the method.
        """
        req = Request(method, self.url(path_or_url), dict(headers or {}), body, scopes, kind, stream)
        ok = frozenset(ok)
        retry = method in IDEMPOTENT if retry is None else retry
        attempt = 0
        while True:
            try:
                response = self._send_authenticated(req)
                if response.status_code in REDIRECT_STATUSES and follow_redirects:
                    response = self._follow(response, req)
            except E.RegistryError:
                raise
            except (HTTPError, OSError) as exc:
                error = self._map_exception(exc, req)
                if retry and attempt < self.retries and isinstance(error, E.RegistryConnectionError):
                    attempt += 1
                    self.stats.retried("connection")
                    log.debug("retrying %s after %s", _describe(method, req.url), type(exc).__name__)
                    self._sleep(self._backoff(attempt))
                    continue
                raise error from None
            status = response.status_code
            if status < 300 or status in ok:
                return response
            if (retry or status == 429) and status in RETRY_STATUSES and attempt < self.retries:
                delay = self._backoff(attempt + 1)
                if status == 429:
                    asked = parse_retry_after(response.headers.get("Retry-After"))
                    if asked is not None and asked > self.max_retry_after:
                        raise error_for_response(response)
                    delay = max(delay, asked or 0.0)
                response.close()
                attempt += 1
                self.stats.retried(str(status))
                log.debug("retrying %s after HTTP %s in %.2f s", _describe(method, req.url), status, delay)
                self._sleep(delay)
                continue
            raise error_for_response(response)

    def _backoff(self, attempt: int) -> float:
        return min(8.0, self.backoff * (2 ** (attempt - 1))) * (0.5 + random.random() / 2)

    def _send_authenticated(self, req: Request) -> Response:
        """Drive the auth flow: it yields requests (the original, token requests) and receives responses."""
        flow = self.auth.auth_flow(req)
        try:
            outgoing = next(flow)
            while True:
                response = self._send(outgoing, self.pool)
                try:
                    outgoing = flow.send(response)
                except StopIteration:
                    return response
                response.close()
        finally:
            flow.close()

    def _send(self, req: Request, pool: urllib3.PoolManager) -> Response:
        self.stats.count(req.kind)
        target = req.url
        if pool is self.pool and target.startswith(self._home_prefix) and \
                target[len(self._home_prefix):len(self._home_prefix) + 1] == "/" and self._home.proxy is None:
            pool, target = self._home, target[len(self._home_prefix):]
        try:
            raw = pool.urlopen(req.method, target, body=req.body, headers=req.headers, redirect=False,
                               retries=False, timeout=self._timeout, preload_content=False)
        except LocationParseError as exc:
            raise E.RegistryProtocolError(f"{_describe(req.method, req.url)}: unusable URL ({exc})",
                                          url=req.url) from None
        response = Response(raw, req.url, req.method)
        self._note_rate_limit(response)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s -> %s", _describe(req.method, req.url), response.status_code)
        return response

    def _follow(self, response: Response, req: Request, hops: int = 5) -> Response:
        """Follow redirects by hand so credentials never reach another host."""
        for _ in range(hops):
            location = response.headers.get("Location")
            if not location:
                return response
            response.close()
            target = join_url(response.url, location)
            if not is_http_url(target):
                raise E.RegistryProtocolError(
                    f"{_describe(req.method, req.url)}: redirect to {location[:120]!r}, which is not an http(s) URL")
            method = "GET" if response.status_code == 303 else req.method
            if self.same_origin(target):
                response = self._send_authenticated(
                    Request(method, target, dict(req.headers), req.body, req.scopes, req.kind, req.stream))
            else:
                headers = {k: v for k, v in req.headers.items() if k.lower() not in ("authorization", "cookie")}
                response = self._send(Request(method, target, headers, None, (), req.kind, req.stream,
                                              authenticated=False), self._foreign)
            if response.status_code not in REDIRECT_STATUSES:
                return response
        raise E.RegistryProtocolError(f"{_describe(req.method, req.url)}: more than {hops} redirects")

    def _note_rate_limit(self, response: Response) -> None:
        headers = response.headers
        limit = headers.get("RateLimit-Limit")
        if limit is None:
            return

        def first_int(value: str | None) -> int | None:
            try:
                return int(value.split(";")[0].strip()) if value else None
            except ValueError:
                return None

        window = None
        if ";w=" in limit:
            window = first_int(limit.split(";w=", 1)[1])
        self.rate_limit = RateLimit(first_int(limit), first_int(headers.get("RateLimit-Remaining")), window)

    def _map_exception(self, exc: BaseException, req: Request) -> E.RegistryError:
        where = _describe(req.method, req.url)
        connect, read = self.timeout
        if isinstance(exc, SSLError):
            return E.RegistrySSLError(f"{where}: TLS certificate cannot be validated ({_root(exc)}); "
                                      "pass ca_bundle= or verify=False", url=req.url)
        if isinstance(exc, NewConnectionError):
            return E.RegistryUnknownError(f"{where}: no registry answers there ({_root(exc)})", url=req.url)
        if isinstance(exc, ConnectTimeoutError):
            return E.RegistryTimeoutError(f"{where}: could not connect within open_timeout={connect} s",
                                          url=req.url)
        if isinstance(exc, ReadTimeoutError):
            return E.RegistryTimeoutError(f"{where}: no data within read_timeout={read} s", url=req.url)
        if isinstance(exc, (ProtocolError, DecodeError, OSError)):
            return E.RegistryConnectionError(f"{where}: connection failed or body cut short ({_root(exc)})",
                                             url=req.url)
        if isinstance(exc, LocationParseError):
            return E.RegistryUnknownError(f"{where}: invalid URL", url=req.url)
        return E.RegistryError(f"{where}: {type(exc).__name__}: {_root(exc)}", url=req.url)

    # -- bodies --------------------------------------------------------------------------------

    def read_body(self, response: Response, limit: int, what: str) -> bytes:
        """Read a whole body, refusing (without reading it all) one larger than ``limit``."""
        announced = response.headers.get("Content-Length")
        if announced and announced.isdigit() and int(announced) > limit:
            response.close()
            raise E.RegistryProtocolError(
                f"{what}: body of {int(announced)} bytes is over the {limit}-byte limit", url=response.url)
        chunks, total = [], 0
        try:
            for chunk in response.iter_content(65536):
                total += len(chunk)
                if total > limit:
                    response.close()
                    raise E.RegistryProtocolError(f"{what}: body is over the {limit}-byte limit",
                                                  url=response.url)
                chunks.append(chunk)
        except (HTTPError, OSError) as exc:
            raise self._map_exception(exc, Request("GET", response.url)) from None
        finally:
            self.stats.add_bytes(total)
        response.close()
        return b"".join(chunks)

    def fetch(self, method: str, path_or_url: str, *, limit: int, what: str,
              **options) -> tuple[Response, bytes]:
        """``request`` and ``read_body`` in one; an idempotent request whose body is cut short is sent
        again (up to ``retries`` times). A status the caller allowed in ``ok`` comes back with no body."""
        attempt = 0
        while True:
            response = self.request(method, path_or_url, **options)
            if response.status_code >= 300:
                response.close()
                return response, b""
            try:
                return response, self.read_body(response, limit, what)
            except E.RegistryConnectionError:
                if method not in IDEMPOTENT or attempt >= self.retries:
                    raise
                attempt += 1
                self.stats.retried("body")
                log.debug("retrying %s after its body was cut short", what)
                self._sleep(self._backoff(attempt))

    def iter_body(self, response: Response, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream a body; a connection cut mid-way raises RegistryConnectionError."""
        try:
            for chunk in response.iter_content(chunk_size):
                self.stats.add_bytes(len(chunk))
                yield chunk
        except (HTTPError, OSError) as exc:
            raise self._map_exception(exc, Request("GET", response.url)) from None


def read_raw(response: Response, limit: int, what: str) -> bytes:
    """Up to ``limit + 1`` bytes of a small body (one more tells it is too long); a cut is mapped here
    like every other transport failure."""
    try:
        return response.raw.read(limit + 1, decode_content=True)
    except (HTTPError, OSError) as exc:
        raise E.RegistryConnectionError(f"{what}: response body cut short ({exc})", url=response.url) from None


def parse_json(raw: bytes, what: str, url: str | None = None):
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise E.RegistryProtocolError(f"{what}: body is not valid JSON ({exc})", url=url) from None


def _root(exc: BaseException) -> str:
    """The innermost cause's text, which is what a user can act on."""
    seen = set()
    while True:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None and exc.args and isinstance(exc.args[0], BaseException):
            nxt = exc.args[0]
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        exc = nxt
    reason = getattr(exc, "reason", None)
    text = str(reason or exc)
    return text[:200]
