"""Charts checked the way a reader sees them: drawn artists compared with the data they show.

Frames are built by hand here, with the columns `regframe.analysis` produces; every expected value
is derived in this file from those hand-built frames. A few PNGs land in test-artifacts/plots for
eyeballing.
"""

from __future__ import annotations

import itertools
import os
import re
import statistics
import subprocess
import sys
from io import BytesIO, StringIO
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.colors import to_rgba
from matplotlib.text import Text

from regframe.analysis import reclaimable_bytes, sharing_matrix
from regframe.plot import (
    format_bytes,
    growth,
    layer_sizes,
    repo_color,
    sharing_heatmap,
    shorten,
    stale_tags,
    storage,
)
from regframe.plot import supply_chain as plot_supply_chain

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "plots"
BYTE_LABEL = re.compile(r"^\d+(\.\d)? (B|KB|MB|GB|TB)$")
LONG_NAMES = [
    "team-a/payment-processing-service-backend",
    "data-science-and-machine-learning/feature-store",
    "platform/auth-gateway-with-a-very-long-name-indeed",
]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def render(ax) -> bytes:
    """Render the whole figure to PNG, as a notebook would, and return the bytes."""
    buffer = BytesIO()
    ax.get_figure().savefig(buffer, format="png")
    data = buffer.getvalue()
    assert data.startswith(b"\x89PNG")
    return data


def save_artifact(ax, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ax.get_figure().savefig(ARTIFACTS / name, dpi=100)


def repo_names(count: int) -> list[str]:
    teams = ["team-a", "team-b", "platform", "library"]
    names = [f"{teams[i % len(teams)]}/service-{i:02d}" for i in range(count)]
    names[: min(count, len(LONG_NAMES))] = LONG_NAMES[: min(count, len(LONG_NAMES))]
    return names


def assert_labels_apart(ax, labels: list[Text]) -> None:
    """No two visible tick labels share any pixel once the figure is laid out."""
    fig = ax.get_figure()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [label.get_window_extent(renderer) for label in labels if label.get_visible() and label.get_text()]
    assert len(boxes) == len([label for label in labels if label.get_text()])
    for a, b in itertools.combinations(boxes, 2):
        overlap_w = min(a.x1, b.x1) - max(a.x0, b.x0)
        overlap_h = min(a.y1, b.y1) - max(a.y0, b.y0)
        assert overlap_w <= 0 or overlap_h <= 0, f"tick labels overlap: {a} and {b}"
    assert min(label.get_fontsize() for label in labels) >= 5


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (999, "999 B"),
        (1000, "1.0 KB"),
        (1_500_000, "1.5 MB"),
        (999_949, "999.9 KB"),
        (999_950, "1.0 MB"),
        (1_200_000_000, "1.2 GB"),
        (3 * 10**12, "3.0 TB"),
        (-1500, "-1.5 KB"),
        (np.int64(2_000_000), "2.0 MB"),
        (2.5e9, "2.5 GB"),
        (float("nan"), "n/a"),
        (None, "n/a"),
        (pd.NA, "n/a"),
    ],
)
def test_format_bytes(value, expected):
    assert format_bytes(value) == expected


@pytest.mark.parametrize("bad", ["12", True, [1]])
def test_format_bytes_rejects_non_numbers(bad):
    with pytest.raises(TypeError, match="number of bytes"):
        format_bytes(bad)


def test_shorten_keeps_short_names_and_cuts_the_middle_of_long_ones():
    assert shorten("library/nginx") == "library/nginx"
    exact = "x" * 28
    assert shorten(exact) == exact
    name = "team-a/very-long-name-of-the-payment-service"
    short = shorten(name)
    assert len(short) <= 28
    assert short.startswith("team-a/...")
    assert short.endswith("-service")
    worker = shorten("data-science-and-machine-learning/worker")
    assert worker.endswith("/worker") and "..." in worker and len(worker) <= 28
    assert shorten(name) == short
    with pytest.raises(ValueError, match="width"):
        shorten(name, width=4)


@settings(max_examples=200, deadline=None)
@given(name=st.text(alphabet="abc-_/.xyz0123456789", min_size=1, max_size=80), width=st.integers(5, 60))
def test_shorten_never_exceeds_width_and_keeps_both_ends(name, width):
    short = shorten(name, width)
    if len(name) <= width:
        assert short == name
    else:
        assert len(short) <= width
        assert "..." in short
        assert short[0] == name[0]
        assert short[-1] == name[-1]


