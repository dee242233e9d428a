"""Semantic Versioning 2.0.0 precedence for tag names.

A leading ``v`` is allowed (``v1.2.3`` is version 1.2.3). Image tags cannot hold ``+``, so build
metadata is also read after ``_``, the spelling Helm uses for OCI tags (``1.2.3_build.5`` is
``1.2.3+build.5``); build metadata never changes precedence. A pre-release ranks below its release,
and pre-release identifiers compare as the specification says: numbers numerically, below words,
words in ASCII order, a longer list above its prefix.
"""

from __future__ import annotations

import functools
import re

_NUMBER = r"0|[1-9]\d*"
_PRE_ID = r"0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*"
_BUILD_ID = r"[0-9a-zA-Z-]+"
SEMVER = re.compile(
    rf"v?(?P<major>{_NUMBER})\.(?P<minor>{_NUMBER})\.(?P<patch>{_NUMBER})"
    rf"(?:-(?P<pre>(?:{_PRE_ID})(?:\.(?:{_PRE_ID}))*))?"
    rf"(?:[+_](?P<build>{_BUILD_ID}(?:\.{_BUILD_ID})*))?",
    re.ASCII,
)

# A release sorts above every pre-release of the same version: (1,) > (0, ...).
_RELEASE = (1,)


@functools.lru_cache(maxsize=65536)
def semver_key(tag: str) -> tuple | None:
    """A sort key giving semver precedence (larger is newer), or None when ``tag`` is not semver."""
    found = SEMVER.fullmatch(tag)
    if found is None:
        return None
    pre = found.group("pre")
    if pre is None:
        pre_key: tuple = _RELEASE
    else:
        pre_key = (0, tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in pre.split(".")))
    return int(found.group("major")), int(found.group("minor")), int(found.group("patch")), pre_key


def is_semver(tag: str) -> bool:
    return semver_key(tag) is not None
