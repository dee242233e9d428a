"""Answer headers as urllib3's case-insensitive ``HTTPHeaderDict``, filled and read through its store.

Both paths to the registry hand the transport an ``HTTPHeaderDict``: urllib3's responses have one, and
the registry's own connections build one. Its public ``extend``, ``get`` and copying cost several calls
a field, on every manifest and blob of a crawl, so this module, and only this module, reaches into the
store (``{lower-case name: [name, value, value...]}``).
"""

from __future__ import annotations

from collections.abc import Mapping

from urllib3 import HTTPHeaderDict


def header_dict(fields: list[tuple[str, str]]) -> HTTPHeaderDict:
    """``fields`` as an ``HTTPHeaderDict`` (repeated fields kept, joined on lookup)."""
    headers = HTTPHeaderDict()
    container = headers._container
    for name, value in fields:
        key = name.lower()
        entry = container.get(key)
        if entry is None:
            container[key] = [name, value]
        else:
            entry.append(value)
    return headers


def field(headers: HTTPHeaderDict, key: str) -> str | None:
    """A field by its lower-case name."""
    entry = headers._container.get(key)
    return None if entry is None else ", ".join(entry[1:])


def plain_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Answer headers as a plain dict, as sent (names in their case, repeated fields joined)."""
    if isinstance(headers, HTTPHeaderDict):
        return {entry[0]: ", ".join(entry[1:]) for entry in headers._container.values()}
    return dict(headers or {})
