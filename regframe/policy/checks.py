"""PolicyError and the checks every policy format shares: each problem names the rule and the key.

A policy is checked in full when it is built, so a mistake is reported before a registry is
contacted, with the rule and the key to fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from numbers import Integral
from typing import Any

import pandas as pd

from ..analysis.duration import parse_duration


class PolicyError(ValueError):
    """A policy that cannot be evaluated as written; ``rule`` and ``key`` say where (None when the
    problem is with the policy as a whole)."""

    def __init__(self, problem: str, *, rule: str | None = None, key: str | None = None):
        self.rule, self.key, self.problem = rule, key, problem
        where = []
        if rule is not None:
            where.append(f"rule {rule!r}")
        if key is not None:
            where.append(f"key {key!r}")
        super().__init__(f"{', '.join(where)}: {problem}" if where else problem)


def check_mapping(value: object, *, rule: str | None, key: str | None, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"{what} must be a table/object, got {_shown(value)}", rule=rule, key=key)
    for name in value:
        if not isinstance(name, str):
            raise PolicyError(f"{what} has a non-text key {name!r}", rule=rule, key=key)
    return value


def check_keys(
    data: Mapping[str, Any], known: Iterable[str], *, rule: str | None, prefix: str = "", hint: str = ""
) -> None:
    """Refuse the first key not in ``known``, suggesting the closest known one."""
    known = list(known)
    for name in data:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            suggestion = f" (did you mean {close[0]!r}?)" if close else ""
            raise PolicyError(
                f"unknown key{suggestion}; known keys: {', '.join(known)}{hint}", rule=rule, key=prefix + name
            )


def check_count(value: object, *, rule: str | None, key: str, minimum: int = 0, maximum: int | None = None) -> int:
    """A whole number of at least ``minimum`` (and at most ``maximum``); bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise PolicyError(f"must be a whole number, got {_shown(value)}", rule=rule, key=key)
    number = int(value)
    if number < 0 <= minimum:
        raise PolicyError(f"must not be negative, got {number}", rule=rule, key=key)
    if number < minimum:
        raise PolicyError(f"must be at least {minimum}, got {number}", rule=rule, key=key)
    if maximum is not None and number > maximum:
        raise PolicyError(f"must be at most {maximum}, got {number}", rule=rule, key=key)
    return number


def check_text(value: object, *, rule: str | None, key: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise PolicyError(f"must be text, got {_shown(value)}", rule=rule, key=key)
    if not allow_empty and not value:
        raise PolicyError("must not be empty", rule=rule, key=key)
    return value


def check_choice(value: object, choices: Iterable[str], *, rule: str | None, key: str) -> str:
    choices = list(choices)
    if value not in choices:
        raise PolicyError(f"must be one of {', '.join(map(repr, choices))}, got {_shown(value)}", rule=rule, key=key)
    return value


def check_duration(value: object, *, rule: str | None, key: str) -> pd.Timedelta:
    try:
        return parse_duration(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise PolicyError(str(exc), rule=rule, key=key) from None


def text_list(value: object, *, rule: str | None, key: str) -> tuple[str, ...]:
    """One string or a list of strings, as a tuple."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise PolicyError(f"must be text or a list of text, got {_shown(value)}", rule=rule, key=key)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
