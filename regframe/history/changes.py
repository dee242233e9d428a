"""What changed between two audits: repositories, tags, storage per repository and newly stale tags.

A repository exists in an audit when it has at least one tag. Distribution 2.8 keeps a repository's
name in the catalog after its last tag is deleted, so a name listed with no tags counts as absent:
deleting every tag of a repository shows as "removed", and tagging it again as "added".

A repository or tag that either crawl could not read (a failed tag listing or manifest, a catalog cut
short) is never reported as added or removed: it is left out and counted in ``attrs["tags_unknown"]``
and ``attrs["repositories_unknown"]``, so a read error cannot pass for a deletion. For the same reason a
repository whose tags or layers a read error may hide, in either audit, is left out of the storage
changes and of the stored-bytes totals (growth): ``attrs["storage_unknown"]`` counts them. A tag stale in
the newer audit is newly stale only when the older audit read and dated it and judged it not stale, or
surely did not have it (added since); one it did not read or date is counted in ``attrs["stale_unknown"]``.

Two audits may cover different repositories (``repositories=``, ``match=``): only the repositories both
covered are compared. The others are left out of every frame and total (repositories, tags, storage,
growth, stale tags) and counted in ``attrs["repositories_out_of_scope"]``, so a narrower audit never
shows the rest of the registry as removed, nor the next full audit as added.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis import stale_tags, storage_usage
from ..analysis.accessories import unread
from ..analysis.stale import check_stale_rules
from ..client.atomic_files import write_atomically
from ..inventory import Inventory
from ..inventory.inventory import neutralize_formulas
from ..patterns import compile_pattern
from ..text import visible
from ..units import format_bytes

REPOSITORY_CHANGE_COLUMNS = ["repository", "change", "tags_before", "tags_after"]
TAG_CHANGE_COLUMNS = ["repository", "tag", "change", "old_digest", "new_digest", "old_created", "new_created"]
STORAGE_CHANGE_COLUMNS = [
    "repository",
    "stored_bytes_before",
    "stored_bytes_after",
    "stored_bytes_delta",
    "exclusive_bytes_before",
    "exclusive_bytes_after",
    "exclusive_bytes_delta",
    "tags_before",
    "tags_after",
]
STALE_CHANGE_COLUMNS = ["repository", "tag", "digest", "created", "age", "size", "reason", "before"]
NOT_THERE_BEFORE = "not in the older audit"
SUMMARY_TOP = 10

# ``(manifests, now) -> frame like stale_tags'``: ``Policy.evaluate`` has this shape. A rule that also
# takes ``tags=`` and ``errors=`` keywords (as ``stale_tags`` and ``Policy.evaluate`` do) gets each audit's.
StaleRule = Callable[..., pd.DataFrame]
# Error stages after which a repository's stored bytes may be short: all but an unreadable config (the
# manifest, with its layers, was read). Referrers lists hide the layers of the artifacts they list.
_HIDES_LAYERS = frozenset({"referrers", "referrer"})


class AuditOrderWarning(UserWarning):
    """The audit given as the older one was crawled after the one given as the newer one."""


class Diff:
    """The change from one audit to the next, as frames: ``repositories`` (added or removed), ``tags``
    (added, removed or moved, with the old and new digest and created date), ``storage`` (per repository:
    stored and exclusive bytes before, after and the delta, largest growth first) and ``stale`` (tags
    stale now that the older audit read, dated and judged not stale, or surely did not have: a tag it did
    not read or date is only counted, in ``attrs["stale_unknown"]``). ``attrs`` hold the totals, every size
    in bytes; ``growth_ratio`` is None when growth in percent is undefined, and ``growth_undefined`` says
    why (the older audit stored nothing, or no repository could be compared: ``storage_compared`` is 0)."""

    FRAMES = ("repositories", "tags", "storage", "stale")

    def __init__(
        self,
        repositories: pd.DataFrame,
        tags: pd.DataFrame,
        storage: pd.DataFrame,
        stale: pd.DataFrame,
        attrs: dict[str, Any],
    ):
        self.repositories = repositories
        self.tags = tags
        self.storage = storage
        self.stale = stale
        self.attrs = attrs

    def frames(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in self.FRAMES}

    def to_csv(self, dir: str | os.PathLike, *, spreadsheet_safe: bool = False) -> Path:
        """``diff_<frame>.csv`` for each frame and ``diff_totals.csv`` (one row: ``attrs``), each written
        through a renamed temporary file; ages are in days (``age_days``). ``spreadsheet_safe`` quotes text
        a spreadsheet would run as a formula, as the audit's CSVs do."""
        out = Path(dir)
        out.mkdir(parents=True, exist_ok=True)
        frames = {**self.frames(), "totals": pd.DataFrame([self.attrs])}
        for name, frame in frames.items():
            if "age" in frame and pd.api.types.is_timedelta64_dtype(frame["age"]):
                frame = frame.assign(age=frame["age"].dt.total_seconds() / 86400).rename(columns={"age": "age_days"})
            if spreadsheet_safe:
                frame = neutralize_formulas(frame)
            write_atomically(out / f"diff_{name}.csv", [frame.to_csv(index=False).encode()])
        return out

    def summary(self, top: int = SUMMARY_TOP) -> str:
        """The diff as text: totals, the repositories that grew or shrank most, and what changed."""
        a = self.attrs
        lines = [f"Changes from {_when(a['older_crawled_at'])} to {_when(a['newer_crawled_at'])}"]
        if a["older_url"] != a["newer_url"]:
            lines.append(f"  (different registries: {visible(a['older_url'])} and {visible(a['newer_url'])})")
        lines.append("")
        for label, before, after, change in _total_rows(a):
            lines.append(f"  {label:<22}  {before:>9} -> {after:<9}  {change}")
        moved = self.storage[self.storage["stored_bytes_delta"] != 0]
        if len(moved):
            shown = moved.reindex(moved["stored_bytes_delta"].abs().sort_values(ascending=False, kind="stable").index)
            shown = shown.head(top)
            width = max([len(visible(r)) for r in shown["repository"]] + [10])
            lines += ["", f"  {'repository':<{width}}  {'before':>10}  {'after':>10}  {'change':>10}"]
            columns = ("repository", "stored_bytes_before", "stored_bytes_after", "stored_bytes_delta")
            for name, before, after, delta in zip(*(shown[c].tolist() for c in columns), strict=True):
                lines.append(
                    f"  {visible(name):<{width}}  {format_bytes(int(before)):>10}  "
                    f"{format_bytes(int(after)):>10}  {_signed_bytes(int(delta)):>10}"
                )
            if len(moved) > top:
                lines.append(f"  ... and {len(moved) - top} more repositories changed size")
        for change in ("added", "removed"):
            names = self.repositories.loc[self.repositories["change"] == change, "repository"].tolist()
            if names:
                lines.append(f"  repositories {change}: {_names(names, top)}")
        for change in ("added", "removed", "moved"):
            rows = self.tags[self.tags["change"] == change]
            if len(rows):
                labels = (rows["repository"].astype(str) + ":" + rows["tag"].astype(str)).tolist()
                lines.append(f"  tags {change}: {_names(labels, top)}")
        lines += _warnings(a)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        a = self.attrs
        rows = _total_rows(a)
        body = "".join("<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
        head = "<tr><th></th><th>before</th><th>after</th><th>change</th></tr>"
        title = f"regframe Diff: {_when(a['older_crawled_at'])} → {_when(a['newer_crawled_at'])}"
        notes = "".join(f"<p>{escape(line.strip())}</p>" for line in _warnings(a) if line.strip())
        return f"<div><b>{escape(title)}</b><table>{head}{body}</table>{notes}</div>"


def diff(
    older: Inventory,
    newer: Inventory,
    *,
    older_than: Any = "90d",
    keep_last: int | None = None,
    keep: Any = None,
    match: Any = None,
    stale: StaleRule | None = None,
) -> Diff:
    """What changed from ``older`` to ``newer`` (two crawls, or what ``Inventory.load`` read back).

    Stale tags follow ``stale_tags``' rules (``older_than``, ``keep_last``, ``keep``, ``match``), or
    ``stale``, a function ``(manifests, now)`` such as ``policy.evaluate``. Each audit is judged at its
    own crawl time (now when unknown), so a tag that aged past the threshold counts as newly stale."""
    for name, inv in (("older", older), ("newer", newer)):
        if not isinstance(inv, Inventory):
            raise ValueError(f"diff: {name} must be an Inventory, not {type(inv).__name__}")
    if stale is not None and not callable(stale):
        raise ValueError(f"diff: stale must be a function (manifests, now) -> stale frame, not {stale!r}")
    if stale is None:
        options = {"older_than": older_than, "keep_last": keep_last, "keep": keep, "match": match}
        check_stale_rules(**options)

        def rule(
            manifests: pd.DataFrame,
            now: pd.Timestamp,
            *,
            tags: pd.DataFrame | None = None,
            errors: pd.DataFrame | None = None,
        ) -> pd.DataFrame:
            return stale_tags(manifests, now=now, tags=tags, errors=errors, **options)

        stale = rule
    in_order = older.crawled_at is None or newer.crawled_at is None or older.crawled_at <= newer.crawled_at
    if not in_order:
        warnings.warn(
            f"the audit given as the older one ({_when(_iso(older.crawled_at))}) was crawled after the one given "
            f"as the newer one ({_when(_iso(newer.crawled_at))}): every change is shown backwards in time; "
            "give the older audit first (regframe diff OLD NEW, new_inventory.diff(old_inventory))",
            AuditOrderWarning,
            stacklevel=2,
        )

    before, after = _Audit(older), _Audit(newer)
    seen = before.names | after.names
    compared = {name for name in seen if before.covers(name) and after.covers(name)}
    out_of_scope = len(seen - compared)
    hidden = before.hides_storage(compared) | after.hides_storage(compared)
    repositories = _repositories(before, after, compared)
    tags = _tags(before, after, compared)
    storage, usage_before, usage_after = _storage(before, after, compared - hidden)
    now = pd.Timestamp.now(tz="UTC")
    stale_before = _in(_judge(stale, older, older.crawled_at or now), compared)
    stale_after = _in(_judge(stale, newer, newer.crawled_at or now), compared)
    became, stale_unknown = _became_stale(stale_before, stale_after, before)

    stored_before, stored_after = int(usage_before.attrs["total_bytes"]), int(usage_after.attrs["total_bytes"])
    storage_compared = len(compared - hidden)
    counts = tags["change"].value_counts()
    repo_counts = repositories["change"].value_counts()
    attrs: dict[str, Any] = {
        "older_url": older.url,
        "newer_url": newer.url,
        "older_crawled_at": _iso(older.crawled_at),
        "newer_crawled_at": _iso(newer.crawled_at),
        "repositories_before": len(before.present & compared),
        "repositories_after": len(after.present & compared),
        "repositories_added": int(repo_counts.get("added", 0)),
        "repositories_removed": int(repo_counts.get("removed", 0)),
        "repositories_unknown": int(repositories.attrs["unknown"]),
        "tags_before": int(_text(before.tags["repository"]).isin(compared).sum()),
        "tags_after": int(_text(after.tags["repository"]).isin(compared).sum()),
        "tags_added": int(counts.get("added", 0)),
        "tags_removed": int(counts.get("removed", 0)),
        "tags_moved": int(counts.get("moved", 0)),
        "tags_unknown": int(tags.attrs["unknown"]),
        "storage_unknown": len(hidden),
        "storage_compared": storage_compared,
        "repositories_out_of_scope": out_of_scope,
        "stored_bytes_before": stored_before,
        "stored_bytes_after": stored_after,
        "stored_bytes_delta": stored_after - stored_before,
        "growth_ratio": (stored_after - stored_before) / stored_before if stored_before else None,
        "growth_undefined": _growth_undefined(
            stored_before, storage_compared, len(hidden), out_of_scope, before, after
        ),
        "logical_bytes_before": int(usage_before.attrs["logical_bytes"]),
        "logical_bytes_after": int(usage_after.attrs["logical_bytes"]),
        "stale_before": int(stale_before["stale"].astype(bool).sum()),
        "stale_after": int(stale_after["stale"].astype(bool).sum()),
        "stale_new": len(became),
        "stale_unknown": stale_unknown,
        "errors_before": len(older.errors),
        "errors_after": len(newer.errors),
        "complete": bool(older.complete and newer.complete),
        "same_scope": _scope(older) == _scope(newer),
        "in_order": in_order,
    }
    for frame in (repositories, tags):
        frame.attrs = {}
    return Diff(repositories, tags, storage, became, attrs)


class _Audit:
    """One side of a diff: its tags, tag counts per repository, and what it could not read."""

    def __init__(self, inv: Inventory):
        self.inv = inv
        tags = pd.DataFrame(
            {
                "repository": _text(inv.tags["repository"]),
                "tag": _text(inv.tags["tag"]),
                "digest": _text(inv.tags["digest"]),
            }
        )
        created = (
            pd.DataFrame(
                {
                    "repository": _text(inv.manifests["repository"]),
                    "tag": _text(inv.manifests["tag"]),
                    "created": pd.to_datetime(inv.manifests["created"], utc=True),
                }
            )
            .groupby(["repository", "tag"], sort=False)["created"]
            .max()
        )
        self.tags = tags.join(created, on=["repository", "tag"])
        listed = pd.Series(
            pd.to_numeric(inv.catalog["tag_count"]).fillna(0).to_numpy(int), index=_text(inv.catalog["repository"])
        )
        read = self.tags.groupby("repository").size()
        counts = pd.concat([listed, read], axis=1).fillna(0).max(axis=1).astype(int)
        self.counts = counts.groupby(level=0).max()
        self.present = set(self.counts.index[self.counts > 0])
        errors = inv.errors
        repo, tag = _text(errors["repository"]), errors["tag"]
        self.unread_repositories = set(repo[tag.isna() & (repo != "")])
        self.unread_tags = set(zip(repo[tag.notna()], _text(tag[tag.notna()]), strict=True))
        stages = set(_text(errors["stage"]))
        self.catalog_unread = not inv.complete or bool(stages & {"catalog", "interrupted"})
        self.names = set(self.counts.index) | set(_text(inv.layers["repository"]))
        names, match = inv.params.get("repositories"), inv.params.get("match")
        self.scope_names = None if names is None else set(names)
        self.scope_match = compile_pattern(match, "match")

    def covers(self, repository: str) -> bool:
        """Whether this crawl was asked to read ``repository`` (an audit saved without its parameters read
        the whole catalog)."""
        if self.scope_names is not None and repository not in self.scope_names:
            return False
        return self.scope_match is None or self.scope_match.search(repository, kind="repository")

    def hides_storage(self, names: set[str]) -> set[str]:
        """Those of ``names`` whose stored bytes this crawl may have read short: ``unread`` (the analysis'
        rule: an error that may hide a tag there, or one for the whole crawl) or a failed referrers list;
        a catalog cut short hides only the repositories this crawl did not list."""
        errors = self.inv.errors
        ordered = np.array(sorted(names), dtype=object)
        repo = errors["repository"].astype(object)
        stage = _text(errors["stage"])
        whole = (repo.isna() | (repo == "")).to_numpy()
        catalog = whole & (stage == "catalog").to_numpy()
        hidden = np.array(unread(ordered, errors[~catalog]), dtype=bool)
        hidden |= pd.Series(ordered).isin(set(repo[~whole & stage.isin(_HIDES_LAYERS).to_numpy()])).to_numpy()
        if catalog.any():
            hidden |= ~pd.Series(ordered).isin(self.present).to_numpy()
        elif not self.inv.complete and not whole.any():
            hidden[:] = True
        return set(ordered[hidden])

    def count(self, repository: str) -> int:
        return int(self.counts.get(repository, 0))

    def may_lack_repository(self, repository: str) -> bool:
        """True when this crawl not listing ``repository`` may be a read error rather than its absence."""
        return self.catalog_unread or repository in self.unread_repositories

    def may_lack_tag(self, repository: str, tag: str) -> bool:
        return self.may_lack_repository(repository) or (repository, tag) in self.unread_tags


def _repositories(before: _Audit, after: _Audit, compared: set[str]) -> pd.DataFrame:
    rows, unknown = [], 0
    for name in sorted((before.present ^ after.present) & compared):
        added = name in after.present
        if (before if added else after).may_lack_repository(name):
            unknown += 1
            continue
        rows.append((name, "added" if added else "removed", before.count(name), after.count(name)))
    frame = pd.DataFrame(rows, columns=REPOSITORY_CHANGE_COLUMNS).astype(
        {"tags_before": "int64", "tags_after": "int64"}
    )
    frame.attrs["unknown"] = unknown
    return frame


def _tags(before: _Audit, after: _Audit, compared: set[str]) -> pd.DataFrame:
    merged = _in(before.tags, compared).merge(
        _in(after.tags, compared), on=["repository", "tag"], how="outer", suffixes=("_old", "_new"), indicator=True
    )
    side = merged["_merge"].astype(str).to_numpy()
    moved = (side == "both") & (merged["digest_old"] != merged["digest_new"]).to_numpy()
    change = np.select([side == "right_only", side == "left_only", moved], ["added", "removed", "moved"], default="")
    unsure = np.array(
        [
            (after if c == "removed" else before).may_lack_tag(r, t) if c in ("added", "removed") else False
            for r, t, c in zip(merged["repository"], merged["tag"], change, strict=True)
        ],
        dtype=bool,
    )
    keep = (change != "") & ~unsure
    frame = pd.DataFrame(
        {
            "repository": merged["repository"].to_numpy()[keep],
            "tag": merged["tag"].to_numpy()[keep],
            "change": change[keep],
            "old_digest": merged["digest_old"].to_numpy()[keep],
            "new_digest": merged["digest_new"].to_numpy()[keep],
            "old_created": merged["created_old"].array[keep],
            "new_created": merged["created_new"].array[keep],
        },
        columns=TAG_CHANGE_COLUMNS,
    )
    frame = frame.sort_values(["repository", "change", "tag"], kind="stable", ignore_index=True)
    frame.attrs["unknown"] = int(unsure.sum())
    return frame


def _storage(before: _Audit, after: _Audit, compared: set[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Stored and exclusive bytes of the ``compared`` repositories (layers shared with others not
    compared count as exclusive), and each side's ``storage_usage`` of them: its totals are growth's."""
    usage_before = storage_usage(_in(before.inv.layers, compared))
    usage_after = storage_usage(_in(after.inv.layers, compared))
    names = sorted(set(_text(usage_before["repository"])) | set(_text(usage_after["repository"])))
    names = sorted(set(names) | ((before.present | after.present) & compared))
    frame = pd.DataFrame({"repository": names})
    for label, usage in (("before", usage_before), ("after", usage_after)):
        indexed = usage.assign(repository=_text(usage["repository"])).set_index("repository")
        for column in ("stored_bytes", "exclusive_bytes"):
            frame[f"{column}_{label}"] = indexed[column].reindex(names).fillna(0).astype("int64").to_numpy()
    for column in ("stored_bytes", "exclusive_bytes"):
        frame[f"{column}_delta"] = frame[f"{column}_after"] - frame[f"{column}_before"]
    frame["tags_before"] = [before.count(name) for name in names]
    frame["tags_after"] = [after.count(name) for name in names]
    frame = frame[STORAGE_CHANGE_COLUMNS].astype({column: "int64" for column in STORAGE_CHANGE_COLUMNS[1:]})
    frame = frame.sort_values(
        ["stored_bytes_delta", "repository"], ascending=[False, True], kind="stable", ignore_index=True
    )
    return frame, usage_before, usage_after


def _became_stale(before: pd.DataFrame, after: pd.DataFrame, older: _Audit) -> tuple[pd.DataFrame, int]:
    """The tags stale in ``after`` that the older audit judged not stale, or surely did not have (a tag added
    since, whose absence a complete read of its repository shows); and how many stale tags are left out
    because the older audit cannot say: it did not read them (a crawl stopped early, a read error), or read
    them without a date (an unread config), or it kept an accessory of a repository it did not read in full."""
    now_stale = after[after["stale"].astype(bool).to_numpy()]
    earlier = pd.DataFrame(
        {
            "repository": _text(before["repository"]),
            "tag": _text(before["tag"]),
            "was_stale": before["stale"].astype(bool).to_numpy(),
            "before": before["reason"].astype(str).to_numpy(),
            "judged": _judged(before, older),
        }
    )
    current = now_stale.assign(repository=_text(now_stale["repository"]), tag=_text(now_stale["tag"]))
    merged = current.merge(earlier, on=["repository", "tag"], how="left")
    listed = set(zip(older.tags["repository"], older.tags["tag"], strict=True))
    pairs = list(zip(merged["repository"], merged["tag"], strict=True))
    absent = merged["was_stale"].isna().to_numpy()
    surely_absent = absent & np.array(
        [pair not in listed and not older.may_lack_tag(*pair) for pair in pairs], dtype=bool
    )
    judged_fresh = ~absent & merged["was_stale"].eq(False).to_numpy() & merged["judged"].eq(True).to_numpy()
    was_stale = merged["was_stale"].eq(True).to_numpy()
    unknown = int((~was_stale & ~judged_fresh & ~surely_absent).sum())
    merged = merged[judged_fresh | surely_absent]
    merged["before"] = merged["before"].fillna(NOT_THERE_BEFORE)
    merged["digest"] = _text(merged["digest"])
    return merged[STALE_CHANGE_COLUMNS].reset_index(drop=True), unknown


def _judged(verdicts: pd.DataFrame, audit: _Audit) -> np.ndarray:
    """Per row of ``verdicts`` (an audit's stale tags), whether the audit had what its verdict needs: a date
    for a tag (a tag kept as undated was not judged by age), and for an accessory, which follows its subject,
    every tag of its repository read."""
    column = next((name for name in ("age", "created") if name in verdicts.columns), None)
    judged = np.ones(len(verdicts), dtype=bool) if column is None else verdicts[column].notna().to_numpy()
    if "subject" in verdicts.columns:
        accessory = verdicts["subject"].notna().to_numpy()
        names = _text(verdicts["repository"]).to_numpy()
        read_in_full = ~np.asarray(unread(names, audit.inv.errors), dtype=bool) & bool(audit.inv.complete)
        judged = np.where(accessory, read_in_full, judged)
    return judged


def _growth_undefined(
    stored_before: int, compared: int, hidden: int, out_of_scope: int, before: _Audit, after: _Audit
) -> str | None:
    """Why growth in percent has no value (None when it has one): no repository could be compared (an audit
    stopped early, read errors may have cut every one short, or the two audits crawled none in common), or
    the older audit stored nothing in the repositories compared."""
    if stored_before:
        return None
    if compared == 0 and hidden:
        stopped = [side for side, audit in (("older", before), ("newer", after)) if not audit.inv.complete]
        why = (
            f"the {' and the '.join(stopped)} audit stopped early"
            if stopped
            else "read errors may have cut every repository short"
        )
        return f"no repository could be compared ({why}), so growth is unknown"
    if compared == 0 and out_of_scope:
        return "no repository could be compared (the audits crawled none in common), so growth is unknown"
    return "the previous audit stored 0 bytes, so growth in percent is undefined"


def _judge(stale: StaleRule, inv: Inventory, now: pd.Timestamp) -> pd.DataFrame:
    """``stale``'s verdicts on one audit, given its tags and errors when it takes them, so an accessory the
    audit kept (its subject may be in a tag this crawl could not read) is not stale in the diff either."""
    if _takes_crawl_frames(stale):
        return stale(inv.manifests, now, tags=inv.tags, errors=inv.errors)
    return stale(inv.manifests, now)


def _takes_crawl_frames(function: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return True
    keywords = {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return {"tags", "errors"} <= keywords


def _in(frame: pd.DataFrame, names: set[str]) -> pd.DataFrame:
    """The rows of ``frame`` whose repository is one of ``names``."""
    return frame[_text(frame["repository"]).isin(names).to_numpy()]


def _text(values: pd.Series | pd.Index) -> pd.Series:
    """Names and digests as plain strings (categoricals of two crawls have different categories)."""
    return pd.Series(np.asarray(values, dtype=object), index=None if isinstance(values, pd.Index) else values.index)


def _scope(inv: Inventory) -> tuple[Any, Any]:
    return (inv.params.get("repositories"), inv.params.get("match"))


def _iso(stamp: pd.Timestamp | None) -> str | None:
    return None if stamp is None else stamp.isoformat()


def _when(text: str | None) -> str:
    return "an undated audit" if text is None else pd.Timestamp(text).strftime("%Y-%m-%d %H:%M:%S UTC")


def _signed_bytes(n: int) -> str:
    return ("+" if n > 0 else "") + format_bytes(n)


def _percent(ratio: float | None) -> str:
    return "" if ratio is None else f" ({ratio:+.1%})"


def _total_rows(a: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, before, after, change) for the four totals a diff is read by."""
    return [
        (
            "repositories with tags",
            f"{a['repositories_before']:,}",
            f"{a['repositories_after']:,}",
            _counts(a, "repositories"),
        ),
        ("tags", f"{a['tags_before']:,}", f"{a['tags_after']:,}", _counts(a, "tags")),
        (
            "stored",
            format_bytes(a["stored_bytes_before"]),
            format_bytes(a["stored_bytes_after"]),
            _signed_bytes(a["stored_bytes_delta"]) + _percent(a["growth_ratio"]),
        ),
        ("stale tags", f"{a['stale_before']:,}", f"{a['stale_after']:,}", f"{a['stale_new']:,} became stale"),
    ]


def _counts(a: dict[str, Any], what: str) -> str:
    text = f"{a[f'{what}_added']:,} added, {a[f'{what}_removed']:,} removed"
    return text + (f", {a['tags_moved']:,} moved" if what == "tags" else "")


def _names(names: list[str], top: int) -> str:
    """Names for one line of the summary, each kept on it (a saved audit's names may hold anything)."""
    shown = ", ".join(visible(name) for name in names[:top])
    return shown + (f" and {len(names) - top} more" if len(names) > top else "")


def _warnings(a: dict[str, Any]) -> list[str]:
    lines = []
    if not a.get("in_order", True):
        lines.append(
            "  Note: the older audit was crawled after the newer one: every change is shown backwards in time."
        )
    unknown = a["repositories_unknown"] + a["tags_unknown"]
    storage = a.get("storage_unknown", 0)
    stale_unknown = a.get("stale_unknown", 0)
    if unknown or storage or stale_unknown or a["errors_before"] or a["errors_after"] or not a["complete"]:
        lines.append(
            f"  Note: the audits had {a['errors_before']} and {a['errors_after']} read error(s)"
            f"{'' if a['complete'] else ' and one stopped early'}; {a['repositories_unknown']} repositories and "
            f"{a['tags_unknown']} tags that only one audit could read are left out"
            + (
                f", and {storage} {_repos(storage)} a read error may have cut short {_are(storage)} left out of "
                "storage and growth"
                if storage
                else ""
            )
            + (
                f"; {stale_unknown} stale {_tag_word(stale_unknown)} the older audit did not read or date "
                f"{_are(stale_unknown)} not counted as newly stale"
                if stale_unknown
                else ""
            )
            + "."
        )
    if storage and not a.get("storage_compared", 1):
        lines.append(f"  Note: {a.get('growth_undefined') or 'no repository could be compared'}.")
    outside = a.get("repositories_out_of_scope", 0)
    if not a["same_scope"] or outside:
        lines.append(
            "  Note: the audits crawled different repositories (repositories=/match= differ): "
            f"{outside} {_repos(outside)} outside one audit's scope {_are(outside)} left out of every change, "
            "of storage and of growth; only the repositories both audits crawled are compared."
        )
    return lines


def _repos(n: int) -> str:
    return "repository" if n == 1 else "repositories"


def _tag_word(n: int) -> str:
    return "tag" if n == 1 else "tags"


def _are(n: int) -> str:
    return "is" if n == 1 else "are"
