"""The catalog frame alone: each repository with its tag count, without reading any manifest."""

from __future__ import annotations

import pandas as pd

from .frames import catalog_table


def catalog_frame(client) -> pd.DataFrame:
    """``inv.catalog`` without a crawl: the catalog, then every page of each repository's tag list, one
    repository at a time."""
    counts = {name: len(client.tags(name, auto_paginate=True).get("tags", [])) for name in client.catalog()}
    return catalog_table(counts)
