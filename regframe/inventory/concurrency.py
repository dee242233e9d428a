"""How many requests a crawl keeps in flight: found by measuring, not fixed in advance.

A registry across a network needs many requests in flight to hide its latency; one on the same machine
is busy with a few; a rate-limited one answers 429 past some rate. ``Limit`` starts at ``START`` (32)
and measures completions per second over windows of at least ``WINDOW`` completions and
``MIN_WINDOW_SECONDS`` while the limit is reached. It doubles the limit while each step pays (throughput
up by at least half what the step would give if latency alone limited it: 1.5x for a doubling); a step
that does not pay is taken back, and from then on steps are an eighth of the limit, tried again every
``PROBE_AFTER`` windows. No step up is tried while the window's answers took over ``QUEUEING`` times
the quickest answer yet: the registry is then queueing them (its CPU, not the link, sets the pace, as
with a registry next door), and more in flight would only lengthen the queue. Every 429, 503 or timeout
the transport counts halves it (except for requests sent before the last halving: one burst counts
once): additive increase, multiplicative decrease, between 1 and ``maximum``. ``fixed`` keeps it where
it was set (``workers=``). A request waiting to be retried gives its slot back meanwhile
(``TaskPool.wait_off_slot``), so retries queue behind the lowered limit instead of returning all at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..client.arguments import check_count

START = 32
DEFAULT_MAX_WORKERS = 64
# The most requests in flight (threads) ``workers`` and ``max_workers`` may ask for.
MAX_WORKERS = 1024
# A window is at least this many completions, and at least the limit (one round of requests).
WINDOW = 16
# Nor shorter than this, so that loopback's sub-millisecond answers do not make the measure noise.
MIN_WINDOW_SECONDS = 0.2
# A step up is kept when it raised throughput by at least half of what it would on a link where only
# latency limits it (doubling: 1.5x); on a registry next door, where the CPU limits it, a step rarely
# pays that much, and the extra threads and connections would only cost CPU. Never less than this:
MIN_GAIN = 1.05
# No step up while answers take over this many times the quickest one: the registry is queueing them.
QUEUEING = 2.0
# After this many windows at one limit, try one step up again: conditions change during a crawl.
PROBE_AFTER = 8


def _gain(before: int, after: int) -> float:
    """The throughput factor that makes a step from ``before`` to ``after`` in flight worth keeping."""
    return max(MIN_GAIN, 1 + (after / before - 1) / 2)


def check_workers(workers: object, max_workers: object = None) -> int:
    """The most requests a crawl keeps in flight, checked before any request: ``workers`` when it fixes the
    count, else ``max_workers`` (None: ``DEFAULT_MAX_WORKERS``).

    Each is a positive count up to ``MAX_WORKERS``: every request in flight is a thread, and a count the
    system cannot start threads for would fail halfway through. A fixed ``workers`` above a ``max_workers``
    given with it contradicts it, so the pair is refused rather than one of them ignored."""
    fixed = check_count("workers", workers, optional=True)
    bound = check_count("max_workers", max_workers, optional=True)
    for name, value in (("workers", fixed), ("max_workers", bound)):
        if value is not None and value > MAX_WORKERS:
            raise ValueError(
                f"{name} must be at most {MAX_WORKERS}, not {value}: each request in flight is a thread of its own"
            )
    if fixed is not None and bound is not None and fixed > bound:
        raise ValueError(
            f"workers={fixed} is more than max_workers={bound}: workers fixes the requests in flight and "
            "max_workers bounds them; give workers alone, or a workers within max_workers"
        )
    if fixed is not None:
        return fixed
    return bound if bound is not None else DEFAULT_MAX_WORKERS


class Limit:
    """A semaphore whose size adapts: ``acquire`` waits while ``limit`` tasks run, ``release`` measures.

    ``congestion`` returns a count that grows on every 429, 503 or timeout (the transport's);
    ``on_change(new, old)`` is called, under the limit's lock, after every change."""

    def __init__(
        self,
        maximum: int = DEFAULT_MAX_WORKERS,
        *,
        fixed: int | None = None,
        congestion: Callable[[], int] = lambda: 0,
        latency: Callable[[], tuple[int, float, float]] | None = None,
        on_change: Callable[[int, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        check_workers(fixed, maximum)
        self.fixed = fixed is not None
        self.maximum = fixed if fixed is not None else maximum
        self.limit = fixed if fixed is not None else min(START, maximum)
        self._congestion = congestion
        self._latency = latency
        self._on_change = on_change
        self._clock = clock
        self._cond = threading.Condition()
        self.active = 0
        self._signals = congestion()
        self._slow_start = True
        # The limit last kept, the mean of its windows' completions per second, and how many windows that is.
        self._base: tuple[int, float, int] | None = None
        self._held = 0
        self._halved_at = float("-inf")
        self._since = threading.local()  # when this thread's task took its slot
        self._new_window(clock())
        self.peak = self.lowest = self.start = self.limit
        self.increases = self.decreases = 0

    def _new_window(self, now: float) -> None:
        self._answers = self._latency() if self._latency is not None else None
        self._started = now
        self._done = 0
        self._busiest = self.active
        self._congested = False

    def acquire(self, abort: threading.Event | None = None) -> bool:
        """Wait for a free slot; False (no slot taken) once ``abort`` is set."""
        with self._cond:
            while self.active >= self.limit:
                if abort is not None and abort.is_set():
                    return False
                self._cond.wait(0.5)
            self.active += 1
            self._busiest = max(self._busiest, self.active)
            self._since.at = self._clock()
            return True

    def suspend(self) -> None:
        """Give a held slot back for a while (a request waiting to be retried) without counting a completion;
        the refusal that made it wait is heard now, not when some task next completes."""
        with self._cond:
            self.active -= 1
            if not self.fixed:
                self._backed_off(self._clock())
            self._cond.notify()

    def resume(self, abort: threading.Event | None = None) -> None:
        """Take the slot back, waiting while the limit is full; at once when ``abort`` is set, so the task can
        end and release it."""
        if not self.acquire(abort):
            with self._cond:
                self.active += 1

    def release(self) -> None:
        with self._cond:
            self.active -= 1
            self._done += 1
            if not self.fixed:
                self._adjust(self._clock())
            self._cond.notify()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- adapting -------------------------------------------------------------------------------------

    def _backed_off(self, now: float) -> bool:
        """Halve on new congestion signals; whether there were any. A signal met by a task that took its slot
        before the last halving answers a request sent at the old limit: it is that overload's echo and
        halves nothing again, so one burst of refusals counts once."""
        signals = self._congestion()
        if signals <= self._signals:
            return False
        self._signals = signals
        self._congested = True
        if getattr(self._since, "at", now) >= self._halved_at:
            self._slow_start = False
            self._base = None
            self._set(max(1, self.limit // 2), now)
            self._halved_at = now
        return True

    def _adjust(self, now: float) -> None:
        if self._backed_off(now):
            return
        elapsed = now - self._started
        if self._done < max(WINDOW, self.limit) or elapsed < MIN_WINDOW_SECONDS:
            return
        rate = self._done / elapsed
        if self._busiest < self.limit or self._congested:
            # Fewer tasks than slots says nothing about the limit; refusals say it is no time to grow.
            self._new_window(now)
            return
        base = self._base
        if base is None or base[0] == self.limit:
            # Another window at the kept limit: the mean of them all is what a step up must beat, so one
            # lucky window cannot ratchet the limit up.
            count = 1 if base is None else base[2] + 1
            mean = rate if base is None else base[1] + (rate - base[1]) / count
            self._base = (self.limit, mean, count)
            self._held += 1
            if self._slow_start or self._held >= PROBE_AFTER:
                self._grow(now)
            else:
                self._new_window(now)
        elif rate >= base[1] * _gain(base[0], self.limit):
            self._base = (self.limit, rate, 1)
            if self._slow_start:
                self._grow(now)
            else:
                self._held = 0
                self._new_window(now)
        else:
            self._slow_start = False  # the step up did not pay: back to where it was
            self._set(base[0], now)

    def _queueing(self) -> bool:
        """Whether this window's answers took over ``QUEUEING`` times the quickest answer yet: requests then
        wait in the registry's queue, and more of them in flight would only lengthen it."""
        before = self._answers
        if self._latency is None or before is None:
            return False
        count, total, quickest = self._latency()
        if count <= before[0] or quickest == float("inf"):
            return False
        return (total - before[1]) / (count - before[0]) > QUEUEING * quickest

    def _grow(self, now: float) -> None:
        if self._queueing():
            self._slow_start = False
            self._new_window(now)
            return
        step = self.limit if self._slow_start else max(1, self.limit // 8)
        self._set(min(self.maximum, self.limit + step), now)

    def _set(self, limit: int, now: float) -> None:
        old, self.limit = self.limit, limit
        self._held = 0
        self._new_window(now)
        if limit == old:
            return
        if limit > old:
            self.increases += 1
            self._cond.notify(limit - old)
        else:
            self.decreases += 1
        self.peak = max(self.peak, limit)
        self.lowest = min(self.lowest, limit)
        if self._on_change is not None:
            self._on_change(limit, old)

    def stats(self) -> dict[str, Any]:
        """What the limit did, for ``inv.stats['concurrency']``."""
        with self._cond:
            return {
                "mode": "fixed" if self.fixed else "adaptive",
                "max_workers": self.maximum,
                "start": self.start,
                "final": self.limit,
                "peak": self.peak,
                "lowest": self.lowest,
                "increases": self.increases,
                "decreases": self.decreases,
            }
