"""CI gates: ``--fail-on EXPR`` compares one total of ``summary.json`` with a number.

``EXPR`` is ``NAME OP VALUE``: ``NAME`` a key of ``summary.json`` or its short form (the key without its
unit suffix: ``reclaimable`` is ``reclaimable_bytes``, ``stale`` is ``stale_tags``, ``unsigned`` is
``unsigned_images``, ``growth`` is ``growth_percent``; see ``summary.SHORT_NAMES``); ``OP`` one of
``> >= < <= == !=``; ``VALUE`` a size for byte totals (decimal ``kB MB GB TB PB`` or binary
``KiB MiB GiB TiB PiB``, through ``regframe.units.parse_bytes``; with a sign for ``growth_bytes``, which is
negative when the registry shrank), a number with an optional ``%`` for percent totals, a whole number for
counts and a number for ratios. A gate *holds* when its comparison
is true: that is a failure of the audit (exit status 3).

Everything is checked before any request: a malformed expression raises ``GateError`` (a ValueError).
A gate on a total that needs data the audit will not have is refused before connecting too
(``check_available``), and one the finished audit could not compute is a ``GateError`` from
``evaluate``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ..units import parse_bytes
from .summary import ARTIFACTS, BY_KEY, HISTORY, SHORT_NAMES, Total, display

OPERATORS: Mapping[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_EXPRESSION = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*([<>=!~]+)\s*(.*?)\s*")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_NAMES = ", ".join(sorted(BY_KEY))
# Totals that are negative when the registry shrank; a size threshold for one of them may have a sign.
SIGNED = frozenset({"growth_bytes", "growth_percent"})


class GateError(ValueError):
    """A gate that cannot be used: malformed, or on a total the audit does not compute."""


@dataclass(frozen=True)
class Gate:
    """One parsed ``--fail-on`` expression: ``total OP threshold`` in the total's own unit."""

    expression: str
    total: Total
    op: str
    threshold: int | float

    def holds(self, value: int | float) -> bool:
        return OPERATORS[self.op](value, self.threshold)


@dataclass(frozen=True)
class GateResult:
    """A gate against one audit: the total's value (None when the audit could not compute it)."""

    gate: Gate
    value: int | float | None
    holds: bool
    # Why the audit could not compute the total, when it had the data the total needs.
    why_not: str | None = None

    @property
    def decided(self) -> bool:
        return self.value is not None

    def measured(self) -> str:
        """``reclaimable_bytes is 7.2 GB (7,200,000,000)``, or why there is no value."""
        total = self.gate.total
        if self.value is None:
            if self.why_not:
                return f"{total.key} was not computed: {self.why_not}"
            needs = f" (it needs {total.needs})" if total.needs else ""
            return f"{total.key} was not computed{needs}"
        exact = f" ({self.value:,})" if total.unit == "bytes" else ""
        return f"{total.key} is {display(total, self.value)}{exact}"

    def describe(self) -> str:
        """``reclaimable>5GB: reclaimable_bytes is 7.2 GB (7,200,000,000)``."""
        return f"{self.gate.expression}: {self.measured()}"


def parse_gate(expression: str) -> Gate:
    """``"reclaimable>5GB"`` as a Gate; GateError naming the expression and what is wrong."""
    if not isinstance(expression, str):
        raise GateError(f"--fail-on expects text such as 'reclaimable>5GB', got {expression!r}")
    found = _EXPRESSION.fullmatch(expression)
    if found is None:
        raise GateError(
            f"--fail-on {expression!r}: expected NAME OP VALUE, e.g. 'reclaimable>5GB', 'stale>100', 'growth>10%'"
        )
    name, op, value = found.groups()
    total = _total(expression, name)
    if op not in OPERATORS:
        raise GateError(f"--fail-on {expression!r}: unknown operator {op!r} (use one of > >= < <= == !=)")
    if not value:
        raise GateError(f"--fail-on {expression!r}: no value after {op!r}")
    return Gate(expression.strip(), total, op, _threshold(expression, total, value))


def parse_gates(expressions: Iterable[str] | None) -> list[Gate]:
    return [parse_gate(expression) for expression in expressions or ()]


