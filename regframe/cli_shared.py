"""What the regframe commands share: connecting from their arguments, the repositories to crawl, output
folders checked before any request, printing registry-supplied text and errors, writing report CSVs."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .client import errors as E
from .client.atomic_files import write_atomically
from .text import visible


def printable(text: object) -> str:
    """What the CLI prints of a multi-line text it composed: control characters made visible, its tabs and
    newlines kept (registry-supplied values in it went through :func:`field`)."""
    return visible(text, keep_lines=True)


def field(value: object) -> str:
    """One registry-supplied value (a name, a tag, an error message) for a line of multi-line output: on one
    line, newlines escaped too, so a registry cannot start a line of its own in a terminal or a CI log (a
    forged verdict, a workflow command such as ``::error::``)."""
    return visible(value)


# Library advice that names Python arguments, and the same advice in the commands' options, in the order
# applied: the TLS errors' advice, the CA file named in errors, the crawl's stop rows (budget, 429s).
COMMAND_OPTIONS = (
    ("a numeric budget= (--budget N)", "a numeric --budget N"),
    ("manifest GETs of budget=", "manifest GETs of --budget "),
    ("pass ca_bundle= with", "pass --ca-bundle FILE with"),
    ("verify=False", "--insecure"),
    ("ca_bundle ", "--ca-bundle "),
    ("the same cache=", "the same --cache"),
)


def command_terms(text: str) -> str:
    """``text`` with the library's advice in Python arguments (:data:`COMMAND_OPTIONS`) said in the commands'
    options instead."""
    for library, option in COMMAND_OPTIONS:
        text = text.replace(library, option)
    return text


def error_text(exc: BaseException) -> str:
    """An error as the command line prints it, on one line (its message may quote the registry): where the
    library's advice names Python arguments, the same advice in the command's options (on the command line
    ``--match`` picks the tags that may be stale, not repositories)."""
    from .inventory.crawl import UnknownRepositoriesError

    if isinstance(exc, UnknownRepositoriesError):
        text = (
            f"not in the registry's catalog: {', '.join(exc.names)} (--repositories and --repositories-from take "
            "exact repository names, not patterns)"
        )
    elif isinstance(exc, E.CatalogUnavailableError):
        answer = " ".join(str(part) for part in (exc.status and f"HTTP {exc.status}", exc.code) if part)
        text = (
            f"the registry does not list its repositories (its catalog answered {answer or 'with a refusal'}); "
            "name the repositories with --repositories NAME... or --repositories-from FILE"
        )
    else:
        text = command_terms(str(exc))
    return field(text)


def output_folder(path: str, option: str = "--out") -> Path:
    """The folder ``option`` names, created and written to now, so a file in the way or a place that cannot
    be written stops the command before any request instead of with a traceback after the crawl."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{option} {path}: it exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ValueError(f"{option} {path}: cannot write files there ({exc.strerror or exc})") from None
    return folder


def chosen_repositories(args) -> list[str] | None:
    """The names ``--repositories`` or ``--repositories-from`` give (None: the whole catalog), each checked
    against the distribution grammar before connecting, and on Docker Hub a single name as ``library/NAME``
    before duplicates are dropped. A file holds one name per line; blank lines and ``#`` comments are
    skipped; ``-`` reads standard input."""
    from .client.core import DOCKER_HUB_API, normalize_url
    from .client.reference import validate_repository
    from .inventory.crawl import hub_name

    if getattr(args, "repositories", None):
        names = [(f"--repositories {name!r}", name) for name in args.repositories]
    elif getattr(args, "repositories_from", None):
        source = args.repositories_from
        if source == "-":
            if getattr(args, "password_stdin", False):
                raise ValueError("--repositories-from - and --password-stdin cannot both read standard input")
            text, where = sys.stdin.read().removeprefix("\ufeff"), "standard input"
        else:
            try:
                # utf-8-sig: a file saved "UTF-8 with BOM" (Notepad, PowerShell) keeps its first name intact.
                text, where = Path(source).read_text(encoding="utf-8-sig"), source
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"--repositories-from {source}: cannot read it ({exc})") from None
        names = []
        for number, line in enumerate(text.splitlines(), 1):
            name = line.split("#", 1)[0].strip()
            if name:
                names.append((f"{where}, line {number}", name))
        if not names:
            raise ValueError(f"--repositories-from {source}: no repository names in it")
    else:
        return None
    hub = normalize_url(args.url, credentials_instead=CREDENTIALS_OPTIONS) == DOCKER_HUB_API
    checked = []
    for origin, name in names:
        try:
            checked.append(hub_name(validate_repository(name), hub))
        except E.InvalidReferenceError as exc:
            raise ValueError(f"{origin}: {exc}") from None
    return list(dict.fromkeys(checked))


