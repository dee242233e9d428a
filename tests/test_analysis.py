"""The analysis layer on small hand-built frames whose numbers are worked out here by hand.

No registry is involved: these functions are pure pandas over the crawler's frames.
"""

from __future__ import annotations

import datetime as dt
import importlib
import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regframe.analysis import (
    cleanup_plan,
    dangling_entries,
    format_duration,
    parse_duration,
    reclaimable_by_repository,
    reclaimable_bytes,
    shared_layers,
    sharing_matrix,
    stale_tags,
    storage_usage,
    supply_chain,
)

NOW = pd.Timestamp("2026-01-01", tz="UTC")
DAY = pd.Timedelta(days=1)


def layers_frame(rows: list[tuple]) -> pd.DataFrame:
    """(repository, tag, manifest_digest, platform, layer_digest, size) tuples as a layers frame."""
    frame = pd.DataFrame(rows, columns=["repository", "tag", "manifest_digest", "platform", "layer_digest", "size"])
    frame["position"] = frame.groupby(["repository", "tag", "manifest_digest"]).cumcount()
    frame["size"] = frame["size"].astype("Int64")
    frame["media_type"] = "application/vnd.oci.image.layer.v1.tar+gzip"
    return frame


def as_categorical(frame: pd.DataFrame) -> pd.DataFrame:
    """String columns as categoricals the way a crawler may leave them: categories in
    reverse order and with unused values, so nothing may rely on category order."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column].dtype):
            values = sorted(set(out[column].dropna()), reverse=True) + ["zz-unused", "00-unused"]
            out[column] = pd.Categorical(out[column], categories=values)
    return out


def plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical and string columns as object, to compare results across input dtypes."""
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(out[column].dtype):
            out[column] = out[column].astype(object)
    return out


# Repositories app, web, tools. Layer sizes: B=100 (base of app and web), BA=50 (arm64 base
# of web and tools), A1=10, A2=20 (app), W1=30, W2=40 (web), T1=5 (tools).
# app: tags 1.0 and latest on one manifest m-app1 [B, A1]; tag 2.0 on m-app2 [B, A2].
# web: tag multi is a two-platform index: amd64 m-web-amd [B, W1], arm64 m-web-arm [BA, W2].
# tools: tag t on m-tools [BA, T1].
FLEET = layers_frame(
    [
        ("app", "1.0", "m-app1", "linux/amd64", "B", 100),
        ("app", "1.0", "m-app1", "linux/amd64", "A1", 10),
        ("app", "latest", "m-app1", "linux/amd64", "B", 100),
        ("app", "latest", "m-app1", "linux/amd64", "A1", 10),
        ("app", "2.0", "m-app2", "linux/amd64", "B", 100),
        ("app", "2.0", "m-app2", "linux/amd64", "A2", 20),
        ("web", "multi", "m-web-amd", "linux/amd64", "B", 100),
        ("web", "multi", "m-web-amd", "linux/amd64", "W1", 30),
        ("web", "multi", "m-web-arm", "linux/arm64/v8", "BA", 50),
        ("web", "multi", "m-web-arm", "linux/arm64/v8", "W2", 40),
        ("tools", "t", "m-tools", "linux/arm64/v8", "BA", 50),
        ("tools", "t", "m-tools", "linux/arm64/v8", "T1", 5),
    ]
)


# --- storage_usage -------------------------------------------------------------------------


def test_storage_usage_counts_shared_layers_once():
    usage = storage_usage(FLEET).set_index("repository")

    # logical: every row counts. app = (100+10) [1.0] + (100+10) [latest] + (100+20) [2.0]
    assert usage.loc["app", "logical_bytes"] == 110 + 110 + 120
    # stored: app's distinct layers B, A1, A2 once each.
    assert usage.loc["app", "stored_bytes"] == 100 + 10 + 20
    # exclusive: B is also in web, so only A1 and A2.
    assert usage.loc["app", "exclusive_bytes"] == 10 + 20
    assert usage.loc["app", "shared_bytes"] == 100
    assert usage.loc["app", "images"] == 2  # m-app1, m-app2
    assert usage.loc["app", "tags"] == 3  # 1.0, latest, 2.0

    # web: both platforms of the one tag count. logical = (100+30) + (50+40).
    assert usage.loc["web", "logical_bytes"] == 130 + 90
    assert usage.loc["web", "stored_bytes"] == 100 + 30 + 50 + 40
    assert usage.loc["web", "exclusive_bytes"] == 30 + 40  # B shared with app, BA with tools
    assert usage.loc["web", "shared_bytes"] == 100 + 50
    assert (usage.loc["web", "images"], usage.loc["web", "tags"]) == (2, 1)

    assert usage.loc["tools", "stored_bytes"] == 50 + 5
    assert usage.loc["tools", "exclusive_bytes"] == 5


