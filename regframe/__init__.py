"""regframe: container registries as pandas DataFrames, for notebooks and audits.

The client layer (errors, references, manifests) loads at once; the frames side (``Registry``,
``connect``, ``Inventory``, ``DigestCache``) loads pandas on first use, so ``import regframe.client``
stays free of pandas, matplotlib and ipywidgets. Loading the frames side registers ``df.registry``.
The subpackages (``regframe.plot``, ``regframe.history``, ...) load on first attribute access, so code
written after a plain ``import regframe`` works while that import stays light."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

from .client.errors import *  # noqa: F403
from .client.errors import __all__ as _errors
from .client.models import Blob, Manifest
from .client.reference import parse_platform, parse_reference

if TYPE_CHECKING:
    from .inventory import DigestCache, Inventory
    from .registry import Registry, connect

__version__ = "0.1.0"
__all__ = [
    *_errors,
    "Blob",
    "DigestCache",
    "Inventory",
    "Manifest",
    "Registry",
    "connect",
    "parse_platform",
    "parse_reference",
]

_LAZY = {
    "Registry": "regframe.registry",
    "connect": "regframe.registry",
    "Inventory": "regframe.inventory",
    "DigestCache": "regframe.inventory",
}


# Loaded when first named as ``regframe.<name>``; never by ``import *``, which would load matplotlib.
_SUBPACKAGES = (
    "actions",
    "analysis",
    "client",
    "history",
    "inventory",
    "plot",
    "policy",
    "report",
    "testing",
    "widgets",
)


def __getattr__(name: str) -> object:
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"{__name__}.{name}")
        if "pandas" in sys.modules:
            importlib.import_module("regframe.accessor")
        return module
    if name not in _LAZY:
        raise AttributeError(f"module 'regframe' has no attribute {name!r}")
    importlib.import_module("regframe.accessor")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBPACKAGES})


if "pandas" in sys.modules:
    # pandas is loaded already, so registering ``df.registry`` costs nothing.
    importlib.import_module("regframe.accessor")
