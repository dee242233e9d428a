"""The crawl against a seeded real registry: every column and every analysis number is checked
against values computed here from the fleet plan, never by the code under test."""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from datetime import UTC, datetime

import pandas as pd
import pytest

import regframe
from regframe.analysis import reclaimable_bytes, shared_layers, stale_tags, storage_usage
from regframe.inventory.frames import Dates, parse_created, table
from regframe.inventory.inventory import FRAMES, InventoryFormatError
from regframe.testing import build_image, layer, local_registry, make_fleet, push_image, seed

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def fleet():
    return make_fleet(
        repositories=6,
        tags_per_repo=7,
        base_layers=2,
        multi_platform_ratio=0.25,
        oci_ratio=0.5,
        fake_created_ratio=0.1,
        seed=3,
        now=NOW,
        layer_size_range=(300, 3000),
        base_layer_size_range=(4000, 9000),
    )


@pytest.fixture(scope="module")
def seeded(fleet):
    with local_registry() as reg, regframe.connect(reg.url) as client:
        seed(client, fleet)
        yield reg, client


@pytest.fixture(scope="module")
def inv(seeded):
    return seeded[1].inventory(progress=False)


@pytest.fixture(scope="module")
def records(fleet):
    return fleet.records()


def test_catalog(inv, fleet):
    assert sorted(inv.catalog["repository"].astype(str)) == sorted(fleet.repositories)
    counts = dict(zip(inv.catalog["repository"].astype(str), inv.catalog["tag_count"], strict=True))
    assert counts == {repo: len(tags) for repo, tags in fleet.tags.items()}
    row = inv.catalog.set_index("repository").loc[fleet.repositories[0]]
    namespace, _, name = fleet.repositories[0].rpartition("/")
    assert (row["namespace"], row["name"]) == (namespace, name)


def test_tags(inv, fleet):
    expected = {
        (repo, tag): (item.digest, item.media_type, hasattr(item, "children") and bool(item.children))
        for repo, tag, item in fleet.items()
    }
    got = {
        (r, t): (d, m, bool(i))
        for r, t, d, m, i in inv.tags[["repository", "tag", "digest", "media_type", "is_index"]]
        .astype(object)
        .itertuples(index=False)
    }
    assert got == expected
    assert any(v[2] for v in expected.values()), "the fleet has multi-platform tags"


def test_manifests(inv, records):
    frame = inv.manifests.astype({"created": object}).set_index(["repository", "tag", "manifest_digest"])
    assert len(frame) == len(records)
    for rec in records:
        row = frame.loc[(rec["repository"], rec["tag"], rec["manifest_digest"])]
        assert row["digest"] == rec["digest"]
        assert row["platform"] == rec["platform"]
        assert row["config_digest"] == rec["config_digest"]
        assert row["size"] == rec["config_size"] + sum(size for _, size in rec["layers"])
        assert row["layer_count"] == len(rec["layers"])
        assert row["labels"] == rec["labels"]
        created = rec["created"]
        if created is None or created.year < 1990:
            assert pd.isna(row["created"])
        else:
            assert row["created"] == pd.Timestamp(created)


def test_layers(inv, records):
    """Every blob each image references: its config (role config, no position), then its layers in order."""
    expected = sorted(
        [
            (r["repository"], r["tag"], r["manifest_digest"], -1, r["config_digest"], r["config_size"], "config")
            for r in records
        ]
        + [
            (r["repository"], r["tag"], r["manifest_digest"], pos, digest, size, "layer")
            for r in records
            for pos, (digest, size) in enumerate(r["layers"])
        ]
    )
    frame = inv.layers.astype({"position": object})
    frame["position"] = frame["position"].where(frame["position"].notna(), -1)
    got = sorted(
        tuple(x)
        for x in frame[["repository", "tag", "manifest_digest", "position", "layer_digest", "size", "role"]]
        .astype(object)
        .itertuples(index=False)
    )
    assert got == expected
    assert set(inv.layers["kind"].astype(str)) == {"image"}


