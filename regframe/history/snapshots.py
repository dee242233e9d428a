"""Audits kept as dated snapshots in one folder, and each repository's size across them.

A snapshot is one sub-folder named by the UTC time of its crawl (ISO 8601 basic format,
``20260301T120000.000000Z``), holding the inventory as Parquet and ``inventory.json`` (regframe's
version, the crawl's parameters, the format). It is written into a hidden temporary folder that is
renamed into place once complete, so a reader never sees half a snapshot and an interrupted audit
leaves only a hidden folder behind.

One folder may hold the snapshots of several registries (two CI jobs sharing it): ``snapshots``,
``latest``, ``load_latest`` and ``load`` take ``url=`` to keep only one registry's, as recorded in each
``inventory.json``. A snapshot that cannot be read (a truncated Parquet file, missing files, a foreign
folder with a snapshot's name) is skipped with a :class:`SnapshotWarning` naming it and why, so one
damaged folder never stops the others from being read; one written by a newer regframe still raises
``InventoryFormatError``, as it needs an upgrade rather than a repair.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..analysis import storage_usage
from ..analysis._frames import STORAGE_COLUMNS
from ..client.core import normalize_url
from ..inventory import Inventory
from ..inventory.inventory import FORMAT, read_meta

NAME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_NAME = re.compile(r"^\d{8}T\d{6}\.\d{6}Z$")
HISTORY_COLUMNS = [
    "snapshot",
    "repository",
    "tags",
    "images",
    "stored_bytes",
    "exclusive_bytes",
    "shared_bytes",
    "logical_bytes",
]
_ONE_TICK = pd.Timedelta(microseconds=1)
# What reading a damaged snapshot raises: missing or unreadable files, text that is not JSON, Parquet that
# is cut short or lacks a column (pyarrow's errors), an inventory.json that is no inventory.
UNREADABLE = (OSError, ValueError, KeyError, TypeError, pa.ArrowException)
_DEFAULT_PORTS = {"http": 80, "https": 443}
T = TypeVar("T")


class SnapshotWarning(UserWarning):
    """A snapshot folder that cannot be read was skipped; the message names it and says why, ``path`` is
    the folder (so a reader that meets it twice can tell it once)."""

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(message)
        self.path = path


def save(inv: Inventory, history_dir: str | os.PathLike, *, when: datetime | pd.Timestamp | None = None) -> Path:
    """Store ``inv`` as a new snapshot of ``history_dir`` (created if needed) and return its folder.

    The folder is named by ``when`` (default: the crawl's start, else now) in UTC; a name already taken
    moves on by a microsecond, so two audits never overwrite each other."""
    if not isinstance(inv, Inventory):
        raise ValueError(f"save needs an Inventory, not {type(inv).__name__}")
    root = Path(history_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = _utc(when) if when is not None else inv.crawled_at or pd.Timestamp.now(tz="UTC")
    partial = root / f".partial-{secrets.token_hex(8)}"
    partial.mkdir()
    try:
        inv.to_parquet(partial)
        while True:
            target = root / stamp.strftime(NAME_FORMAT)
            if not os.path.lexists(target):
                try:
                    os.rename(partial, target)
                    return target
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
            stamp += _ONE_TICK
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def snapshots(history_dir: str | os.PathLike, *, url: str | None = None) -> list[Path]:
    """The snapshot folders of ``history_dir``, oldest first; hidden and unrelated entries are skipped.

    With ``url``, only the snapshots of that registry (compared as ``connect`` normalises URLs: Docker
    Hub's names, a trailing ``/`` or ``/v2``, letter case of the host, a default port); a snapshot whose
    ``inventory.json`` cannot be read, so whose registry is unknown, is skipped with a SnapshotWarning."""
    root = Path(history_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of snapshots")
    found = [p for p in root.iterdir() if _NAME.match(p.name) and p.is_dir() and (p / "inventory.json").is_file()]
    found.sort(key=lambda p: p.name)
    if url is None:
        return found
    wanted = _registry(url)
    if wanted is None:
        raise ValueError(f"url must be a registry URL, not {url!r}")
    return [path for path in found if _read_or_skip(path, _recorded_registry) == wanted]


def latest(history_dir: str | os.PathLike, *, url: str | None = None) -> Path | None:
    """The newest snapshot folder (with ``url``, the newest of that registry), or None when there is none
    (or no such folder yet)."""
    if not Path(history_dir).exists():
        return None
    found = snapshots(history_dir, url=url)
    return found[-1] if found else None


def load_latest(history_dir: str | os.PathLike, *, url: str | None = None) -> Inventory | None:
    """The newest snapshot that can be read (with ``url``, of that registry) as an ``Inventory``, None when
    there is none: what ``regframe audit --history`` compares with, read before connecting.

    Every snapshot of the registry (or whose registry a newer format does not say) has its format checked
    first, so one written by a newer regframe raises ``InventoryFormatError`` naming it before any request,
    wherever it is in the history. A newest snapshot that cannot be read is skipped with a SnapshotWarning,
    and the next older one is taken."""
    if not Path(history_dir).exists():
        return None
    wanted = None if url is None else _registry(url)
    for path in snapshots(history_dir):
        if _written_by_newer(path) and (url is None or _read_or_skip(path, _recorded_registry) in (wanted, None)):
            read_meta(path)  # raises InventoryFormatError, naming the folder and the regframe that wrote it
    found = snapshots(history_dir, url=url)
    for path in reversed(found):
        inv = _read_or_skip(path, load_snapshot)
        if inv is not None:
            return inv
    return None


def snapshot_time(path: str | os.PathLike) -> pd.Timestamp:
    """The UTC time a snapshot folder's name gives."""
    name = Path(path).name
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a snapshot name (like 20260301T120000.000000Z)")
    return pd.Timestamp(datetime.strptime(name, NAME_FORMAT).replace(tzinfo=UTC))


def load_snapshot(path: str | os.PathLike) -> Inventory:
    """``Inventory.load`` of a snapshot or any saved audit; a snapshot that does not record its crawl time
    (format 1) gets the one its folder name gives, so a diff judges its stale tags at that time."""
    inv = Inventory.load(path)
    if inv.crawled_at is None and _NAME.match(Path(path).name):
        inv.crawled_at = snapshot_time(path)
    return inv


def load(history_dir: str | os.PathLike, *, url: str | None = None) -> pd.DataFrame:
    """One row per snapshot and repository with tags: ``snapshot`` (UTC time), ``repository``, ``tags``,
    ``images``, ``stored_bytes``, ``exclusive_bytes``, ``shared_bytes`` and ``logical_bytes`` (as
    ``storage_usage`` counts them in that snapshot), oldest snapshot first, largest repository first.
    With ``url``, only the snapshots of that registry (see ``snapshots``).

    ``attrs["total_bytes"]`` maps each snapshot's time, in ISO 8601 with microseconds
    (``2026-03-01T12:00:00.000000+00:00``), to its registry-wide stored bytes (layers shared between
    repositories counted once). A snapshot that cannot be read is skipped with a SnapshotWarning naming it
    and why; one in a newer format than this regframe reads raises ``InventoryFormatError`` naming it.

    A snapshot with no tagged repository (every tag deleted, or an empty registry) still has rows: one per
    repository of the other snapshots, every count 0, so a growth chart draws the drop to nothing. Only
    when no snapshot has a tagged repository are there no rows (``attrs["total_bytes"]`` lists them all)."""
    parts: list[tuple[pd.Timestamp, pd.DataFrame]] = []
    totals = {}
    for path in snapshots(history_dir, url=url):
        read = _read_or_skip(path, _storage_frames)
        if read is None:
            continue
        layers, tag_repositories = read
        when = snapshot_time(path)
        usage = storage_usage(layers)
        totals[when.isoformat(timespec="microseconds")] = int(usage.attrs["total_bytes"])
        tags = pd.Series(tag_repositories.astype(str).to_numpy()).value_counts()
        rows = usage.assign(repository=usage["repository"].astype(str)).set_index("repository")
        names = sorted(set(rows.index) | set(tags.index))
        frame = pd.DataFrame({"repository": names})
        frame["tags"] = tags.reindex(names).fillna(0).astype("int64").to_numpy()
        for column in HISTORY_COLUMNS[3:]:
            frame[column] = rows[column].reindex(names).fillna(0).astype("int64").to_numpy()
        frame.insert(0, "snapshot", when)
        parts.append((when, frame.sort_values(["stored_bytes", "repository"], ascending=[False, True], kind="stable")))
    seen = sorted({name for _, part in parts for name in part["repository"]})
    frames = [_zeros(when, seen) if part.empty else part for when, part in parts]
    if seen:
        history = pd.concat(frames, ignore_index=True)
    else:
        history = pd.DataFrame({column: pd.Series(dtype="int64") for column in HISTORY_COLUMNS})
        history["snapshot"] = pd.Series(dtype="datetime64[ns, UTC]")
        history["repository"] = pd.Series(dtype=object)
    history["snapshot"] = history["snapshot"].astype("datetime64[ns, UTC]")
    history.attrs["total_bytes"] = totals
    return history[HISTORY_COLUMNS]


def _zeros(when: pd.Timestamp, repositories: list[str]) -> pd.DataFrame:
    """The rows of a snapshot with no tagged repository: every repository of the others, with nothing."""
    frame = pd.DataFrame(
        {column: pd.Series(0, index=range(len(repositories)), dtype="int64") for column in HISTORY_COLUMNS}
    )
    frame["snapshot"] = pd.Series([when] * len(repositories), dtype="datetime64[ns, UTC]")
    frame["repository"] = pd.Series(repositories, dtype=object)
    return frame


def _storage_frames(path: Path) -> tuple[pd.DataFrame, pd.Series]:
    """The layers columns ``storage_usage`` reads and the tags' repositories, after the format check: a
    long history is read without the manifests, labels and everything else a full load parses."""
    read_meta(path)
    layers, tags = path / "layers.parquet", path / "tags.parquet"
    if layers.is_file() and tags.is_file():
        repositories = _parquet(tags, ["repository"])["repository"]
        # ``kind`` (where the snapshot has it) keeps signatures and SBOMs out of the images count.
        extra = [column for column in ("kind",) if column in _parquet_columns(layers)]
        return _parquet(layers, [*STORAGE_COLUMNS, *extra]), repositories
    inv = Inventory.load(path)
    return inv.layers, inv.tags["repository"]


def _read_or_skip(path: Path, read: Callable[[Path], T]) -> T | None:
    """``read(path)``, or None after a SnapshotWarning naming the folder and what is wrong with it. A snapshot
    written by a newer regframe is not skipped: its ``InventoryFormatError`` says to upgrade."""
    try:
        return read(path)
    except UNREADABLE as exc:
        if _written_by_newer(path):
            raise
        _skip(path, exc)
        return None


def _skip(path: Path, exc: BaseException) -> None:
    if isinstance(exc, json.JSONDecodeError):
        reason = f"its inventory.json is not JSON ({exc})"
    else:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, pa.ArrowException | KeyError):
            reason = f"a Parquet file cannot be read ({type(exc).__name__}: {reason})"
    # One place issues it, with the folder, so a folder skipped both before and after a crawl (two readers,
    # two reasons) can be told once: Python's own filter repeats each different message.
    warnings.warn(SnapshotWarning(f"snapshot {path} cannot be read and is skipped: {reason}", path), stacklevel=1)


def _raw_meta(path: Path) -> dict[str, Any]:
    """``inventory.json`` as written, without the format check (ValueError when it holds no JSON object)."""
    meta = json.loads((path / "inventory.json").read_text(encoding="utf-8"))
    if not isinstance(meta, dict):
        raise ValueError("its inventory.json holds no JSON object")
    return meta


def _written_by_newer(path: Path) -> bool:
    """Whether ``path`` records a format newer than this regframe reads (False when that cannot be read)."""
    try:
        fmt = _raw_meta(path).get("format", 1)
    except UNREADABLE:
        return False
    return isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > FORMAT


def _recorded_registry(path: Path) -> str | None:
    return _registry(_raw_meta(path).get("url"))


def _registry(url: object) -> str | None:
    """A registry URL as ``connect`` records it, with the scheme and host in lower case and no default port,
    so that two spellings of one registry compare equal; None for a snapshot that records no URL."""
    if not isinstance(url, str) or not url.strip():
        return None
    try:
        url = normalize_url(url)
    except ValueError:
        url = url.strip()
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return url
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    scheme = parts.scheme.lower()
    where = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return f"{scheme}://{where}{parts.path.rstrip('/')}"


def _parquet(path: Path, columns: list[str]) -> pd.DataFrame:
    """Those columns of a Parquet file; a file cut short or lacking one is a ValueError naming the file."""
    try:
        return pd.read_parquet(path, columns=columns)
    except (pa.ArrowException, KeyError) as exc:
        raise ValueError(f"{path.name} cannot be read ({type(exc).__name__}: {exc})") from exc


def _parquet_columns(path: Path) -> list[str]:
    try:
        return list(pq.read_schema(path).names)
    except pa.ArrowException as exc:
        raise ValueError(f"{path.name} cannot be read ({type(exc).__name__}: {exc})") from exc


def _utc(value: datetime | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        raise ValueError(f"when={value!r} is not a date/time")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
