"""Audits over time against a real registry changed between two audits: diffs, snapshots, growth.

The registry is changed through the regframe client (pushes, a retag that moves a tag, a tag deleted, a
new repository, one whose every tag is deleted); every expected change, size and stale tag is computed
here from a model of what the test pushed, never from regframe's frames.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

import regframe
from regframe import cli, history
from regframe.inventory.inventory import InventoryFormatError
from regframe.plot import growth
from regframe.testing import build_image, layer, local_registry, make_fleet, push_image, seeded_registry
from regframe.testing.faultproxy import FaultProxy, Rule, Status
from regframe.units import format_bytes

NOW = datetime.now(UTC).replace(microsecond=0)
STALE_DAYS = 30
BASE = layer("history-base", 6000)
CD_SHARED = layer("history-c-and-d", 3000)


def image(name: str, days_old: float, *layers):
    return build_image([*layers, layer(f"history-{name}", 1000 + 97 * len(name))], created=NOW - timedelta(days_old))


IMAGES = {
    "a1": image("a1", 400, BASE),
    "a2": image("a2", 10, BASE),
    "a3": image("a3", 1, BASE),
    "a-old": image("a-old", 500),
    "b1": image("b1", 5, BASE),
    "b2": image("b2", 2),
    "c1": image("c1", 3, CD_SHARED),
    "d1": image("d1", 40, CD_SHARED),
    "e1": image("e1", 1, BASE),
    "e2": image("e2", 1),
    "z1": image("z1", 1),
}


class Model:
    """What the registry holds, as the test put it there: repository -> tag -> image."""

    def __init__(self):
        self.state: dict[str, dict[str, object]] = {}

    def put(self, client, repository: str, tag: str, name: str) -> None:
        push_image(client, repository, tag, IMAGES[name])
        self.state.setdefault(repository, {})[tag] = IMAGES[name]

    def drop(self, client, repository: str, tag: str) -> None:
        client.rmtag(repository, tag)
        del self.state[repository][tag]

    def drop_repository(self, client, repository: str) -> None:
        client.rmrepo(repository)
        self.state[repository] = {}

    def snapshot(self) -> dict[tuple[str, str], object]:
        return {(repo, tag): img for repo, tags in self.state.items() for tag, img in tags.items()}


def blobs_of(tags: dict[tuple[str, str], object]) -> dict[str, dict[str, int]]:
    """Per repository: every blob (config and layers) its tagged images use, with its size."""
    out: dict[str, dict[str, int]] = {}
    for (repo, _tag), img in tags.items():
        out.setdefault(repo, {}).update({blob.digest: blob.size for blob in img.blobs()})
    return out


def storage_of(tags) -> dict[str, tuple[int, int]]:
    """Per repository: (stored bytes, exclusive bytes), each blob counted once per repository."""
    per_repo = blobs_of(tags)
    result = {}
    for repo, blobs in per_repo.items():
        others = {d for other, b in per_repo.items() if other != repo for d in b}
        result[repo] = (sum(blobs.values()), sum(size for d, size in blobs.items() if d not in others))
    return result


def total_of(tags) -> int:
    distinct = {}
    for blobs in blobs_of(tags).values():
        distinct.update(blobs)
    return sum(distinct.values())


def stale_of(tags, at: datetime) -> set[tuple[str, str]]:
    """Older than STALE_DAYS at ``at``, unless a tag on the same image in the repository is younger."""
    old = {key for key, img in tags.items() if at - img.created > timedelta(days=STALE_DAYS)}
    fresh = {(repo, img.digest) for (repo, tag), img in tags.items() if (repo, tag) not in old}
    return {(repo, tag) for repo, tag in old if (repo, tags[(repo, tag)].digest) not in fresh}


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """Two audits with ``--history`` of one registry, changed in between as real users change one; the
    registry stays up, unchanged, for the module's tests."""
    root = tmp_path_factory.mktemp("history")
    model = Model()
    with local_registry() as reg, regframe.connect(reg.url, docker_config=False) as client:
        model.put(client, "team/z", "gone", "z1")
        model.drop_repository(client, "team/z")  # listed in the catalog with no tags in both audits
        for repo, tag, name in [
            ("team/a", "1.0", "a1"),
            ("team/a", "1.1", "a2"),
            ("team/a", "latest", "a2"),
            ("team/b", "1.0", "b1"),
            ("team/b", "2.0", "b2"),
            ("team/c", "v1", "c1"),
            ("team/d", "stable", "d1"),
        ]:
            model.put(client, repo, tag, name)
        before = model.snapshot()
        rules = ("--older-than", f"{STALE_DAYS}d", "--no-progress", "--history", str(root / "snapshots"))
        first = run_cli("audit", reg.url, "--out", str(root / "first"), *rules)

        model.put(client, "team/a", "2.0", "a3")
        model.put(client, "team/a", "legacy", "a-old")  # an old build tagged now: stale at once
        model.put(client, "team/b", "1.0", "b2")  # the retag: 1.0 moves onto 2.0's image
        model.drop(client, "team/a", "1.0")
        model.put(client, "team/e", "v1", "e1")
        model.put(client, "team/e", "v2", "e2")
        model.drop_repository(client, "team/c")  # distribution 2.8 keeps the name, with no tags
        after = model.snapshot()
        second = run_cli("audit", reg.url, "--out", str(root / "second"), *rules)
        yield {
            "root": root,
            "url": reg.url,
            "before": before,
            "after": after,
            "first": first,
            "second": second,
            "catalog": set(client.search()),
        }


def expected_tag_changes(before, after) -> set[tuple]:
    changes = {(r, t, "added", None, after[(r, t)].digest) for r, t in after.keys() - before.keys()}
    changes |= {(r, t, "removed", before[(r, t)].digest, None) for r, t in before.keys() - after.keys()}
    changes |= {
        (r, t, "moved", before[(r, t)].digest, after[(r, t)].digest)
        for r, t in before.keys() & after.keys()
        if before[(r, t)].digest != after[(r, t)].digest
    }
    return changes


def tag_rows(frame: pd.DataFrame) -> set[tuple]:
    return {
        (r, t, c, None if pd.isna(o) else o, None if pd.isna(n) else n)
        for r, t, c, o, n in frame[["repository", "tag", "change", "old_digest", "new_digest"]].itertuples(index=False)
    }


def loaded(scenario) -> tuple[regframe.Inventory, regframe.Inventory]:
    first, second = history.snapshots(scenario["root"] / "snapshots")
    return regframe.Inventory.load(first), regframe.Inventory.load(second)


def test_the_scenario_ran(scenario):
    assert scenario["first"][0] == 0 and scenario["second"][0] == 0, scenario["second"][2]
    assert {"team/c", "team/z"} <= scenario["catalog"], "2.8 keeps the names of repositories without tags"