def test_repo_color_is_stable_across_calls_and_processes():
    names = repo_names(30)
    colors = [repo_color(n) for n in names]
    assert colors == [repo_color(n) for n in names]
    assert len(set(colors)) > 3
    assert all(len(to_rgba(c)) == 4 for c in colors)
    script = "import sys; from regframe.plot import repo_color; print(','.join(repo_color(n) for n in sys.argv[1:]))"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, "-c", script, *names], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().split(",") == colors


# --------------------------------------------------------------------------- storage


def make_usage(count: int, total: int = 7_500_000_000, logical: int = 17_250_000_000) -> pd.DataFrame:
    names = repo_names(count)
    exclusive = [(count - i) * 40_000_000 + i * 1_000 for i in range(count)]
    shared = [(i % 4) * 15_000_000 for i in range(count)]
    usage = pd.DataFrame(
        {
            "repository": names,
            "images": [1 + i % 3 for i in range(count)],
            "tags": [2 + i % 5 for i in range(count)],
            "logical_bytes": [3 * (e + s) for e, s in zip(exclusive, shared, strict=True)],
            "stored_bytes": [e + s for e, s in zip(exclusive, shared, strict=True)],
            "exclusive_bytes": exclusive,
            "shared_bytes": shared,
        }
    )
    usage = usage.sort_values("stored_bytes", ascending=False, ignore_index=True)
    usage.attrs.update(total_bytes=total, logical_bytes=logical, dedup_ratio=logical / total)
    return usage


def parse_bytes(label: str) -> float:
    number, unit = label.split()
    return float(number) * 1000 ** ["B", "KB", "MB", "GB", "TB"].index(unit)


def bar_containers(ax) -> dict[str, list]:
    return {c.get_label(): list(c) for c in ax.containers}


def test_storage_folds_the_rest_and_draws_exact_widths():
    usage = make_usage(20)
    ax = storage(usage, top=15)
    render(ax)
    save_artifact(ax, "storage.png")
    bars = bar_containers(ax)
    assert set(bars) == {"exclusive", "shared"}
    assert len(bars["exclusive"]) == len(bars["shared"]) == 16

    head, rest = usage.iloc[:15], usage.iloc[15:]
    want_exclusive = [*head["exclusive_bytes"], rest["exclusive_bytes"].sum()]
    want_shared = [*head["shared_bytes"], rest["shared_bytes"].sum()]
    assert [b.get_width() for b in bars["exclusive"]] == pytest.approx(want_exclusive)
    assert [b.get_width() for b in bars["shared"]] == pytest.approx(want_shared)
    assert [b.get_x() for b in bars["shared"]] == pytest.approx(want_exclusive)

    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [shorten(n) for n in head["repository"]] + ["other (5 repositories)"]
    assert all(len(label) <= 28 for label in labels[:-1])

    # Largest on top: the first bar sits highest on screen.
    bottom, top = ax.get_ylim()
    assert bottom > top
    ys = [b.get_y() for b in bars["exclusive"]]
    assert ys == sorted(ys)

    for bar, name in zip(bars["exclusive"][:-1], head["repository"], strict=True):
        assert bar.get_facecolor() == to_rgba(repo_color(name))
    red, green, blue, _ = bars["exclusive"][-1].get_facecolor()
    assert red == green == blue, "the folded 'other' bar should be grey, not a repository's colour"

    title = ax.get_title(loc="left")
    assert "Registry total 7.5 GB stored" in title
    assert "2.3x dedup" in title
    assert len(ax.get_legend().get_texts()) == 2
    tick_texts = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert tick_texts and all(BYTE_LABEL.match(t) for t in tick_texts), tick_texts


def test_storage_with_fewer_repositories_than_top_has_no_other_bar():
    usage = make_usage(5)
    ax = storage(usage, top=15)
    render(ax)
    bars = bar_containers(ax)
    assert len(bars["exclusive"]) == 5
    assert [t.get_text() for t in ax.get_yticklabels()] == [shorten(n) for n in usage["repository"]]


def test_storage_orders_by_stored_bytes_even_when_input_is_not_sorted():
    usage = make_usage(6)
    shuffled = usage.sample(frac=1, random_state=3)
    shuffled.attrs = dict(usage.attrs)
    ax = storage(shuffled)
    want = usage.sort_values("stored_bytes", ascending=False)["repository"]
    assert [t.get_text() for t in ax.get_yticklabels()] == [shorten(n) for n in want]


def test_storage_without_totals_still_titles_and_honours_ax():
    usage = make_usage(4)
    usage.attrs = {}
    fig, ax = plt.subplots()
    assert storage(usage, ax=ax) is ax
    assert fig.axes == [ax]
    assert "dedup" not in ax.get_title(loc="left")
    render(ax)


