"""Writing a report into an output folder: every file through a temporary file renamed into place."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..client.atomic_files import open_directory, write_atomically
from .charts import audit_charts
from .gates import GateResult
from .html import render_html
from .markdown import render_markdown
from .model import AuditData, Chart, Section
from .summary import build_summary

CHARTS = "charts"


@dataclass(frozen=True)
class Report:
    """What ``write_report`` wrote: the summary, the Markdown text, and the paths."""

    summary: dict[str, Any]
    markdown: str
    html: Path
    markdown_path: Path
    summary_path: Path
    charts: list[Path]


def summary_json(summary: Mapping[str, Any]) -> str:
    """``summary.json``'s text: ASCII only, so no control character from a registry reaches a terminal."""
    return json.dumps(summary, indent=2, ensure_ascii=True) + "\n"


def write_report(
    out: str | os.PathLike[str],
    audit: AuditData,
    *,
    summary: Mapping[str, Any] | None = None,
    gates: Sequence[GateResult] = (),
    previous_stored_bytes: int | None = None,
    since_last: Section | None = None,
    sections: Sequence[Section] = (),
    charts: Sequence[Chart] | None = None,
) -> Report:
    """Write ``charts/*.png``, ``charts/*.svg``, ``summary.json``, ``report.md`` and ``report.html`` into ``out``.

    ``summary`` defaults to ``build_summary(audit, previous_stored_bytes=...)``. ``since_last`` (a
    :class:`Section`, e.g. what changed since the previous audit) is shown right after the totals in both
    reports; ``sections`` go before the crawl errors. A link planted at any of these names, ``charts/``
    included, is replaced and never written through.
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    totals = dict(summary) if summary is not None else build_summary(audit, previous_stored_bytes=previous_stored_bytes)
    drawn = list(charts) if charts is not None else audit_charts(audit)
    chart_paths = _write_charts(root, [*drawn, *(since_last.charts if since_last else ()), *_charts_of(sections)])
    markdown = render_markdown(audit, totals, gates=gates, since_last=since_last, sections=sections)
    page = render_html(audit, totals, drawn, gates=gates, since_last=since_last, sections=sections)
    write_atomically(root / "summary.json", [summary_json(totals).encode()], root=root)
    write_atomically(root / "report.md", [markdown.encode()], root=root)
    write_atomically(root / "report.html", [page.encode()], root=root)
    return Report(totals, markdown, root / "report.html", root / "report.md", root / "summary.json", chart_paths)


def _charts_of(sections: Sequence[Section]) -> list[Chart]:
    return [chart for section in sections for chart in section.charts]


def _write_charts(root: Path, charts: Sequence[Chart]) -> list[Path]:
    folder = root / CHARTS
    try:
        if stat.S_ISLNK(os.lstat(folder).st_mode):
            os.unlink(folder)
    except FileNotFoundError:
        pass
    paths = []
    for chart in charts:
        for suffix, data in (("png", chart.png), ("svg", chart.svg)):
            path = folder / f"{chart.name}.{suffix}"
            write_atomically(path, [data], root=root)
            paths.append(path)
    return paths


def remove_outputs(out: str | os.PathLike[str], names: Iterable[str]) -> list[str]:
    """Remove the files ``names`` (paths relative to ``out``, such as ``charts/growth.png``) that an earlier
    run left, so a reused output folder never presents them as this run's; the names removed.

    Only those exact names go: a folder or anything else at one of them stays, and a link is removed
    itself, never what it points to, nor is a linked folder on the way entered."""
    removed = []
    for name in sorted(names):
        *folders, leaf = PurePosixPath(name).parts
        try:
            fd = open_directory(out, folders)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                continue
            raise
        try:
            mode = os.stat(leaf, dir_fd=fd, follow_symlinks=False).st_mode
            if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                os.unlink(leaf, dir_fd=fd)
                removed.append(name)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
    return removed
