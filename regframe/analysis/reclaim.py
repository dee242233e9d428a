"""What garbage collection would really free once the stale tags are deleted, and which collector run frees it."""

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
    stored_sizes,
    sum_by,
)
from .storage import digest_sizes

# The collector run these numbers assume, in the words of ``attrs["garbage_collection"]``.
GARBAGE_COLLECTION = (
    "apply_cleanup(..., delete_manifests=True), then plain garbage collection "
    "(distribution: garbage-collect without --delete-untagged)"
)
# What to tell people wherever space "returns after garbage collection".
GARBAGE_COLLECTION_ADVICE = (
    "Space returns only after garbage collection. Safe on distribution 2.x: delete with delete_manifests "
    "(`regframe cleanup --apply --delete-manifests`, or apply_cleanup(..., delete_manifests=True)), then run "
    "plain `garbage-collect`. Never `--delete-untagged` on 2.x: it also deletes the untagged platforms of kept "
    "multi-platform images and the referrers listed in fallback indexes, leaving their entries dangling."
)


def reclaimable_bytes(stale: pd.DataFrame, layers: pd.DataFrame, referrers: pd.DataFrame | None = None) -> int:
    """Bytes of distinct blobs (configs and layers) that only stale tags reference, anywhere in ``layers``.

    Every row of ``layers`` whose (repository, tag) is not marked stale counts as
    kept, including repositories ``stale`` does not mention, so a base layer that
    one kept image still uses is never counted; nor is an image that is also a platform
    of a kept multi-platform tag (the layers frame lists it under that tag too).
    ``stale`` must be booleans (or the strings "True"/"False"); anything else raises.

    Every blob row counts, configs included (garbage collection frees a config with the last
    manifest naming it); manifests themselves are not counted. Accessories follow their subject
    (``stale_tags`` marks them): the blobs of a deleted image's signatures, SBOMs and attestations
    count, through their tags and the fallback tag listing the untagged ones. Rows without a tag
    (referrers only the referrers API lists) count as kept, unless ``referrers`` (``inv.referrers``)
    is given: then those whose subject only stale tags carry count as freed too.

    The collector run assumed (``GARBAGE_COLLECTION``): ``apply_cleanup(..., delete_manifests=True)``,
    which deletes the unreferenced manifests and the accessories of deleted images by digest, then the
    registry's plain garbage collection (distribution: ``garbage-collect`` without ``--delete-untagged``).
    A cleanup without ``delete_manifests`` removes tags only, and plain collection then frees nothing
    of these images. Never run ``--delete-untagged`` on distribution 2.x: it also deletes the untagged
    platforms of kept multi-platform images and the referrers listed in fallback indexes (their
    entries dangle). On registries whose ``--delete-untagged`` spares the children of tagged indexes
    (distribution 3.0 and later), a default cleanup and ``--delete-untagged`` free the same bytes.
    """
    digest, size, freed, _, _, _ = _freed_layers(stale, layers, referrers)
    return int(size[np.unique(digest[freed])].sum())


def reclaimable_by_repository(
    stale: pd.DataFrame, layers: pd.DataFrame, referrers: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per repository with stale tags: how many, and the bytes freed among the layers they use.

    A freed layer used by stale tags of several repositories counts in each, so the
    column can add up to more than ``attrs["reclaimable_bytes"]`` (the true total).
    ``attrs["garbage_collection"]`` names the collector run the bytes assume (see ``reclaimable_bytes``).
    """
    digest, size, freed, repo, repo_values, marked = _freed_layers(stale, layers, referrers)
    pair_repo, pair_digest = distinct_pairs(repo[freed], digest[freed], len(size))
    per_repo = sum_by(pair_repo, size[pair_digest], len(repo_values))
    used = np.flatnonzero(per_repo)
    freed_bytes = pd.Series(per_repo[used], index=labels(repo_values, used))

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
    result.attrs["garbage_collection"] = GARBAGE_COLLECTION
    return result


def _freed_layers(
    stale: pd.DataFrame,
    layers: pd.DataFrame,
    referrers: pd.DataFrame | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, pd.Index, np.ndarray]:
    """Digest codes, size per digest, the mask of layer rows freed (stale tag, digest no kept
    row references), repository codes and values, and the rows of ``stale`` marked stale."""
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
    if referrers is not None:
        on_stale |= _untagged_freed(stale, marked, layers, on_stale, referrers)
    kept_digest = np.zeros(n_digest, dtype=bool)
    kept_digest[digest[has_digest & ~on_stale]] = True
    freed = on_stale & has_digest
    freed[freed] = ~kept_digest[digest[freed]]
    size = digest_sizes(digest, stored_sizes(layers), n_digest)
    return digest, size, freed, repo, repo_values, marked


def _untagged_freed(
    stale: pd.DataFrame, marked: np.ndarray, layers: pd.DataFrame, on_stale: np.ndarray, referrers: pd.DataFrame
) -> np.ndarray:
    """Untagged layer rows of referrers whose subject only stale tags carry (as digest or platform), or is
    such a referrer itself."""
    require_columns(stale, ("digest",), "reclaimable_bytes (stale frame, with referrers)")
    require_columns(layers, ("manifest_digest",), "reclaimable_bytes (layers frame, with referrers)")
    require_columns(referrers, ("repository", "subject", "digest", "tag"), "reclaimable_bytes (referrers frame)")
    untagged = layers["tag"].isna().to_numpy()
    if not untagged.any() or referrers.empty:
        return np.zeros(len(layers), dtype=bool)
    layer_repo = layers["repository"].astype(object).to_numpy()
    platform = layers["manifest_digest"].astype(object).to_numpy()
    tagged = ~untagged
    stale_digest = stale["digest"].astype(object).to_numpy()
    gone = pd.DataFrame(
        {
            "repository": np.r_[stale["repository"].astype(object).to_numpy()[marked], layer_repo[on_stale]],
            "digest": np.r_[stale_digest[marked], platform[on_stale]],
        }
    )
    kept = pd.DataFrame(
        {
            "repository": np.r_[stale["repository"].astype(object).to_numpy()[~marked], layer_repo[tagged & ~on_stale]],
            "digest": np.r_[stale_digest[~marked], platform[tagged & ~on_stale]],
        }
    )
    kept_keys = pd.MultiIndex.from_frame(kept.dropna())
    gone_keys = pd.MultiIndex.from_frame(gone.dropna())
    gone_keys = gone_keys[~gone_keys.isin(kept_keys)]
    listed = referrers[referrers["tag"].isna()]
    listed_repo = listed["repository"].astype(object).to_numpy()
    subject_keys = pd.MultiIndex.from_arrays([listed_repo, listed["subject"].astype(object).to_numpy()])
    referrer_keys = pd.MultiIndex.from_arrays([listed_repo, listed["digest"].astype(object).to_numpy()])
    # A referrer of a freed referrer (a signature of an SBOM) is freed too, down the chain.
    freed = np.zeros(len(listed), dtype=bool)
    while True:
        now = subject_keys.isin(gone_keys) & ~referrer_keys.isin(kept_keys)
        if (now == freed).all():
            break
        freed = now
        gone_keys = gone_keys.append(referrer_keys[freed]).unique()
    freed_keys = referrer_keys[freed]
    rows = pd.MultiIndex.from_arrays([layer_repo, platform])
    return np.asarray(untagged & rows.isin(freed_keys), dtype=bool)