def test_frame_types(inv):
    assert isinstance(inv.layers["layer_digest"].dtype, pd.CategoricalDtype)
    assert isinstance(inv.manifests["repository"].dtype, pd.CategoricalDtype)
    assert str(inv.layers["size"].dtype) == "Int64"
    assert str(inv.manifests["created"].dtype) == "datetime64[ns, UTC]"


def test_each_digest_fetched_once(inv, fleet, records):
    requests = inv.stats["requests"]
    children = {r["manifest_digest"] for r in records if r["digest"] != r["manifest_digest"]}
    configs = {r["config_digest"] for r in records}
    assert requests["catalog"] == 1
    assert requests["tags"] == len(fleet.repositories)
    assert requests["manifest"] == fleet.tag_count + len(children)
    assert requests["blob"] == len(configs)
    assert inv.errors.empty


def test_warm_cache_costs_one_head_per_tag(seeded, inv, fleet, tmp_path):
    client = seeded[1]
    cold = client.inventory(progress=False, cache=tmp_path / "cache")
    warm = client.inventory(progress=False, cache=tmp_path / "cache")
    heads = fleet.tag_count + len(fleet.index_entries())
    assert warm.stats["requests"] == {"catalog": 1, "tags": len(fleet.repositories), "manifest_head": heads}
    assert warm.stats["cache_hits"] > 0
    for name in ("tags", "manifests", "layers"):
        pd.testing.assert_frame_equal(getattr(warm, name), getattr(cold, name))


def test_repository_filters(seeded, fleet):
    client = seeded[1]
    first = fleet.repositories[0]
    by_list = client.inventory([first], progress=False)
    assert set(by_list.tags["repository"].astype(str)) == {first}
    by_pattern = client.inventory(match=re.compile("^" + re.escape(first) + "$"), progress=False)
    assert set(by_pattern.tags["repository"].astype(str)) == {first}
    with pytest.raises(regframe.InvalidReferenceError):
        client.inventory(["Bad/Name"], progress=False)
    # A name the catalog does not list is crawled all the same (a catalog may be filtered by permissions);
    # its tag list answers 404, which is an error row naming it, and the other names are crawled whole.
    mixed = client.inventory([first, "no/such-repo"], progress=False)
    assert set(mixed.tags["repository"].astype(str)) == {first}
    assert len(mixed.tags) == len(fleet.tags[first])
    assert mixed.errors[["repository", "stage"]].astype(str).values.tolist() == [["no/such-repo", "tags"]]
    error = str(mixed.errors["error"].iloc[0])
    assert "repository no/such-repo not found" in error and "catalog does not list it" in error


def test_frames_one_at_a_time(seeded, inv, fleet):
    client = seeded[1]
    repo = fleet.repositories[1]
    tag = next(iter(fleet.tags[repo]))
    layers = client.frames.layers(repo, tag)
    expected = inv.layers[(inv.layers["repository"] == repo) & (inv.layers["tag"] == tag)]
    assert sorted(layers["layer_digest"].astype(str)) == sorted(expected["layer_digest"].astype(str))
    assert len(client.frames.tags(repo)) == len(fleet.tags[repo])
    assert set(client.frames.catalog()["repository"].astype(str)) == set(fleet.repositories)


def test_export_round_trip(inv, tmp_path):
    for writer in ("to_csv", "to_parquet"):
        out = getattr(inv, writer)(tmp_path / writer)
        loaded = regframe.Inventory.load(out)
        for name, frame in inv.frames().items():
            pd.testing.assert_frame_equal(getattr(loaded, name), frame)
        assert loaded.stats == inv.stats