def test_storage_usage_order_and_totals():
    usage = storage_usage(FLEET)
    assert list(usage["repository"]) == ["web", "app", "tools"]  # stored 220, 130, 55
    assert list(usage.columns) == [
        "repository",
        "images",
        "tags",
        "logical_bytes",
        "stored_bytes",
        "exclusive_bytes",
        "shared_bytes",
    ]
    total = 100 + 50 + 10 + 20 + 30 + 40 + 5  # every distinct layer once
    logical = 340 + 220 + 55
    assert usage.attrs["total_bytes"] == total
    assert usage.attrs["logical_bytes"] == logical
    assert usage.attrs["dedup_ratio"] == pytest.approx(logical / total)
    assert isinstance(usage.attrs["dedup_ratio"], float)


def test_storage_usage_ties_sort_by_name_and_empty_frame():
    tied = layers_frame([("b", "1", "m1", "p", "x", 7), ("a", "1", "m2", "p", "y", 7)])
    assert list(storage_usage(tied)["repository"]) == ["a", "b"]

    empty = storage_usage(FLEET.iloc[:0])
    assert empty.empty
    assert empty.attrs == {"total_bytes": 0, "logical_bytes": 0, "dedup_ratio": 1.0}


def test_storage_usage_names_missing_columns():
    with pytest.raises(ValueError, match=r"'layer_digest'.*'size'"):
        storage_usage(FLEET.drop(columns=["layer_digest", "size"]))


# --- shared_layers -------------------------------------------------------------------------


def test_shared_layers_counts():
    shared = shared_layers(FLEET)
    # Order: repositories desc, then size desc: B (2 repos, 100), BA (2, 50), then single-repo
    # layers by size: W2 40, W1 30, A2 20, A1 10, T1 5.
    assert list(shared["layer_digest"]) == ["B", "BA", "W2", "W1", "A2", "A1", "T1"]
    rows = shared.set_index("layer_digest")
    # B: repositories app, web; manifests m-app1, m-app2, m-web-amd; tags app:1.0, app:latest,
    # app:2.0, web:multi.
    assert rows.loc["B", ["size", "repositories", "images", "tags"]].tolist() == [100, 2, 3, 4]
    assert rows.loc["B", "repository_list"] == ["app", "web"]
    assert rows.loc["BA", ["size", "repositories", "images", "tags"]].tolist() == [50, 2, 2, 2]
    assert rows.loc["BA", "repository_list"] == ["tools", "web"]
    # A1 is one manifest under two tags.
    assert rows.loc["A1", ["repositories", "images", "tags"]].tolist() == [1, 1, 2]


# --- sharing_matrix ------------------------------------------------------------------------


def test_sharing_matrix_values():
    matrix = sharing_matrix(FLEET)
    assert list(matrix.index) == ["web", "app", "tools"] == list(matrix.columns)
    expected = np.array(
        [
            # web             app   tools
            [100 + 30 + 50 + 40, 100, 50],  # web shares B with app, BA with tools
            [100, 100 + 10 + 20, 0],
            [50, 0, 50 + 5],
        ]
    )
    np.testing.assert_array_equal(matrix.to_numpy(), expected)
    assert (matrix.to_numpy() == matrix.to_numpy().T).all()


def test_sharing_matrix_top_and_bad_top():
    top = sharing_matrix(FLEET, top=2)
    assert list(top.index) == ["web", "app"]
    np.testing.assert_array_equal(top.to_numpy(), [[220, 100], [100, 130]])
    for bad in (0, -1, 1.5, "3", True):
        with pytest.raises(ValueError, match="top"):
            sharing_matrix(FLEET, top=bad)


def naive_sharing(frame: pd.DataFrame) -> dict[tuple[str, str], int]:
    """Bytes in common per repository pair, with Python sets: the definition, slowly."""
    sizes = dict(zip(frame["layer_digest"], frame["size"], strict=True))
    owned = frame.groupby("repository")["layer_digest"].agg(set).to_dict()
    return {(a, b): sum(sizes[d] for d in owned[a] & owned[b]) for a in owned for b in owned}


