"""The pacer's rules, on a clock the tests move: a 429's pause holds every request, the rate starts at
half the rate requests were going at and halves once per round, grows only while it holds requests
back, and a registry that refuses round after round is given up on. The crawl through a real rate-limited
registry is in test_wild_registries.py."""

from __future__ import annotations

import pytest

from regframe.client.pacing import HOPELESS_ROUNDS, INCREASE, MIN_RATE, QUIET, Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def sends(pacer: Pacer, clock: Clock, count: int, every: float) -> float:
    """``count`` requests ``every`` seconds apart, each let through at once; the time of the last."""
    for i in range(count):
        if i:
            clock.now += every
        assert pacer.turn() == 0
    return clock.now


def test_nothing_is_held_back_before_a_429(clock):
    pacer = Pacer(clock)
    sends(pacer, clock, 100, 0.0)
    assert pacer.rate is None


def test_a_pause_holds_every_other_request_but_not_the_retry_that_waited_it_out(clock):
    pacer = Pacer(clock)
    sent = clock.now
    pacer.refused(sent)
    pacer.hold(2.0)
    assert pacer.turn() == pytest.approx(2.0), "another request waits the 2 s the 429 asked for"
    clock.now += 0.5
    assert pacer.turn() == pytest.approx(1.5)
    assert pacer.turn(waited_until=sent + 2.0) == 0, "the refused request slept its 2 s already"
    clock.now += 1.5
    assert pacer.turn() == 0


def test_a_later_pause_holds_even_a_retry_that_waited_out_its_own(clock):
    pacer = Pacer(clock)
    pacer.refused(clock.now)
    pacer.hold(1.0)
    own_end = clock.now + 1.0
    clock.now += 0.5
    pacer.refused(clock.now)
    pacer.hold(3.0)
    assert pacer.turn(waited_until=own_end) == pytest.approx(3.0)


def test_the_rate_starts_at_half_the_measured_one_and_spaces_turns(clock):
    """32 requests 0.01 s apart are 100 requests a second: the pace becomes 50, one turn every 0.02 s."""
    pacer = Pacer(clock)
    last = sends(pacer, clock, 32, 0.01)
    pacer.refused(last)
    assert pacer.rate == pytest.approx(50.0)
    assert pacer.turn() == pytest.approx(0.02), "0.02 s after the last request"
    clock.now += 0.02 + 1e-9
    assert pacer.turn() == 0
    assert pacer.turn() == pytest.approx(0.02)


def test_one_request_after_a_quiet_spell_sets_no_rate(clock):
    pacer = Pacer(clock)
    sends(pacer, clock, 2, 0.01)
    pacer.refused(clock.now)
    pacer.hold(1.0)
    assert pacer.rate is None


def test_the_rate_is_measured_over_the_last_second_only(clock):
    """Requests long ago (a connect's ping, an earlier call) are not part of the rate the crawl was going
    at: 10 requests 0.01 s apart after a minute of quiet are 100 requests a second, the pace 50."""
    pacer = Pacer(clock)
    sends(pacer, clock, 3, 0.01)
    clock.now += 60
    last = sends(pacer, clock, 10, 0.01)
    pacer.refused(last)
    assert pacer.rate == pytest.approx(50.0)


def test_the_rate_halves_once_per_round(clock):
    """Refusals of requests sent before the pause that lowered the rate ended answer the old rate."""
    pacer = Pacer(clock)
    last = sends(pacer, clock, 32, 0.01)
    pacer.refused(last)
    pacer.hold(1.0)
    assert pacer.rate == pytest.approx(50.0)
    pacer.refused(last)
    pacer.hold(1.0)
    clock.now += 0.5
    pacer.refused(last)
    pacer.hold(1.0)
    assert pacer.rate == pytest.approx(50.0), "the same round: no second decrease"
    clock.now += 1.1
    pacer.refused(clock.now)
    pacer.hold(1.0)
    assert pacer.rate == pytest.approx(25.0), "a request sent after the pause: a new round"


def test_the_rate_grows_only_while_it_holds_requests_back(clock):
    pacer = Pacer(clock)
    last = sends(pacer, clock, 32, 0.01)
    pacer.refused(last)
    clock.now += 10
    pacer.answered()
    assert pacer.rate == pytest.approx(50.0), "no turn was held back: nothing learnt about the limit"
    assert pacer.turn() == 0
    assert pacer.turn() == pytest.approx(0.02)
    pacer.answered()
    assert pacer.rate == pytest.approx(50.0 + INCREASE)


def test_the_rate_never_falls_below_the_slowest_pace(clock):
    pacer = Pacer(clock)
    last = sends(pacer, clock, 32, 0.01)
    for _ in range(20):
        pacer.refused(last)
        pacer.hold(0.1)
        clock.now += 0.2
        last = clock.now
    assert pacer.rate == MIN_RATE


def test_rounds_refused_in_a_row_are_hopeless_until_something_is_served(clock):
    pacer = Pacer(clock)
    for _ in range(HOPELESS_ROUNDS):
        assert not pacer.hopeless
        pacer.refused(clock.now)
        pacer.hold(1.0)
        pacer.refused(clock.now)
        pacer.hold(1.0)  # the same round
        clock.now += 1.0
    assert pacer.hopeless
    pacer.answered()
    assert not pacer.hopeless


def test_the_pace_is_dropped_after_a_quiet_minute(clock):
    """A limit met long ago says little about now: a notebook's client is not held to the pace of a burst
    of 429s an hour before."""
    pacer = Pacer(clock)
    last = sends(pacer, clock, 32, 0.01)
    pacer.refused(last)
    assert pacer.rate == pytest.approx(50.0)
    clock.now += QUIET + 1
    assert pacer.turn() == 0 and pacer.turn() == 0
    assert pacer.rate is None


def test_refusals_without_a_pause_are_not_hopeless(clock):
    """429s without Retry-After come round after round within a moment (a burst answered one by one): no
    pause was waited out, so they show nothing about a registry refusing everything."""
    pacer = Pacer(clock)
    for _ in range(3 * HOPELESS_ROUNDS):
        pacer.refused(clock.now)
        clock.now += 0.01
    assert not pacer.hopeless