T = pd.Timestamp("2024-01-02T03:04:05Z")
SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
OCI = "application/vnd.oci.image.manifest.v1+json"
# A row or two for every frame, as a crawl would record them: missing values, a column with none
# (variant), an empty namespace, and text a spreadsheet would take for a formula.
ROWS = {
    "catalog": [("team/a", "team", "a", 2), ("b", "", "b", 0)],
    "tags": [
        ("team/a", "1", "sha256:aa", "application/vnd.oci.image.index.v1+json", True, "image", pd.NaT),
        ("team/a", "=x", "sha256:bb", OCI, False, "signature", T),
    ],
    "manifests": [
        (
            "team/a",
            "1",
            "sha256:aa",
            "sha256:a1",
            "linux/amd64",
            "linux",
            "amd64",
            None,
            "sha256:c1",
            T,
            2,
            100,
            {"k": "v"},
            "image",
            None,
            None,
            pd.NaT,
        ),
        (
            "team/a",
            "=x",
            "sha256:bb",
            "sha256:bb",
            "",
            None,
            None,
            None,
            "sha256:c2",
            T + pd.Timedelta(microseconds=250_000),  # a fraction of a second beside T's whole one, as configs mix them
            1,
            10,
            {},
            "signature",
            SIG,
            "sha256:a1",
            T,
        ),
    ],
    "layers": [
        (
            "team/a",
            "1",
            "sha256:a1",
            "linux/amd64",
            None,
            "sha256:c1",
            5,
            "application/vnd.oci.image.config.v1+json",
            "config",
            "image",
        ),
        (
            "team/a",
            "1",
            "sha256:a1",
            "linux/amd64",
            0,
            "sha256:l1",
            95,
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "layer",
            "image",
        ),
    ],
    "referrers": [("team/a", "sha256:a1", "sha256:bb", "signature", SIG, OCI, "=x", 10, T, "cosign-tag")],
    "errors": [("team/a", None, "config", "404 blob unknown"), (None, None, "catalog", "-boom")],
}


@pytest.mark.parametrize("empty", [(), ("errors",), tuple(FRAMES)], ids=["rows", "no-errors", "all-empty"])
@pytest.mark.parametrize("writer", ["to_csv", "to_csv_spreadsheet_safe", "to_parquet"])
def test_every_frame_round_trips_with_its_dtypes(tmp_path, empty, writer):
    """Frames built as a crawl builds them load back equal, dtypes included: an empty frame's categoricals
    keep object categories through CSV (read back as text they became str ones)."""
    frames = {name: table([] if name in empty else rows, FRAMES[name]) for name, rows in ROWS.items()}
    inv = regframe.Inventory(**frames, url="http://registry.test")
    if writer == "to_csv_spreadsheet_safe":
        inv.to_csv(tmp_path, spreadsheet_safe=True)
    else:
        getattr(inv, writer)(tmp_path)
    loaded = regframe.Inventory.load(tmp_path)
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(inv, name), obj=name)


@pytest.mark.parametrize("first, second", [("to_parquet", "to_csv"), ("to_csv", "to_parquet")])
def test_a_save_into_a_folder_holding_another_format_loads_back_as_itself(tmp_path, first, second):
    """An inventory saved in one format, then another saved into the same folder in the other (a notebook's
    ``to_parquet`` there, then ``regframe audit --out`` the same folder): loading gives the second, not the
    first's frames under the second's ``inventory.json``. The first's frame files are gone."""
    frames = {name: table(rows, FRAMES[name]) for name, rows in ROWS.items()}
    older = regframe.Inventory(**frames, url="http://registry.test")
    newer = regframe.Inventory(
        **{**frames, "tags": table(ROWS["tags"][:1], FRAMES["tags"])}, url="http://registry.test"
    )
    getattr(older, first)(tmp_path)
    getattr(newer, second)(tmp_path)
    loaded = regframe.Inventory.load(tmp_path)
    pd.testing.assert_frame_equal(loaded.tags, newer.tags)
    left = {path.suffix for path in tmp_path.iterdir() if path.stem in FRAMES}
    assert left == {".csv" if second == "to_csv" else ".parquet"}


