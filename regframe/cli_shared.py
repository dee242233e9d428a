"""What the regframe commands share: connecting from their arguments, printing registry-supplied text,
writing report CSVs."""

from __future__ import annotations

import sys
from pathlib import Path

from .client.atomic_files import write_atomically
from .text import visible


def printable(text: object, *, one_line: bool = False) -> str:
    """What the CLI prints of registry-supplied text: control characters made visible; tabs and newlines too
    when ``one_line``, for a field printed within a line."""
    return visible(text, keep_lines=not one_line)


def write_csv(path: Path, frame) -> None:
    """A report CSV for spreadsheets, written without following a link planted at ``path``."""
    from .inventory.inventory import neutralize_formulas

    write_atomically(path, [neutralize_formulas(frame).to_csv(index=False).encode()])


def connection_options(args) -> dict:
    """``regframe.connect``'s options from the shared connection arguments; the password from standard input.

    The URL is checked first, so one with ``user:password@`` in it is refused in the command's own terms."""
    from .client.core import normalize_url

    normalize_url(args.url, credentials_instead="--user and --password-stdin")
    password = None
    if getattr(args, "password_stdin", False):
        if not args.user:
            raise ValueError("--password-stdin needs --user")
        password = sys.stdin.readline().rstrip("\r\n")
    elif args.user:
        raise ValueError("--user needs --password-stdin (passwords are never taken on the command line)")
    options = {"user": args.user, "password": password}
    if getattr(args, "ca_bundle", None):
        options["ca_bundle"] = args.ca_bundle
    if getattr(args, "insecure", False):
        options["verify"] = False
    if getattr(args, "insecure_auth", False):
        options["allow_insecure_auth"] = True
    return {k: v for k, v in options.items() if v is not None}


def connect_from(args):
    """``regframe.connect`` to ``args.url`` with the shared connection arguments."""
    from .registry import connect

    return connect(args.url, **connection_options(args))
