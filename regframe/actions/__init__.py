"""Actions driven by analysis results: they change a registry, so they sit above the analysis."""

from .cleanup import apply_cleanup

__all__ = ["apply_cleanup"]
