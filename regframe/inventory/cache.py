"""A cache keyed by digest: what a manifest or config says never changes for the same digest.

It keeps the few fields a crawl needs (not whole bodies), in memory during a crawl and in a
SQLite file between crawls, so a re-crawl of an unchanged registry costs one HEAD per tag.

Only what the content itself showed is kept: a manifest's summary, an image config's summary, or why a
manifest could not be summarised. Every entry is checked when read: one that is not JSON, or not of the
shape a crawl writes, is a cache miss (read again from the registry and rewritten), with one warning
naming the file. A cache that cannot be written when the crawl ends is a warning too, never a lost crawl.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import warnings
from pathlib import Path
from typing import Any

# 2: manifest summaries carry the config media type and a classification skeleton; failures are cached.
SCHEMA_VERSION = 2
# What a cached value summarises, told apart by its keys: a manifest (or why it could not be summarised)
# or an image config.
MANIFEST = "manifest"
CONFIG = "config"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Written by regframe before it knew better: a verdict from one manifest's declared config size, not from
# the config blob itself, so not true of the digest. Never written now; dropped quietly when read.
_DECLARED_VERDICT = re.compile(r"declares -?\d+ bytes, over the \d+-byte limit")


class CacheWarning(UserWarning):
    """The digest cache could not be read in part, or written: the crawl goes on without that part."""


class NewerCacheError(ValueError):
    """A cache file written by a newer regframe (a higher schema version): refused, and left as it is."""


class DigestCache:
    """Digest -> small JSON-able summary. ``DigestCache()`` lives in memory; ``DigestCache(path)`` persists.

    A path that cannot be opened as a cache (a missing folder, no permission, not a SQLite file) raises
    ValueError naming it, at once rather than when a crawl ends; so does a cache written by a newer regframe
    (``NewerCacheError``), which is left untouched. An older cache schema is emptied and relabelled.
    Entries that are not JSON or not of the shape a crawl writes are ignored (a cache miss), with one
    ``CacheWarning`` naming the file."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = _database_file(Path(path)) if path is not None else None
        self._data: dict[str, Any] = {}
        self._kinds: dict[str, str] = {}
        self._new: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        # Entries of the file that were ignored when it was read: not JSON, or not of a crawl's shape.
        self.damaged = 0
        if self.path is not None:
            try:
                first = self._load(self.path)
            except sqlite3.Error as exc:
                folder = self.path.parent
                reason = exc if folder.is_dir() else f"its folder {str(folder)!r} does not exist"
                raise ValueError(
                    f"cache {str(self.path)!r} cannot be opened as a SQLite digest cache: {reason}"
                ) from exc
            if self.damaged:
                one = self.damaged == 1
                count = f"{self.damaged} entr{'y' if one else 'ies'}"
                warnings.warn(
                    CacheWarning(
                        f"cache {str(self.path)!r}: {count} could not be read and {'is' if one else 'are'} ignored "
                        f"({first}); {'its' if one else 'their'} content is read again from the registry and "
                        f"rewritten; if this keeps happening, delete {str(self.path)!r} (the next crawl rebuilds it)"
                    ),
                    stacklevel=2,
                )

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        """Open the file as a cache of this schema; a newer schema is refused before anything is written."""
        db = sqlite3.connect(path)
        try:
            found = _schema(db)
            if found is not None and _newer(found):
                raise NewerCacheError(
                    f"cache {str(path)!r} was written by a newer regframe (cache schema {found}; this regframe "
                    f"reads schema {SCHEMA_VERSION}): upgrade regframe, or give this crawl another cache path; "
                    "the file is left as it is"
                )
            db.execute("CREATE TABLE IF NOT EXISTS entries (digest TEXT PRIMARY KEY, body TEXT NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            if found is None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif found != str(SCHEMA_VERSION):
                db.execute("DELETE FROM entries")
                db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))
            db.commit()
        except BaseException:
            db.close()
            raise
        return db

    def _load(self, path: Path) -> str | None:
        """Read every entry that is a crawl's; returns why the first ignored one was ignored."""
        first = None
        db = self._connect(path)
        try:
            for digest, body in db.execute("SELECT digest, body FROM entries"):
                try:
                    value = json.loads(body)
                except (TypeError, ValueError, RecursionError) as exc:
                    problem: str | None = f"not JSON: {str(exc)[:80]}"
                else:
                    problem = entry_problem(value)
                if problem is None:
                    self._data[digest] = value
                    self._kinds[digest] = kind_of(value)
                elif problem:
                    self.damaged += 1
                    first = first or f"{str(digest)[:80]}: {problem}"
        finally:
            db.close()
        return first

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, digest: str) -> bool:
        return digest in self._data

    def get(self, digest: str, kind: str | None = None) -> Any | None:
        """The summary cached for ``digest``; with ``kind`` (``MANIFEST``, ``CONFIG``) only one of that kind."""
        value = self._data.get(digest)
        if value is not None and kind is not None and self._kinds.get(digest) != kind:
            value = None
        with self._lock:
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
        return value

    def put(self, digest: str, value: Any) -> None:
        """Remember ``value`` for this crawl; it is written by ``save`` only when it has a crawl's shape."""
        keep = entry_problem(value) is None
        with self._lock:
            self._data[digest] = value
            self._kinds[digest] = kind_of(value)
            if keep:
                self._new[digest] = value

    def save(self) -> None:
        """Write what this crawl learned; one transaction, so an interrupted save loses nothing old.

        Raises ``sqlite3.Error`` or ``OSError`` when the file cannot be written (locked past SQLite's timeout,
        a read-only filesystem, a full disk), and ``NewerCacheError`` when a newer regframe took the file over
        meanwhile; what was not written is kept for another ``save``."""
        if self.path is None or not self._new:
            return
        with self._lock:
            new, self._new = self._new, {}
        try:
            db = self._connect(self.path)
            try:
                with db:
                    db.executemany(
                        "INSERT OR REPLACE INTO entries VALUES (?, ?)",
                        [(d, json.dumps(v, separators=(",", ":"))) for d, v in new.items()],
                    )
            finally:
                db.close()
        except BaseException:
            with self._lock:
                self._new = {**new, **self._new}
            raise


