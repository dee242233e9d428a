"""Registry analysis on DataFrames: storage, sharing, stale tags. Pure pandas, no network."""

from .duration import format_duration, parse_duration
from .reclaim import reclaimable_by_repository, reclaimable_bytes
from .sharing import shared_layers, sharing_matrix
from .stale import cleanup_plan, stale_tags
from .storage import storage_usage

__all__ = [
    "cleanup_plan",
    "format_duration",
    "parse_duration",
    "reclaimable_by_repository",
    "reclaimable_bytes",
    "shared_layers",
    "sharing_matrix",
    "stale_tags",
    "storage_usage",
]
