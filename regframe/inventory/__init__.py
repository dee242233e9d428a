"""Crawls a registry through the client and builds DataFrames; owns the digest cache."""

from .cache import DigestCache
from .catalog import catalog_frame
from .inventory import Inventory

__all__ = ["DigestCache", "Inventory", "catalog_frame"]
