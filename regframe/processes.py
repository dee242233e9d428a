"""Helpers for the local processes regframe starts (registries, dashboards): ports, log tails, and
SIGTERM ending them as Ctrl-C does."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the caller retries if another process takes it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def tail(text: str, lines: int = 20) -> str:
    """The last ``lines`` lines of a log, for error messages."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


class Terminated(SystemExit):
    """SIGTERM arrived: unwinds like Ctrl-C, but past the handlers that let Ctrl-C stop only a crawl; the
    exit status is 128 + the signal number, as a shell reports it."""


@contextmanager
def raising_on_sigterm(error: Callable[[int], BaseException]) -> Iterator[None]:
    """SIGTERM (``kill``, a service manager, ``docker stop``) raises ``error(signum)`` in the main thread, so
    the cleanup of the ``with`` blocks it unwinds runs as for Ctrl-C and no child process is left behind;
    Ctrl-C alone would not do when SIGINT was ignored at start, as it is for a script's background job.
    A second SIGTERM is ignored so it cannot cut that cleanup short. Only the main thread takes signals:
    elsewhere nothing changes."""

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise error(signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
