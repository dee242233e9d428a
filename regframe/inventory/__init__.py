"""Crawls a registry through the client and builds DataFrames; owns the digest cache."""

from .cache import DigestCache
from .cleanup import apply_cleanup
from .inventory import Inventory

__all__ = ["DigestCache", "Inventory", "apply_cleanup"]
