"""Stale-tag rules as live controls: the plan, its chart and the bytes it frees follow every change.

Deleting goes through two clicks: "Delete" shows what the registry-checked dry run would do, and only
"Confirm delete" acts, on exactly the rows that dry run listed.

"Export CSV" writes into one folder fixed when the widget is made, under a name the widget chooses: the
page may be served to visitors (``regframe dashboard``), and nothing they type becomes a path.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from html import escape
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd

from regframe import analysis, plot
from regframe.actions.cleanup import outcome_count
from regframe.analysis.duration import format_duration
from regframe.analysis.stale import check_stale_rules
from regframe.client.atomic_files import write_atomically
from regframe.client.errors import RegistryError
from regframe.inventory import Inventory
from regframe.registry import Registry

from . import _render
from .crawl_panel import check_registry

_PLAN_FORMATS = {"digest": _render.short_digest, "created": _render.date, "age": _render.days}
_RESULT_FORMATS = {"digest": _render.short_digest}
EXPORT_PREFIX = "stale-tags"
_MAX_SAME_SECOND = 1000


class StaleTagsWidget(widgets.VBox):
    """Controls for ``older_than``, ``keep_last``, ``keep`` and ``match``; the plan, chart and reclaimable
    bytes below them; CSV export into ``export_dir`` (default: the working directory when the widget is
    made); and, with a registry, a confirmed delete.

    Current results: ``stale`` (the ``stale_tags`` frame), ``plan`` (``cleanup_plan``),
    ``reclaimable_bytes``; after a dry run ``dry_run``, after a deletion ``result``.
    """

    def __init__(
        self,
        inventory: Inventory,
        registry: Registry | None = None,
        *,
        older_than: str | int | dt.timedelta | pd.Timedelta = "90d",
        keep_last: int | None = None,
        keep: str | None = None,
        match: str | None = None,
        now: str | dt.datetime | pd.Timestamp | None = None,
        export_dir: str | os.PathLike | None = None,
    ):
        check_stale_rules(older_than, keep_last, keep, match)
        self.export_dir = _export_folder(export_dir)
        self.inventory = inventory
        self.registry = None if registry is None else check_registry(registry, "stale_tags(registry=...)")
        self.now = now
        self.manifests = inventory.manifests
        self.layers = inventory.layers
        self.stale: pd.DataFrame | None = None
        self.plan: pd.DataFrame | None = None
        self.reclaimable_bytes: int | None = None
        self.dry_run: pd.DataFrame | None = None
        self.result: pd.DataFrame | None = None
        self.error: str | None = None
        self._pending: pd.DataFrame | None = None

        self._start_threshold: pd.Timedelta | None = analysis.parse_duration(older_than)
        start_days = math.ceil(self._start_threshold / pd.Timedelta(days=1))
        self.older_than = widgets.IntSlider(
            value=start_days,
            min=0,
            max=max(_oldest_days(self.manifests, now), start_days, 30),
            description="Older than",
            continuous_update=False,
            readout_format="d",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="460px"),
        )
        self.older_than.add_class("regframe-older-than")
        self.keep_last = widgets.BoundedIntText(
            value=keep_last or 0,
            min=0,
            max=1_000_000,
            description="Keep newest",
            tooltip="always keep the newest N tags of each repository (0: none)",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="160px"),
        )
        self.keep = widgets.Text(
            value=keep or "",
            description="Keep tags matching",
            placeholder=r"e.g. ^(latest|stable)$",
            continuous_update=False,
            style={"description_width": "initial"},
        )
        self.match = widgets.Text(
            value=match or "",
            description="Only tags matching",
            placeholder="empty: every tag",
            continuous_update=False,
            style={"description_width": "initial"},
        )
        self.summary = widgets.HTML()
        self.summary.add_class("regframe-stale-summary")
        self.reclaimable = widgets.HTML()
        self.reclaimable.add_class("regframe-reclaimable")
        self.message = widgets.HTML()
        self.message.add_class("regframe-stale-message")
        self.chart = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.table = widgets.HTML(layout=widgets.Layout(max_height="420px", overflow="auto"))
        self.table.add_class("regframe-stale-table")

        self.export_button = widgets.Button(
            description="Export CSV",
            icon="download",
            tooltip=f"write the current plan (cleanup_plan) as a new {EXPORT_PREFIX}-<date>-<time>.csv "
            f"in {self.export_dir}",
        )
        self.export_button.add_class("regframe-export")
        self.delete_button = widgets.Button(
            description="Delete...",
            icon="trash",
            button_style="danger",
            disabled=registry is None,
            tooltip=(
                "list what would be deleted, then ask for confirmation"
                if registry is not None
                else "deleting needs a registry: stale_tags(inv, registry=reg)"
            ),
        )
        self.confirm_button = widgets.Button(
            description="Confirm delete",
            icon="check",
            button_style="danger",
            disabled=True,
            layout=widgets.Layout(display="none"),
        )
        self.cancel_button = widgets.Button(description="Cancel", disabled=True, layout=widgets.Layout(display="none"))
        self.dry_run_view = widgets.HTML(layout=widgets.Layout(max_height="320px", overflow="auto"))

        self.export_button.on_click(lambda _b: self.export())
        self.delete_button.on_click(lambda _b: self.prepare_delete())
        self.confirm_button.on_click(lambda _b: self.confirm_delete())
        self.cancel_button.on_click(lambda _b: self.cancel_delete())
        self.older_than.observe(lambda _change: self._slider_moved(), names="value")
        for control in (self.keep_last, self.keep, self.match):
            control.observe(lambda _change: self.refresh(), names="value")

        super().__init__(
            [
                widgets.HBox([self.older_than, self.keep_last]),
                widgets.HBox([self.keep, self.match]),
                self.summary,
                self.reclaimable,
                self.message,
                self.chart,
                self.table,
                widgets.HBox([self.export_button, self.delete_button, self.confirm_button, self.cancel_button]),
                self.dry_run_view,
            ]
        )
        self.add_class("regframe-stale-tags")
        self.refresh()

    def rules(self) -> dict[str, Any]:
        """The ``stale_tags`` keyword arguments the controls stand for: ``older_than`` exactly as given until
        the slider, which counts whole days, is moved."""
        return {
            "older_than": self._threshold(),
            "keep_last": self.keep_last.value or None,
            "keep": self.keep.value or None,
            "match": self.match.value or None,
            "now": self.now,
        }

    def refresh(self) -> None:
        """Recompute from the controls; bad input is reported in the widget, never raised."""
        self.cancel_delete()
        try:
            stale = analysis.stale_tags(
                self.manifests, **self.rules(), tags=self.inventory.tags, errors=self.inventory.errors
            )
        except ValueError as err:
            self.error = str(err)
            self.message.value = _render.note(self.error, "error")
            self.export_button.disabled = True
            self.delete_button.disabled = True
            return
        reclaimable = analysis.reclaimable_bytes(stale, self.layers, self.inventory.referrers)
        stale.attrs["reclaimable_bytes"] = reclaimable
        plan = analysis.cleanup_plan(stale)
        chart = _render.png(lambda: plot.stale_tags(stale))
        self.stale, self.plan, self.reclaimable_bytes, self.error = stale, plan, reclaimable, None

        keeping = f", keeping the newest {self.keep_last.value}" if self.keep_last.value else ""
        self.summary.value = (
            f"<b>{len(plan)}</b> of {_render.plural(len(stale), 'tag')} stale "
            f"(older than {format_duration(self._threshold())}{keeping})"
        )
        self.reclaimable.value = (
            f"Reclaimable after garbage collection: <b>{_render.nbytes(reclaimable)}</b> "
            f"<span style='color:#666'>({reclaimable:,} bytes; {escape(analysis.GARBAGE_COLLECTION_ADVICE)})</span>"
        )
        self.table.value = _render.table(plan, formatters=_PLAN_FORMATS)
        self.chart.value = chart
        self.message.value = ""
        self.export_button.disabled = False
        self.delete_button.disabled = self.registry is None or plan.empty

    def _threshold(self) -> pd.Timedelta:
        if self._start_threshold is not None:
            return self._start_threshold
        return pd.Timedelta(days=self.older_than.value)

    def _slider_moved(self) -> None:
        self._start_threshold = None
        self.refresh()

    def export(self) -> Path | None:
        """Write the current plan as CSV to a new file in ``export_dir`` and say where; the file's path."""
        if self.plan is None or self.error is not None:
            self.message.value = _render.note("nothing to export: fix the rules first", "error")
            return None
        data = self.plan.to_csv(index=False).encode()
        try:
            target = _reserve_name(self.export_dir)
            try:
                write_atomically(target, [data])
            except BaseException:
                target.unlink(missing_ok=True)
                raise
        except OSError as err:
            self.message.value = _render.note(f"could not write a CSV file in {self.export_dir}: {err}", "error")
            return None
        self.message.value = _render.note(f"wrote {len(self.plan)} rows to {target}")
        return target

    def prepare_delete(self) -> pd.DataFrame | None:
        """Dry run against the registry (live tag checks), then wait for "Confirm delete"."""
        if self.registry is None or self.stale is None or self.error is not None:
            return None
        try:
            dry_run = self.registry.apply_cleanup(self.stale, dry_run=True)
        except (RegistryError, ValueError) as err:
            self.message.value = _render.note(f"dry run failed: {err}", "error")
            return None
        would = dry_run[dry_run["status"] == "would delete"]
        chosen = pd.MultiIndex.from_frame(would[["repository", "tag"]].astype(str))
        keys = pd.MultiIndex.from_frame(self.stale[["repository", "tag"]].astype(str))
        self.dry_run = dry_run
        self._pending = self.stale[keys.isin(chosen) & self.stale["stale"].to_numpy(dtype=bool)]
        skipped = len(dry_run) - len(would)
        self.dry_run_view.value = _render.note(
            f"Dry run: {outcome_count(dry_run, 'would delete')} would be deleted"
            + (f", {skipped} skipped (changed since the crawl)" if skipped else "")
            + ('. Press "Confirm delete" to delete them.' if len(would) else "."),
            "warning",
        ) + _render.table(dry_run, formatters=_RESULT_FORMATS)
        if len(would):
            self._show_confirmation(True)
        return dry_run

    def confirm_delete(self) -> pd.DataFrame | None:
        """Delete exactly the tags the dry run listed; deleted tags leave the widget's frames."""
        pending, self._pending = self._pending, None
        self._show_confirmation(False)
        if pending is None or self.registry is None:
            return None
        try:
            result = self.registry.apply_cleanup(pending, dry_run=False)
        except (RegistryError, ValueError) as err:
            self.message.value = _render.note(f"deletion stopped: {err}", "error")
            return None
        self.result = result
        deleted = result[result["status"] == "deleted"]
        self._forget(deleted)
        failed = len(result) - len(deleted)
        report = _render.note(
            f"Deleted {outcome_count(result, 'deleted')}"
            + (f"; {failed} not deleted" if failed else "")
            + ". Their images stay as untagged manifests. "
            + analysis.GARBAGE_COLLECTION_ADVICE,
            "warning" if failed else "info",
        )
        self.refresh()
        self.dry_run_view.value = report + _render.table(result, formatters=_RESULT_FORMATS)
        return result

    def cancel_delete(self) -> None:
        self._pending = None
        self._show_confirmation(False)
        self.dry_run_view.value = ""

    def _show_confirmation(self, shown: bool) -> None:
        for button in (self.confirm_button, self.cancel_button):
            button.disabled = not shown
            button.layout.display = None if shown else "none"

    def _forget(self, deleted: pd.DataFrame) -> None:
        """Drop deleted tags from the frames the widget analyses, so the view matches the registry."""
        if deleted.empty:
            return
        gone = pd.MultiIndex.from_frame(deleted[["repository", "tag"]].astype(str))
        for name in ("manifests", "layers"):
            frame = getattr(self, name)
            keys = pd.MultiIndex.from_frame(frame[["repository", "tag"]].astype(str))
            setattr(self, name, frame[~keys.isin(gone)].reset_index(drop=True))