@pytest.mark.parametrize("spreadsheet_safe", [False, True])
def test_text_that_reads_like_the_csv_missing_marker_round_trips(tmp_path, spreadsheet_safe):
    """A registry's text that is ``<NA>`` (the CSV's marker for a missing value) or starts with a backslash
    (the escape) comes back as that text, not as missing; a missing value still comes back missing."""
    rows = [list(row) for row in ROWS["manifests"]]
    rows[0][5:8] = ["<NA>", "\\arm", None]  # os, architecture, variant
    frames = {name: table(rows if name == "manifests" else ROWS[name], FRAMES[name]) for name in ROWS}
    errors = [("team/a", None, "config", "<NA>"), (None, None, "catalog", "\\<NA>")]
    frames["errors"] = table(errors, FRAMES["errors"])
    inv = regframe.Inventory(**frames, url="http://registry.test")
    inv.to_csv(tmp_path, spreadsheet_safe=spreadsheet_safe)
    loaded = regframe.Inventory.load(tmp_path)
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(inv, name), obj=name)


def test_a_csv_saved_before_escaping_keeps_its_backslashes(tmp_path):
    frames = {name: table(rows, FRAMES[name]) for name, rows in ROWS.items()}
    frames["errors"] = table([(None, None, "catalog", "\\server said no")], FRAMES["errors"])
    regframe.Inventory(**frames).to_csv(tmp_path)
    meta = json.loads((tmp_path / "inventory.json").read_text())
    meta.pop("escaped", None)
    (tmp_path / "inventory.json").write_text(json.dumps(meta))
    (tmp_path / "errors.csv").write_text("repository,tag,stage,error\n<NA>,<NA>,catalog,\\server said no\n")
    assert list(regframe.Inventory.load(tmp_path).errors["error"]) == ["\\server said no"]


def test_inventory_json_naming_an_unknown_file_format_is_refused(tmp_path):
    regframe.Inventory(**{name: table(rows, FRAMES[name]) for name, rows in ROWS.items()}).to_csv(tmp_path)
    meta = json.loads((tmp_path / "inventory.json").read_text())
    (tmp_path / "inventory.json").write_text(json.dumps({**meta, "files": "xlsx"}))
    with pytest.raises(InventoryFormatError, match="files must be one of parquet, csv, not 'xlsx'"):
        regframe.Inventory.load(tmp_path)


# -- analysis numbers from the plan ---------------------------------------------------------------


def plan_layers(records):
    """(repository, tag, manifest_digest) -> [(digest, size)] of every blob, config first, straight from the plan."""
    return {
        (r["repository"], r["tag"], r["manifest_digest"]): [(r["config_digest"], r["config_size"]), *r["layers"]]
        for r in records
    }


def test_storage_usage_matches_plan(inv, records):
    per_repo_rows = defaultdict(list)
    owners = defaultdict(set)
    sizes = {}
    for (repo, _tag, _md), layers in plan_layers(records).items():
        for digest, size in layers:
            per_repo_rows[repo].append(size)
            owners[digest].add(repo)
            sizes[digest] = size
    usage = storage_usage(inv.layers).set_index("repository")
    for repo, rows in per_repo_rows.items():
        distinct = {d for d, owner in owners.items() if repo in owner}
        assert usage.loc[repo, "logical_bytes"] == sum(rows)
        assert usage.loc[repo, "stored_bytes"] == sum(sizes[d] for d in distinct)
        assert usage.loc[repo, "exclusive_bytes"] == sum(sizes[d] for d in distinct if owners[d] == {repo})
    assert usage.attrs["total_bytes"] == sum(sizes.values())
    shared = [d for d, o in owners.items() if len(o) > 1]
    assert shared, "base layers are shared across repositories"
    table = shared_layers(inv.layers).set_index("layer_digest")
    for digest in shared:
        assert table.loc[digest, "repositories"] == len(owners[digest])