def test_storage_40_repositories_labels_do_not_overlap():
    usage = make_usage(40)
    ax = storage(usage, top=40)
    assert len(bar_containers(ax)["exclusive"]) == 40
    assert_labels_apart(ax, ax.get_yticklabels())
    save_artifact(ax, "storage-40.png")
    small = storage(make_usage(5))
    assert ax.get_figure().get_figheight() > small.get_figure().get_figheight()


def test_storage_names_missing_columns():
    with pytest.raises(ValueError, match="exclusive_bytes"):
        storage(pd.DataFrame({"repository": ["a"], "stored_bytes": [1], "shared_bytes": [0]}))


# --------------------------------------------------------------------------- sharing heatmap

LAYER_COLUMNS = [
    "repository",
    "tag",
    "manifest_digest",
    "platform",
    "position",
    "layer_digest",
    "size",
    "media_type",
]


def make_layers(count: int, *, seed: int = 7) -> pd.DataFrame:
    """Images built on a few shared bases plus their own layers; some layers repeat across tags."""
    rng = np.random.default_rng(seed)
    bases = {f"sha256:base{k}": int(s) for k, s in enumerate(rng.integers(2_000_000, 80_000_000, 5))}
    rows = []
    for r, name in enumerate(repo_names(count)):
        own = {f"sha256:{r}-{k}": int(s) for k, s in enumerate(rng.integers(1_000, 300_000_000, 1 + r % 4))}
        base = dict(itertools.islice(bases.items(), r % 3, r % 3 + 1 + r % 2))
        for t in range(1 + r % 3):
            manifest = f"sha256:m{r}-{t}"
            for position, (digest, size) in enumerate({**base, **own}.items()):
                rows.append(
                    (
                        name,
                        f"v{t}",
                        manifest,
                        "linux/amd64",
                        position,
                        digest,
                        size,
                        "application/vnd.oci.image.layer.v1.tar+gzip",
                    )
                )
    layers = pd.DataFrame(rows, columns=LAYER_COLUMNS)
    layers["size"] = layers["size"].astype("Int64")
    for column in ("repository", "layer_digest"):
        layers[column] = layers[column].astype("category")
    return layers


def expected_matrix(layers: pd.DataFrame, top: int) -> tuple[list[str], np.ndarray]:
    """Bytes in common per repository pair from plain Python sets of (digest, size)."""
    held: dict[str, set[tuple[str, int]]] = {}
    for repo, digest, size in zip(layers["repository"], layers["layer_digest"], layers["size"], strict=True):
        held.setdefault(str(repo), set()).add((str(digest), int(size)))
    stored = {repo: sum(size for _, size in blobs) for repo, blobs in held.items()}
    order = sorted(stored, key=lambda repo: (-stored[repo], repo))[:top]
    matrix = np.array([[sum(size for _, size in held[a] & held[b]) for b in order] for a in order], dtype=float)
    return order, matrix


def test_sharing_heatmap_image_equals_independent_matrix():
    layers = make_layers(9)
    ax = sharing_heatmap(sharing_matrix(layers), top=6)
    render(ax)
    save_artifact(ax, "sharing-heatmap.png")
    order, matrix = expected_matrix(layers, top=6)
    image = ax.get_images()[0]
    np.testing.assert_array_equal(np.asarray(image.get_array(), dtype=float), matrix)
    assert [t.get_text() for t in ax.get_yticklabels()] == [shorten(n) for n in order]
    assert [t.get_text() for t in ax.get_xticklabels()] == [shorten(n) for n in order]
    assert all(t.get_rotation() == 45 for t in ax.get_xticklabels())

    cells = [t for t in ax.texts if BYTE_LABEL.match(t.get_text())]
    assert len(cells) == int((matrix > 0).sum())
    for text in cells:
        column, row = text.get_position()
        assert parse_bytes(text.get_text()) == pytest.approx(matrix[int(row), int(column)], rel=0.05)
    assert len(ax.get_figure().axes) == 2, "colour bar missing"
    assert "6 of 9" in ax.get_title(loc="left")


def test_sharing_heatmap_large_matrix_has_no_annotations_and_readable_labels():
    layers = make_layers(24)
    ax = sharing_heatmap(sharing_matrix(layers), top=20)
    _, matrix = expected_matrix(layers, top=20)
    np.testing.assert_array_equal(np.asarray(ax.get_images()[0].get_array(), dtype=float), matrix)
    assert not [t for t in ax.texts if BYTE_LABEL.match(t.get_text())]
    assert_labels_apart(ax, ax.get_yticklabels())
    save_artifact(ax, "sharing-heatmap-20.png")


