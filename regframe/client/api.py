"""``RegistryClient``: the docker_registry2 API in Python, gathered from the operation modules.

Each method is a function of the client core defined in the module for its kind of operation, so a
reader opens ``reads``, ``writes``, ``deletes``, ``referrers`` or ``transfers`` to see what a method does."""

from __future__ import annotations

from . import deletes, reads, transfers, writes
from . import referrers as accessories
from .core import ClientCore


class RegistryClient(ClientCore):
    """A connection to one registry: reads, writes and deletes, credentials kept out of sight."""

    catalog = reads.catalog
    search = reads.search
    tags = reads.tags
    manifest = reads.manifest
    manifest_exists = reads.manifest_exists
    digest = reads.digest
    manifest_sum = reads.manifest_sum
    blob_size = reads.blob_size
    blob_exists = reads.blob_exists
    blob = reads.blob
    open_blob = reads.open_blob

    referrers = accessories.referrers
    supports_referrers = accessories.supports_referrers

    upload_blob = writes.upload_blob
    put_stream = writes.put_stream
    put_manifest = writes.put_manifest
    delete_manifest = writes.delete_manifest

    rmtag = deletes.rmtag
    rmrepo = deletes.rmrepo

    pull = transfers.pull
    push = transfers.push
    tag = transfers.tag
    copy = transfers.copy
