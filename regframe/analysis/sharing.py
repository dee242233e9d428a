"""Which layers are shared, and how many bytes each pair of repositories has in common."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

from ._frames import (
    SHARED_LAYERS_COLUMNS,
    SHARING_MATRIX_COLUMNS,
    codes,
    distinct_pairs,
    labels,
    lexical_rank,
    nested_keys,
    pair_keys,
    require_columns,
    sizes,
    sum_by,
)
from .storage import digest_sizes

# A layer in more repositories than this goes through a dense outer product instead of
# pair expansion: a base layer in 5,000 repositories would otherwise expand to 25 million pairs.
_DENSE_FROM = 64
_DENSE_CELLS = 1 << 22


def shared_layers(layers: pd.DataFrame) -> pd.DataFrame:
    """One row per layer digest with how widely it is reused, most shared first.

    ``repositories`` counts distinct repositories, ``images`` distinct image
    manifests, ``tags`` distinct (repository, tag) pairs; ``repository_list`` names
    the repositories, sorted. Ties sort by size (largest first), then digest.
    """
    require_columns(layers, SHARED_LAYERS_COLUMNS, "shared_layers")
    digest, digest_values = codes(layers["layer_digest"])
    repo, repo_values = codes(layers["repository"])
    tag, tag_values = codes(layers["tag"])
    manifest, manifest_values = codes(layers["manifest_digest"])
    n_digest = len(digest_values)

    pair_digest, pair_repo = distinct_pairs(digest, repo, len(repo_values))
    repositories = np.bincount(pair_digest, minlength=n_digest)
    images = np.bincount(distinct_pairs(digest, manifest, len(manifest_values))[0], minlength=n_digest)
    known_tag = (repo >= 0) & (tag >= 0)
    repo_tag = np.full(len(layers), -1, dtype=np.int64)
    repo_tag[known_tag], repo_tag_count = nested_keys(repo[known_tag], tag[known_tag], len(tag_values))
    tags = np.bincount(distinct_pairs(digest, repo_tag, repo_tag_count)[0], minlength=n_digest)

    present = np.flatnonzero(np.bincount(digest[digest >= 0], minlength=n_digest))
    size = digest_sizes(digest, sizes(layers["size"]), n_digest)[present]
    digest_rank = lexical_rank(digest_values.take(present))
    order = np.lexsort((digest_rank, -size, -repositories[present]))
    present, size = present[order], size[order]

    return pd.DataFrame(
        {
            "layer_digest": labels(digest_values, present),
            "size": size,
            "repositories": repositories[present],
            "images": images[present],
            "tags": tags[present],
            "repository_list": pd.Series(
                _name_lists(pair_digest, pair_repo, repo_values, present, n_digest), dtype=object
            ),
        }
    )


def _name_lists(
    pair_digest: np.ndarray, pair_repo: np.ndarray, repo_values: pd.Index, present: np.ndarray, n_digest: int
) -> list[list[str]]:
    """Sorted repository names per digest, in the order of ``present``.

    One sort of the (digest, name rank) pairs, then list slices: no per-row pandas work.
    """
    rank = lexical_rank(repo_values)
    names = np.asarray(labels(repo_values, np.argsort(rank)), dtype=object)
    keys = np.sort(pair_keys(pair_digest, rank[pair_repo], len(repo_values)))
    flat = names[keys % max(len(repo_values), 1)].tolist()
    counts = np.bincount(pair_digest, minlength=n_digest)
    ends = np.cumsum(counts)
    starts = ends - counts
    with _gc_paused():
        return [flat[s:e] for s, e in zip(starts[present].tolist(), ends[present].tolist(), strict=True)]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic collector while making many small lists of strings.

    Each list allocation counts towards a collection; with 100,000 lists the
    collector runs again and again over a heap these lists cannot form cycles in,
    which costs more than building them.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def sharing_matrix(layers: pd.DataFrame, top: int | None = None) -> pd.DataFrame:
    """Bytes of distinct layers each pair of repositories has in common.

    A square frame indexed both ways by repository, ordered by stored bytes (largest
    first); the diagonal is each repository's stored bytes. ``top=N`` keeps the N
    repositories that store the most, which is what a heatmap can show.
    """
    if top is not None and (isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1):
        raise ValueError(f"top must be a positive int or None, got {top!r}")
    require_columns(layers, SHARING_MATRIX_COLUMNS, "sharing_matrix")
    repo, repo_values = codes(layers["repository"])
    digest, digest_values = codes(layers["layer_digest"])
    n_repo, n_digest = len(repo_values), len(digest_values)

    pair_repo, pair_digest = distinct_pairs(repo, digest, n_digest)
    pair_size = digest_sizes(digest, sizes(layers["size"]), n_digest)[pair_digest]
    stored = sum_by(pair_repo, pair_size, n_repo)
    present = np.flatnonzero(np.bincount(repo[repo >= 0], minlength=n_repo))
    order = np.lexsort((lexical_rank(repo_values.take(present)), -stored[present]))
    chosen = present[order][:top]

    slot = np.full(n_repo, -1, dtype=np.int64)
    slot[chosen] = np.arange(len(chosen))
    keep = slot[pair_repo] >= 0
    local_digest, _ = pd.factorize(pair_digest[keep])
    matrix = _common_bytes(slot[pair_repo[keep]], local_digest, pair_size[keep], len(chosen))

    names = labels(repo_values, chosen).rename("repository")
    return pd.DataFrame(matrix, index=names, columns=names.copy())


def _common_bytes(repo: np.ndarray, digest: np.ndarray, size: np.ndarray, n_repo: int) -> np.ndarray:
    """Per (repo, repo) cell, the summed size of the digests both hold, from distinct
    (repo, digest) pairs.

    Digests in few repositories expand into their repository pairs (cost: the sum of
    squared group sizes); widely shared ones go through dense one-hot products.
    """
    matrix = np.zeros((n_repo, n_repo), dtype=np.int64)
    if len(repo) == 0:
        return matrix
    per_digest = np.bincount(digest)
    dense = per_digest[digest] > _DENSE_FROM
    _add_pairs(matrix, repo[~dense], digest[~dense], size[~dense])
    _add_dense(matrix, repo[dense], digest[dense], size[dense])
    return matrix


def _add_pairs(matrix: np.ndarray, repo: np.ndarray, digest: np.ndarray, size: np.ndarray) -> None:
    """Add every (repo, repo') pair of each digest: one row per pair, then one scatter-add."""
    if len(repo) == 0:
        return
    order = np.argsort(digest, kind="stable")
    repo, digest, size = repo[order], digest[order], size[order]
    group = np.bincount(digest)
    start = np.cumsum(group) - group
    repeat = group[digest]
    left = np.repeat(np.arange(len(repo)), repeat)
    offset = np.arange(len(left)) - np.repeat(np.cumsum(repeat) - repeat, repeat)
    right = start[digest[left]] + offset
    n = matrix.shape[0]
    np.add.at(matrix.reshape(-1), repo[left] * n + repo[right], size[left])


def _add_dense(matrix: np.ndarray, repo: np.ndarray, digest: np.ndarray, size: np.ndarray) -> None:
    """Add X.T @ diag(size) @ X for one-hot X (digest x repo), a bounded block of digests at
    a time; float64 BLAS is exact while a cell stays below 2**53 bytes (9 PB)."""
    if len(repo) == 0:
        return
    local, _ = pd.factorize(digest)
    digest_size = np.zeros(local.max() + 1, dtype=np.int64)
    digest_size[local] = size
    n = matrix.shape[0]
    step = max(1, _DENSE_CELLS // max(n, 1))
    for first in range(0, len(digest_size), step):
        rows = (local >= first) & (local < first + step)
        onehot = np.zeros((min(step, len(digest_size) - first), n), dtype=np.float64)
        onehot[local[rows] - first, repo[rows]] = 1.0
        weighted = onehot * digest_size[first : first + step, None]
        matrix += np.rint(weighted.T @ onehot).astype(np.int64)