def small_matrix() -> pd.DataFrame:
    names = ["a/x", "b/y", "c/z"]
    return pd.DataFrame([[300, 100, 0], [100, 500, 50], [0, 50, 200]], index=names, columns=names)


def test_sharing_heatmap_draws_a_given_matrix_into_a_given_ax():
    matrix = small_matrix()
    _fig, ax = plt.subplots()
    assert sharing_heatmap(matrix, ax=ax) is ax
    np.testing.assert_array_equal(np.asarray(ax.get_images()[0].get_array()), matrix.to_numpy())
    assert "largest" not in ax.get_title(loc="left"), "every repository is drawn"
    top2 = sharing_heatmap(matrix, top=2)
    np.testing.assert_array_equal(np.asarray(top2.get_images()[0].get_array()), [[500, 100], [100, 300]])
    assert "largest 2 of 3" in top2.get_title(loc="left")
    with pytest.raises(ValueError, match="square"):
        sharing_heatmap(matrix.iloc[:2])


def test_sharing_heatmap_counts_repositories_cut_before_it():
    """A matrix already cut to ``top`` by sharing_matrix can say, in attrs, how many there were."""
    matrix = small_matrix().iloc[:2, :2].copy()
    matrix.attrs["total_repositories"] = 7
    assert "largest 2 of 7" in sharing_heatmap(matrix).get_title(loc="left")


def test_sharing_heatmap_refuses_what_is_not_a_sharing_matrix():
    with pytest.raises(ValueError, match="sharing_matrix"):
        sharing_heatmap(make_layers(3))
    with pytest.raises(ValueError, match="DataFrame"):
        sharing_heatmap(small_matrix().to_numpy())
    with pytest.raises(ValueError, match="positive int"):
        sharing_heatmap(small_matrix(), top=0)


# --------------------------------------------------------------------------- stale tags


def make_stale(count: int, *, older_than_days: int = 90, reclaimable: int | None = 3_400_000_000) -> pd.DataFrame:
    now = pd.Timestamp("2025-06-01", tz="UTC")
    rows = []
    for r, name in enumerate(repo_names(count)):
        for t in range(1 + r % 4):
            days = (r * 7 + t * 45) % 400 + 0.5
            age = pd.Timedelta(days=days)
            rows.append((name, f"v{t}", f"sha256:{r}{t}", now - age, age, 1_000_000, days > older_than_days, ""))
    rows.append((repo_names(count)[0], "undated", "sha256:u", pd.NaT, pd.NaT, 10, False, "no created date"))
    stale = pd.DataFrame(rows, columns=["repository", "tag", "digest", "created", "age", "size", "stale", "reason"])
    stale["created"] = pd.to_datetime(stale["created"], utc=True).astype("datetime64[ns, UTC]")
    stale.attrs.update(older_than=pd.Timedelta(days=older_than_days), now=now)
    if reclaimable is not None:
        stale.attrs["reclaimable_bytes"] = reclaimable
    return stale


def collection(ax, gid: str):
    (found,) = [c for c in ax.collections if c.get_gid() == gid]
    return found


def test_stale_tags_dots_threshold_and_title():
    stale = make_stale(8)
    ax = stale_tags(stale)
    render(ax)
    save_artifact(ax, "stale-tags.png")
    dated = stale[stale["age"].notna()]
    stale_dots = collection(ax, "stale").get_offsets()
    kept_dots = collection(ax, "kept").get_offsets()
    assert len(stale_dots) == int(dated["stale"].sum())
    assert len(kept_dots) == int((~dated["stale"]).sum())
    want_stale_days = sorted(a.total_seconds() / 86400 for a in dated.loc[dated["stale"], "age"])
    assert sorted(stale_dots[:, 0]) == pytest.approx(want_stale_days)

    (threshold,) = [line for line in ax.get_lines() if line.get_gid() == "threshold"]
    assert threshold.get_xdata()[0] == pytest.approx(90.0)
    assert any("older than 90 days" in t.get_text() for t in ax.texts)

    title = ax.get_title(loc="left")
    assert f"{int(dated['stale'].sum())} of {len(stale)} tags stale" in title
    assert "3.4 GB reclaimable" in title
    assert "1 tag without a creation date" in ax.get_xlabel()

    repos_by_stale = dated.groupby("repository")["stale"].sum()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert sorted(labels) == sorted(shorten(n) for n in repos_by_stale.index)
    assert labels[0] == shorten(repos_by_stale.idxmax())