def test_diff_reports_every_change_made_between_the_audits(scenario):
    older, newer = loaded(scenario)
    before, after = scenario["before"], scenario["after"]
    result = newer.diff(older, older_than=f"{STALE_DAYS}d")
    assert isinstance(result, history.Diff)

    assert tag_rows(result.tags) == expected_tag_changes(before, after)
    moved = result.tags[result.tags["change"] == "moved"].iloc[0]
    assert moved["old_created"] == pd.Timestamp(IMAGES["b1"].created)
    assert moved["new_created"] == pd.Timestamp(IMAGES["b2"].created)
    added = result.tags.set_index(["repository", "tag"])
    assert pd.isna(added.loc[("team/a", "2.0"), "old_created"])
    assert added.loc[("team/a", "2.0"), "new_created"] == pd.Timestamp(IMAGES["a3"].created)

    repos_before = {r for r, _ in before}
    repos_after = {r for r, _ in after}
    assert set(result.repositories.itertuples(index=False, name=None)) == {
        *((r, "added", 0, sum(1 for rr, _ in after if rr == r)) for r in repos_after - repos_before),
        *((r, "removed", sum(1 for rr, _ in before if rr == r), 0) for r in repos_before - repos_after),
    }
    assert "team/z" not in set(result.repositories["repository"]), "no tags in either audit: absent in both"

    storage_before, storage_after = storage_of(before), storage_of(after)
    expected = {
        repo: (
            storage_before.get(repo, (0, 0))[0],
            storage_after.get(repo, (0, 0))[0],
            storage_after.get(repo, (0, 0))[0] - storage_before.get(repo, (0, 0))[0],
            storage_before.get(repo, (0, 0))[1],
            storage_after.get(repo, (0, 0))[1],
            storage_after.get(repo, (0, 0))[1] - storage_before.get(repo, (0, 0))[1],
        )
        for repo in storage_before.keys() | storage_after.keys()
    }
    columns = [c for c in history.changes.STORAGE_CHANGE_COLUMNS if "bytes" in c]
    got = {row[0]: tuple(row[1:]) for row in result.storage[["repository", *columns]].itertuples(index=False)}
    assert got == expected
    assert result.storage.set_index("repository").loc["team/d", "exclusive_bytes_delta"] == CD_SHARED.size
    assert list(result.storage["stored_bytes_delta"]) == sorted(result.storage["stored_bytes_delta"], reverse=True)

    became = stale_of(after, NOW) - stale_of(before, NOW)
    assert set(zip(result.stale["repository"], result.stale["tag"], strict=True)) == became == {("team/a", "legacy")}
    assert list(result.stale["before"]) == ["not in the older audit"]

    a = result.attrs
    assert (a["tags_added"], a["tags_removed"], a["tags_moved"]) == (
        len(after.keys() - before.keys()),
        len(before.keys() - after.keys()),
        1,
    )
    assert (a["repositories_added"], a["repositories_removed"]) == (1, 1)
    assert (a["stored_bytes_before"], a["stored_bytes_after"]) == (total_of(before), total_of(after))
    assert a["stored_bytes_delta"] == total_of(after) - total_of(before)
    assert a["growth_ratio"] == pytest.approx((total_of(after) - total_of(before)) / total_of(before))
    assert (a["stale_before"], a["stale_after"], a["stale_new"]) == (
        len(stale_of(before, NOW)),
        len(stale_of(after, NOW)),
        1,
    )
    assert (a["tags_unknown"], a["repositories_unknown"], a["same_scope"]) == (0, 0, True)


def test_each_audit_is_judged_stale_at_its_own_crawl_time(scenario):
    """team/d:stable is 40 days old now; had the first audit run 15 days earlier, it was 25 days old then."""
    older, newer = loaded(scenario)
    older.crawled_at -= pd.Timedelta(days=15)
    result = history.diff(older, newer, older_than=f"{STALE_DAYS}d")
    stale_then = stale_of(scenario["before"], NOW - timedelta(days=15))
    became = stale_of(scenario["after"], NOW) - stale_then
    assert ("team/d", "stable") in became
    assert set(zip(result.stale["repository"], result.stale["tag"], strict=True)) == became
    row = result.stale.set_index("tag").loc["stable"]
    assert row["before"] == f"newer than {STALE_DAYS} days"


def test_diff_summary_and_repr_show_the_counts(scenario):
    older, newer = loaded(scenario)
    result = newer.diff(older, older_than=f"{STALE_DAYS}d")
    added, removed = len(scenario["after"].keys() - scenario["before"].keys()), 2
    text = repr(result)
    assert f"{added} added, {removed} removed, 1 moved" in text
    assert "1 added, 1 removed" in text
    assert "repositories added: team/e" in text and "repositories removed: team/c" in text
    assert "tags moved: team/b:1.0" in text
    html = result._repr_html_()
    assert f"<td>{added} added, {removed} removed, 1 moved</td>" in html
    assert f"<td>{len(scenario['before'])}</td><td>{len(scenario['after'])}</td>" in html


def test_diff_summary_keeps_each_name_on_its_line(scenario):
    """A saved audit's names may hold anything (a file edited, a registry that lists odd names): a newline
    in one must not start a line of the summary, which a CI log reads line by line."""
    older, newer = loaded(scenario)
    tags = newer.tags.copy()
    tags["tag"] = tags["tag"].astype(str)
    first = tags.index[0]
    tags.loc[first, "tag"] = "x\n::error::forged"
    newer.tags = tags
    text = newer.diff(older, older_than=f"{STALE_DAYS}d").summary()
    assert not [line for line in text.splitlines() if line.startswith("::error::")]
    assert "x\\x0a::error::forged" in text


def test_snapshots_record_version_crawl_parameters_and_time(scenario):
    folders = history.snapshots(scenario["root"] / "snapshots")
    assert len(folders) == 2
    left = sorted(p.name for p in (scenario["root"] / "snapshots").iterdir())
    assert left == [p.name for p in folders], "no temporary folder left behind"
    for folder in folders:
        meta = json.loads((folder / "inventory.json").read_text())
        assert meta["format"] == 2
        assert meta["regframe_version"] == regframe.__version__
        assert meta["url"] == scenario["url"]
        assert meta["params"] == {
            "repositories": None,
            "match": None,
            "strict": False,
            "max_pages": 10_000,
            "referrers": True,
        }, "the audit asks the referrers API unless --no-referrers"
        assert {p.name for p in folder.glob("*.parquet")} == {
            f"{name}.parquet" for name in regframe.Inventory.load(folder).frames()
        }
        taken = pd.Timestamp(meta["crawled_at"])
        assert history.snapshot_time(folder) == taken
        assert abs(taken - pd.Timestamp(NOW)) < pd.Timedelta(minutes=10)