def wide_fleet() -> pd.DataFrame:
    """80 repositories on one base layer; own layers; a layer per group of three repositories."""
    rows = []
    for r in range(80):
        repo = f"r{r:02d}"
        rows.append((repo, "t", f"m{r}", "p", "base", 1000))
        rows.append((repo, "t", f"m{r}", "p", f"own{r}", r + 1))
        rows.append((repo, "t", f"m{r}", "p", f"group{r // 3}", 7))
    return layers_frame(rows)


def test_sharing_matrix_widely_shared_base_layer():
    """A base layer in 80 repositories takes the dense path; a layer in 3 the pair path."""
    frame = wide_fleet()
    matrix = sharing_matrix(frame)
    naive = naive_sharing(frame)
    for a, b in itertools.product(matrix.index, matrix.columns):
        assert matrix.loc[a, b] == naive[(a, b)]
    # r79 stores base + own79 + group26 (shared with r78 only): 1000 + 80 + 7.
    assert matrix.loc["r79", "r79"] == 1000 + 80 + 7
    assert matrix.loc["r79", "r78"] == 1000 + 7
    assert matrix.loc["r79", "r00"] == 1000


def test_sharing_matrix_dense_path_in_small_chunks(monkeypatch):
    """Every layer through the dense product, two layers per chunk: same cells as the sets."""
    module = importlib.import_module("regframe.analysis.sharing")
    monkeypatch.setattr(module, "_DENSE_FROM", 0)
    monkeypatch.setattr(module, "_DENSE_CELLS", 2 * 80)
    frame = wide_fleet()
    matrix = sharing_matrix(frame)
    naive = naive_sharing(frame)
    assert all(matrix.loc[a, b] == naive[(a, b)] for a, b in itertools.product(matrix.index, matrix.columns))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2), st.integers(0, 9)), min_size=1, max_size=40))
def test_storage_and_sharing_match_set_definitions(triples):
    """Random frames against the set-based definitions (sizes are a function of the digest)."""
    rows = [(f"repo{r}", f"t{t}", f"m{r}-{t}", "p", f"d{d}", (d + 1) * 11) for r, t, d in triples]
    frame = layers_frame(rows)
    sizes = {f"d{d}": (d + 1) * 11 for d in range(10)}
    owned = frame.groupby("repository")["layer_digest"].agg(set).to_dict()
    usage = storage_usage(frame).set_index("repository")
    for repo, digests in owned.items():
        others = set().union(*(v for k, v in owned.items() if k != repo))
        assert usage.loc[repo, "stored_bytes"] == sum(sizes[d] for d in digests)
        assert usage.loc[repo, "exclusive_bytes"] == sum(sizes[d] for d in digests - others)
        assert usage.loc[repo, "logical_bytes"] == frame.loc[frame.repository == repo, "size"].sum()
    assert usage.attrs["total_bytes"] == sum(sizes[d] for d in set(frame["layer_digest"]))
    matrix = sharing_matrix(frame)
    naive = naive_sharing(frame)
    assert all(matrix.loc[a, b] == naive[(a, b)] for a in owned for b in owned)


# --- categorical and object inputs ---------------------------------------------------------


def test_categorical_and_object_layers_give_the_same_results():
    cat = as_categorical(FLEET)
    assert isinstance(cat["layer_digest"].dtype, pd.CategoricalDtype)
    pd.testing.assert_frame_equal(plain(storage_usage(cat)), plain(storage_usage(FLEET)))
    pd.testing.assert_frame_equal(plain(shared_layers(cat)), plain(shared_layers(FLEET)))
    pd.testing.assert_frame_equal(
        plain(sharing_matrix(cat)), plain(sharing_matrix(FLEET)), check_index_type=False, check_column_type=False
    )
    assert storage_usage(cat).attrs == storage_usage(FLEET).attrs


# --- stale_tags ----------------------------------------------------------------------------


def manifests_frame(rows: list[tuple]) -> pd.DataFrame:
    """(repository, tag, digest, created days ago or None, size) tuples as a manifests frame."""
    frame = pd.DataFrame(rows, columns=["repository", "tag", "digest", "days", "size"])
    frame["created"] = pd.to_datetime([NOW - d * DAY if d is not None else None for d in frame.pop("days")], utc=True)
    frame["manifest_digest"] = frame["digest"]
    frame["size"] = frame["size"].astype("Int64")
    return frame


