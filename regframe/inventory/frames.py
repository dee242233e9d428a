"""Turn a crawl's record into the four frames, with pandas' compact types.

Repeated names and digests become categoricals (five times smaller and three times faster to
group than Python strings), sizes ``Int64``, dates ``datetime64[ns, UTC]``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from pandas.api.typing import NaTType

from .crawl import CrawlResult

CATALOG_COLUMNS = ["repository", "namespace", "name", "tag_count"]
TAG_COLUMNS = ["repository", "tag", "digest", "media_type", "is_index"]
MANIFEST_COLUMNS = [
    "repository",
    "tag",
    "digest",
    "manifest_digest",
    "platform",
    "os",
    "architecture",
    "variant",
    "config_digest",
    "created",
    "layer_count",
    "size",
    "labels",
]
LAYER_COLUMNS = ["repository", "tag", "manifest_digest", "platform", "position", "layer_digest", "size", "media_type"]
ERROR_COLUMNS = ["repository", "tag", "stage", "error"]

CATEGORICAL = {
    "repository",
    "namespace",
    "name",
    "tag",
    "digest",
    "media_type",
    "manifest_digest",
    "platform",
    "os",
    "architecture",
    "variant",
    "config_digest",
    "layer_digest",
    "stage",
}
INTEGER = {"tag_count", "layer_count", "size", "position"}

# Reproducible builds write 1970-01-01 or 1980-01-01; such dates say nothing about age.
EARLIEST_REAL_DATE = pd.Timestamp("1990-01-01", tz="UTC")


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    for column in frame.columns:
        if column in CATEGORICAL:
            frame[column] = frame[column].astype("category")
        elif column in INTEGER:
            frame[column] = frame[column].astype("Int64")
        elif column == "error":
            frame[column] = frame[column].astype("str")
        elif column == "is_index":
            frame[column] = frame[column].astype(bool)
        elif column == "created":
            frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[ns, UTC]")
    return frame


def parse_created(value: object, now: pd.Timestamp) -> pd.Timestamp | NaTType:
    """A config's ``created`` as UTC, or NaT when missing, unparseable or obviously fake."""
    if not value or not isinstance(value, str):
        return pd.NaT
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return pd.NaT
    if stamp is pd.NaT:
        return pd.NaT
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if stamp < EARLIEST_REAL_DATE or stamp > now + pd.Timedelta(days=1):
        return pd.NaT
    return stamp


def platform_string(os_: str | None, arch: str | None, variant: str | None) -> str:
    parts = [os_ or "unknown", arch or "unknown"] + ([variant] if variant else [])
    return "/".join(parts)


def build_frames(result: CrawlResult, now: pd.Timestamp | None = None) -> dict[str, pd.DataFrame]:
    now = now or pd.Timestamp.now(tz="UTC")
    catalog_rows = []
    for repository, count in sorted(result.repositories.items()):
        namespace, _, name = repository.rpartition("/")
        catalog_rows.append((repository, namespace, name, count))

    tag_rows, manifest_rows, layer_rows = [], [], []
    manifests, configs = result.manifests, result.configs
    for repository, tag, digest in sorted(result.tag_refs):
        top = manifests.get(digest)
        if top is None:
            continue
        is_index = bool(top["children"])
        tag_rows.append((repository, tag, digest, top["media_type"], is_index))
        images: list[tuple[str, dict[str, Any], tuple[str | None, str | None, str | None] | None]]
        if is_index:
            images = []
            for child_digest, _media_type, os_, arch, variant in top["children"]:
                child = manifests.get(child_digest)
                if child is not None and not child["children"]:
                    images.append((child_digest, child, (os_, arch, variant)))
        else:
            images = [(digest, top, None)]
        for manifest_digest, image, declared in images:
            config_digest, config_size = image["config"] or (None, 0)
            config = (configs.get(config_digest) if config_digest else None) or {}
            os_, arch, variant = declared or (config.get("os"), config.get("architecture"), config.get("variant"))
            platform = platform_string(os_, arch, variant)
            layers = image["layers"]
            manifest_rows.append(
                (
                    repository,
                    tag,
                    digest,
                    manifest_digest,
                    platform,
                    os_,
                    arch,
                    variant,
                    config_digest,
                    parse_created(config.get("created"), now),
                    len(layers),
                    config_size + sum(size for _, size, _ in layers),
                    config.get("labels") or {},
                )
            )
            for position, (layer_digest, size, media_type) in enumerate(layers):
                layer_rows.append(
                    (repository, tag, manifest_digest, platform, position, layer_digest, size, media_type)
                )

    return {
        "catalog": typed(pd.DataFrame(catalog_rows, columns=CATALOG_COLUMNS)),
        "tags": typed(pd.DataFrame(tag_rows, columns=TAG_COLUMNS)),
        "manifests": typed(pd.DataFrame(manifest_rows, columns=MANIFEST_COLUMNS)),
        "layers": typed(pd.DataFrame(layer_rows, columns=LAYER_COLUMNS)),
        "errors": typed(pd.DataFrame(result.errors, columns=ERROR_COLUMNS)),
    }
