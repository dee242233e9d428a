"""Keep-alive connections to the registry's own origin: HTTP/1.1 written and read here.

A crawl is thousands of small requests to one origin, and on a registry next door the client's CPU per
request is what bounds it. http.client spends most of its time per request validating each header one
call at a time and parsing the answer's head with the email package; urllib3 adds its pool and response
objects on top. These connections write a request in one piece and read the answer from one buffer per
connection; the rules are http.client's (its status-line checks, its head limits, its keep-alive and
framing decisions: Content-Length, chunked, or until close). urllib3 still carries everything else:
redirects to other hosts (blob storage), and every request when a proxy is configured.

What leaves this module is what the transport maps at its one boundary: ``ConnectFailed`` and
``ConnectTimedOut`` while connecting, ``urllib3.exceptions.SSLError`` for TLS, ``StaleConnection`` when a
kept-alive connection turns out closed before any answer (the transport sends the request again),
``ProtocolError`` for a malformed or cut-short answer, ``LocationParseError`` for a target that cannot
be sent, and the socket's own ``TimeoutError`` and ``OSError``.
"""

from __future__ import annotations

import http.client
import re
import select
import socket
import ssl
import threading
import zlib
from collections.abc import Iterator, Mapping
from typing import Protocol

from urllib3.exceptions import LocationParseError, ProtocolError, SSLError
from urllib3.util.wait import wait_for_read

from .budget import Budget, TimedSocket, sending
from .headers import field, header_dict

# Compressed bodies are inflated in steps of at most this many bytes of input.
_INFLATE_STEP = 64 * 1024
# No single read asks for more than this, so a body of unknown length never makes a huge buffer.
_READ_STEP = 1 << 20
# What one receive asks the socket for: a registry's usual answer, head and body, in one.
_RECV_SIZE = 64 * 1024
# A request body up to this size goes out in the same write as the head; a larger one is not copied.
_JOINED_BODY = 64 * 1024
# http.client's limits on a response head.
_MAX_LINE = 65536
_MAX_HEADERS = 100
# RFC 9110 tokens (methods, field names); a target or value must not break out of its line.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]").search
_BAD_VALUE = re.compile(r"[\r\n\x00]").search
_BODY_METHODS = frozenset({"PATCH", "POST", "PUT"})
_BODILESS = frozenset({http.client.NO_CONTENT, http.client.NOT_MODIFIED})


class ConnectFailed(OSError):
    """Nothing accepted a connection at the registry's address (refused, unreachable, unknown host)."""


class StaleConnection(ConnectionResetError):
    """A kept-alive connection turned out closed before any answer: the server's idle timeout raced the
    request. Sending it again on a new connection is safe for what the transport retries."""


class ConnectTimedOut(TimeoutError):
    """The registry's address did not accept a connection within ``open_timeout``."""


class _Lines(Protocol):
    def readline(self, limit: int, /) -> bytes: ...


def read_head(fp: _Lines) -> list[tuple[str, str]]:
    """The header fields of a response, up to the blank line, with http.client's limits (65,536 bytes a
    line, 100 fields). Folded lines continue the field before them; a line without a colon is skipped."""
    return parse_fields(_field_lines(fp))


def _field_lines(fp: _Lines) -> list[bytes]:
    """The lines up to the blank line, with ``read_head``'s limits."""
    lines: list[bytes] = []
    while True:
        line = fp.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            return lines
        if len(lines) == _MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")
        lines.append(line)


def parse_fields(lines: list[bytes]) -> list[tuple[str, str]]:
    """Field lines (each non-empty, with or without its line end) as (name, value) pairs; see ``read_head``."""
    fields: list[tuple[str, str]] = []
    for line in lines:
        text = line.decode("iso-8859-1")
        if text[0] in " \t":
            if fields:
                name, value = fields[-1]
                fields[-1] = (name, f"{value} {text.strip()}".strip())
            continue
        name, colon, value = text.partition(":")
        if colon:
            fields.append((name.strip(), value.strip()))
    return fields


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


