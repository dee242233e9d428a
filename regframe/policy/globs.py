"""Doublestar globs for repository and tag names, meaning what bmatcuk/doublestar v1.3.4 (the version
Harbor pins) makes of them.

``*`` matches a run of characters other than ``/``, ``**`` as a whole path segment any number of
segments (inside a segment it is ``*``), ``?`` one character other than ``/``, ``[a-z]``/``[^a-z]`` a
class, ``{a,b}`` either alternative (alternatives may hold ``/``: ``{team/api,team/web}``), and ``\\``
escapes. The whole name must match. ``team/*`` does not match ``team/a/b``; ``team/**`` does, and
``**/app`` matches ``app`` itself.

doublestar's own reading is kept where it surprises: what follows a ``*`` in a segment must match at
least one character unless it is nothing or ``*``, so ``v*{,-slim}`` matches ``v1-slim`` but not
``v1``, and ``a***`` does not match ``a``. Two spellings whose doublestar answer no regular expression
gives are refused: a ``*`` before ``{...}`` alternatives holding ``/``, and a ``**`` segment that braces
split.
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
    """The regular expression (for a full match) equivalent to a doublestar glob; ValueError if malformed
    or written in one of the two ways whose doublestar answer a regular expression cannot give."""
    return _sequence(pattern, 0, len(pattern), "", at_segment=True)


def _sequence(pattern: str, start: int, end: int, after: str, *, at_segment: bool) -> str:
    """``pattern[start:end]`` (the whole pattern or one ``{...}`` alternative), which ``after`` follows.

    doublestar judges a ``*`` and a ``**`` segment by the text that follows them once the alternatives
    before them are chosen, so that text (``pattern[i:end] + after``) is what decides them here.
    """
    out, i = [], start
    while i < end:
        if at_segment and _component(pattern[i:end] + after) == "**":
            if not pattern.startswith("**", i) or (i + 2 == end and after):
                raise ValueError("a '**' path segment must be written whole, either inside one '{...}' or outside")
            out.append(".*" if i + 2 == end else "(?:[^/]*/)*")
            i += 3
            continue
        if at_segment:
            out.append(_last_segment_guard(pattern[i:end] + after))
        char = pattern[i]
        at_segment = char == "/"
        if char == "\\":
            if i + 1 >= end:
                raise ValueError("it ends with an escaping '\\'")
            out.append(regex.escape(pattern[i + 1]))
            i += 2
        elif char == "*":
            out.append(_star(pattern[i + 1 : end] + after))
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[":
            close = _class_end(pattern[:end], i + 1)
            out.append(_char_class(pattern[i + 1 : close]))
            i = close + 1
        elif char == "{":
            close, options = _alternatives(pattern, i, end)
            rest = pattern[close + 1 : end] + after
            either = "|".join(_sequence(pattern, a, b, rest, at_segment=False) for a, b in options)
            out.append(_braces(pattern[i : close + 1], [pattern[a:b] for a, b in options], either))
            i = close + 1
        else:
            out.append(regex.escape(char))
            i += 1
    if at_segment and start and _component(after) == "**":
        raise ValueError("a '**' path segment must be written whole, either inside one '{...}' or outside")
    return "".join(out)


def _star(follow: str) -> str:
    """``*`` before ``follow``. doublestar tries ``follow`` only against a non-empty rest of the path
    segment (so ``v*{,-slim}`` does not match ``v1``), unless ``follow`` is nothing or ``*`` up to the
    segment's end; and it settles on the first split of the segment that works, which is only the
    regular expression's answer while every split leaves the same pattern for the next segments."""
    if _component(follow) in ("", "*"):
        return "[^/]*"
    if _branches_across_segments(follow):
        raise ValueError("a '*' before '{...}' alternatives that contain '/' is not supported")
    return "[^/]*(?=[^/])"


def _last_segment_guard(text: str) -> str:
    """At the start of a segment that ``text`` matches: when it is the name's last segment, doublestar
    also fails if some way through ``text`` uses the segment up and stops at a '/' inside '{...}', for
    it then reports the pattern after that '/' instead of a match (``{a,a/b}`` does not match ``a``)."""
    if not _branches_across_segments(text):
        return ""
    stop = _before_slash(text)
    if stop is None:
        return ""
    return rf"(?:(?=[^/]*/)|(?!{_sequence(stop, 0, len(stop), '', at_segment=False)}\Z))"


def _before_slash(text: str) -> str | None:
    """A glob without '/' for what ``text`` can match up to one of its '/'; None if it reaches none."""
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
        elif char == "/":
            return text[:i]
        elif char == "[":
            i = _class_end(text, i + 1) + 1
        elif char == "{":
            close, options = _alternatives(text, i, len(text))
            rest = text[close + 1 :]
            parts, plain = [], []
            for a, b in options:
                if _component(text[a:b]) == text[a:b]:
                    plain.append(text[a:b])
                elif (cut := _before_slash(text[a:b] + rest)) is not None:
                    parts.append(cut)
            tail = _before_slash(rest)
            if plain and tail is not None:
                parts.append("{" + ",".join(plain) + "}" + tail)
            return text[:i] + "{" + ",".join(parts) + "}" if parts else None
        else:
            i += 1
    return None


def _braces(text: str, options: list[str], either: str) -> str:
    """``{...}`` over the translated alternatives ``either``. doublestar tries the alternatives only while
    the path segment has characters left; at its end it asks whether one of them alone can be empty."""
    if _component(text) == text and any(_zero_length(option) for option in options):
        return rf"(?:(?=/|\Z)|(?=[^/])(?:{either}))"
    return f"(?=[^/])(?:{either})"


def _zero_length(text: str) -> bool:
    """doublestar's test for the rest of a pattern once the path segment is used up."""
    if text in ("", "*", "**"):
        return True
    if not text.startswith("{"):
        return False
    close, options = _alternatives(text, 0, len(text))
    return _zero_length(text[close + 1 :]) and any(_zero_length(text[a:b]) for a, b in options)


def _component(text: str) -> str:
    """``text`` up to its first unescaped '/', braces or not, as doublestar cuts it."""
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == "/":
            return text[:i]
        else:
            i += 1
    return text


def _branches_across_segments(text: str) -> bool:
    """Whether a '/' inside '{...}' comes before the first '/' outside braces."""
    depth, i = 0, 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth = max(depth - 1, 0)
        elif char == "/":
            return depth > 0
        i += 1
    return False


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


def _alternatives(text: str, start: int, end: int) -> tuple[int, list[tuple[int, int]]]:
    """For the ``{`` at ``start``: the index of its closing brace before ``end`` and the span of each
    alternative; nested braces and escapes are respected."""
    options, depth, i, begin = [], 1, start + 1, start + 1
    while i < end:
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                options.append((begin, i))
                return i, options
        elif char == "," and depth == 1:
            options.append((begin, i))
            begin = i + 1
        i += 1
    raise ValueError("'{' is never closed by '}'")
