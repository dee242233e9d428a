"""``RegistryClient``: the docker_registry2 API in Python."""

from __future__ import annotations

from .reads import RegistryReads
from .transfer import RegistryTransfers
from .writes import RegistryDeletes, RegistryWrites


class RegistryClient(RegistryReads, RegistryWrites, RegistryTransfers, RegistryDeletes):
    """A connection to one registry: reads, writes and deletes, credentials kept out of sight."""


def connect(url: str = "https://registry.hub.docker.com", **options) -> RegistryClient:
    """Connect and check the registry answers (and the credentials work), like ``DockerRegistry2.connect``."""
    return open_checked(RegistryClient, url, options)


def open_checked(cls, url: str, options: dict):
    """An instance of ``cls`` whose registry has answered ``/v2/``; closed again if it did not."""
    client = cls(url, **options)
    try:
        client.ping()
    except BaseException:
        client.close()
        raise
    return client
