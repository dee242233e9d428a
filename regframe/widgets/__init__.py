"""Notebook widgets (ipywidgets 8) over registries and inventories.

``explore`` browses repositories and tags, ``storage_dashboard`` shows where the bytes are,
``stale_tags`` tunes cleanup rules live and can delete with confirmation, and ``crawl`` runs an
inventory in the background with a Stop button. Each returns a displayable widget whose parts
are attributes, so they can also be driven from code.
"""

from .crawl_panel import CrawlWidget, crawl
from .explore import Explorer, explore
from .stale_panel import StaleTagsWidget, stale_tags
from .storage_panel import StorageDashboard, storage_dashboard

__all__ = [
    "CrawlWidget",
    "Explorer",
    "StaleTagsWidget",
    "StorageDashboard",
    "crawl",
    "explore",
    "stale_tags",
    "storage_dashboard",
]
