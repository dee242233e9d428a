"""Registry-supplied text made safe for each kind of output: a terminal, HTML, Markdown.

Names, tags and error messages come from the registry; in a report they must not drive a terminal,
become markup, a link or an image (an image in a CI job summary is a request to someone's server).
"""

from __future__ import annotations

import html
import re

_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROLS_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and newline, DEL, C1
# CommonMark lets a backslash escape any ASCII punctuation; these start emphasis, code, links, images,
# HTML, entities, tables, strike-through and (on GitHub) math.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<#|~&$])")
# GitHub and GitLab turn bare URLs and www. names into links; a backslash before the ':' or '.' stops that.
_AUTOLINK = re.compile(r"(?i)(?<=[a-z0-9])(?=://)|(?<=\bwww)(?=\.)")


def visible(value: object, *, keep_lines: bool = False) -> str:
    """``value`` with each control character shown as ``\\x1b``: what a registry sends (tags, names, error
    messages) must not drive a terminal (OSC 52 clipboard writes, screen clears, titles). One line, unless
    ``keep_lines`` leaves tabs and newlines (a multi-line text printed whole)."""
    pattern = _CONTROLS_BUT_LINES if keep_lines else _CONTROLS
    return pattern.sub(lambda found: f"\\x{ord(found.group()):02x}", str(value))


def html_text(value: object) -> str:
    """Text for an HTML element or attribute: one visible line, ``<>&"'`` escaped."""
    return html.escape(visible(value), quote=True)


def markdown_cell(value: object) -> str:
    """Text for a Markdown table cell: one visible line with every character that could start markup
    backslash-escaped, so it renders as the same text on GitHub and GitLab."""
    return _AUTOLINK.sub("\\\\", _MARKDOWN_SPECIAL.sub(r"\\\1", visible(value)))
