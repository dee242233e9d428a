"""Time budgets for responses: a server cannot stretch one answer by dripping bytes just inside the
read timeout. The transport sets the budget of the request a thread is sending (``sending.budget``);
the connection's response class (``connections.RegistryResponse``) picks it up and reads its socket
through a ``TimedSocket``."""

from __future__ import annotations

import io
import socket
import threading
import time
from typing import TYPE_CHECKING

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
    deadline: float  # set by start(), which RegistryResponse calls before the first read

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


class TimedReader(io.RawIOBase):
    """A response's socket, each read given the timeout its ``Budget`` leaves."""

    def __init__(self, sock: socket.socket, budget: Budget) -> None:
        super().__init__()
        self._sock = sock
        self._io = sock.makefile("rb", buffering=0)
        self._budget = budget
        self._timeout = sock.gettimeout()

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._io.fileno()

    def readinto(self, buffer: WriteableBuffer) -> int | None:
        budget = self._budget
        timeout, ours = budget.next_read()
        if timeout != self._timeout:
            self._sock.settimeout(timeout)
            self._timeout = timeout
        started = time.monotonic() if budget.streaming else 0.0
        try:
            n = self._io.readinto(buffer)
        except TimeoutError:
            budget.broken = budget.broken or ours
            raise
        if budget.streaming:
            budget.record(time.monotonic() - started, n or 0)
        return n

    def close(self) -> None:
        if not self.closed:
            self._io.close()
        super().close()


class TimedSocket:
    """What http.client reads a response from: the socket, through a ``TimedReader``."""

    def __init__(self, sock: socket.socket, budget: Budget) -> None:
        self._sock = sock
        self._budget = budget

    def makefile(self, mode: str = "rb", *args: object, **kwargs: object) -> io.BufferedReader:
        return io.BufferedReader(TimedReader(self._sock, self._budget))