def test_second_audit_prints_what_changed_since_the_first(scenario):
    root = scenario["root"]
    assert "Since the last audit" not in scenario["first"][1]
    assert not (root / "first" / "diff_tags.csv").exists()
    text = scenario["second"][1]
    added = len(scenario["after"].keys() - scenario["before"].keys())
    assert "Since the last audit:" in text
    assert f"{added} added, 2 removed, 1 moved" in text
    assert text == (root / "second" / "summary.txt").read_text() + "\n"
    before, after = scenario["before"], scenario["after"]
    markdown = (root / "second" / "report.md").read_text()
    section = markdown.split("### Since the last audit", 1)[1].split("\n### ", 1)[0]
    assert f"{len(before)} → {len(after)} ({added} added, 2 removed, 1 moved)" in section
    assert f"{format_bytes(total_of(before))} → {format_bytes(total_of(after))}" in section
    assert "| team/b | 1.0 | moved |" in section
    storage = pd.read_csv(root / "second" / "diff_storage.csv")
    grew, shrank = storage[storage["stored_bytes_delta"] > 0], storage[storage["stored_bytes_delta"] < 0]
    assert len(grew) and len(shrank), "the scenario grows one repository and shrinks another"
    for row in pd.concat([grew, shrank]).itertuples(index=False):
        sign = "+" if row.stored_bytes_delta > 0 else ""
        assert f"| {sign}{format_bytes(row.stored_bytes_delta)} |" in section, "a change shows its sign"
    assert 'id="since-last"' in (root / "second" / "report.html").read_text()
    assert (root / "second" / "charts" / "growth.png").is_file()
    assert "Since the last audit" not in (root / "first" / "report.md").read_text()
    tags = pd.read_csv(root / "second" / "diff_tags.csv", keep_default_na=False, na_values=[""])
    assert tag_rows(tags.astype(object).where(tags.notna(), None)) == expected_tag_changes(
        scenario["before"], scenario["after"]
    )


def test_history_load_gives_one_row_per_snapshot_and_repository(scenario):
    frame = history.load(scenario["root"] / "snapshots")
    folders = history.snapshots(scenario["root"] / "snapshots")
    assert list(frame.columns) == [
        "snapshot",
        "repository",
        "tags",
        "images",
        "stored_bytes",
        "exclusive_bytes",
        "shared_bytes",
        "logical_bytes",
    ]
    for folder, state in zip(folders, (scenario["before"], scenario["after"]), strict=True):
        rows = frame[frame["snapshot"] == history.snapshot_time(folder)].set_index("repository")
        storage = storage_of(state)
        assert set(rows.index) == set(storage), "repositories without tags have no row"
        for repo, (stored, exclusive) in storage.items():
            tags = sum(1 for r, _ in state if r == repo)
            images = len({img.digest for (r, _), img in state.items() if r == repo})
            assert (rows.loc[repo, "stored_bytes"], rows.loc[repo, "exclusive_bytes"]) == (stored, exclusive)
            assert (rows.loc[repo, "tags"], rows.loc[repo, "images"]) == (tags, images)
            assert rows.loc[repo, "shared_bytes"] == stored - exclusive
    assert frame["snapshot"].is_monotonic_increasing
    assert frame.attrs["total_bytes"] == {
        history.snapshot_time(folder).isoformat(): total_of(state)
        for folder, state in zip(folders, (scenario["before"], scenario["after"]), strict=True)
    }


def test_growth_chart_of_the_real_history_draws_the_model_numbers(scenario):
    frame = history.load(scenario["root"] / "snapshots")
    ax = growth(frame, top=2)
    before, after = storage_of(scenario["before"]), storage_of(scenario["after"])
    ranked = sorted(after, key=lambda repo: (-after[repo][0], repo))
    lines = {line.get_label(): line for line in ax.get_lines()}
    for repo in ranked[:2]:
        assert list(lines[repo].get_ydata()) == [before.get(repo, (0, 0))[0], after[repo][0]]
    rest = (set(before) | set(after)) - set(ranked[:2])
    rest_line = next(line for line in ax.get_lines() if line.get_gid() == "rest")
    assert rest_line.get_label() == f"the rest ({len(rest)} repositories)"
    assert list(rest_line.get_ydata()) == [
        sum(before.get(r, (0, 0))[0] for r in rest),
        sum(after.get(r, (0, 0))[0] for r in rest),
    ]
    plt.close("all")


def test_cli_diff_prints_and_writes_csv(scenario, tmp_path):
    root = scenario["root"]
    code, out, err = run_cli(
        "diff", str(root / "first"), str(root / "second"), "--out", str(tmp_path), "--older-than", f"{STALE_DAYS}d"
    )
    assert code == 0, err
    before, after = scenario["before"], scenario["after"]
    added = len(after.keys() - before.keys())
    assert f"{added} added, 2 removed, 1 moved" in out
    assert "repositories added: team/e" in out and "1 became stale" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "diff_repositories.csv",
        "diff_stale.csv",
        "diff_storage.csv",
        "diff_tags.csv",
        "diff_totals.csv",
    ]
    tags = pd.read_csv(tmp_path / "diff_tags.csv")
    assert tag_rows(tags.astype(object).where(tags.notna(), None)) == expected_tag_changes(before, after)
    totals = pd.read_csv(tmp_path / "diff_totals.csv").iloc[0]
    assert totals["stored_bytes_before"] == total_of(before)
    assert totals["stored_bytes_after"] == total_of(after)
    assert totals["tags_moved"] == 1
    storage = pd.read_csv(tmp_path / "diff_storage.csv").set_index("repository")
    for repo, (stored, exclusive) in storage_of(after).items():
        assert (storage.loc[repo, "stored_bytes_after"], storage.loc[repo, "exclusive_bytes_after"]) == (
            stored,
            exclusive,
        )
    stale = pd.read_csv(tmp_path / "diff_stale.csv")
    assert list(stale["tag"]) == ["legacy"]
    assert stale["age_days"].iloc[0] == pytest.approx(500, abs=1)
    repositories = pd.read_csv(tmp_path / "diff_repositories.csv")
    assert set(zip(repositories["repository"], repositories["change"], strict=True)) == {
        ("team/e", "added"),
        ("team/c", "removed"),
    }


def test_cli_diff_of_snapshots_matches_the_diff_of_audit_folders(scenario, tmp_path):
    first, second = history.snapshots(scenario["root"] / "snapshots")
    code, out, err = run_cli("diff", str(first), str(second), "--older-than", f"{STALE_DAYS}d")
    assert code == 0, err
    code, from_folders, _ = run_cli(
        "diff", str(scenario["root"] / "first"), str(scenario["root"] / "second"), "--older-than", f"{STALE_DAYS}d"
    )
    assert out == from_folders


def test_cli_diff_refuses_what_is_not_an_audit(tmp_path, scenario):
    code, _, err = run_cli("diff", str(tmp_path / "missing"), str(scenario["root"] / "second"))
    assert code == 2 and "is not a folder" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli("diff", str(tmp_path / "empty"), str(scenario["root"] / "second"))
    assert code == 2 and "is not a saved audit" in err
    code, _, err = run_cli("diff", str(scenario["root"] / "first"), str(scenario["root"] / "second"), "--keep", "(")
    assert code == 2 and "--keep" in err


def edit_meta(folder: Path, **values) -> None:
    meta = json.loads((folder / "inventory.json").read_text())
    (folder / "inventory.json").write_text(json.dumps({**meta, **values}))


