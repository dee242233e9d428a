"""A fault-injecting reverse proxy to put in front of a real registry.

Users point regframe at registries they do not control: flaky mirrors, rate-limited hubs, hostile
servers. A real registry cannot be told to misbehave, so tests put this proxy in front of one and
let rules pick which requests get a fault::

    with FaultProxy(registry.url, seed=0) as proxy:
        proxy.add_rule(Rule(path=r"/manifests/", method="GET", every=3, action=Reset()))
        proxy.add_rule(Rule(probability=0.1, action=Status(503)))
        ...  # point the client at proxy.url
        proxy.stats.actions["Reset"]

Everything that no rule picks is forwarded unchanged: keep-alive toward the client, streamed bodies,
one reused upstream connection per client connection, and upstream ``Location``/``Link`` URLs
rewritten to point at the proxy. ``latency=`` delays every request (benchmarks emulating a remote
registry), and ``TagPagination`` adds the OCI tag-list paging that distribution 2.8 lacks.
"""

from __future__ import annotations

import functools
import http.client
import io
import json
import logging
import os
import random
import re
import socket
import ssl
import struct
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, urlsplit

__all__ = [
    "Action",
    "Delay",
    "Drip",
    "DropHeader",
    "Exchange",
    "FaultProxy",
    "FlipBytes",
    "ForeignLink",
    "Forward",
    "GoogleTagList",
    "Hang",
    "HugeBody",
    "LoopLink",
    "MalformedJSON",
    "Oversize",
    "ProxyStats",
    "PullQuota",
    "RateLimit",
    "RecordedRequest",
    "RecordingServer",
    "RedirectTo",
    "Reset",
    "Response",
    "Rule",
    "RuleStats",
    "SetHeader",
    "Status",
    "TagPagination",
    "TokenBucket",
    "Truncate",
    "UpstreamError",
]

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
# Request bodies up to this size are read whole so a request on a stale upstream connection can be retried.
_SMALL_BODY = 1024 * 1024
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Expect is answered by the proxy itself; Host names the upstream instead.
_NOT_FORWARDED = _HOP_BY_HOP | {"expect", "host"}
_OCI_CODES = {
    400: "UNSUPPORTED",
    401: "UNAUTHORIZED",
    403: "DENIED",
    404: "NOT_FOUND",
    405: "UNSUPPORTED",
    429: "TOOMANYREQUESTS",
    503: "UNAVAILABLE",
}
_TAGS_PATH = re.compile(r"^/v2/(?P<name>.+)/tags/list$")


class UpstreamError(Exception):
    """The upstream registry could not be reached or broke off; the client gets ``status``."""

    def __init__(self, message: str, status: int = 502):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------------------------
# Responses and the exchange an action works on
# --------------------------------------------------------------------------------------------


