"""Storage per repository (or per kind) with shared blobs counted once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._frames import (
    STORAGE_COLUMNS,
    codes,
    distinct_pairs,
    labels,
    nested_keys,
    require_columns,
    sizes,
    stored_sizes,
    sum_by,
    text_dtype,
)

USAGE_COLUMNS = ("repository", "images", "tags", "logical_bytes", "stored_bytes", "exclusive_bytes", "shared_bytes")
# What a storage chart draws from a storage_usage frame.
USAGE_CHART_COLUMNS = ("repository", "stored_bytes", "exclusive_bytes", "shared_bytes")


def digest_sizes(digest: np.ndarray, size: np.ndarray, count: int) -> np.ndarray:
    """One size per digest code (a digest's size is the same in every manifest naming it)."""
    out = np.zeros(count, dtype=np.int64)
    known = digest >= 0
    out[digest[known]] = size[known]
    return out


BY_COLUMNS = ("repository", "kind")


def storage_usage(layers: pd.DataFrame, by: str | Sequence[str] = "repository") -> pd.DataFrame:
    """Bytes per repository (or per ``by`` group) three ways, because naive sums double-count shared blobs.

    Every blob a manifest references counts, its config included (``inv.layers`` has a row per blob with
    ``role`` config or layer): an artifact's config can be its whole payload. ``logical_bytes`` is what
    tools that add up image sizes report (every tag, every platform); ``stored_bytes`` counts each distinct
    blob of the group once; ``exclusive_bytes`` only the blobs no other group references (for repositories:
    what deleting the whole repository would free); ``shared_bytes`` the rest. ``images`` counts distinct
    (repository, manifest) pairs that are images, as the audit's images total counts only images, so the
    per-repository figures never add up past it: with a ``kind`` column, signatures, SBOMs, attestations and
    other artifacts are left out (rows of unknown kind, and frames without the column, count as images).
    ``tags`` counts distinct (repository, tag) pairs of the group, accessory tags included. ``attrs`` carry
    the registry-wide ``total_bytes`` (each distinct blob once), ``logical_bytes`` and ``dedup_ratio``
    (logical / total, 1.0 when empty).

    ``by``: ``"repository"`` (the default), ``"kind"`` (image, signature, attestation, sbom, helm-chart,
    artifact: what accessories cost), or both as a list, one row per (repository, kind). Manifests
    themselves are not counted; rows without a blob digest, and foreign or non-distributable layers (which
    clients fetch from their URLs, not from the registry), add to ``logical_bytes`` only.
    """
    keys = _group_columns(by)
    require_columns(layers, (*STORAGE_COLUMNS, *keys), "storage_usage")
    group, group_values = _group_codes(layers, keys)
    repo, _ = codes(layers["repository"])
    tag, tag_values = codes(layers["tag"])
    manifest, manifest_values = codes(layers["manifest_digest"])
    digest, digest_values = codes(layers["layer_digest"])
    size = sizes(layers["size"])
    n_group, n_digest = len(group_values), len(digest_values)

    has_group = group >= 0
    rows = np.bincount(group[has_group], minlength=n_group)
    logical = sum_by(group[has_group], size[has_group], n_group)
    repo_manifest, repo_manifest_count = nested_keys(repo, manifest, len(manifest_values))
    repo_manifest[(repo < 0) | (manifest < 0) | _accessory_rows(layers)] = -1
    images = np.bincount(distinct_pairs(group, repo_manifest, repo_manifest_count)[0], minlength=n_group)
    repo_tag, repo_tag_count = nested_keys(repo, tag, len(tag_values))
    repo_tag[(repo < 0) | (tag < 0)] = -1
    tags = np.bincount(distinct_pairs(group, repo_tag, repo_tag_count)[0], minlength=n_group)

    pair_group, pair_digest = distinct_pairs(group, digest, n_digest)
    per_digest = digest_sizes(digest, stored_sizes(layers), n_digest)
    pair_size = per_digest[pair_digest]
    stored = sum_by(pair_group, pair_size, n_group)
    groups_per_digest = np.bincount(pair_digest, minlength=n_digest)
    only_here = groups_per_digest[pair_digest] == 1
    exclusive = sum_by(pair_group[only_here], pair_size[only_here], n_group)

    present = np.flatnonzero(rows)
    columns: dict[str, Any] = {key: _labels(group_values, present, i, len(keys)) for i, key in enumerate(keys)}
    usage = pd.DataFrame(
        {
            **columns,
            "images": images[present],
            "tags": tags[present],
            "logical_bytes": logical[present],
            "stored_bytes": stored[present],
            "exclusive_bytes": exclusive[present],
            "shared_bytes": stored[present] - exclusive[present],
        },
        columns=[*keys, *USAGE_COLUMNS[1:]],
    )
    usage = usage.sort_values(["stored_bytes", *keys], ascending=[False, *[True] * len(keys)], ignore_index=True)

    total = int(per_digest[np.bincount(digest[digest >= 0], minlength=n_digest) > 0].sum())
    logical_total = int(size.sum())
    usage.attrs.update(
        total_bytes=total,
        logical_bytes=logical_total,
        dedup_ratio=float(logical_total / total) if total else 1.0,
    )
    return usage


def _accessory_rows(layers: pd.DataFrame) -> np.ndarray:
    """Rows of a known kind other than image; none without a ``kind`` column."""
    if "kind" not in layers:
        return np.zeros(len(layers), dtype=bool)
    kind = layers["kind"]
    return np.asarray(kind.notna() & (kind.astype(object) != "image"), dtype=bool)


def _group_columns(by: object) -> tuple[str, ...]:
    """``by`` checked before any work: one of BY_COLUMNS, or a list of distinct ones."""
    keys = (by,) if isinstance(by, str) else tuple(by) if isinstance(by, (list, tuple)) else None
    if not keys or len(set(keys)) != len(keys) or not all(isinstance(k, str) and k in BY_COLUMNS for k in keys):
        raise ValueError(f"by must be 'repository', 'kind' or a list of both, not {by!r}")
    return keys


def _group_codes(layers: pd.DataFrame, keys: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    """One code per row for its group (-1 where a key is missing), and the groups' values (tuples for
    several keys)."""
    if len(keys) == 1:
        return codes(layers[keys[0]])
    frame = pd.MultiIndex.from_arrays([layers[key].astype(object) for key in keys])
    found, uniques = pd.factorize(frame, use_na_sentinel=True)
    known = np.asarray(found, dtype=np.int64)
    missing = np.zeros(len(layers), dtype=bool)
    for key in keys:
        missing |= layers[key].isna().to_numpy()
    known[missing] = -1
    return known, pd.Index(uniques)


def _labels(values: pd.Index, present: np.ndarray, position: int, width: int) -> pd.Index:
    if width == 1:
        return labels(values, present)
    found: pd.Index = pd.Index([str(item[position]) for item in values.take(present)], dtype=text_dtype())
    return found