def _total(expression: str, name: str) -> Total:
    key = SHORT_NAMES.get(name.lower(), name.lower())
    if key not in BY_KEY:
        raise GateError(
            f"--fail-on {expression!r}: unknown total {name!r} (known: {_NAMES}; short forms: "
            f"{', '.join(f'{short}={key}' for short, key in SHORT_NAMES.items())})"
        )
    return BY_KEY[key]


def _threshold(expression: str, total: Total, value: str) -> int | float:
    where = f"--fail-on {expression!r}"
    if value.endswith("%") and total.unit != "percent":
        raise GateError(
            f"{where}: '%' is only for percent totals ({_percent_keys()}); {total.key} is in {_unit_name(total)}"
        )
    if total.unit == "bytes":
        sign, size = (value[0], value[1:]) if value.startswith(("-", "+")) else ("", value)
        if sign and total.key not in SIGNED:
            raise GateError(f"{where}: a size has no sign, got {value!r} ({total.key} is never negative)")
        try:
            size_bytes = parse_bytes(size)
        except ValueError as exc:
            raise GateError(f"{where}: {exc}") from None
        return -size_bytes if sign == "-" else size_bytes
    number = value[:-1].rstrip() if total.unit == "percent" and value.endswith("%") else value
    if total.unit == "ratio" and number.lower().endswith("x"):
        number = number[:-1].rstrip()
    if not _NUMBER.fullmatch(number):
        raise GateError(f"{where}: {value!r} is not a number; {total.key} is in {_unit_name(total)}")
    try:
        parsed = Decimal(number)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
        raise GateError(f"{where}: {value!r} is not a number") from None
    if total.unit == "count":
        if parsed != parsed.to_integral_value():
            raise GateError(f"{where}: {total.key} is a count; {value!r} is not a whole number")
        return int(parsed)
    return float(parsed)


def _unit_name(total: Total) -> str:
    return {"bytes": "bytes", "count": "a count", "percent": "percent", "ratio": "a ratio"}[total.unit]


def _percent_keys() -> str:
    return ", ".join(total.key for total in BY_KEY.values() if total.unit == "percent")


def check_available(gates: Sequence[Gate], *, artifacts: bool, history: bool) -> None:
    """Refuse, before any request, a gate on a total this audit cannot compute: supply-chain totals
    without artifact classification, growth without a previous audit to compare with."""
    have = {ARTIFACTS: artifacts, HISTORY: history}
    for gate in gates:
        needs = gate.total.needs
        if needs is not None and not have.get(needs, True):
            raise GateError(f"--fail-on {gate.expression!r}: {gate.total.key} needs {needs}, which this audit lacks")


def evaluate(gates: Sequence[Gate], summary: Mapping[str, Any]) -> list[GateResult]:
    """Each gate against the audit's totals; a total the audit did not compute gives an undecided result."""
    results = []
    for gate in gates:
        value = summary.get(gate.total.key)
        results.append(GateResult(gate, value, value is not None and gate.holds(value), _why_not(gate, summary)))
    return results


def _why_not(gate: Gate, summary: Mapping[str, Any]) -> str | None:
    """Why a total is missing though the audit had what it needs: growth when no repository could be compared
    (``growth_unknown``), or growth in percent after a previous audit that stored nothing (``build_summary``
    then gives ``growth_bytes`` alone). The gate stays undecided:
    no percentage of 0 bytes is true or false, and summary.json holds no infinity."""
    if gate.total.key in ("growth_percent", "growth_bytes") and summary.get("growth_unknown"):
        return str(summary["growth_unknown"])
    if gate.total.key == "growth_percent" and "growth_percent" not in summary and "growth_bytes" in summary:
        return (
            "the previous audit stored 0 bytes, so growth in percent is undefined "
            f"(growth_bytes is {summary['growth_bytes']:,}; gate on it instead, e.g. 'growth_bytes>1GB')"
        )
    return None


def undecided(results: Sequence[GateResult]) -> GateError | None:
    """A GateError naming every gate the audit could not decide, or None when all were decided."""
    missing = [result.describe() for result in results if not result.decided]
    return GateError("--fail-on cannot be decided: " + "; ".join(missing)) if missing else None
