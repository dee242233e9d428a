"""Column checks and integer codes shared by the analysis functions.

Every analysis turns its string columns into integer codes first and then works
on numpy arrays: categorical columns hand over their codes for free, other
columns are factorized once. Group-bys then become ``bincount``/``add.at`` calls
and distinct pairs become distinct int64 keys, which is what keeps a
million-row layers frame well under a second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

# The columns each analysis reads; the accessor reuses them for its checks.
STORAGE_COLUMNS = ("repository", "tag", "manifest_digest", "layer_digest", "size")
SHARED_LAYERS_COLUMNS = STORAGE_COLUMNS
SHARING_MATRIX_COLUMNS = ("repository", "layer_digest", "size")
STALE_INPUT_COLUMNS = ("repository", "tag", "digest", "created", "size")
STALE_COLUMNS = ("repository", "tag", "digest", "created", "age", "stale", "reason")
RECLAIM_STALE_COLUMNS = ("repository", "tag", "stale")
RECLAIM_LAYER_COLUMNS = ("repository", "tag", "layer_digest", "size")

# Integer codes of a column's values, -1 where missing.
Codes = npt.NDArray[np.int64]


def missing_columns(df: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """The names in ``columns`` that ``df`` lacks, in the order given."""
    return [c for c in columns if c not in df.columns]


def require_columns(df: object, columns: Iterable[str], what: str) -> None:
    """Raise a ValueError naming every missing column, so the caller fixes them all at once."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what} needs a pandas DataFrame, got {type(df).__name__}")
    missing = missing_columns(df, columns)
    if missing:
        raise ValueError(
            f"{what} needs column(s) {', '.join(map(repr, missing))}, "
            f"missing from a frame with columns {list(df.columns)}"
        )


_BOOL_TEXT = {"True": True, "False": False}


def bool_mask(df: pd.DataFrame, column: str, what: str) -> np.ndarray:
    """``df[column]`` as a numpy bool array, refusing anything that is not plainly True or False.

    A deletion must never follow a value that only looks true: ``astype(bool)`` makes the string
    "False" and NaN true. Accepted are booleans and the exact strings "True"/"False" that
    ``to_csv`` writes (a frame read back with ``dtype=str``); NaN, "yes", 1, 1.5 and the like
    raise a ValueError naming the column.
    """
    series = df[column]
    if pd.api.types.is_bool_dtype(series.dtype) and not series.hasnans:
        return series.to_numpy(dtype=bool)
    values = series.astype(object).to_numpy() if len(series) else np.empty(0, dtype=object)
    out = np.empty(len(values), dtype=bool)
    bad = []
    for i, value in enumerate(values):
        if isinstance(value, (bool, np.bool_)):
            out[i] = bool(value)
        elif isinstance(value, str) and value in _BOOL_TEXT:
            out[i] = _BOOL_TEXT[value]
        else:
            bad.append(i)
    if bad:
        first = bad[0]
        raise ValueError(
            f"{what}: column {column!r} must hold only True or False (booleans, or the strings "
            f"'True'/'False' as pandas writes them); {len(bad)} row(s) do not, the first at position "
            f"{first} holds {values[first]!r}"
        )
    return out