def test_stale_tags_title_counts_undated_stale_tags_too():
    """An orphaned accessory is stale and may have no date: it is not drawn, but the title's count is the
    plan's, as the stale-tag widget's summary above the chart gives it."""
    stale = make_stale(3)
    undated = stale["tag"] == "undated"
    stale.loc[undated, "stale"] = True
    title = stale_tags(stale).get_title(loc="left")
    assert f"{int(stale['stale'].sum())} of {len(stale)} tags stale" in title
    assert int(stale["stale"].sum()) == int(stale.loc[stale["age"].notna(), "stale"].sum()) + 1


def test_stale_tags_without_reclaimable_and_with_ax():
    stale = make_stale(3, older_than_days=30, reclaimable=None)
    _, ax = plt.subplots()
    assert stale_tags(stale, ax=ax) is ax
    (threshold,) = [line for line in ax.get_lines() if line.get_gid() == "threshold"]
    assert threshold.get_xdata()[0] == pytest.approx(30.0)
    assert "reclaimable" not in ax.get_title(loc="left")
    render(ax)


def test_stale_tags_40_repositories_fold_into_other_and_stay_readable():
    stale = make_stale(40)
    ax = stale_tags(stale, top=25)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 26 and labels[-1] == "other (15 repositories)"
    dated = stale[stale["age"].notna()]
    dots = len(collection(ax, "stale").get_offsets()) + len(collection(ax, "kept").get_offsets())
    assert dots == len(dated)
    assert_labels_apart(ax, ax.get_yticklabels())
    save_artifact(ax, "stale-tags-40.png")

    every = stale_tags(stale, top=40)
    assert len(every.get_yticklabels()) == 40
    assert_labels_apart(every, every.get_yticklabels())


def test_stale_tags_far_outlier_switches_to_log_age_axis():
    stale = make_stale(4)
    stale.loc[0, "age"] = pd.Timedelta(days=20_000)
    stale.loc[0, "stale"] = True
    ax = stale_tags(stale)
    assert ax.get_xscale() == "symlog"
    assert ax.get_xlim()[1] > 20_000
    assert max(collection(ax, "stale").get_offsets()[:, 0]) == pytest.approx(20_000)


# --------------------------------------------------------------------------- layer sizes


def test_layer_sizes_counts_each_distinct_layer_once():
    layers = make_layers(12)
    ax = layer_sizes(layers)
    render(ax)
    save_artifact(ax, "layer-sizes.png")
    distinct = {str(d): int(s) for d, s in zip(layers["layer_digest"], layers["size"], strict=True)}
    assert len(distinct) < len(layers), "fixture should repeat layers across tags and repositories"
    heights = [patch.get_height() for patch in ax.patches]
    assert sum(heights) == len(distinct)
    assert ax.get_xscale() == "log"

    edges = sorted({patch.get_x() for patch in ax.patches})
    ratios = np.diff(np.log(edges))
    assert np.allclose(ratios, ratios[0])

    (median,) = [line for line in ax.get_lines() if line.get_gid() == "median"]
    want = statistics.median(distinct.values())
    assert median.get_xdata()[0] == pytest.approx(want)
    assert format_bytes(want) in median.get_label()

    ax.get_figure().canvas.draw()
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert len(ticks) >= 2 and all(BYTE_LABEL.match(t) for t in ticks), ticks


def test_layer_sizes_single_size_and_empty_input():
    layers = make_layers(1).iloc[:1]
    _, ax = plt.subplots()
    assert layer_sizes(layers, ax=ax) is ax
    assert sum(p.get_height() for p in ax.patches) == 1
    empty = layer_sizes(layers.iloc[:0])
    assert "No layers" in empty.texts[0].get_text()
    render(empty)


def test_empty_inputs_draw_an_explicit_note():
    usage = make_usage(3).iloc[:0]
    assert "No repositories" in storage(usage).texts[0].get_text()
    layers = make_layers(2).iloc[:0]
    assert "No layers" in sharing_heatmap(sharing_matrix(layers)).texts[0].get_text()
    undated = make_stale(2)
    undated["age"] = pd.Series(pd.NaT, index=undated.index, dtype="timedelta64[ns]")
    assert "creation date" in stale_tags(undated).texts[0].get_text()


def test_stale_tags_without_threshold_draws_no_line():
    stale = make_stale(3)
    stale.attrs.pop("older_than")
    ax = stale_tags(stale)
    assert not [line for line in ax.get_lines() if line.get_gid() == "threshold"]
    assert len(collection(ax, "stale").get_offsets()) == int(stale["stale"].sum())


