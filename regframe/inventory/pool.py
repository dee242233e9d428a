"""A small work pool for crawls: tasks enqueue follow-up tasks, and each digest is fetched once.

Workers pull from one queue (cheaper per task than thousands of futures and ``wait``), and the
main thread waits in short slices so Ctrl-C (or a widget's stop button) ends a crawl promptly.
A task runs only while it holds a slot of the pool's ``Limit``, so no more tasks (and requests) are in
flight than the limit allows; a thread is started for each slot the limit gains, and one ends after its
task while there are more threads than slots.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from .concurrency import Limit

_STOP = object()
# The Limit whose slot this thread holds while it runs a task.
_holding = threading.local()


class Cancelled(Exception):
    """Raised by a task the crawl no longer wants run (its budget is spent, or the crawl stopped while the
    task waited to retry a request): it ends without a trace."""


class TaskPool:
    def __init__(self, limit: Limit):
        self.limit = limit
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0
        self._cond = threading.Condition()
        self._stopped = threading.Event()
        self._failure: BaseException | None = None
        # The caller's stop (``wait(stop=...)``), heard by waits before retries before the pool itself stops.
        self._watch: threading.Event | None = None
        self._threads: list[threading.Thread] = []
        self._threads_lock = threading.Lock()
        try:
            self.ensure_threads(limit.limit)
        except BaseException:
            self.close()
            raise

    def wait_off_slot(self, seconds: float, sleep: Callable[[float], None]) -> None:
        """Sleep before a retry without holding a slot: retries then queue behind the limit (lowered by the
        429s that caused them) instead of coming back all at once. Threads outside the pool just sleep.

        A stopped crawl (its stop Event, Ctrl-C, a spent budget, a strict error) sends nothing more: the wait
        ends as soon as the pool stops, and instead of the request going out again ``Cancelled`` ends its
        task (an injected ``sleep``, a test's, is called as it is and the stop checked after it)."""
        if getattr(_holding, "limit", None) is not self.limit:
            sleep(seconds)
            return
        if self._stopping():
            raise Cancelled
        self.limit.suspend()
        try:
            if sleep is time.sleep:
                self._stopped.wait(seconds)
            else:
                sleep(seconds)
        finally:
            self.limit.resume(self._stopped)
        if self._stopping():
            raise Cancelled

    def _stopping(self) -> bool:
        watch = self._watch
        return self._stopped.is_set() or (watch is not None and watch.is_set())

    def ensure_threads(self, count: int) -> None:
        """At least ``count`` worker threads (never more than the limit's maximum); none once closed.

        A thread the system refuses to start stops the pool and raises: the threads already started end at
        ``close()``, which the pool's owner calls (a worker cannot join its fellows while it holds the limit)."""
        wanted = min(count, self.limit.maximum)
        with self._threads_lock:
            while len(self._threads) < wanted and not self._stopped.is_set():
                thread = threading.Thread(target=self._work, name=f"regframe-crawl-{len(self._threads)}", daemon=True)
                try:
                    thread.start()
                except RuntimeError as exc:
                    refused, started = exc, len(self._threads)
                    break
                self._threads.append(thread)
            else:
                return
        self.stop()
        raise RuntimeError(
            f"the crawl could not start thread {started + 1} of {wanted} ({refused}); it is stopped and its "
            f"{started} threads end: crawl with fewer workers= or a lower max_workers="
        ) from refused

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    @property
    def stop_event(self) -> threading.Event:
        """Set once the pool stops: long tasks (pagination) pass it on so they end at their next request."""
        return self._stopped

    def submit(self, fn: Callable, *args: Any) -> None:
        if self._stopped.is_set():
            return
        with self._cond:
            self._pending += 1
        self._queue.put((fn, args))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            fn, args = item
            try:
                if not self._stopped.is_set() and self.limit.acquire(self._stopped):
                    _holding.limit = self.limit
                    try:
                        if not self._stopped.is_set():
                            fn(*args)
                    finally:
                        _holding.limit = None
                        self.limit.release()
            except Cancelled:
                pass
            except BaseException as exc:  # a bug in a task must surface, not hang the crawl
                self._failure = self._failure or exc
                self._stopped.set()
            finally:
                with self._cond:
                    self._pending -= 1
                    if self._pending == 0:
                        self._cond.notify_all()
            if self._retire():
                return

    def _retire(self) -> bool:
        """End this thread when there are more than the limit: a thread beyond it would only take a task
        and wait for a slot, and each completion would then wake one of them (a thread switch per task)."""
        with self._threads_lock:
            if len(self._threads) <= self.limit.limit or self._stopped.is_set():
                return False
            self._threads.remove(threading.current_thread())
            return True

    def wait(self, poll: float = 0.1, stop: threading.Event | None = None) -> None:
        """Block until every task (and every task they submitted) is done, or the pool (or ``stop``) is stopped."""
        self._watch = stop
        with self._cond:
            while self._pending and not self._stopped.is_set():
                if stop is not None and stop.is_set():
                    self._stopped.set()
                    break
                self._cond.wait(poll)
        if self._stopped.is_set():
            self.limit.wake()  # tasks waiting for a slot to resume a retry end now, not at their next poll
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        self._stopped.set()
        with self._cond:
            self._cond.notify_all()
        self.limit.wake()

    def close(self) -> None:
        """Stop and join every worker, so no thread of the crawl outlives it; a running task ends
        at its next check of ``stop_event`` or when its request returns (bounded by the timeouts)."""
        self._stopped.set()
        self.limit.wake()
        with self._threads_lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(_STOP)
        for thread in threads:
            thread.join()


class Once:
    """Fetch each key once; callers arriving while it is in flight get the same result."""

    def __init__(self, pool: TaskPool):
        self._pool = pool
        self._lock = threading.Lock()
        self._results: dict[str, tuple[bool, Any]] = {}
        self._waiters: dict[str, list[Callable[[bool, Any], None]]] = {}

    def seed(self, key: str, value: Any) -> None:
        with self._lock:
            self._results.setdefault(key, (True, value))

    def request(
        self,
        key: str,
        fetch: Callable[[], Any],
        then: Callable[[bool, Any], None],
        expected: tuple[type[BaseException], ...],
    ) -> None:
        with self._lock:
            done = self._results.get(key)
            if done is None:
                waiting = self._waiters.get(key)
                if waiting is not None:
                    waiting.append(then)
                    return
                self._waiters[key] = [then]
        if done is not None:
            then(*done)
            return
        self._pool.submit(self._run, key, fetch, expected)

    def _run(self, key: str, fetch: Callable[[], Any], expected: tuple[type[BaseException], ...]) -> None:
        try:
            result = (True, fetch())
        except expected as exc:
            result = (False, exc)
        with self._lock:
            self._results[key] = result
            waiters = self._waiters.pop(key, [])
        for then in waiters:
            then(*result)
