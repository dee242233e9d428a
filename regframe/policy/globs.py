"""Doublestar globs (the syntax of bmatcuk/doublestar v1, which Harbor uses) for repository and tag names.

``*`` matches a run of characters other than ``/``, ``**`` as a whole path segment any number of
segments, ``?`` one character other than ``/``, ``[a-z]``/``[^a-z]`` a class, ``{a,b}`` either
alternative, and ``\\`` escapes. The whole name must match. ``team/*`` does not match ``team/a/b``;
``team/**`` does, and ``**/app`` matches ``app`` itself.
"""

from __future__ import annotations

import regex

from .checks import PolicyError

# Seconds one glob may spend on one name; globs become regular expressions, and a pattern such as
# "*a*a*a*a*a*b" can backtrack for a long time on a long name.
GLOB_TIMEOUT = 1.0


class Glob:
    """A compiled glob that remembers where it came from, so a failure names the rule and key."""

    def __init__(self, pattern: str, *, rule: str | None, key: str, empty_matches_all: bool = False):
        if not isinstance(pattern, str):
            raise PolicyError(f"glob must be text, got {pattern!r}", rule=rule, key=key)
        if not pattern and not empty_matches_all:
            raise PolicyError("empty glob; use '**' for every name", rule=rule, key=key)
        self.pattern, self.rule, self.key = pattern, rule, key
        try:
            source = to_regex(pattern) if pattern else ".*"
        except ValueError as exc:
            raise PolicyError(f"bad glob {pattern!r}: {exc}", rule=rule, key=key) from None
        self._rx = regex.compile(source, regex.V0 | regex.DOTALL)

    def match(self, name: str) -> bool:
        try:
            return self._rx.fullmatch(name, timeout=GLOB_TIMEOUT) is not None
        except TimeoutError:
            raise PolicyError(
                f"glob {self.pattern!r} took longer than {GLOB_TIMEOUT:g} s on {name!r}; simplify it",
                rule=self.rule,
                key=self.key,
            ) from None

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"


def to_regex(pattern: str) -> str:
    """The regular expression (for a full match) equivalent to a doublestar glob; ValueError if malformed."""
    segments = _split_segments(pattern)
    out = []
    for position, segment in enumerate(segments):
        last = position == len(segments) - 1
        if segment == "**":
            out.append(".*" if last else "(?:[^/]*/)*")
        else:
            out.append(_segment(segment) + ("" if last else "/"))
    return "".join(out)


def _split_segments(pattern: str) -> list[str]:
    segments, start, i = [], 0, 0
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i] == "/":
            segments.append(pattern[start:i])
            start = i + 1
        i += 1
    segments.append(pattern[start:])
    return segments


def _segment(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 >= len(text):
                raise ValueError("it ends with an escaping '\\'")
            out.append(regex.escape(text[i + 1]))
            i += 2
        elif char == "*":
            while i < len(text) and text[i] == "*":
                i += 1
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[":
            end = _class_end(text, i + 1)
            out.append(_char_class(text[i + 1 : end]))
            i = end + 1
        elif char == "{":
            options, end = _alternatives(text, i + 1)
            out.append("(?:" + "|".join(_segment(option) for option in options) + ")")
            i = end
        else:
            out.append(regex.escape(char))
            i += 1
    return "".join(out)


def _class_end(text: str, start: int) -> int:
    i = start
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "]":
            return i
        i += 1
    raise ValueError("'[' is never closed by ']'")


def _char_class(body: str) -> str:
    if not body or body == "^":
        raise ValueError("empty character class '[]'")
    negated = body.startswith("^")
    chars = list(body[1:] if negated else body)
    items, i = [], 0

    def take() -> str:
        nonlocal i
        char = chars[i]
        i += 1
        if char == "\\":
            if i >= len(chars):
                raise ValueError("character class ends with an escaping '\\'")
            char = chars[i]
            i += 1
        return char

    while i < len(chars):
        if chars[i] == "-":
            raise ValueError(f"'-' without a start in character class '[{body}]'")
        low = take()
        high = low
        if i < len(chars) and chars[i] == "-":
            i += 1
            if i >= len(chars) or chars[i] == "-":
                raise ValueError(f"unfinished range in character class '[{body}]'")
            high = take()
            if high < low:
                raise ValueError(f"range {low}-{high} is reversed in character class '[{body}]'")
        items.append(regex.escape(low) + ("" if high == low else "-" + regex.escape(high)))
    return ("[^/" if negated else "[") + "".join(items) + "]"


def _alternatives(text: str, start: int) -> tuple[list[str], int]:
    """The options of ``{a,b,...}`` starting after the brace, and the index after the closing one;
    nested braces and escapes are respected."""
    options, depth, i, begin = [], 1, start, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                options.append(text[begin:i])
                return options, i + 1
        elif char == "," and depth == 1:
            options.append(text[begin:i])
            begin = i + 1
        i += 1
    raise ValueError("'{' is never closed by '}'")
