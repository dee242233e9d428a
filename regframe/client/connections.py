"""Keep-alive connections to the registry's own origin, on the standard library's http.client.

A crawl is thousands of small requests to one origin. urllib3's pool and response objects cost about as
much client CPU per request as http.client itself, which on a registry next door is what bounds a crawl,
so requests to the registry go through these connections. urllib3 still carries everything else:
redirects to other hosts (blob storage), and every request when a proxy is configured.

What leaves this module is what the transport maps at its one boundary: ``ConnectFailed`` and
``ConnectTimedOut`` while connecting, ``urllib3.exceptions.SSLError`` for TLS, ``StaleConnection`` when a
kept-alive connection turns out closed before any answer (the transport sends the request again),
``ProtocolError`` for a malformed or cut-short answer, and the socket's own ``TimeoutError`` and
``OSError``.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import warnings
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import BinaryIO, cast

from urllib3 import HTTPHeaderDict
from urllib3.exceptions import InsecureRequestWarning, LocationParseError, ProtocolError, SSLError
from urllib3.util.wait import wait_for_read

from .budget import TimedSocket, sending

# Compressed bodies are inflated in steps of at most this many bytes of input.
_INFLATE_STEP = 64 * 1024
# No single read asks for more than this, so a body of unknown length never makes a huge buffer.
_READ_STEP = 1 << 20
# http.client's limits on a response head.
_MAX_LINE = 65536
_MAX_HEADERS = 100


class ConnectFailed(OSError):
    """Nothing accepted a connection at the registry's address (refused, unreachable, unknown host)."""


class StaleConnection(ConnectionResetError):
    """A kept-alive connection turned out closed before any answer: the server's idle timeout raced the
    request. Sending it again on a new connection is safe for what the transport retries."""


class ConnectTimedOut(TimeoutError):
    """The registry's address did not accept a connection within ``open_timeout``."""


def read_head(fp: BinaryIO) -> list[tuple[str, str]]:
    """The header fields of a response, up to the blank line, with http.client's limits (65,536 bytes a
    line, 100 fields). Folded lines continue the field before them; a line without a colon is skipped."""
    fields: list[tuple[str, str]] = []
    lines = 0
    while True:
        line = fp.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            return fields
        lines += 1
        if lines > _MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")
        text = line.decode("iso-8859-1")
        if text[0] in " \t":
            if fields:
                name, value = fields[-1]
                fields[-1] = (name, f"{value} {text.strip()}".strip())
            continue
        name, colon, value = text.partition(":")
        if colon:
            fields.append((name.strip(), value.strip()))


class RegistryResponse(http.client.HTTPResponse):
    """http.client's response, its socket read through the ``Budget`` of the request that asked for it."""

    def __init__(self, sock: socket.socket, debuglevel: int = 0, method: str | None = None, url: str | None = None):
        budget = getattr(sending, "budget", None)
        if budget is None:
            super().__init__(sock, debuglevel, method, url)
            return
        budget.start()
        # http.client only calls makefile() on what it is given; typeshed asks for a real socket.
        super().__init__(TimedSocket(sock, budget), debuglevel, method, url)  # type: ignore[arg-type]


class DirectAnswer(RegistryResponse):
    """A ``RegistryResponse`` whose head is parsed without the email package (which took a sixth of a
    crawl's client CPU) into urllib3's case-insensitive ``HTTPHeaderDict``; the status line, the body's
    framing and connection reuse are http.client's own."""

    fields: HTTPHeaderDict

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            read_head(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.fields = HTTPHeaderDict(read_head(self.fp))
        # http.client reads its own fields with get() only, which HTTPHeaderDict has, case-insensitive.
        self.headers = self.msg = self.fields
        encoding = self.fields.get("transfer-encoding")
        self.chunked = bool(encoding) and encoding.lower() == "chunked"
        self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = self.fields.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            if self.length is not None and self.length < 0:
                self.length = None
        bodiless = status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or 100 <= status < 200
        if bodiless or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


def tls_context(options: Mapping[str, str]) -> ssl.SSLContext:
    """An SSL context from ``transport.ca_settings``'s options: the given CA file or folder, else the system
    store; ``cert_reqs=CERT_NONE`` turns every check off."""
    context = ssl.create_default_context(cafile=options.get("ca_certs"), capath=options.get("ca_cert_dir"))
    if options.get("cert_reqs") == "CERT_NONE":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Connection(http.client.HTTPConnection):
    """One keep-alive connection: connects within ``open_timeout``, then waits ``read_timeout`` for data,
    with TCP_NODELAY (a request is one small write; Nagle's algorithm would hold it back)."""

    response_class = DirectAnswer

    def __init__(self, host: str, port: int, open_timeout: float, read_timeout: float, tls: ssl.SSLContext | None):
        super().__init__(host, port, timeout=read_timeout)
        self._open_timeout = open_timeout
        self._tls = tls
        self.reused = False

    def connect(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), self._open_timeout)
        except TimeoutError as exc:
            raise ConnectTimedOut(f"no connection to {self.host}:{self.port} within {self._open_timeout} s") from exc
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self.timeout)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
                if self._tls.verify_mode == ssl.CERT_NONE:
                    warnings.warn(
                        f"the TLS certificate of {self.host}:{self.port} is not checked (verify=False)",
                        InsecureRequestWarning,
                        stacklevel=2,
                    )
        except ssl.SSLError as exc:
            sock.close()
            raise SSLError(exc) from exc
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def dropped(self) -> bool:
        """Whether an idle connection was closed by the server (or has unasked-for bytes waiting)."""
        return self.sock is None or wait_for_read(self.sock, timeout=0.0)


