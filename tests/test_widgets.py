"""The notebook widgets driven the way a user drives them (set a control, press a button) against a
seeded real registry. Expected tables and numbers are worked out here from the fleet plan
(``fleet.records()``) with plain Python, never by calling the analysis under test."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import time
from collections import defaultdict
from datetime import UTC, datetime

import ipywidgets
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest

import regframe
from regframe.client import RegistryClient
from regframe.testing import (
    local_registry,
    make_fleet,
    seed,
)
from regframe.testing.faultproxy import Delay, FaultProxy, Rule
from regframe.units import format_bytes
from regframe.widgets import crawl, explore, stale_tags, storage_dashboard

NOW = datetime(2026, 6, 1, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n"
FLEET_OPTIONS = dict(
    repositories=8,
    tags_per_repo=6,
    base_layers=2,
    multi_platform_ratio=0.25,
    oci_ratio=0.5,
    fake_created_ratio=0.1,
    seed=11,
    now=NOW,
    age_range_days=(1, 900),
    layer_size_range=(300, 3000),
    base_layer_size_range=(4000, 9000),
)


@pytest.fixture(scope="module")
def fleet():
    return make_fleet(**FLEET_OPTIONS)


@pytest.fixture(scope="module")
def records(fleet):
    return fleet.records()


@pytest.fixture(scope="module")
def seeded(fleet):
    with local_registry() as reg, regframe.connect(reg.url) as client:
        seed(client, fleet)
        yield reg, client


@pytest.fixture(scope="module")
def client(seeded):
    return seeded[1]


@pytest.fixture(scope="module")
def inv(client):
    return client.inventory(progress=False)


# -- the reference computations ----------------------------------------------------------------------


def tag_table(records):
    """(repository, tag) -> digest, newest real creation date (None: unknown), summed platform sizes."""
    table = {}
    for r in records:
        entry = table.setdefault((r["repository"], r["tag"]), {"digest": r["digest"], "created": None, "size": 0})
        entry["size"] += r["size"]
        created = r["created"]
        if created is not None and created.year >= 1990:
            entry["created"] = created if entry["created"] is None else max(entry["created"], created)
    return table


def expected_stale(records, days, keep_last=0, keep=None, match=None):
    """The stale (repository, tag) pairs under the documented rules: kept are tags matching ``keep``, not
    matching ``match``, among the ``keep_last`` newest dated ones, undated or not old enough, and every tag
    on the digest of a kept tag. ``days`` is a number of days or a Timedelta."""
    threshold = days if isinstance(days, pd.Timedelta) else pd.Timedelta(days=days)
    table = tag_table(records)
    kept = set()
    by_repo = defaultdict(list)
    for (repo, tag), entry in table.items():
        if entry["created"] is not None:
            by_repo[repo].append((-entry["created"].timestamp(), tag))
    for repo, dated in by_repo.items():
        kept.update((repo, tag) for _, tag in sorted(dated)[:keep_last])
    for key, entry in table.items():
        if (keep and re.search(keep, key[1])) or (match and not re.search(match, key[1])):
            kept.add(key)
        if entry["created"] is None or NOW - entry["created"] <= threshold:
            kept.add(key)
    kept_digests = {(repo, table[(repo, tag)]["digest"]) for repo, tag in kept}
    return {key for key in table if key not in kept and (key[0], table[key]["digest"]) not in kept_digests}


def blobs(record):
    """Every blob an image of the plan references: its config, then its layers."""
    return [(record["config_digest"], record["config_size"]), *record["layers"]]


def expected_reclaimable(records, stale):
    """Bytes of distinct blobs (configs and layers) that only stale tags use."""
    users, sizes = defaultdict(set), {}
    for r in records:
        for digest, size in blobs(r):
            users[digest].add((r["repository"], r["tag"]))
            sizes[digest] = size
    return sum(sizes[d] for d, who in users.items() if who <= stale)


def pairs(frame):
    return {(str(r), str(t)) for r, t in frame[["repository", "tag"]].itertuples(index=False)}


# -- stale tags ----------------------------------------------------------------------------------------


def test_stale_widget_follows_the_age_slider(inv, records):
    open_figures = plt.get_fignums()
    widget = stale_tags(inv, now=NOW, older_than="90d")
    assert isinstance(widget, ipywidgets.VBox)
    assert "application/vnd.jupyter.widget-view+json" in widget._repr_mimebundle_()
    assert widget.older_than.value == 90

    seen = []
    for days in (90, 400, 700):
        widget.older_than.value = days
        stale = expected_stale(records, days)
        freed = expected_reclaimable(records, stale)
        assert pairs(widget.plan) == stale
        assert widget.reclaimable_bytes == freed
        assert f"<b>{len(stale)}</b> of {len(tag_table(records))} tags stale" in widget.summary.value
        assert f"{freed:,} bytes" in widget.reclaimable.value
        assert f"{len(stale)} row" in widget.table.value
        assert widget.chart.value.tobytes().startswith(PNG)
        seen.append((len(stale), freed, widget.chart.value.tobytes()))
    assert len({count for count, _, _ in seen}) == 3, "the fleet must have tags in each age band"
    assert len({chart for _, _, chart in seen}) == 3
    assert plt.get_fignums() == open_figures, "charts are closed once rendered, never shown twice"


def test_stale_widget_plans_with_older_than_exactly_until_the_slider_moves(inv, records):
    """The slider counts whole days; a threshold given in hours plans as ``analysis.stale_tags`` would, and
    the slider's days take over once it is moved."""
    ages = sorted(NOW - entry["created"] for entry in tag_table(records).values() if entry["created"] is not None)
    age = next(age for age in ages if age - pd.Timedelta(days=age.days) > pd.Timedelta(hours=2))
    exact = pd.Timedelta(days=age.days, hours=1)
    assert expected_stale(records, exact) != expected_stale(records, age.days + 1)

    widget = stale_tags(inv, now=NOW, older_than=f"{age.days}d1h")
    assert widget.older_than.value == age.days + 1
    assert pairs(widget.plan) == expected_stale(records, exact)
    assert f"older than {age.days} days 1 hour" in widget.summary.value
    assert widget.stale.attrs["older_than"] == exact

    widget.older_than.value = age.days + 2
    widget.older_than.value = age.days + 1
    assert pairs(widget.plan) == expected_stale(records, age.days + 1)
    assert f"older than {age.days + 1} days" in widget.summary.value