def cut_mid_row(folder: Path) -> None:
    text = (folder / "tags.csv").read_text()
    (folder / "tags.csv").write_text(text[: text.rindex("sha256:") + len("sha256:") + 10])


def drop_last_cells(folder: Path) -> None:
    lines = (folder / "tags.csv").read_text().splitlines()
    (folder / "tags.csv").write_text("\n".join([*lines[:-1], lines[-1].split(",sha256:")[0]]) + "\n")


DAMAGED = {
    "params-a-list": (lambda f: edit_meta(f, params=[1]), "inventory.json", "params must be an object or null"),
    "stats-a-list": (lambda f: edit_meta(f, stats=[]), "inventory.json", "stats must be an object or null"),
    "bad-date": (lambda f: edit_meta(f, crawled_at="soon"), "inventory.json", "crawled_at 'soon' is not a date"),
    "meta-not-json": (lambda f: (f / "inventory.json").write_text("{not json"), "inventory.json", "is not JSON"),
    "tags-cut-mid-row": (cut_mid_row, "tags.csv", "ends in the middle of a row"),
    "tags-row-without-digest": (drop_last_cells, "tags.csv", "has no digest"),
    "tags-foreign": (
        lambda f: (f / "tags.csv").write_text("x,y\n1,2\n"),
        "tags.csv",
        "lacks the column(s) repository, tag, digest",
    ),
    "tags-empty": (lambda f: (f / "tags.csv").write_text(""), "tags.csv", "is empty"),
}


@pytest.mark.parametrize("how", DAMAGED)
def test_cli_diff_refuses_a_damaged_audit_naming_the_file(scenario, tmp_path, how):
    """A saved audit cut short (a partial artifact download, a full disk) or edited by hand is refused,
    naming the file and what is wrong with it: never a traceback, and never read as tags removed."""
    damage_it, name, why = DAMAGED[how]
    folder = tmp_path / how
    shutil.copytree(scenario["root"] / "second", folder)
    damage_it(folder)
    code, out, err = run_cli("diff", str(scenario["root"] / "first"), str(folder))
    assert (code, out) == (2, "")
    assert err.startswith(f"regframe: error: {folder / name}") and why in err, err
    assert len(err.splitlines()) == 1


def test_a_cell_that_is_not_a_number_names_its_file(scenario, tmp_path):
    """A layer size that is not a number (a cell edited in a spreadsheet) is refused naming layers.csv."""
    folder = tmp_path / "edited"
    shutil.copytree(scenario["root"] / "second", folder)
    layers = pd.read_csv(folder / "layers.csv", dtype=str, keep_default_na=False)
    layers.loc[0, "size"] = "big"
    layers.to_csv(folder / "layers.csv", index=False)
    code, _, err = run_cli("diff", str(scenario["root"] / "first"), str(folder))
    assert code == 2
    assert err.startswith(f"regframe: error: {folder / 'layers.csv'} cannot be read") and "'big'" in err, err


