"""Patterns that users type (keep, match, policy tags), run with a time bound.

Python's ``re`` syntax is the documented one; the ``regex`` engine runs it, because its searches take
a timeout, so a catastrophic pattern raises ``PatternTimeout`` instead of hanging a crawl or a kernel."""

from __future__ import annotations

import re
import warnings

import regex

# Seconds one pattern may spend on one name (tag and repository names are short).
PATTERN_TIMEOUT = 1.0

_FLAGS = (
    (re.IGNORECASE, regex.IGNORECASE),
    (re.MULTILINE, regex.MULTILINE),
    (re.DOTALL, regex.DOTALL),
    (re.VERBOSE, regex.VERBOSE),
    (re.ASCII, regex.ASCII),
    (re.UNICODE, regex.UNICODE),
)


class PatternTimeout(ValueError):
    """A pattern took longer than ``PATTERN_TIMEOUT`` on one name."""


class BoundedPattern:
    """A user's regular expression whose ``search`` gives up after ``PATTERN_TIMEOUT`` seconds."""

    __slots__ = ("compiled", "pattern", "what")

    def __init__(self, pattern: str | re.Pattern[str], what: str = "", flags: int = 0):
        label = f"{what} pattern".strip()
        if isinstance(pattern, re.Pattern):
            if not isinstance(pattern.pattern, str):
                raise ValueError(f"{label} {pattern.pattern!r} must be text, not bytes")
            text, flags = pattern.pattern, pattern.flags
        elif isinstance(pattern, str):
            text = pattern
        else:
            raise ValueError(f"{what or 'pattern'} must be a regular expression string, got {pattern!r}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                re.compile(text, flags)
                self.compiled = regex.compile(text, regex.V0 | sum(ours for theirs, ours in _FLAGS if flags & theirs))
        except (re.error, regex.error, OverflowError, RecursionError, ValueError, IndexError) as err:
            raise ValueError(f"{label} {text!r} is not a valid regular expression: {err}") from None
        self.pattern, self.what = text, label

    def search(self, name: str, kind: str = "tag") -> bool:
        """``re.search`` within the time bound; PatternTimeout names the pattern and the ``kind`` of name."""
        try:
            return self.compiled.search(name, timeout=PATTERN_TIMEOUT) is not None
        except TimeoutError:
            raise PatternTimeout(
                f"{self.what} {self.pattern!r} took longer than {PATTERN_TIMEOUT:g} s on {kind} {name!r}; simplify it "
                "(nested repetition such as '(a|aa)+' backtracks exponentially)"
            ) from None

    def __repr__(self) -> str:
        return f"BoundedPattern({self.pattern!r})"


def compile_pattern(pattern: object, what: str = "") -> BoundedPattern | None:
    """None for None, else a ``BoundedPattern``; ``what`` ("keep", "match") names it in errors."""
    if pattern is None:
        return None
    if not isinstance(pattern, (str, re.Pattern)):
        raise ValueError(f"{what or 'pattern'} must be a regular expression string, got {pattern!r}")
    return BoundedPattern(pattern, what)