def test_keep_controls(inv, records):
    widget = stale_tags(inv, now=NOW, older_than="30d")
    widget.keep_last.value = 2
    widget.keep.value = r"^(latest|stable)$"
    stale = expected_stale(records, 30, keep_last=2, keep=r"^(latest|stable)$")
    assert stale != expected_stale(records, 30)
    assert pairs(widget.plan) == stale
    assert widget.reclaimable_bytes == expected_reclaimable(records, stale)
    assert not {tag for _, tag in pairs(widget.plan)} & {"latest", "stable"}


def test_match_limits_the_plan(inv, records):
    widget = stale_tags(inv, now=NOW, older_than="30d")
    widget.match.value = r"^main-"
    stale = expected_stale(records, 30, match=r"^main-")
    assert stale and all(tag.startswith("main-") for _, tag in stale)
    assert pairs(widget.plan) == stale


def test_invalid_regex_is_reported_in_the_widget(inv, records):
    widget = stale_tags(inv, now=NOW, older_than="90d")
    widget.keep.value = "(unclosed"
    assert "not a valid regular expression" in widget.message.value
    assert widget.error is not None
    assert widget.export_button.disabled
    widget.keep.value = "^latest$"
    assert widget.message.value == ""
    assert not widget.export_button.disabled
    assert pairs(widget.plan) == expected_stale(records, 90, keep="^latest$")


EXPORT_NAME = re.compile(r"stale-tags-\d{8}-\d{6}(-\d+)?\.csv")


