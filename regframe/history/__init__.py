"""Audits over time: what changed between two inventories, and dated snapshots of a registry.

Sits above ``regframe.analysis`` (a diff compares storage and stale tags), so ``Inventory.diff`` loads
it on first call. ``diff(older, newer)`` returns a :class:`Diff`; ``save(inv, dir)`` stores a snapshot,
``load(dir)`` reads every snapshot of a folder as one row per snapshot and repository. ``url=`` keeps one
registry's snapshots of a folder several share; a snapshot that cannot be read is skipped with a
``SnapshotWarning``.
"""

from .changes import Diff, StaleRule, diff
from .snapshots import SnapshotWarning, latest, load, load_latest, load_snapshot, save, snapshot_time, snapshots

__all__ = [
    "Diff",
    "SnapshotWarning",
    "StaleRule",
    "diff",
    "latest",
    "load",
    "load_latest",
    "load_snapshot",
    "save",
    "snapshot_time",
    "snapshots",
]
