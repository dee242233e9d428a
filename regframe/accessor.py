"""``df.registry``: the analyses and charts as methods of the frames they read.

Importing this module registers the accessor. Each method checks that the frame
has the columns it needs and names the missing ones, because calling a layers
method on a manifests frame (or the reverse) is the mistake people make.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from . import analysis
from .analysis._frames import (
    RECLAIM_LAYER_COLUMNS,
    RECLAIM_STALE_COLUMNS,
    SHARED_LAYERS_COLUMNS,
    SHARING_MATRIX_COLUMNS,
    STALE_COLUMNS,
    STALE_INPUT_COLUMNS,
    STORAGE_COLUMNS,
    missing_columns,
    require_columns,
)
from .analysis.storage import USAGE_CHART_COLUMNS

LAYER_SIZE_COLUMNS = ("layer_digest", "size")
STALE_PLOT_COLUMNS = ("repository", "tag", "created", "age", "stale")


@pd.api.extensions.register_dataframe_accessor("registry")
class RegistryAccessor:
    """Registry analyses on a layers, manifests, stale-tags or storage-usage frame."""

    def __init__(self, frame: pd.DataFrame):
        self._df = frame

    def _need(self, columns: Iterable[str], method: str, kind: str) -> None:
        _check(self._df, columns, method, f"a {kind} frame")

    def storage_usage(self, by: str | Sequence[str] = "repository") -> pd.DataFrame:
        """Per-repository (or per ``by`` group) logical, stored, exclusive and shared bytes (on a layers frame).

        See :func:`regframe.analysis.storage_usage`."""
        self._need(STORAGE_COLUMNS, "storage_usage", "layers")
        return analysis.storage_usage(self._df, by=by)

    def shared_layers(self) -> pd.DataFrame:
        """One row per layer digest with how many repositories, images and tags use it."""
        self._need(SHARED_LAYERS_COLUMNS, "shared_layers", "layers")
        return analysis.shared_layers(self._df)

    def sharing_matrix(self, top: int | None = None) -> pd.DataFrame:
        """Repository x repository bytes in common; diagonal = stored bytes."""
        self._need(SHARING_MATRIX_COLUMNS, "sharing_matrix", "layers")
        return analysis.sharing_matrix(self._df, top=top)

    def stale_tags(
        self,
        older_than: str | int | dt.timedelta | pd.Timedelta = "90d",
        keep_last: int | None = None,
        keep: Any = None,
        match: Any = None,
        now: Any = None,
        age_from: str = "created",
        *,
        tags: pd.DataFrame | None = None,
        errors: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Stale/kept decision and reason per (repository, tag) (on a manifests frame).

        ``tags=inv.tags, errors=inv.errors`` for a crawl that may be partial; see
        :func:`regframe.analysis.stale_tags`."""
        self._need(STALE_INPUT_COLUMNS, "stale_tags", "manifests")
        return analysis.stale_tags(
            self._df,
            older_than=older_than,
            keep_last=keep_last,
            keep=keep,
            match=match,
            now=now,
            age_from=age_from,
            tags=tags,
            errors=errors,
        )

    def reclaimable_bytes(self, layers: pd.DataFrame, referrers: pd.DataFrame | None = None) -> int:
        """Bytes garbage collection would free after deleting this stale frame's stale tags.

        ``referrers=inv.referrers`` adds the untagged referrers only the referrers API lists; see
        :func:`regframe.analysis.reclaimable_bytes`."""
        self._need(RECLAIM_STALE_COLUMNS, "reclaimable_bytes", "stale_tags")
        _check(layers, RECLAIM_LAYER_COLUMNS, "reclaimable_bytes", "a layers frame as argument")
        return analysis.reclaimable_bytes(self._df, layers, referrers=referrers)

    def reclaimable_by_repository(self, layers: pd.DataFrame, referrers: pd.DataFrame | None = None) -> pd.DataFrame:
        """Stale tags and freed bytes per repository (on a stale frame); ``referrers`` as for ``reclaimable_bytes``."""
        self._need(RECLAIM_STALE_COLUMNS, "reclaimable_by_repository", "stale_tags")
        _check(layers, RECLAIM_LAYER_COLUMNS, "reclaimable_by_repository", "a layers frame as argument")
        return analysis.reclaimable_by_repository(self._df, layers, referrers=referrers)

    def cleanup_plan(self) -> pd.DataFrame:
        """The stale rows only, ready for display, CSV export or the deletion step."""
        self._need(STALE_COLUMNS, "cleanup_plan", "stale_tags")
        return analysis.cleanup_plan(self._df)

    def plot_storage(self, *, top: int = 15, ax: Any = None, **kwargs: Any) -> Any:
        """Stacked exclusive/shared bars per repository (storage_usage is computed from layers).

        See :func:`regframe.plot.storage`; extra keyword arguments go to its bars."""
        if missing_columns(self._df, USAGE_CHART_COLUMNS):
            if missing_columns(self._df, STORAGE_COLUMNS):
                raise ValueError(
                    "df.registry.plot_storage() needs a storage_usage frame (columns "
                    f"{list(USAGE_CHART_COLUMNS)}) or a layers frame (columns "
                    f"{list(STORAGE_COLUMNS)}); the frame has {list(self._df.columns)}"
                )
            usage = analysis.storage_usage(self._df)
        else:
            usage = self._df
        return _plot().storage(usage, top=top, ax=ax, **kwargs)

    def plot_sharing_heatmap(self, *, top: int = 20, ax: Any = None, **kwargs: Any) -> Any:
        """Heatmap of bytes shared between the ``top`` largest repositories (on a layers frame).

        Computes ``sharing_matrix(top=top)`` and hands it to :func:`regframe.plot.sharing_heatmap`,
        recording the frame's repository count so the title can say how many were left out."""
        self._need(SHARING_MATRIX_COLUMNS, "plot_sharing_heatmap", "layers")
        matrix = analysis.sharing_matrix(self._df, top=top)
        matrix.attrs["total_repositories"] = int(self._df["repository"].dropna().nunique())
        return _plot().sharing_heatmap(matrix, top=top, ax=ax, **kwargs)

    def plot_stale_tags(
        self, *, layers: pd.DataFrame | None = None, top: int = 30, ax: Any = None, **kwargs: Any
    ) -> Any:
        """Tag ages per repository with the threshold (on a stale frame); pass ``layers`` to title it
        with the bytes a cleanup would reclaim. See :func:`regframe.plot.stale_tags`."""
        self._need(STALE_PLOT_COLUMNS, "plot_stale_tags", "stale_tags")
        if layers is not None:
            _check(layers, RECLAIM_LAYER_COLUMNS, "plot_stale_tags", "a layers frame as argument")
        return _plot().stale_tags(self._df, layers=layers, top=top, ax=ax, **kwargs)

    def plot_layer_sizes(self, *, ax: Any = None, **kwargs: Any) -> Any:
        """Histogram of distinct layer sizes (on a layers frame). See :func:`regframe.plot.layer_sizes`."""
        self._need(LAYER_SIZE_COLUMNS, "plot_layer_sizes", "layers")
        return _plot().layer_sizes(self._df, ax=ax, **kwargs)


def _check(frame: object, columns: Iterable[str], method: str, what: str) -> None:
    require_columns(frame, columns, f"df.registry.{method}() on {what}")


def _plot() -> Any:
    """``regframe.plot``, imported on first chart so analysis never pulls in matplotlib."""
    return importlib.import_module("regframe.plot")