@dataclass
class Response:
    """A response on its way to the client; actions edit it before it is sent.

    ``Content-Length`` is sent as the headers say, whatever the body yields: a body shorter or
    longer than announced is written as is and the connection is closed after it (that is how
    truncation and oversized bodies are produced). Without ``Content-Length`` the body is chunked,
    and ``complete=False`` leaves out the final chunk. ``drip=(size, interval)`` sends the status line
    and headers ``size`` bytes at a time, ``interval`` seconds apart.
    """

    status: int
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: Iterable[bytes] = ()
    close: bool = False
    complete: bool = True
    drip: tuple[int, float] | None = None

    def get(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` header by a single one with ``value``."""
        self.remove(name)
        self.headers.append((name, value))

    def remove(self, name: str) -> None:
        """Drop every ``name`` header."""
        lname = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != lname]

    @property
    def content_length(self) -> int | None:
        value = self.get("Content-Length")
        return int(value) if value is not None and value.strip().isdigit() else None

    def read(self) -> bytes:
        """Consume the whole body (small documents only) and keep it as the body."""
        data = b"".join(self.body)
        self.body = (data,)
        return data


class Exchange:
    """One client request as an action sees it: inspect it, forward it, answer it or cut it off."""

    def __init__(self, handler: _Handler, proxy: FaultProxy):
        self._handler = handler
        self._proxy = proxy
        self.method: str = handler.command
        self.target: str = handler.path
        parts = urlsplit(self.target)
        self.path: str = parts.path
        self.query: str = parts.query
        self.headers = handler.headers
        self.responded = False
        self._body_taken = False
        self._upstream_response: http.client.HTTPResponse | None = None

    @property
    def seed(self) -> int:
        return self._proxy.seed

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)

    @property
    def client_origin(self) -> str:
        """The proxy's origin as the client addressed it (``Host``), so rewritten URLs resolve for it."""
        return f"{self._proxy.scheme}://{self.headers.get('Host') or self._proxy.host}"

    def has_body(self, response: Response) -> bool:
        return not (self.method == "HEAD" or response.status in (204, 304) or response.status < 200)

    # -- upstream --------------------------------------------------------------------------

    def forward(self, target: str | None = None) -> Response:
        """Send the request (or the same request to ``target``) upstream; the body streams back lazily."""
        upstream = self._proxy._upstream
        if upstream is None:
            raise UpstreamError(f"{self.method} {self.target}: this server has no upstream")
        target = target or self.target
        headers = self._forwarded_headers(upstream.netloc)
        body = self._take_body()
        replayable = body is None or isinstance(body, bytes)
        self._release_upstream()
        for attempt in (1, 2):
            conn, reused = self._handler.upstream_connection()
            try:
                conn.request(self.method, target, body=body, headers=headers)
                resp = conn.getresponse()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self._handler.drop_upstream()
                if attempt == 2 or not (reused and replayable):
                    raise UpstreamError(
                        f"{self.method} {target}: upstream {upstream.origin} closed the connection: {exc}"
                    ) from exc
            except TimeoutError as exc:
                self._handler.drop_upstream()
                raise UpstreamError(
                    f"{self.method} {target}: upstream {upstream.origin} timed out", status=504
                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                self._handler.drop_upstream()
                raise UpstreamError(f"{self.method} {target}: upstream {upstream.origin} failed: {exc}") from exc
        self._proxy._count("forwarded")
        self._upstream_response = resp
        rewritten = [
            (k, self._rewrite(k, v, upstream.origin)) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP
        ]
        return Response(resp.status, resp.reason, rewritten, _stream(resp))

    def _forwarded_headers(self, upstream_host: str) -> dict[str, str]:
        dropped = set(_NOT_FORWARDED)
        for token in self.headers.get_all("Connection", []):
            dropped.update(t.strip().lower() for t in token.split(","))
        if self._is_chunked():
            dropped.add("content-length")
        out: dict[str, str] = {"Host": upstream_host}
        for name, value in self.headers.items():
            if name.lower() in dropped:
                continue
            out[name] = f"{out[name]}, {value}" if name in out else value
        return out

    def _rewrite(self, name: str, value: str, origin: str) -> str:
        lname = name.lower()
        if lname == "location" and _starts_with_origin(value, origin):
            return self.client_origin + value[len(origin) :]
        if lname == "link":
            return re.sub("<" + re.escape(origin) + r"(?=[/?>])", "<" + self.client_origin, value)
        return value

    def _release_upstream(self) -> None:
        """Drop the upstream connection if its last response was not read to the end."""
        resp, self._upstream_response = self._upstream_response, None
        if resp is None or resp.isclosed():
            return
        if self.method == "HEAD" or resp.length == 0:
            resp.read()  # nothing to read, but http.client marks the connection free only now
        if not resp.isclosed():
            self._handler.drop_upstream()

    # -- the request body ------------------------------------------------------------------

    def _is_chunked(self) -> bool:
        return "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()

    def _take_body(self) -> bytes | Iterator[bytes] | _LimitedReader | None:
        if self._body_taken:
            return None
        self._body_taken = True
        rfile = self._handler.rfile
        if self._is_chunked():
            return _dechunk(rfile)
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0:
            return None
        if length <= _SMALL_BODY:
            data = rfile.read(length)
            if len(data) < length:
                raise ConnectionError("client closed the connection before sending its body")
            return data
        return _LimitedReader(rfile, length)

    def _drain_body(self) -> None:
        body = self._take_body()
        if isinstance(body, _LimitedReader):
            while body.read(_CHUNK):
                pass
        elif body is not None and not isinstance(body, bytes):
            for _ in body:
                pass

    # -- answering -------------------------------------------------------------------------

    def respond(self, response: Response) -> None:
        """Send ``response`` to the client, streaming its body (see ``Response`` for the framing)."""
        self._drain_body()
        handler = self._handler
        headers = [(k, v) for k, v in response.headers if k.lower() not in _HOP_BY_HOP]
        with_body = self.has_body(response)
        length = response.content_length
        chunked = with_body and length is None and handler.request_version == "HTTP/1.1"
        delimited_by_close = with_body and length is None and not chunked
        if chunked:
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Transfer-Encoding", "chunked"))
        if response.close or delimited_by_close:
            headers.append(("Connection", "close"))
        reason = response.reason or _phrase(response.status)
        head = f"HTTP/1.1 {response.status} {reason}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        self.responded = True
        pending = [head.encode("latin-1")]
        if response.drip is not None:
            size, interval = response.drip
            head_bytes, pending = pending[0], []
            for start in range(0, len(head_bytes), size):
                if not self.wait(interval):
                    handler.close_connection = True
                    return
                handler.wfile.write(head_bytes[start : start + size])
        written = 0
        for chunk in response.body if with_body else ():
            if not chunk:
                continue
            pending += [b"%x\r\n" % len(chunk), chunk, b"\r\n"] if chunked else [chunk]
            handler.wfile.write(pending[0] if len(pending) == 1 else b"".join(pending))
            pending = []
            written += len(chunk)
            self._proxy._count("bytes_sent", len(chunk))
        if chunked and response.complete:
            pending.append(b"0\r\n\r\n")
        if pending:
            handler.wfile.write(b"".join(pending))
        cut = with_body and (not response.complete or (length is not None and written != length))
        if response.close or delimited_by_close or cut:
            handler.close_connection = True
        self._release_upstream()

    def reply(
        self, status: int, body: bytes = b"", headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None
    ) -> None:
        """Answer from the proxy itself, looking like the registry (JSON unless ``headers`` say otherwise)."""
        response = Response(status, headers=[("Docker-Distribution-API-Version", "registry/2.0")])
        for name, value in headers.items() if isinstance(headers, Mapping) else headers or ():
            response.set(name, value)
        if response.get("Content-Type") is None:
            response.set("Content-Type", "application/json")
        response.set("Content-Length", str(len(body)))
        response.body = (body,)
        self.respond(response)

    def error(
        self, status: int, code: str | None = None, message: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer with an OCI error body ``{"errors": [{"code", "message", "detail"}]}``."""
        self.reply(status, _error_body(status, code, message), headers)

    def reset(self) -> None:
        """Close the client connection with a TCP RST (SO_LINGER 0), sending nothing."""
        handler = self._handler
        sock = handler.connection
        self.responded = True
        handler.close_connection = True
        with suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.rfile.close()  # its reference would keep the descriptor open after close()
        sock.close()

    def hang(self) -> None:
        """Answer nothing until the proxy stops, then close the connection."""
        self.responded = True
        self._handler.close_connection = True
        self._proxy._stopping.wait()

    def wait(self, seconds: float) -> bool:
        """Sleep without holding CPU; False if the proxy began to stop meanwhile."""
        return not self._proxy._stopping.wait(seconds)


# --------------------------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------------------------


class Action:
    """What the proxy does with a request a rule picked; subclasses override ``apply``."""

    def apply(self, ex: Exchange) -> None:
        ex.respond(ex.forward())


class Forward(Action):
    """Forward unchanged (a rule that exempts requests from the rules after it)."""


class _Edit(Action):
    """Forward the request, then edit the upstream response before relaying it."""

    def apply(self, ex: Exchange) -> None:
        ex.respond(self.edit(ex.forward(), ex))

    def edit(self, response: Response, ex: Exchange) -> Response:
        raise NotImplementedError


@dataclass(frozen=True)
class Reset(Action):
    """Close the client connection abruptly (RST) without a response."""

    def apply(self, ex: Exchange) -> None:
        ex.reset()


@dataclass(frozen=True)
class Status(Action):
    """Answer ``code`` with an OCI JSON error (or ``body``: bytes, str or JSON-able) instead of forwarding."""

    code: int
    body: bytes | str | dict[str, Any] | list[Any] | None = None
    headers: Mapping[str, str] | None = None

    def apply(self, ex: Exchange) -> None:
        if self.body is None:
            ex.error(self.code, headers=self.headers)
        else:
            ex.reply(self.code, _encode_body(self.body), self.headers)


@dataclass(frozen=True)
class RateLimit(Action):
    """Answer 429 with ``Retry-After`` and a ``TOOMANYREQUESTS`` error."""

    retry_after: float = 1

    def apply(self, ex: Exchange) -> None:
        seconds = self.retry_after
        value = str(int(seconds)) if float(seconds).is_integer() else str(seconds)
        ex.error(429, "TOOMANYREQUESTS", "too many requests", {"Retry-After": value})


@dataclass(frozen=True)
class Delay(Action):
    """Wait ``seconds``, then forward."""

    seconds: float

    def apply(self, ex: Exchange) -> None:
        if ex.wait(self.seconds):
            super().apply(ex)
        else:
            ex.reset()


@dataclass(frozen=True)
class Hang(Action):
    """Accept the request and never answer (until the proxy stops)."""

    def apply(self, ex: Exchange) -> None:
        ex.hang()


@dataclass(frozen=True)
class Truncate(_Edit):
    """Relay the response with its full length announced, cut after ``keep`` bytes (int) or fraction."""

    keep: int | float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.keep, float) and not 0 <= self.keep < 1:
            raise ValueError(f"Truncate(keep={self.keep}): a fraction must be in [0, 1)")
        if self.keep < 0:
            raise ValueError(f"Truncate(keep={self.keep}): cannot keep a negative byte count")

    def edit(self, response: Response, ex: Exchange) -> Response:
        if not ex.has_body(response):
            return response
        keep = self.keep
        if isinstance(keep, float):
            total = response.content_length
            if total is None:
                total = len(response.read())
            keep = int(total * keep)
        response.body = _cut(response.body, keep)
        response.complete = False
        return response


@dataclass(frozen=True)
class FlipBytes(_Edit):
    """Flip one bit in ``count`` bytes of the body, at positions fixed by the seed; the length stays."""

    count: int = 1

    def edit(self, response: Response, ex: Exchange) -> Response:
        if not ex.has_body(response):
            return response
        length = response.content_length
        if length is None:
            length = len(response.read())
        rng = random.Random(f"{ex.seed}:flip:{length}")
        positions = sorted(rng.sample(range(length), min(self.count, length)))
        response.body = _flip(response.body, positions)
        return response


@dataclass(frozen=True)
class MalformedJSON(_Edit):
    """Replace the body by invalid JSON (the real body's first half, then a NUL); Content-Type stays."""

    def edit(self, response: Response, ex: Exchange) -> Response:
        if not ex.has_body(response):
            return response
        original = response.read()
        body = original[: len(original) // 2] + b"\x00"
        response.body = (body,)
        response.set("Content-Length", str(len(body)))
        return response


@dataclass(frozen=True)
class Oversize(_Edit):
    """Serve the real body padded with ``fill`` to ``total_bytes``, streamed, never held in memory.

    ``announce=True`` sends ``Content-Length: total_bytes``; otherwise the body is chunked with no
    length, or with ``keep_length=True`` the original small Content-Length is kept (and overrun).
    """

    total_bytes: int
    announce: bool = False
    keep_length: bool = False
    fill: bytes = b" "

    def __post_init__(self) -> None:
        if not self.fill:
            raise ValueError("Oversize(fill=b''): the fill pattern must not be empty")

    def edit(self, response: Response, ex: Exchange) -> Response:
        if self.announce:
            response.set("Content-Length", str(self.total_bytes))
        elif not self.keep_length:
            response.remove("Content-Length")
        response.body = _padded(response.body, self.total_bytes, self.fill)
        return response


@dataclass(frozen=True)
class HugeBody(Action):
    """Answer ``status`` with a body of ``total_bytes`` made as it is sent, never held in memory: ``fill``
    repeated, or with ``gzip=True`` those bytes gzip-encoded (``Content-Encoding: gzip``; about 1 KiB on
    the wire per MiB, a decompression bomb). ``announce=True`` sends the Content-Length of what goes on
    the wire; otherwise the body is chunked. ``headers`` are added (JSON unless they say otherwise).
    """

    status: int
    total_bytes: int
    gzip: bool = False
    announce: bool = False
    fill: bytes = b" "
    headers: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.total_bytes < 0:
            raise ValueError(f"HugeBody(total_bytes={self.total_bytes}): cannot send a negative byte count")
        if not self.fill or (self.gzip and len(self.fill) != 1):
            raise ValueError(f"HugeBody(fill={self.fill!r}): needs one byte with gzip=True, and never none")

    def apply(self, ex: Exchange) -> None:
        response = Response(
            self.status,
            headers=[("Docker-Distribution-API-Version", "registry/2.0"), ("Content-Type", "application/json")],
        )
        for name, value in (self.headers or {}).items():
            response.set(name, value)
        if self.gzip:
            response.set("Content-Encoding", "gzip")
            body, length = _gzip_bomb(self.total_bytes, self.fill)
        else:
            body, length = _padded((), self.total_bytes, self.fill), self.total_bytes
        if self.announce:
            response.set("Content-Length", str(length))
        response.body = body
        ex.respond(response)


@dataclass(frozen=True)
class Drip(_Edit):
    """Relay the response ``size`` bytes at a time, ``interval`` seconds apart, each read well inside any
    read timeout; ``headers=True`` drips the status line and headers too, else only the body drips."""

    interval: float
    size: int = 1
    headers: bool = False

    def __post_init__(self) -> None:
        if not self.interval >= 0:
            raise ValueError(f"Drip(interval={self.interval}): must be 0 seconds or more")
        if self.size < 1:
            raise ValueError(f"Drip(size={self.size}): must send at least one byte at a time")

    def edit(self, response: Response, ex: Exchange) -> Response:
        if self.headers:
            response.drip = (self.size, self.interval)
        if ex.has_body(response):
            response.body = _dripped(response.body, self.size, self.interval, ex)
        return response


@dataclass(frozen=True)
class LoopLink(_Edit):
    """Add ``Link: <this same URL>; rel="next"``: pagination that never ends."""

    def edit(self, response: Response, ex: Exchange) -> Response:
        response.set("Link", f'<{ex.target}>; rel="next"')
        return response


@dataclass(frozen=True)
class ForeignLink(_Edit):
    """Add a ``Link`` rel="next" that points at another host."""

    url: str

    def edit(self, response: Response, ex: Exchange) -> Response:
        response.set("Link", f'<{self.url}>; rel="next"')
        return response


@dataclass(frozen=True)
class RedirectTo(Action):
    """Answer 307 to ``base_url`` + this request's path, as registries send blob GETs to storage."""

    base_url: str

    def apply(self, ex: Exchange) -> None:
        ex.reply(307, b"", {"Location": self.base_url.rstrip("/") + ex.target})


@dataclass(frozen=True)
class DropHeader(_Edit):
    """Remove a response header (e.g. ``Docker-Content-Digest``)."""

    name: str

    def edit(self, response: Response, ex: Exchange) -> Response:
        response.remove(self.name)
        return response


@dataclass(frozen=True)
class SetHeader(_Edit):
    """Set a response header to a (false) value, e.g. a wrong ``Docker-Content-Digest``."""

    name: str
    value: str

    def edit(self, response: Response, ex: Exchange) -> Response:
        response.set(self.name, self.value)
        return response


@dataclass(frozen=True)
class TagPagination(Action):
    """Page ``GET /v2/<name>/tags/list`` per the OCI distribution spec, which distribution 2.8 ignores.

    Tags are sorted lexically; ``last`` skips up to and including that tag; ``n`` (default
    ``page_size``) caps the page; ``Link: </v2/<name>/tags/list?last=X&n=N>; rel="next"`` is
    added while tags remain. Other requests are forwarded unchanged.
    """

    page_size: int = 100

    def apply(self, ex: Exchange) -> None:
        match = _TAGS_PATH.match(ex.path)
        if ex.method != "GET" or match is None:
            return super().apply(ex)
        params = ex.params
        try:
            n = int(params["n"][-1]) if "n" in params else self.page_size
            if n < 0:
                raise ValueError
        except ValueError:
            return ex.error(400, "PAGINATION_NUMBER_INVALID", "invalid number of results requested")
        last = params["last"][-1] if "last" in params else None
        upstream = ex.forward(ex.path)
        if upstream.status != 200:
            return ex.respond(upstream)
        try:
            document = json.loads(upstream.read())
        except ValueError as exc:
            raise UpstreamError(f"GET {ex.path}: upstream tag list is not JSON: {exc}") from exc
        name = document.get("name") or match["name"]
        tags = sorted(t for t in document.get("tags") or () if last is None or t > last)
        page = tags[:n]
        headers = {k: v for k, v in upstream.headers if k.lower() not in {"content-length", "content-type", "link"}}
        if page and len(tags) > n:
            headers["Link"] = f'<{match.group(0)}?last={quote(page[-1], safe="")}&n={n}>; rel="next"'
        ex.reply(200, json.dumps({"name": name, "tags": page}).encode(), headers)


class TokenBucket(Action):
    """Answer 429 (``TOOMANYREQUESTS``, ``Retry-After``) above a request rate, forward below it: a bucket
    of ``burst`` tokens refilled at ``rate`` per second, one token per request, shared by every request the
    rule picks (one instance per proxy). ``refused`` and ``admitted`` count the two outcomes."""

    def __init__(self, rate: float, burst: int = 1, retry_after: float = 1):
        if not rate > 0 or burst < 1:
            raise ValueError(f"TokenBucket(rate={rate}, burst={burst}): needs a positive rate and burst")
        self.rate, self.burst, self.retry_after = rate, burst, retry_after
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._at = time.monotonic()
        self.refused = self.admitted = 0

    def _take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1:
                self.refused += 1
                return False
            self._tokens -= 1
            self.admitted += 1
            return True

    def apply(self, ex: Exchange) -> None:
        if self._take():
            return super().apply(ex)
        RateLimit(self.retry_after).apply(ex)


class PullQuota(Action):
    """Docker Hub's pull quota, on manifest requests: every manifest GET takes one pull, HEADs are free,
    and every answer carries ``ratelimit-limit: <limit>;w=<window>`` and ``ratelimit-remaining:
    <left>;w=<window>``; once none is left a GET gets 429 ``TOOMANYREQUESTS``
    (https://docs.docker.com/docker-hub/usage/pulls/). ``remaining`` starts at ``limit`` unless given;
    ``counted`` is the requests that took a pull, ``refused`` those answered 429. ``counts_heads=True``: a
    registry whose quota counts HEADs too (Docker Hub's does not)."""

    def __init__(self, limit: int, *, remaining: int | None = None, window: int = 21600, counts_heads: bool = False):
        self.limit, self.window = limit, window
        self.remaining = limit if remaining is None else remaining
        self.counted_methods = ("GET", "HEAD") if counts_heads else ("GET",)
        self._lock = threading.Lock()
        self.counted = self.refused = 0

    def apply(self, ex: Exchange) -> None:
        with self._lock:
            counted = ex.method in self.counted_methods
            refused = counted and self.remaining <= 0
            if counted and not refused:
                self.remaining -= 1
                self.counted += 1
            self.refused += refused
            headers = {
                "ratelimit-limit": f"{self.limit};w={self.window}",
                "ratelimit-remaining": f"{self.remaining};w={self.window}",
            }
        if refused:
            message = "You have reached your pull rate limit. You may increase the limit by authenticating."
            return ex.error(429, "TOOMANYREQUESTS", message, headers)
        response = ex.forward()
        for name, value in headers.items():
            response.set(name, value)
        ex.respond(response)


class GoogleTagList(Action):
    """Extend ``GET /v2/<name>/tags/list`` as Google Artifact Registry and GCR do: the registry's answer plus
    ``"manifest": {digest: {"imageSizeBytes", "mediaType", "tag": [...], "timeCreatedMs",
    "timeUploadedMs"}}`` and ``"child": []``. ``manifests`` maps a repository name to the map to add, as
    the caller wrote it; other repositories and requests are forwarded unchanged."""

    def __init__(self, manifests: Mapping[str, Mapping[str, Mapping[str, Any]]]):
        self.manifests = manifests

    def apply(self, ex: Exchange) -> None:
        match = _TAGS_PATH.match(ex.path)
        if ex.method != "GET" or match is None or match["name"] not in self.manifests:
            return super().apply(ex)
        upstream = ex.forward()
        if upstream.status != 200:
            return ex.respond(upstream)
        try:
            document = json.loads(upstream.read())
        except ValueError as exc:
            raise UpstreamError(f"GET {ex.path}: upstream tag list is not JSON: {exc}") from exc
        document["child"] = []
        document["manifest"] = self.manifests[match["name"]]
        headers = {k: v for k, v in upstream.headers if k.lower() not in {"content-length", "content-type"}}
        ex.reply(200, json.dumps(document).encode(), headers)


# --------------------------------------------------------------------------------------------
# Rules and statistics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, eq=False)
class Rule:
    """When to apply ``action``: all given conditions must hold; the first rule that fires wins.

    ``path`` is a regex searched in the request target (query included); ``method`` one method or
    several; ``every=N`` fires on every Nth matching request; ``probability=p`` draws from a
    generator seeded by the proxy's seed and the rule's position (deterministic); ``times=N``
    stops firing after N applications (requests then fall through to the next rules).
    """

    action: Action
    path: str | re.Pattern[str] | None = None
    method: str | Iterable[str] | None = None
    every: int | None = None
    probability: float | None = None
    times: int | None = None
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, default=None)
    _methods: frozenset[str] | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if not isinstance(self.action, Action):
            raise TypeError(f"Rule(action={self.action!r}): not an Action instance")
        if self.every is not None and self.every < 1:
            raise ValueError(f"Rule(every={self.every}): must be at least 1")
        if self.probability is not None and not 0 <= self.probability <= 1:
            raise ValueError(f"Rule(probability={self.probability}): must be within [0, 1]")
        if self.times is not None and self.times < 0:
            raise ValueError(f"Rule(times={self.times}): must not be negative")
        pattern = re.compile(self.path) if isinstance(self.path, str) else self.path
        methods = {self.method} if isinstance(self.method, str) else self.method
        object.__setattr__(self, "_pattern", pattern)
        object.__setattr__(self, "_methods", None if methods is None else frozenset(m.upper() for m in methods))

    def matches(self, method: str, target: str) -> bool:
        """Whether the request is one this rule is about (before ``every``/``probability``/``times``)."""
        return (self._methods is None or method.upper() in self._methods) and (
            self._pattern is None or self._pattern.search(target) is not None
        )


@dataclass(frozen=True)
class RuleStats:
    """How often a rule's conditions matched and how often its action was applied."""

    rule: Rule
    matched: int
    applied: int


@dataclass(frozen=True)
class ProxyStats:
    """A snapshot of the proxy's counters."""

    requests: int
    forwarded: int
    connections: int
    upstream_connections: int
    actions: dict[str, int]
    rules: tuple[RuleStats, ...]
    bytes_sent: int = 0  # response body bytes the clients' sockets accepted (headers and framing not counted)
    peak_connections: int = 0  # the most client connections open at once


class _RuleState:
    def __init__(self, rule: Rule, rng: random.Random):
        self.rule = rule
        self.rng = rng
        self.matched = 0
        self.applied = 0

    def fires(self, method: str, target: str) -> bool:
        if not self.rule.matches(method, target):
            return False
        self.matched += 1
        rule = self.rule
        if rule.times is not None and self.applied >= rule.times:
            return False
        if rule.every is not None and self.matched % rule.every:
            return False
        if rule.probability is not None and self.rng.random() >= rule.probability:
            return False
        self.applied += 1
        return True


# --------------------------------------------------------------------------------------------
# The servers
# --------------------------------------------------------------------------------------------


class _Upstream:
    def __init__(self, url: str, ca_path: str | os.PathLike[str] | None):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream {url!r}: expected http://host[:port] or https://host[:port]")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError(f"upstream {url!r}: a registry base URL has no path or query")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.netloc = parts.netloc
        self.host = parts.hostname
        self.port = parts.port
        self.ssl = ssl.create_default_context(cafile=ca_path) if parts.scheme == "https" else None

    def connect(self, timeout: float, on_connect: Callable[[], None]) -> http.client.HTTPConnection:
        conn: _HTTP | _HTTPS
        if self.ssl is None:
            conn = _HTTP(self.host, self.port, timeout=timeout, blocksize=_CHUNK)
        else:
            conn = _HTTPS(self.host, self.port, timeout=timeout, context=self.ssl, blocksize=_CHUNK)
        conn.on_connect = on_connect
        return conn


class _Counted:
    """Reports each TCP connect, including http.client's silent reconnects."""

    on_connect: Callable[[], None]

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.on_connect()


class _HTTP(_Counted, http.client.HTTPConnection):
    pass


class _HTTPS(_Counted, http.client.HTTPSConnection):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self._upstream: http.client.HTTPConnection | None = None
        self._upstream_used = False
        self.server.track(self)

    def finish(self) -> None:
        self.server.untrack(self)
        self.drop_upstream()
        with suppress(OSError):
            super().finish()

    def upstream_connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This client connection's upstream connection, and whether it served a request before."""
        proxy = self.server.proxy
        if self._upstream is None:
            assert proxy._upstream is not None
            self._upstream = proxy._upstream.connect(proxy.timeout, lambda: proxy._count("upstream_connections"))
            self._upstream_used = False
        reused, self._upstream_used = self._upstream_used, True
        return self._upstream, reused

    def drop_upstream(self) -> None:
        conn, self._upstream = self._upstream, None
        if conn is not None:
            conn.close()

    def _serve(self) -> None:
        self.server.proxy._serve(Exchange(self, self.server.proxy))

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, proxy: FaultProxy):
        self.proxy = proxy
        self._live: dict[socket.socket, threading.Thread] = {}
        self._handlers: set[_Handler] = set()
        self._live_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            daemon=True,
            name=f"faultproxy-{self.server_address[1]}-conn",
        )
        with self._live_lock:
            self._live[request] = thread
            open_now = len(self._live)
        self.proxy._count("connections")
        self.proxy._peak("connections", open_now)
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self._live_lock:
            self._live.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up is routine here; anything else is a bug worth a warning."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, http.client.HTTPException)):
            log.debug("connection from %s ended: %s", client_address, exc)
        else:
            log.warning("connection from %s failed", client_address, exc_info=True)

    def track(self, handler: _Handler) -> None:
        with self._live_lock:
            self._handlers.add(handler)

    def untrack(self, handler: _Handler) -> None:
        with self._live_lock:
            self._handlers.discard(handler)

    def close_connections(self, timeout: float) -> None:
        """Wake every connection thread (idle keep-alive, hanging, streaming, waiting on the upstream)."""
        deadline = time.monotonic() + timeout
        with self._live_lock:
            live = list(self._live.items())
            upstreams = [h._upstream for h in self._handlers]
        sockets = [sock for sock, _ in live]
        sockets += [c.sock for c in upstreams if c is not None and c.sock is not None]
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for _, thread in live:
            thread.join(max(0.0, deadline - time.monotonic()))


class FaultProxy:
    """A reverse proxy on 127.0.0.1 (free port) in front of ``upstream_url`` that injects faults by rule.

    ``ca_path`` verifies an https upstream; ``seed`` makes probabilities and flipped positions
    reproducible; ``latency`` delays every request by that many seconds (a remote registry);
    ``timeout`` bounds each upstream connect and read. Without an ``upstream_url`` only rules that
    answer by themselves (``Status``, or ``RecordingServer``'s fixed body) have anything to send.
    """

    scheme = "http"

    def __init__(
        self,
        upstream_url: str | None,
        *,
        ca_path: str | os.PathLike[str] | None = None,
        seed: int = 0,
        latency: float = 0.0,
        timeout: float = 60.0,
    ):
        self._upstream = _Upstream(upstream_url, ca_path) if upstream_url is not None else None
        self.seed = seed
        self.latency = latency
        self.timeout = timeout
        self._lock = threading.Lock()
        self._rules: list[_RuleState] = []
        self._counts: Counter[str] = Counter()
        self._actions: Counter[str] = Counter()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} already running at {self.url}")
        self._stopping.clear()
        self._server = _Server(self)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"faultproxy-{self.port}",
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop listening, wake hanging or idle connections, and close them; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections(timeout)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The listening port (still readable after ``stop``, so messages can name it)."""
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} was never started: use it as a context manager")
        return self._port

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def upstream_url(self) -> str | None:
        return self._upstream.origin if self._upstream else None

    # -- rules and counters ----------------------------------------------------------------

    def add_rule(self, rule: Rule) -> Rule:
        """Append ``rule`` (rules are tried in the order added) and return it."""
        with self._lock:
            rng = random.Random(f"{self.seed}:rule:{len(self._rules)}")
            self._rules.append(_RuleState(rule, rng))
        return rule

    def clear_rules(self) -> None:
        """Remove every rule; counters of requests and actions are kept."""
        with self._lock:
            self._rules.clear()

    @property
    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(
                requests=self._counts["requests"],
                forwarded=self._counts["forwarded"],
                connections=self._counts["connections"],
                upstream_connections=self._counts["upstream_connections"],
                actions=dict(self._actions),
                rules=tuple(RuleStats(s.rule, s.matched, s.applied) for s in self._rules),
                bytes_sent=self._counts["bytes_sent"],
                peak_connections=self._counts["peak_connections"],
            )

    def reset_peak(self) -> None:
        """Start counting the most connections open at once afresh (e.g. after a warm-up)."""
        with self._lock:
            self._counts["peak_connections"] = 0

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def _peak(self, key: str, value: int) -> None:
        with self._lock:
            self._counts[f"peak_{key}"] = max(self._counts[f"peak_{key}"], value)

    def _pick(self, method: str, target: str) -> Action | None:
        with self._lock:
            for state in self._rules:
                if state.fires(method, target):
                    self._actions[type(state.rule.action).__name__] += 1
                    return state.rule.action
        return None

    # -- serving ---------------------------------------------------------------------------

    def _default_action(self) -> Action:
        return Forward()

    def _on_request(self, ex: Exchange) -> None:
        """Hook for subclasses: called once per request before any rule."""

    def _serve(self, ex: Exchange) -> None:
        self._count("requests")
        self._on_request(ex)
        if self.latency and not ex.wait(self.latency):
            return ex.reset()
        action = self._pick(ex.method, ex.target) or self._default_action()
        try:
            action.apply(ex)
        except UpstreamError as exc:
            log.debug("%s", exc)
            if ex.responded:
                ex._handler.close_connection = True
            else:
                ex.error(exc.status, "UNAVAILABLE", str(exc))
        except (OSError, http.client.HTTPException, ValueError):
            ex._handler.close_connection = True
            raise
        finally:
            ex._release_upstream()


class RecordedRequest(NamedTuple):
    """A request as a ``RecordingServer`` received it; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]


class RecordingServer(FaultProxy):
    """A second local listener that records every request, then serves the upstream's bytes or ``body``.

    It is the far end of ``RedirectTo``: tests check what a client sent after following a redirect
    (e.g. that it dropped ``Authorization``) while the client still gets real blob bytes. ``path``
    in each record is the request target, query included.
    """

    def __init__(
        self,
        upstream_url: str | None = None,
        *,
        body: bytes | None = None,
        content_type: str = "application/octet-stream",
        ca_path: str | os.PathLike[str] | None = None,
        seed: int = 0,
        timeout: float = 60.0,
    ):
        if upstream_url is None and body is None:
            raise ValueError("RecordingServer needs an upstream_url to proxy to or a fixed body")
        super().__init__(
            upstream_url,
            ca_path=ca_path,
            seed=seed,
            timeout=timeout,
        )
        self._body = body
        self._content_type = content_type
        self._requests: list[RecordedRequest] = []

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def _on_request(self, ex: Exchange) -> None:
        headers = {k.lower(): v for k, v in ex.headers.items()}
        with self._lock:
            self._requests.append(RecordedRequest(ex.method, ex.target, headers))

    def _default_action(self) -> Action:
        if self._body is None:
            return Forward()
        return Status(200, body=self._body, headers={"Content-Type": self._content_type})


# --------------------------------------------------------------------------------------------
# Body helpers
# --------------------------------------------------------------------------------------------


class _LimitedReader:
    """A file-like view of exactly ``length`` request-body bytes, so http.client streams it upstream."""

    def __init__(self, rfile: io.BufferedIOBase, length: int):
        self._rfile = rfile
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size < 0 else min(size, self._left)
        data = self._rfile.read(size)
        if not data:
            raise ConnectionError(f"client closed the connection with {self._left} body bytes unsent")
        self._left -= len(data)
        return data


def _dechunk(rfile: io.BufferedIOBase) -> Iterator[bytes]:
    """Decode a chunked request body as it arrives."""
    while True:
        line = rfile.readline(1024)
        if not line:
            raise ConnectionError("client closed the connection inside a chunked body")
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline(1024).strip():
                pass
            return
        while size:
            data = rfile.read(min(size, _CHUNK))
            if not data:
                raise ConnectionError("client closed the connection inside a chunked body")
            size -= len(data)
            yield data
        rfile.readline(1024)


def _stream(resp: http.client.HTTPResponse) -> Iterator[bytes]:
    """The upstream body in blocks; an upstream that breaks off ends it early (the client sees a cut)."""
    try:
        while chunk := resp.read(_CHUNK):
            yield chunk
    except (http.client.IncompleteRead, OSError) as exc:
        log.debug("upstream body ended early: %s", exc)


def _cut(body: Iterable[bytes], keep: int) -> Iterator[bytes]:
    for chunk in body:
        if keep <= 0:
            return
        yield chunk[:keep]
        keep -= len(chunk)


def _flip(body: Iterable[bytes], positions: list[int]) -> Iterator[bytes]:
    offset = 0
    todo = iter(positions)
    nxt = next(todo, None)
    for chunk in body:
        end = offset + len(chunk)
        if nxt is not None and nxt < end:
            data = bytearray(chunk)
            while nxt is not None and nxt < end:
                data[nxt - offset] ^= 0x01
                nxt = next(todo, None)
            chunk = bytes(data)
        offset = end
        yield chunk


def _padded(body: Iterable[bytes], total: int, fill: bytes) -> Iterator[bytes]:
    sent = 0
    for chunk in body:
        if sent >= total:
            break
        chunk = chunk[: total - sent]
        sent += len(chunk)
        yield chunk
    block = memoryview((fill * (_CHUNK // len(fill) + 1))[:_CHUNK])
    while sent < total:
        piece = block[: min(_CHUNK, total - sent)]
        sent += len(piece)
        yield piece  # type: ignore[misc]


def _dripped(body: Iterable[bytes], size: int, interval: float, ex: Exchange) -> Iterator[bytes]:
    for chunk in body:
        for start in range(0, len(chunk), size):
            if not ex.wait(interval):
                return
            yield chunk[start : start + size]


_MIB = 1024 * 1024
# A gzip member header: deflate, no name, no time stamp, unknown OS.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
# A final, empty deflate block: ends the stream after blocks that each ended with a full flush.
_DEFLATE_END = b"\x03\x00"


@functools.lru_cache(maxsize=16)
def _deflated(fill: bytes, size: int) -> bytes:
    """``fill * size`` deflated and fully flushed: it needs nothing before it, so copies can follow each other."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(fill * size) + compressor.flush(zlib.Z_FULL_FLUSH)


def _gzip_bomb(total: int, fill: bytes) -> tuple[Iterator[bytes], int]:
    """A gzip body that decodes to ``fill * total``, and its length on the wire; a MiB block is deflated
    once and repeated, so even gigabytes cost little to make."""
    full, rest = divmod(total, _MIB)
    block = _deflated(fill, _MIB) if full else b""
    tail = _deflated(fill, rest) if rest else b""
    length = len(_GZIP_HEADER) + full * len(block) + len(tail) + len(_DEFLATE_END) + 8

    def body() -> Iterator[bytes]:
        yield _GZIP_HEADER
        plain = fill * _MIB if full else b""
        crc = 0
        for _ in range(full):
            crc = zlib.crc32(plain, crc)
            yield block
        if rest:
            crc = zlib.crc32(fill * rest, crc)
            yield tail
        yield _DEFLATE_END + struct.pack("<II", crc, total & 0xFFFFFFFF)

    return body(), length


def _starts_with_origin(url: str, origin: str) -> bool:
    return url.startswith(origin) and url[len(origin) : len(origin) + 1] in ("", "/", "?")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _error_body(status: int, code: str | None = None, message: str | None = None) -> bytes:
    error = {
        "code": code or _OCI_CODES.get(status, "UNKNOWN"),
        "message": message or _phrase(status).lower(),
        "detail": None,
    }
    return json.dumps({"errors": [error]}).encode()


def _encode_body(body: bytes | str | dict[str, Any] | list[Any]) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()
