"""HTTP transport: requests through the auth flow, timeouts, retries, redirects, and the single place
where connection failures and HTTP statuses become regframe errors.

A crawl is thousands of small requests, and on a registry next door the client's CPU per request
bounds it: requests to the registry's own origin go over lean keep-alive connections
(``connections.py``), everything else (redirects to other hosts, any request through a proxy) over
urllib3, never requests, whose bookkeeping (cookies, hooks, environment merging) doubles the cost."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import ssl
import threading
import time
import urllib.request
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypedDict, Unpack
from urllib.parse import urljoin, urlsplit

import urllib3
import urllib3.connection
from urllib3 import HTTPHeaderDict
from urllib3.exceptions import (
    ConnectTimeoutError,
    DecodeError,
    HTTPError,
    InsecureRequestWarning,
    LocationParseError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util.ssl_match_hostname import CertificateError as _HostnameError

from . import errors as E
from .budget import Budget, sending
from .connections import (
    ConnectFailed,
    Connections,
    ConnectTimedOut,
    DirectResponse,
    RegistryResponse,
    StaleConnection,
    tls_context,
)
from .pacing import HOPELESS_ROUNDS, Pacer

if TYPE_CHECKING:
    from urllib3._base_connection import BaseHTTPConnection

    from .auth import Auth

log = logging.getLogger("regframe.client")


class _WithoutQueries(logging.Filter):
    """urllib3 logs each request's target at DEBUG, query and all; for blob storage that query is a
    presigned URL's signature, a credential for the blob. Its records of regframe's own requests (those
    sent with a ``Budget``, marked per thread) have every query cut; other users of urllib3 keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(sending, "budget", None) is not None and isinstance(record.args, tuple):
            record.args = tuple(_without_query(arg) for arg in record.args)
        return True


def _without_query(value: object) -> object:
    if isinstance(value, str) and "?" in value and value.startswith(("/", "http:", "https:")):
        return value.split("?", 1)[0] + "?…"
    return value


