"""Per-repository storage with shared layers counted once."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._frames import (
    STORAGE_COLUMNS,
    codes,
    distinct_pairs,
    labels,
    require_columns,
    sizes,
    sum_by,
)

USAGE_COLUMNS = ("repository", "images", "tags", "logical_bytes", "stored_bytes", "exclusive_bytes", "shared_bytes")


def digest_sizes(digest: np.ndarray, size: np.ndarray, count: int) -> np.ndarray:
    """One size per digest code (a digest's size is the same in every manifest naming it)."""
    out = np.zeros(count, dtype=np.int64)
    known = digest >= 0
    out[digest[known]] = size[known]
    return out


def storage_usage(layers: pd.DataFrame) -> pd.DataFrame:
    """Bytes per repository three ways, because naive sums double-count shared base layers.

    ``logical_bytes`` is what tools that add up image sizes report (every tag, every
    platform); ``stored_bytes`` counts each distinct layer of the repository once;
    ``exclusive_bytes`` only the layers no other repository references (what deleting
    the whole repository would free); ``shared_bytes`` the rest. ``attrs`` carry the
    registry-wide ``total_bytes`` (each distinct layer once), ``logical_bytes`` and
    ``dedup_ratio`` (logical / total, 1.0 when empty).

    Layer bytes only: config blobs (a few KB each) and manifests are not counted.
    Rows without a layer digest add to ``logical_bytes`` only.
    """
    require_columns(layers, STORAGE_COLUMNS, "storage_usage")
    repo, repo_values = codes(layers["repository"])
    tag, tag_values = codes(layers["tag"])
    manifest, manifest_values = codes(layers["manifest_digest"])
    digest, digest_values = codes(layers["layer_digest"])
    size = sizes(layers["size"])
    n_repo, n_digest = len(repo_values), len(digest_values)

    has_repo = repo >= 0
    rows = np.bincount(repo[has_repo], minlength=n_repo)
    logical = sum_by(repo[has_repo], size[has_repo], n_repo)
    images = np.bincount(distinct_pairs(repo, manifest, len(manifest_values))[0], minlength=n_repo)
    tags = np.bincount(distinct_pairs(repo, tag, len(tag_values))[0], minlength=n_repo)

    pair_repo, pair_digest = distinct_pairs(repo, digest, n_digest)
    per_digest = digest_sizes(digest, size, n_digest)
    pair_size = per_digest[pair_digest]
    stored = sum_by(pair_repo, pair_size, n_repo)
    repos_per_digest = np.bincount(pair_digest, minlength=n_digest)
    only_here = repos_per_digest[pair_digest] == 1
    exclusive = sum_by(pair_repo[only_here], pair_size[only_here], n_repo)

    present = np.flatnonzero(rows)
    usage = pd.DataFrame(
        {
            "repository": labels(repo_values, present),
            "images": images[present],
            "tags": tags[present],
            "logical_bytes": logical[present],
            "stored_bytes": stored[present],
            "exclusive_bytes": exclusive[present],
            "shared_bytes": stored[present] - exclusive[present],
        },
        columns=list(USAGE_COLUMNS),
    )
    usage = usage.sort_values(["stored_bytes", "repository"], ascending=[False, True], ignore_index=True)

    total = int(per_digest[np.bincount(digest[digest >= 0], minlength=n_digest) > 0].sum())
    logical_total = int(size.sum())
    usage.attrs.update(
        total_bytes=total,
        logical_bytes=logical_total,
        dedup_ratio=float(logical_total / total) if total else 1.0,
    )
    return usage