def test_charts_draw_real_analysis_output():
    """The frames regframe.analysis produces plot as-is; bars match sets computed here."""
    from regframe.analysis import stale_tags as analyse_stale
    from regframe.analysis import storage_usage

    layers = make_layers(18)
    held: dict[str, set[tuple[str, int]]] = {}
    for repo, digest, size in zip(layers["repository"], layers["layer_digest"], layers["size"], strict=True):
        held.setdefault(str(repo), set()).add((str(digest), int(size)))
    owners: dict[tuple[str, int], int] = {}
    for blobs in held.values():
        for blob in blobs:
            owners[blob] = owners.get(blob, 0) + 1
    exclusive = {repo: sum(s for d, s in blobs if owners[(d, s)] == 1) for repo, blobs in held.items()}
    stored = {repo: sum(s for _, s in blobs) for repo, blobs in held.items()}
    order = sorted(stored, key=lambda repo: (-stored[repo], repo))

    ax = storage(storage_usage(layers), top=10)
    bars = bar_containers(ax)
    rest = order[10:]
    assert [b.get_width() for b in bars["exclusive"]] == pytest.approx(
        [exclusive[r] for r in order[:10]] + [sum(exclusive[r] for r in rest)]
    )
    total = sum(s for _, s in owners)
    assert f"Registry total {format_bytes(total)} stored" in ax.get_title(loc="left")

    now = pd.Timestamp("2025-06-01", tz="UTC")
    manifests = pd.DataFrame(
        {
            "repository": ["a/x", "a/x", "b/y"],
            "tag": ["old", "new", "mid"],
            "digest": ["sha256:1", "sha256:2", "sha256:3"],
            "created": pd.to_datetime(["2024-01-01", "2025-05-20", "2025-01-01"], utc=True),
            "size": [10, 20, 30],
        }
    )
    stale = analyse_stale(manifests, older_than="90d", now=now)
    ax = stale_tags(stale)
    want_stale = [(now - pd.Timestamp(c, tz="UTC")).days > 90 for c in ("2024-01-01", "2025-05-20", "2025-01-01")]
    assert len(collection(ax, "stale").get_offsets()) == sum(want_stale)
    (threshold,) = [line for line in ax.get_lines() if line.get_gid() == "threshold"]
    assert threshold.get_xdata()[0] == pytest.approx(90.0)
    render(ax)


# --------------------------------------------------------------------------- one calling convention


def test_chart_options_are_keyword_only():
    usage, matrix, stale, layers = make_usage(3), small_matrix(), make_stale(3), make_layers(3)
    _fig, ax = plt.subplots()
    for call in (
        lambda: storage(usage, 15),
        lambda: sharing_heatmap(matrix, 2),
        lambda: stale_tags(stale, layers),
        lambda: stale_tags(stale, None, 30),
        lambda: layer_sizes(layers, ax),
    ):
        with pytest.raises(TypeError, match="positional"):
            call()


@pytest.mark.parametrize("chart", ["storage", "stale_tags"])
@pytest.mark.parametrize("top", [0, -1, 2.5, "3", True])
def test_top_must_be_a_positive_int(chart, top):
    frame = make_usage(3) if chart == "storage" else make_stale(3)
    with pytest.raises(ValueError, match="top must be a positive int"):
        globals()[chart](frame, top=top)


def test_extra_keyword_arguments_reach_the_matplotlib_artists():
    ax = storage(make_usage(4), color="#123456", alpha=0.5)
    for bar in itertools.chain(*(container for container in ax.containers)):
        assert bar.get_facecolor() == to_rgba("#123456", 0.5)

    image = sharing_heatmap(small_matrix(), cmap="viridis", vmax=250).get_images()[0]
    assert image.get_cmap().name == "viridis"
    assert image.norm.vmax == 250

    ax = stale_tags(make_stale(3), alpha=0.3, marker="s")
    for gid in ("kept", "stale"):
        assert collection(ax, gid).get_alpha() == 0.3

    ax = layer_sizes(make_layers(4), color="#abcdef", bins=5)
    assert len(ax.patches) == 5
    assert all(patch.get_facecolor() == to_rgba("#abcdef") for patch in ax.patches)