def codes(series: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes (int64, -1 for missing) and the distinct values they index.

    For a categorical the values include unused categories: callers only ever
    look up codes that occur.
    """
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.cat.codes.to_numpy().astype(np.int64), series.cat.categories
    values, uniques = pd.factorize(series, use_na_sentinel=True)
    return values.astype(np.int64, copy=False), pd.Index(uniques)


def recode(series: pd.Series, target: pd.Index) -> np.ndarray:
    """Codes of ``series`` values in another column's ``target`` values (-1 where absent).

    Lets two frames be matched on codes even when their categories differ or
    one side is categorical and the other plain strings.
    """
    if isinstance(series.dtype, pd.CategoricalDtype):
        own = series.cat.codes.to_numpy()
        lookup = np.append(target.get_indexer(series.cat.categories), -1)
        return lookup[own].astype(np.int64)
    return target.get_indexer(pd.Index(series)).astype(np.int64)


def sizes(series: pd.Series) -> np.ndarray:
    """Sizes as int64 with missing values as 0: an unknown size adds nothing to a sum."""
    return pd.to_numeric(series).fillna(0).to_numpy(dtype=np.int64)


# Layers clients fetch from the URLs in their descriptor (Windows base layers, say), which registries do not
# store: the image spec's non-distributable layers and Docker's foreign ones.
EXTERNAL_LAYER_TYPES = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)


def stored_sizes(layers: pd.DataFrame) -> np.ndarray:
    """``sizes`` of the blob rows, 0 for an external layer (``EXTERNAL_LAYER_TYPES``): it adds to what
    per-tag sums report, not to what the registry stores or what garbage collection frees."""
    out = sizes(layers["size"])
    if "media_type" in layers.columns:
        out[layers["media_type"].isin(EXTERNAL_LAYER_TYPES).to_numpy(dtype=bool)] = 0
    return out


def pair_keys(a: Codes, b: Codes, b_count: int) -> Codes:
    """One int64 key per (a, b) pair: exact while a * b_count fits in int64 (codes stay below
    their category counts, so two of them always do)."""
    return a * np.int64(max(b_count, 1)) + b


def nested_keys(outer: np.ndarray, inner: np.ndarray, inner_count: int) -> tuple[np.ndarray, int]:
    """Codes for (outer, inner) pairs and their bound, small enough to nest in another pair.

    The plain product is kept while below 2**31; larger products are factorized
    into codes below the row count.
    """
    outer_count = int(outer.max()) + 1 if len(outer) else 0
    bound = outer_count * max(inner_count, 1)
    if bound < 2**31:
        return pair_keys(outer, inner, inner_count), bound
    compact, uniques = pd.factorize(pair_keys(outer, inner, inner_count))
    return compact.astype(np.int64), len(uniques)


def distinct_pairs(a: np.ndarray, b: np.ndarray, b_count: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (a, b) code pairs, rows with a missing code on either side dropped."""
    known = (a >= 0) & (b >= 0)
    a, b = a[known], b[known]
    if len(a) and (int(a.max()) + 1) * max(b_count, 1) >= 2**62:
        compact, uniques = pd.factorize(b)
        first, second = distinct_pairs(a, compact.astype(np.int64), len(uniques))
        return first, np.asarray(uniques, dtype=np.int64)[second]
    keys = pd.unique(pair_keys(a, b, b_count))
    width = np.int64(max(b_count, 1))
    return keys // width, keys % width


def sum_by(index: np.ndarray, weights: np.ndarray, length: int) -> np.ndarray:
    """Exact int64 sums of ``weights`` grouped by ``index`` (``bincount`` would round via float)."""
    out = np.zeros(length, dtype=np.int64)
    np.add.at(out, index, weights)
    return out


def lexical_rank(values: pd.Index) -> np.ndarray:
    """Each value's position in sorted string order, so results sort the same for any dtype."""
    order = np.asarray(values.astype(str).argsort())
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.arange(len(values), dtype=np.int64)
    return rank


def labels(values: pd.Index, idx: np.ndarray) -> pd.Index:
    """Plain strings for the given codes (summary frames never carry categories)."""
    return values.take(idx).astype(str)


def restore(idx: np.ndarray, values: pd.Index, like: pd.Series) -> pd.api.extensions.ExtensionArray | np.ndarray:
    """Column values for codes, keeping a categorical input categorical (cheap, small)."""
    if isinstance(like.dtype, pd.CategoricalDtype):
        return pd.Categorical.from_codes(idx, dtype=like.dtype)
    return pd.api.extensions.take(np.asarray(values, dtype=object), idx, allow_fill=True)


def each_name(test: Callable[[str], bool], idx: np.ndarray, values: pd.Index, rank: np.ndarray) -> np.ndarray:
    """``test`` per row, run once per distinct name and in name order, so a timeout names the same name
    whatever the rows' order."""
    used = np.unique(idx)
    used = used[np.argsort(rank[used])]
    hit = np.zeros(len(values), dtype=bool)
    hit[used] = [test(name) for name in values.take(used).astype(str)]
    found: np.ndarray = hit[idx]
    return found


def text_dtype() -> Any:
    """The dtype pandas gives a column of text (``str`` from pandas 3, object before). Output columns set it
    explicitly: left to inference, a column with no rows would be object instead."""
    return pd.Series(["text"]).dtype


def text_array(values: Any) -> Any:
    """``values`` (missing ones as NaN) as an array of :func:`text_dtype`, whatever their number."""
    return pd.array(np.asarray(values, dtype=object), dtype=text_dtype())
