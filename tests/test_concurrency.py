"""The adaptive in-flight limit's rule, driven by a fake clock: a step up is kept only when it pays at least
half of what it would on a link limited by latency alone. No registry is involved: the limit only sees
completions and time, and these tests choose both."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from regframe.inventory.concurrency import START, Limit
from regframe.inventory.pool import TaskPool


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def window(limit: Limit, clock: Clock, rate: Callable[[int], float]) -> None:
    """Fill every slot, then complete them all at ``rate(in_flight)`` completions a second (the rates below
    make every window longer than the limit's shortest, 0.2 s)."""
    in_flight = limit.limit
    for _ in range(in_flight):
        assert limit.acquire()
    clock.now += in_flight / rate(in_flight)
    for _ in range(in_flight):
        limit.release()


def run(rate: Callable[[int], float], windows: int = 30) -> Limit:
    clock = Clock()
    limit = Limit(64, clock=clock)
    for _ in range(windows):
        window(limit, clock, rate)
    return limit


def test_a_latency_bound_link_grows_to_the_maximum():
    # 100 ms per request: throughput is what is in flight, ten times a second.
    limit = run(lambda in_flight: in_flight * 10.0)
    assert limit.limit == 64 and limit.peak == 64


def cpu_bound(in_flight: int) -> float:
    """A registry next door, its CPU the limit: past the start, doubling gains 20% (proportionally less for a
    smaller step)."""
    return 40.0 * (1 + 0.2 * max(0, in_flight - START) / START)


def test_a_cpu_bound_registry_keeps_its_start():
    limit = run(cpu_bound, windows=60)
    assert limit.limit == START
    assert limit.peak == 2 * START, "slow start tried one doubling"
    assert limit.increases == limit.decreases >= 2, "every probe up was taken back"


def test_a_doubling_is_kept_at_1_5x_and_not_below():
    kept = run(lambda in_flight: 40.0 if in_flight <= START else 61.0, windows=4)
    assert kept.limit >= 2 * START
    undone = run(lambda in_flight: 40.0 if in_flight <= START else 59.0, windows=4)
    assert undone.limit == START


def test_noise_within_five_percent_never_ratchets_the_limit_up():
    # Throughput flat at any limit but for +-4% of noise, alternating: the limit ends where it started.
    noise = iter([1.04, 0.96] * 100)
    limit = run(lambda in_flight: 40.0 * next(noise), windows=60)
    assert limit.limit == START


def test_threads_beyond_a_lowered_limit_end_after_their_task():
    """A 429 halves the limit from 8 to 4: of the pool's 8 threads, those beyond 4 end after their next
    task instead of waiting for a slot, and the tasks all still run."""
    signals = [0]
    limit = Limit(8, congestion=lambda: signals[0])
    pool = TaskPool(limit)
    try:
        assert len(pool._threads) == 8
        done: list[int] = []
        lock = threading.Lock()

        def task(number: int) -> None:
            with lock:
                done.append(number)

        signals[0] = 1  # the transport heard a 429: the next completion halves the limit
        for number in range(200):
            pool.submit(task, number)
        pool.wait()
        assert limit.limit == 4
        assert sorted(done) == list(range(200))
        deadline = time.monotonic() + 5
        while len(pool._threads) > 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        alive = [thread for thread in pool._threads if thread.is_alive()]
        assert len(pool._threads) == 4 and len(alive) == 4
    finally:
        pool.close()


class Answers:
    """A fake of the transport's answer times: every window's answers take ``mean`` seconds, the quickest
    ever took ``quickest``."""

    def __init__(self, quickest: float, mean: float) -> None:
        self.count, self.total, self.quickest, self.mean = 0, 0.0, quickest, mean

    def __call__(self) -> tuple[int, float, float]:
        self.count += 16
        self.total += 16 * self.mean
        return self.count, self.total, self.quickest


def test_no_step_up_while_the_registry_queues_the_answers():
    # Throughput would double with the limit, but answers take 12 times the quickest one: a registry
    # next door whose queue, not the link, sets the pace.
    clock = Clock()
    limit = Limit(64, clock=clock, latency=Answers(quickest=0.0015, mean=0.018))
    for _ in range(30):
        window(limit, clock, lambda in_flight: in_flight * 2.5)
    assert limit.limit == START and limit.peak == START


def test_answers_near_the_quickest_let_the_limit_grow():
    # 100 ms answers, the quickest 95 ms: the link's latency, not a queue.
    clock = Clock()
    limit = Limit(64, clock=clock, latency=Answers(quickest=0.095, mean=0.1))
    for _ in range(30):
        window(limit, clock, lambda in_flight: in_flight * 2.5)
    assert limit.limit == 64
