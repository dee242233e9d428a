"""Test harness shipped with regframe: real local registries, synthetic images, a token server, TLS, faults.

- ``launcher``: :func:`local_registry` runs Debian's ``docker-registry`` (anonymous, htpasswd, token, TLS).
- ``layers``, ``images``, ``fleets``: deterministic layers, images and indexes, and whole-registry plans.
- ``seeding``: :func:`push_image`, :func:`seed` and :func:`seeded_registry` push them with the regframe client.
- ``tls`` and ``tokenserver``: throw-away certificates and a JWT token server (need ``cryptography``).
- ``faultproxy``: faults in front of a real registry (its ``Rule`` is ``faultproxy.Rule``; the ``Rule``
  here is the token server's).

The TLS, token-server and fault-proxy parts load on first use, so an anonymous ``local_registry()``
needs neither ``cryptography`` nor ``bcrypt`` (htpasswd registries need ``bcrypt``), only Debian's
``docker-registry``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import fleets, images, launcher, layers, seeding
from .fleets import Fleet, FleetSpec, make_fleet
from .images import build_image, build_index
from .launcher import LocalRegistry, local_registry
from .layers import layer
from .seeding import push_image, seed, seeded_registry

if TYPE_CHECKING:
    from . import faultproxy, tls, tokenserver
    from .tls import CertificateAuthority, TLSFiles, issue_server_certificate, make_ca, write_tls_files
    from .tokenserver import (
        CATALOG,
        AccessRules,
        IssuedToken,
        Rule,
        Scope,
        TokenServer,
        default_access_rules,
        grant,
        libtrust_key_id,
    )

_LAZY_MODULES = ("faultproxy", "tls", "tokenserver")
_LAZY_NAMES = {
    **dict.fromkeys(
        ["CertificateAuthority", "TLSFiles", "issue_server_certificate", "make_ca", "write_tls_files"], "tls"
    ),
    **dict.fromkeys(
        [
            "CATALOG",
            "AccessRules",
            "IssuedToken",
            "Rule",
            "Scope",
            "TokenServer",
            "default_access_rules",
            "grant",
            "libtrust_key_id",
        ],
        "tokenserver",
    ),
}


def __getattr__(name: str) -> Any:
    """Import the parts that need ``cryptography`` (and the fault proxy) on first use."""
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_MODULES, *_LAZY_NAMES})


__all__ = [
    "CATALOG",
    "AccessRules",
    "CertificateAuthority",
    "Fleet",
    "FleetSpec",
    "IssuedToken",
    "LocalRegistry",
    "Rule",
    "Scope",
    "TLSFiles",
    "TokenServer",
    "build_image",
    "build_index",
    "default_access_rules",
    "faultproxy",
    "fleets",
    "grant",
    "images",
    "issue_server_certificate",
    "launcher",
    "layer",
    "layers",
    "libtrust_key_id",
    "local_registry",
    "make_ca",
    "make_fleet",
    "push_image",
    "seed",
    "seeded_registry",
    "seeding",
    "tls",
    "tokenserver",
    "write_tls_files",
]