# app: latest and 1.0 on one digest d1 (200 days); 0.9 (300 days), 0.8 (400 days), keep-me
# (500 days), nodate (unknown). web: multi is two platforms of digest dm, created 100 and 50
# days ago (its age is the newer one, 50 days); sizes 7 and 8.
APP = manifests_frame(
    [
        ("app", "latest", "d1", 200, 10),
        ("app", "1.0", "d1", 200, 10),
        ("app", "0.9", "d0", 300, 20),
        ("app", "0.8", "dx", 400, 30),
        ("app", "keep-me", "dk", 500, 40),
        ("app", "nodate", "dn", None, 50),
        ("web", "multi", "dm", 100, 7),
        ("web", "multi", "dm", 50, 8),
    ]
)


def decisions(stale: pd.DataFrame) -> dict[tuple[str, str], tuple[bool, str]]:
    return {
        (r, t): (s, why)
        for r, t, s, why in zip(stale["repository"], stale["tag"], stale["stale"], stale["reason"], strict=True)
    }


def test_stale_rules_keep_beats_delete_and_digest_siblings_are_kept():
    stale = stale_tags(APP, older_than="90d", keep=r"^(latest|keep-me)$", now=NOW)
    got = decisions(stale)
    assert got[("app", "latest")] == (False, "kept: matches keep pattern")
    assert got[("app", "keep-me")] == (False, "kept: matches keep pattern")  # 500 days old
    # 1.0 is old, but deleting its digest d1 would delete latest too.
    assert got[("app", "1.0")] == (False, "kept: shares digest with kept tag 'latest'")
    assert got[("app", "0.9")] == (True, "older than 90 days")
    assert got[("app", "0.8")] == (True, "older than 90 days")
    assert got[("app", "nodate")] == (False, "kept: creation date unknown")
    # web:multi's newest platform is 50 days old: newer than 90 days, older than 30.
    assert got[("web", "multi")] == (False, "newer than 90 days")
    assert decisions(stale_tags(APP, older_than="30d", now=NOW))[("web", "multi")] == (True, "older than 30 days")


def test_stale_multi_platform_row_and_columns():
    stale = stale_tags(APP, older_than="30d", now=NOW)
    assert list(stale.columns) == ["repository", "tag", "digest", "created", "age", "size", "stale", "reason"]
    assert len(stale) == 7  # (repository, tag) pairs
    multi = stale[stale["tag"] == "multi"].iloc[0]
    assert multi["created"] == NOW - 50 * DAY  # newest platform
    assert multi["age"] == 50 * DAY
    assert multi["size"] == 7 + 8  # both platforms
    assert multi["digest"] == "dm"
    assert stale["created"].dtype == "datetime64[ns, UTC]"
    assert pd.isna(stale.loc[stale["tag"] == "nodate", "age"].iloc[0])
    # Sorted by repository, newest first, undated last.
    # "1.0" and "latest" are equally old: name order.
    assert list(stale["tag"]) == ["1.0", "latest", "0.9", "0.8", "keep-me", "nodate", "multi"]


def test_keep_last_is_per_repository_and_skips_undated():
    frame = manifests_frame(
        [
            ("a", "a10", "x10", 10, 1),
            ("a", "a20", "x20", 20, 1),
            ("a", "a30", "x30", 30, 1),
            ("b", "b5", "y5", 5, 1),
            ("b", "b400", "y400", 400, 1),
            ("c", "cnone", "z0", None, 1),
            ("c", "c100", "z100", 100, 1),
            ("c", "c200", "z200", 200, 1),
        ]
    )
    got = decisions(stale_tags(frame, older_than="1d", keep_last=2, now=NOW))
    assert got[("a", "a10")] == got[("a", "a20")] == (False, "kept: among newest 2")
    assert got[("a", "a30")] == (True, "older than 1 day")
    assert got[("b", "b400")] == (False, "kept: among newest 2")  # b has only two tags
    assert got[("c", "cnone")] == (False, "kept: creation date unknown")
    # The undated tag takes no place among the newest two: c100 and c200 both do.
    assert got[("c", "c100")] == got[("c", "c200")] == (False, "kept: among newest 2")
    one = decisions(stale_tags(frame, older_than="1d", keep_last=1, now=NOW))
    assert one[("c", "c100")] == (False, "kept: among newest 1")
    assert one[("c", "c200")] == (True, "older than 1 day")


def test_keep_last_ties_break_by_tag_name():
    frame = manifests_frame([("a", "beta", "x1", 10, 1), ("a", "alpha", "x2", 10, 1)])
    got = decisions(stale_tags(frame, older_than="1d", keep_last=1, now=NOW))
    assert got[("a", "alpha")] == (False, "kept: among newest 1")
    assert got[("a", "beta")][0]


