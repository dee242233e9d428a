"""What garbage collection would really free once the stale tags are deleted."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._frames import (
    RECLAIM_LAYER_COLUMNS,
    RECLAIM_STALE_COLUMNS,
    bool_mask,
    codes,
    distinct_pairs,
    labels,
    pair_keys,
    recode,
    require_columns,
    sizes,
    sum_by,
)
from .storage import digest_sizes


def reclaimable_bytes(stale: pd.DataFrame, layers: pd.DataFrame) -> int:
    """Bytes of distinct blobs (configs and layers) that only stale tags reference, anywhere in ``layers``.

    Every row of ``layers`` whose (repository, tag) is not marked stale counts as
    kept, including repositories ``stale`` does not mention, so a base layer that
    one kept image still uses is never counted; nor is an image that is also a platform
    of a kept multi-platform tag (the layers frame lists it under that tag too).
    ``stale`` must be booleans (or the strings "True"/"False"); anything else raises.

    Every blob row counts, configs included (garbage collection frees a config with the last
    manifest naming it); manifests themselves are not counted. Rows without a tag (untagged
    referrers found through the referrers API) count as kept. The bytes return only after
    garbage collection: a cleanup removes tags, not images. Run
    ``apply_cleanup(..., delete_manifests=True)`` and then the registry's plain garbage collection,
    or, on registries whose ``--delete-untagged`` spares the platforms of tagged indexes
    (distribution 3.0 and later, not 2.x), a default cleanup and ``garbage-collect --delete-untagged``.
    """
    digest, size, freed, _, _ = _freed_layers(stale, layers)
    return int(size[np.unique(digest[freed])].sum())


def reclaimable_by_repository(stale: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """Per repository with stale tags: how many, and the bytes freed among the layers they use.

    A freed layer used by stale tags of several repositories counts in each, so the
    column can add up to more than ``attrs["reclaimable_bytes"]`` (the true total).
    """
    digest, size, freed, repo, repo_values = _freed_layers(stale, layers)
    pair_repo, pair_digest = distinct_pairs(repo[freed], digest[freed], len(size))
    per_repo = sum_by(pair_repo, size[pair_digest], len(repo_values))
    used = np.flatnonzero(per_repo)
    freed_bytes = pd.Series(per_repo[used], index=labels(repo_values, used))

    marked = bool_mask(stale, "stale", "reclaimable_by_repository")
    counts = stale.loc[marked, "repository"].astype(str).value_counts(sort=False)
    result = pd.DataFrame(
        {
            "repository": pd.Series(counts.index, dtype=str),
            "stale_tags": counts.to_numpy(dtype=np.int64),
            "reclaimable_bytes": freed_bytes.reindex(counts.index, fill_value=0).to_numpy(np.int64),
        }
    )
    result = result.sort_values(["reclaimable_bytes", "repository"], ascending=[False, True], ignore_index=True)
    result.attrs["reclaimable_bytes"] = int(size[np.unique(digest[freed])].sum())
    return result


def _freed_layers(
    stale: pd.DataFrame,
    layers: pd.DataFrame,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, pd.Index]:
    """Digest codes, size per digest, the mask of layer rows freed (stale tag, digest no kept
    row references), and repository codes and values."""
    require_columns(stale, RECLAIM_STALE_COLUMNS, "reclaimable_bytes (stale frame)")
    require_columns(layers, RECLAIM_LAYER_COLUMNS, "reclaimable_bytes (layers frame)")
    repo, repo_values = codes(layers["repository"])
    tag, tag_values = codes(layers["tag"])
    digest, digest_values = codes(layers["layer_digest"])
    n_tag, n_digest = len(tag_values), len(digest_values)

    marked = bool_mask(stale, "stale", "reclaimable_bytes")
    stale_repo = recode(stale["repository"], repo_values)[marked]
    stale_tag = recode(stale["tag"], tag_values)[marked]
    found = (stale_repo >= 0) & (stale_tag >= 0)
    stale_keys = pair_keys(stale_repo[found], stale_tag[found], n_tag)

    has_digest = digest >= 0
    row_keys = pd.Series(pair_keys(repo, tag, n_tag))
    on_stale = (repo >= 0) & (tag >= 0) & row_keys.isin(stale_keys).to_numpy()
    kept_digest = np.zeros(n_digest, dtype=bool)
    kept_digest[digest[has_digest & ~on_stale]] = True
    freed = on_stale & has_digest
    freed[freed] = ~kept_digest[digest[freed]]
    size = digest_sizes(digest, sizes(layers["size"]), n_digest)
    return digest, size, freed, repo, repo_values