def test_export_writes_the_current_plan(inv, records, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    widget = stale_tags(inv, now=NOW, older_than="200d", export_dir=folder)
    widget.export_button.click()
    [target] = folder.iterdir()
    assert EXPORT_NAME.fullmatch(target.name)
    written = pd.read_csv(target)
    assert list(written.columns) == ["repository", "tag", "digest", "created", "age", "reason"]
    table = tag_table(records)
    assert {(r, t, d) for r, t, d in written[["repository", "tag", "digest"]].itertuples(index=False)} == {
        (repo, tag, table[(repo, tag)]["digest"]) for repo, tag in expected_stale(records, 200)
    }
    assert set(written["reason"]) == {"older than 200 days"}
    assert str(target) in widget.message.value


def test_exports_go_to_the_working_directory_and_never_overwrite(inv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    widget = stale_tags(inv, now=NOW, older_than="200d")
    monkeypatch.chdir("/")
    first, second = widget.export(), widget.export()
    assert first != second
    assert sorted(tmp_path.iterdir()) == sorted([first, second])
    assert all(EXPORT_NAME.fullmatch(path.name) for path in (first, second))
    assert first.read_bytes() == second.read_bytes()


def test_bad_rules_are_refused_as_the_analysis_refuses_them(inv):
    with pytest.raises(ValueError, match="keep_last"):
        stale_tags(inv, keep_last=-3)


def test_export_dir_must_be_a_directory(inv, tmp_path):
    with pytest.raises(ValueError, match=r"export_dir .*missing.* is not an existing directory"):
        stale_tags(inv, export_dir=tmp_path / "missing")


def test_delete_needs_a_registry(inv):
    widget = stale_tags(inv, now=NOW)
    assert widget.delete_button.disabled
    assert "registry" in widget.delete_button.tooltip
    widget.delete_button.click()
    assert widget.dry_run is None
    assert widget.confirm_button.disabled


def test_changing_a_rule_cancels_a_pending_deletion(client, inv, fleet):
    widget = stale_tags(inv, client, now=NOW, older_than="90d")
    widget.delete_button.click()
    assert not widget.confirm_button.disabled and widget.confirm_button.layout.display is None
    widget.older_than.value = 120
    assert widget.confirm_button.disabled and widget.confirm_button.layout.display == "none"
    widget.confirm_button.click()
    assert widget.result is None
    for repo, tags in fleet.tags.items():
        assert sorted(client.tags(repo)["tags"]) == sorted(tags), "a dry run deletes nothing"


def test_dry_run_then_confirm_deletes_exactly_the_dry_run_rows():
    fleet = make_fleet(**{**FLEET_OPTIONS, "repositories": 4, "tags_per_repo": 5, "seed": 12})
    records = fleet.records()
    with local_registry() as reg, regframe.connect(reg.url) as client:
        seed(client, fleet)
        widget = stale_tags(client.inventory(progress=False), client, now=NOW, older_than="100d", keep=r"^latest$")
        stale = expected_stale(records, 100, keep=r"^latest$")
        assert stale and not widget.delete_button.disabled

        widget.delete_button.click()
        would = widget.dry_run[widget.dry_run["status"] == "would delete"]
        assert pairs(would) == stale
        assert "Confirm delete" in widget.dry_run_view.value
        assert sum(len(client.tags(repo)["tags"]) for repo in fleet.repositories) == fleet.tag_count

        widget.confirm_button.click()
        assert pairs(widget.result) == stale
        assert set(widget.result["status"]) == {"deleted"}
        table = tag_table(records)
        for repo in fleet.repositories:
            remaining = set(client.tags(repo).get("tags", []))
            assert remaining == {tag for r, tag in table if r == repo and (r, tag) not in stale}
            for tag in remaining:
                assert client.digest(repo, tag) == table[(repo, tag)]["digest"]
        assert widget.plan.empty, "deleted tags leave the widget's frames"
        assert f"Deleted {len(stale)} tags" in widget.dry_run_view.value
        assert widget.confirm_button.disabled


# -- storage ---------------------------------------------------------------------------------------------


def storage_expectations(records):
    owners, sizes = defaultdict(set), {}
    for r in records:
        for digest, size in blobs(r):
            owners[digest].add(r["repository"])
            sizes[digest] = size
    repos = {r["repository"] for r in records}
    stored = {repo: sum(sizes[d] for d, o in owners.items() if repo in o) for repo in repos}
    common = {(a, b): sum(sizes[d] for d, o in owners.items() if a in o and b in o) for a in repos for b in repos}
    return stored, common


def test_storage_dashboard(inv, records):
    stored, common = storage_expectations(records)
    ranking = sorted(stored, key=lambda repo: (-stored[repo], repo))
    board = storage_dashboard(inv, top=15)
    assert dict(zip(board.usage["repository"], board.usage["stored_bytes"], strict=True)) == stored
    assert list(board.top_table["repository"]) == ranking
    assert board.chart.value.tobytes().startswith(PNG)

    first_chart = board.chart.value.tobytes()
    board.top.value = 3
    assert list(board.top_table["repository"]) == ranking[:3]
    assert all(name in board.table.value for name in ranking[:3])
    assert not any(f">{name}<" in board.table.value for name in ranking[3:])
    assert format_bytes(stored[ranking[0]]) in board.table.value
    assert board.chart.value.tobytes() != first_chart

    assert list(board.repositories.value) == ranking[:8]
    pick = (ranking[0], ranking[-1])
    board.repositories.value = pick
    assert set(board.matrix.index) == set(pick)
    for a in pick:
        for b in pick:
            assert board.matrix.loc[a, b] == common[(a, b)]
    assert board.heatmap.value.tobytes().startswith(PNG)

    board.repositories.value = ()
    assert board.matrix is None
    assert "select at least one repository" in board.message.value


# -- explore ---------------------------------------------------------------------------------------------


def test_explore_repositories_search_and_tag_sorting(inv, fleet, records):
    explorer = explore(inv)
    assert list(explorer.repositories.options) == sorted(fleet.repositories)
    explorer.search.value = "team-"
    assert list(explorer.repositories.options) == sorted(r for r in fleet.repositories if "team-" in r)

    table = tag_table(records)
    repo = max(r for r in fleet.repositories if "team-" in r)
    explorer.repositories.value = repo
    frame = explorer.tags_frame
    assert set(frame["tag"]) == set(fleet.tags[repo])
    for row in frame.itertuples(index=False):
        assert row.size == table[(repo, row.tag)]["size"]
        assert row.digest == table[(repo, row.tag)]["digest"]
        created = table[(repo, row.tag)]["created"]
        assert pd.isna(row.created) if created is None else row.created == pd.Timestamp(created)
    assert list(explorer.tags.options) == list(frame["tag"])

    explorer.sort_by.value = "size"
    sizes = [table[(repo, tag)]["size"] for tag in explorer.tags.options]
    assert sizes == sorted(sizes, reverse=True)
    explorer.descending.value = False
    sizes = [table[(repo, tag)]["size"] for tag in explorer.tags.options]
    assert sizes == sorted(sizes)
    explorer.sort_by.value = "tag"
    assert list(explorer.tags.options) == sorted(fleet.tags[repo])
    explorer.sort_by.value = "created"
    dated = [table[(repo, t)]["created"] for t in explorer.tags.options if table[(repo, t)]["created"]]
    assert dated == sorted(dated)
    assert all(table[(repo, t)]["created"] for t in explorer.tags.options[: len(dated)]), "undated last"


def test_explore_tag_details_from_the_registry(inv, client, fleet, records):
    explorer = explore(inv, registry=client)
    repo, tag, index = next((r, t, item) for r, t, item in fleet.items() if item.children)
    explorer.repositories.value = repo
    explorer.tags.value = tag

    assert explorer.manifest["mediaType"] == index.media_type
    assert [m["digest"] for m in explorer.manifest["manifests"]] == [c.digest for c in index.children]
    assert index.digest in explorer.details.children[0].value
    mine = [r for r in records if (r["repository"], r["tag"]) == (repo, tag)]
    assert sorted(explorer.platforms_frame["platform"]) == sorted(r["platform"] for r in mine)
    assert len(mine) > 1
    expected_layers = sorted(
        [(r["platform"], "config", -1, r["config_digest"], r["config_size"]) for r in mine]
        + [(r["platform"], "layer", pos, digest, size) for r in mine for pos, (digest, size) in enumerate(r["layers"])]
    )
    shown = explorer.layers_frame.astype({"position": object})
    shown["position"] = shown["position"].where(shown["position"].notna(), -1)
    got = sorted(
        tuple(x)
        for x in shown[["platform", "role", "position", "layer_digest", "size"]].astype(object).itertuples(index=False)
    )
    assert got == expected_layers
    labels = explorer.labels_frame
    assert dict(zip(labels["label"], labels["value"], strict=True)) == mine[0]["labels"]
    history = [
        (str(child.platform), step["created_by"])
        for child in index.children
        for step in json.loads(child.config.data)["history"]
    ]
    steps = explorer.history_frame
    assert sorted(zip(steps["platform"], steps["created_by"], strict=True)) == sorted(history)

    single = next(t for t, item in fleet.tags[repo].items() if not item.children)
    explorer.tags.value = single
    image = fleet.tags[repo][single]
    assert explorer.manifest["config"]["digest"] == image.config.digest
    assert list(explorer.platforms_frame["platform"]) == [str(image.platform)]
    assert list(explorer.history_frame["created_by"]) == [
        step["created_by"] for step in json.loads(image.config.data)["history"]
    ]


ODD_CONFIGS = {
    "a JSON array": (b"[]", []),
    "a history of numbers": (b'{"architecture":"amd64","os":"linux","history":[1,2]}', []),
    "a history of text": (b'{"architecture":"amd64","os":"linux","history":"built by hand"}', []),
    "a step among numbers": (b'{"history":[1,{"created_by":"RUN make"}]}', ["RUN make"]),
}


@pytest.mark.parametrize("shape", list(ODD_CONFIGS))
def test_explore_shows_the_history_of_a_config_of_an_unexpected_shape(inv, client, fleet, shape):
    """A config is whatever JSON was pushed: the History tab shows the steps it can read, or says there are
    none, and the other tabs still fill. The config is a real blob of the registry, which the inventory names
    as the config of a single-platform tag."""
    data, steps = ODD_CONFIGS[shape]
    repo = fleet.repositories[0]
    tag = next(tag for tag, item in fleet.tags[repo].items() if not item.children)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    client.upload_blob(repo, data, digest)
    manifests = inv.manifests.astype({"config_digest": object})
    manifests.loc[(manifests["repository"] == repo) & (manifests["tag"] == tag), "config_digest"] = digest
    odd = regframe.Inventory(inv.catalog, inv.tags, manifests, inv.layers, inv.errors, url=inv.url)

    explorer = explore(odd, registry=client)
    explorer.repositories.value = repo
    explorer.tags.value = tag
    manifest_tab, _, _, history_tab, _ = explorer.details.children
    assert list(explorer.history_frame.get("created_by", [])) == steps
    if not steps:
        assert "no history recorded" in history_tab.value
    assert fleet.tags[repo][tag].digest in manifest_tab.value


def test_explore_inventory_alone_says_what_needs_a_registry(inv, fleet):
    explorer = explore(inv)
    repo = fleet.repositories[0]
    explorer.repositories.value = repo
    assert explorer.tags.value in fleet.tags[repo]
    assert explorer.manifest is None
    manifest_tab, _, _, history_tab, _ = explorer.details.children
    assert "needs a registry" in manifest_tab.value and "needs a registry" in history_tab.value
    assert fleet.tags[repo][explorer.tags.value].digest in manifest_tab.value


def test_explore_rejects_other_sources():
    with pytest.raises(TypeError, match=r"takes a Registry .* or an Inventory, not str"):
        explore("http://127.0.0.1:1")


def test_widgets_refuse_a_client_that_is_not_a_registry(seeded, inv):
    """A plain client has no ``inventory()`` or ``apply_cleanup()``: refused when the widget is made, not
    later in the crawl thread or on the Delete button."""
    with RegistryClient(seeded[0].url) as plain:
        with pytest.raises(
            TypeError, match=r"crawl\(\) takes a Registry \(from regframe.connect\), not RegistryClient"
        ):
            crawl(plain)
        with pytest.raises(TypeError, match=r"explore\(\) takes a Registry .* or an Inventory, not RegistryClient"):
            explore(plain)
        with pytest.raises(TypeError, match=r"explore\(registry=...\) takes a Registry .*, not RegistryClient"):
            explore(inv, registry=plain)
        with pytest.raises(TypeError, match=r"stale_tags\(registry=...\) takes a Registry .*, not RegistryClient"):
            stale_tags(inv, plain, now=NOW)
        assert plain.stats["total_requests"] == 0


# -- crawls started from a widget -----------------------------------------------------------------------


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_explore_a_registry_crawls_in_the_background(client, fleet):
    explorer = explore(client)
    assert explorer.crawler is not None and explorer.crawler in explorer.children
    inventory = explorer.crawler.wait(30)
    assert inventory.complete and explorer.inventory is inventory
    assert list(explorer.repositories.options) == sorted(fleet.repositories)
    assert explorer.crawler.progress.value == explorer.crawler.progress.max == fleet.tag_count
    assert explorer.crawler.stop_button.disabled
    assert f"done: 8 repositories, {fleet.tag_count} tags, 0 errors" in explorer.crawler.status.value


def test_stop_keeps_a_partial_inventory(seeded, fleet, records):
    # A local registry answers in a millisecond; the proxy's delay makes the crawl slow enough to stop.
    with FaultProxy(seeded[0].url) as proxy, regframe.connect(proxy.url) as slow:
        proxy.add_rule(Rule(path=r"/manifests/", action=Delay(0.05)))
        widget = crawl(slow, workers=2)
        wait_for(lambda: widget.progress.value >= 6)
        widget.stop_button.click()
        inventory = widget.wait(30)
    assert inventory is not None and not inventory.complete
    assert 0 < len(inventory.tags) < fleet.tag_count
    table = tag_table(records)
    for repo, tag, digest in inventory.tags[["repository", "tag", "digest"]].astype(str).itertuples(index=False):
        assert table[(repo, tag)]["digest"] == digest
    assert widget.progress.bar_style == "warning"
    assert "partial inventory" in widget.status.value
    assert widget.progress.value < fleet.tag_count


def test_crawl_takes_exact_names_and_a_match_pattern(client, fleet):
    first, second = sorted(fleet.repositories)[:2]
    both = crawl(client, (name for name in (first, second))).wait(30)
    assert set(both.catalog["repository"].astype(str)) == {first, second}
    one = crawl(client, [first, second], match="^" + re.escape(second) + "$").wait(30)
    assert set(one.catalog["repository"].astype(str)) == {second}
    explorer = explore(client, match="^" + re.escape(first) + "$")
    explorer.crawler.wait(30)
    assert list(explorer.repositories.options) == [first]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"repositories": re.compile("team")}, "select by pattern with match="),
        ({"match": "(unclosed"}, "not a valid regular expression"),
        ({"repositories": ["Bad/Name"]}, "upper-case"),
    ],
)
def test_crawl_refuses_a_bad_selection_before_starting(client, options, message):
    before = client.stats["total_requests"]
    with pytest.raises(ValueError, match=message):
        crawl(client, **options)
    with pytest.raises(ValueError, match=message):
        explore(client, **options)
    assert client.stats["total_requests"] == before


def test_crawl_errors_are_shown():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nobody = regframe.Registry(f"http://127.0.0.1:{port}", open_timeout=0.5, retries=0)
    widget = crawl(nobody)
    inventory = widget.wait(30)
    assert inventory is not None and list(inventory.errors["stage"]) == ["catalog"]
    assert "incomplete (see inventory.errors): 0 repositories, 0 tags, 1 error in" in widget.status.value
    assert widget.progress.bar_style == "warning"
    assert widget.stop_button.layout.display == "none"


def test_storage_dashboard_with_chosen_repositories(inv, records):
    stored, common = storage_expectations(records)
    names = sorted(stored)[:3]
    board = storage_dashboard(inv, top=2, selected=[*names, "no/such-repo"])
    assert list(board.repositories.value) == names
    assert "not in this inventory: no/such-repo" in board.message.value
    assert {(a, b): board.matrix.loc[a, b] for a in names for b in names} == {
        (a, b): common[(a, b)] for a in names for b in names
    }
    assert len(board.top_table) == 2
