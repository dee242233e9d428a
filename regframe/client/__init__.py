"""The HTTP layer: talks to registries, knows nothing of pandas."""

from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors
from .models import Blob, Manifest
from .reference import Platform, Reference, parse_platform, parse_reference
from .registry import RegistryClient, connect

__all__ = [*_errors, "Blob", "Manifest", "Platform", "Reference", "RegistryClient", "connect",
           "parse_platform", "parse_reference"]
