"""The HTTP layer: talks to registries, knows nothing of pandas."""

from .api import RegistryClient
from .errors import *  # noqa: F403
from .errors import __all__ as _errors
from .models import Blob, Manifest
from .reference import Platform, Reference, parse_platform, parse_reference

__all__ = [*_errors, "Blob", "Manifest", "Platform", "Reference", "RegistryClient", "parse_platform", "parse_reference"]
