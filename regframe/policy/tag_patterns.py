"""Tag regular expressions of a policy, searched with a time bound, and GitLab's RE2 syntax checked.

Native policies use Python ``re`` syntax. Patterns run on the ``regex`` engine with a timeout, so a
pattern that backtracks catastrophically raises a PolicyError naming its rule and key instead of
hanging the caller.

GitLab writes RE2. :func:`re2_to_python` accepts RE2 where Python's ``re`` means the same thing,
rewrites the few RE2 spellings Python lacks but can say exactly (``\\z``, ``\\Q...\\E``, ``\\x{41}``,
``(?<name>...)``, ``[[:alpha:]]``), and refuses the rest with the reason: constructs RE2 rejects
(lookarounds, backreferences, atomic groups, possessive quantifiers, ``\\Z``, comments, conditionals,
counts above 1000) and RE2 constructs Python has no equal for (``\\pN``, ``\\C``, the ``U`` flag,
``{,n}``, flags in mid-pattern).
"""

from __future__ import annotations

import re

from ..patterns import BoundedPattern, PatternTimeout
from .checks import PolicyError


class TagPattern:
    """A compiled tag pattern; ``search`` is ``re.search`` within the time bound of ``regframe.patterns``."""

    def __init__(self, text: str, *, rule: str | None, key: str, shown: str | None = None, ascii_only: bool = False):
        if not isinstance(text, str):
            raise PolicyError(f"must be a regular expression (text), got {text!r}", rule=rule, key=key)
        self.text, self.rule, self.key = text, rule, key
        self.shown = text if shown is None else shown
        try:
            self._rx = BoundedPattern(text, flags=re.ASCII if ascii_only else 0)
        except ValueError as exc:
            message = str(exc).replace(f"pattern {text!r}", repr(self.shown), 1)
            raise PolicyError(message, rule=rule, key=key) from None

    def search(self, tag: str) -> bool:
        try:
            return self._rx.search(tag)
        except PatternTimeout as exc:
            raise PolicyError(
                str(exc).replace(f"{self.text!r}", f"{self.shown!r}", 1), rule=self.rule, key=self.key
            ) from None

    def __repr__(self) -> str:
        return f"TagPattern({self.shown!r})"


def re2_pattern(text: object, *, rule: str | None, key: str, full: bool = True) -> TagPattern:
    """A GitLab RE2 pattern as a TagPattern; ``full`` anchors it exactly as GitLab does, by writing
    ``\\A`` before it and ``\\z`` after it (no group: ``a|b`` means "starts with a or ends with b")."""
    if not isinstance(text, str):
        raise PolicyError(f"must be an RE2 regular expression (text), got {text!r}", rule=rule, key=key)
    try:
        python = re2_to_python(text)
    except ValueError as exc:
        raise PolicyError(f"{text!r}: {exc}", rule=rule, key=key) from None
    flags = re.match(r"\(\?[ims]+\)", python)
    lead = flags.group() if flags else ""
    body = python[len(lead) :]
    return TagPattern(lead + (rf"\A{body}\Z" if full else body), rule=rule, key=key, shown=text, ascii_only=True)


_POSIX = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_SAME_ESCAPES = set("afnrtvdDsSwWbBA0")
_NOT_RE2 = {
    "Z": "'\\Z' is not RE2 (RE2 writes end of text as '\\z')",
    "C": "'\\C' (any byte) is RE2-only; Python has no equivalent",
    "u": "'\\u' escapes are Python-only, not RE2; write '\\x{...}'",
    "U": "'\\U' escapes are Python-only, not RE2; write '\\x{...}'",
    "N": "'\\N{...}' named characters are Python-only, not RE2",
    "G": "'\\G' is neither RE2 nor Python re",
}
_FLAG_LETTERS = set("imsU")


