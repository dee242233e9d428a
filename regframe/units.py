"""Byte sizes as people read and write them; the bottom of the package, importable from every layer.

Sizes print in decimal units (KB = 1000 bytes), as registries and ``docker images`` report them.
Parsing also accepts binary units (KiB = 1024 bytes), since that is how limits are often written.
"""

from __future__ import annotations

import math
import re
import sys
from decimal import ROUND_HALF_UP, Decimal
from numbers import Real
from typing import SupportsFloat

__all__ = ["format_bytes", "parse_bytes"]

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB", "EB")
_STEP = 1000

_FACTORS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "p": 1000**5,
    "pb": 1000**5,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
    "pi": 1024**5,
    "pib": 1024**5,
}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*([A-Za-z]*)\s*")


def format_bytes(n: SupportsFloat | None, precision: int = 1) -> str:
    """Human-readable size in decimal units, e.g. ``format_bytes(1_500_000) == "1.5 MB"``.

    Whole bytes are shown without decimals; a value that rounds up to 1000 of a unit moves to the
    next unit ("1.0 MB", never "1000.0 KB"). Missing values (None, NaN, ``pd.NA``) give "n/a";
    anything else that is not a real number (strings, bools) raises TypeError.
    """
    if n is None or _is_pandas_na(n):
        return "n/a"
    if isinstance(n, bool) or not isinstance(n, Real):
        raise TypeError(f"format_bytes expects a number of bytes, got {type(n).__name__}: {n!r}")
    if isinstance(precision, bool) or not isinstance(precision, int) or precision < 0:
        raise ValueError(f"format_bytes precision must be an int of 0 or more, got {precision!r}")
    value = float(n)
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "-inf B" if value < 0 else "inf B"
    sign = "-" if value < 0 else ""
    value = abs(value)
    exponent, scaled = 0, value
    while exponent < len(_UNITS) - 1 and round(scaled, precision if exponent else 0) >= _STEP:
        exponent += 1
        scaled = value / _STEP**exponent
    if exponent == 0:
        return f"{sign}{round(scaled):d} B"
    return f"{sign}{scaled:.{precision}f} {_UNITS[exponent]}"


def parse_bytes(text: str) -> int:
    """Bytes in a size such as ``"5GB"``, ``"1.5 MiB"``, ``"300k"`` or ``"1024"``.

    Decimal units ``k``/``kB``, ``M``/``MB``, ``G``/``GB``, ``T``/``TB``, ``P``/``PB`` are powers of 1000;
    binary units ``Ki``/``KiB`` ... ``Pi``/``PiB`` are powers of 1024; ``B`` or no unit means bytes.
    Unit letters are case-insensitive (``gb`` is ``GB``; a lower-case ``b`` is bytes, never bits).
    The number is unsigned, with an optional decimal fraction; the result rounds to the nearest
    whole byte. Anything else raises ValueError naming the text.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_bytes expects a string such as '5GB', got {type(text).__name__}: {text!r}")
    match = _SIZE.fullmatch(text)
    factor = _FACTORS.get(match.group(2).lower()) if match else None
    if match is None or factor is None:
        raise ValueError(
            f"not a byte size: {text!r} (expected a number and an optional unit: B, kB, MB, GB, TB, PB, "
            "KiB, MiB, GiB, TiB, PiB; e.g. '5GB', '1.5 MiB', '300k')"
        )
    return int((Decimal(match.group(1)) * factor).to_integral_value(rounding=ROUND_HALF_UP))


def _is_pandas_na(value: object) -> bool:
    """``pd.NA`` without importing pandas: if pandas is not loaded, no value can be its NA."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and value is getattr(pandas, "NA", None)