def _export_folder(export_dir: str | os.PathLike | None) -> Path:
    """The folder exports go to, resolved once so a later ``chdir`` or a renamed link does not move it."""
    if export_dir is not None and not isinstance(export_dir, (str, os.PathLike)):
        raise TypeError(f"export_dir must be a path, not {type(export_dir).__name__}")
    folder = Path.cwd() if export_dir is None else Path(export_dir).expanduser()
    if not folder.is_dir():
        raise ValueError(f"export_dir {str(folder)!r} is not an existing directory")
    return folder.resolve()


def _reserve_name(folder: Path) -> Path:
    """Claim a new ``stale-tags-YYYYmmdd-HHMMSS[-n].csv`` in ``folder`` with an exclusive create, so two
    exports in the same second (or from two pages) never overwrite each other or a planted link."""
    stem = f"{EXPORT_PREFIX}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for number in range(1, _MAX_SAME_SECOND + 1):
        target = folder / (f"{stem}.csv" if number == 1 else f"{stem}-{number}.csv")
        try:
            os.close(os.open(target, flags, 0o666))
        except FileExistsError:
            continue
        return target
    raise FileExistsError(f"{_MAX_SAME_SECOND} files named {stem}*.csv exist already")


def _oldest_days(manifests: pd.DataFrame, now: Any) -> int:
    """Age in whole days of the oldest dated image: the slider's natural end."""
    if manifests.empty:
        return 0
    created = pd.to_datetime(manifests["created"], utc=True).dropna()
    if created.empty:
        return 0
    at = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
    return max(0, math.ceil((at - created.min()) / pd.Timedelta(days=1)))


def stale_tags(
    inventory: Inventory,
    registry: Registry | None = None,
    *,
    older_than: str | int | dt.timedelta = "90d",
    keep_last: int | None = None,
    keep: str | None = None,
    match: str | None = None,
    now: str | dt.datetime | pd.Timestamp | None = None,
    export_dir: str | os.PathLike | None = None,
) -> StaleTagsWidget:
    """Interactive stale-tag rules over ``inventory``; deleting is possible only when ``registry`` is given.

    The starting values are ``regframe.analysis.stale_tags``'s, and the first plan is the one it gives
    (``older_than="36h"`` plans with 36 hours, the slider showing the next whole day); once the slider
    is moved, ``older_than`` is its whole number of days. "Export CSV" writes
    ``stale-tags-YYYYmmdd-HHMMSS.csv`` files into ``export_dir`` (default: the current working directory).
    """
    return StaleTagsWidget(
        inventory,
        registry,
        older_than=older_than,
        keep_last=keep_last,
        keep=keep,
        match=match,
        now=now,
        export_dir=export_dir,
    )
