"""A cache keyed by digest: what a manifest or config says never changes for the same digest.

It keeps the few fields a crawl needs (not whole bodies), in memory during a crawl and in a
SQLite file between crawls, so a re-crawl of an unchanged registry costs one HEAD per tag.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

# 2: manifest summaries carry the config media type and a classification skeleton; failures are cached.
SCHEMA_VERSION = 2


class DigestCache:
    """Digest -> small JSON-able summary. ``DigestCache()`` lives in memory; ``DigestCache(path)`` persists.

    A path that cannot be opened as a cache (a missing folder, no permission, not a SQLite file) raises
    ValueError naming it, at once rather than when a crawl ends."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = _database_file(Path(path)) if path is not None else None
        self._data: dict[str, Any] = {}
        self._new: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        if self.path is not None:
            try:
                self._load(self.path)
            except sqlite3.Error as exc:
                folder = self.path.parent
                reason = exc if folder.is_dir() else f"its folder {str(folder)!r} does not exist"
                raise ValueError(
                    f"cache {str(self.path)!r} cannot be opened as a SQLite digest cache: {reason}"
                ) from exc

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE IF NOT EXISTS entries (digest TEXT PRIMARY KEY, body TEXT NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif row[0] != str(SCHEMA_VERSION):
            db.execute("DELETE FROM entries")
            db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))
        db.commit()
        return db

    def _load(self, path: Path) -> None:
        db = self._connect(path)
        try:
            for digest, body in db.execute("SELECT digest, body FROM entries"):
                self._data[digest] = json.loads(body)
        finally:
            db.close()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, digest: str) -> bool:
        return digest in self._data

    def get(self, digest: str) -> Any | None:
        value = self._data.get(digest)
        with self._lock:
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
        return value

    def put(self, digest: str, value: Any) -> None:
        with self._lock:
            self._data[digest] = value
            self._new[digest] = value

    def save(self) -> None:
        """Write what this crawl learned; one transaction, so an interrupted save loses nothing old."""
        if self.path is None or not self._new:
            return
        with self._lock:
            new, self._new = self._new, {}
        db = self._connect(self.path)
        try:
            with db:
                db.executemany(
                    "INSERT OR REPLACE INTO entries VALUES (?, ?)",
                    [(d, json.dumps(v, separators=(",", ":"))) for d, v in new.items()],
                )
        finally:
            db.close()


def _database_file(path: Path) -> Path:
    """A directory (or a name without a suffix, made a directory) holds ``digests.sqlite``."""
    if path.is_dir() or path.suffix == "":
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cache {str(path)!r} cannot be made a folder: {exc.strerror or exc}") from exc
        return path / "digests.sqlite"
    return path
