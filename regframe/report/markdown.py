"""``report.md``: the audit as GitHub/GitLab-flavoured Markdown tables, sized for a CI job summary.

No images and no raw HTML: every cell goes through ``text.markdown_cell``, so registry text renders as
the same text and can add no link, image or markup. Long tables are cut to ``ROWS`` rows with a line
saying how many more there are; the full data is in the CSV files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..analysis import GARBAGE_COLLECTION_ADVICE
from ..text import markdown_cell as md
from ..units import format_bytes
from .gates import GateResult
from .model import AuditData, Section, Table
from .summary import display, totals
from .tables import (
    cleanup_plan_table,
    dangling_table,
    errors_table,
    stale_by_repository_table,
    supply_chain_note,
    supply_chain_table,
    top_table,
)

ROWS = 20


def render_markdown(
    audit: AuditData,
    summary: Mapping[str, Any],
    *,
    gates: Sequence[GateResult] = (),
    since_last: Section | None = None,
    sections: Sequence[Section] = (),
) -> str:
    """The report; ``since_last`` goes right after the totals, further ``sections`` before the errors."""
    inv = audit.inventory
    lines = [
        f"## regframe audit of {md(inv.url or 'a registry')}",
        "",
        f"Audited {md(audit.when)} with regframe {md(summary.get('regframe_version', ''))}."
        + ("" if summary.get("complete", True) else " **The crawl is incomplete.**"),
        "",
    ]
    if gates:
        lines += _gates(gates)
    lines += ["### Totals", "", *_table(_totals_table(summary))]
    if since_last is not None:
        lines += _section(since_last)
    attrs = audit.usage.attrs
    lines += [
        "### Storage",
        "",
        f"{md(format_bytes(attrs.get('total_bytes', 0)))} stored with each blob counted once; naive per-tag sums "
        f"report {md(format_bytes(attrs.get('logical_bytes', 0)))}.",
        "",
        *_table(top_table(audit.usage)),
        "### Stale tags",
        "",
        f"{int(summary.get('stale_tags', 0)):,} of {len(audit.stale):,} tags are stale ({md(audit.rules)}); "
        f"deleting them frees {md(format_bytes(audit.reclaimable_bytes))} after garbage collection. "
        f"{md(GARBAGE_COLLECTION_ADVICE)} The full plan is in cleanup\\_plan.csv.",
        "",
        *_table(stale_by_repository_table(audit.stale, inv.layers, limit=ROWS, referrers=inv.referrers)),
    ]
    plan = cleanup_plan_table(audit.stale, limit=ROWS)
    if plan.rows:
        lines += ["#### Cleanup plan (oldest first)", "", *_table(plan)]
    if audit.supply_chain is not None:
        dangling = audit.dangling
        lines += ["### Supply chain", "", *_table(supply_chain_table(audit.supply_chain, limit=ROWS))]
        lines += [md(supply_chain_note(audit.supply_chain, dangling)), ""]
        if len(dangling):
            lines += _table(dangling_table(dangling, limit=ROWS))
    for section in sections:
        lines += _section(section)
    lines += [f"### Crawl errors ({len(inv.errors):,})", ""]
    if inv.errors.empty:
        lines += ["None: every item was read.", ""]
    else:
        lines += ["The numbers above count only what was read.", "", *_table(errors_table(inv.errors, limit=ROWS))]
    return "\n".join(lines)


def _totals_table(summary: Mapping[str, Any]) -> Table:
    rows = [[total.label, display(total, summary[total.key]), total.key] for total in totals(summary)]
    return Table(["Total", "Value", "Key"], rows, ["left", "right", "left"])


def _gates(results: Sequence[GateResult]) -> list[str]:
    failing = sum(result.holds for result in results)
    rows = [[result.gate.expression, display(result.gate.total, result.value), _verdict(result)] for result in results]
    head = f"**{failing} of {len(results)} gate(s) hold.**" if failing else f"None of {len(results)} gate(s) holds."
    return ["### CI gates", "", head, "", *_table(Table(["Gate", "Value", "Result"], rows, ["left", "right", "left"]))]


def _verdict(result: GateResult) -> str:
    if not result.decided:
        return "not computed: an error"
    return "holds: fails" if result.holds else "passes"


def _section(section: Section) -> list[str]:
    lines = [f"### {md(section.title)}", ""]
    if section.note:
        lines += [md(section.note), ""]
    if section.totals:
        lines += _table(Table(["Total", "Value"], [list(pair) for pair in section.totals], ["left", "right"]))
    for table in section.tables:
        lines += _table(table)
    return lines


def _table(table: Table) -> list[str]:
    """A pipe table; a caption becomes a bold line above it, left-out rows a line below."""
    marks = {"left": "---", "right": "---:"}
    lines = [f"**{md(table.caption)}**", ""] if table.caption else []
    lines.append("| " + " | ".join(md(column) for column in table.columns) + " |")
    lines.append("| " + " | ".join(marks[table.alignment(i)] for i in range(len(table.columns))) + " |")
    lines += ["| " + " | ".join(md(cell) for cell in row) + " |" for row in table.rows]
    if not table.rows:
        lines.append("| " + " | ".join(["(none)"] + [""] * (len(table.columns) - 1)) + " |")
    lines.append("")
    if table.more:
        lines += [f"_{md(table.more)}_", ""]
    return lines