def test_match_limits_what_may_be_deleted_and_keep_still_wins():
    stale = stale_tags(APP, older_than="90d", match=r"^0\.", keep=r"^0\.9$", now=NOW)
    got = decisions(stale)
    assert got[("app", "0.8")] == (True, "older than 90 days")
    assert got[("app", "0.9")] == (False, "kept: matches keep pattern")
    assert got[("app", "keep-me")] == (False, "kept: does not match pattern")
    assert got[("app", "latest")] == (False, "kept: does not match pattern")
    # match uses re.search: "0\." finds "10.0" too, "^0\." does not.
    searched = decisions(
        stale_tags(APP.assign(tag=APP["tag"].replace("keep-me", "10.0")), older_than="90d", match=r"0\.", now=NOW)
    )
    assert searched[("app", "10.0")][0]


def test_stale_attrs_and_now_forms():
    stale = stale_tags(APP, older_than="1d12h", keep_last=3, keep="x", match="y", now="2026-01-01 00:00")
    assert stale.attrs == {
        "older_than": pd.Timedelta(hours=36),
        "now": NOW,
        "keep": "x",
        "keep_last": 3,
        "match": "y",
        "age_from": "created",
    }
    assert stale_tags(APP, now=dt.datetime(2026, 1, 1)).attrs["now"] == NOW
    eastern = pd.Timestamp("2025-12-31 19:00", tz="America/New_York")
    assert stale_tags(APP, now=eastern).attrs["now"] == NOW
    before = pd.Timestamp.now(tz="UTC")
    assert before <= stale_tags(APP).attrs["now"] <= pd.Timestamp.now(tz="UTC")


def test_stale_validation_messages():
    with pytest.raises(ValueError, match=r"'soon'.*90d"):
        stale_tags(APP, older_than="soon")
    with pytest.raises(ValueError, match="negative"):
        stale_tags(APP, older_than=-1)
    with pytest.raises(ValueError, match=r"keep pattern '\[' is not a valid regular expression"):
        stale_tags(APP, keep="[")
    with pytest.raises(ValueError, match=r"match pattern '\(' is not a valid regular expression"):
        stale_tags(APP, match="(")
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="keep_last"):
            stale_tags(APP, keep_last=bad)
    with pytest.raises(ValueError, match="not a date"):
        stale_tags(APP, now="yesterday-ish")
    # Validation comes first: a bad argument is reported even on a frame with no columns.
    with pytest.raises(ValueError, match="keep pattern"):
        stale_tags(pd.DataFrame(), keep="[")
    with pytest.raises(ValueError, match="'created'"):
        stale_tags(APP.drop(columns=["created"]))


def test_categorical_and_object_manifests_give_the_same_results():
    kwargs = dict(older_than="90d", keep=r"^latest$", keep_last=1, now=NOW)
    cat = as_categorical(APP)
    from_cat = stale_tags(cat, **kwargs)
    assert isinstance(from_cat["repository"].dtype, pd.CategoricalDtype)
    pd.testing.assert_frame_equal(plain(from_cat), plain(stale_tags(APP, **kwargs)))
    pd.testing.assert_frame_equal(plain(cleanup_plan(from_cat)), plain(cleanup_plan(stale_tags(APP, **kwargs))))


def test_cleanup_plan():
    stale = stale_tags(APP, older_than="90d", keep=r"^latest$", now=NOW)
    plan = cleanup_plan(stale)
    assert list(plan.columns) == ["repository", "tag", "digest", "created", "age", "reason"]
    # Stale, oldest first: keep-me (500 days), 0.8 (400), 0.9 (300); 1.0 shares latest's digest,
    # nodate is undated and web:multi (50 days) is new.
    assert list(zip(plan["repository"], plan["tag"], strict=True)) == [
        ("app", "keep-me"),
        ("app", "0.8"),
        ("app", "0.9"),
    ]
    assert (plan["reason"] == "older than 90 days").all()
    assert plan.attrs["older_than"] == 90 * DAY


# --- reclaimable_bytes ---------------------------------------------------------------------

