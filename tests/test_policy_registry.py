"""Cleanup policies against a real registry: a fleet built for the purpose is crawled, each policy format is
evaluated, the deletions are compared with the set worked out by hand from the seeding spec below, and the
plan is applied; the tags left are then exactly the plan's kept tags. The ``regframe cleanup`` and
``regframe audit --policy`` commands are run the same way.

Nothing is mocked: the registry is the harness's real ``docker-registry`` (one for this module).
The one race (a tag moved between plan and apply) is made by a second client
while the command waits for its confirmation.
"""

from __future__ import annotations

import io
import itertools
import json
import socket

import pandas as pd
import pytest

import regframe
from regframe.analysis import reclaimable_bytes
from regframe.cli import main
from regframe.policy import Policy
from regframe.testing import build_image, build_index, layer, local_registry, push_image

NOW = pd.Timestamp.now(tz="UTC").floor("s")
A, B, C = "team-a/api", "team-b/web", "tools/cli"

# Images: name -> days since created (None: no created date in the config).
IMAGES = {
    "a100": 300,
    "a110": 200,
    "a120rc": 120,
    "a120": 100,
    "a130": 90,
    "a130b": 80,
    "a2a": 33,
    "a2a1": 25,
    "a2b": 20,
    "anightly": 2,
    "aci": 50,
    "alegacy": None,
    "b100": 150,
    "b101": 140,
    "b2rc": 60,
    "b090": None,
    "bfx": 10,
    "bold": 400,
    "c010": 500,
    "c020": 400,
    "cmain": 5,
}
# bmulti is a two-platform index: amd64 created 45 days ago, arm64 40 days ago (its age is 40 days).
SPEC = [
    (A, "1.0.0", "a100"),
    (A, "1.1.0", "a110"),
    (A, "1.2.0-rc.1", "a120rc"),
    (A, "1.2.0", "a120"),
    (A, "latest", "a120"),
    (A, "v1.3.0", "a130"),
    (A, "1.3.0_build.5", "a130b"),
    (A, "2.0.0-alpha", "a2a"),
    (A, "2.0.0-alpha.1", "a2a1"),
    (A, "2.0.0-beta", "a2b"),
    (A, "nightly", "anightly"),
    (A, "ci-abc", "aci"),
    (A, "legacy", "alegacy"),
    (B, "1.0.0", "b100"),
    (B, "stable", "b100"),
    (B, "1.0.1", "b101"),
    (B, "2.0.0-rc.1", "b2rc"),
    (B, "0.9.0", "b090"),
    (B, "feature-x", "bfx"),
    (B, "old-build", "bold"),
    (B, "multi", "bmulti"),
    (C, "0.1.0", "c010"),
    (C, "0.2.0", "c020"),
    (C, "edge", "c020"),
    (C, "main", "cmain"),
]


def _image(name: str):
    days = IMAGES[name]
    created = None if days is None else (NOW - pd.Timedelta(days=days)).to_pydatetime()
    return build_image(
        [layer(f"policy-base-{name[0]}", 700), layer(f"policy-{name}", 300 + len(name))], created=created
    )


BUILT = {name: _image(name) for name in IMAGES}
BUILT["bmulti"] = build_index(
    [
        build_image([layer("policy-bm-amd", 350)], created=(NOW - pd.Timedelta(days=45)).to_pydatetime()),
        build_image(
            [layer("policy-bm-arm", 360)],
            architecture="arm64",
            variant="v8",
            created=(NOW - pd.Timedelta(days=40)).to_pydatetime(),
        ),
    ]
)

NATIVE = r"""
[[rules]]
name = "releases"
repositories = ["{ns}/**"]
tags = '^v?\d+\.\d+\.\d+'
keep_last = 4
order = "semver"

[[rules]]
name = "scratch"
repositories = ["{ns}/team-*/**"]
exclude_tags = '^(latest|stable|v?\d+\.\d+\.\d+.*)$'
keep_newer_than = "7d"
"""
# releases (A): semver order 2.0.0-beta, 2.0.0-alpha.1, 2.0.0-alpha, 1.3.0_build.5 (80 d) and v1.3.0 (90 d, equal
# precedence, older), 1.2.0, 1.2.0-rc.1, 1.1.0, 1.0.0: keeps the first four. 1.2.0 is saved by latest (its digest
# sibling, governed by no rule). (B): 2.0.0-rc.1, 1.0.1, 1.0.0, 0.9.0 (undated, counted by version): all kept.
# scratch (team-*): nightly 2 d kept; ci-abc 50 d, feature-x 10 d, old-build 400 d, multi 40 d deleted; legacy
# undated, kept. tools/cli: only releases, which keeps 0.1.0 and 0.2.0.
NATIVE_DELETED = {
    (A, "v1.3.0"),
    (A, "1.2.0-rc.1"),
    (A, "1.1.0"),
    (A, "1.0.0"),
    (A, "ci-abc"),
    (B, "feature-x"),
    (B, "old-build"),
    (B, "multi"),
}