def reclaim_fixture() -> tuple[pd.DataFrame, pd.DataFrame]:
    """a:old and b:old are stale. Layer L1 (1,500,000 B) is only in a:old, L3 (2,000,000 B) only in b:old;
    base B (7,000,000 B) is also in kept a:new and L2 (250,000 B) in kept b:x, so neither is freed."""
    now = pd.Timestamp("2025-06-01", tz="UTC")
    tags = [
        ("a/app", "old", 400, True),
        ("a/app", "new", 5, False),
        ("b/api", "old", 200, True),
        ("b/api", "x", 20, False),
    ]
    stale = pd.DataFrame(
        {
            "repository": [r for r, *_ in tags],
            "tag": [t for _, t, *_ in tags],
            "digest": [f"sha256:{r}{t}" for r, t, *_ in tags],
            "created": [now - pd.Timedelta(days=d) for *_, d, _ in tags],
            "age": [pd.Timedelta(days=d) for *_, d, _ in tags],
            "size": [1, 1, 1, 1],
            "stale": [s for *_, s in tags],
            "reason": ["", "", "", ""],
        }
    )
    stale.attrs.update(older_than=pd.Timedelta(days=90), now=now)
    uses = {
        ("a/app", "old"): {"B": 7_000_000, "L1": 1_500_000},
        ("a/app", "new"): {"B": 7_000_000},
        ("b/api", "old"): {"L2": 250_000, "L3": 2_000_000},
        ("b/api", "x"): {"L2": 250_000},
    }
    layers = pd.DataFrame(
        [
            (repo, tag, f"sha256:m-{repo}-{tag}", digest, size)
            for (repo, tag), held in uses.items()
            for digest, size in held.items()
        ],
        columns=["repository", "tag", "manifest_digest", "layer_digest", "size"],
    )
    return stale, layers


def test_stale_tags_given_layers_titles_the_reclaimable_bytes():
    stale, layers = reclaim_fixture()
    ax = stale_tags(stale, layers=layers)
    # L1 + L3 = 1,500,000 + 2,000,000 = 3,500,000 bytes.
    assert "2 of 4 tags stale, 3.5 MB reclaimable" in ax.get_title(loc="left")
    assert "reclaimable_bytes" not in stale.attrs
    render(ax)


def test_stale_tags_layers_win_over_attrs_and_are_checked():
    stale, layers = reclaim_fixture()
    stale.attrs["reclaimable_bytes"] = 9_000_000_000
    title = stale_tags(stale, layers=layers).get_title(loc="left")
    assert "3.5 MB reclaimable" in title and "9.0 GB" not in title
    assert "9.0 GB reclaimable" in stale_tags(stale).get_title(loc="left")
    with pytest.raises(ValueError, match="'layer_digest'"):
        stale_tags(stale, layers=layers.drop(columns=["layer_digest"]))


def test_reclaim_fixture_agrees_with_the_analysis():
    """The chart's title number is the analysis' number; here both equal the hand count."""
    stale, layers = reclaim_fixture()
    assert reclaimable_bytes(stale, layers) == 3_500_000


# --------------------------------------------------------------------------- growth over snapshots


def test_growth_reads_snapshot_times_in_every_iso_form():
    """``attrs["total_bytes"]`` keys are parsed one by one: a whole second without a fraction, a fraction with a
    ``Z``, another offset, a Timestamp; a snapshot named only there with a total of 0 (one with no tagged
    repository) is drawn at 0, and the title takes the first and last totals in time order, not in text order."""
    times = [pd.Timestamp(t, tz="UTC") for t in ("2026-03-01 12:00", "2026-03-02 12:00:00.25", "2026-03-03 12:00")]
    frame = pd.DataFrame(
        {"snapshot": times, "repository": ["app"] * 3, "stored_bytes": [100, 150, 170]},
    )
    frame.attrs["total_bytes"] = {
        "2026-03-03T13:00:00+01:00": 170,
        "2026-03-01T12:00:00+00:00": 100,
        "2026-03-02T12:00:00.250000Z": 150,
        pd.Timestamp("2026-02-28 12:00", tz="UTC"): 0,
    }
    ax = growth(frame)
    (line,) = ax.get_lines()
    expected = [pd.Timestamp("2026-02-28 12:00"), *(t.tz_localize(None) for t in times)]
    assert list(line.get_xdata()) == [t.to_datetime64() for t in expected]
    assert list(line.get_ydata()) == [0, 100, 150, 170]
    assert ax.get_title(loc="left") == "Registry 170 B stored, +170 B over 4 snapshots"
    frame.attrs["total_bytes"] = {"yesterday-ish": 1}
    with pytest.raises(ValueError, match="yesterday-ish"):
        growth(frame)


def four_snapshots() -> pd.DataFrame:
    """Two repositories over four months; the registry totals count a shared base layer once, so each lies
    between the larger repository and the sum of both."""
    months = [pd.Timestamp(f"2026-0{m}-01", tz="UTC") for m in (1, 2, 3, 4)]
    big, small = [100, 150, 170, 200], [40, 40, 60, 30]
    frame = pd.DataFrame(
        {
            "snapshot": months * 2,
            "repository": ["big"] * 4 + ["small"] * 4,
            "stored_bytes": big + small,
        }
    )
    frame.attrs["total_bytes"] = {
        month.isoformat(): total for month, total in zip(months, [120, 170, 200, 210], strict=True)
    }
    return frame