# Layer sizes: S=7 (only stale tags use it), K=11 (stale old1 and kept new), X=13 (stale old2 and
# repository b, which the stale frame does not mention), N=17, Y=19, P1=3 and P2=5 (the two
# platforms of the stale tag old3).
RECLAIM_LAYERS = layers_frame(
    [
        ("a", "old1", "m1", "linux/amd64", "S", 7),
        ("a", "old1", "m1", "linux/amd64", "K", 11),
        ("a", "old2", "m2", "linux/amd64", "S", 7),
        ("a", "old2", "m2", "linux/amd64", "X", 13),
        ("a", "new", "m3", "linux/amd64", "K", 11),
        ("a", "new", "m3", "linux/amd64", "N", 17),
        ("a", "old3", "m4", "linux/amd64", "P1", 3),
        ("a", "old3", "m5", "linux/arm64/v8", "P2", 5),
        ("b", "t", "m6", "linux/amd64", "X", 13),
        ("b", "t", "m6", "linux/amd64", "Y", 19),
        ("c", "old", "m7", "linux/amd64", "S", 7),
    ]
)
RECLAIM_STALE = pd.DataFrame(
    {
        "repository": ["a", "a", "a", "a", "c"],
        "tag": ["old1", "old2", "new", "old3", "old"],
        "stale": [True, True, False, True, True],
    }
)


def test_reclaimable_bytes_counts_only_layers_no_kept_tag_uses():
    # S once (7) although three stale tags use it, P1 + P2 (3 + 5); not K (kept tag new), not X
    # (repository b is absent from the stale frame, so its tag counts as kept).
    assert reclaimable_bytes(RECLAIM_STALE, RECLAIM_LAYERS) == 7 + 3 + 5
    nothing_stale = RECLAIM_STALE.assign(stale=False)
    assert reclaimable_bytes(nothing_stale, RECLAIM_LAYERS) == 0
    everything = pd.DataFrame(
        {"repository": ["a"] * 4 + ["b", "c"], "tag": ["old1", "old2", "new", "old3", "t", "old"], "stale": True}
    )
    assert reclaimable_bytes(everything, RECLAIM_LAYERS) == 7 + 11 + 13 + 17 + 19 + 3 + 5


def test_reclaimable_by_repository():
    per_repo = reclaimable_by_repository(RECLAIM_STALE, RECLAIM_LAYERS)
    assert per_repo.to_dict("list") == {
        "repository": ["a", "c"],
        "stale_tags": [3, 1],
        "reclaimable_bytes": [7 + 3 + 5, 7],  # S freed counts for both a and c
    }
    assert per_repo.attrs["reclaimable_bytes"] == 7 + 3 + 5


def test_reclaimable_bytes_mixed_dtypes():
    """A categorical layers frame against an object stale frame (and the reverse)."""
    cat_layers = as_categorical(RECLAIM_LAYERS)
    assert reclaimable_bytes(RECLAIM_STALE, cat_layers) == 15
    assert reclaimable_bytes(as_categorical(RECLAIM_STALE), RECLAIM_LAYERS) == 15
    assert reclaimable_bytes(as_categorical(RECLAIM_STALE), cat_layers) == 15


def test_reclaimable_end_to_end_from_stale_tags():
    manifests = manifests_frame(
        [
            ("a", "old1", "m1", 400, 18),
            ("a", "new", "m3", 1, 28),
            ("a", "old2", "m2", 400, 20),
            ("a", "old3", "m4", 400, 8),
            ("b", "t", "m6", 400, 32),
            ("c", "old", "m7", 400, 7),
        ]
    )
    stale = stale_tags(manifests, older_than="30d", keep=r"^t$", now=NOW)
    assert stale.set_index("tag")["stale"].to_dict() == {
        "new": False,
        "old1": True,
        "old2": True,
        "old3": True,
        "t": False,
        "old": True,
    }
    assert reclaimable_bytes(stale, RECLAIM_LAYERS) == 7 + 3 + 5


def test_reclaimable_names_missing_columns():
    with pytest.raises(ValueError, match="'stale'"):
        reclaimable_bytes(RECLAIM_STALE.drop(columns=["stale"]), RECLAIM_LAYERS)
    with pytest.raises(ValueError, match="'layer_digest'"):
        reclaimable_bytes(RECLAIM_STALE, RECLAIM_LAYERS.drop(columns=["layer_digest"]))