def tls_context(options: Mapping[str, str]) -> ssl.SSLContext:
    """An SSL context from ``transport.ca_settings``'s options: the given CA file or folder, else the system
    store; ``cert_reqs=CERT_NONE`` turns every check off."""
    context = ssl.create_default_context(cafile=options.get("ca_certs"), capath=options.get("ca_cert_dir"))
    if options.get("cert_reqs") == "CERT_NONE":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Connection:
    """One keep-alive connection: connects within ``open_timeout``, then waits ``read_timeout`` for data
    (or what the current answer's ``Budget`` leaves), with TCP_NODELAY (a request is one small write;
    Nagle's algorithm would hold it back). Reads come from one buffer kept across answers."""

    def __init__(self, host: str, port: int, open_timeout: float, read_timeout: float, tls: ssl.SSLContext | None):
        self.host, self.port = host, port
        self.timeout = read_timeout
        self._open_timeout = open_timeout
        self._tls = tls
        self.reused = False
        self.sock: socket.socket | None = None
        self._wire: TimedSocket | None = None
        self._readable: select.poll | None = None
        self._buffer = b""
        self._at = 0

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
        except ssl.SSLError as exc:
            sock.close()
            raise SSLError(exc) from exc
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._wire = TimedSocket(sock)
        if hasattr(select, "poll"):  # one poller a connection, asked before each reuse (not on Windows)
            self._readable = select.poll()
            self._readable.register(sock, select.POLLIN)

    def dropped(self) -> bool:
        """Whether an idle connection was closed by the server (or has unasked-for bytes waiting)."""
        if self.sock is None or self.leftover():
            return True
        return bool(self._readable.poll(0)) if self._readable is not None else wait_for_read(self.sock, timeout=0.0)

    def leftover(self) -> bool:
        """Whether bytes beyond the last answer were received: the connection's framing cannot be trusted."""
        return self._at < len(self._buffer)

    def close(self) -> None:
        sock, self.sock, self._wire, self._readable = self.sock, None, None, None
        self._buffer, self._at = b"", 0
        if sock is not None:
            sock.close()

    def send(self, head: bytes, body: bytes | None, budget: Budget | None) -> None:
        """Write a request; the answer's reads are then bounded by ``budget``."""
        if self.sock is None:
            self.connect()
        assert self.sock is not None and self._wire is not None
        if body and len(body) > _JOINED_BODY:
            self.sock.sendall(head)
            self.sock.sendall(body)
        else:
            self.sock.sendall(head + body if body else head)
        self._wire.budget = budget
        if budget is not None:
            budget.start()

    def _receive(self) -> bytes:
        assert self._wire is not None
        return self._wire.recv(_RECV_SIZE)

    def head_lines(self) -> list[bytes]:
        """The next answer's status line and field lines, within ``read_head``'s limits. A head that is whole
        in the buffer after at most one receive (the usual case) is split in one pass; any other is read
        line by line."""
        buffer, at = self._buffer, self._at
        if at == len(buffer):
            data = self._receive()
            self._buffer, self._at = buffer, at = data, 0
        end = buffer.find(b"\r\n\r\n", at, at + _MAX_LINE)
        if end >= 0:
            block = buffer[at:end]
            lines = block.split(b"\r\n")
            if len(lines) <= _MAX_HEADERS + 1 and block.count(b"\n") < len(lines) and lines[0]:
                self._at = end + 4
                return lines
        status = self.readline(_MAX_LINE + 1)
        if len(status) > _MAX_LINE:
            raise http.client.LineTooLong("status line")
        return [status, *_field_lines(self)]

    def readline(self, limit: int) -> bytes:
        """One line, its newline included; at most ``limit`` bytes; what is left at the end of the stream.
        A line that arrives a few bytes at a time is gathered in linear time."""
        buffer, at = self._buffer, self._at
        end = buffer.find(b"\n", at, at + limit)
        if end >= 0:
            self._at = end + 1
            return buffer[at : end + 1]
        pending = bytearray(buffer[at:])
        while len(pending) < limit:
            data = self._receive()
            if not data:
                self._buffer, self._at = b"", 0
                return bytes(pending)
            start = len(pending)
            pending += data
            end = pending.find(b"\n", start, limit)
            if end >= 0:
                self._buffer, self._at = bytes(pending[end + 1 :]), 0
                return bytes(pending[: end + 1])
        self._buffer, self._at = bytes(pending[limit:]), 0
        return bytes(pending[:limit])

    def read(self, size: int) -> bytes:
        """``size`` bytes, fewer only at the end of the stream."""
        buffer, at = self._buffer, self._at
        have = len(buffer) - at
        if have >= size:
            self._at = at + size
            return buffer[at : at + size]
        parts = [buffer[at:]] if have else []
        self._buffer, self._at = b"", 0
        while have < size:
            assert self._wire is not None
            data = self._wire.recv(min(size - have, _READ_STEP))
            if not data:
                break
            parts.append(data)
            have += len(data)
        return b"".join(parts)


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
        name = host.encode("idna").decode("ascii") if not host.isascii() else host
        name = f"[{name}]" if ":" in name else name
        default = 443 if tls is not None else 80
        self._host = name if port == default else f"{name}:{port}"
        self._open_timeout, self._read_timeout, self._tls = open_timeout, read_timeout, tls
        self.maxsize = maxsize
        self._headers = dict(headers)
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    def _take(self) -> Connection:
        while True:
            with self._lock:
                if not self._idle:
                    return self._new()
                conn = self._idle.pop()
            if not conn.dropped():
                conn.reused = True
                return conn
            conn.close()

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
        self,
        method: str,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
        budget: Budget | None = None,
    ) -> DirectResponse:
        """Send one request and read its status and headers; the body is left to the response. ``budget``
        bounds the answer's reads (``Budget.start`` is called once the request is sent)."""
        head = self._head(method, target, body, headers)
        conn = self._take()
        try:
            conn.send(head, body, budget)
            return DirectResponse(conn, self, method)
        except (http.client.RemoteDisconnected, BrokenPipeError) as exc:
            # A clean close before any byte of an answer (not a reset): what a server's idle timeout does.
            conn.close()
            if conn.reused:
                raise StaleConnection(f"a reused connection was closed before any answer ({exc})") from exc
            raise
        except http.client.HTTPException as exc:
            conn.close()
            raise ProtocolError(f"malformed answer: {type(exc).__name__} {str(exc)[:200]}") from exc
        except BaseException:
            conn.close()
            raise

    def _head(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> bytes:
        """The request line and fields, as http.client would write them (Host, Accept-Encoding identity,
        the body's length), refusing what would break out of a line."""
        if not _TOKEN(method):
            raise ValueError(f"method {method[:40]!r} is not an HTTP token")
        if _BAD_TARGET(target):
            raise LocationParseError(target[:200])
        fields = {**self._headers, **headers}
        names = {name.lower() for name in fields}
        lines = [f"{method} {target} HTTP/1.1"]
        if "host" not in names:
            lines.append(f"Host: {self._host}")
        if "accept-encoding" not in names:
            lines.append("Accept-Encoding: identity")
        if "content-length" not in names and "transfer-encoding" not in names:
            if body is not None:
                lines.append(f"Content-Length: {len(body)}")
            elif method in _BODY_METHODS:
                lines.append("Content-Length: 0")
        for name, value in fields.items():
            if not _TOKEN(name) or _BAD_VALUE(value):
                raise ValueError(f"header {name[:40]!r} has a name or value that would break the request")
            lines.append(f"{name}: {value}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("iso-8859-1")


class DirectResponse:
    """An answer on a ``Connection``, with the part of urllib3's response API the transport uses: ``read``
    and ``stream`` (gzip and deflate inflated in bounded steps; a body shorter than its Content-Length or
    its chunks is an error), ``drain_conn``, ``release_conn`` (the connection goes back only when the body
    was read to its end and nothing follows it) and ``close``. The status line and head are read on
    construction, with http.client's checks."""

    __slots__ = (
        "_chunk_left",
        "_chunked",
        "_conn",
        "_done",
        "_inflate",
        "_left",
        "_owner",
        "_pending",
        "_will_close",
        "headers",
        "status",
    )

    def __init__(self, conn: Connection, owner: Connections, method: str):
        self._conn: Connection | None = conn
        self._owner = owner
        while True:
            lines = conn.head_lines()
            version, status = self._status(lines[0])
            if status != http.client.CONTINUE:
                break
        self.status = status
        self.headers = header_dict(parse_fields(lines[1:]))
        self._decide_framing(version, status, method)
        encoding = (field(self.headers, "content-encoding") or "").strip().lower()
        self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 32) if encoding in ("gzip", "x-gzip", "deflate") else None
        self._pending = b""

    @staticmethod
    def _status(line: bytes) -> tuple[int, int]:
        """The HTTP version (10 or 11) and status of a status line, checked as http.client checks it."""
        if not line:
            raise http.client.RemoteDisconnected("Remote end closed connection without response")
        parts = line.decode("iso-8859-1").split(None, 2)
        version, code = (parts + ["", ""])[:2]
        if not version.startswith("HTTP/"):
            raise http.client.BadStatusLine(repr(line[:200]))
        if not (len(code) == 3 and code.isdigit()) or int(code) < 100:
            raise http.client.BadStatusLine(repr(line[:200]))
        if version in ("HTTP/1.0", "HTTP/0.9"):
            return 10, int(code)
        if version.startswith("HTTP/1."):
            return 11, int(code)
        raise http.client.UnknownProtocol(version[:40])

    def _decide_framing(self, version: int, status: int, method: str) -> None:
        """http.client's rules: chunked when the last coding says so; else Content-Length; a HEAD answer or
        a 1xx, 204 or 304 has no body; keep-alive unless the server says close (HTTP/1.0: unless it says
        keep-alive); a body of unknown length ends at the close."""
        headers = self.headers
        connection = (field(headers, "connection") or "").lower()
        if version == 11:
            self._will_close = "close" in connection
        else:
            self._will_close = "keep-alive" not in connection and field(headers, "keep-alive") is None
        encoding = field(headers, "transfer-encoding")
        self._chunked = encoding is not None and encoding.lower() == "chunked"
        self._chunk_left: int | None = None
        self._left: int | None = None
        length = field(headers, "content-length")
        if length and not self._chunked:
            try:
                self._left = int(length)
            except ValueError:
                self._left = None
            if self._left is not None and self._left < 0:
                self._left = None
        if method == "HEAD" or status in _BODILESS or status < 200:
            self._left, self._chunked = 0, False
        if not self._will_close and not self._chunked and self._left is None:
            self._will_close = True
        self._done = self._left == 0

    @property
    def length_remaining(self) -> int | None:
        return 0 if self._done else self._left

    def _read_raw(self, amt: int) -> bytes:
        """Up to ``amt`` bytes as sent, fewer only at the end of the body."""
        conn = self._conn
        if self._done or conn is None or amt <= 0:
            return b""
        if self._chunked:
            return self._read_chunks(conn, amt)
        left = self._left
        if left is None:
            data = conn.read(min(amt, _READ_STEP))
            if len(data) < min(amt, _READ_STEP):
                self._done = True
            return data
        want = min(amt, left)
        data = conn.read(want)
        if len(data) < want:
            raise ProtocolError(f"body cut short: {left - len(data)} bytes of it never arrived")
        self._left = left = left - want
        self._done = not left
        return data

    def _read_chunks(self, conn: Connection, amt: int) -> bytes:
        parts: list[bytes] = []
        while amt > 0:
            if not self._chunk_left:
                size = self._chunk_size(conn)
                if not size:
                    read_head(conn)  # trailer fields, read to keep the connection in step
                    self._done = True
                    break
                self._chunk_left = size
            want = min(amt, self._chunk_left, _READ_STEP)
            data = conn.read(want)
            if len(data) < want:
                raise ProtocolError("body cut short: a chunk ended early")
            parts.append(data)
            amt -= want
            self._chunk_left -= want
            if not self._chunk_left and conn.readline(3) not in (b"\r\n", b"\n"):
                raise ProtocolError("malformed chunked body: a chunk does not end with CRLF")
        return b"".join(parts)

    @staticmethod
    def _chunk_size(conn: Connection) -> int:
        line = conn.readline(_MAX_LINE + 1)
        if not line:
            raise ProtocolError("body cut short: the chunked body ended early")
        if len(line) > _MAX_LINE:
            raise ProtocolError("malformed chunked body: chunk size line too long")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProtocolError(f"malformed chunked body: chunk size {line[:40]!r}") from None
        if size < 0:
            raise ProtocolError(f"malformed chunked body: chunk size {line[:40]!r}")
        return size

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
        while not self._done and self._left is not None and self._conn is not None:
            self._read_raw(_READ_STEP)

    def release_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done and not self._will_close and not conn.leftover():
            self._owner.give_back(conn)
        else:
            conn.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._done = True
        if conn is not None:
            conn.close()