GITLAB = {
    "container_expiration_policy_attributes": {
        "cadence": "1d",
        "enabled": True,
        "keep_n": 1,
        "older_than": "30d",
        "name_regex": ".*",
        "name_regex_keep": r"v?\d+\.\d+\.\d+",
    }
}
# Per repository, leaving out latest and full matches of the keep regex, newest first (undated as now):
# A: legacy (keep_n) | nightly 2 d, 2.0.0-beta 20 d, 2.0.0-alpha.1 25 d (young) | 2.0.0-alpha 33 d, ci-abc,
# 1.3.0_build.5, 1.2.0-rc.1 deleted. B: feature-x (keep_n) | multi 40 d, 2.0.0-rc.1 60 d, stable (saved: 1.0.0
# on its digest is kept), old-build deleted. C: main (keep_n), edge (saved: 0.2.0 on its digest is kept).
GITLAB_DELETED = {
    (A, "2.0.0-alpha"),
    (A, "ci-abc"),
    (A, "1.3.0_build.5"),
    (A, "1.2.0-rc.1"),
    (B, "2.0.0-rc.1"),
    (B, "old-build"),
    (B, "multi"),
}

ECR = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "Keep the 2 newest pre-releases",
            "selection": {
                "tagStatus": "tagged",
                "tagPatternList": ["*.*.*-*"],
                "countType": "imageCountMoreThan",
                "countNumber": 2,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": "Expire CI images after 14 days",
            "selection": {
                "tagStatus": "tagged",
                "tagPrefixList": ["ci-"],
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 14,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 3,
            "description": "Keep the 4 newest images",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 4},
            "action": {"type": "expire"},
        },
    ]
}
# A: priority 1 owns a120rc, a2a, a2a1, a2b and keeps a2b, a2a1; priority 2 owns aci (50 d): expired; priority 3
# keeps the 4 newest of all images (anightly, a2b, a2a1, a2a) but owns only anightly and the rest: a130b, a130,
# a120 (1.2.0 and latest), a110, a100 expired; alegacy undated, kept. B: priority 1 owns b2rc (kept); priority 3
# keeps bfx, bmulti, b2rc, b101: b100 (1.0.0 and stable) and bold expired, b090 undated. C: 3 images, all kept.
ECR_DELETED = {
    (A, t)
    for t in ("1.2.0-rc.1", "2.0.0-alpha", "ci-abc", "1.3.0_build.5", "v1.3.0", "1.2.0", "latest", "1.1.0", "1.0.0")
} | {(B, "1.0.0"), (B, "stable"), (B, "old-build")}


