"""The registry's own keep-alive connections (``regframe.client.connections``): reused while the server
keeps them, replaced when it has closed them, never trusted past a cut-short body.

A real registry (Debian docker-registry 2.8) answers the reuse test. A registry cannot be made to close
an idle keep-alive connection on demand, nor to send a body shorter than its Content-Length, so a small
server plays those parts.
"""

from __future__ import annotations

import http.client
import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from urllib3.exceptions import LocationParseError

import regframe
from regframe.client.connections import Connection, Connections, read_head
from regframe.testing import build_image, layer, local_registry, push_image
from regframe.testing.faultproxy import FaultProxy

IMAGE = build_image([layer("connections-a", 2000)])
REPO = "connections/app"


@pytest.fixture(scope="module")
def registry():
    with local_registry() as reg, regframe.connect(reg.url, docker_config=False) as client:
        push_image(client, REPO, "v1", IMAGE)
        yield reg


def test_sequential_requests_share_one_connection(registry):
    with FaultProxy(registry.url) as proxy, regframe.connect(proxy.url, docker_config=False) as reg:
        for _ in range(20):
            assert reg.digest(REPO, "v1") == IMAGE.digest
            assert reg.manifest(REPO, "v1").digest == IMAGE.digest
        connections = proxy.stats.connections
    assert connections == 1


class _Quiet(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, no request log."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass


class _Forgetful(_Quiet):
    """Answers /v2/ and a tag list as HTTP/1.1 keep-alive, then closes the connection anyway (what a server
    does when its idle timeout strikes between two requests)."""

    body_short_by = 0

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.client_address))  # type: ignore[attr-defined]
        listing = "/tags/list" in self.path
        body = json.dumps({"name": "app", "tags": ["v1"]}).encode() if listing else b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) - self.body_short_by] if listing else body)
        self.wfile.flush()
        self.close_connection = True


class _Short(_Forgetful):
    body_short_by = 5


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[tuple[str, list]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def test_a_connection_the_server_closed_is_replaced_without_an_error():
    with serve(_Forgetful) as (url, seen), regframe.connect(url, docker_config=False, retries=0) as reg:
        for _ in range(5):
            assert reg.tags("app")["tags"] == ["v1"]
    # One connection per request: each was found closed before reuse, and no request failed (retries=0).
    ports = [address[1] for _, address in seen]
    assert len(set(ports)) == len(ports) >= 6


# -- reading a response head ---------------------------------------------------------------------------


def test_head_fields_keep_order_and_duplicates_and_trim_whitespace():
    head = b"Content-Type:  application/json \r\nLink: <a>; rel=next\r\nlink: <b>\r\nEmpty:\r\n\r\nbody"
    assert read_head(io.BytesIO(head)) == [
        ("Content-Type", "application/json"),
        ("Link", "<a>; rel=next"),
        ("link", "<b>"),
        ("Empty", ""),
    ]


def test_folded_lines_continue_their_field_and_lines_without_a_colon_are_skipped():
    head = b"X-Long: one\r\n  two\r\n\tthree\r\nnot a field\r\nNext: 1\r\n\r\n"
    assert read_head(io.BytesIO(head)) == [("X-Long", "one two three"), ("Next", "1")]


def test_a_head_over_the_limits_is_refused():
    with pytest.raises(http.client.LineTooLong):
        read_head(io.BytesIO(b"X: " + b"a" * 70_000 + b"\r\n\r\n"))
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        read_head(io.BytesIO(b"X: 1\r\n" * 101 + b"\r\n"))
    assert len(read_head(io.BytesIO(b"X: 1\r\n" * 100 + b"\r\n"))) == 100


def test_a_head_cut_short_ends_at_the_end_of_the_stream():
    assert read_head(io.BytesIO(b"A: 1\r\nB: 2")) == [("A", "1"), ("B", "2")]


# -- framing and request writing -------------------------------------------------------------------------
# The registry answers every request with a Content-Length and never sends more than it announced, so
# chunked answers, bytes after an answer and HTTP/1.0 answers come from small servers.

LISTING = json.dumps({"name": "app", "tags": ["v1", "v2"]}).encode()


class _Chunked(_Quiet):
    """A keep-alive tag list sent chunked, with a chunk extension and a trailer field."""

    cut = False

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.client_address))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        first, second = LISTING[:10], LISTING[10:]
        self.wfile.write(b"%x;note=1\r\n%b\r\n" % (len(first), first))
        if self.cut:
            self.wfile.write(b"%x\r\n%b" % (len(second), second[:3]))
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(b"%x\r\n%b\r\n0\r\nX-Trailer: yes\r\n\r\n" % (len(second), second))
        self.wfile.flush()


class _CutChunked(_Chunked):
    cut = True


