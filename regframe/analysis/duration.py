"""Age thresholds as people write them ("90d", "6w", "1d12h") and back to words."""

from __future__ import annotations

import datetime as dt
import re
from fractions import Fraction
from numbers import Integral

import pandas as pd

_NS = {
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
    "d": 86400 * 10**9,
    "w": 7 * 86400 * 10**9,
    "y": 365 * 86400 * 10**9,
}
_UNIT_WORDS = {
    "s": "s",
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
    "m": "m",
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "d": "d",
    "day": "d",
    "days": "d",
    "w": "w",
    "wk": "w",
    "wks": "w",
    "week": "w",
    "weeks": "w",
    "y": "y",
    "yr": "y",
    "yrs": "y",
    "year": "y",
    "years": "y",
}
_PART = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]+)\s*", re.ASCII | re.IGNORECASE)
_BARE_DAYS = re.compile(r"\s*([0-9]+)\s*", re.ASCII)

ACCEPTED = (
    "a Timedelta/timedelta, an int number of days, or a string such as "
    "'90d', '12h', '30m', '6w', '1y' (365 days) or '1d12h'"
)


def parse_duration(text: str | int | dt.timedelta | pd.Timedelta) -> pd.Timedelta:
    """Parse an age threshold; raise ValueError naming the bad value and the accepted forms.

    'm' means minutes (ages are never measured in months: their length varies),
    'y' is 365 days. A bare integer, or a string of digits, counts days.
    """
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}: expected {ACCEPTED}")
    if isinstance(text, (pd.Timedelta, dt.timedelta)):
        result = pd.Timedelta(text)
        if pd.isna(result):
            raise ValueError(f"invalid duration {text!r}: expected {ACCEPTED}")
        # pandas 3 may hold a long timedelta in microseconds; ages are compared in nanoseconds.
        return _non_negative(
            _from_ns(int(result.total_seconds()) * 10**9 + result.nanoseconds + result.microseconds * 1000, text), text
        )
    if isinstance(text, Integral):
        return _non_negative(_from_ns(int(text) * _NS["d"], text), text)
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r} ({type(text).__name__}): expected {ACCEPTED}")
    stripped = text.strip()
    if stripped.startswith("-"):
        try:
            parse_duration(stripped[1:])
        except ValueError:
            raise ValueError(f"invalid duration {text!r}: expected {ACCEPTED}") from None
        raise ValueError(f"invalid duration {text!r}: it must not be negative")
    bare = _BARE_DAYS.fullmatch(text)
    if bare:
        return _from_ns(int(bare.group(1)) * _NS["d"], text)
    return _from_ns(_parts_ns(text), text)


def _parts_ns(text: str) -> int:
    total = Fraction(0)
    position = 0
    for part in _PART.finditer(text):
        unit = _UNIT_WORDS.get(part.group(2).lower())
        if part.start() != position or unit is None:
            break
        total += Fraction(part.group(1)) * _NS[unit]
        position = part.end()
    if position != len(text) or not text.strip():
        raise ValueError(f"invalid duration {text!r}: expected {ACCEPTED}")
    return round(total)


def _from_ns(ns: int, original: object) -> pd.Timedelta:
    if abs(ns) > pd.Timedelta.max.value:
        raise ValueError(
            f"invalid duration {original!r}: longer than pandas can represent ({pd.Timedelta.max.days} days)"
        )
    return pd.Timedelta(ns, unit="ns")


def _non_negative(value: pd.Timedelta, original: object) -> pd.Timedelta:
    if value < pd.Timedelta(0):
        raise ValueError(f"invalid duration {original!r}: it must not be negative")
    return value


def format_duration(value: pd.Timedelta) -> str:
    """Words for a threshold in reasons and titles: '90 days', '1 day 12 hours', '30 minutes'."""
    remaining = int(pd.Timedelta(value).value)
    if remaining == 0:
        return "0 seconds"
    parts = []
    for unit, name in (("d", "day"), ("h", "hour"), ("m", "minute"), ("s", "second")):
        count, remaining = divmod(remaining, _NS[unit])
        if count:
            parts.append(f"{count} {name}{'' if count == 1 else 's'}")
    if remaining or not parts:
        parts.append(f"{remaining / 1e9:g} seconds" if not parts else f"{remaining} ns")
    return " ".join(parts)
