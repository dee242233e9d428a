"""Pushing built images and whole fleets into a registry, through the regframe client.

The client (``regframe.connect(url, ...)``) does the HTTP, the authentication and the error mapping;
this module decides only what goes up and in which order: blobs first, skipping those the
repository already has, then index children by digest, then the tag, so no manifest ever names
content the registry does not hold yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from regframe.client.reference import validate_repository, validate_tag

from .images import Tagged, distinct
from .layers import Blob

if TYPE_CHECKING:
    from .fleets import Content, Fleet
    from .launcher import LocalRegistry

__all__ = ["PushTarget", "SeedResult", "push_image", "seed", "seeded_registry"]


class PushTarget(Protocol):
    """The three client calls seeding makes; a connection from ``regframe.connect()`` has them."""

    def blob_exists(self, repo: str, digest: str, /) -> bool: ...

    def upload_blob(self, repo: str, data: bytes, digest: str, /) -> object: ...

    def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str, /) -> str: ...


@dataclass(frozen=True)
class SeedResult:
    """What a push did: blobs the registry already had are skipped, not uploaded again."""

    blobs_uploaded: int = 0
    blobs_skipped: int = 0
    bytes_uploaded: int = 0
    manifests_put: int = 0

    def __add__(self, other: SeedResult) -> SeedResult:
        return SeedResult(
            self.blobs_uploaded + other.blobs_uploaded,
            self.blobs_skipped + other.blobs_skipped,
            self.bytes_uploaded + other.bytes_uploaded,
            self.manifests_put + other.manifests_put,
        )


def _ensure_blob(target: PushTarget, repository: str, blob: Blob) -> SeedResult:
    if target.blob_exists(repository, blob.digest):
        return SeedResult(blobs_skipped=1)
    target.upload_blob(repository, blob.data, blob.digest)
    return SeedResult(blobs_uploaded=1, bytes_uploaded=blob.size)


def _put(target: PushTarget, repository: str, reference: str, manifest: Content) -> SeedResult:
    target.put_manifest(repository, reference, manifest.manifest_raw, manifest.media_type)
    return SeedResult(manifests_put=1)


def push_image(target: PushTarget, repository: str, tag: str, image: Tagged) -> SeedResult:
    """Push one image or index under ``repository:tag`` with a regframe client, the tag's manifest last.

    Blobs the repository already has are skipped; index children are put by digest before the index.
    """
    validate_repository(repository)
    validate_tag(tag)
    result = SeedResult()
    for blob in image.blobs():
        result += _ensure_blob(target, repository, blob)
    for child in distinct(image.children):
        result += _put(target, repository, child.digest, child)
    return result + _put(target, repository, tag, image)


_Job = TypeVar("_Job")


def _run_all(pool: ThreadPoolExecutor, work: Callable[[_Job], SeedResult], jobs: list[_Job]) -> SeedResult:
    futures = [pool.submit(work, job) for job in jobs]
    total = SeedResult()
    try:
        for future in futures:
            total += future.result()
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    return total


def seed(target: PushTarget, fleet: Fleet, workers: int = 8) -> SeedResult:
    """Push a whole fleet with a regframe client and ``workers`` threads, in three waves so no
    manifest precedes its content.

    Blobs of every repository go first (skipping those already there, so seeding twice is cheap),
    then index children by digest (platform images, attestation manifests, the untagged referrers a
    fallback index lists), then every tag, accessory tags included. The client's one pooled session is
    shared by the threads. The registry spends milliseconds of CPU on each upload and manifest PUT
    (a missing-blob HEAD is nearly free), so the number of blobs, not their bytes, sets the time.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    blob_jobs = [(repository, blob) for repository in fleet.repositories for blob in fleet.repository_blobs(repository)]
    blob_jobs.sort(key=lambda job: -job[1].size)
    child_jobs = [
        (repository, child.digest, child)
        for repository in fleet.repositories
        for child in fleet.repository_children(repository)
    ]
    tag_jobs = [*fleet.items(), *fleet.accessory_items()]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="regframe-seed") as pool:
        result = _run_all(pool, lambda job: _ensure_blob(target, *job), blob_jobs)
        result += _run_all(pool, lambda job: _put(target, *job), child_jobs)
        result += _run_all(pool, lambda job: _put(target, *job), tag_jobs)
    return result


@contextmanager
def seeded_registry(
    fleet: Fleet, *, workers: int = 8, read_timeout: float = 5, **registry_options: Any
) -> Iterator[LocalRegistry]:
    """A harness registry (``local_registry(**registry_options)``) holding ``fleet``; yields the
    ``LocalRegistry``. Seeds anonymously, so for registries without auth, as tests, demos and
    notebooks use them. ``read_timeout`` is the seeding client's: raise it for fleets seeded on a busy
    machine."""
    from regframe import connect

    from .launcher import local_registry

    with local_registry(**registry_options) as reg:
        with connect(reg.url, ca_bundle=reg.ca_path, docker_config=False, read_timeout=read_timeout) as client:
            seed(client, fleet, workers=workers)
        yield reg
