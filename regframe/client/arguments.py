"""Checks of a call's plain arguments (flags, counts, seconds): a ValueError naming the argument, raised
before any request. Every layer's public calls use them, so the same mistake reads the same everywhere."""

from __future__ import annotations

_COUNT_WORDS = {0: "a non-negative integer", 1: "a positive integer"}


def check_flag(name: str, value: object) -> bool:
    """``value`` when it is True or False (not merely truthy)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, not {value!r}")
    return value


def check_count(name: str, value: object, *, minimum: int = 1, optional: bool = False) -> int | None:
    """``value`` when it is an int (not a bool) of at least ``minimum``; None too when ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = _COUNT_WORDS.get(minimum, f"an integer of at least {minimum}")
        raise ValueError(f"{name} must be {kind}{' or None' if optional else ''}, not {value!r}")
    return value


def check_seconds(name: str, value: object) -> float:
    """``value`` as a float when it is a positive, finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def check_progress(value: object) -> None:
    """A transfer's ``progress=``: None or a callable ``(bytes_done, bytes_total)``. True and False, which
    ``inventory()`` takes for its progress bar, are refused here rather than failing mid-transfer."""
    if value is None or callable(value):
        return
    raise ValueError(
        f"progress must be None or a callable (bytes_done, bytes_total), not {value!r:.80}"
        + ("; only inventory() takes True or False, for its progress bar" if isinstance(value, bool) else "")
    )
