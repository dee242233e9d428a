"""Time budgets for responses: a server cannot stretch one answer by dripping bytes just inside the
read timeout. Every response's socket is read through a ``TimedSocket``: the registry's own connections
are handed the budget with the request; urllib3's response class (``connections.RegistryResponse``)
picks up the budget of the request its thread is sending (``sending.budget``)."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import errors as E

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class Budget:
    """How long one response may take, checked before every socket read, so a server dripping a byte
    just inside ``read_timeout`` cannot stretch it:

    - the headers, and any body read whole (manifests, JSON, tokens, error bodies), must all arrive
      within ``request_timeout`` seconds of the request having been sent (an upload's own sending time
      does not count);
    - a streamed body (a blob, possibly gigabytes) has no overall deadline, but every ``request_timeout``
      seconds spent waiting on the server must bring at least ``min_rate`` bytes a second on average
      (0 turns this off). Time the caller spends between reads (writing a file, uploading a copy) is
      not counted.
    """

    __slots__ = (
        "broken",
        "deadline",
        "min_rate",
        "read_timeout",
        "received",
        "request_timeout",
        "streaming",
        "waited",
    )
    deadline: float  # set by start(), called once the request is sent, before the first read

    def __init__(self, read_timeout: float, request_timeout: float, min_rate: float):
        self.read_timeout = read_timeout
        self.request_timeout = request_timeout
        self.min_rate = min_rate
        self.streaming = False
        self.waited = 0.0
        self.received = 0
        self.broken = False

    def start(self) -> None:
        """The request has been sent: the wait for its answer starts now."""
        self.deadline = time.monotonic() + self.request_timeout

    def stream(self) -> None:
        """The body is streamed from here on: the rate rule replaces the deadline."""
        self.streaming = True
        self.waited, self.received = 0.0, 0

    def next_read(self) -> tuple[float, bool]:
        """The socket timeout for the next read, and whether it is this budget's rather than ``read_timeout``."""
        if self.streaming:
            if not self.min_rate or self.received >= self.min_rate * self.request_timeout:
                return self.read_timeout, False
            left = self.request_timeout - self.waited
        else:
            left = self.deadline - time.monotonic()
        if left <= 0:
            self.broken = True
            raise OutOfTime("the response took longer than its budget allows")
        return (left, True) if left < self.read_timeout else (self.read_timeout, False)

    def record(self, waited: float, received: int) -> None:
        if self.streaming:
            self.waited += waited
            self.received += received
            if self.waited >= self.request_timeout and self.received >= self.min_rate * self.request_timeout:
                self.waited, self.received = 0.0, 0

    def error(self, where: str, url: str | None) -> E.RegistryTimeoutError:
        if self.streaming:
            text = (
                f"body arrived slower than min_stream_rate={self.min_rate:g} bytes/s over "
                f"request_timeout={self.request_timeout:g} s"
            )
        else:
            text = f"no complete answer within request_timeout={self.request_timeout:g} s"
        return E.RegistryTimeoutError(f"{where}: {text}", url=url)


class OutOfTime(TimeoutError):
    """Raised inside a socket read when the budget is spent; the transport sees ``broken`` and reports the
    budget's own error, whatever the HTTP layer made of the timeout."""


# The budget of the request this thread is sending; the connection picks it up when the answer starts.
sending = threading.local()


class TimedSocket:
    """A socket read under a ``Budget``: each read waits at most what the budget leaves, and a streamed
    body's reads are timed for its rate rule. Without a budget, reads wait the socket's own timeout."""

    __slots__ = ("_default", "_timeout", "budget", "sock")

    def __init__(self, sock: socket.socket, budget: Budget | None = None) -> None:
        self.sock = sock
        self.budget = budget
        self._default = self._timeout = sock.gettimeout()

    def recv(self, size: int) -> bytes:
        data: bytes = self._timed(self.sock.recv, size)
        return data

    def recv_into(self, buffer: WriteableBuffer) -> int:
        count: int = self._timed(self.sock.recv_into, buffer)
        return count

    def _timed(self, read: Callable[[Any], Any], arg: object) -> Any:
        budget = self.budget
        timeout, ours = (self._default, False) if budget is None else budget.next_read()
        if timeout != self._timeout:
            self.sock.settimeout(timeout)
            self._timeout = timeout
        streaming = budget is not None and budget.streaming
        started = time.monotonic() if streaming else 0.0
        try:
            result = read(arg)
        except TimeoutError:
            if budget is not None:
                budget.broken = budget.broken or ours
            raise
        if streaming:
            assert budget is not None
            budget.record(time.monotonic() - started, result if isinstance(result, int) else len(result))
        return result

    def makefile(self, mode: str = "rb", *args: object, **kwargs: object) -> io.BufferedReader:
        """What http.client reads a response from (the urllib3 path)."""
        return io.BufferedReader(_TimedRaw(self))


class _TimedRaw(io.RawIOBase):
    def __init__(self, timed: TimedSocket) -> None:
        super().__init__()
        self._timed = timed

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._timed.sock.fileno()

    def readinto(self, buffer: WriteableBuffer) -> int:
        return self._timed.recv_into(buffer)
