"""Registry analysis on DataFrames: storage, sharing, stale tags, supply-chain coverage. Pure pandas, no network."""

from .coverage import dangling_entries, supply_chain
from .duration import format_duration, parse_duration
from .reclaim import GARBAGE_COLLECTION, GARBAGE_COLLECTION_ADVICE, reclaimable_by_repository, reclaimable_bytes
from .sharing import shared_layers, sharing_matrix
from .stale import cleanup_plan, stale_tags
from .storage import storage_usage

__all__ = [
    "GARBAGE_COLLECTION",
    "GARBAGE_COLLECTION_ADVICE",
    "cleanup_plan",
    "dangling_entries",
    "format_duration",
    "parse_duration",
    "reclaimable_by_repository",
    "reclaimable_bytes",
    "shared_layers",
    "sharing_matrix",
    "stale_tags",
    "storage_usage",
    "supply_chain",
]