# --- parse_duration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", pd.Timedelta(days=90)),
        ("12h", pd.Timedelta(hours=12)),
        ("6w", pd.Timedelta(days=42)),
        ("1y", pd.Timedelta(days=365)),
        ("30m", pd.Timedelta(minutes=30)),
        ("1d12h", pd.Timedelta(hours=36)),
        ("1d 12h", pd.Timedelta(hours=36)),
        (" 2W ", pd.Timedelta(days=14)),
        ("90 days", pd.Timedelta(days=90)),
        ("1.5d", pd.Timedelta(hours=36)),
        ("45s", pd.Timedelta(seconds=45)),
        ("14", pd.Timedelta(days=14)),
        ("0d", pd.Timedelta(0)),
        (7, pd.Timedelta(days=7)),
        (np.int64(3), pd.Timedelta(days=3)),
        (dt.timedelta(hours=5), pd.Timedelta(hours=5)),
        (pd.Timedelta(minutes=1), pd.Timedelta(minutes=1)),
    ],
)
def test_parse_duration_accepts(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "abc",
        "d",
        "5x",
        "10 months",
        "1e5d",
        "5d-",
        "--5d",
        "5 d d",
        "٣d",
        1.5,
        None,
        True,
        [90],
        "9" * 30 + "d",
    ],
)
def test_parse_duration_rejects_with_the_value_and_accepted_forms(bad):
    with pytest.raises(ValueError) as info:
        parse_duration(bad)
    assert repr(bad) in str(info.value)
    assert "90d" in str(info.value) or "longer than" in str(info.value)


@pytest.mark.parametrize("bad", ["-5d", -1, pd.Timedelta(days=-1), dt.timedelta(seconds=-1)])
def test_parse_duration_rejects_negative(bad):
    with pytest.raises(ValueError, match="negative"):
        parse_duration(bad)


def test_format_duration_words():
    assert format_duration(pd.Timedelta(days=90)) == "90 days"
    assert format_duration(pd.Timedelta(hours=36)) == "1 day 12 hours"
    assert format_duration(pd.Timedelta(minutes=30)) == "30 minutes"
    assert format_duration(pd.Timedelta(0)) == "0 seconds"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_duration_raises_only_value_error(text):
    try:
        value = parse_duration(text)
    except ValueError:
        return
    assert isinstance(value, pd.Timedelta) and value >= pd.Timedelta(0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    older_than=st.one_of(st.text(max_size=12), st.sampled_from(["90d", "1d12h", "0"])),
    keep=st.one_of(st.none(), st.text(max_size=12)),
    match=st.one_of(st.none(), st.text(max_size=12)),
)
def test_stale_tags_raises_only_value_error_on_arbitrary_text(older_than, keep, match):
    try:
        stale = stale_tags(APP, older_than=older_than, keep=keep, match=match, now=NOW)
    except ValueError:
        return
    assert len(stale) == 7
    assert set(stale["stale"]) <= {True, False}


# --- accessories of a partial crawl: orphaned only when the subject is known to be absent ---------------

SUBJECT = "sha256:" + "a" * 64
GONE = "sha256:" + "e" * 64
SBOM_TAG = SUBJECT.replace(":", "-", 1) + ".sbom"
ORPHAN_TAG = GONE.replace(":", "-", 1) + ".sig"
CRAWL_ERROR_COLUMNS = ["repository", "tag", "stage", "error"]


def partial_crawl() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """web as a crawl that could not read the platforms of index 3.3.2 leaves it: inv.tags lists 3.3.2 on
    SUBJECT, the manifests frame has no row of it. The SBOM of 3.3.2 and a signature of GONE (which no tag
    carries) have rows; 1.0 is an old image. Returns manifests, tags and referrers."""
    manifests = manifests_frame(
        [
            ("web", "1.0", "sha256:" + "1" * 64, 400, 10),
            ("web", SBOM_TAG, "sha256:" + "b" * 64, None, 5),
            ("web", ORPHAN_TAG, "sha256:" + "c" * 64, None, 7),
        ]
    )
    manifests["subject"] = [None, SUBJECT, GONE]
    manifests["kind"] = ["image", "sbom", "signature"]
    tags = pd.DataFrame(
        {
            "repository": ["web"] * 4,
            "tag": ["1.0", "3.3.2", SBOM_TAG, ORPHAN_TAG],
            "digest": ["sha256:" + "1" * 64, SUBJECT, "sha256:" + "b" * 64, "sha256:" + "c" * 64],
        }
    )
    referrers = pd.DataFrame(
        {
            "repository": ["web", "web"],
            "subject": [SUBJECT, GONE],
            "digest": ["sha256:" + "b" * 64, "sha256:" + "c" * 64],
            "kind": ["sbom", "signature"],
            "size": pd.array([5, 7], dtype="Int64"),
        }
    )
    return manifests, tags, referrers


def crawl_errors(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=CRAWL_ERROR_COLUMNS)


