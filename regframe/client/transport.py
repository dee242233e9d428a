"""HTTP transport: one pooled session, timeouts, retries, redirects, and the single place
where ``requests`` failures and HTTP statuses become regframe errors."""

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

import requests
import urllib3
from requests.adapters import HTTPAdapter

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


def oci_error(response: requests.Response) -> tuple[str | None, str | None]:
    """The first ``{"errors": [{code, message}]}`` entry of an error body, if any."""
    if response.request is not None and response.request.method == "HEAD":
        return None, None
    try:
        text = response.content[:65536]
        body = json.loads(text)
        first = body["errors"][0]
        return str(first.get("code") or "") or None, str(first.get("message") or "") or None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError,
            requests.RequestException, urllib3.exceptions.HTTPError):
        return None, None


def _describe(method: str, url: str) -> str:
    parts = urlsplit(url)
    return f"{method} {parts.scheme}://{parts.netloc}{parts.path}"


def error_for_response(response: requests.Response, what: str | None = None) -> E.RegistryError:
    """Map an HTTP error status to the regframe exception for it."""
    status = response.status_code
    code, message = oci_error(response)
    req = response.request
    where = what or _describe(req.method if req else "?", response.url)
    detail = f": {code} {message}" if code else ""
    kw = dict(status=status, code=code, registry_message=message, url=response.url)
    if status == 401:
        return E.RegistryAuthenticationError(f"{where}: authentication required or refused (401){detail}", **kw)
    if status == 403:
        return E.RegistryAuthorizationError(f"{where}: access denied (403){detail}", **kw)
    if status == 404:
        return E.NotFoundError(f"{where}: not found (404){detail}", **kw)
    if status == 405 and req is not None and req.method == "DELETE":
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
        self.verify = verify
        self.retries = retries
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self.stats = RequestStats()
        self.rate_limit: RateLimit | None = None
        self._sleep = sleep
        self._origin = origin(self.base_url)
        self.session = self._new_session(pool_size)
        # Cross-host redirects (blob storage) go through a session that has never seen our credentials.
        self._foreign = self._new_session(pool_size)

    def _new_session(self, pool_size: int) -> requests.Session:
        session = requests.Session()
        # trust_env would let REQUESTS_CA_BUNDLE override a CA the user gave and read ~/.netrc.
        session.trust_env = False
        session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        session.headers["User-Agent"] = "regframe/0.1"
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def close(self) -> None:
        self.session.close()
        self._foreign.close()

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
                follow_redirects: bool = True) -> requests.Response:
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
            except requests.RequestException as exc:
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

    def _send_authenticated(self, req: Request) -> requests.Response:
        """Drive the auth flow: it yields requests (the original, token requests) and receives responses."""
        flow = self.auth.auth_flow(req)
        try:
            outgoing = next(flow)
            while True:
                response = self._send(outgoing, self.session)
                try:
                    outgoing = flow.send(response)
                except StopIteration:
                    return response
                response.close()
        finally:
            flow.close()

    def _send(self, req: Request, session: requests.Session) -> requests.Response:
        self.stats.count(req.kind)
        try:
            response = session.request(req.method, req.url, headers=req.headers, data=req.body,
                                       timeout=self.timeout, verify=self.verify, stream=True,
                                       allow_redirects=False)
        except requests.RequestException:
            raise
        except ValueError as exc:  # requests parses a redirect's Location even when told not to follow it
            raise E.RegistryProtocolError(f"{_describe(req.method, req.url)}: unusable answer ({exc})",
                                          url=req.url) from None
        self._note_rate_limit(response)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s -> %s", _describe(req.method, req.url), response.status_code)
        return response

    def _follow(self, response: requests.Response, req: Request, hops: int = 5) -> requests.Response:
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
                self._foreign.cookies.clear()
                response = self._send(Request(method, target, headers, None, (), req.kind, req.stream,
                                              authenticated=False), self._foreign)
            if response.status_code not in REDIRECT_STATUSES:
                return response
        raise E.RegistryProtocolError(f"{_describe(req.method, req.url)}: more than {hops} redirects")

    def _note_rate_limit(self, response: requests.Response) -> None:
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

    def _map_exception(self, exc: requests.RequestException, req: Request) -> E.RegistryError:
        where = _describe(req.method, req.url)
        connect, read = self.timeout
        if isinstance(exc, requests.exceptions.SSLError):
            return E.RegistrySSLError(f"{where}: TLS certificate cannot be validated ({_root(exc)}); "
                                      "pass ca_bundle= or verify=False", url=req.url)
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return E.RegistryTimeoutError(f"{where}: could not connect within open_timeout={connect} s",
                                          url=req.url)
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return E.RegistryTimeoutError(f"{where}: no data within read_timeout={read} s", url=req.url)
        if isinstance(exc, requests.exceptions.ConnectionError):
            if _is_refused(exc):
                return E.RegistryUnknownError(f"{where}: no registry answers there ({_root(exc)})", url=req.url)
            return E.RegistryConnectionError(f"{where}: connection failed ({_root(exc)})", url=req.url)
        if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
            return E.RegistryConnectionError(f"{where}: response body cut short ({_root(exc)})", url=req.url)
        if isinstance(exc, requests.exceptions.InvalidURL):
            return E.RegistryUnknownError(f"{where}: invalid URL", url=req.url)
        return E.RegistryError(f"{where}: {type(exc).__name__}", url=req.url)

    # -- bodies --------------------------------------------------------------------------------

    def read_body(self, response: requests.Response, limit: int, what: str) -> bytes:
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
        except requests.RequestException as exc:
            raise self._map_exception(exc, Request("GET", response.url)) from None
        finally:
            self.stats.add_bytes(total)
        return b"".join(chunks)

    def fetch(self, method: str, path_or_url: str, *, limit: int, what: str,
              **options) -> tuple[requests.Response, bytes]:
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

    def iter_body(self, response: requests.Response, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream a body; a connection cut mid-way raises RegistryConnectionError."""
        try:
            for chunk in response.iter_content(chunk_size):
                self.stats.add_bytes(len(chunk))
                yield chunk
        except requests.RequestException as exc:
            raise self._map_exception(exc, Request("GET", response.url)) from None
        except urllib3.exceptions.HTTPError as exc:
            raise E.RegistryConnectionError(f"GET {response.url}: body cut short ({exc})") from None


def read_raw(response: requests.Response, limit: int, what: str) -> bytes:
    """Up to ``limit + 1`` bytes of a small body (one more tells it is too long); a cut is mapped here
    like every other transport failure."""
    try:
        return response.raw.read(limit + 1, decode_content=True)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
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


def _is_refused(exc: BaseException) -> bool:
    text = repr(exc)
    return ("Connection refused" in text or "Name or service not known" in text
            or "nodename nor servname" in text or "Failed to resolve" in text
            or "No route to host" in text)
