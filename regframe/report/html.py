"""``report.html``: one self-contained page that needs no network and no JavaScript.

Charts are ``<img>`` elements with SVG data URIs (crisp on a phone and on paper); a Content Security
Policy allows nothing but inline styles and data images, so even a mistake in escaping could not make
the page fetch or run anything. Every piece of registry text goes through ``text.html_text``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..analysis import GARBAGE_COLLECTION_ADVICE
from ..text import html_text as h
from ..units import format_bytes
from .gates import GateResult
from .model import AuditData, Chart, Section, Table
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

# A cleanup plan longer than this is collapsed, and at most PLAN_ROWS of it are listed.
PLAN_OPEN_ROWS = 25
PLAN_ROWS = 2000
ERROR_ROWS = 200

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

STYLE = """
:root { color-scheme: light; --ink: #1c2430; --muted: #5b6675; --line: #dde2e8; --accent: #1f3a5f;
  --bad: #b3261e; --good: #1e7a3c; --panel: #f5f7fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: var(--ink); background: #fff; }
main { max-width: 1100px; margin: 0 auto; padding: 1.25rem 1rem 3rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; line-height: 1.25; overflow-wrap: anywhere; }
h2 { font-size: 1.25rem; margin: 2.2rem 0 .6rem; padding-bottom: .2rem; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
p.meta { color: var(--muted); margin: 0 0 .5rem; overflow-wrap: anywhere; }
nav ul { list-style: none; padding: 0; margin: .75rem 0 0; display: flex; flex-wrap: wrap; gap: .3rem .9rem; }
nav a { color: var(--accent); }
.totals { display: grid; grid-template-columns: repeat(auto-fill, minmax(13rem, 1fr)); gap: .6rem; margin: 0; }
.total { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: .55rem .75rem; }
.total dt { color: var(--muted); font-size: .85rem; }
.total dd { margin: 0; }
.total dd.value { font-size: 1.35rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.total dd.key code { font-size: .75rem; color: var(--muted); overflow-wrap: anywhere; }
figure { margin: 1rem 0; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: .85rem; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: .3rem 0; }
th, td { padding: .3rem .55rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { text-align: left; background: var(--panel); white-space: nowrap; }
td { overflow-wrap: anywhere; }
.right { text-align: right; white-space: nowrap; }
.more, .note { color: var(--muted); font-size: .85rem; }
details { margin: .8rem 0; }
summary { cursor: pointer; font-weight: 600; }
.gates li { margin: .2rem 0; }
.holds { color: var(--bad); font-weight: 600; }
.passes { color: var(--good); font-weight: 600; }
@media (max-width: 600px) {
  body { font-size: 14px; }
  main { padding: .75rem .6rem 2rem; }
  .totals { grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); }
  .total dd.value { font-size: 1.1rem; }
  th, td { padding: .25rem .35rem; }
}
@media print {
  @page { margin: 14mm; }
  body { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  nav { display: none; }
  .total { background: none; }
  th { background: none; }
  a { color: inherit; text-decoration: none; }
  h2 { break-after: avoid; }
  figure, tr, .total { break-inside: avoid; }
  .scroll { overflow: visible; }
  details > summary { list-style: none; }
  details::details-content { content-visibility: visible; display: block; }
}
"""


def render_html(
    audit: AuditData,
    summary: Mapping[str, Any],
    charts: Sequence[Chart],
    *,
    gates: Sequence[GateResult] = (),
    since_last: Section | None = None,
    sections: Sequence[Section] = (),
) -> str:
    """The whole page. ``since_last`` goes right after the totals; further ``sections`` before the errors."""
    by_name = {chart.name: chart for chart in charts}
    parts: list[tuple[str, str, str]] = []  # (anchor, title, html)
    if gates:
        parts.append(("gates", "CI gates", _gates(gates)))
    parts.append(("totals", "Totals", _totals(summary)))
    if since_last is not None:
        parts.append((since_last.anchor, since_last.title, _section_body(since_last)))
    parts.append(("storage", "Storage", _storage(audit, by_name)))
    parts.append(("sharing", "Shared layers", _figure(by_name.get("sharing"), _SHARING_CAPTION)))
    parts.append(("stale", "Stale tags and cleanup plan", _stale(audit, summary, by_name)))
    if audit.supply_chain is not None:
        parts.append(("supply-chain", "Supply chain", _supply_chain(audit, by_name)))
    for section in sections:
        parts.append((section.anchor, section.title, _section_body(section)))
    parts.append(("errors", f"Crawl errors ({len(audit.inventory.errors):,})", _errors(audit)))

    title = f"regframe audit of {audit.inventory.url or 'a registry'}"
    stamp = audit.when
    nav = "".join(f'<li><a href="#{h(anchor)}">{h(name)}</a></li>' for anchor, name, _ in parts)
    body = "".join(
        f'<section id="{h(anchor)}">\n<h2>{h(name)}</h2>\n{html}\n</section>\n' for anchor, name, html in parts
    )
    complete = "" if summary.get("complete", True) else " · <strong>incomplete crawl</strong>"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{h(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        f"<header>\n<h1>{h(title)}</h1>\n"
        f'<p class="meta">Audited {h(stamp)} · regframe {h(summary.get("regframe_version", ""))}{complete}</p>\n'
        f'<p class="meta">Stale tags: {h(audit.rules)}</p>\n'
        f"<nav><ul>{nav}</ul></nav>\n</header>\n{body}"
        '<footer class="note"><p>Sizes in decimal units (1 MB = 1,000,000 bytes). Every frame is in the CSV '
        "files beside this page; the totals are in summary.json.</p></footer>\n"
        "</main>\n</body>\n</html>\n"
    )


_SHARING_CAPTION = (
    "Bytes of layers each pair of repositories has in common (the diagonal is each one's stored bytes). "
    "Shared layers are stored once: deleting one repository frees only what it holds alone."
)


def _totals(summary: Mapping[str, Any]) -> str:
    items = []
    for total in totals(summary):
        value = summary[total.key]
        items.append(
            f'<div class="total" data-key="{h(total.key)}" data-value="{h(value)}">'
            f'<dt>{h(total.label)}</dt><dd class="value">{h(display(total, value))}</dd>'
            f'<dd class="key"><code>{h(total.key)}</code></dd></div>'
        )
    return (
        f'<dl class="totals">{"".join(items)}</dl>\n'
        '<p class="note">The small names are the keys of summary.json, which <code>--fail-on</code> gates use.</p>'
    )


def _gates(results: Sequence[GateResult]) -> str:
    items = []
    for result in results:
        if not result.decided:
            verdict = '<span class="holds">not computed: an error</span>'
        elif result.holds:
            verdict = '<span class="holds">holds: fails the audit</span>'
        else:
            verdict = '<span class="passes">does not hold</span>'
        items.append(f"<li><code>{h(result.gate.expression)}</code> {verdict}: {h(result.measured())}</li>")
    failing = sum(result.holds for result in results)
    head = f"{failing} of {len(results)} gate(s) hold." if failing else f"None of {len(results)} gate(s) holds."
    return f'<p>{h(head)}</p><ul class="gates">{"".join(items)}</ul>'


def _storage(audit: AuditData, charts: Mapping[str, Chart]) -> str:
    attrs = audit.usage.attrs
    intro = (
        f"<p>{h(format_bytes(attrs.get('total_bytes', 0)))} stored with each blob counted once; naive per-tag sums "
        f"report {h(format_bytes(attrs.get('logical_bytes', 0)))} ({float(attrs.get('dedup_ratio', 1.0)):.2f}x).</p>"
    )
    return (
        intro
        + _figure(charts.get("storage"), "Exclusive bytes (what deleting the repository frees) and shared bytes.")
        + _table(top_table(audit.usage))
        + _figure(charts.get("layer_sizes"), "Each distinct layer counted once, on a logarithmic size axis.")
    )


def _stale(audit: AuditData, summary: Mapping[str, Any], charts: Mapping[str, Chart]) -> str:
    stale_tags = int(summary.get("stale_tags", 0))
    intro = (
        f"<p>{stale_tags:,} of {len(audit.stale):,} tags are stale ({h(audit.rules)}). Deleting them frees "
        f"{h(format_bytes(audit.reclaimable_bytes))} once the registry's garbage collector runs; blobs a kept tag "
        f"still uses are not counted. {h(GARBAGE_COLLECTION_ADVICE)}</p>"
    )
    plan = cleanup_plan_table(audit.stale, limit=PLAN_ROWS)
    if not plan.rows:
        plan_html = "<p>The cleanup plan is empty: no tag is stale.</p>"
    else:
        opened = " open" if len(plan.rows) <= PLAN_OPEN_ROWS else ""
        plan_html = (
            f"<details{opened}><summary>Cleanup plan: {stale_tags:,} tag(s) to delete</summary>{_table(plan)}</details>"
        )
    return (
        intro
        + _figure(charts.get("stale_tags"), "Each dot is a tag; the dashed line is the age threshold.")
        + _table(stale_by_repository_table(audit.stale, audit.inventory.layers, referrers=audit.inventory.referrers))
        + plan_html
    )


def _supply_chain(audit: AuditData, charts: Mapping[str, Chart]) -> str:
    assert audit.supply_chain is not None
    dangling = audit.dangling
    return (
        _figure(charts.get("supply_chain"), "Signature, SBOM and attestation coverage per repository.")
        + _table(supply_chain_table(audit.supply_chain))
        + f"<p>{h(supply_chain_note(audit.supply_chain, dangling))}</p>"
        + (_table(dangling_table(dangling, limit=ERROR_ROWS)) if len(dangling) else "")
    )


def _errors(audit: AuditData) -> str:
    if audit.inventory.errors.empty:
        return "<p>None: every item was read.</p>"
    return "<p>These items could not be read; the numbers above count only what was read.</p>" + _table(
        errors_table(audit.inventory.errors, limit=ERROR_ROWS)
    )


def _section_body(section: Section) -> str:
    parts = []
    if section.note:
        parts.append(f"<p>{h(section.note)}</p>")
    if section.totals:
        items = "".join(
            f'<div class="total"><dt>{h(k)}</dt><dd class="value">{h(v)}</dd></div>' for k, v in section.totals
        )
        parts.append(f'<dl class="totals">{items}</dl>')
    parts += [_figure(chart, chart.title) for chart in section.charts]
    parts += [_table(table) for table in section.tables]
    return "\n".join(parts)


def _figure(chart: Chart | None, caption: str) -> str:
    if chart is None:
        return ""
    data = base64.b64encode(chart.svg).decode("ascii")
    return (
        f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{h(chart.title)}" data-chart="{h(chart.name)}">'
        f"<figcaption>{h(caption)}</figcaption></figure>\n"
    )


def _table(table: Table) -> str:
    def cells(tag: str, values: Iterable[str]) -> str:
        return "".join(
            f"<{tag}{' class=right' if table.alignment(i) == 'right' else ''}>{h(v)}</{tag}>"
            for i, v in enumerate(values)
        )

    caption = f"<caption>{h(table.caption)}</caption>" if table.caption else ""
    rows = "".join(f"<tr>{cells('td', row)}</tr>" for row in table.rows)
    more = f'<p class="more">{h(table.more)}</p>' if table.more else ""
    return (
        f'<div class="scroll"><table>{caption}<thead><tr>{cells("th", table.columns)}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>{more}\n"
    )