def test_a_subject_the_tags_frame_shows_tagged_is_never_an_orphan():
    """inv.tags shows 3.3.2 on the SBOM's subject, so the SBOM follows a kept tag even though no manifest
    row of 3.3.2 was read; the signature of a digest no tag carries is still an orphan."""
    manifests, tags, referrers = partial_crawl()
    got = decisions(stale_tags(manifests, older_than="30d", now=NOW, tags=tags))
    assert got[("web", SBOM_TAG)] == (False, f"kept: subject {SUBJECT} is kept (tag '3.3.2')")
    assert got[("web", ORPHAN_TAG)] == (True, f"orphaned: subject {GONE} not found")
    assert got[("web", "1.0")] == (True, "older than 30 days")
    assert ("web", "3.3.2") not in got, "a tag without manifest rows is not planned"

    coverage = supply_chain(manifests, referrers, tags=tags)
    assert (coverage.attrs["orphaned"], coverage.attrs["orphaned_bytes"]) == (1, 7)

    with pytest.raises(ValueError, match=r"stale_tags \(tags\) needs column\(s\) 'digest'"):
        stale_tags(manifests, now=NOW, tags=tags.drop(columns="digest"))
    with pytest.raises(ValueError, match=r"supply_chain \(errors\) needs column\(s\) 'stage'"):
        supply_chain(manifests, referrers, errors=crawl_errors([]).drop(columns="stage"))


@pytest.mark.parametrize(
    ("errors", "known_absent"),
    [
        ([], True),
        ([("web", "3.3.2", "child manifest", "NotFoundError: child manifest ...")], False),
        ([("web", "2.0", "manifest", "ServerError: 500")], False),
        ([("web", None, "tags", "ServerError: 500")], False),
        ([("", None, "budget", "crawl stopped before its rate-limit budget ran out")], False),
        ([(np.nan, np.nan, "interrupted", "crawl stopped before it finished")], False),
        ([("api", "1.0", "manifest", "ServerError: 500")], True),
        ([("web", "1.0", "config", "ServerError: 500")], True),
        ([("web", None, "referrers", "ServerError: 500")], True),
    ],
)
def test_an_orphan_is_known_only_where_the_crawl_read_every_tag(errors, known_absent):
    """A subject not found is known to be absent only when no error row says the crawl may have missed a tag
    of the repository (or stopped early): unreadable configs and referrers hide no tag."""
    manifests, tags, referrers = partial_crawl()
    found = crawl_errors(errors)
    got = decisions(stale_tags(manifests, older_than="30d", now=NOW, tags=tags, errors=found))
    if known_absent:
        assert got[("web", ORPHAN_TAG)] == (True, f"orphaned: subject {GONE} not found")
    else:
        assert got[("web", ORPHAN_TAG)] == (
            False,
            f"kept: subject {GONE} not found, but the crawl did not read every tag of this repository",
        )
    assert got[("web", SBOM_TAG)] == (False, f"kept: subject {SUBJECT} is kept (tag '3.3.2')")
    assert supply_chain(manifests, referrers, tags=tags, errors=found).attrs["orphaned"] == int(known_absent)


def test_output_dtypes_are_the_same_for_an_empty_crawl():
    """An empty registry (or one emptied of its tags) gives the dtypes a crawl with data gives, so results of
    several crawls concatenate and type-check alike: text columns are pandas' text dtype, lists are objects."""
    manifests, tags, _ = partial_crawl()
    child = "sha256:" + "f" * 64
    errors = crawl_errors(
        [("web", "3.3.2", "child manifest", f"NotFoundError: child manifest {child} is missing from web")]
    )
    layers = FLEET.assign(kind="image")

    def results(manifests, tags, errors, layers):
        stale = stale_tags(manifests, older_than="30d", now=NOW, tags=tags, errors=errors)
        return {
            "shared_layers": shared_layers(layers),
            "stale_tags": stale,
            "cleanup_plan": cleanup_plan(stale),
            "dangling_entries": dangling_entries(tags, errors),
            "storage_usage by repository and kind": storage_usage(layers, by=["repository", "kind"]),
        }

    full = results(manifests, tags, errors, layers)
    empty = results(manifests.iloc[:0], tags.iloc[:0], errors.iloc[:0], layers.iloc[:0])
    assert all(len(frame) for frame in full.values()) and not any(len(frame) for frame in empty.values())
    for name, frame in full.items():
        assert {c: str(t) for c, t in empty[name].dtypes.items()} == {c: str(t) for c, t in frame.dtypes.items()}, name
    text = pd.Series(["text"]).dtype
    assert empty["stale_tags"]["reason"].dtype == text and empty["stale_tags"]["subject"].dtype == text
    assert empty["dangling_entries"]["index_digest"].dtype == text
    assert empty["shared_layers"]["repository_list"].dtype == object