class Connections:
    """Idle connections to one origin, reused most recent first. A connection is opened only when none is
    idle, so the connections open at once never exceed the requests in flight at once."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        open_timeout: float,
        read_timeout: float,
        tls: ssl.SSLContext | None,
        maxsize: int,
        headers: Mapping[str, str],
    ):
        self.host, self.port = host, port
        self._open_timeout, self._read_timeout, self._tls = open_timeout, read_timeout, tls
        self.maxsize = maxsize
        self._headers = dict(headers)
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    def _take(self) -> Connection:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not conn.dropped():
                    conn.reused = True
                    return conn
                conn.close()
        return self._new()

    def _new(self) -> Connection:
        return Connection(self.host, self.port, self._open_timeout, self._read_timeout, self._tls)

    def give_back(self, conn: Connection) -> None:
        with self._lock:
            if conn.sock is not None and len(self._idle) < self.maxsize:
                self._idle.append(conn)
                return
        conn.close()

    def keep(self, count: int) -> None:
        """Keep up to ``count`` idle connections."""
        with self._lock:
            self.maxsize = max(self.maxsize, count)

    def close_idle(self, keep: int) -> int:
        """Close idle connections beyond the ``keep`` most recently used; how many closed."""
        with self._lock:
            stale = self._idle[: max(0, len(self._idle) - keep)]
            del self._idle[: len(stale)]
        for conn in stale:
            conn.close()
        return len(stale)

    def clear(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def send(
        self, method: str, target: str, body: bytes | Iterable[bytes] | None, headers: Mapping[str, str]
    ) -> DirectResponse:
        """Send one request and read its status and headers; the body is left to the response."""
        conn = self._take()
        try:
            conn.request(method, target, body=body, headers={**self._headers, **headers})
            answer = conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError) as exc:
            # A clean close before any byte of an answer (not a reset): what a server's idle timeout does.
            conn.close()
            if conn.reused:
                raise StaleConnection(f"a reused connection was closed before any answer ({exc})") from exc
            raise
        except http.client.InvalidURL as exc:
            conn.close()
            raise LocationParseError(target[:200]) from exc
        except http.client.HTTPException as exc:
            conn.close()
            raise ProtocolError(f"malformed answer: {type(exc).__name__} {str(exc)[:200]}") from exc
        except BaseException:
            conn.close()
            raise
        return DirectResponse(cast(DirectAnswer, answer), conn, self)


class DirectResponse:
    """An http.client answer with the part of urllib3's response API the transport uses: ``read`` and
    ``stream`` (gzip and deflate inflated in bounded steps; a body shorter than its Content-Length is an
    error), ``drain_conn``, ``release_conn`` (the connection goes back only when the body was read to its
    end) and ``close``."""

    __slots__ = ("_answer", "_conn", "_inflate", "_owner", "_pending", "headers", "status")

    def __init__(self, answer: DirectAnswer, conn: Connection, owner: Connections):
        self._answer = answer
        self._conn: Connection | None = conn
        self._owner = owner
        self.status = answer.status
        self.headers = answer.fields
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
        self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 32) if encoding in ("gzip", "x-gzip", "deflate") else None
        self._pending = b""

    @property
    def length_remaining(self) -> int | None:
        return self._answer.length

    def _read_raw(self, amt: int) -> bytes:
        """Up to ``amt`` bytes as sent, fewer only at the end of the body."""
        answer = self._answer
        parts: list[bytes] = []
        left = amt
        try:
            while left > 0:
                expected = answer.length
                data = answer.read(min(left, _READ_STEP))
                if not data:
                    if expected:
                        raise ProtocolError(f"body cut short: {expected} bytes of it never arrived")
                    break
                parts.append(data)
                left -= len(data)
        except http.client.HTTPException as exc:
            raise ProtocolError(f"body cut short: {type(exc).__name__}") from exc
        return b"".join(parts)

    def read(self, amt: int, decode_content: bool = True) -> bytes:
        """Up to ``amt`` bytes of the body, inflated when ``decode_content``; fewer only at its end."""
        inflate = self._inflate
        if inflate is None or not decode_content:
            return self._read_raw(amt)
        out = bytearray(self._pending)
        while len(out) < amt and not inflate.eof:
            data = inflate.unconsumed_tail or self._read_raw(_INFLATE_STEP)
            if not data:
                break
            try:
                out += inflate.decompress(data, amt - len(out))
            except zlib.error as exc:
                raise ProtocolError(f"body is not valid {self.headers.get('Content-Encoding')}: {exc}") from exc
        self._pending = bytes(out[amt:])
        return bytes(out[:amt])

    def stream(self, amt: int, decode_content: bool = True) -> Iterator[bytes]:
        while True:
            data = self.read(amt, decode_content)
            if not data:
                return
            yield data

    def drain_conn(self) -> None:
        """Read the rest of a body of known length (the caller knows it is small), so the connection can be
        reused; a body of unknown length is left, and the connection is then closed, not reused."""
        answer = self._answer
        if answer.isclosed() or answer.length is None:
            return
        try:
            answer.read()
        except http.client.HTTPException as exc:
            raise ProtocolError(f"body cut short: {type(exc).__name__}") from exc

    def release_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._answer.isclosed() and not self._answer.will_close:
            self._owner.give_back(conn)
        else:
            conn.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._answer.close()
        if conn is not None:
            conn.close()