def re2_to_python(pattern: str) -> str:
    """``pattern`` (RE2 syntax) as a Python ``re`` pattern with the same meaning, or ValueError saying why not."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "\\":
            text, i = _escape(pattern, i, in_class=False)
            out.append(text)
            continue
        if char == "[":
            text, i = _char_class(pattern, i)
            out.append(text)
            continue
        if char == "(":
            text, i = _group_open(pattern, i)
            out.append(text)
            continue
        if char in "*+?":
            i += 1
            if i < n and pattern[i] == "?":
                out.append(char + "?")
                i += 1
            else:
                out.append(char)
            if i < n and pattern[i] == "+":
                raise ValueError(f"possessive quantifier '{char}+' is not RE2")
            continue
        if char == "{":
            found = re.match(r"\{(\d*)(,(\d*))?\}", pattern[i:])
            if found and (found.group(1) or found.group(2)):
                low, comma, high = found.group(1), found.group(2), found.group(3)
                if not low:
                    raise ValueError(
                        f"'{found.group()}' means {{0{comma}}} in Python but literal text in RE2; "
                        f"write {{0{comma}}} or escape the brace"
                    )
                for number in (low, high):
                    if number and int(number) > 1000:
                        raise ValueError(f"repetition count {number} in '{found.group()}' is above RE2's limit of 1000")
                out.append(found.group())
                i += found.end()
                if i < n and pattern[i] == "?":
                    out.append("?")
                    i += 1
                if i < n and pattern[i] == "+":
                    raise ValueError(f"possessive quantifier '{found.group()}+' is not RE2")
                continue
            out.append("\\{")
            i += 1
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _escape(pattern: str, i: int, *, in_class: bool) -> tuple[str, int]:
    if i + 1 >= len(pattern):
        raise ValueError("it ends with a lone '\\'")
    code = pattern[i + 1]
    if code == "Q":
        end = pattern.find("\\E", i + 2)
        literal = pattern[i + 2 :] if end < 0 else pattern[i + 2 : end]
        return re.escape(literal), len(pattern) if end < 0 else end + 2
    if code == "z":
        if in_class:
            raise ValueError("'\\z' cannot appear in a character class")
        return "\\Z", i + 2
    if code == "x" and i + 2 < len(pattern) and pattern[i + 2] == "{":
        end = pattern.find("}", i + 3)
        digits = pattern[i + 3 : end] if end > 0 else ""
        if not re.fullmatch(r"[0-9A-Fa-f]{1,6}", digits) or int(digits, 16) > 0x10FFFF:
            raise ValueError(f"bad '\\x{{...}}' escape at position {i}")
        return re.escape(chr(int(digits, 16))), end + 1
    if code in "pP":
        raise ValueError(
            f"Unicode class '\\{code}...' is RE2-only; Python re has none; list the characters instead (e.g. [0-9])"
        )
    if code.isdigit() and code != "0":
        raise ValueError(f"backreference '\\{code}' is not RE2")
    if code in _NOT_RE2:
        raise ValueError(_NOT_RE2[code])
    if code == "b" and in_class:
        raise ValueError("'\\b' in a character class is not RE2")
    if code in _SAME_ESCAPES or code == "x":
        return pattern[i : i + 2], i + 2
    if code.isascii() and not code.isalnum():
        return pattern[i : i + 2], i + 2
    raise ValueError(f"unknown escape '\\{code}'")


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    out, j = ["["], i + 1
    if j < len(pattern) and pattern[j] == "^":
        out.append("^")
        j += 1
    first = True
    while j < len(pattern):
        char = pattern[j]
        if char == "]" and not first:
            out.append("]")
            return "".join(out), j + 1
        first = False
        if char == "[" and pattern.startswith("[:", j) and pattern.find(":]", j + 2) > 0:
            end = pattern.find(":]", j + 2)
            name = pattern[j + 2 : end]
            negated = name.startswith("^")
            base = name[1:] if negated else name
            if base not in _POSIX:
                raise ValueError(f"unknown POSIX class '[:{name}:]'")
            if negated:
                raise ValueError(f"negated POSIX class '[:{name}:]' has no exact Python form; write the class out")
            out.append(_POSIX[base])
            j = end + 2
        elif char == "\\":
            text, j = _escape(pattern, j, in_class=True)
            out.append(text)
        elif char == "[":
            out.append("\\[")
            j += 1
        else:
            out.append(char)
            j += 1
    raise ValueError("'[' is never closed by ']'")


def _group_open(pattern: str, i: int) -> tuple[str, int]:
    if not pattern.startswith("(?", i):
        return "(", i + 1
    rest = pattern[i + 2 :]
    for prefix, problem in (
        ("P=", "backreference '(?P=name)' is not RE2"),
        ("P>", "recursion '(?P>name)' is not RE2"),
        ("<=", "lookbehind '(?<=...)' is not RE2"),
        ("<!", "lookbehind '(?<!...)' is not RE2"),
        ("=", "lookahead '(?=...)' is not RE2"),
        ("!", "lookahead '(?!...)' is not RE2"),
        (">", "atomic group '(?>...)' is not RE2"),
        ("#", "comment '(?#...)' is not RE2"),
        ("(", "conditional '(?(...)...)' is not RE2"),
    ):
        if rest.startswith(prefix):
            raise ValueError(problem)
    if rest.startswith("P<"):
        return "(?P<", i + 4
    if rest.startswith("<"):
        return "(?P<", i + 3
    if rest.startswith(":"):
        return "(?:", i + 3
    found = re.match(r"([A-Za-z]*)(?:-([A-Za-z]*))?([:)])", rest)
    if not found:
        raise ValueError(f"unknown group '{pattern[i : i + 4]}...'")
    letters = (found.group(1) or "") + (found.group(2) or "")
    for letter in letters:
        if letter == "U":
            raise ValueError("the ungreedy flag 'U' is RE2-only; Python has none (write lazy quantifiers '*?')")
        if letter not in _FLAG_LETTERS:
            raise ValueError(f"flag '{letter}' is not RE2 (RE2 flags: i, m, s, U)")
    if found.group(3) == ")" and (i != 0 or found.group(2) is not None):
        raise ValueError(
            f"flags '(?{found.group()}' in mid-pattern apply to the rest of the group in RE2 "
            "but are an error in Python; write '(?flags:...)' around the part"
        )
    return "(?" + found.group(), i + 2 + found.end()
