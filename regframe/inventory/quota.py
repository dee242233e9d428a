"""A crawl's rate-limit budget: the manifest GETs it may make before it stops.

Docker Hub counts manifest GETs against a pull quota (HEADs, tag lists and blobs are free) and reports
it in ``RateLimit-Limit: 100;w=21600`` and ``RateLimit-Remaining: 76;w=21600``. A crawl with a budget
counts every manifest GET as one unit (Hub counts at most that) and stops before one would take the
remaining quota below the reserve, keeping what it read. Rate-limit fields it cannot read stop an
``"auto"`` crawl too: it cannot tell how much of the quota is left, and must not take that for "no quota".
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping

from ..client.transport import RateLimit, rate_limit_of

AUTO = "auto"
# With budget="auto", the share of the window's limit left unspent when reserve= is not given.
AUTO_RESERVE = 0.1


def check_budget(budget: object, reserve: object) -> None:
    """``budget`` (None, a positive number of quota units, or "auto") and ``reserve`` (None, units, or a
    fraction in [0, 1)), checked before any request. A reserve that keeps back all of a numeric budget (a
    fraction counts rounded up, as ``Quota`` spends it) would stop the crawl before its first GET."""
    counted = isinstance(budget, int) and not isinstance(budget, bool) and budget >= 1
    if budget is not None and budget != AUTO and not counted:
        raise ValueError(f'budget must be None, a positive number of manifest GETs or "auto", not {budget!r}')
    if reserve is None:
        return
    if budget is None:
        raise ValueError('reserve= needs a budget= (a number of manifest GETs or "auto")')
    if isinstance(reserve, bool) or not isinstance(reserve, (int, float)):
        raise ValueError(f"reserve must be a number of quota units or a fraction in [0, 1), not {reserve!r}")
    if isinstance(reserve, float) and not 0 <= reserve < 1:
        raise ValueError(f"reserve as a fraction must be in [0, 1), not {reserve!r}")
    if isinstance(reserve, int) and reserve < 0:
        raise ValueError(f"reserve must not be negative, not {reserve!r}")
    if isinstance(budget, int) and (kept := _units(reserve, budget, 0.0)) >= budget:
        share = f" keeps {kept} back (a fraction rounds up) and" if isinstance(reserve, float) else ""
        raise ValueError(f"reserve={reserve}{share} leaves nothing of budget={budget} to spend")


def _units(reserve: int | float | None, quota: int, default: float) -> int:
    value = default if reserve is None else reserve
    return math.ceil(value * quota) if isinstance(value, float) else value


class Quota:
    """Hands out manifest GETs: ``take()`` before each (False: stop the crawl), ``done()`` after it.

    ``budget=N`` allows N units less the reserve (none unless given). ``budget="auto"`` follows the
    registry's own figures (``rate_limit()``, the latest headers): a GET is made only while the lowest
    ``remaining`` seen, less the GETs still in flight, stays above the reserve (10% of the window's limit
    unless given; without a ``limit`` field, a fraction is of the largest ``remaining`` seen). When only
    the requests in flight stand between the figures and the reserve, it waits for their answers: the crawl
    stops only when, with nothing in flight, one more GET would take the quota below the reserve. Until the
    first figures arrive one GET is in flight at a time; a registry that sends none after it has no quota
    to keep, and the crawl goes on unbounded. Rate-limit fields that are there but leave ``remaining``
    unknown (unreadable, or a limit alone) stop the crawl at the next GET, naming the field."""

    def __init__(
        self, budget: int | str | None, reserve: int | float | None, rate_limit: Callable[[], RateLimit | None]
    ):
        check_budget(budget, reserve)
        self.budget = budget
        self._reserve = reserve
        self._rate_limit = rate_limit
        self._cond = threading.Condition()
        self.spent = 0
        self._in_flight = 0
        self._lowest: int | None = None
        self._highest: int | None = None
        self._limit: int | None = None
        self._unreadable: str | None = None
        self._window: int | None = None
        self._unbounded = budget is None
        self._probed = False
        self.reason: str | None = None

    def _observe(self, figures: RateLimit | None = None) -> None:
        figures = figures or self._rate_limit()
        if figures is None:
            return
        if figures.remaining is None:
            self._unreadable = self._unreadable or figures.unreadable
            return
        self._lowest = figures.remaining if self._lowest is None else min(self._lowest, figures.remaining)
        self._highest = figures.remaining if self._highest is None else max(self._highest, figures.remaining)
        self._limit = figures.limit if figures.limit is not None else self._limit
        self._window = figures.window_seconds if figures.window_seconds is not None else self._window

    def take(self) -> bool:
        """Whether a manifest GET may go out now; one that may is counted, and ``done`` must follow it."""
        return self._admit(counted=True)

    def take_head(self) -> tuple[bool, bool]:
        """Whether a manifest HEAD may go out, and whether ``done`` must follow it. Docker Hub does not count
        HEADs, but a registry that does lowers ``remaining`` with them too: under ``budget="auto"`` a HEAD is
        admitted as a GET is (in flight, against the figures, never past the reserve) without being counted
        as a GET, so the crawl never meets a 429 there either. Other budgets count GETs only."""
        if self.budget != "auto":
            return self.reason is None, False
        with self._cond:
            unbounded = self._unbounded
        if unbounded:
            return self.reason is None, False
        return self._admit(counted=False), True

    def _admit(self, *, counted: bool) -> bool:
        with self._cond:
            if self.reason is not None:
                return False
            if self._unbounded:
                self.spent += counted
                return True
            if isinstance(self.budget, int):
                left = self.budget - self.spent
                reserve = _units(self._reserve, self.budget, 0.0)
                if left - 1 < reserve:
                    self.reason = f"budget spent: {self.spent} manifest GETs of budget={self.budget}" + (
                        f" (reserve {reserve})" if reserve else ""
                    )
                    return False
                return self._spend()
            while True:
                self._observe()
                if self._unreadable is not None:
                    self.reason = (
                        f"the registry's rate-limit headers could not be read ({self._unreadable}), so how much "
                        'of its quota is left is unknown; crawl with a numeric budget= (--budget N) instead of "auto"'
                    )
                    return False
                if self._lowest is not None:
                    # Without a limit field, the most the registry reported left stands for it (a fraction's base).
                    limit = self._limit if self._limit is not None else self._highest or self._lowest
                    reserve = _units(self._reserve, limit, AUTO_RESERVE)
                    if self._lowest - self._in_flight - 1 >= reserve or self._in_flight == 0:
                        break
                    if self._lowest - 1 < reserve:
                        break
                    # Only the requests in flight may take the quota to the reserve, and their answers will
                    # say whether they did (HEADs, say, cost Docker Hub nothing): wait for them.
                elif self._probed and self._in_flight == 0:
                    self._unbounded = True  # the registry sends no rate-limit headers: nothing to keep
                    self.spent += counted
                    return True
                elif not self._probed:
                    self._probed = True
                    return self._spend(counted)
                self._cond.wait(0.05)
            if self._lowest - self._in_flight - 1 < reserve:
                window = f" per {self._window} s" if self._window else ""
                of = f"of {limit} " if self._limit is not None else ""
                unknown = (
                    ""
                    if self._limit is not None
                    else f" (it sends no ratelimit-limit; {limit}, the most it reported left, stands for it)"
                )
                self.reason = (
                    f"rate-limit reserve reached: the registry reports {self._lowest} {of}pulls{window} "
                    f"left{unknown}, with {self._in_flight} in flight; {reserve} are kept in reserve"
                )
                return False
            return self._spend(counted)

    def _spend(self, counted: bool = True) -> bool:
        self.spent += counted
        self._in_flight += 1
        return True

    def done(self, headers: Mapping[str, str] | None = None) -> None:
        """A GET has ended; ``headers`` are its own answer's, read for rate-limit figures. Every answer reports the
        quota left after it was counted, so the lowest seen, less the GETs not yet answered, never
        overstates what is left, however the answers overtake each other."""
        with self._cond:
            if self._unbounded and self._in_flight == 0:
                return
            self._in_flight = max(0, self._in_flight - 1)
            self._observe(rate_limit_of(headers) if headers else None)
            self._cond.notify_all()

    def stats(self) -> dict[str, object]:
        with self._cond:
            return {
                "budget": self.budget,
                "manifest_gets": self.spent,
                "remaining": self._lowest,
                "limit": self._limit,
                "stopped": self.reason,
            }