def test_growth_draws_only_the_snapshots_left_in_a_filtered_frame():
    """pandas keeps ``attrs`` through filtering: the totals of snapshots filtered out are neither drawn (as 0)
    nor counted in the title."""
    frame = four_snapshots()
    recent = frame[frame["snapshot"] >= pd.Timestamp("2026-03-01", tz="UTC")]
    assert recent.attrs == frame.attrs
    ax = growth(recent)
    lines = {line.get_label(): line for line in ax.get_lines()}
    kept = [np.datetime64("2026-03-01T00:00"), np.datetime64("2026-04-01T00:00")]
    for name, stored in (("big", [170, 200]), ("small", [60, 30])):
        assert list(lines[name].get_xdata()) == kept
        assert list(lines[name].get_ydata()) == stored
    assert ax.get_title(loc="left") == "Registry 210 B stored, +10 B over 2 snapshots"

    early = frame[frame["snapshot"] <= pd.Timestamp("2026-02-01", tz="UTC")]
    assert growth(early).get_title(loc="left") == "Registry 170 B stored, +50 B over 2 snapshots"


def test_growth_titles_some_repositories_without_the_registry_totals():
    """A frame cut down to some repositories holds less than its registry's totals: those do not title it."""
    frame = four_snapshots()
    ax = growth(frame[frame["repository"] == "small"])
    assert ax.get_title(loc="left") == "Stored bytes per repository over 4 snapshots"
    assert growth(frame).get_title(loc="left") == "Registry 210 B stored, +90 B over 4 snapshots"


def test_growth_refusing_its_attrs_leaves_no_figure_open():
    frame = four_snapshots()
    frame.attrs["total_bytes"] = {"yesterday-ish": 1}
    before = plt.get_fignums()
    for _ in range(3):
        with pytest.raises(ValueError, match="yesterday-ish"):
            growth(frame)
    assert plt.get_fignums() == before


# --------------------------------------------------------------------------- titles of filtered frames


def coverage_of_two_teams() -> pd.DataFrame:
    rows = [
        ("team-a/api", 4, 3, 2, 1, 1, 500),
        ("team-a/web", 2, 0, 1, 0, 0, 0),
        ("team-b/db", 5, 5, 5, 5, 2, 1500),
    ]
    columns = ["repository", "images", "signed", "with_sbom", "with_attestation", "orphaned", "orphaned_bytes"]
    frame = pd.DataFrame(rows, columns=columns)
    frame.attrs.update(images=11, signed=8, with_sbom=8, with_attestation=6, orphaned=3, orphaned_bytes=2000)
    return frame


def test_supply_chain_titles_the_rows_it_is_given():
    """``attrs`` carry the whole registry's totals and survive filtering: a team's rows get the team's title,
    and ``attrs`` only fill in a column the frame lacks while they agree with the rest of it."""
    coverage = coverage_of_two_teams()
    team = coverage[coverage["repository"].str.startswith("team-a/")]
    assert team.attrs == coverage.attrs
    title = plot_supply_chain(team).get_title(loc="left")
    assert title == "Signed: 3 of 6 images (50%); SBOM: 3; 1 orphaned accessories (500 B)"
    assert plot_supply_chain(coverage).get_title(loc="left") == (
        "Signed: 8 of 11 images (73%); SBOM: 8; 3 orphaned accessories (2.0 KB)"
    )
    counts_only = coverage.drop(columns=["orphaned", "orphaned_bytes"])
    assert "3 orphaned accessories (2.0 KB)" in plot_supply_chain(counts_only).get_title(loc="left")
    team_counts = counts_only[counts_only["repository"].str.startswith("team-a/")]
    assert plot_supply_chain(team_counts).get_title(loc="left") == "Signed: 3 of 6 images (50%); SBOM: 3"


def test_stale_tags_draws_a_frame_read_back_from_csv():
    """A CSV gives ``stale`` back as the strings "True"/"False", which the analysis reads strictly; the chart
    reads them the same way, and refuses what is neither."""
    stale, layers = reclaim_fixture()
    back = pd.read_csv(StringIO(stale.to_csv(index=False)), dtype=str)
    ax = stale_tags(back, layers=layers)
    assert "2 of 4 tags stale, 3.5 MB reclaimable" in ax.get_title(loc="left")
    assert len(collection(ax, "stale").get_offsets()) == 2
    import regframe.accessor  # noqa: F401  registers df.registry

    assert "2 of 4 tags stale" in back.registry.plot_stale_tags().get_title(loc="left")
    back.loc[0, "stale"] = "yes"
    with pytest.raises(ValueError, match="'stale'"):
        stale_tags(back)
