"""Helpers for the local processes regframe starts (registries, dashboards): ports and log tails."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the caller retries if another process takes it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def tail(text: str, lines: int = 20) -> str:
    """The last ``lines`` lines of a log, for error messages."""
    return "\n".join(text.rstrip().splitlines()[-lines:])