def repository_options(parser, verb: str) -> None:
    """``--repositories`` and ``--repositories-from``, for the commands that crawl (``verb``: what they do)."""
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument(
        "--repositories",
        nargs="+",
        metavar="NAME",
        help=f"{verb} exactly these repositories (for registries without a catalog: Docker Hub, GHCR, Quay, ...)",
    )
    chosen.add_argument(
        "--repositories-from",
        metavar="FILE",
        help=f"{verb} the repositories named in FILE, one per line, '#' comments allowed ('-': standard input)",
    )


def referrers_option(parser) -> None:
    """``--no-referrers``: the commands that crawl ask the OCI referrers API by default, because on a registry
    that has it (Harbor, zot, ECR) signatures and SBOMs pushed without fallback tags are found no other way;
    a registry without it costs one request."""
    parser.add_argument(
        "--no-referrers",
        action="store_true",
        help="do not ask the OCI referrers API (asked by default: one probe on a registry without it, one "
        "request per image digest on one with it)",
    )


def partial_scope_note(inv) -> str | None:
    """For a crawl limited to some repositories (``--repositories``, ``match=``): why its reclaimable figure
    is an upper bound. Blobs are stored once for the whole registry, and the crawl did not see what the other
    repositories use."""
    params = inv.params or {}
    if params.get("repositories") is None and params.get("match") is None:
        return None
    return (
        "Only the repositories crawled were checked for other users of these blobs: those that repositories "
        "outside the crawl also use stay, so the reclaimable figure is an upper bound"
    )


def stale_csvs(out: Path, stale) -> None:
    """``stale_tags.csv`` (every tag, with why it is kept or deleted) and ``cleanup_plan.csv`` (only the tags
    to delete), the same for ``audit`` and ``cleanup``: a script may delete every row of the plan."""
    from .analysis import cleanup_plan

    every = stale.copy()
    every["age_days"] = every["age"].dt.total_seconds() / 86400
    write_csv(out / "stale_tags.csv", every.drop(columns=["age"]))
    write_csv(out / "cleanup_plan.csv", cleanup_plan(stale).drop(columns=["age"], errors="ignore"))


def stopped_by_user(inv) -> bool:
    """Whether Ctrl-C stopped the crawl, which then returns what it read with an ``interrupted`` error row:
    the command is interrupted too (exit status 130), so no gate decides on it and nothing is applied."""
    rows = inv.errors[inv.errors["stage"].astype(object) == "interrupted"]
    return bool(rows["error"].astype(str).str.startswith("KeyboardInterrupt").any())


class OutputError(Exception):
    """A command's output that could not be written (a full disk, a quota, a file-size limit): exit status 1,
    with the file (or the folder) and why, instead of a traceback after the crawl."""


@contextlib.contextmanager
def writing(where: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an OSError while writing ``where`` (a file, or the folder of several) into an OutputError
    naming it."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"cannot write {where}: {exc.strerror or exc}") from exc


def write_csv(path: Path, frame) -> None:
    """A report CSV for spreadsheets, written without following a link planted at ``path``."""
    from .inventory.inventory import neutralize_formulas

    with writing(path):
        write_atomically(path, [neutralize_formulas(frame).to_csv(index=False).encode()])


# What the command line takes instead of credentials in a URL.
CREDENTIALS_OPTIONS = "--user and --password-stdin"


def connection_options(args) -> dict:
    """``regframe.connect``'s options from the shared connection arguments; the password from standard input.

    The URL is checked first, so one with ``user:password@`` in it is refused in the command's own terms."""
    from .client.core import normalize_url

    normalize_url(args.url, credentials_instead=CREDENTIALS_OPTIONS)
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


def connect_from(args, options: dict | None = None):
    """``regframe.connect`` to ``args.url`` with the shared connection arguments; ``options``: those already
    read with ``connection_options``, for a command that checks them before creating its output folder."""
    from .registry import connect

    return connect(args.url, **(connection_options(args) if options is None else options))