def test_stale_and_reclaimable_match_plan(inv, records):
    threshold = pd.Timedelta(days=365)
    now = pd.Timestamp(NOW)
    stale = stale_tags(inv.manifests, older_than="365d", keep=r"^latest$", now=now)
    # Independent computation: a tag's age is that of its newest platform image; unknown dates are kept;
    # 'latest' is kept and so is every tag on the same digest as a kept tag.
    dates, digest_of = defaultdict(list), {}
    for r in records:
        key = (r["repository"], r["tag"])
        digest_of[key] = r["digest"]
        if r["created"] is not None and r["created"].year >= 1990:
            dates[key].append(r["created"])
    newest = {key: max(dates[key]) if dates[key] else None for key in digest_of}
    kept_digests = {
        (repo, digest_of[(repo, tag)])
        for (repo, tag) in digest_of
        if tag == "latest" or newest[(repo, tag)] is None or now - pd.Timestamp(newest[(repo, tag)]) <= threshold
    }
    expected_stale = {key for key in digest_of if (key[0], digest_of[key]) not in kept_digests}
    got = {(str(r), str(t)) for r, t in stale.loc[stale["stale"], ["repository", "tag"]].itertuples(index=False)}
    assert got == expected_stale
    assert expected_stale, "the plan has stale tags"
    kept_layers, stale_layer_sizes = set(), {}
    for (repo, tag, _md), layers in plan_layers(records).items():
        for digest, size in layers:
            if (repo, tag) in expected_stale:
                stale_layer_sizes[digest] = size
            else:
                kept_layers.add(digest)
    expected = sum(size for digest, size in stale_layer_sizes.items() if digest not in kept_layers)
    assert reclaimable_bytes(stale, inv.layers) == expected


def test_cleanup_dry_run_lists_exactly_what_is_deleted(fleet):
    with local_registry() as reg, regframe.connect(reg.url) as client:
        seed(client, fleet)
        inv = client.inventory(progress=False)
        stale = stale_tags(inv.manifests, older_than="365d", keep_last=2, now=pd.Timestamp(NOW))
        dry = client.apply_cleanup(stale, dry_run=True)
        assert set(dry["status"]) == {"would delete"}
        real = client.apply_cleanup(stale, dry_run=False)
        assert set(real["status"]) == {"deleted"}
        assert dry[["repository", "tag"]].values.tolist() == real[["repository", "tag"]].values.tolist()
        after = client.inventory(progress=False)
        remaining = set(zip(after.tags["repository"].astype(str), after.tags["tag"].astype(str), strict=True))
        deleted = set(zip(real["repository"], real["tag"], strict=True))
        kept = {(str(r), str(t)) for r, t in stale.loc[~stale["stale"], ["repository", "tag"]].itertuples(index=False)}
        assert not deleted & remaining
        assert kept <= remaining, "no kept tag was lost"
        for repo, tag in kept:
            assert client.digest(repo, tag) == fleet.tags[repo][tag].digest


def test_missing_config_blob_is_an_error_row(fleet):
    small = make_fleet(
        repositories=2,
        tags_per_repo=3,
        base_layers=1,
        multi_platform_ratio=0,
        seed=9,
        now=NOW,
        layer_size_range=(300, 900),
        base_layer_size_range=(1000, 2000),
    )
    with local_registry() as reg, regframe.connect(reg.url) as client:
        seed(client, small)
        victim = small.records()[0]
        hex_ = victim["config_digest"].split(":")[1]
        blob_dir = reg.storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hex_[:2] / hex_
        (blob_dir / "data").unlink()
        inv = client.inventory(progress=False)
        assert list(inv.errors["stage"].astype(str)).count("config") >= 1
        assert victim["config_digest"] in " ".join(inv.errors["error"].astype(str)) or len(inv.errors)
        assert len(inv.tags) == small.tag_count, "the rest of the crawl finished"
        with pytest.raises(regframe.RegistryError):
            client.inventory(progress=False, strict=True)


def test_progress_callback_counts_every_tag(seeded, fleet):
    seen = []
    seeded[1].inventory(progress=lambda done, found: seen.append((done, found)))
    assert seen[-1] == (fleet.tag_count, fleet.tag_count)
    assert all(done <= found for done, found in seen)


def test_stop_event_keeps_what_was_read(seeded, fleet):
    import threading

    stop = threading.Event()
    stop.set()
    partial = seeded[1].inventory(progress=False, stop=stop)
    assert not partial.complete
    assert "interrupted" in set(partial.errors["stage"].astype(str))
    assert len(partial.tags) < fleet.tag_count


