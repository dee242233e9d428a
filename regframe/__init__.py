"""regframe: container registries as pandas DataFrames, for notebooks and audits."""

from .client.errors import *  # noqa: F401,F403
from .client.errors import __all__ as _errors
from .client.models import Blob, Manifest
from .client.reference import parse_platform, parse_reference
from .inventory import DigestCache, Inventory
from .registry import Registry, connect
from . import accessor as _accessor  # noqa: F401  (registers df.registry)

__version__ = "0.1.0"
__all__ = [*_errors, "Blob", "DigestCache", "Inventory", "Manifest", "Registry", "connect",
           "parse_platform", "parse_reference"]
