"""A crawl in a background thread with a progress bar and a Stop button.

A notebook processes widget events only while no cell runs, so a crawl that should be stoppable
from a button cannot block the kernel: it runs in a thread and reports back through the widget.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from regframe.inventory import DigestCache, Inventory
from regframe.registry import Registry, select_repositories

from . import _render

_REFRESH_SECONDS = 0.2


def check_registry(registry: object, what: str) -> Registry:
    """Widgets drive ``inventory()`` and ``apply_cleanup()``, which only ``regframe.Registry`` has: refuse
    anything else when the widget is made, not later in a crawl thread or on a button click."""
    if not isinstance(registry, Registry):
        raise TypeError(f"{what} takes a Registry (from regframe.connect), not {type(registry).__name__}")
    return registry


class CrawlWidget(widgets.VBox):
    """Progress bar, status line and Stop button of one crawl; ``inventory`` once it has ended.

    Stopping keeps what was read: the inventory is then partial (``inventory.complete`` is False), as it
    is when the catalog could not be read to its end.
    """

    def __init__(
        self,
        registry: Registry,
        repositories: Any = None,
        *,
        match: Any = None,
        workers: int | None = None,
        cache: str | os.PathLike | DigestCache | None = None,
        start: bool = True,
    ):
        self.registry = check_registry(registry, "crawl()")
        names = select_repositories(repositories, match).names
        self.repositories = None if names is None else list(names)
        self.match = match
        self.workers = workers
        self.cache = cache
        self.inventory: Inventory | None = None
        self.error: BaseException | None = None
        self.progress = widgets.IntProgress(
            value=0, min=0, max=1, description="Crawl", bar_style="info", layout=widgets.Layout(width="360px")
        )
        self.status = widgets.HTML(_render.note("not started"))
        self.stop_button = widgets.Button(
            description="Stop",
            icon="stop",
            button_style="warning",
            tooltip="end the crawl now, keeping what was read",
            disabled=True,
        )
        self.stop_button.on_click(lambda _button: self.stop())
        self._stop = threading.Event()
        self._done = threading.Event()
        self._callbacks: list[Callable[[CrawlWidget], None]] = []
        self._callbacks_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._refresh_lock = threading.Lock()
        self._last_refresh = 0.0
        self._started = 0.0
        super().__init__([widgets.HBox([self.progress, self.stop_button]), self.status])
        self.add_class("regframe-crawl")
        if start:
            self.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def start(self) -> None:
        """Start the crawl in a background thread (once)."""
        if self._thread is not None:
            raise RuntimeError("this crawl was already started; make a new crawl() to crawl again")
        self._started = time.perf_counter()
        self.stop_button.disabled = False
        self.status.value = _render.note("listing repositories and tags...")
        self._thread = threading.Thread(target=self._run, name="regframe-widget-crawl", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the crawl to end; what was read so far becomes the inventory."""
        self._stop.set()
        self.stop_button.disabled = True
        if not self._done.is_set():
            self.status.value = _render.note("stopping...")

    def wait(self, timeout: float | None = None) -> Inventory | None:
        """Block until the crawl has ended (or ``timeout`` seconds passed); the inventory, if any."""
        if self._thread is None:
            raise RuntimeError("the crawl was not started; call start() first")
        self._done.wait(timeout)
        return self.inventory

    def on_done(self, callback: Callable[[CrawlWidget], None]) -> None:
        """Call ``callback(widget)`` when the crawl ends (at once if it already has)."""
        with self._callbacks_lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        callback(self)

    def _show_progress(self, done: int, found: int, force: bool = False) -> None:
        """Called by every crawl thread; at most one of them updates the widget, a few times a second."""
        if not self._refresh_lock.acquire(blocking=force):
            return
        try:
            now = time.perf_counter()
            if not force and now - self._last_refresh < _REFRESH_SECONDS:
                return
            self._last_refresh = now
            self.progress.max = max(found, 1)
            self.progress.value = min(done, found)
            if not self._stop.is_set() and not self._done.is_set():
                self.status.value = _render.note(f"{done} of {found} tags read so far")
        finally:
            self._refresh_lock.release()

    def _run(self) -> None:
        counts = [0, 0]

        def report(done: int, found: int) -> None:
            counts[:] = done, found
            self._show_progress(done, found)

        try:
            self.inventory = self.registry.inventory(
                self.repositories,
                match=self.match,
                workers=self.workers,
                cache=self.cache,
                progress=report,
                stop=self._stop,
            )
        except Exception as exc:  # shown in the widget; a notebook thread has nowhere else to report
            self.error = exc
        done, found = counts
        self._show_progress(done, found, force=True)
        self._finish()

    def _finish(self) -> None:
        self.stop_button.disabled = True
        self.stop_button.layout.display = "none"
        seconds = time.perf_counter() - self._started
        if self.error is not None:
            self.progress.bar_style = "danger"
            self.status.value = _render.note(f"crawl failed: {type(self.error).__name__}: {self.error}", "error")
        else:
            inv = self.inventory
            assert inv is not None, "a crawl that raised nothing returned an inventory"
            summary = (
                f"{_render.plural(inv.repository_count(), 'repository', 'repositories')}, "
                f"{_render.plural(len(inv.tags), 'tag')}, {_render.plural(len(inv.errors), 'error')} "
                f"in {seconds:.1f} s"
            )
            if inv.complete:
                self.progress.bar_style = "success"
                self.status.value = _render.note(f"done: {summary}")
            elif self._stop.is_set():
                self.progress.bar_style = "warning"
                self.status.value = _render.note(f"stopped early, partial inventory: {summary}", "warning")
            else:
                self.progress.bar_style = "warning"
                self.status.value = _render.note(f"incomplete (see inventory.errors): {summary}", "warning")
        while True:  # wait() returns only once every follow-up (e.g. filling an explorer) has run
            with self._callbacks_lock:
                callbacks, self._callbacks = self._callbacks, []
                if not callbacks:
                    self._done.set()
                    return
            for callback in callbacks:
                try:
                    callback(self)
                except Exception as exc:  # a failing follow-up must not hide the crawl's own result
                    self.status.value += _render.note(f"after the crawl: {type(exc).__name__}: {exc}", "error")


def crawl(
    registry: Registry,
    repositories: Any = None,
    *,
    match: Any = None,
    workers: int | None = None,
    cache: str | os.PathLike | DigestCache | None = None,
) -> CrawlWidget:
    """Start ``registry.inventory(...)`` in the background; display the result to watch or stop it.

    ``repositories`` (exact names), ``match`` (a pattern), ``workers`` and ``cache`` are
    ``Registry.inventory``'s; bad values raise here, before the crawl starts. Read ``.inventory``
    (or ``.wait()``) once it has ended.
    """
    return CrawlWidget(registry, repositories, match=match, workers=workers, cache=cache)