def harbor_policy() -> dict:
    def selector(decoration, pattern):
        return {"kind": "doublestar", "decoration": decoration, "pattern": pattern, "extras": '{"untagged":false}'}

    return {
        "algorithm": "or",
        "trigger": {"kind": "Schedule", "settings": {"cron": "0 0 0 * * *"}},
        "scope": {"level": "project", "ref": 7},
        "rules": [
            {
                "disabled": False,
                "action": "retain",
                "template": "latestPushedK",
                "params": {"latestPushedK": 3},
                "scope_selectors": {
                    "repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "team-*/**"}]
                },
                "tag_selectors": [selector("matches", "*.*.*")],
            },
            {
                "disabled": False,
                "action": "retain",
                "template": "nDaysSinceLastPush",
                "params": {"nDaysSinceLastPush": 7},
                "scope_selectors": {
                    "repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]
                },
                "tag_selectors": [selector("excludes", "*.*.*")],
            },
        ],
    }


# Rule 1 (team-*): artifacts with a tag matching *.*.*, newest 3 retained: A a2b, a2a1, a2a; B b2rc, b101, b100.
# Rule 2 (all): artifacts with a tag not matching *.*.*, pushed within 7 days: A anightly; C cmain.
# Everything else in a selected repository goes with all its tags (A's legacy and B's 0.9.0 are undated, kept).
HARBOR_DELETED = (
    {(A, t) for t in ("1.0.0", "1.1.0", "1.2.0-rc.1", "1.2.0", "latest", "v1.3.0", "1.3.0_build.5", "ci-abc")}
    | {(B, "feature-x"), (B, "old-build"), (B, "multi")}
    | {(C, "0.1.0"), (C, "0.2.0"), (C, "edge")}
)

_namespaces = itertools.count()


@pytest.fixture(scope="module")
def registry_url():
    """A registry of this module's own: the commands crawl every repository, so nothing another test
    leaves behind may change their output or exit status."""
    with local_registry() as reg:
        yield reg.url


@pytest.fixture(scope="module")
def anon(registry_url):
    with regframe.connect(registry_url) as client:
        yield client


@pytest.fixture
def fleet(anon):
    """A fresh namespace holding SPEC; returns (namespace, its repositories)."""
    ns = f"policy{next(_namespaces)}x{NOW.value % 10**6}"
    for repository, tag, image in SPEC:
        push_image(anon, f"{ns}/{repository}", tag, BUILT[image])
    return ns, [f"{ns}/{r}" for r in (A, B, C)]


def policy_for(kind: str, ns: str) -> Policy:
    if kind == "native":
        import tomllib

        return Policy.from_dict(tomllib.loads(NATIVE.replace("{ns}", ns)))
    if kind == "gitlab":
        return Policy.from_gitlab(GITLAB, repositories=f"{ns}/**")
    if kind == "ecr":
        return Policy.from_ecr(ECR, repositories=f"{ns}/**")
    return Policy.from_harbor(harbor_policy(), project=ns)


EXPECTED = {"native": NATIVE_DELETED, "gitlab": GITLAB_DELETED, "ecr": ECR_DELETED, "harbor": HARBOR_DELETED}


def tags_left(client, repositories: list[str]) -> set[tuple[str, str]]:
    return {(repo, tag) for repo in repositories for tag in client.tags(repo, auto_paginate=True).get("tags", [])}


def strip(ns: str, pairs) -> set[tuple[str, str]]:
    return {(str(r)[len(ns) + 1 :], str(t)) for r, t in pairs}


@pytest.mark.parametrize("kind", ["native", "gitlab", "ecr", "harbor"])
def test_policy_on_a_crawled_fleet_deletes_the_hand_derived_tags_and_apply_leaves_the_kept_ones(anon, fleet, kind):
    ns, repositories = fleet
    inv = anon.inventory(repositories, progress=False)
    assert inv.errors.empty
    result = policy_for(kind, ns).evaluate(inv.manifests, now=NOW)
    planned = strip(ns, zip(result.loc[result["stale"], "repository"], result.loc[result["stale"], "tag"]))
    assert planned == EXPECTED[kind]
    assert len(result) == len(SPEC)

    # Bytes freed: the blobs (configs and layers) of every image all of whose tags go, unless a kept image uses them.
    tags_of: dict[str, set] = {}
    for repository, tag, image in SPEC:
        tags_of.setdefault(image, set()).add((repository, tag))
    gone = [image for image, tags in tags_of.items() if tags <= EXPECTED[kind]]
    left = {
        blob.digest
        for image in tags_of
        if image not in gone
        for item in BUILT[image].images
        for blob in (item.config, *item.layers)
    }
    freed = {
        blob.digest: blob.size
        for image in gone
        for item in BUILT[image].images
        for blob in (item.config, *item.layers)
        if blob.digest not in left
    }
    assert reclaimable_bytes(result, inv.layers) == sum(freed.values())

    applied = anon.apply_cleanup(result, dry_run=False)
    assert set(applied["status"]) == {"deleted"}
    kept = {(r, t) for r, t, _ in SPEC} - EXPECTED[kind]
    assert strip(ns, tags_left(anon, repositories)) == kept


def test_policy_reason_and_rule_come_through_the_crawl(anon, fleet):
    ns, repositories = fleet
    inv = anon.inventory(repositories, progress=False)
    result = policy_for("native", ns).evaluate(inv.manifests, now=NOW)
    row = result[(result["repository"] == f"{ns}/{A}") & (result["tag"] == "v1.3.0")].iloc[0]
    assert (row["stale"], row["rule"], row["reason"]) == (
        True,
        "releases",
        "deleted by rule 'releases': not among newest 4 by semver",
    )
    row = result[(result["repository"] == f"{ns}/{A}") & (result["tag"] == "1.2.0")].iloc[0]
    assert not row["stale"] and row["reason"].startswith("kept: shares digest with kept tag 'latest'")
    row = result[(result["repository"] == f"{ns}/{A}") & (result["tag"] == "legacy")].iloc[0]
    assert not row["stale"] and row["reason"].startswith("kept: creation date unknown")


# --- the command line --------------------------------------------------------------------------


def test_a_harbor_policy_file_needs_its_project_on_the_command_line(anon, registry_url, fleet, tmp_path, capsys):
    """A Harbor retention policy covers one project, and its JSON names the project only by id; without
    --project it would reach every repository of the registry and match selectors on full names."""
    ns, repositories = fleet
    path = tmp_path / "harbor.json"
    path.write_text(json.dumps(harbor_policy()))
    before = tags_left(anon, repositories)
    assert main(["cleanup", registry_url, "--policy", str(path)]) == 2
    assert "give --project NAME" in capsys.readouterr().err
    assert main(["cleanup", registry_url, "--policy", str(write_native(tmp_path, ns)), "--project", ns]) == 2
    assert "project= is for Harbor policies" in capsys.readouterr().err
    out = tmp_path / "plan"
    assert main(["cleanup", registry_url, "--policy", str(path), "--project", ns, "--out", str(out)]) == 0
    plan = pd.read_csv(out / "stale_tags.csv")
    assert set(plan.loc[plan["stale"], "repository"]) <= set(repositories), "deletions only inside the project"
    outside = plan[~plan["repository"].str.startswith(f"{ns}/")]
    assert outside["reason"].str.startswith("kept: outside project").all()
    inv = anon.inventory(repositories, progress=False)
    expected = Policy.from_harbor(harbor_policy(), project=ns).evaluate(inv.manifests)
    assert set(zip(plan.loc[plan["stale"], "repository"], plan.loc[plan["stale"], "tag"])) == set(
        zip(
            expected.loc[expected["stale"], "repository"].astype(str),
            expected.loc[expected["stale"], "tag"].astype(str),
        )
    )
    assert tags_left(anon, repositories) == before


def write_native(tmp_path, ns: str):
    """The native policy as a file; its globs limit a registry-wide cleanup to this test's namespace."""
    path = tmp_path / "policy.toml"
    path.write_text(NATIVE.replace("{ns}", ns))
    return path


def test_cleanup_dry_run_prints_and_writes_the_plan_and_deletes_nothing(anon, registry_url, fleet, tmp_path, capsys):
    ns, repositories = fleet
    before = tags_left(anon, repositories)
    out = tmp_path / "plan"
    assert main(["cleanup", registry_url, "--policy", str(write_native(tmp_path, ns)), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert tags_left(anon, repositories) == before
    plan = pd.read_csv(out / "stale_tags.csv")
    mine = plan[plan["repository"].str.startswith(f"{ns}/")]
    assert strip(ns, zip(mine.loc[mine["stale"], "repository"], mine.loc[mine["stale"], "tag"])) == NATIVE_DELETED
    assert {"rule", "reason", "stale"} <= set(plan.columns)
    deleted = pd.read_csv(out / "cleanup_plan.csv")
    mine_deleted = deleted[deleted["repository"].str.startswith(f"{ns}/")]
    assert strip(ns, zip(mine_deleted["repository"], mine_deleted["tag"])) == NATIVE_DELETED, "the plan: deletions only"
    assert f"{ns}/{A}: delete 5 of 13 tags" in printed
    assert "  delete  v1.3.0" in printed and "deleted by rule 'releases': not among newest 4 by semver" in printed
    assert "  keep    2.0.0-beta" in printed and "kept by rule 'releases': among newest 4 by semver" in printed
    assert "reclaimable after garbage collection" in printed
    assert "Dry run: nothing deleted" in printed


def test_cleanup_apply_with_yes_leaves_exactly_the_kept_tags(anon, registry_url, fleet, tmp_path, capsys):
    ns, repositories = fleet
    out = tmp_path / "plan"
    code = main(
        ["cleanup", registry_url, "--policy", str(write_native(tmp_path, ns)), "--out", str(out), "--apply", "--yes"]
    )
    assert code == 0, capsys.readouterr()
    plan = pd.read_csv(out / "stale_tags.csv")
    mine = plan[plan["repository"].str.startswith(f"{ns}/")]
    kept = set(zip(mine.loc[~mine["stale"], "repository"], mine.loc[~mine["stale"], "tag"]))
    assert tags_left(anon, repositories) == kept
    assert strip(ns, kept) == {(r, t) for r, t, _ in SPEC} - NATIVE_DELETED
    result = pd.read_csv(out / "cleanup_result.csv")
    assert set(result["status"]) == {"deleted"}


def test_cleanup_apply_skips_a_tag_moved_while_it_waits_for_confirmation(
    anon, registry_url, fleet, tmp_path, capsys, monkeypatch
):
    ns, repositories = fleet
    moved = f"{ns}/{A}"

    class Answer(io.StringIO):
        """Standard input whose reading moves ci-abc (planned for deletion) to another image first."""

        def readline(self, *args):
            push_image(anon, moved, "ci-abc", BUILT["anightly"])
            return "yes\n"

    monkeypatch.setattr("sys.stdin", Answer())
    code = main(["cleanup", registry_url, "--policy", str(write_native(tmp_path, ns)), "--apply"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "Type 'yes' to delete" in printed
    assert "skipped" in printed and "ci-abc" in printed and "moved" in printed
    kept = {(r, t) for r, t, _ in SPEC} - NATIVE_DELETED
    assert strip(ns, tags_left(anon, repositories)) == kept | {(A, "ci-abc")}
    assert anon.digest(moved, "ci-abc") == BUILT["anightly"].digest


@pytest.mark.parametrize("stdin, message", [("", "no answer on standard input"), ("no\n", "not confirmed")])
def test_cleanup_apply_without_confirmation_deletes_nothing(
    anon, registry_url, fleet, tmp_path, capsys, monkeypatch, stdin, message
):
    ns, repositories = fleet
    before = tags_left(anon, repositories)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert main(["cleanup", registry_url, "--policy", str(write_native(tmp_path, ns)), "--apply"]) == 1
    assert message in capsys.readouterr().err
    assert tags_left(anon, repositories) == before


@pytest.mark.parametrize(
    "content, suffix, fmt, message",
    [
        ("[[rules]]\nname = 'r'\nkeep_last = -1\n", "toml", None, "rule 'r', key 'keep_last': must not be negative"),
        ("[[rules]]\nname = 'r'\ntags = '('\n", "toml", None, "rule 'r', key 'tags'"),
        (
            json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1},
                            "action": {"type": "expire"},
                        }
                    ]
                }
            ),
            "json",
            "ecr",
            "rule 'priority 1', key 'selection.tagStatus'",
        ),
        (
            "rules:\n- template: latestPulledN\n  tag_selectors: [{decoration: matches, pattern: '**'}]\n",
            "yaml",
            "harbor",
            "rule 'rule 1', key 'template': template 'latestPulledN' needs pull time",
        ),
        ("keep_n: 5\nname_regex: 'a(?=b)'\n", "yml", "gitlab", "lookahead"),
    ],
)
def test_bad_policy_exits_2_before_any_request(tmp_path, capsys, content, suffix, fmt, message):
    path = tmp_path / f"bad.{suffix}"
    path.write_text(content)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.setblocking(False)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        for command in (
            ["cleanup", url, "--policy", str(path)] + (["--format", fmt] if fmt else []),
            ["audit", url, "--out", str(tmp_path / "out"), "--policy", str(path)],
        ):
            if command[0] == "audit" and fmt:
                continue
            assert main(command) == 2
            assert message in capsys.readouterr().err
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_audit_with_policy_uses_it_for_the_stale_tag_section(anon, registry_url, fleet, tmp_path, capsys):
    ns, _ = fleet
    path = tmp_path / "ecr.json"
    path.write_text(json.dumps({"rules": [{**rule, "selection": dict(rule["selection"])} for rule in ECR["rules"]]}))
    # The audit crawls the whole registry, where earlier tests' namespaces are too; only this one's rows count.
    out = tmp_path / "report"
    assert main(["audit", registry_url, "--out", str(out), "--policy", str(path)]) == 0
    stale = pd.read_csv(out / "stale_tags.csv")
    mine = stale[stale["repository"].str.startswith(f"{ns}/")]
    assert strip(ns, zip(mine.loc[mine["stale"], "repository"], mine.loc[mine["stale"], "tag"])) == ECR_DELETED
    assert "rule" in stale.columns
    summary = (out / "summary.txt").read_text()
    assert f"policy {path} (ecr)" in summary


def test_undated_image_really_has_no_created_date(anon, fleet):
    ns, repositories = fleet
    inv = anon.inventory(repositories, progress=False)
    undated = inv.manifests[inv.manifests["created"].isna()]
    assert set(zip(undated["repository"].astype(str), undated["tag"].astype(str))) == {
        (f"{ns}/{A}", "legacy"),
        (f"{ns}/{B}", "0.9.0"),
    }
