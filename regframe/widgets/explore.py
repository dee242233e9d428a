"""Browse a registry: repositories, their tags, and one tag's manifest, layers, labels, history and platforms."""

from __future__ import annotations

import json
from html import escape
from typing import Any

import ipywidgets as widgets
import pandas as pd

from regframe.client.errors import RegistryError
from regframe.inventory import Inventory
from regframe.registry import Registry

from . import _render
from .crawl_panel import CrawlWidget, check_registry

SORT_KEYS = ("created", "tag", "size")
DETAIL_TABS = ("Manifest", "Layers", "Labels", "History", "Platforms")
TAG_TABLE_COLUMNS = ["tag", "created", "size", "platforms", "digest", "media_type"]
_TAG_FORMATS = {"created": _render.date, "size": _render.nbytes, "digest": _render.short_digest}
_LAYER_FORMATS = {"size": _render.nbytes, "layer_digest": _render.short_digest, "manifest_digest": _render.short_digest}
_PLATFORM_FORMATS = {
    "created": _render.date,
    "size": _render.nbytes,
    "manifest_digest": _render.short_digest,
    "config_digest": _render.short_digest,
}


class Explorer(widgets.VBox):
    """Search box and repository list, a sortable tag table, and the selected tag's details.

    Given a registry, it first crawls it in the background (``crawler``: progress and Stop) and
    reads manifests and image histories live; given an inventory, it shows what the inventory holds.
    Current data: ``tags_frame`` (the selected repository), ``manifest``, ``layers_frame``,
    ``labels_frame``, ``history_frame`` and ``platforms_frame`` (the selected tag).
    """

    def __init__(
        self,
        source: Inventory | Registry,
        *,
        registry: Registry | None = None,
        repositories: Any = None,
        match: Any = None,
        workers: int | None = None,
    ):
        if isinstance(source, Inventory):
            self.inventory: Inventory | None = source
            self.registry = None if registry is None else check_registry(registry, "explore(registry=...)")
        elif isinstance(source, Registry):
            self.inventory, self.registry = None, source
        else:
            raise TypeError(
                f"explore() takes a Registry (from regframe.connect) or an Inventory, not {type(source).__name__}"
            )
        self.tags_frame = pd.DataFrame(columns=TAG_TABLE_COLUMNS)
        self.manifest: dict | None = None
        self.layers_frame = pd.DataFrame()
        self.labels_frame = pd.DataFrame()
        self.history_frame = pd.DataFrame()
        self.platforms_frame = pd.DataFrame()
        self._names: list[str] = []
        self._quiet = False

        self.search = widgets.Text(
            description="Search",
            placeholder="part of a repository name",
            continuous_update=True,
            layout=widgets.Layout(width="300px"),
        )
        self.repositories = widgets.Select(options=[], rows=14, layout=widgets.Layout(width="300px"))
        self.sort_by = widgets.ToggleButtons(
            options=list(SORT_KEYS), value="created", description="Sort by", style={"button_width": "70px"}
        )
        self.descending = widgets.Checkbox(value=True, description="descending", indent=False)
        self.tags_table = widgets.HTML(layout=widgets.Layout(max_height="300px", overflow="auto"))
        self.tags_table.add_class("regframe-tags-table")
        self.tags = widgets.Select(options=[], rows=6, description="Tag", layout=widgets.Layout(width="420px"))
        self.details = widgets.Tab(children=[widgets.HTML() for _ in DETAIL_TABS])
        for index, title in enumerate(DETAIL_TABS):
            self.details.set_title(index, title)
        self.message = widgets.HTML()
        self.crawler: CrawlWidget | None = None

        self.search.observe(lambda _c: self._filter(), names="value")
        self.repositories.observe(self._on_repository, names="value")
        self.sort_by.observe(self._on_sort, names="value")
        self.descending.observe(self._on_sort, names="value")
        self.tags.observe(self._on_tag, names="value")

        children = [
            widgets.HBox(
                [
                    widgets.VBox([self.search, self.repositories], layout=widgets.Layout(min_width="310px")),
                    widgets.VBox(
                        [widgets.HBox([self.sort_by, self.descending]), self.tags_table, self.tags],
                        layout=widgets.Layout(flex="1 1 auto"),
                    ),
                ]
            ),
            self.details,
            self.message,
        ]
        if isinstance(source, Registry):
            self.crawler = CrawlWidget(source, repositories, match=match, workers=workers, start=False)
            children.insert(0, self.crawler)
        super().__init__(children)
        self.add_class("regframe-explore")
        if self.crawler is not None:
            self.crawler.on_done(self._crawled)
            self.crawler.start()
        elif self.inventory is not None:
            self._load(self.inventory)

    # -- events -------------------------------------------------------------------------------
    # Setting options programmatically fires value changes too; ``_quiet`` makes those one update.

    def _on_repository(self, _change: dict) -> None:
        if not self._quiet:
            self.show_repository()

    def _on_sort(self, _change: dict) -> None:
        self.show_repository(keep_tag=True)

    def _on_tag(self, _change: dict) -> None:
        if not self._quiet:
            self.show_tag()

    # -- data ---------------------------------------------------------------------------------

    def _crawled(self, crawler: CrawlWidget) -> None:
        if crawler.inventory is not None:
            self._load(crawler.inventory)

    def _load(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self._names = sorted(inventory.catalog["repository"].astype(str))
        if not inventory.errors.empty:
            self.message.value = _render.note(
                f"{len(inventory.errors)} error(s) while crawling; see inventory.errors", "warning"
            )
        self._filter()

    def _filter(self) -> None:
        text = self.search.value.strip()
        names = [n for n in self._names if text in n]
        current = self.repositories.value
        self._quiet = True
        try:
            self.repositories.options = names
            self.repositories.value = current if current in names else (names[0] if names else None)
        finally:
            self._quiet = False
        self.show_repository()

    @staticmethod
    def _repository_tags(inv: Inventory, repository: str) -> pd.DataFrame:
        """One row per tag: newest platform's date, summed platform sizes, platform list."""
        tags = inv.tags[inv.tags["repository"] == repository]
        images = inv.manifests[inv.manifests["repository"] == repository]
        per_tag = (
            images.assign(tag=images["tag"].astype(str), platform=images["platform"].astype(str))
            .groupby("tag", observed=True)
            .agg(
                created=("created", "max"), size=("size", "sum"), platforms=("platform", lambda p: ", ".join(sorted(p)))
            )
        )
        frame = pd.DataFrame(
            {
                "tag": tags["tag"].astype(str).to_numpy(),
                "digest": tags["digest"].astype(str).to_numpy(),
                "media_type": tags["media_type"].astype(str).to_numpy(),
            }
        )
        frame = frame.join(per_tag, on="tag")
        return frame[TAG_TABLE_COLUMNS]

    def _sorted(self, frame: pd.DataFrame) -> pd.DataFrame:
        key = self.sort_by.value
        order = [key] + (["tag"] if key != "tag" else [])
        ascending = [not self.descending.value] + ([True] if key != "tag" else [])
        return frame.sort_values(order, ascending=ascending, na_position="last", kind="stable", ignore_index=True)

    # -- views ------------------------------------------------------------------------------------

    def show_repository(self, keep_tag: bool = False) -> None:
        """Fill the tag table and tag list for the selected repository."""
        repository = self.repositories.value
        if self.inventory is None or repository is None:
            self.tags_frame = pd.DataFrame(columns=TAG_TABLE_COLUMNS)
            self.tags_table.value = _render.note(
                "no repository selected" if self._names or self.inventory else "waiting for the crawl..."
            )
            self._set_tags([], None)
            return
        self.tags_frame = self._sorted(self._repository_tags(self.inventory, repository))
        self.tags_table.value = _render.table(self.tags_frame, formatters=_TAG_FORMATS)
        names = self.tags_frame["tag"].tolist()
        current = self.tags.value if keep_tag else None
        self._set_tags(names, current if current in names else (names[0] if names else None))

    def _set_tags(self, names: list[str], value: str | None) -> None:
        self._quiet = True
        try:
            self.tags.options = names
            self.tags.value = value
        finally:
            self._quiet = False
        self.show_tag()

    def show_tag(self) -> None:
        """Fill the detail tabs for the selected tag."""
        repository, tag = self.repositories.value, self.tags.value
        manifest_tab, layers_tab, labels_tab, history_tab, platforms_tab = self.details.children
        inv = self.inventory
        if inv is None or repository is None or tag is None:
            for tab in self.details.children:
                tab.value = ""
            self.manifest = None
            return
        mine = (inv.manifests["repository"] == repository) & (inv.manifests["tag"] == tag)
        images = inv.manifests[mine]
        self.platforms_frame = (
            images[["platform", "manifest_digest", "created", "size", "layer_count", "config_digest"]]
            .astype({"platform": str, "manifest_digest": str, "config_digest": str})
            .reset_index(drop=True)
        )
        platforms_tab.value = _render.table(self.platforms_frame, formatters=_PLATFORM_FORMATS)

        on_tag = (inv.layers["repository"] == repository) & (inv.layers["tag"] == tag)
        self.layers_frame = (
            inv.layers[on_tag][["platform", "role", "position", "layer_digest", "size", "media_type"]]
            .astype({"platform": str, "role": str, "layer_digest": str, "media_type": str})
            .reset_index(drop=True)
        )
        layers_tab.value = _render.table(self.layers_frame, formatters=_LAYER_FORMATS)

        self.labels_frame = pd.DataFrame(
            [
                (str(p), key, value)
                for p, labels in zip(images["platform"], images["labels"], strict=True)
                for key, value in _label_rows(labels)
            ],
            columns=["platform", "label", "value"],
        )
        if self.labels_frame["platform"].nunique() <= 1:
            self.labels_frame = self.labels_frame.drop(columns="platform").drop_duplicates(ignore_index=True)
        labels_tab.value = _render.table(self.labels_frame) if len(self.labels_frame) else _render.note("no labels")

        self.manifest, manifest_tab.value = self._manifest_view(repository, tag)
        self.history_frame, history_tab.value = self._history_view(repository, images)

    def _manifest_view(self, repository: str, tag: str) -> tuple[dict | None, str]:
        if self.registry is None:
            row = self.tags_frame[self.tags_frame["tag"] == tag]
            summary = {"digest": row["digest"].iloc[0], "mediaType": row["media_type"].iloc[0]} if len(row) else {}
            return None, (
                _render.note("the full manifest needs a registry: explore(inv, registry=reg)") + _pre(summary)
            )
        try:
            manifest = self.registry.manifest(repository, tag)
        except RegistryError as err:
            return None, _render.note(f"could not read the manifest: {err}", "error")
        if not manifest:
            return None, _render.note(f"{repository}:{tag} is no longer in the registry", "warning")
        header = f"<div><code>{escape(str(manifest.digest))}</code> {escape(str(manifest.media_type))}</div>"
        return dict(manifest), header + _pre(dict(manifest))

    def _history_view(self, repository: str, images: pd.DataFrame) -> tuple[pd.DataFrame, str]:
        columns = ["platform", "created", "created_by", "empty_layer"]
        if self.registry is None:
            return (
                pd.DataFrame(columns=columns),
                _render.note("image history is in the config blobs; it needs a registry: explore(inv, registry=reg)"),
            )
        rows: list[tuple[str, Any, Any, bool]] = []
        odd = 0
        for platform, config in zip(images["platform"].astype(str), images["config_digest"], strict=True):
            if pd.isna(config):
                continue
            try:
                document = self.registry.blob(repository, str(config)).json()
            except (RegistryError, ValueError) as err:
                return pd.DataFrame(columns=columns), _render.note(f"could not read the config: {err}", "error")
            steps = _history_steps(document)
            if steps is None:
                odd += 1
                continue
            rows.extend((platform, *step) for step in steps)
        frame = pd.DataFrame(rows, columns=columns)
        if frame["platform"].nunique() <= 1:
            frame = frame.drop(columns="platform")
        note = "no history recorded"
        if odd:
            note += f" ({_render.plural(odd, 'config')} not shaped as an image config: no list of history steps)"
        return frame, (_render.table(frame) if len(frame) else _render.note(note))


def _history_steps(document: Any) -> list[tuple[Any, Any, bool]] | None:
    """(created, created_by, empty_layer) of each step of a config's ``history``, or None when the config or
    its history is not of the shape the image spec gives them (any JSON may be stored as a config: a crawl
    records it, and the explorer must show it rather than fail). Steps that are not objects are skipped."""
    if not isinstance(document, dict):
        return None
    history = document.get("history")
    if history is None:
        return []
    if not isinstance(history, list):
        return None
    steps = [step for step in history if isinstance(step, dict)]
    if history and not steps:
        return None
    return [(step.get("created"), step.get("created_by", ""), bool(step.get("empty_layer", False))) for step in steps]


NOT_AN_OBJECT = "(Labels is not an object)"


def _label_rows(labels: Any) -> list[tuple[str, str]]:
    """(label, value) text pairs, sorted. A config's ``Labels`` is meant to map strings to strings, but
    nothing stops an image from carrying objects, lists, numbers or null there: those show as compact
    JSON text, and a ``Labels`` that is not an object shows as one row."""
    if labels is None or (pd.api.types.is_scalar(labels) and pd.isna(labels)):
        return []
    if not isinstance(labels, dict):
        return [(NOT_AN_OBJECT, _json_text(labels))]
    return sorted((str(key), _json_text(value)) for key, value in labels.items())


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _pre(document: Any) -> str:
    text = json.dumps(document, indent=2, default=str)
    return f"<pre style='font-size:12px;line-height:1.35;max-height:360px;overflow:auto'>{escape(text)}</pre>"


def explore(
    source: Inventory | Registry,
    *,
    registry: Registry | None = None,
    repositories: Any = None,
    match: Any = None,
    workers: int | None = None,
) -> Explorer:
    """Browse ``source``: a Registry (crawled in the background, with a Stop button) or an Inventory.

    With an inventory, pass ``registry=`` too to see full manifests and image histories.
    ``repositories`` (exact names), ``match`` (a pattern) and ``workers`` shape the crawl as in
    ``Registry.inventory``.
    """
    return Explorer(source, registry=registry, repositories=repositories, match=match, workers=workers)
