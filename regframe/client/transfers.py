"""Moving images: pull to an OCI layout, push from one, tag, and copy between registries.

Order is what keeps data safe: every blob is verified and in place before the manifest that
references it, and the tag's manifest goes last, so a tag never points at an incomplete image.
Accessories (signatures, SBOMs, attestations: ``referrers.referrers``) follow their image, each with
its manifest last, so none ever names a subject the destination does not hold yet.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from . import errors as E
from . import mediatypes as MT
from . import reads, writes
from . import referrers as refs
from .arguments import check_flag, check_progress
from .core import ClientCore
from .digests import verify_chunks
from .layout import REF_NAME, ImageLayout, ref_name
from .models import Descriptor, Manifest, manifest_digest, media_type_of
from .reference import Platform, parse_platform, validate_digest, validate_tag

Progress = Callable[[int, int], None]


@dataclass
class _Meter:
    """Bytes done / total across all blobs of one operation, for a progress callback."""

    total: int
    callback: Progress | None
    done: int = 0

    def add(self, n: int) -> None:
        self.done += n
        if self.callback:
            self.callback(self.done, self.total)

    def chunk_hook(self) -> Progress:
        last = [0]

        def hook(read: int, _total: int) -> None:
            self.add(read - last[0])
            last[0] = read

        return hook


def _blob_size(descriptor: Descriptor) -> int:
    return int(descriptor.get("size") or 0)


def _digest(manifest: Manifest) -> str:
    """The digest of a manifest read or parsed here (always set then), checked."""
    return validate_digest(manifest.digest)


# -- pull ----------------------------------------------------------------------------------------


def pull(
    core: ClientCore,
    repo: str,
    tag: str,
    dir: str | os.PathLike[str],
    platform: str | None = None,
    *,
    progress: Progress | None = None,
    referrers: bool = False,
) -> Manifest:
    """Write the image to ``dir`` as an OCI image layout; ``{}`` when it does not exist.

    Blobs already present and verified are skipped; each blob is read no further than the size its
    descriptor declares, sha-checked and renamed into place. A symbolic link planted in the layout
    (index.json, oci-layout, blobs/) is refused with OSError; the index goes last, so a failure
    leaves no tag.

    With ``referrers=True`` the accessories of every manifest written (an index and its children, or
    the one platform chosen) follow, and theirs in turn: each is listed in index.json, under its cosign
    tag name when it has one and without a name otherwise, as oras lists referrers in a layout."""
    repository = core.repo(repo)
    validate_tag(tag) if ":" not in tag else validate_digest(tag)
    check_flag("referrers", referrers)
    check_progress(progress)
    wanted = parse_platform(platform) if platform is not None else None
    layout = ImageLayout(dir)
    layout.check()
    manifest = reads.manifest(core, repository, tag)
    if not manifest:
        return manifest
    if manifest.is_schema1:
        raise E.RegistryProtocolError(f"{repository}:{tag} is a schema1 image, which an OCI layout cannot hold")
    images = [manifest]
    top = manifest
    chosen: dict[str, Any] | None = None
    if manifest.is_index:
        children = manifest.children
        if wanted is not None:
            chosen = reads.platform_child(core, manifest, wanted)
            children = [chosen]
        images = [reads.child_manifest(core, manifest, child) for child in children]
        if wanted is not None:
            top = images[0]
    elif wanted is not None:
        reads.platform_child(core, manifest, wanted)  # a single image of another platform is not that platform
    blobs = {d["digest"]: d for image in images for d in image.blob_descriptors()}
    meter = _Meter(sum(_blob_size(d) for d in blobs.values()), progress)
    for digest, descriptor in blobs.items():
        if layout.has_verified_blob(digest, descriptor.get("size")):
            meter.add(_blob_size(descriptor))
            continue
        _blob_into_layout(core, repository, layout, digest, declared_size(core, repository, descriptor), meter)
    for image in images:
        if image.is_index:
            _write_tree(core, repository, layout, image)  # a nested index: its entries first
        else:
            layout.write_bytes(_digest(image), image.raw)
    if top is manifest and manifest.is_index:
        layout.write_bytes(_digest(manifest), manifest.raw)
    descriptor = {"mediaType": top.media_type, "digest": top.digest, "size": len(top.raw)}
    if chosen is not None and (platform_found := _platform_of(core, chosen, images[0])):
        descriptor["platform"] = platform_found
    layout.tag(descriptor, tag if ":" not in tag else _digest(top))
    if referrers:
        subjects = [_digest(top)] + ([_digest(image) for image in images] if top is manifest else [])
        entries = []
        for found, accessory in _accessories(core, repository, subjects):
            _write_tree(core, repository, layout, accessory)
            entries.append(_layout_entry(found, accessory))
        _list_in_layout(layout, entries)
    return top


def _again_if_cut_short(core: ClientCore, transfer: Callable[[], object]) -> None:
    """``transfer()``, run again (within the client's ``retries``) when the connection cut its blob short: a
    broken read is retried like any other, and only a blob that never arrives whole fails the transfer."""
    attempt = 0
    while True:
        try:
            transfer()
            return
        except E.DigestMismatchError as exc:
            if not exc.cut_short or attempt >= core.transport.retries:
                raise
            attempt += 1


def _blob_into_layout(
    core: ClientCore, repository: str, layout: ImageLayout, digest: str, size: int, meter: _Meter | None = None
) -> None:
    def transfer() -> None:
        with reads.open_blob(core, repository, digest, size=size) as stream:
            layout.write_blob(digest, stream.chunks(meter.chunk_hook() if meter is not None else None))

    _again_if_cut_short(core, transfer)


def _stream_blob(
    source: ClientCore,
    repository: str,
    destination: ClientCore,
    target: str,
    digest: str,
    size: int,
    meter: _Meter | None = None,
) -> None:
    with reads.open_blob(source, repository, digest, size=size) as stream:
        writes.put_stream(destination, target, digest, stream.chunks(meter.chunk_hook() if meter else None), size)


def _write_tree(core: ClientCore, repository: str, layout: ImageLayout, manifest: Manifest) -> None:
    """A manifest into the layout after its blobs (an index after each child's)."""
    if manifest.is_index:
        for child in manifest.children:
            _write_tree(core, repository, layout, reads.child_manifest(core, manifest, child))
    else:
        for descriptor in manifest.blob_descriptors():
            digest = validate_digest(descriptor.get("digest"))
            if layout.has_verified_blob(digest, descriptor.get("size")):
                continue
            _blob_into_layout(core, repository, layout, digest, declared_size(core, repository, descriptor))
    layout.write_bytes(_digest(manifest), manifest.raw)


def _layout_entry(found: refs.Referrer, manifest: Manifest) -> dict[str, Any]:
    entry: dict[str, Any] = {"mediaType": manifest.media_type, "digest": manifest.digest, "size": manifest.size}
    if found.get("artifactType"):
        entry["artifactType"] = found["artifactType"]
    if found.get("tag"):
        entry["annotations"] = {REF_NAME: found["tag"]}
    return entry


def _list_in_layout(layout: ImageLayout, entries: list[dict[str, Any]]) -> None:
    """Add entries to index.json in one atomic write: a named one replaces the entry of that name, an
    unnamed one is added unless its digest is listed without a name already."""
    if not entries:
        return

    def add(listed: list[Any]) -> list[Any]:
        for entry in entries:
            name = ref_name(entry)
            if name is not None:
                listed = [m for m in listed if ref_name(m) != name]
            elif any(
                isinstance(m, dict) and m.get("digest") == entry["digest"] and ref_name(m) is None for m in listed
            ):
                continue
            listed.append(entry)
        return listed

    layout.update_index(add)


# -- push -------------------------------------------------------------------------------------------


def push(
    core: ClientCore,
    manifest: Manifest | dict[str, Any] | bytes | None,
    dir: str | os.PathLike[str],
    repo: str,
    tag: str,
    *,
    mount_from: Iterable[str] = (),
    chunk_size: int | None = None,
    progress: Progress | None = None,
) -> str:
    """Upload what the manifest references from ``dir``, then the manifest's exact bytes under ``tag``.

    Blobs the registry has are skipped, blobs in a ``mount_from`` repository are mounted. Every
    blob is accounted for before any upload: MissingLayerError names the first one that is neither
    local nor remote. Returns the manifest digest."""
    repository = core.repo(repo)
    validate_tag(tag)
    check_progress(progress)
    layout = ImageLayout(dir)
    sources = _mount_sources(core, mount_from)
    top = _local_manifest(core, manifest, layout, tag)
    below = _local_tree(core, layout, top)
    images = [m for m in (*below, top) if not m.is_index]
    plan = _plan_blobs(core, repository, images, layout, sources)
    meter = _Meter(sum(size for _, size, _, _ in plan), progress)
    for digest, size, source, local in plan:
        if source != "local" and _mount(core, repository, digest, source):
            meter.add(size)
            continue
        if not local:
            raise E.MissingLayerError(f"blob {digest} could not be mounted from {source}", digest=digest)
        # Local, or a mount the registry declined (it may answer a mount with a plain upload session).
        chunks = verify_chunks(layout.iter_blob(digest, size), digest)
        writes.put_stream(
            core, repository, digest, _counting(chunks, meter), size, chunk_size or writes.DEFAULT_CHUNK_SIZE
        )
    for inner in below:
        writes.put_manifest(core, repository, _digest(inner), inner.raw, media_type_of(inner))
    return writes.put_manifest(core, repository, tag, top.raw, media_type_of(top))


def _mount_sources(core: ClientCore, mount_from: object) -> tuple[str, ...]:
    """``push``'s ``mount_from``: one repository name or an iterable of them (``()`` for none), each checked
    before any request."""
    if isinstance(mount_from, str):
        return (core.repo(mount_from),)
    if not isinstance(mount_from, Iterable) or isinstance(mount_from, (bytes, bytearray)):
        raise ValueError(
            f"mount_from must be a repository name or a list of them (() for none), not {mount_from!r:.80}"
        )
    return tuple(core.repo(name) for name in mount_from)


def _local_tree(core: ClientCore, layout: ImageLayout, top: Manifest) -> list[Manifest]:
    """Every manifest under ``top`` in the layout, each after its own children (the order they are pushed
    in, manifest last), down an index of indexes as ``pull`` writes it."""
    found: list[Manifest] = []
    for child in top.children:
        inner = _local_manifest(core, _local_bytes(layout, child), layout, None)
        if inner.is_index:
            found += _local_tree(core, layout, inner)
        found.append(inner)
    return found


def _local_manifest(
    core: ClientCore, manifest: Manifest | dict[str, Any] | bytes | None, layout: ImageLayout, tag: str | None
) -> Manifest:
    if manifest is None:
        return _local_manifest(core, _local_bytes(layout, layout.resolve(tag)), layout, None)
    if isinstance(manifest, Manifest) and manifest.raw:
        return manifest
    if isinstance(manifest, (bytes, bytearray)):
        parsed = Manifest.parse(bytes(manifest))
    elif isinstance(manifest, dict):
        # A plain dict has no original bytes; serialise once and keep those bytes.
        raw = json.dumps(manifest, separators=(",", ":")).encode()
        parsed = Manifest.parse(raw)
    else:
        raise TypeError(f"manifest must be a Manifest, dict or bytes, not {type(manifest).__name__}")
    media_type = parsed.get("mediaType") or (MT.OCI_INDEX if "manifests" in parsed else MT.OCI_MANIFEST)
    parsed.media_type = media_type
    parsed.digest = manifest_digest(parsed.raw, media_type)
    return parsed


def _plan_blobs(
    core: ClientCore, repository: str, images: list[Manifest], layout: ImageLayout, sources: tuple[str, ...]
) -> list[tuple[str, int, str, bool]]:
    """(digest, size, "local" or a repository to mount from, whether the layout holds it) for every blob not
    yet in ``repository``."""
    plan, seen = [], set()
    for image in images:
        for descriptor in image.blob_descriptors():
            digest = validate_digest(descriptor.get("digest"))
            if digest in seen:
                continue
            seen.add(digest)
            if reads.blob_exists(core, repository, digest):
                continue
            source, size = (
                next((r for r in sources if reads.blob_exists(core, r, digest)), None),
                _blob_size(descriptor),
            )
            if source is None:
                local = layout.verified_size(digest)
                if local is None:
                    raise E.MissingLayerError(
                        f"blob {digest} is neither in {layout.root} nor in {core.url}/{repository}", digest=digest
                    )
                declared = descriptor.get("size")
                if declared is not None and declared != local:
                    raise ValueError(
                        f"blob {digest} in {layout.root} is {local} bytes, but the manifest declares {declared}"
                    )
                plan.append((digest, local, "local", True))
            else:
                plan.append((digest, size, source, layout.find_blob(digest) is not None))
    return plan


def declared_size(core: ClientCore, repository: str, descriptor: Descriptor) -> int:
    """The size a descriptor declares or, where it declares none (schema1), the registry's
    Content-Length, so that no blob body is ever read without a bound."""
    size = descriptor.get("size")
    if isinstance(size, int):
        return size
    length = reads.content_length(reads.head_blob(core, repository, descriptor["digest"]))
    if length is None:
        raise E.RegistryProtocolError(
            f"blob {descriptor['digest']} in {repository}: neither its descriptor "
            "nor the registry gives its size; not read without a bound"
        )
    return length


def _mount(core: ClientCore, repository: str, digest: str, source: str) -> bool:
    location = writes.start_upload(core, repository, digest, source)
    if location is not None:
        writes.cancel_upload(core, repository, location)
    return location is None


# -- tag ----------------------------------------------------------------------------------------------


def tag(core: ClientCore, repo: str, tag: str, newrepo: str, newtag: str, *, referrers: bool = False) -> str:
    """Give an image a new name: the exact manifest bytes under ``newrepo:newtag``.

    Across repositories every blob (and each child of an index) is mounted first. With ``referrers=True``
    its accessories (and those of an index's children) follow into ``newrepo``, the fallback tag index
    kept there when the registry has no referrers API. Returns the digest, which equals the source's."""
    repository, target = core.repo(repo), core.repo(newrepo)
    validate_tag(newtag)
    check_flag("referrers", referrers)
    manifest = reads.manifest(core, repository, tag)
    if not manifest:
        raise E.NotFoundError(f"{repository}:{tag} not found", status=404)
    if target == repository:
        return writes.put_manifest(core, target, newtag, manifest.raw, media_type_of(manifest))
    digest = _copy_tree(core, repository, core, target, manifest, newtag).digest
    if referrers:
        _carry_accessories(
            core, repository, core, target, [_digest(manifest), *(c["digest"] for c in manifest.children)]
        )
    return digest


# -- copy ---------------------------------------------------------------------------------------------


def copy(
    core: ClientCore,
    repo: str,
    tag: str,
    newregistry: ClientCore,
    newrepo: str,
    newtag: str,
    platforms: Iterable[str] | None = None,
    *,
    progress: Progress | None = None,
    referrers: bool = True,
) -> str:
    """Copy an image (every platform of an index, or those in ``platforms``) to another registry.

    Blobs stream from source to destination a chunk at a time and are verified on the way; blobs
    the destination has are skipped; the manifest goes last. With ``platforms`` the destination
    gets a new index holding only those children (so its digest differs). Returns the digest.

    ``referrers`` (default True): then every accessory of the copied manifests (the index, unless
    ``platforms`` rebuilt it, and each child) follows, and theirs in turn: referrers found through the
    API or the fallback tag (pushed by digest) and cosign's tags (pushed under the same tag). Where the
    destination does not answer ``OCI-Subject`` (no referrers API), its fallback tag index is kept."""
    if not isinstance(newregistry, ClientCore):
        raise ValueError(f"newregistry must be a client (regframe.connect(url)), not {type(newregistry).__name__}")
    repository, target = core.repo(repo), newregistry.repo(newrepo)
    validate_tag(newtag)
    check_flag("referrers", referrers)
    check_progress(progress)
    wanted = _platform_list(platforms)
    manifest = reads.manifest(core, repository, tag)
    if not manifest:
        raise E.NotFoundError(f"{repository}:{tag} not found", status=404)
    top_raw, top_type = manifest.raw, media_type_of(manifest)
    children = manifest.children
    if wanted is not None and manifest.is_index:
        picked = [reads.platform_child(core, manifest, w) for w in wanted]
        # Once per entry: two wanted platforms may pick one entry, and two entries may share one image.
        children = list({json.dumps(child, sort_keys=True): child for child in picked}.values())
        top = {k: v for k, v in manifest.items()}
        top["manifests"] = children
        top_raw = json.dumps(top, indent=3).encode()
    elif wanted is not None:
        for platform in wanted:
            reads.platform_child(core, manifest, platform)  # a single image of another platform is not there
    images = [reads.child_manifest(core, manifest, c) for c in children] if manifest.is_index else [manifest]
    blobs = {d["digest"]: d for image in images for d in image.blob_descriptors()}
    missing = {
        d: declared_size(core, repository, desc)
        for d, desc in blobs.items()
        if not reads.blob_exists(newregistry, target, d)
    }
    meter = _Meter(sum(missing.values()), progress)
    for digest, size in missing.items():
        _again_if_cut_short(
            core, functools.partial(_stream_blob, core, repository, newregistry, target, digest, size, meter)
        )
    if manifest.is_index:
        for image in images:
            if image.is_index:
                _copy_tree(core, repository, newregistry, target, image, _digest(image))  # nested: entries first
            else:
                writes.put_manifest(newregistry, target, _digest(image), image.raw, media_type_of(image))
    digest = writes.put_manifest(newregistry, target, newtag, top_raw, top_type)
    if referrers:
        subjects = ([_digest(manifest)] if top_raw is manifest.raw else []) + [_digest(image) for image in images]
        _carry_accessories(core, repository, newregistry, target, subjects)
    return digest


def _platform_list(platforms: Iterable[str] | None) -> list[Platform] | None:
    """``copy``'s ``platforms``, checked before any request: a list of at least one platform (a string
    would be read as its characters; an empty list would copy an image with no platform)."""
    if platforms is None:
        return None
    if isinstance(platforms, str) or not isinstance(platforms, Iterable):
        raise ValueError(f"platforms must be a list of platforms such as ['linux/amd64'], not {platforms!r:.80}")
    wanted = [parse_platform(p) for p in platforms]
    if not wanted:
        raise ValueError("platforms is empty: give at least one platform, or None for every platform")
    return wanted


# -- accessories --------------------------------------------------------------------------------------


def _accessories(
    core: ClientCore, repository: str, subjects: Iterable[str]
) -> Iterator[tuple[refs.Referrer, Manifest]]:
    """Every accessory of ``subjects`` and, in turn, of those accessories (a signature on an SBOM), each
    once, with its manifest; one deleted since it was listed is passed over."""
    queue = list(dict.fromkeys(subjects))
    seen = set(queue)
    while queue:
        subject = queue.pop(0)
        for found in refs.referrers(core, repository, subject):
            digest = found["digest"]
            if digest in seen:
                continue
            seen.add(digest)
            manifest = reads.manifest(core, repository, digest)
            if not manifest:
                continue
            yield found, manifest
            queue.append(digest)


def _carry_accessories(
    source: ClientCore, repository: str, destination: ClientCore, target: str, subjects: Iterable[str]
) -> list[refs.Referrer]:
    """Copy the accessories of ``subjects`` (already at the destination) from ``repository`` to ``target``,
    each after its blobs and children; a referrer the destination records without ``OCI-Subject`` is
    added to its fallback tag index. Returns the accessories as ``referrers()`` described them."""
    carried = []
    for found, manifest in _accessories(source, repository, subjects):
        put = _copy_tree(source, repository, destination, target, manifest, found.get("tag") or _digest(manifest))
        subject = refs.subject_of(manifest)
        if subject is not None and put.oci_subject is None:
            writes.add_to_fallback_index(destination, target, subject, refs.describe(manifest, refs.VIA_TAG_SCHEMA))
        carried.append(found)
    return carried


def _copy_tree(
    source: ClientCore, repository: str, destination: ClientCore, target: str, manifest: Manifest, reference: str
) -> writes.ManifestPut:
    """A manifest to the destination under ``reference``, after its blobs (an index after each child)."""
    if manifest.is_index:
        for child in manifest.children:
            image = reads.child_manifest(source, manifest, child)
            _copy_tree(source, repository, destination, target, image, _digest(image))
    else:
        for descriptor in manifest.blob_descriptors():
            digest = validate_digest(descriptor.get("digest"))
            if reads.blob_exists(destination, target, digest):
                continue
            if source is destination and _mount(destination, target, digest, repository):
                continue
            size = declared_size(source, repository, descriptor)
            _again_if_cut_short(
                source, functools.partial(_stream_blob, source, repository, destination, target, digest, size)
            )
    return writes.send_manifest(destination, target, reference, manifest.raw, media_type_of(manifest))


def _local_bytes(layout: ImageLayout, descriptor: Descriptor) -> bytes:
    """A manifest from the layout, read no further than a manifest may be long and checked against the
    size its descriptor declares."""
    digest = validate_digest(descriptor.get("digest"))
    raw = layout.read_blob(digest, max_size=MT.MAX_MANIFEST_BYTES)
    declared = descriptor.get("size")
    if declared is not None and declared != len(raw):
        raise ValueError(
            f"manifest {digest} in {layout.root} is {len(raw)} bytes, but its descriptor declares {declared}"
        )
    return raw


def _counting(chunks: Iterable[bytes], meter: _Meter) -> Iterator[bytes]:
    for chunk in chunks:
        meter.add(len(chunk))
        yield chunk


def _platform_of(core: ClientCore, entry: dict[str, Any], image: Manifest) -> dict[str, str]:
    """The index entry's platform, or the one its image's config gives when the entry has none."""
    declared = entry.get("platform")
    if isinstance(declared, dict):
        return declared
    found = reads.image_platform(core, image)
    if found is None:
        return {}
    platform = {"os": found.os, "architecture": found.architecture}
    return platform | ({"variant": found.variant} if found.variant else {})