def test_summary_cards(seeded, inv, fleet):
    reg, client = seeded
    card = inv._repr_html_()
    assert f"<td>{len(fleet.repositories)}</td>" in card and f"<td>{fleet.tag_count}</td>" in card
    assert reg.url in client._repr_html_() and "anonymous" in client._repr_html_()
    repo, tag, index = next((r, t, i) for r, t, i in fleet.items() if getattr(i, "children", ()))
    manifest_card = client.manifest(repo, tag)._repr_html_()
    assert index.digest in manifest_card
    assert ", ".join(str(c.platform) for c in index.children) in manifest_card
    image_repo, image_tag, image = next((r, t, i) for r, t, i in fleet.items() if not getattr(i, "children", ()))
    assert f"{len(image.layers)} (" in client.manifest(image_repo, image_tag)._repr_html_()


NOW = pd.Timestamp("2026-06-01T00:00:00Z")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2023-05-01T12:34:56.123456789+02:00", pd.Timestamp("2023-05-01T10:34:56.123456789Z")),
        ("2023-05-01T12:34:56Z", pd.Timestamp("2023-05-01T12:34:56Z")),
        ("2023-05-01T12:34:56", pd.Timestamp("2023-05-01T12:34:56Z")),  # no offset: read as UTC
        ("May 1 2023 12:34", pd.Timestamp("2023-05-01T12:34:00Z")),  # not RFC 3339: parsed alone
        ("1970-01-01T00:00:00Z", pd.NaT),  # a reproducible build's date says nothing about age
        ("0001-01-01T00:00:00Z", pd.NaT),  # Go's zero time
        ("2026-06-03T00:00:00Z", pd.NaT),  # more than a day ahead
        ("not a date", pd.NaT),
        ("", pd.NaT),
        (None, pd.NaT),
        (1683000000, pd.NaT),
    ],
)
def test_a_crawls_dates_parsed_together_read_as_each_alone(value, expected):
    """The frames parse a crawl's RFC 3339 dates in one call; each comes out as parsing it alone gives."""
    dates = Dates([value, "2024-01-01T00:00:00Z", "1970-01-01T00:00:00Z"], NOW)
    found, alone = dates(value), parse_created(value, NOW)
    if expected is pd.NaT:
        assert found is pd.NaT and alone is pd.NaT
    else:
        assert found == alone == expected
        assert str(found.tz) == "UTC"


def test_foreign_layers_are_neither_stored_nor_reclaimed():
    """A Windows-style image whose base layer is a foreign layer (fetched by clients from its ``urls``; the
    registry, configured to accept such manifests, never holds the blob): the layer adds to logical bytes
    only: the stored total is the blobs pushed, and deleting the old image frees its own pushed blobs."""
    image = build_image([layer("inv-win-app", 3000)], created=datetime(2020, 1, 1, tzinfo=UTC))
    manifest = json.loads(image.manifest_raw)
    foreign_size = 100_000_000
    manifest["layers"].insert(
        0,
        {
            "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "size": foreign_size,
            "digest": "sha256:" + hashlib.sha256(b"windows base").hexdigest(),
            "urls": ["https://example.invalid/windows/base"],
        },
    )
    raw = json.dumps(manifest).encode()
    newer = build_image([layer("inv-win-new", 2000)])
    allow_urls = {"validation": {"manifests": {"urls": {"allow": ["^https?://"]}}}}
    with local_registry(**allow_urls) as reg, regframe.connect(reg.url, docker_config=False) as client:
        for blob in image.blobs():
            client.upload_blob("win/app", blob.data, blob.digest)
        client.put_manifest("win/app", "old", raw, "application/vnd.docker.distribution.manifest.v2+json")
        push_image(client, "win/app", "new", newer)
        inv = client.inventory(progress=False)
        usage = storage_usage(inv.layers)
        stale = stale_tags(inv.manifests, older_than="365d", keep=r"^new$")
        freed = reclaimable_bytes(stale, inv.layers)
    blobs = [*image.blobs(), *newer.blobs()]
    assert usage.attrs["total_bytes"] == sum(blob.size for blob in blobs)
    assert usage.attrs["logical_bytes"] == usage.attrs["total_bytes"] + foreign_size
    assert freed == sum(blob.size for blob in image.blobs())