class _Trailing(_Quiet):
    """Announces a body, sends it, then sends bytes nobody asked for: a forged second answer."""

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.client_address))  # type: ignore[attr-defined]
        forged = b'HTTP/1.1 200 OK\r\nContent-Length: 35\r\n\r\n{"name": "app", "tags": ["forged"]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(LISTING)))
        self.end_headers()
        self.wfile.write(LISTING + forged)
        self.wfile.flush()


class _Recorder(_Quiet):
    """Records each request's Host field and answers with a plain keep-alive listing."""

    def do_GET(self) -> None:
        self.server.seen.append((self.headers["Host"], self.client_address))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(LISTING)))
        self.end_headers()
        self.wfile.write(LISTING)


class _OldServer(_Recorder):
    """An HTTP/1.0 server: it closes after each answer unless asked otherwise."""

    protocol_version = "HTTP/1.0"


def test_a_chunked_answer_is_read_whole_and_its_connection_reused():
    with serve(_Chunked) as (url, seen), regframe.connect(url, docker_config=False, retries=0) as reg:
        for _ in range(3):
            assert reg.tags("app")["tags"] == ["v1", "v2"]
    listings = [address for path, address in seen if path.endswith("/tags/list")]
    assert len(listings) == 3 and len(set(listings)) == 1


@pytest.mark.parametrize("handler", [_Short, _CutChunked], ids=["content-length", "chunked"])
def test_a_body_cut_short_is_an_error_not_data(handler):
    with (
        serve(handler) as (url, seen),
        regframe.connect(url, docker_config=False, retries=1) as reg,
        pytest.raises(regframe.RegistryConnectionError, match="cut short"),
    ):
        reg.tags("app")
    listings = [path for path, _ in seen if path.endswith("/tags/list")]
    assert len(listings) == 2, "the cut-short answer was retried once, then given up"


def test_bytes_after_an_answer_are_never_read_as_the_next_answer():
    with serve(_Trailing) as (url, seen), regframe.connect(url, docker_config=False, retries=0) as reg:
        for _ in range(3):
            assert reg.tags("app")["tags"] == ["v1", "v2"]
    listings = [address for path, address in seen if path.endswith("/tags/list")]
    assert len(set(listings)) == len(listings) == 3, "a connection with unasked-for bytes was reused"


def test_host_field_names_the_port_and_an_http10_server_gets_a_new_connection_each_time():
    with serve(_OldServer) as (url, seen), regframe.connect(url, docker_config=False, retries=0) as reg:
        for _ in range(3):
            assert reg.tags("app")["tags"] == ["v1", "v2"]
    port = url.rsplit(":", 1)[1]
    assert {host for host, _ in seen} == {f"127.0.0.1:{port}"}
    assert len({address for _, address in seen}) == len(seen)


@pytest.mark.parametrize(
    ("method", "target", "headers", "error"),
    [
        ("GET", "/v2/ HTTP/1.1\r\nX: 1", {}, LocationParseError),
        ("GET", "/v2/", {"X-Note": "a\r\nInjected: 1"}, ValueError),
        ("GET", "/v2/", {"Bad Name": "1"}, ValueError),
        ("GET /", "/v2/", {}, ValueError),
    ],
)
def test_a_request_that_would_break_out_of_its_line_is_refused_before_any_byte(method, target, headers, error):
    with serve(_Recorder) as (url, seen):
        port = int(url.rsplit(":", 1)[1])
        connections = Connections(
            "127.0.0.1", port, open_timeout=5, read_timeout=5, tls=None, maxsize=1, headers={"User-Agent": "t"}
        )
        with pytest.raises(error):
            connections.send(method, target, None, headers)
        answer = connections.send("GET", "/v2/", None, {})
        assert answer.read(1000) == LISTING
        answer.release_conn()
        connections.clear()
    assert len(seen) == 1, "only the good request reached the server"


class _Drip:
    """A socket that hands out what it holds a few bytes at a time, as a slow or hostile server does."""

    def __init__(self, data: bytes, step: int):
        self._data, self._step = data, step

    def recv(self, size: int) -> bytes:
        piece, self._data = self._data[: min(size, self._step)], self._data[min(size, self._step) :]
        return piece


@pytest.mark.parametrize("step", [1, 3, 64 * 1024])
def test_lines_arriving_a_few_bytes_at_a_time_are_read_whole_and_within_their_limit(step):
    conn = Connection("127.0.0.1", 1, open_timeout=1, read_timeout=1, tls=None)
    conn._wire = _Drip(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 50 + b"\r\n" + b"b" * 40 + b"\r\nrest", step)  # type: ignore[assignment]
    assert conn.readline(100) == b"HTTP/1.1 200 OK\r\n"
    assert conn.readline(100) == b"X: " + b"a" * 50 + b"\r\n"
    assert conn.readline(10) == b"b" * 10, "a line over the limit comes back cut at the limit"
    assert conn.read(30) == b"b" * 30
    assert conn.readline(100) == b"\r\n"
    assert conn.readline(100) == b"rest", "what is left at the end of the stream"
    assert conn.readline(100) == b""
