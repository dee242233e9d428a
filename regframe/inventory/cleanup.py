"""Carrying out a stale-tag plan against the registry, re-checked live so the dry run and the real run agree."""

from __future__ import annotations

import pandas as pd

from ..client import errors as E

RESULT_COLUMNS = ["repository", "tag", "digest", "action", "method", "status"]


def apply_cleanup(client, stale: pd.DataFrame, dry_run: bool = True) -> pd.DataFrame:
    """Delete the rows of ``stale`` whose ``stale`` is True, one tag at a time with the safe ``rmtag``.

    Before anything, each repository's tags are listed with their digests: a tag that moved or
    vanished since the analysis is skipped, and tags sharing a digest are spared. The dry run makes
    the same checks and reports what the real run would do, row for row."""
    missing = {"repository", "tag", "digest", "stale"} - set(stale.columns)
    if missing:
        raise ValueError(f"stale frame lacks column(s) {', '.join(sorted(missing))}; pass the output of stale_tags()")
    todo = stale[stale["stale"].astype(bool)]
    rows = []
    for repository, group in todo.groupby("repository", observed=True, sort=True):
        repository = str(repository)
        try:
            live = client.tags(repository, with_hashes=True, auto_paginate=True).get("hashes", {})
        except E.RegistryError as exc:
            rows += [(repository, str(t), str(d), "delete", None, f"error: {exc}")
                     for t, d in zip(group["tag"], group["digest"])]
            continue
        remaining = dict(live)
        for tag, digest in sorted(zip(group["tag"].astype(str), group["digest"].astype(str))):
            current = remaining.get(tag)
            if current is None:
                rows.append((repository, tag, digest, "skip", None, "skipped: tag no longer exists"))
                continue
            if current != digest:
                rows.append((repository, tag, digest, "skip", None, f"skipped: tag moved to {current}"))
                continue
            siblings = [t for t, d in remaining.items() if d == digest and t != tag]
            method = "placeholder" if siblings else "delete-manifest"
            if dry_run:
                status = "would delete"
            else:
                try:
                    method = client.rmtag(repository, tag, siblings=siblings)["method"]
                    status = "deleted"
                except E.RegistryError as exc:
                    rows.append((repository, tag, digest, "delete", method, f"error: {exc}"))
                    if isinstance(exc, E.DeleteDisabledError):
                        raise
                    continue
            remaining.pop(tag, None)
            rows.append((repository, tag, digest, "delete", method, status))
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)
