"""The catalog frame alone: each repository with its tag count, without reading any manifest."""

from __future__ import annotations

import pandas as pd

from .crawl import CrawlResult
from .frames import build_frames


def catalog_frame(client) -> pd.DataFrame:
    """``inv.catalog`` without a crawl: one catalog listing and one tag list per repository, one at a time."""
    result = CrawlResult()
    for name in client.catalog():
        result.repositories[name] = len(client.tags(name).get("tags", []))
    return build_frames(result)["catalog"]