def test_a_damaged_snapshot_is_reported_once_as_a_regframe_warning(scenario, tmp_path):
    """The audit reads the history before the crawl and again for its growth chart: the snapshot skipped
    both times is told once, as ``regframe: warning: ...`` rather than with regframe's source line."""
    import subprocess
    import sys

    folder = tmp_path / "snapshots"
    shutil.copytree(scenario["root"] / "snapshots", folder)
    _, second = history.snapshots(folder)
    (second / "tags.parquet").write_bytes(b"PAR1 cut")
    done = subprocess.run(
        [
            sys.executable, "-m", "regframe", "audit", scenario["url"], "--out", str(tmp_path / "report"),
            "--history", str(folder), "--no-progress", "--format", "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [warning] = done.stderr.splitlines()
    assert warning.startswith(f"regframe: warning: snapshot {second} cannot be read and is skipped: ")
    assert "tags.parquet" in warning


def write_format_1(source: Path, target: Path) -> None:
    """A snapshot as regframe wrote it before formats were numbered: url, complete and stats only."""
    shutil.copytree(source, target)
    meta = json.loads((source / "inventory.json").read_text())
    (target / "inventory.json").write_text(
        json.dumps({"url": meta["url"], "complete": meta["complete"], "stats": meta["stats"]})
    )


def test_a_snapshot_in_the_older_format_loads(scenario, tmp_path):
    first, second = history.snapshots(scenario["root"] / "snapshots")
    folder = tmp_path / "snapshots"
    folder.mkdir()
    write_format_1(first, folder / first.name)
    shutil.copytree(second, folder / second.name)

    old = regframe.Inventory.load(folder / first.name)
    assert (old.format, old.regframe_version, old.params, old.crawled_at) == (1, None, {}, None)
    current = regframe.Inventory.load(first)
    for name, frame in current.frames().items():
        pd.testing.assert_frame_equal(getattr(old, name), frame)

    result = history.diff(old, regframe.Inventory.load(second), older_than=f"{STALE_DAYS}d")
    assert tag_rows(result.tags) == expected_tag_changes(scenario["before"], scenario["after"])
    assert "an undated audit" in result.summary()
    assert len(history.load(folder)) == len(history.load(scenario["root"] / "snapshots"))
    assert history.load_snapshot(folder / first.name).crawled_at == history.snapshot_time(first)

    shutil.rmtree(folder / second.name)
    out = tmp_path / "report"
    code, text, err = run_cli(
        "audit", scenario["url"], "--out", str(out), "--history", str(folder), "--older-than", f"{STALE_DAYS}d"
    )
    assert code == 0, err
    added = len(scenario["after"].keys() - scenario["before"].keys())
    assert f"{added} added, 2 removed, 1 moved" in text.split("Since the last audit:", 1)[1]
    assert len(history.snapshots(folder)) == 2


def test_diff_refuses_bad_input_before_comparing(scenario):
    older, newer = loaded(scenario)
    with pytest.raises(ValueError, match="older must be an Inventory"):
        history.diff(older.tags, newer)
    with pytest.raises(ValueError, match="soon"):
        newer.diff(older, older_than="soon")
    with pytest.raises(ValueError, match="stale must be a function"):
        newer.diff(older, stale="90d")


def test_a_stale_rule_such_as_a_policy_decides_the_stale_tags(scenario):
    """``stale=`` takes what ``Policy.evaluate`` is: (manifests, now) -> frame; each audit gets its own time."""
    older, newer = loaded(scenario)
    seen = []

    def everything_stale(manifests, now):
        seen.append(now)
        frame = regframe.analysis.stale_tags(manifests, older_than="0d", now=now)
        return frame.assign(stale=True)

    result = newer.diff(older, stale=everything_stale)
    assert seen == [older.crawled_at, newer.crawled_at]
    new_tags = {key for key in scenario["after"].keys() - scenario["before"].keys()}
    assert set(zip(result.stale["repository"], result.stale["tag"], strict=True)) == new_tags


def test_a_snapshot_in_a_newer_format_is_refused(scenario, tmp_path):
    """The fault proxy only counts requests here: none may reach the registry."""
    first, second = history.snapshots(scenario["root"] / "snapshots")
    folder = tmp_path / "snapshots"
    folder.mkdir()
    shutil.copytree(first, folder / first.name)
    newer = folder / second.name
    shutil.copytree(second, newer)
    meta = json.loads((newer / "inventory.json").read_text())
    (newer / "inventory.json").write_text(json.dumps({**meta, "format": 3, "regframe_version": "9.0.0"}))

    with pytest.raises(InventoryFormatError, match=r"saved by regframe 9\.0\.0 in inventory format 3.*upgrade"):
        regframe.Inventory.load(newer)
    with pytest.raises(InventoryFormatError, match=str(newer.name)):
        history.load(folder)
    code, _, err = run_cli("diff", str(first), str(newer))
    assert code == 2 and "inventory format 3" in err

    out = tmp_path / "report"
    with FaultProxy(scenario["url"], seed=0) as proxy:
        # The snapshot is of the registry audited: the proxy's URL (a snapshot of another one is not read).
        (newer / "inventory.json").write_text(
            json.dumps({**meta, "format": 3, "regframe_version": "9.0.0", "url": proxy.url})
        )
        code, _, err = run_cli("audit", proxy.url, "--out", str(out), "--history", str(folder), "--no-progress")
        assert proxy.stats.requests == 0, "refused before any request"
    assert code == 2 and "inventory format 3" in err
    assert not out.exists()
    assert len(list(folder.iterdir())) == 2, "no snapshot added"


def test_a_save_that_fails_leaves_no_snapshot(scenario, tmp_path):
    first, _ = history.snapshots(scenario["root"] / "snapshots")
    inv = regframe.Inventory.load(first)
    folder = tmp_path / "snapshots"
    kept = history.save(inv, folder)

    def broken(dir):
        (Path(dir) / "catalog.parquet").write_bytes(b"half")
        raise OSError("disk full")

    inv.to_parquet = broken
    with pytest.raises(OSError, match="disk full"):
        history.save(inv, folder)
    assert list(folder.iterdir()) == [kept], "nothing half-written is left, not even hidden"
    (folder / ".partial-left-by-a-killed-audit").mkdir()
    assert history.snapshots(folder) == [kept] and history.latest(folder) == kept


def test_two_snapshots_of_the_same_instant_get_their_own_folders(scenario, tmp_path):
    first, _ = history.snapshots(scenario["root"] / "snapshots")
    inv = regframe.Inventory.load(first)
    when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    one, two = history.save(inv, tmp_path, when=when), history.save(inv, tmp_path, when=when)
    assert (one.name, two.name) == ("20260301T120000.000000Z", "20260301T120000.000001Z")
    assert history.snapshots(tmp_path) == [one, two]


def crawls_with_read_errors() -> tuple[regframe.Inventory, regframe.Inventory]:
    """Two crawls of r/a (1, 2), r/b (1) and r/c (1, then 2 added between them). A real registry cannot be
    made to fail one request, so the fault proxy refuses, in the second crawl only, one tag's manifest
    (r/a:2) and another repository's tag list (r/b)."""
    with local_registry() as reg, regframe.connect(reg.url, docker_config=False) as client:
        for repo, tag, name in [("r/a", "1", "a1"), ("r/a", "2", "a2"), ("r/b", "1", "b1"), ("r/c", "1", "c1")]:
            push_image(client, repo, tag, IMAGES[name])
        with FaultProxy(reg.url, seed=0) as proxy, regframe.connect(proxy.url, docker_config=False) as through:
            older = through.inventory(progress=False)
            push_image(client, "r/c", "2", IMAGES["d1"])
            proxy.add_rule(Rule(path=r"^/v2/r/a/manifests/2$", action=Status(403)))
            proxy.add_rule(Rule(path=r"^/v2/r/b/tags/list", action=Status(403)))
            newer = through.inventory(progress=False)
    return older, newer


def test_a_read_error_is_not_reported_as_a_removal():
    """A tag and a tag list the second crawl could not read (``crawls_with_read_errors``)."""
    older, newer = crawls_with_read_errors()
    assert len(newer.errors) == 2
    result = newer.diff(older)
    assert tag_rows(result.tags) == {("r/c", "2", "added", None, IMAGES["d1"].digest)}
    assert result.repositories.empty
    assert (result.attrs["tags_unknown"], result.attrs["repositories_unknown"]) == (2, 1)
    assert "left out" in result.summary()


def growth_history() -> pd.DataFrame:
    """Three snapshots; "mid" misses the first one; "small" and "tiny" end up in the rest at top=2."""
    times = [pd.Timestamp(f"2026-0{m}-01", tz="UTC") for m in (1, 2, 3)]
    rows = [
        (times[0], "big", 100),
        (times[0], "small", 30),
        (times[0], "tiny", 5),
        (times[1], "big", 150),
        (times[1], "mid", 60),
        (times[1], "small", 30),
        (times[2], "big", 170),
        (times[2], "mid", 120),
        (times[2], "small", 20),
        (times[2], "tiny", 7),
    ]
    return pd.DataFrame(rows, columns=["snapshot", "repository", "stored_bytes"])


def test_growth_draws_the_top_repositories_and_the_rest():
    frame = growth_history()
    ax = growth(frame, top=2)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"big", "mid", "the rest (2 repositories)"}
    times = sorted(set(frame["snapshot"]))
    expected_x = [t.tz_localize(None).to_datetime64() for t in times]
    assert list(lines["big"].get_xdata()) == expected_x
    assert list(lines["big"].get_ydata()) == [100, 150, 170]
    assert list(lines["mid"].get_ydata()) == [0, 60, 120]
    assert list(lines["the rest (2 repositories)"].get_ydata()) == [35, 30, 27]
    assert lines["the rest (2 repositories)"].get_gid() == "rest"
    assert lines["big"].get_color() != lines["mid"].get_color()
    plt.close("all")


def test_growth_without_a_rest_and_with_attrs_in_the_title():
    frame = growth_history()
    frame.attrs["total_bytes"] = {"2026-01-01T00:00:00+00:00": 120, "2026-03-01T00:00:00+00:00": 300}
    ax = growth(frame, top=10)
    assert {line.get_label() for line in ax.get_lines()} == {"big", "mid", "small", "tiny"}
    assert ax.get_title(loc="left") == "Registry 300 B stored, +180 B over 3 snapshots"
    plt.close("all")


def test_growth_options_are_keyword_only_and_reach_matplotlib():
    frame = growth_history()
    with pytest.raises(TypeError, match="positional"):
        growth(frame, 2)
    _fig, given = plt.subplots()
    ax = growth(frame, top=1, ax=given, linewidth=4, alpha=0.5, color="#123456")
    assert ax is given
    for line in ax.get_lines():
        assert line.get_linewidth() == 4 and line.get_alpha() == 0.5
        assert to_rgba(line.get_color()) == to_rgba("#123456")
    plt.close("all")


def test_growth_refuses_bad_input_and_notes_an_empty_history():
    with pytest.raises(ValueError, match="stored_bytes"):
        growth(pd.DataFrame({"snapshot": [], "repository": []}))
    with pytest.raises(ValueError, match="top"):
        growth(growth_history(), top=0)
    ax = growth(growth_history().iloc[:0])
    assert [t.get_text() for t in ax.texts] == ["No snapshots"]
    plt.close("all")


def test_history_load_of_an_empty_folder_and_a_missing_one(tmp_path):
    frame = history.load(tmp_path)
    assert frame.empty and list(frame.columns)[:2] == ["snapshot", "repository"]
    with pytest.raises(FileNotFoundError, match="not a folder of snapshots"):
        history.load(tmp_path / "missing")


def test_history_counts_runnable_images_only(tmp_path):
    """Signatures and SBOMs are manifests too, but a repository's ``images`` are the ones that run: the
    same count ``storage_usage`` gives a fresh crawl."""
    fleet = make_fleet(repositories=2, tags_per_repo=3, signed_ratio=1.0, sbom_ratio=1.0, seed=5)
    with seeded_registry(fleet) as reg, regframe.connect(reg.url, docker_config=False) as client:
        inv = client.inventory(progress=False)
    history.save(inv, tmp_path)
    rows = history.load(tmp_path).set_index("repository")
    for repository, tags in fleet.tags.items():
        runnable = {image.digest for content in tags.values() for image in content.images}
        assert rows.loc[repository, "images"] == len(runnable), repository
    assert sum(len(accessories) for accessories in fleet.accessories.values()) > 0, "there were accessories"


def test_audits_of_different_scopes_compare_only_what_both_crawled(tmp_path):
    """A full audit, one limited with --repositories, and a full one again into one --history: nothing
    outside the narrow audit is removed, then re-added, and growth counts only the common repositories."""
    tags = {("s/a", "1"): IMAGES["a1"], ("s/b", "1"): IMAGES["b1"], ("s/c", "1"): IMAGES["c1"]}
    snapshots = tmp_path / "snapshots"
    rules = ("--no-progress", "--history", str(snapshots), "--fail-on", "growth<0%")  # a shrinkage gate
    with local_registry() as reg, regframe.connect(reg.url, docker_config=False) as client:
        for (repo, tag), img in tags.items():
            push_image(client, repo, tag, img)
        first = run_cli("audit", reg.url, "--out", str(tmp_path / "full"), "--no-progress", "--history", str(snapshots))
        push_image(client, "s/a", "2", IMAGES["a2"])
        tags[("s/a", "2")] = IMAGES["a2"]
        narrow = run_cli("audit", reg.url, "--out", str(tmp_path / "narrow"), "--repositories", "s/a", *rules)
        again = run_cli(
            "audit", reg.url, "--out", str(tmp_path / "again"), "--no-progress", "--history", str(snapshots)
        )
    assert first[0] == 0, first[2]
    assert narrow[0] == 0, narrow[2]
    assert again[0] == 0, again[2]

    older, newer, last = (history.load_snapshot(path) for path in history.snapshots(snapshots))
    result = newer.diff(older)
    only_a = {key: img for key, img in tags.items() if key[0] == "s/a"}
    before_a = {key: img for key, img in only_a.items() if key != ("s/a", "2")}
    assert result.repositories.empty
    assert tag_rows(result.tags) == {("s/a", "2", "added", None, IMAGES["a2"].digest)}
    assert list(result.storage["repository"]) == ["s/a"]
    a = result.attrs
    assert (a["stored_bytes_before"], a["stored_bytes_after"]) == (total_of(before_a), total_of(only_a))
    assert a["growth_ratio"] == pytest.approx((total_of(only_a) - total_of(before_a)) / total_of(before_a))
    assert (a["repositories_before"], a["tags_before"], a["repositories_out_of_scope"]) == (1, 1, 2)
    assert (a["repositories_removed"], a["tags_removed"], a["same_scope"]) == (0, 0, False)
    assert "2 repositories outside one audit's scope are left out of every change" in result.summary()

    back = last.diff(newer)
    assert back.repositories.empty and back.tags.empty and back.attrs["repositories_out_of_scope"] == 2
    assert list(back.storage["repository"]) == ["s/a"] and back.attrs["stored_bytes_delta"] == 0
    summary = json.loads((tmp_path / "narrow" / "summary.json").read_text())
    assert summary["growth_bytes"] == total_of(only_a) - total_of(before_a)
    assert summary["growth_percent"] == round(100 * a["growth_ratio"], 4)


def test_a_full_audit_after_a_narrow_one_does_not_trip_the_growth_gate(tmp_path):
    snapshots = tmp_path / "snapshots"
    with local_registry() as reg, regframe.connect(reg.url, docker_config=False) as client:
        for repo, name in (("s/a", "a1"), ("s/b", "b1"), ("s/c", "c1")):
            push_image(client, repo, "1", IMAGES[name])
        rules = ("--no-progress", "--history", str(snapshots))
        narrow = run_cli("audit", reg.url, "--out", str(tmp_path / "narrow"), "--repositories", "s/a", *rules)
        full = run_cli("audit", reg.url, "--out", str(tmp_path / "full"), *rules, "--fail-on", "growth>10%")
    assert narrow[0] == 0, narrow[2]
    assert "growth_percent is +0.0%" not in full[2]
    assert json.loads((tmp_path / "full" / "summary.json").read_text())["growth_bytes"] == 0
    assert full[0] == 0, full[2]


def test_a_read_error_is_left_out_of_storage_and_growth():
    """The second crawl could not read r/a:2 nor r/b's tag list (``crawls_with_read_errors``): neither
    repository may shrink."""
    older, newer = crawls_with_read_errors()
    assert set(newer.errors["repository"].astype(str)) == {"r/a", "r/b"}
    result = newer.diff(older)
    c_before = {("r/c", "1"): IMAGES["c1"]}
    c_after = {**c_before, ("r/c", "2"): IMAGES["d1"]}
    rows = result.storage.set_index("repository")
    assert list(rows.index) == ["r/c"], "r/a and r/b were not read in full: no 5.2 MB -> 0 B"
    assert rows.loc["r/c", "stored_bytes_delta"] == total_of(c_after) - total_of(c_before)
    a = result.attrs
    assert (a["stored_bytes_before"], a["stored_bytes_after"]) == (total_of(c_before), total_of(c_after))
    assert a["stored_bytes_delta"] > 0 and a["storage_unknown"] == 2
    assert "2 repositories a read error may have cut short are left out of storage and growth" in result.summary()


def test_the_diff_keeps_an_accessory_the_audit_keeps(tmp_path):
    """The fault proxy refuses, in the second crawl only, the manifest of the tag a signature signs (no
    real registry fails on demand): the audit keeps the signature, as its subject may be in that tag."""
    from regframe.testing.oci_artifacts import cosign_signature

    img = IMAGES["e1"]
    sig_tag, sig = cosign_signature(img, repository="s/app")
    with local_registry() as reg, regframe.connect(reg.url, docker_config=False) as client:
        push_image(client, "s/app", "1.0", img)
        push_image(client, "s/app", sig_tag, sig)
        with FaultProxy(reg.url, seed=0) as proxy, regframe.connect(proxy.url, docker_config=False) as through:
            older = through.inventory(progress=False)
            proxy.add_rule(Rule(path=r"^/v2/s/app/manifests/1\.0$", action=Status(403)))
            newer = through.inventory(progress=False)
    assert len(newer.errors) == 1
    audit = regframe.analysis.stale_tags(
        newer.manifests, older_than="30d", now=newer.crawled_at, tags=newer.tags, errors=newer.errors
    ).set_index("tag")
    assert not audit.loc[sig_tag, "stale"], "the audit keeps it"
    result = newer.diff(older, older_than="30d")
    assert sig_tag not in set(result.stale["tag"])
    assert result.attrs["stale_new"] == 0


@pytest.fixture(scope="module")
def emptied(tmp_path_factory):
    """Three audits with --history: an empty registry, one image pushed, its tag deleted."""
    root = tmp_path_factory.mktemp("emptied")
    snapshots = root / "snapshots"
    with local_registry() as reg, regframe.connect(reg.url, docker_config=False) as client:
        rules = ("--no-progress", "--history", str(snapshots), "--fail-on", "growth>10%")
        runs = [run_cli("audit", reg.url, "--out", str(root / "empty"), *rules)]
        push_image(client, "e/app", "1", IMAGES["e2"])
        runs.append(run_cli("audit", reg.url, "--out", str(root / "pushed"), *rules))
        client.rmtag("e/app", "1")
        runs.append(
            run_cli("audit", reg.url, "--out", str(root / "deleted"), "--no-progress", "--history", str(snapshots))
        )
    yield {"root": root, "snapshots": snapshots, "runs": runs, "stored": total_of({("e/app", "1"): IMAGES["e2"]})}


def test_growth_in_percent_from_an_empty_audit_says_why_it_is_undecided(emptied):
    code, _, err = emptied["runs"][1]
    assert code == 2
    assert "previous audit stored 0 bytes" in err and "growth_bytes" in err
    assert "needs a previous audit" not in err
    summary = json.loads(
        (emptied["root"] / "pushed" / "summary.json").read_text(),
        parse_constant=lambda name: pytest.fail(f"summary.json holds {name}"),
    )
    assert summary["growth_bytes"] == emptied["stored"] and "growth_percent" not in summary


def test_history_load_and_growth_keep_snapshots_without_tags(emptied):
    folders = history.snapshots(emptied["snapshots"])
    assert len(folders) == 3
    frame = history.load(emptied["snapshots"])
    assert list(frame["snapshot"]) == [history.snapshot_time(folder) for folder in folders]
    assert list(frame["repository"]) == ["e/app"] * 3
    assert list(frame["stored_bytes"]) == [0, emptied["stored"], 0]
    assert list(frame.attrs["total_bytes"].values()) == [0, emptied["stored"], 0]
    ax = growth(frame)
    (line,) = ax.get_lines()
    assert list(line.get_ydata()) == [0, emptied["stored"], 0]
    assert ax.get_title(loc="left") == "Registry 0 B stored, 0 B over 3 snapshots"
    only_totals = frame.iloc[1:2].copy()
    only_totals.attrs = frame.attrs
    ax = growth(only_totals)
    assert list(ax.get_lines()[0].get_ydata()) == [0, emptied["stored"], 0]
    plt.close("all")


def test_a_diff_given_the_newer_audit_first_warns(scenario):
    """On the command line the warning reads as regframe's other messages do: one line after
    ``regframe: warning:``, without the Python file and source line that issued it."""
    older, newer = loaded(scenario)
    with pytest.warns(history.changes.AuditOrderWarning, match="crawled after"):
        result = history.diff(newer, older)
    assert result.attrs["in_order"] is False
    assert "shown backwards in time" in result.summary()
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "regframe", "diff", str(scenario["root"] / "second"), str(scenario["root"] / "first")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    [line] = done.stderr.splitlines()
    assert (
        line.startswith("regframe: warning: the audit given as the older one") and "give the older audit first" in line
    )
    assert ".py:" not in done.stderr and "history.diff(" not in done.stderr
    assert "shown backwards in time" in done.stdout
    code, out, err = run_cli("diff", str(scenario["root"] / "first"), str(scenario["root"] / "second"))
    assert code == 0 and "backwards" not in out + err


def test_growth_chart_of_snapshots_taken_at_a_whole_second_and_at_a_fraction(scenario, tmp_path):
    """A whole-second snapshot time has no fraction in ``isoformat()``; ``load`` writes every key with
    microseconds and ``growth`` parses each key on its own, so mixing the two draws, never raises."""
    first, _ = history.snapshots(scenario["root"] / "snapshots")
    inv = regframe.Inventory.load(first)
    whole, fraction = datetime(2026, 3, 1, 12, 0, tzinfo=UTC), datetime(2026, 3, 2, 12, 0, 0, 250000, tzinfo=UTC)
    history.save(inv, tmp_path, when=whole)
    history.save(inv, tmp_path, when=fraction)
    frame = history.load(tmp_path)
    total = total_of(scenario["before"])
    assert frame.attrs["total_bytes"] == {
        "2026-03-01T12:00:00.000000+00:00": total,
        "2026-03-02T12:00:00.250000+00:00": total,
    }
    ax = growth(frame)
    expected = [pd.Timestamp(when).tz_localize(None).to_datetime64() for when in (whole, fraction)]
    for line in ax.get_lines():
        assert list(line.get_xdata()) == expected
    assert ax.get_title(loc="left") == f"Registry {format_bytes(total)} stored, 0 B over 2 snapshots"
    plt.close("all")


def damage(folder: Path, first: Path) -> dict[Path, str]:
    """Three folders older than every snapshot of ``folder`` that cannot be read, and what each warning
    must say: a Parquet file cut short, a snapshot left with its inventory.json alone, a foreign folder
    with a snapshot's name whose inventory.json is not JSON."""
    truncated, bare, foreign = (folder / f"2000010{day}T000000.000000Z" for day in (1, 2, 3))
    shutil.copytree(first, truncated)
    with (truncated / "layers.parquet").open("r+b") as handle:
        handle.truncate(100)
    shutil.copytree(first, bare)
    for path in bare.iterdir():
        if path.name != "inventory.json":
            path.unlink()
    foreign.mkdir()
    (foreign / "inventory.json").write_text("not a snapshot")
    return {truncated: "layers.parquet", bare: "has no catalog.parquet", foreign: "not JSON"}


def test_a_snapshot_that_cannot_be_read_is_skipped_with_a_warning_naming_it(scenario, tmp_path):
    folder = tmp_path / "snapshots"
    shutil.copytree(scenario["root"] / "snapshots", folder)
    first, second = history.snapshots(folder)
    readable = history.load(folder)
    damaged = damage(folder, first)

    with pytest.warns(history.SnapshotWarning) as caught:
        frame = history.load(folder)
    messages = [str(w.message) for w in caught]
    for path, why in damaged.items():
        assert any(str(path) in text and why in text for text in messages), (path, messages)
    pd.testing.assert_frame_equal(frame, readable)
    assert frame.attrs == readable.attrs

    out = tmp_path / "report"
    with pytest.warns(history.SnapshotWarning):
        code, text, err = run_cli(
            "audit", scenario["url"], "--out", str(out), "--history", str(folder), "--older-than", f"{STALE_DAYS}d",
            "--no-progress", "--fail-on", "tags>0",
        )  # fmt: skip
    assert code == 3, err
    assert "tags>0: tags is" in err and (out / "report.html").is_file() and (out / "charts" / "growth.png").is_file()
    assert "0 added, 0 removed, 0 moved" in text.split("Since the last audit:", 1)[1], "compared with the second"
    newest = history.latest(folder)
    assert newest not in (first, second) and newest not in damaged

    with (newest / "catalog.parquet").open("r+b") as handle:
        handle.truncate(100)
    with pytest.warns(history.SnapshotWarning) as caught:
        previous = history.load_latest(folder, url=scenario["url"])
    assert any(f"{newest} cannot be read" in str(w.message) and "catalog.parquet" in str(w.message) for w in caught)
    assert previous is not None and previous.crawled_at == history.snapshot_time(second)

    meta = json.loads((first / "inventory.json").read_text())
    (first / "inventory.json").write_text(json.dumps({**meta, "format": 3, "regframe_version": "9.0.0"}))
    with pytest.raises(InventoryFormatError, match=first.name), warnings.catch_warnings():
        warnings.simplefilter("ignore", history.SnapshotWarning)
        history.load_latest(folder, url=scenario["url"])


def test_a_history_shared_by_two_registries_compares_each_with_its_own(tmp_path):
    """Registries one and two audited into one --history folder: two's first audit is a first audit (no
    growth, no "since the last audit"), and one's second audit compares with one's first, not with two's."""
    snapshots = tmp_path / "snapshots"
    rules = ("--no-progress", "--history", str(snapshots))
    with local_registry() as one, local_registry() as two:
        with (
            regframe.connect(one.url, docker_config=False) as a,
            regframe.connect(two.url, docker_config=False) as b,
        ):
            push_image(a, "s/a", "1", IMAGES["a1"])
            push_image(b, "s/b", "1", IMAGES["b2"])
        first_one = run_cli("audit", one.url, "--out", str(tmp_path / "one-1"), *rules)
        first_two = run_cli("audit", two.url + "/", "--out", str(tmp_path / "two-1"), *rules, "--fail-on", "growth>1%")
        again_one = run_cli("audit", one.url, "--out", str(tmp_path / "one-2"), *rules, "--fail-on", "growth>1%")
    assert first_one[0] == 0, first_one[2]
    assert first_two[0] == 2 and "growth_percent was not computed (it needs a previous audit" in first_two[2]
    assert "Since the last audit" not in first_two[1] and not (tmp_path / "two-1" / "diff_tags.csv").exists()
    assert again_one[0] == 0, again_one[2]
    since = again_one[1].split("Since the last audit:", 1)[1]
    assert "different registries" not in since and "repositories removed" not in since
    summary = json.loads((tmp_path / "one-2" / "summary.json").read_text())
    assert (summary["growth_bytes"], summary["growth_percent"]) == (0, 0)

    ones, twos = history.snapshots(snapshots, url=one.url), history.snapshots(snapshots, url=two.url)
    assert len(ones) == 2 and len(twos) == 1 and set(ones) | set(twos) == set(history.snapshots(snapshots))
    assert history.latest(snapshots, url=two.url.upper().replace("HTTP://", "http://") + "/v2/") == twos[0]
    frame = history.load(snapshots, url=one.url)
    assert set(frame["repository"]) == {"s/a"} and list(frame["snapshot"]) == [history.snapshot_time(p) for p in ones]
    assert len(frame.attrs["total_bytes"]) == 2


def test_after_an_incomplete_audit_only_what_it_judged_can_become_stale():
    """A crawl stopped by its budget read a few tags, some without their config (so undated), and no
    repository in full; the next crawl of the unchanged registry reads every tag. Nothing became stale, and
    growth is unknown because nothing could be compared, not because the older audit stored nothing."""
    fleet = make_fleet(repositories=3, tags_per_repo=8, layer_size_range=(200, 500), base_layer_size_range=(1000, 2000))
    with seeded_registry(fleet) as reg, regframe.connect(reg.url, docker_config=False) as client:
        stopped = client.inventory(progress=False, budget=6)
        full = client.inventory(progress=False)
    assert not stopped.complete and full.complete and len(stopped.tags) < len(full.tags)
    assert regframe.analysis.storage_usage(stopped.layers).attrs["total_bytes"] > 0
    result = full.diff(stopped)
    assert result.stale.empty, result.stale[["repository", "tag", "before"]]
    judged = {
        name: regframe.analysis.stale_tags(inv.manifests, now=inv.crawled_at, tags=inv.tags, errors=inv.errors)
        for name, inv in (("before", stopped), ("after", full))
    }
    stale = {
        name: set(zip(*(frame.loc[frame["stale"], c] for c in ("repository", "tag")), strict=True))
        for name, frame in judged.items()
    }
    a = result.attrs
    assert a["stale_unknown"] == len(stale["after"] - stale["before"]) > 0
    assert (a["storage_compared"], a["stored_bytes_before"], a["growth_ratio"]) == (0, 0, None)
    assert (
        a["growth_undefined"] == "no repository could be compared (the older audit stopped early), so growth is unknown"
    )
    text = result.summary()
    assert (
        f"{a['stale_unknown']} stale tags the older audit did not read or date are not counted as newly stale" in text
    )
    assert "Note: no repository could be compared (the older audit stopped early)" in text


def test_a_growth_gate_after_an_incomplete_audit_names_the_real_reason(tmp_path, capsys):
    """The growth gates after an audit stopped by its budget: nothing could be compared, so neither growth
    total is given and the undecided gate (exit 2) says why, not that the older audit stored 0 bytes."""
    fleet = make_fleet(repositories=2, tags_per_repo=6, layer_size_range=(200, 500), base_layer_size_range=(1000, 2000))
    history = tmp_path / "history"
    with seeded_registry(fleet) as reg:
        first = ["audit", reg.url, "--out", str(tmp_path / "one"), "--history", str(history), "--no-progress"]
        assert cli.main([*first, "--budget", "4"]) == 1
        capsys.readouterr()
        second = ["audit", reg.url, "--out", str(tmp_path / "two"), "--history", str(history), "--no-progress"]
        assert cli.main([*second, "--fail-on", "growth>10%", "--fail-on", "growth_bytes>1MB"]) == 2
    err = capsys.readouterr().err
    assert "no repository could be compared (the older audit stopped early)" in err
    assert "stored 0 bytes" not in err
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert "growth_bytes" not in summary and "growth_percent" not in summary
    assert summary["growth_unknown"].startswith("no repository could be compared")
