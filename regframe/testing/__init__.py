"""Test harness shipped with regframe: real local registries, a token server and TLS material.

``images`` builds synthetic images and fleets without Docker; ``faultproxy`` puts faults in front
of a real registry (its ``Rule`` is ``faultproxy.Rule``; the ``Rule`` here is the token server's).

Needs the ``testing`` extra (``cryptography``, ``bcrypt``) and Debian's ``docker-registry``.
"""

from . import faultproxy, images
from .images import Fleet, build_image, build_index, layer, make_fleet, push_image, seed, seeded_registry
from .registry import LocalRegistry, local_registry
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

__all__ = [
    "Fleet",
    "build_image",
    "build_index",
    "faultproxy",
    "images",
    "layer",
    "make_fleet",
    "push_image",
    "seed",
    "seeded_registry",
    "CATALOG",
    "AccessRules",
    "CertificateAuthority",
    "IssuedToken",
    "LocalRegistry",
    "Rule",
    "Scope",
    "TLSFiles",
    "TokenServer",
    "default_access_rules",
    "grant",
    "issue_server_certificate",
    "libtrust_key_id",
    "local_registry",
    "make_ca",
    "write_tls_files",
]
