"""Audit reports people read and CI gates on: ``summary.json``, ``report.md``, ``report.html`` and charts.

The top layer: reads the inventory's frames and the analysis, draws with ``regframe.plot``, and never
touches the network. ``regframe audit --out DIR`` calls :func:`write_report`; notebooks can too::

    audit = AuditData.from_inventory(inv, stale, rules="older than 90d")
    write_report("audit-report", audit)

Another part of a report (e.g. what changed since the last audit) is a :class:`Section` passed as
``since_last=`` (shown after the totals) or in ``sections=``.
"""

from .charts import audit_charts
from .files import Report, summary_json, write_report
from .gates import Gate, GateError, GateResult, check_available, evaluate, parse_gate, parse_gates, undecided
from .html import render_html
from .markdown import render_markdown
from .model import AuditData, Chart, Section, Table
from .summary import SHORT_NAMES, TOTALS, Total, build_summary

__all__ = [
    "SHORT_NAMES",
    "TOTALS",
    "AuditData",
    "Chart",
    "Gate",
    "GateError",
    "GateResult",
    "Report",
    "Section",
    "Table",
    "Total",
    "audit_charts",
    "build_summary",
    "check_available",
    "evaluate",
    "parse_gate",
    "parse_gates",
    "render_html",
    "render_markdown",
    "summary_json",
    "undecided",
    "write_report",
]
