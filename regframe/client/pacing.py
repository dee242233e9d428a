"""Pacing: how fast requests go to a registry that has answered 429.

A rate-limited registry (RFC 6585) refuses requests above some rate and says, in ``Retry-After``, how long
to wait "before making a new request": any new request, not just the refused one. Backing off only the
refused request lets every other one run into the limit in turn, so under a low limit most calls fail
after their retries. ``Pacer`` holds every request back until the pause is over, then lets them go no
faster than a rate found by additive increase and multiplicative decrease, starting from half the rate
they were going at. Until the first 429 it only notes when requests go.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

# The slowest pace, one request a second: slower limits are kept by the pauses their 429s ask for.
MIN_RATE = 1.0
# Each answer the registry serves while the pace holds requests back adds this much to the rate (requests
# a second): the rate then grows by about a quarter each second.
INCREASE = 0.25
# Before the first 429, the send rate is measured over the last SAMPLE requests sent within WINDOW seconds,
# when there are at least FEWEST of them: a few requests after a quiet spell say nothing about the rate a
# crawl can keep, and then only the pause applies.
SAMPLE = 32
WINDOW = 1.0
FEWEST = 4
# Rounds in a row, each sent after the pause the last one asked for, that the registry refused, with
# nothing served in between: it then refuses everything for now (a spent quota, a ban), and calls stop
# retrying (``hopeless``).
HOPELESS_ROUNDS = 5
# After this many seconds without a 429 the pace is dropped: a limit met long ago says little about now.
QUIET = 60.0


class Pacer:
    """Spaces out a transport's requests to one registry; thread-safe. ``clock`` is for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._rate: float | None = None
        self._last = float("-inf")
        self._paused_until = float("-inf")
        self._lowered_at = float("-inf")
        self._held_at = float("-inf")
        self._refused_at = float("-inf")
        self._sent: deque[float] = deque(maxlen=SAMPLE)
        self.served = 0
        self.refused_rounds = 0
        # Whether a pause was asked for since the last round began.
        self._paused = False

    @property
    def hopeless(self) -> bool:
        """Whether the last ``HOPELESS_ROUNDS`` rounds were all refused: retrying is waiting for nothing."""
        return self.refused_rounds >= HOPELESS_ROUNDS

    @property
    def rate(self) -> float | None:
        """Requests a second the pace allows; None until the registry first refuses one."""
        return self._rate

    def turn(self, waited_until: float = float("-inf")) -> float:
        """0 when a request may go now (it is then counted as gone), else the seconds to wait before asking
        again: turns are taken when they come, never booked ahead, so a pause that begins meanwhile holds
        everyone. A retry that slept until ``waited_until`` (this pacer's clock) after its own 429 has
        waited out any pause ending by then."""
        with self._lock:
            now = self._clock()
            at = now if self._paused_until <= waited_until else max(now, self._paused_until)
            if self._rate is not None and now - self._refused_at > QUIET:
                self._rate = None
            if self._rate is not None:
                spaced = self._last + 1.0 / self._rate
                if spaced > at:
                    at = spaced
                    self._held_at = now
            if at > now:
                return at - now
            self._last = now
            self._sent.append(now)
            return 0.0

    def answered(self) -> None:
        """The registry served a request (any answer but 429). The rate grows only while the pace has held
        requests back in the last second: one that holds nothing back has shown nothing about the limit."""
        with self._lock:
            self.served += 1
            self.refused_rounds = 0
            if self._rate is not None and self._held_at >= self._clock() - 1.0:
                self._rate += INCREASE

    def hold(self, pause: float) -> None:
        """Hold every request for ``pause`` seconds from now: the ``Retry-After`` of a 429 whose request will be
        sent again after it (a call that gives up instead, its wait longer than the client allows, holds no
        other). Refusals of requests sent before it ends answer the old rate."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + pause)
            self._paused = True
            self._lowered_at = max(self._lowered_at, self._paused_until)

    def refused(self, sent_at: float) -> None:
        """A request sent at ``sent_at`` (this pacer's clock) got a 429. A round counts towards ``hopeless``
        when it is the first or its request was sent after a pause ended. Halves the rate once per round:
        refusals of requests sent before the last round's decrease took effect (when its pause ended)
        answer the old rate, not the new one."""
        with self._lock:
            now = self._clock()
            self._refused_at = now
            if sent_at < self._lowered_at:
                return
            # Only a request that waited out a pause shows the pause did not help; 429s without Retry-After
            # come round after round within a moment and say nothing of the kind.
            if self.refused_rounds == 0 or (self._paused and self._paused_until <= sent_at):
                self.refused_rounds += 1
            self._paused = False
            self._lowered_at = max(now, self._paused_until)
            current = self._rate
            if current is None:
                recent = [t for t in self._sent if t >= now - WINDOW]
                if len(recent) < FEWEST or now <= recent[0]:
                    return
                current = (len(recent) - 1) / (now - recent[0])
            self._rate = max(MIN_RATE, current / 2)
