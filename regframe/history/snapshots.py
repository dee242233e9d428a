"""Audits kept as dated snapshots in one folder, and each repository's size across them.

A snapshot is one sub-folder named by the UTC time of its crawl (ISO 8601 basic format,
``20260301T120000.000000Z``), holding the inventory as Parquet and ``inventory.json`` (regframe's
version, the crawl's parameters, the format). It is written into a hidden temporary folder that is
renamed into place once complete, so a reader never sees half a snapshot and an interrupted audit
leaves only a hidden folder behind.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from ..analysis import storage_usage
from ..analysis._frames import STORAGE_COLUMNS
from ..inventory import Inventory
from ..inventory.inventory import read_meta

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


def snapshots(history_dir: str | os.PathLike) -> list[Path]:
    """The snapshot folders of ``history_dir``, oldest first; hidden and unrelated entries are skipped."""
    root = Path(history_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of snapshots")
    found = [p for p in root.iterdir() if _NAME.match(p.name) and p.is_dir() and (p / "inventory.json").is_file()]
    return sorted(found, key=lambda p: p.name)


def latest(history_dir: str | os.PathLike) -> Path | None:
    """The newest snapshot folder, or None when there is none (or no such folder yet)."""
    if not Path(history_dir).exists():
        return None
    found = snapshots(history_dir)
    return found[-1] if found else None


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


def load(history_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per snapshot and repository with tags: ``snapshot`` (UTC time), ``repository``, ``tags``,
    ``images``, ``stored_bytes``, ``exclusive_bytes``, ``shared_bytes`` and ``logical_bytes`` (as
    ``storage_usage`` counts them in that snapshot), oldest snapshot first, largest repository first.

    ``attrs["total_bytes"]`` maps each snapshot's ISO time to its registry-wide stored bytes (layers
    shared between repositories counted once). A snapshot in a newer format than this regframe reads
    raises ``InventoryFormatError`` naming it.

    A snapshot with no tagged repository (every tag deleted, or an empty registry) still has rows: one per
    repository of the other snapshots, every count 0, so a growth chart draws the drop to nothing. Only
    when no snapshot has a tagged repository are there no rows (``attrs["total_bytes"]`` lists them all)."""
    parts: list[tuple[pd.Timestamp, pd.DataFrame]] = []
    totals = {}
    for path in snapshots(history_dir):
        layers, tag_repositories = _storage_frames(path)
        when = snapshot_time(path)
        usage = storage_usage(layers)
        totals[when.isoformat()] = int(usage.attrs["total_bytes"])
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
        repositories = pd.read_parquet(tags, columns=["repository"])["repository"]
        # ``kind`` (where the snapshot has it) keeps signatures and SBOMs out of the images count.
        extra = [column for column in ("kind",) if column in pq.read_schema(layers).names]
        return pd.read_parquet(layers, columns=[*STORAGE_COLUMNS, *extra]), repositories
    inv = Inventory.load(path)
    return inv.layers, inv.tags["repository"]


def _utc(value: datetime | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        raise ValueError(f"when={value!r} is not a date/time")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