logging.getLogger("urllib3.connectionpool").addFilter(_WithoutQueries())

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# Requests sent again when their answer does not come within read_timeout: they only read, so a second one
# racing a first the registry is still working on changes nothing (a PUT or DELETE might act twice).
READS = frozenset({"GET", "HEAD"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Answers that say the registry is overloaded: adaptive concurrency halves on them.
CONGESTION_STATUSES = frozenset({429, 503})
HOPELESS = (
    f"; not retried: the registry refused every request of the last {HOPELESS_ROUNDS} rounds, each sent after "
    "the pause the one before asked for, and served nothing in between"
)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_JSON_LIMIT = 64 * 1024 * 1024
# Error bodies are read for their OCI code and message only, decoded, up to this many bytes.
ERROR_BODY_LIMIT = 64 * 1024
# The rest of a body is read to reuse the connection only when this many bytes or fewer are left.
DRAIN_LIMIT = 64 * 1024
DEFAULT_REQUEST_TIMEOUT = 60.0
DEFAULT_MIN_STREAM_RATE = 1024.0
DEFAULT_MAX_RETRY_WAIT = 60.0
USER_AGENT = "regframe/0.1"


@dataclass
class Request:
    """One HTTP request as the auth flow sees it; ``scopes`` are the token scopes it needs."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    scopes: tuple[str, ...] = ()
    kind: str = "other"
    authenticated: bool = True


class StatsSnapshot(TypedDict):
    requests: dict[str, int]
    total_requests: int
    retries: dict[str, int]
    total_retries: int
    bytes_read: int


class RequestStats:
    """Thread-safe counters of what a client did: requests by kind, retries, bytes read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.bytes_read = 0
        self.congestion = 0
        # Time from sending a request to its answer's head: how many, their sum, the shortest.
        self.answered = 0
        self.waited = 0.0
        self.quickest = float("inf")

    def congested(self) -> None:
        """A sign the registry is overloaded (429, 503, a timeout): what adaptive concurrency backs off on."""
        with self._lock:
            self.congestion += 1

    def answer_took(self, seconds: float) -> None:
        """An answer's head arrived ``seconds`` after its request was sent: what adaptive concurrency reads
        queueing from (answers slower than the quickest by far wait in the registry's queue)."""
        with self._lock:
            self.answered += 1
            self.waited += seconds
            if seconds < self.quickest:
                self.quickest = seconds

    def latency(self) -> tuple[int, float, float]:
        """Answers so far, the seconds they took in all, and the quickest one's."""
        with self._lock:
            return self.answered, self.waited, self.quickest

    def count(self, kind: str) -> None:
        with self._lock:
            self.requests[kind] += 1

    def retried(self, reason: str) -> None:
        with self._lock:
            self.retries[reason] += 1

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes_read += n

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return {
                "requests": dict(self.requests),
                "total_requests": sum(self.requests.values()),
                "retries": dict(self.retries),
                "total_retries": sum(self.retries.values()),
                "bytes_read": self.bytes_read,
            }


@dataclass(frozen=True)
class RateLimit:
    """Docker Hub style rate-limit headers, as last seen. ``unreadable`` is set when the fields were there
    but leave ``remaining`` unknown: it names the field and its value, shortened (a ``remaining`` that
    cannot be read, or a ``limit`` without one); None otherwise."""

    limit: int | None
    remaining: int | None
    window_seconds: int | None
    unreadable: str | None = None


_WHOLE = re.compile(r"(\d{1,18})(?:\.0*)?")
_WINDOW = re.compile(r";\s*w\s*=\s*(\d{1,18})(?:\.0*)?\s*(?:;|$)")


def _quoted(name: str, value: str) -> str:
    """A header field as an error names it: its name and its value, shortened."""
    return f"{name}: {value[:60]!r}" + ("..." if len(value) > 60 else "")


def _figure(value: str | None) -> int | None:
    """The count of a rate-limit field: its first list element's first item, a whole number (``30`` or
    ``30.0``). Docker Hub writes ``76;w=21600``; the IETF draft and combined repeated fields write lists
    (``100, 100;w=21600``), whose first element is the one in force."""
    if value is None:
        return None
    match = _WHOLE.fullmatch(value.split(",", 1)[0].split(";", 1)[0].strip())
    return int(match[1]) if match else None


def _window(value: str) -> int | None:
    """The ``w=`` parameter of the first list element that has one."""
    for element in value.split(","):
        match = _WINDOW.search(element.strip())
        if match:
            return int(match[1])
    return None


def rate_limit_of(headers: Mapping[str, str]) -> RateLimit | None:
    """Docker Hub's ``RateLimit-Limit: 100;w=21600`` and ``RateLimit-Remaining: 76;w=21600`` (any case; a
    list's first element; a decimal that is a whole number), or None when the answer has neither field. A
    field that is there but cannot be read is named in ``unreadable`` when it leaves ``remaining`` unknown."""
    if not isinstance(headers, HTTPHeaderDict):
        headers = HTTPHeaderDict(headers)
    limit_field = headers.get("ratelimit-limit")
    remaining_field = headers.get("ratelimit-remaining")
    if limit_field is None and remaining_field is None:
        return None
    limit, remaining = _figure(limit_field), _figure(remaining_field)
    window = None
    for value in (limit_field, remaining_field):
        if value is not None and window is None:
            window = _window(value)
    unreadable = None
    if remaining_field is not None and remaining is None:
        unreadable = _quoted("ratelimit-remaining", remaining_field)
    elif remaining_field is None:
        unreadable = _quoted("ratelimit-limit", limit_field or "") + " without a ratelimit-remaining"
    return RateLimit(limit, remaining, window, unreadable)


class Response:
    """An HTTP answer: status, case-insensitive headers, and a body read at most once."""

    __slots__ = ("_complete", "_content", "budget", "headers", "method", "raw", "status_code", "url")

    def __init__(
        self, raw: urllib3.BaseHTTPResponse | DirectResponse, url: str, method: str, budget: Budget | None = None
    ):
        self.raw = raw
        self.status_code = raw.status
        self.headers = raw.headers
        self.url = url
        self.method = method
        self.budget = budget
        self._content: bytes | None = None
        self._complete = False

    @property
    def content(self) -> bytes:
        """The body, decoded, cut at ``ERROR_BODY_LIMIT`` bytes. Only error bodies are read this way, and
        a hostile one (a gzip bomb, an endless 500) must not fill memory: at most the limit plus one byte
        is decoded, and ``close`` then drops the connection instead of reading the rest."""
        if self._content is None:
            data = self.raw.read(ERROR_BODY_LIMIT + 1, decode_content=True)
            self._complete = len(data) <= ERROR_BODY_LIMIT
            self._content = data[:ERROR_BODY_LIMIT]
        return self._content

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        yield from self.raw.stream(chunk_size, decode_content=True)
        self._complete = True

    def close(self) -> None:
        """Hand the connection back to the pool when the body was read or its rest is small and not
        compressed; else close it, so the rest of a large or compressed body is never read."""
        raw = self.raw
        try:
            if self.method == "HEAD" or self._complete or self._rest_is_small():
                raw.drain_conn()
                raw.release_conn()
            else:
                raw.close()
        except (HTTPError, OSError):
            raw.close()

    def _rest_is_small(self) -> bool:
        left = getattr(self.raw, "length_remaining", None)
        if left == 0:
            return True
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        return left is not None and left <= DRAIN_LIMIT and encoding == "identity"


class _HTTPConnection(urllib3.connection.HTTPConnection):
    response_class = RegistryResponse


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    response_class = RegistryResponse


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection

    def _validate_conn(self, conn: BaseHTTPConnection) -> None:
        """urllib3's, without its warning on every request to a server whose certificate is not checked:
        certificates go unchecked only with ``verify=False``, which ``Transport`` warns about once."""
        urllib3.HTTPConnectionPool._validate_conn(self, conn)
        if conn.is_closed:
            conn.connect()


class InsecureTLSWarning(InsecureRequestWarning):
    """TLS certificates are not checked (``verify=False``): said once per client, not per connection. A kind
    of urllib3's InsecureRequestWarning, so filters for that one (``urllib3.disable_warnings()``) apply."""


def _budgeted(manager: urllib3.PoolManager) -> urllib3.PoolManager:
    """Make the manager's connections read responses through a ``Budget``."""
    manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
    return manager


_AMBIGUOUS_URL = re.compile(r"[\\\x00-\x20\x7f]").search


def is_http_url(url: str) -> bool:
    """Whether a URL a server gave (Location, Link, token realm) is http(s) with a host and a valid port,
    and one every parser reads the same way: no backslash, space or control character (urllib and
    urllib3 disagree on where ``http://a\\@b/`` goes, so credentials meant for ``b`` would reach ``a``)
    and no ``user@`` part. urllib raises ValueError on some malformed ones, which must not escape."""
    if _AMBIGUOUS_URL(url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError when out of range)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "@" not in parts.netloc


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


CA_ENVIRONMENT = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH.
_NAME_MISMATCH = frozenset({62, 64})


def ca_settings(verify: bool | str) -> tuple[dict[str, str], str]:
    """urllib3's certificate options and where they come from, first found wins: ``ca_bundle=`` or
    ``verify=PATH``, ``verify=False``, $REQUESTS_CA_BUNDLE, $SSL_CERT_FILE, the system store. An explicit
    CA is never replaced by the environment."""
    if verify is False:
        return {"cert_reqs": "CERT_NONE"}, "nothing (verify=False)"
    if isinstance(verify, str):
        path, source = verify, f"ca_bundle {verify}"
    else:
        name = next((n for n in CA_ENVIRONMENT if os.environ.get(n)), None)
        if name is None:
            return {"cert_reqs": "CERT_REQUIRED"}, "the system store"
        path, source = os.environ[name], f"${name} ({os.environ[name]})"
    if os.path.isdir(path):
        return {"cert_reqs": "CERT_REQUIRED", "ca_cert_dir": path}, source
    if os.path.isfile(path):
        return {"cert_reqs": "CERT_REQUIRED", "ca_certs": path}, source
    raise ValueError(f"{source} is not a file or directory of CA certificates")


def _verification_failure(exc: BaseException) -> BaseException | None:
    """The certificate check that failed, if that is what ``exc`` is about."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ssl.SSLCertVerificationError, _HostnameError)):
            return current
        nxt = current.__cause__ or current.__context__
        if nxt is None and current.args and isinstance(current.args[0], BaseException):
            nxt = current.args[0]
        current = nxt
    return None


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
    """The first ``{"errors": [{code, message}]}`` entry of an error body, if any; the body is read up to
    ``ERROR_BODY_LIMIT`` bytes, and a longer one counts as having none."""
    try:
        body = json.loads(_error_body(response))
        first = body["errors"][0]
        return str(first.get("code") or "") or None, str(first.get("message") or "") or None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError):
        return None, None


def _describe(method: str, url: str) -> str:
    parts = urlsplit(url)
    return f"{method} {parts.scheme}://{parts.netloc}{parts.path}"


def error_for_response(response: Response, what: str | None = None, note: str = "") -> E.RegistryError:
    """Map an HTTP error status to the regframe exception for it; ``note`` ends the message."""
    status = response.status_code
    code, message = oci_error(response)
    where = what or _describe(response.method, response.url)
    detail = (f": {code} {message}" if code else "") + note
    kw: E.ErrorDetails = {"status": status, "code": code, "registry_message": message, "url": response.url}
    if status == 401:
        return E.RegistryAuthenticationError(f"{where}: authentication required or refused (401){detail}", **kw)
    if status == 403:
        return E.RegistryAuthorizationError(f"{where}: access denied (403){detail}", **kw)
    if status == 404:
        return E.NotFoundError(f"{where}: not found (404){detail}", **kw)
    if status == 405 and response.method == "DELETE":
        return E.DeleteDisabledError(
            f"{where}: the registry has deletion disabled (405); enable storage.delete in its config{detail}", **kw
        )
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return E.RateLimitedError(
            f"{where}: rate limited (429), retry after {retry_after} s{detail}", retry_after=retry_after, **kw
        )
    if status == 400 and response.url.startswith("http://") and _HTTPS_ONLY in _error_body(response):
        secure = "https://" + response.url[len("http://") :].split("/", 1)[0]
        return E.RegistryUnknownError(f"{where}: the server speaks HTTPS here; connect to {secure}", **kw)
    return E.RegistryError(f"{where}: HTTP {status}{detail}", **kw)


# What Go's HTTPS servers (distribution among them) answer a plain-HTTP request with.
_HTTPS_ONLY = b"HTTP request to an HTTPS server"


def _error_body(response: Response) -> bytes:
    """An error answer's body as ``Response.content`` reads it (capped); empty for HEAD or a body that
    cannot be read."""
    if response.method == "HEAD":
        return b""
    try:
        return response.content
    except (HTTPError, OSError):
        return b""


def check_time_limits(*, request_timeout: float, min_stream_rate: float, max_retry_wait: float) -> None:
    """Refuse time limits that are not numbers of the right sign, before any request."""

    def number(value: object) -> bool:  # NaN fails every comparison below
        return not isinstance(value, bool) and isinstance(value, (int, float))

    if not number(request_timeout) or not 0 < request_timeout < float("inf"):
        raise ValueError(f"request_timeout must be a positive number of seconds, not {request_timeout!r}")
    if not number(min_stream_rate) or not 0 <= min_stream_rate < float("inf"):
        raise ValueError(f"min_stream_rate must be a number of bytes per second, 0 or more, not {min_stream_rate!r}")
    if not number(max_retry_wait) or not 0 <= max_retry_wait < float("inf"):
        raise ValueError(f"max_retry_wait must be a number of seconds, 0 or more, not {max_retry_wait!r}")


class RetryWaits:
    """The sleeps of one call between its retries, bounded in total by ``limit`` seconds."""

    __slots__ = ("limit", "spent")

    def __init__(self, limit: float):
        self.limit = limit
        self.spent = 0.0

    def allow(self, delay: float) -> bool:
        """Count ``delay`` as slept if it fits in what is left; False (and nothing counted) if not."""
        if self.spent + delay > self.limit:
            return False
        self.spent += delay
        return True

    def gave_up(self) -> str:
        return f"; gave up after waiting {self.spent:.3g} s in total (max_retry_wait={self.limit:g})"


class RequestOptions(TypedDict, total=False):
    """What ``Transport.fetch`` passes on to ``Transport.request``."""

    headers: Mapping[str, str] | None
    body: bytes | None
    scopes: tuple[str, ...]
    kind: str
    ok: Iterable[int]
    retry: bool | None
    follow_redirects: bool


class Transport:
    """Sends requests through an auth flow, retries what is safe to retry, and maps failures.

    Time limits, so that no server can hold a call indefinitely:

    - ``open_timeout`` bounds connecting, ``read_timeout`` each wait for data;
    - ``request_timeout`` (60 s) bounds the wait for a response's headers and the reading of any body
      read whole (manifests, JSON pages, tokens, error bodies), counted from when the request was
      sent. A streamed blob body (layers, configs) has no overall deadline, since it may be gigabytes;
      instead every ``request_timeout`` seconds spent waiting on it must bring ``min_stream_rate``
      bytes a second (1024; 0 turns this off), so a blob smaller than ``min_stream_rate *
      request_timeout`` gets ``request_timeout`` of waiting at most. Either raises
      ``RegistryTimeoutError`` naming the limit;
    - ``max_retry_wait`` (60 s) bounds the sleeps of one call between its retries (backoff and
      ``Retry-After`` together): a retry that would need more is not made, and the error says so.
      A single ``Retry-After`` above ``max_retry_after`` fails at once.
    """

    def __init__(
        self,
        base_url: str,
        auth: Auth,
        *,
        open_timeout: float = 2,
        read_timeout: float = 5,
        verify: bool | str = True,
        retries: int = 3,
        backoff: float = 0.25,
        max_retry_after: float = 60.0,
        pool_size: int = 32,
        sleep: Callable[[float], None] = time.sleep,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        min_stream_rate: float = DEFAULT_MIN_STREAM_RATE,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
    ) -> None:
        check_time_limits(
            request_timeout=request_timeout, min_stream_rate=min_stream_rate, max_retry_wait=max_retry_wait
        )
        self.request_timeout = float(request_timeout)
        self.min_stream_rate = float(min_stream_rate)
        self.max_retry_wait = float(max_retry_wait)
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeout = (open_timeout, read_timeout)
        self._timeout = urllib3.Timeout(connect=open_timeout, read=read_timeout)
        self.verify = verify
        self._tls, self.ca_source = ca_settings(verify)
        self._unchecked_tls = verify is False
        self._unchecked_told = threading.Lock()
        self.retries = retries
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self.stats = RequestStats()
        self.pacer = Pacer()
        self.rate_limit: RateLimit | None = None
        self._sleep = sleep
        # Called as hook(seconds, sleep) instead of sleeping before a retry: a crawl gives its slot back meanwhile.
        self.wait_hook: Callable[[float, Callable[[float], None]], None] | None = None
        self._origin = origin(self.base_url)
        self.pool = _budgeted(self._new_pool(pool_size))
        parts = urlsplit(self.base_url)
        self._home_prefix = f"{parts.scheme}://{parts.netloc}"
        # Requests to the registry itself go over regframe's own connections, unless a proxy is in the way.
        self._direct = (
            None
            if isinstance(self.pool, urllib3.ProxyManager)
            else Connections(
                parts.hostname or "",
                parts.port or (443 if parts.scheme == "https" else 80),
                open_timeout=open_timeout,
                read_timeout=read_timeout,
                tls=tls_context(self._tls) if parts.scheme == "https" else None,
                maxsize=pool_size,
                headers={"User-Agent": USER_AGENT},
            )
        )
        # Cross-host redirects (blob storage) go through a pool that has never seen our credentials.
        self._foreign = _budgeted(self._new_pool(pool_size))

    def _new_pool(self, pool_size: int) -> urllib3.PoolManager:
        """Proxies from the environment (honouring no_proxy), and the CA certificates ``ca_settings`` chose."""
        options: dict[str, Any] = dict(
            num_pools=8,
            maxsize=pool_size,
            block=False,
            retries=False,
            headers={"User-Agent": USER_AGENT},
            **self._tls,
        )
        host = urlsplit(self.base_url).hostname or ""
        proxy = (
            None
            if urllib.request.proxy_bypass(host)
            else urllib.request.getproxies().get(urlsplit(self.base_url).scheme)
        )
        if proxy:
            return urllib3.ProxyManager(proxy, **options)
        return urllib3.PoolManager(**options)

    def close(self) -> None:
        self.pool.clear()
        self._foreign.clear()
        if self._direct is not None:
            self._direct.clear()

    def _wait(self, seconds: float) -> None:
        hook = self.wait_hook
        if hook is None:
            self._sleep(seconds)
        else:
            hook(seconds, self._sleep)

    def _home_pool(self) -> urllib3.HTTPConnectionPool:
        return self.pool.connection_from_url(self.base_url)

    @property
    def pool_size(self) -> int:
        """How many idle connections to the registry the pool keeps for reuse."""
        if self._direct is not None:
            return self._direct.maxsize
        queue = self._home_pool().pool
        return 0 if queue is None else queue.maxsize

    def keep_connections(self, count: int) -> None:
        """Let the pool keep up to ``count`` idle connections to the registry, so ``count`` threads reuse
        theirs instead of opening and discarding one per request. The pool never opens a connection while
        an idle one is there, so the connections open at once never exceed the requests in flight at once."""
        if self._direct is not None:
            self._direct.keep(count)
            return
        queue = self._home_pool().pool
        if queue is None:
            return
        with queue.mutex:
            extra = count - queue.maxsize
            if extra > 0:
                queue.maxsize = count
                queue.queue[:0] = [None] * extra

    def close_idle(self, keep: int) -> int:
        """Close idle connections to the registry beyond the ``keep`` most recently used; how many closed."""
        if self._direct is not None:
            return self._direct.close_idle(keep)
        queue = self._home_pool().pool
        if queue is None:
            return 0
        with queue.mutex:
            idle = [i for i, conn in enumerate(queue.queue) if conn is not None]
            stale = idle[: max(0, len(idle) - keep)]
            for i in stale:
                queue.queue[i].close()
                queue.queue[i] = None
        return len(stale)

    def url(self, path_or_url: str) -> str:
        """The absolute URL of a request; a URL a server gave must pass ``is_http_url`` to be sent at all."""
        if path_or_url.startswith(("http://", "https://")):
            if not is_http_url(path_or_url):
                raise E.RegistryProtocolError(
                    f"the registry gave {E.bare_url(path_or_url)[:120]!r}, which is not a URL regframe sends to"
                )
            return path_or_url
        return self.base_url + path_or_url

    def same_origin(self, url: str) -> bool:
        return origin(url) == self._origin

    # -- sending ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        scopes: tuple[str, ...] = (),
        kind: str = "other",
        ok: Iterable[int] = (),
        retry: bool | None = None,
        follow_redirects: bool = True,
        waits: RetryWaits | None = None,
    ) -> Response:
        """Send one logical request and return a 2xx response (or one whose status is in ``ok``).

        Retries idempotent requests (or any with ``retry=True``) on resets and 502/503/504: the
        server may have acted on a request whose answer was lost. A 429 says it did nothing, so it
        is retried (honouring Retry-After) whatever the method. A GET or HEAD (when retried at all)
        whose answer does not start within ``read_timeout`` is retried the same way (a registry that
        stalled once answers the next one); one that ran out of ``request_timeout`` is not. The sleeps
        before retries add up to at most ``max_retry_wait`` per call (``waits`` carries them over when
        a call makes several).
        """
        req = Request(method, self.url(path_or_url), dict(headers or {}), body, scopes, kind)
        ok = frozenset(ok)
        retry = method in IDEMPOTENT if retry is None else retry
        waits = waits if waits is not None else RetryWaits(self.max_retry_wait)
        attempt = 0
        waited_until = float("-inf")
        while True:
            try:
                response = self._send_authenticated(req, waits, waited_until)
                if response.status_code in REDIRECT_STATUSES and follow_redirects:
                    response = self._follow(response, req, waits)
            except E.RegistryError as exc:
                if isinstance(exc, E.RegistryTimeoutError):
                    self.stats.congested()
                raise
            except (HTTPError, OSError) as exc:
                if isinstance(exc, StaleConnection) and retry:
                    # Not one of the call's retries: the registry never answered, it had closed the connection.
                    self.stats.retried("stale connection")
                    continue
                error = self._map_exception(exc, req)
                timed_out = isinstance(error, E.RegistryTimeoutError)
                if timed_out:
                    self.stats.congested()
                again = isinstance(error, E.RegistryConnectionError) or (
                    timed_out and method in READS and _read_timed_out(exc)
                )
                if retry and attempt < self.retries and again:
                    delay = self._backoff(attempt + 1)
                    if not waits.allow(delay):
                        raise type(error)(f"{error}{waits.gave_up()}", url=error.url) from None
                    attempt += 1
                    self.stats.retried("timeout" if timed_out else "connection")
                    log.debug("retrying %s after %s", _describe(method, req.url), type(exc).__name__)
                    self._wait(delay)
                    continue
                raise error from None
            status = response.status_code
            if status in CONGESTION_STATUSES:
                self.stats.congested()
            if status < 300 or status in ok:
                return response
            retried = self._wait_to_retry(response, req, attempt, waits, retry)
            if retried is not None:
                attempt += 1
                waited_until = retried
                continue
            raise self._status_error(response)

    def _wait_to_retry(
        self, response: Response, req: Request, attempt: int, waits: RetryWaits, retry: bool, what: str | None = None
    ) -> float | None:
        """Wait before sending ``req`` again after ``response`` (see ``request``) and return when the wait
        ended (``time.monotonic``); None when its status is not retried or the retries are used up, and its
        error when the wait would be longer than allowed."""
        status = response.status_code
        if not ((retry or status == 429) and status in RETRY_STATUSES and attempt < self.retries):
            return None
        delay = self._backoff(attempt + 1)
        if status == 429 and self.pacer.hopeless:
            raise self._status_error(response, HOPELESS, what)
        asked = None
        if status == 429:
            asked = parse_retry_after(response.headers.get("Retry-After"))
            if asked is not None and asked > self.max_retry_after:
                raise self._status_error(response, what=what)
            delay = max(delay, asked or 0.0)
        if not waits.allow(delay):
            raise self._status_error(response, waits.gave_up(), what)
        if asked and what is None:
            self.pacer.hold(asked)
        response.close()
        self.stats.retried(str(status))
        log.debug("retrying %s after HTTP %s in %.2f s", _describe(req.method, req.url), status, delay)
        until = time.monotonic() + delay
        self._wait(delay)
        return until

    @staticmethod
    def _status_error(response: Response, note: str = "", what: str | None = None) -> E.RegistryError:
        """The error for a status; its body is read up to ``ERROR_BODY_LIMIT`` and the response closed."""
        error = error_for_response(response, what, note)
        response.close()
        return error

    def _backoff(self, attempt: int) -> float:
        return min(8.0, self.backoff * (2.0 ** (attempt - 1))) * (0.5 + random.random() / 2)

    def _send_authenticated(self, req: Request, waits: RetryWaits, waited_until: float = float("-inf")) -> Response:
        """Drive the auth flow: it yields requests (the original, token requests) and receives responses.

        ``request`` retries only what the flow ends with, so the requests it makes besides ``req`` (to a
        token endpoint) get the same retries here, within the same ``waits``. Requests to the registry go
        at the ``Pacer``'s pace (a retry that waited until ``waited_until`` has waited out any pause that
        ended by then)."""
        flow = self.auth.auth_flow(req)
        try:
            outgoing = next(flow)
            while True:
                response = self._send_paced(req, waited_until) if outgoing is req else self._send_token(outgoing, waits)
                try:
                    outgoing = flow.send(response)
                except StopIteration:
                    return response
                response.close()
        finally:
            flow.close()

    def _send_paced(self, req: Request, waited_until: float) -> Response:
        while (delay := self.pacer.turn(waited_until)) > 0:
            self._wait(delay)
        sent = time.monotonic()
        response = self._send(req, self.pool)
        if response.status_code == 429:
            self.pacer.refused(sent)
        else:
            self.pacer.answered()
        return response

    def _send_token(self, req: Request, waits: RetryWaits) -> Response:
        """A token request, retried on 429, 502, 503 and 504 as ``request`` retries the registry's. A token
        endpoint still answering one of those raises what the registry's answer would (a 429 is
        RateLimitedError), not an authentication error, naming the endpoint without its query."""
        what = f"token endpoint {_describe(req.method, req.url)}"
        attempt = hops = 0
        while True:
            response = self._send(req, self.pool)
            status = response.status_code
            if status in CONGESTION_STATUSES:
                self.stats.congested()
            if status in REDIRECT_STATUSES and response.headers.get("Location") and hops < 5:
                req = self._token_redirect(response, req, what)
                hops += 1
                continue
            if status not in RETRY_STATUSES:
                return response
            if self._wait_to_retry(response, req, attempt, waits, req.method in IDEMPOTENT, what) is not None:
                attempt += 1
                continue
            raise self._status_error(response, what=what)

    def _token_redirect(self, response: Response, req: Request, what: str) -> Request:
        """The request a token endpoint's redirect asks for, as docker's and podman's HTTP client follows it
        (303, and 301/302 of a POST, become a GET without body). Only within the endpoint's own origin: the
        request carries the password, or a refresh token, in its header or body."""
        response.close()
        target = join_url(response.url, response.headers.get("Location", ""))
        if not is_http_url(target) or origin(target) != origin(req.url):
            raise E.RegistryAuthenticationError(
                f"{what} redirected to {E.bare_url(target)[:120]!r}, another origin; not followed, so the "
                "credentials stay with the endpoint the registry named",
                status=response.status_code,
            )
        if response.status_code == 303 or (response.status_code in (301, 302) and req.method == "POST"):
            headers = {k: v for k, v in req.headers.items() if k.lower() != "content-type"}
            return Request("GET", target, headers, None, req.scopes, req.kind, authenticated=False)
        return Request(req.method, target, dict(req.headers), req.body, req.scopes, req.kind, authenticated=False)

    def _send(self, req: Request, pool: urllib3.PoolManager) -> Response:
        self.stats.count(req.kind)
        if self._unchecked_tls and req.url.startswith("https://"):
            self._warn_unchecked_tls()
        target = req.url
        direct = self._direct if pool is self.pool else None
        if (
            direct is not None
            and target.startswith(self._home_prefix)
            and target[len(self._home_prefix) : len(self._home_prefix) + 1] == "/"
        ):
            target = target[len(self._home_prefix) :]
        else:
            direct = None
        budget = Budget(self.timeout[1], self.request_timeout, self.min_stream_rate)
        raw: urllib3.BaseHTTPResponse | DirectResponse
        sent = time.monotonic()
        try:
            if direct is not None:
                raw = direct.send(req.method, target, req.body, req.headers, budget)
            else:
                sending.budget = budget  # urllib3's connections pick it up (RegistryResponse)
                try:
                    raw = pool.urlopen(
                        req.method,
                        target,
                        body=req.body,
                        headers=req.headers,
                        redirect=False,
                        retries=False,
                        timeout=self._timeout,
                        preload_content=False,
                    )
                finally:
                    sending.budget = None
        except LocationParseError as exc:
            raise E.RegistryProtocolError(
                f"{_describe(req.method, req.url)}: unusable URL ({exc})", url=req.url
            ) from None
        except (HTTPError, OSError):
            if budget.broken:
                raise budget.error(_describe(req.method, req.url), req.url) from None
            raise
        self.stats.answer_took(time.monotonic() - sent)
        response = Response(raw, req.url, req.method, budget)
        self._note_rate_limit(response)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s -> %s", _describe(req.method, req.url), response.status_code)
        return response

    def _warn_unchecked_tls(self) -> None:
        """Warn, the first time this client speaks TLS, that no certificate is checked: once for the
        registry, its token server and blob storage alike, rather than once per connection."""
        with self._unchecked_told:
            if not self._unchecked_tls:
                return
            self._unchecked_tls = False
        warnings.warn(
            f"TLS certificates are not checked (verify=False) for {urlsplit(self.base_url).netloc} "
            "or the servers it sends regframe to: anyone on the network path can read and change the traffic",
            InsecureTLSWarning,
            stacklevel=2,
        )

    def _follow(self, response: Response, req: Request, waits: RetryWaits, hops: int = 5) -> Response:
        """Follow redirects by hand so credentials never reach another host."""
        for _ in range(hops):
            location = response.headers.get("Location")
            if not location:
                return response
            response.close()
            target = join_url(response.url, location)
            if not is_http_url(target):
                raise E.RegistryProtocolError(
                    f"{_describe(req.method, req.url)}: redirect to {location[:120]!r}, which is not an http(s) URL"
                )
            method = "GET" if response.status_code == 303 else req.method
            if self.same_origin(target):
                response = self._send_authenticated(
                    Request(method, target, dict(req.headers), req.body, req.scopes, req.kind), waits
                )
            else:
                headers = {k: v for k, v in req.headers.items() if k.lower() not in ("authorization", "cookie")}
                response = self._send(
                    Request(method, target, headers, None, (), req.kind, authenticated=False), self._foreign
                )
            if response.status_code not in REDIRECT_STATUSES:
                return response
        raise E.RegistryProtocolError(f"{_describe(req.method, req.url)}: more than {hops} redirects")

    def _note_rate_limit(self, response: Response) -> None:
        figures = rate_limit_of(response.headers)
        if figures is not None:
            self.rate_limit = figures

    def _map_exception(self, exc: BaseException, req: Request) -> E.RegistryError:
        where = _describe(req.method, req.url)
        connect, read = self.timeout
        if isinstance(exc, SSLError):
            return self._tls_error(exc, req, where)
        if isinstance(exc, (NewConnectionError, ConnectFailed)):
            return E.RegistryUnknownError(f"{where}: no registry answers there ({_root(exc)})", url=req.url)
        if isinstance(exc, (ConnectTimeoutError, ConnectTimedOut)):
            return E.RegistryTimeoutError(f"{where}: could not connect within open_timeout={connect} s", url=req.url)
        if isinstance(exc, (ReadTimeoutError, TimeoutError)):
            return E.RegistryTimeoutError(f"{where}: no data within read_timeout={read} s", url=req.url)
        if isinstance(exc, (ProtocolError, DecodeError, OSError)):
            return E.RegistryConnectionError(
                f"{where}: connection failed or body cut short ({_root(exc)})", url=req.url
            )
        if isinstance(exc, LocationParseError):
            return E.RegistryUnknownError(f"{where}: invalid URL", url=req.url)
        return E.RegistryError(f"{where}: {type(exc).__name__}: {_root(exc)}", url=req.url)

    def _tls_error(self, exc: BaseException, req: Request, where: str) -> E.RegistrySSLError:
        """Say what is wrong with the certificate and what fixes it; turning checks off is the last resort."""
        cause = _verification_failure(exc)
        parts = urlsplit(req.url)
        host = parts.hostname or ""
        if cause is not None and (
            getattr(cause, "verify_code", None) in _NAME_MISMATCH or isinstance(cause, _HostnameError)
        ):
            names = self._certificate_names(host, parts.port or 443)
            found = (
                f"the certificate is for {', '.join(names)}, not {host}"
                if names
                else f"the certificate does not name {host}"
            )
            return E.RegistrySSLError(
                f"{where}: hostname mismatch: {found}; connect with a name the certificate holds", url=req.url
            )
        if cause is not None:
            return E.RegistrySSLError(
                f"{where}: TLS certificate cannot be validated ({_root(exc)}), checked against "
                f"{self.ca_source}; pass ca_bundle= with the CA that signed it (verify=False turns "
                "checking off, which is unsafe)",
                url=req.url,
            )
        return E.RegistrySSLError(f"{where}: TLS handshake failed ({_root(exc)})", url=req.url)

    def _certificate_names(self, host: str, port: int) -> list[str]:
        """The names in the server's certificate, from a second handshake that checks only the chain
        (best effort: none when that fails or a proxy is in the way)."""
        if isinstance(self.pool, urllib3.ProxyManager):
            return []
        try:
            context = tls_context(self._tls)
            context.check_hostname = False
            with (
                socket.create_connection((host, port), timeout=self.timeout[0]) as sock,
                context.wrap_socket(sock, server_hostname=host) as tls,
            ):
                names = (tls.getpeercert() or {}).get("subjectAltName", ())
                return [str(value) for _, value in names] if isinstance(names, tuple) else []
        except (OSError, ValueError):
            return []

    # -- bodies --------------------------------------------------------------------------------

    def read_body(self, response: Response, limit: int, what: str) -> bytes:
        """Read a whole body, refusing (without reading it all) one larger than ``limit``."""
        announced = response.headers.get("Content-Length")
        if announced and announced.isdigit() and int(announced) > limit:
            response.close()
            raise E.RegistryProtocolError(
                f"{what}: body of {int(announced)} bytes is over the {limit}-byte limit", url=response.url
            )
        chunks, total = [], 0
        try:
            for chunk in response.iter_content(65536):
                total += len(chunk)
                if total > limit:
                    response.close()
                    raise E.RegistryProtocolError(f"{what}: body is over the {limit}-byte limit", url=response.url)
                chunks.append(chunk)
        except (HTTPError, OSError) as exc:
            raise self._read_error(exc, response) from None
        finally:
            self.stats.add_bytes(total)
        response.close()
        return b"".join(chunks)

    def _read_error(self, exc: BaseException, response: Response) -> E.RegistryError:
        budget = response.budget
        error: E.RegistryError
        if budget is not None and budget.broken:
            error = budget.error(_describe(response.method, response.url), response.url)
        else:
            error = self._map_exception(exc, Request(response.method, response.url))
        if isinstance(error, E.RegistryTimeoutError):
            self.stats.congested()
        return error

    def fetch(
        self, method: str, path_or_url: str, *, limit: int, what: str, **options: Unpack[RequestOptions]
    ) -> tuple[Response, bytes]:
        """``request`` and ``read_body`` in one; an idempotent request whose body is cut short, or a GET whose
        body stalls past ``read_timeout`` (not past ``request_timeout``), is sent again (up to ``retries``
        times, within one ``max_retry_wait``). A status the caller allowed in ``ok`` comes back with no body."""
        waits = RetryWaits(self.max_retry_wait)
        attempt = 0
        while True:
            response = self.request(method, path_or_url, waits=waits, **options)
            if response.status_code >= 300:
                response.close()
                return response, b""
            try:
                return response, self.read_body(response, limit, what)
            except (E.RegistryConnectionError, E.RegistryTimeoutError) as exc:
                timed_out = isinstance(exc, E.RegistryTimeoutError)
                if timed_out and (method not in READS or response.budget is None or response.budget.broken):
                    raise  # out of request_timeout (or a write): not sent again
                if method not in IDEMPOTENT or attempt >= self.retries:
                    raise
                delay = self._backoff(attempt + 1)
                if not waits.allow(delay):
                    raise type(exc)(f"{exc}{waits.gave_up()}", url=exc.url) from None
                attempt += 1
                self.stats.retried("timeout" if timed_out else "body")
                log.debug("retrying %s after its body %s", what, "stalled" if timed_out else "was cut short")
                self._wait(delay)

    def iter_body(self, response: Response, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream a body; a connection cut mid-way raises RegistryConnectionError, a body arriving slower
        than ``min_stream_rate`` RegistryTimeoutError."""
        if response.budget is not None:
            response.budget.stream()
        try:
            for chunk in response.iter_content(chunk_size):
                self.stats.add_bytes(len(chunk))
                yield chunk
        except (HTTPError, OSError) as exc:
            raise self._read_error(exc, response) from None


def read_raw(response: Response, limit: int, what: str) -> bytes:
    """Up to ``limit + 1`` bytes of a small body (one more tells it is too long); a cut is mapped here
    like every other transport failure."""
    try:
        return response.raw.read(limit + 1, decode_content=True)
    except (HTTPError, OSError) as exc:
        if response.budget is not None and response.budget.broken:
            raise response.budget.error(what, response.url) from None
        raise E.RegistryConnectionError(f"{what}: response body cut short ({exc})", url=response.url) from None


def parse_json(raw: bytes, what: str, url: str | None = None) -> object:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise E.RegistryProtocolError(f"{what}: body is not valid JSON ({exc})", url=url) from None


def _read_timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` is a wait for an answer that ran out of ``read_timeout`` (not a connect timeout)."""
    return isinstance(exc, (ReadTimeoutError, TimeoutError)) and not isinstance(
        exc, (ConnectTimeoutError, ConnectTimedOut)
    )


def _root(exc: BaseException) -> str:
    """The innermost cause's text, which is what a user can act on."""
    seen: set[int] = set()
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