def kind_of(value: Any) -> str:
    """``MANIFEST`` for a manifest's summary or failure, ``CONFIG`` for anything else (a config's summary)."""
    return MANIFEST if isinstance(value, dict) and ("children" in value or "failed" in value) else CONFIG


def entry_problem(value: Any) -> str | None:
    """Why a cached value is not one a crawl writes (None when it is; "" for an old declared-size verdict,
    ignored without a warning). The fields the crawl and the frames read are checked with their types."""
    if not isinstance(value, dict):
        return f"a JSON {_json_type(value)}, not an object"
    if "failed" in value:
        return None if isinstance(value["failed"], str) else "'failed' is not a string"
    if "children" in value or "media_type" in value:
        return _manifest_problem(value)
    if "os" in value or "labels" in value:
        return _config_problem(value)
    return "neither a manifest's nor a config's summary"


def _manifest_problem(value: dict) -> str | None:
    for key in ("media_type", "size", "config", "layers", "children", "skeleton"):
        if key not in value:
            return f"a manifest summary without {key!r}"
    if not _text(value["media_type"]):
        return "'media_type' is not a string"
    if not _size(value["size"]):
        return "'size' is not a size"
    if value["config"] is not None and not _descriptor(value["config"]):
        return "'config' is not [digest, size, media type]"
    if not isinstance(value["layers"], list) or not all(_descriptor(layer) for layer in value["layers"]):
        return "'layers' is not a list of [digest, size, media type]"
    children = value["children"]
    if not isinstance(children, list) or not all(
        isinstance(child, list) and len(child) == 5 and all(_text(part) for part in child) for child in children
    ):
        return "'children' is not a list of [digest, media type, os, architecture, variant]"
    if not isinstance(value["skeleton"], dict):
        return "'skeleton' is not an object"
    if not isinstance(value.get("reads_config", False), bool):
        return "'reads_config' is not true or false"
    return None


def _config_problem(value: dict) -> str | None:
    for key in ("os", "architecture", "variant"):
        if not _text(value.get(key)):
            return f"{key!r} is not a string"
    if not isinstance(value.get("labels"), dict):
        return "'labels' is not an object"
    if "bytes" in value and not _size(value["bytes"]):
        return "'bytes' is not a size"
    unreadable = value.get("unreadable")
    if not _text(unreadable):
        return "'unreadable' is not a string"
    if isinstance(unreadable, str) and _DECLARED_VERDICT.fullmatch(unreadable):
        return ""
    return None


def _text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


def _descriptor(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 3 and _text(value[0]) and _size(value[1]) and _text(value[2])


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _schema(db: sqlite3.Connection) -> str | None:
    """The schema a cache file says it has; None for a new file (or one without it)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is None:
        return None
    row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    return None if row is None else str(row[0])


def _newer(schema: str) -> bool:
    """Whether a schema label is a later version than this regframe's (anything else is older or foreign)."""
    return re.fullmatch(r"\s*[0-9]+\s*", schema) is not None and int(schema) > SCHEMA_VERSION


def _database_file(path: Path) -> Path:
    """A directory (or a name without a suffix, made a directory) holds ``digests.sqlite``."""
    if path.is_dir() or path.suffix == "":
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cache {str(path)!r} cannot be made a folder: {exc.strerror or exc}") from exc
        return path / "digests.sqlite"
    return path
