"""Formatting shared by every layer (no dependencies)."""


def human_bytes(n: float) -> str:
    """Decimal units, as registries and ``docker images`` report sizes: ``1.5 MB``."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"
