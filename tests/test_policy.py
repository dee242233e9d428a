"""Cleanup policies on hand-built frames: the native format, semver order, the GitLab, ECR and Harbor
translators on policies written as each product documents them, and every bad policy's message.

No registry is involved. Every expected deletion is a literal set worked out by hand from the
fixture table next to the test.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd
import pytest

from regframe.analysis import cleanup_plan, reclaimable_bytes, stale_tags
from regframe.policy import Policy, PolicyError, is_semver, semver_key
from regframe.policy.globs import Glob
from regframe.policy.outcome import artifacts, tag_table
from regframe.policy.tag_patterns import re2_to_python

NOW = pd.Timestamp("2026-01-01", tz="UTC")
DAY = pd.Timedelta(days=1)


def manifests(rows: list[tuple]) -> pd.DataFrame:
    """(repository, tag, digest, created days ago or None, size) as a manifests frame."""
    frame = pd.DataFrame([row[:3] for row in rows], columns=["repository", "tag", "digest"])
    frame["created"] = pd.to_datetime([NOW - row[3] * DAY if row[3] is not None else pd.NaT for row in rows], utc=True)
    frame["size"] = pd.array([row[4] if len(row) > 4 else 10 for row in rows], dtype="Int64")
    frame["manifest_digest"] = frame["digest"]
    return frame


def deleted(result: pd.DataFrame) -> set[tuple[str, str]]:
    return {
        (r, t) for r, t, s in zip(result["repository"].astype(str), result["tag"].astype(str), result["stale"]) if s
    }


def decision(result: pd.DataFrame, repository: str, tag: str) -> tuple[bool, str, str]:
    row = result[(result["repository"].astype(str) == repository) & (result["tag"].astype(str) == tag)]
    assert len(row) == 1
    return bool(row["stale"].iloc[0]), row["rule"].iloc[0], row["reason"].iloc[0]


# --- native format -----------------------------------------------------------------------------

# team/app: 1.0.0 300 d, 1.1.0 200 d, 2.0.0 100 d (latest shares its digest), ci-1 40 d, ci-2 3 d,
# keep-me 500 d, nodate undated. team/web: 0.1.0 250 d, ci-9 60 d. other/db: ci-5 100 d.
FLEET = manifests(
    [
        ("team/app", "1.0.0", "a1", 300, 100),
        ("team/app", "1.1.0", "a2", 200, 110),
        ("team/app", "2.0.0", "a3", 100, 120),
        ("team/app", "latest", "a3", 100, 120),
        ("team/app", "ci-1", "a4", 40, 5),
        ("team/app", "ci-2", "a5", 3, 6),
        ("team/app", "keep-me", "a6", 500, 7),
        ("team/app", "nodate", "a7", None, 8),
        ("team/web", "0.1.0", "w1", 250, 9),
        ("team/web", "ci-9", "w2", 60, 11),
        ("other/db", "ci-5", "o1", 100, 12),
    ]
)

NATIVE_TOML = r"""
[[rules]]
name = "releases"
repositories = ["team/**"]
tags = '^\d+\.\d+\.\d+$'
keep_last = 1
order = "semver"

[[rules]]
name = "ci"
repositories = "**"
exclude_repositories = ["other/*"]
tags = '^ci-'
keep_newer_than = "30d"

[[rules]]
name = "sweep"
repositories = ["team/app"]
exclude_tags = '^(latest|\d+\.\d+\.\d+|ci-.*)$'
keep = '^keep-'
"""

NATIVE_DICT = {
    "rules": [
        {
            "name": "releases",
            "repositories": ["team/**"],
            "tags": r"^\d+\.\d+\.\d+$",
            "keep_last": 1,
            "order": "semver",
        },
        {
            "name": "ci",
            "repositories": "**",
            "exclude_repositories": ["other/*"],
            "tags": "^ci-",
            "keep_newer_than": "30d",
        },
        {
            "name": "sweep",
            "repositories": ["team/app"],
            "exclude_tags": r"^(latest|\d+\.\d+\.\d+|ci-.*)$",
            "keep": "^keep-",
        },
    ]
}

# releases governs 1.0.0, 1.1.0, 2.0.0 (app) and 0.1.0 (web): keeps the newest by semver, 2.0.0 and 0.1.0.
# ci governs ci-1, ci-2 (app) and ci-9 (web), not other/db: keeps ci-2 (3 d); deletes ci-1 (40 d), ci-9 (60 d).
# sweep governs keep-me and nodate in team/app: keep-me matches keep; nodate would go but is undated.
# latest is governed by no rule. other/db:ci-5 is governed by no rule.
NATIVE_DELETED = {("team/app", "1.0.0"), ("team/app", "1.1.0"), ("team/app", "ci-1"), ("team/web", "ci-9")}


@pytest.mark.parametrize("syntax", ["toml", "yaml", "json", "dict"])
def test_native_policy_in_every_syntax_gives_the_hand_derived_plan(tmp_path, syntax):
    if syntax == "toml":
        (tmp_path / "p.toml").write_text(NATIVE_TOML)
        policy = Policy.load(tmp_path / "p.toml")
    elif syntax == "yaml":
        import yaml

        (tmp_path / "p.yaml").write_text(yaml.safe_dump(NATIVE_DICT))
        policy = Policy.load(tmp_path / "p.yaml")
    elif syntax == "json":
        (tmp_path / "p.json").write_text(json.dumps(NATIVE_DICT))
        policy = Policy.load(tmp_path / "p.json")
    else:
        policy = Policy.from_dict(NATIVE_DICT)
    assert policy.format == "native"
    result = policy.evaluate(FLEET, now=NOW)
    assert deleted(result) == NATIVE_DELETED


def test_native_rule_column_and_reasons_say_who_decided():
    result = Policy.from_dict(NATIVE_DICT).evaluate(FLEET, now=NOW)
    assert decision(result, "team/app", "2.0.0") == (
        False,
        "releases",
        "kept by rule 'releases': among newest 1 by semver",
    )
    assert decision(result, "team/app", "1.0.0") == (
        True,
        "releases",
        "deleted by rule 'releases': not among newest 1 by semver",
    )
    assert decision(result, "team/app", "ci-2") == (False, "ci", "kept by rule 'ci': newer than 30 days")
    assert decision(result, "team/app", "ci-1") == (True, "ci", "deleted by rule 'ci': older than 30 days")
    assert decision(result, "team/app", "keep-me") == (False, "sweep", "kept by rule 'sweep': matches keep '^keep-'")
    stale, rule, reason = decision(result, "team/app", "nodate")
    assert (stale, rule) == (False, "sweep")
    assert reason.startswith("kept: creation date unknown; would be deleted by rule 'sweep'")
    stale, rule, reason = decision(result, "team/app", "latest")
    assert (stale, rule) == (False, "")
    assert reason.startswith("kept: not governed by rule 'releases': does not match tags")
    assert decision(result, "other/db", "ci-5") == (False, "", "kept: no rule covers this repository")


def test_a_tag_is_deleted_only_when_no_governing_rule_retains_it():
    # app: x 100 d. Rule "old" governs x and deletes it (older than 10 d); rule "any" also governs it
    # and retains it (newest 1). y 200 d: both govern, neither retains (not newest, older than 10 d).
    frame = manifests([("app", "x", "d1", 100), ("app", "y", "d2", 200)])
    policy = Policy.from_dict(
        {
            "rules": [
                {"name": "old", "keep_newer_than": "10d"},
                {"name": "any", "keep_last": 1},
            ]
        }
    )
    result = policy.evaluate(frame, now=NOW)
    assert deleted(result) == {("app", "y")}
    assert decision(result, "app", "x")[:2] == (False, "any")
    assert decision(result, "app", "y") == (
        True,
        "old, any",
        "deleted by rules 'old': older than 10 days; 'any': not among newest 1 by created date",
    )


def test_keep_last_counts_governed_tags_only_and_each_repository_apart():
    # a: ci-1 1 d (ungoverned: not a release), 1.0 10 d, 0.9 20 d, 0.8 30 d. b: 0.1 40 d, 0.2 50 d.
    # keep_last 2 among releases per repository: a keeps 1.0, 0.9 (ci-1 takes no slot); b keeps both.
    frame = manifests(
        [
            ("a", "ci-1", "d1", 1),
            ("a", "1.0", "d2", 10),
            ("a", "0.9", "d3", 20),
            ("a", "0.8", "d4", 30),
            ("b", "0.1", "d5", 40),
            ("b", "0.2", "d6", 50),
        ]
    )
    result = Policy.from_dict({"rules": [{"name": "r", "tags": r"^\d", "keep_last": 2}]}).evaluate(frame, now=NOW)
    assert deleted(result) == {("a", "0.8")}


def test_order_by_name_keeps_the_highest_names():
    # 2024-01-03 is oldest by date but highest by name.
    frame = manifests([("a", "2024-01-01", "d1", 1), ("a", "2024-01-02", "d2", 2), ("a", "2024-01-03", "d3", 300)])
    result = Policy.from_dict({"rules": [{"name": "dates", "keep_last": 1, "order": "name"}]}).evaluate(frame, now=NOW)
    assert deleted(result) == {("a", "2024-01-01"), ("a", "2024-01-02")}
    assert decision(result, "a", "2024-01-03")[2] == "kept by rule 'dates': among newest 1 by name (highest first)"


def test_digest_siblings_of_a_kept_tag_are_kept_and_multi_platform_tags_count_once():
    # app: old and pinned share digest d1 (200 d); pinned is kept by pattern, so old stays too.
    # web: multi is two platform rows of index dm (100 d and 50 d: its age is 50 d), kept by 60 d;
    # single 70 d goes.
    frame = manifests(
        [
            ("app", "old", "d1", 200),
            ("app", "pinned", "d1", 200),
            ("app", "gone", "d2", 300),
            ("web", "multi", "dm", 100, 7),
            ("web", "multi", "dm", 50, 8),
            ("web", "single", "d3", 70),
        ]
    )
    frame.loc[3, "manifest_digest"] = "amd"
    frame.loc[4, "manifest_digest"] = "arm"
    policy = Policy.from_dict({"rules": [{"name": "r", "keep": "^pinned$", "keep_newer_than": "60d"}]})
    result = policy.evaluate(frame, now=NOW)
    assert deleted(result) == {("app", "gone"), ("web", "single")}
    assert decision(result, "app", "old")[2].startswith("kept: shares digest with kept tag 'pinned'")
    assert len(result) == 5
    multi = result[result["tag"] == "multi"].iloc[0]
    assert multi["size"] == 15 and multi["age"] == 50 * DAY


def test_deleted_tag_whose_image_a_kept_index_lists_says_the_manifest_stays():
    # app: multi (kept, 1 d) is an index of platforms p-amd and p-arm; amd-only is a tag on p-amd, 100 d.
    frame = manifests([("app", "multi", "idx", 1), ("app", "multi", "idx", 1), ("app", "amd-only", "p-amd", 100)])
    frame["manifest_digest"] = ["p-amd", "p-arm", "p-amd"]
    result = Policy.from_dict({"rules": [{"name": "r", "keep_newer_than": "30d"}]}).evaluate(frame, now=NOW)
    assert deleted(result) == {("app", "amd-only")}
    assert decision(result, "app", "amd-only")[2].endswith("manifest kept as a child of kept index 'multi'")


def test_tags_without_a_digest_share_no_digest_with_each_other():
    # a: keep (1 d) and old (200 d) both lack a digest; nothing ties old to keep, so old goes, as in stale_tags.
    frame = manifests([("a", "keep", None, 1), ("a", "old", None, 200)])
    result = Policy.from_dict({"rules": [{"name": "r", "keep_newer_than": "30d"}]}).evaluate(frame, now=NOW)
    assert deleted(result) == {("a", "old")}
    assert decision(result, "a", "old")[2] == "deleted by rule 'r': older than 30 days"
    assert deleted(stale_tags(frame, older_than="30d", now=NOW)) == {("a", "old")}


def test_result_has_stale_tags_columns_and_dtypes_and_feeds_reclaim_and_plan():
    result = Policy.from_dict(NATIVE_DICT).evaluate(FLEET, now=NOW)
    reference = stale_tags(FLEET, now=NOW)
    assert list(result.columns) == list(reference.columns) + ["rule"]
    assert (result.dtypes.drop("rule") == reference.dtypes).all()
    assert result["stale"].dtype == bool
    layers = pd.DataFrame(
        {
            "repository": FLEET["repository"],
            "tag": FLEET["tag"],
            "manifest_digest": FLEET["digest"],
            "layer_digest": "L-" + FLEET["digest"],
            "size": FLEET["size"],
        }
    )
    # Deleted: 1.0.0 (a1, 100), 1.1.0 (a2, 110), ci-1 (a4, 5), ci-9 (w2, 11): no kept tag uses their layers.
    assert reclaimable_bytes(result, layers) == 226
    plan = cleanup_plan(result)
    assert set(zip(plan["repository"], plan["tag"])) == NATIVE_DELETED


def test_categorical_input_gives_the_same_decisions():
    categorical = FLEET.copy()
    for column in ("repository", "tag", "digest", "manifest_digest"):
        categorical[column] = categorical[column].astype("category")
    result = Policy.from_dict(NATIVE_DICT).evaluate(categorical, now=NOW)
    assert isinstance(result["repository"].dtype, pd.CategoricalDtype)
    assert deleted(result) == NATIVE_DELETED


def test_catastrophic_tag_pattern_raises_instead_of_hanging():
    frame = manifests([("app", "a" * 40 + "!", "d1", 10)])
    policy = Policy.from_dict({"rules": [{"name": "slow", "tags": "^(a|aa)+$"}]})
    start = time.monotonic()
    with pytest.raises(PolicyError, match=r"rule 'slow', key 'tags': pattern .* took longer than") as info:
        policy.evaluate(frame, now=NOW)
    assert time.monotonic() - start < 30
    assert (info.value.rule, info.value.key) == ("slow", "tags")


def test_catastrophic_glob_raises_instead_of_hanging():
    frame = manifests([("a" * 60, "t", "d1", 10)])
    policy = Policy.from_dict({"rules": [{"name": "slow", "repositories": "{a,a}" * 40 + "b"}]})
    start = time.monotonic()
    with pytest.raises(PolicyError, match="took longer than") as info:
        policy.evaluate(frame, now=NOW)
    assert time.monotonic() - start < 30
    assert (info.value.rule, info.value.key) == ("slow", "repositories")


# --- semver ------------------------------------------------------------------------------------


def test_semver_precedence_follows_the_specification_example():
    spec = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.2.0",
        "1.10.0",
        "2.0.0",
    ]
    shuffled = [spec[i] for i in (7, 3, 11, 0, 9, 5, 1, 10, 6, 2, 8, 4)]
    assert sorted(shuffled, key=semver_key) == spec


def test_semver_v_prefix_and_build_metadata_do_not_change_precedence():
    assert semver_key("v1.2.3") == semver_key("1.2.3")
    assert semver_key("1.2.3+build.1") == semver_key("1.2.3_build.2") == semver_key("1.2.3")
    assert semver_key("1.2.3-rc.1_exp.sha.5114f85") == semver_key("1.2.3-rc.1")


@pytest.mark.parametrize(
    "tag",
    [
        "latest",
        "1.2",
        "01.2.3",
        "1.02.3",
        "1.2.3-01",
        "1.2.3-",
        "1.2.3-a..b",
        "1.2.3+",
        "V1.2.3",
        "vv1.2.3",
        "1.2.3.4",
        "release-1.2.3",
    ],
)
def test_not_semver(tag):
    assert not is_semver(tag)


def test_semver_order_puts_non_semver_tags_after_every_semver_tag_by_created_date():
    # Semver: 1.0.0 (400 d), v1.1.0-rc.1 (5 d, a pre-release of 1.1.0), 1.1.0_b7 (350 d), v1.1.0 (300 d:
    # equal precedence to 1.1.0_b7; the newer, v1.1.0, ranks first). Not semver: nightly 1 d, old 500 d.
    # Order: v1.1.0, 1.1.0_b7, v1.1.0-rc.1, 1.0.0, nightly, old.
    frame = manifests(
        [
            ("a", "1.0.0", "d1", 400),
            ("a", "v1.1.0-rc.1", "d2", 5),
            ("a", "1.1.0_b7", "d3", 350),
            ("a", "v1.1.0", "d4", 300),
            ("a", "nightly", "d5", 1),
            ("a", "old", "d6", 500),
        ]
    )

    def keep(n):
        policy = Policy.from_dict({"rules": [{"name": "releases", "keep_last": n, "order": "semver"}]})
        return policy.evaluate(frame, now=NOW)

    assert deleted(keep(1)) == {("a", t) for t in ("1.1.0_b7", "v1.1.0-rc.1", "1.0.0", "nightly", "old")}
    assert deleted(keep(3)) == {("a", t) for t in ("1.0.0", "nightly", "old")}
    result = keep(5)
    assert deleted(result) == {("a", "old")}
    assert decision(result, "a", "nightly")[2] == (
        "kept by rule 'releases': among newest 5 by semver (not semver: ranked after every semver tag, by created date)"
    )
    assert decision(result, "a", "old")[2] == (
        "deleted by rule 'releases': not among newest 5 by semver "
        "(not semver: ranked after every semver tag, by created date)"
    )


# --- GitLab ------------------------------------------------------------------------------------

# The GitLab documentation's example: keep_n 1, keep 'production-.*', older than 7 days, remove '.*'.
GITLAB_DOC = manifests(
    [
        ("group/project", "latest", "g0", 2 / 24),
        ("group/project", "production-v44", "g1", 3),
        ("group/project", "production-v43", "g2", 6),
        ("group/project", "production-v42", "g3", 11),
        ("group/project", "dev-v44", "g4", 2),
        ("group/project", "dev-v43", "g5", 5),
        ("group/project", "dev-v42", "g6", 10),
        ("group/project", "v44", "g7", 1),
        ("group/project", "v43", "g8", 12),
        ("group/project", "v42", "g9", 20),
    ]
)


def test_gitlab_documentation_example():
    attributes = {
        "container_expiration_policy_attributes": {
            "cadence": "1month",
            "enabled": True,
            "keep_n": 1,
            "older_than": "7d",
            "name_regex": ".*",
            "name_regex_keep": "production-.*",
        }
    }
    result = Policy.from_gitlab(attributes).evaluate(GITLAB_DOC, now=NOW)
    assert deleted(result) == {("group/project", "dev-v42"), ("group/project", "v43"), ("group/project", "v42")}
    assert decision(result, "group/project", "latest")[2] == (
        "kept: not governed by rule 'gitlab': 'latest' is always kept"
    )
    assert decision(result, "group/project", "production-v42")[2] == (
        "kept: not governed by rule 'gitlab': matches name_regex_keep 'production-.*'"
    )
    assert decision(result, "group/project", "v44")[2] == "kept by rule 'gitlab': among newest 1 by created date"
    assert decision(result, "group/project", "v42") == (
        True,
        "gitlab",
        "deleted by rule 'gitlab': not among newest 1 by created date, older than 7 days",
    )


def test_gitlab_api_response_shape_with_nulls_and_the_defaults():
    # As GET /projects/:id shows it: keep_n null (no keep-N step), older_than 14d, delete regex anchored.
    response = {
        "container_expiration_policy": {
            "cadence": "7d",
            "enabled": False,
            "keep_n": None,
            "older_than": "14d",
            "name_regex": "v4.*",
            "name_regex_keep": None,
            "next_run_at": "2026-01-02T00:00:00Z",
        }
    }
    # v44 1 d and v43 12 d are young; v42 20 d goes; dev-* do not match '\Av4.*\z'.
    result = Policy.from_gitlab(response).evaluate(GITLAB_DOC, now=NOW)
    assert deleted(result) == {("group/project", "v42")}
    # Left out: keep_n 10, older_than 90d, name_regex '.*': nothing here is 90 days old.
    assert deleted(Policy.from_gitlab({}).evaluate(GITLAB_DOC, now=NOW)) == set()


def test_gitlab_counts_an_undated_tag_as_newest_for_keep_n():
    # GitLab sorts a tag without a date as created now: with keep_n 1 it takes the slot, so both dated
    # tags go. A native keep_last 1 keeps the newest dated tag instead.
    frame = manifests([("a", "undated", "d1", None), ("a", "new", "d2", 100), ("a", "old", "d3", 200)])
    gitlab = Policy.from_gitlab({"keep_n": 1, "older_than": "7d", "name_regex": ".*"}).evaluate(frame, now=NOW)
    assert deleted(gitlab) == {("a", "new"), ("a", "old")}
    native = Policy.from_dict({"rules": [{"name": "n", "keep_last": 1, "keep_newer_than": "7d"}]})
    assert deleted(native.evaluate(frame, now=NOW)) == {("a", "old")}


def test_gitlab_anchors_regexes_the_way_gitlab_does():
    # GitLab writes \A + regex + \z, so 'v4|dev' means "starts with v4" or "ends with dev".
    frame = manifests(
        [("a", "v4x", "d1", 50), ("a", "xdev", "d2", 50), ("a", "devx", "d3", 50), ("a", "xv4", "d4", 50)]
    )
    result = Policy.from_gitlab({"keep_n": None, "older_than": None, "name_regex_delete": "v4|dev"}).evaluate(
        frame, now=NOW
    )
    assert deleted(result) == {("a", "v4x"), ("a", "xdev")}


@pytest.mark.parametrize(
    "re2, matches, misses",
    [
        (r"v\d+\z", ["v12"], ["v12x"]),
        (r"[[:digit:]]+", ["123"], ["12a"]),
        (r"\Q1.0\E", ["1.0"], ["1x0"]),
        (r"\x{41}b", ["Ab"], ["ab"]),
        (r"(?<major>\d+)\.(?P<minor>\d+)", ["1.2"], ["1"]),
        (r"(?i)RC", ["rc"], ["r"]),
    ],
)
def test_gitlab_re2_spellings_python_lacks_are_translated_exactly(re2, matches, misses):
    frame = manifests([(("a", t, f"d{i}", 50)) for i, t in enumerate(matches + misses)])
    result = Policy.from_gitlab({"keep_n": None, "older_than": None, "name_regex": re2}).evaluate(frame, now=NOW)
    assert deleted(result) == {("a", t) for t in matches}


@pytest.mark.parametrize(
    "re2, message",
    [
        (r"v(?=1)", "lookahead"),
        (r"(?<!x)v", "lookbehind"),
        (r"(a)\1", r"backreference '\\1'"),
        (r"(?P<n>a)(?P=n)", r"backreference '\(\?P=name\)'"),
        (r"(?>a)", "atomic group"),
        (r"a++", "possessive"),
        (r"a\Z", r"'\\Z' is not RE2"),
        (r"\pN+", "Unicode class"),
        (r"\C", "RE2-only"),
        (r"(?U)a+", "ungreedy flag"),
        (r"a{,3}", r"means \{0,3\} in Python"),
        (r"a{1001}", "above RE2's limit of 1000"),
        (r"a(?i)b", "mid-pattern"),
        (r"(?#note)a", "comment"),
        (r"(?x)a", "flag 'x' is not RE2"),
        (r"[[:wrod:]]", "unknown POSIX class"),
    ],
)
def test_gitlab_regexes_re2_and_python_disagree_on_are_refused(re2, message):
    with pytest.raises(PolicyError, match=message) as info:
        Policy.from_gitlab({"name_regex": ".*", "name_regex_keep": re2})
    assert (info.value.rule, info.value.key) == ("gitlab", "name_regex_keep")


@pytest.mark.parametrize("re2, matches, misses", [(r"[[:a]+", ["a:a", "[a"], ["b"]), (r"[[:word]]", ["w]"], ["w"])])
def test_gitlab_re2_class_with_an_unclosed_posix_name_holds_bracket_and_colon(re2, matches, misses):
    """RE2 reads '[:' in a class as a POSIX name only when ':]' follows (ParseCCName: "If no closing :],
    then ignore"); otherwise '[' and ':' are members, so '[[:a]+' is one or more of '[', ':', 'a'."""
    frame = manifests([(("a", t, f"d{i}", 50)) for i, t in enumerate(matches + misses)])
    result = Policy.from_gitlab({"keep_n": None, "older_than": None, "name_regex": re2}).evaluate(frame, now=NOW)
    assert deleted(result) == {("a", t) for t in matches}


@pytest.mark.parametrize(
    "attributes, key, allowed",
    [
        ({"keep_n": 3}, "keep_n", "1, 5, 10, 25, 50, 100 or null"),
        ({"keep_n": 0}, "keep_n", "1, 5, 10, 25, 50, 100 or null"),
        ({"older_than": "2d"}, "older_than", "'7d', '14d', '30d', '60d', '90d' or null"),
        ({"older_than": "1month"}, "older_than", "'7d', '14d', '30d', '60d', '90d' or null"),
        ({"cadence": "2d"}, "cadence", "'1d', '7d', '14d', '1month', '3month'"),
        ({"cadence": None}, "cadence", "'1d', '7d', '14d', '1month', '3month'"),
    ],
)
def test_gitlab_values_gitlab_would_not_save_are_refused(attributes, key, allowed):
    """The reference's attribute table allows keep_n 1, 5, 10, 25, 50, 100 or null, older_than 7d, 14d,
    30d, 90d or null (and 60d, which GitLab added in 14.4), cadence 1d, 7d, 14d, 1month, 3month: no GitLab
    policy runs with another value."""
    with pytest.raises(PolicyError, match=f"GitLab allows only {allowed}") as info:
        Policy.from_gitlab(attributes)
    assert (info.value.rule, info.value.key) == ("gitlab", key)


def test_gitlab_every_value_gitlab_saves_is_accepted():
    """The same table, read the other way: each listed value loads."""
    for keep_n in (1, 5, 10, 25, 50, 100, None):
        Policy.from_gitlab({"keep_n": keep_n})
    for older_than in ("7d", "14d", "30d", "60d", "90d", None):
        Policy.from_gitlab({"older_than": older_than})
    for cadence in ("1d", "7d", "14d", "1month", "3month"):
        Policy.from_gitlab({"cadence": cadence})


# --- ECR ---------------------------------------------------------------------------------------

# The ECR documentation's example: A [beta-1, prod-1] pushed 10 days ago, B [beta-2, prod-2] 9 d, C [beta-3] 8 d.
ECR_DOC = manifests(
    [
        ("repo", "beta-1", "A", 10),
        ("repo", "prod-1", "A", 10),
        ("repo", "beta-2", "B", 9),
        ("repo", "prod-2", "B", 9),
        ("repo", "beta-3", "C", 8),
    ]
)


def ecr_prod_beta(prod_priority: int) -> dict:
    return {
        "rules": [
            {
                "rulePriority": prod_priority,
                "description": "Rule prod",
                "selection": {
                    "tagStatus": "tagged",
                    "tagPrefixList": ["prod"],
                    "countType": "imageCountMoreThan",
                    "countNumber": 1,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 2,
                "description": "Rule beta",
                "selection": {
                    "tagStatus": "tagged",
                    "tagPrefixList": ["beta"],
                    "countType": "imageCountMoreThan",
                    "countNumber": 1,
                },
                "action": {"type": "expire"},
            },
        ]
    }


def test_ecr_documentation_examples_priority_owns_the_image():
    # prod first: A and B belong to the prod rule, which keeps B; C to beta, which keeps it. Only A goes.
    first = Policy.from_ecr(ecr_prod_beta(1)).evaluate(ECR_DOC, now=NOW)
    assert deleted(first) == {("repo", "beta-1"), ("repo", "prod-1")}
    # beta first (prod at priority 3): all three belong to beta, which keeps only C. A and B go.
    second = Policy.from_ecr(json.dumps(ecr_prod_beta(3))).evaluate(ECR_DOC, now=NOW)
    assert deleted(second) == {("repo", "beta-1"), ("repo", "prod-1"), ("repo", "beta-2"), ("repo", "prod-2")}
    assert decision(second, "repo", "prod-2") == (
        True,
        "priority 2",
        (
            "deleted by rule 'priority 2' (Rule beta): not among the 1 newest images matching "
            "tagPrefixList ['beta'] (by created date; push time not available)"
        ),
    )


# app: rc images r1 [1.0-rc1] 50 d, r2 [1.1-rc1] 40 d, r3 [1.2-rc1, candidate] 30 d; builds b1 [build-7] 20 d,
# b2 [build-8] 3 d; releases v1 [1.0] 100 d, v2 [1.1] 60 d, v3 [1.2, latest] 25 d; x [exp-alpha-beta] 200 d.
ECR_FLEET = manifests(
    [
        ("app", "1.0-rc1", "r1", 50),
        ("app", "1.1-rc1", "r2", 40),
        ("app", "1.2-rc1", "r3", 30),
        ("app", "candidate", "r3", 30),
        ("app", "build-7", "b1", 20),
        ("app", "build-8", "b2", 3),
        ("app", "1.0", "v1", 100),
        ("app", "1.1", "v2", 60),
        ("app", "1.2", "v3", 25),
        ("app", "latest", "v3", 25),
        ("app", "exp-alpha-beta", "x", 200),
    ]
)
ECR_POLICY = {
    "rules": [
        {
            "rulePriority": 10,
            "description": "Keep 2 release candidates",
            "selection": {
                "tagStatus": "tagged",
                "tagPatternList": ["*-rc*"],
                "countType": "imageCountMoreThan",
                "countNumber": 2,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 20,
            "description": "Expire builds older than 14 days",
            "selection": {
                "tagStatus": "tagged",
                "tagPrefixList": ["build-"],
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 14,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 30,
            "description": "Experiments need both words",
            "selection": {
                "tagStatus": "tagged",
                "tagPatternList": ["*alpha*", "*beta*"],
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 100,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 100,
            "description": "Keep the 3 newest of the rest",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 3},
            "action": {"type": "expire"},
        },
    ]
}


def test_ecr_policy_with_several_priorities():
    # Rule 10 selects r1, r2, r3 (a tag matching *-rc*), keeps r3 and r2, marks r1.
    # Rule 20 selects b1, b2: b1 (20 d) is older than 14 days.
    # Rule 30 needs an alpha tag and a beta tag: x [exp-alpha-beta] has both; 200 d > 100 d: marked.
    # Rule 100 (any) keeps the 3 newest of all 9 images (b2 3 d, b1 20 d, v3 25 d) and marks the rest, but
    # owns only v1, v2 and v3 (the others belong to rules 10, 20, 30): v1 and v2 go, v3 (1.2 and latest) stays.
    result = Policy.from_ecr(ECR_POLICY).evaluate(ECR_FLEET, now=NOW)
    assert deleted(result) == {("app", t) for t in ("1.0-rc1", "build-7", "exp-alpha-beta", "1.0", "1.1")}
    assert decision(result, "app", "candidate")[:2] == (False, "priority 10")
    assert decision(result, "app", "1.0")[1] == "priority 100"
    assert result["reason"].str.endswith("(by created date; push time not available)").all()


def test_ecr_expiring_an_image_removes_every_tag_on_it():
    # img [old-1, keepsake] 30 d is owned by the prefix rule "old-" (it has an old- tag) and expired with
    # both tags, though "keepsake" alone would match no rule.
    frame = manifests([("a", "old-1", "img", 30), ("a", "keepsake", "img", 30), ("a", "old-2", "new", 1)])
    policy = {
        "rules": [
            {
                "rulePriority": 1,
                "selection": {
                    "tagStatus": "tagged",
                    "tagPrefixList": ["old-"],
                    "countType": "imageCountMoreThan",
                    "countNumber": 1,
                },
                "action": {"type": "expire"},
            }
        ]
    }
    assert deleted(Policy.from_ecr(policy).evaluate(frame, now=NOW)) == {("a", "old-1"), ("a", "keepsake")}


def test_ecr_wildcards_match_the_whole_tag():
    frame = manifests(
        [
            ("a", "prod", "1", 9),
            ("a", "production-team1", "2", 9),
            ("a", "repo-production", "3", 9),
            ("a", "nightly", "4", 9),
        ]
    )
    policy = {
        "rules": [
            {
                "rulePriority": 1,
                "selection": {
                    "tagStatus": "tagged",
                    "tagPatternList": ["prod*"],
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": 1,
                },
                "action": {"type": "expire"},
            }
        ]
    }
    assert deleted(Policy.from_ecr(policy).evaluate(frame, now=NOW)) == {("a", "prod"), ("a", "production-team1")}


def test_ecr_any_rule_counts_only_the_tagged_images_a_registry_lists():
    """The documentation's Example B without its untagged images (B and E) and untagged rule: ECR expires
    A, B and D there, because untagged E (1 d, newer than D) takes rule 3's slot. Here E is invisible,
    so D keeps the slot and only A goes; the policy's notes say so."""
    frame = manifests(
        [("r", "alpha-1", "A", 4), ("r", "beta-1", "A", 4), ("r", "alpha-2", "C", 2), ("r", "git hash", "D", 1)]
    )
    frame.loc[3, "created"] = NOW - pd.Timedelta(hours=25)
    policy = Policy.from_ecr(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": "Rule 1",
                    "selection": {
                        "tagStatus": "tagged",
                        "tagPatternList": ["alpha*"],
                        "countType": "imageCountMoreThan",
                        "countNumber": 1,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 3,
                    "description": "Rule 3",
                    "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
                    "action": {"type": "expire"},
                },
            ]
        }
    )
    assert deleted(policy.evaluate(frame, now=NOW)) == {("r", "alpha-1"), ("r", "beta-1")}
    assert any("untagged" in note for note in policy.notes)


# --- Harbor ------------------------------------------------------------------------------------


def harbor_selector(decoration: str, pattern: str, untagged: bool = False) -> dict:
    return {
        "kind": "doublestar",
        "decoration": decoration,
        "pattern": pattern,
        "extras": json.dumps({"untagged": untagged}),
    }


# The Harbor documentation's Example 5, as the UI saves it.
HARBOR_DOC = {
    "algorithm": "or",
    "trigger": {"kind": "Schedule", "settings": {"cron": "0 0 0 * * *"}},
    "scope": {"level": "project", "ref": 1},
    "rules": [
        {
            "disabled": False,
            "action": "retain",
            "template": "latestPushedK",
            "params": {"latestPushedK": 10},
            "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]},
            "tag_selectors": [
                {"kind": "doublestar", "decoration": "matches", "pattern": "2*", "extras": '{"untagged":false}'}
            ],
        },
        {
            "disabled": False,
            "action": "retain",
            "template": "latestPushedK",
            "params": {"latestPushedK": 10},
            "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]},
            "tag_selectors": [
                {"kind": "doublestar", "decoration": "matches", "pattern": "*-prod", "extras": '{"untagged":false}'}
            ],
        },
    ],
}


def test_harbor_documentation_example_with_two_rules():
    rows = [
        ("library/your_repo", f"{v}-your_repo-{s}", f"{v}{s}", i + 1)
        for i, (v, s) in enumerate((v, s) for v in ("2.1", "2.2", "3.1", "4.4") for s in ("prod", "rc", "release"))
    ]
    result = Policy.from_harbor(HARBOR_DOC, project="library").evaluate(manifests(rows), now=NOW)
    # Retained: the six 2.* tags (rule 1) and 3.1/4.4-your_repo-prod (rule 2); the other four go.
    assert deleted(result) == {
        ("library/your_repo", t)
        for t in ("3.1-your_repo-rc", "3.1-your_repo-release", "4.4-your_repo-rc", "4.4-your_repo-release")
    }
    assert decision(result, "library/your_repo", "4.4-your_repo-prod")[:2] == (False, "rule 2")
    assert result["reason"].str.endswith("(by created date; push time not available)").all()


def test_harbor_templates_selectors_and_artifact_level_retention():
    # proj/app: a1 [1.0, stable] 100 d, a2 [1.1] 50 d, a3 [1.2] 5 d, a4 [dev-1] 3 d, a5 [dev-2] 40 d, a6 [tmp] 200 d.
    # proj/tools/cli: c1 [0.1] 300 d. proj/other: o1 [x] 300 d. other/app (not in the project): z [1.0] 900 d.
    frame = manifests(
        [
            ("proj/app", "1.0", "a1", 100),
            ("proj/app", "stable", "a1", 100),
            ("proj/app", "1.1", "a2", 50),
            ("proj/app", "1.2", "a3", 5),
            ("proj/app", "dev-1", "a4", 3),
            ("proj/app", "dev-2", "a5", 40),
            ("proj/app", "tmp", "a6", 200),
            ("proj/tools/cli", "0.1", "c1", 300),
            ("proj/other", "x", "o1", 300),
            ("other/app", "1.0", "z", 900),
        ]
    )
    policy = {
        "algorithm": "or",
        "rules": [
            # Rule 1, repositories except tools/**: newest 1 of artifacts with a tag matching [0-9]* -> a3.
            {
                "action": "retain",
                "template": "latestPushedK",
                "params": {"latestPushedK": 1},
                "scope_selectors": {
                    "repository": [{"kind": "doublestar", "decoration": "repoExcludes", "pattern": "tools/**"}]
                },
                "tag_selectors": [harbor_selector("matches", "[0-9]*")],
            },
            # Rule 2, app only: artifacts with a tag not matching {dev-*,tmp}, pushed within 60 days -> a2, a3;
            # a1 has 'stable' (not matching) but is 100 d old.
            {
                "action": "retain",
                "template": "nDaysSinceLastPush",
                "params": {"nDaysSinceLastPush": 60},
                "scope_selectors": {"repository": [harbor_selector("repoMatches", "app")]},
                "tag_selectors": [harbor_selector("excludes", "{dev-*,tmp}")],
            },
            # Rule 3, app: always retain artifacts tagged dev-* -> a4, a5.
            {
                "action": "retain",
                "template": "always",
                "params": {},
                "scope_selectors": {"repository": [harbor_selector("repoMatches", "app")]},
                "tag_selectors": [harbor_selector("matches", "dev-*")],
            },
            # Rule 4 is disabled: it would keep everything.
            {
                "disabled": True,
                "action": "retain",
                "template": "always",
                "params": {},
                "tag_selectors": [harbor_selector("matches", "**")],
            },
        ],
    }
    result = Policy.from_harbor(policy, project="proj").evaluate(frame, now=NOW)
    # app: a1 (1.0, stable) and a6 (tmp) go. proj/other: only rule 1 selects it, x is not [0-9]*: goes.
    # tools/cli: no rule selects it, left alone. other/app: outside the project.
    assert deleted(result) == {("proj/app", "1.0"), ("proj/app", "stable"), ("proj/app", "tmp"), ("proj/other", "x")}
    assert decision(result, "proj/tools/cli", "0.1")[2].startswith("kept: no rule selects this repository")
    assert decision(result, "other/app", "1.0")[2].startswith("kept: outside project 'proj'")
    assert decision(result, "proj/app", "dev-2")[:2] == (False, "rule 3")


def test_harbor_retained_tag_keeps_every_tag_of_its_artifact():
    # a [2.0, nightly-5] 10 d: rule keeps artifacts with a tag matching 2*; nightly-5 stays with it. b [nightly-4] goes.
    frame = manifests([("r", "2.0", "a", 10), ("r", "nightly-5", "a", 10), ("r", "nightly-4", "b", 11)])
    policy = {
        "rules": [{"template": "always", "action": "retain", "tag_selectors": [harbor_selector("matches", "2*")]}]
    }
    assert deleted(Policy.from_harbor(policy).evaluate(frame, now=NOW)) == {("r", "nightly-4")}


# --- orphaned accessories stay within a policy's scope ---------------------------------------------

GONE = "sha256:" + "e" * 64
ORPHAN = GONE.replace(":", "-", 1) + ".sig"
ORPHANED = f"orphaned: subject {GONE} not found"


def with_orphans() -> pd.DataFrame:
    """team-a/api-00 and team-b/web each hold an image and a cosign signature of GONE, which no tag carries."""
    frame = manifests(
        [
            ("team-a/api-00", "v1", "a1", 100),
            ("team-a/api-00", ORPHAN, "s1", None),
            ("team-b/web", "v1", "b1", 100),
            ("team-b/web", ORPHAN, "s2", None),
        ]
    )
    frame["subject"] = [None, GONE, None, GONE]
    return frame


def test_native_and_gitlab_policies_delete_only_the_orphans_a_rule_governs():
    """The user's policy governs no tag at all, yet it used to delete team-a's orphan: a tag no rule governs
    is kept, orphan or not, and says so. A rule that governs the orphan deletes it and is named."""
    frame = with_orphans()
    nothing = Policy.from_dict(
        {"rules": [{"name": "only-web", "repositories": ["team-b/**"], "tags": "^nothing-matches$"}]}
    ).evaluate(frame, now=NOW)
    assert deleted(nothing) == set()
    assert decision(nothing, "team-a/api-00", ORPHAN) == (False, "", "kept: no rule covers this repository")
    assert decision(nothing, "team-b/web", ORPHAN) == (
        False,
        "",
        "kept: not governed by rule 'only-web': does not match tags '^nothing-matches$'",
    )

    web = Policy.from_dict({"rules": [{"name": "web", "repositories": ["team-b/**"], "keep_last": 1}]})
    result = web.evaluate(frame, now=NOW)
    assert deleted(result) == {("team-b/web", ORPHAN)}
    assert decision(result, "team-b/web", ORPHAN) == (True, "web", ORPHANED)
    assert decision(result, "team-a/api-00", ORPHAN) == (False, "", "kept: no rule covers this repository")

    gitlab = Policy.from_gitlab({"keep_n": 1}, repositories="team-b/**").evaluate(frame, now=NOW)
    assert deleted(gitlab) == {("team-b/web", ORPHAN)}
    assert decision(gitlab, "team-b/web", ORPHAN) == (True, "gitlab", ORPHANED)
    assert decision(gitlab, "team-a/api-00", ORPHAN) == (False, "", "kept: no rule covers this repository")
    kept = Policy.from_gitlab({"name_regex_keep": "sha256-.*"}, repositories="team-b/**").evaluate(frame, now=NOW)
    assert decision(kept, "team-b/web", ORPHAN) == (
        False,
        "",
        "kept: not governed by rule 'gitlab': matches name_regex_keep 'sha256-.*'",
    )


def test_ecr_policy_deletes_only_the_orphans_of_covered_repositories_a_rule_selects():
    frame = with_orphans()
    any_image = {
        "rulePriority": 1,
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 5},
        "action": {"type": "expire"},
    }
    result = Policy.from_ecr({"rules": [any_image]}, repositories="team-b/**").evaluate(frame, now=NOW)
    assert deleted(result) == {("team-b/web", ORPHAN)}
    assert decision(result, "team-b/web", ORPHAN) == (True, "priority 1", ORPHANED)
    assert decision(result, "team-a/api-00", ORPHAN) == (
        False,
        "",
        "kept: the policy does not cover this repository",
    )
    tagged_v = Policy.from_ecr({"rules": [ecr_rule(tagPrefixList=["v"])]}).evaluate(frame, now=NOW)
    assert deleted(tagged_v) == set()
    for repository in ("team-a/api-00", "team-b/web"):
        assert decision(tagged_v, repository, ORPHAN) == (False, "", "kept: no rule selects this image")


def test_harbor_policy_leaves_the_orphans_of_unselected_repositories_untouched():
    """The user's Harbor repro: with project team-b, team-a is outside the policy and keeps its orphan. In a
    selected repository Harbor deletes whatever no rule retains, so the orphan goes there."""
    frame = with_orphans()
    policy = {"rules": [harbor_rule(params={"latestPushedK": 1}, tag_selectors=[harbor_selector("matches", "v*")])]}
    result = Policy.from_harbor(policy, project="team-b").evaluate(frame, now=NOW)
    assert deleted(result) == {("team-b/web", ORPHAN)}
    assert decision(result, "team-b/web", ORPHAN) == (True, "rule 1", ORPHANED)
    assert decision(result, "team-a/api-00", ORPHAN) == (False, "", "kept: outside project 'team-b'")

    web_only = {
        "rules": [
            harbor_rule(
                scope_selectors={
                    "repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "team-b/**"}]
                }
            )
        ]
    }
    selected = Policy.from_harbor(web_only).evaluate(frame, now=NOW)
    assert deleted(selected) == {("team-b/web", ORPHAN)}
    assert decision(selected, "team-a/api-00", ORPHAN) == (False, "", "kept: no rule selects this repository")


def test_policies_keep_accessories_a_partial_crawl_could_not_place():
    """As in stale_tags: the SBOM of index 3.3.2 (listed in inv.tags, no manifest rows) follows a kept tag,
    and an orphan in a repository the crawl did not read in full is not known to be one."""
    subject = "sha256:" + "a" * 64
    sbom = subject.replace(":", "-", 1) + ".sbom"
    frame = manifests([("web", "1.0", "d1", 400), ("web", sbom, "s1", None), ("web", ORPHAN, "s2", None)])
    frame["subject"] = [None, subject, GONE]
    tags = pd.DataFrame({"repository": ["web"] * 2, "tag": ["1.0", "3.3.2"], "digest": ["d1", subject]})
    errors = pd.DataFrame(
        [("web", "2.0", "manifest", "ServerError: 500")], columns=["repository", "tag", "stage", "error"]
    )
    policy = Policy.from_dict({"rules": [{"name": "all", "keep_newer_than": "30d"}]})
    result = policy.evaluate(frame, now=NOW, tags=tags, errors=errors)
    assert deleted(result) == {("web", "1.0")}
    assert decision(result, "web", sbom) == (False, "", f"kept: subject {subject} is kept (tag '3.3.2')")
    assert decision(result, "web", ORPHAN) == (
        False,
        "all",
        f"kept: subject {GONE} not found, but the crawl did not read every tag of this repository",
    )
    assert decision(policy.evaluate(frame, now=NOW, tags=tags), "web", ORPHAN) == (True, "all", ORPHANED)


# --- doublestar globs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, name, expected",
    [
        ("team/*", "team/a", True),
        ("team/*", "team/a/b", False),
        ("team/**", "team/a/b", True),
        ("team/**", "team", False),
        ("**/app", "app", True),
        ("**/app", "x/y/app", True),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("a**", "abc", True),
        ("a**", "a/b", False),
        ("{x,y}-*", "y-1", True),
        ("{x,y}-*", "z-1", False),
        ("[a-c]?", "b1", True),
        ("[^a-c]?", "b1", False),
        ("v\\*", "v*", True),
        ("v\\*", "v1", False),
        ("**", "", True),
        ("{a,{b,c}}", "c", True),
    ],
)
def test_doublestar_globs(pattern, name, expected):
    assert Glob(pattern, rule=None, key="k").match(name) is expected


@pytest.mark.parametrize(
    "pattern, name, expected",
    [
        ("v*{,-slim}", "v1", False),
        ("v*{,-slim}", "v1-slim", True),
        ("v*{,-slim}", "v-slim", True),
        ("*{,.0}", "1", False),
        ("*{,.0}", "1.0", True),
        ("a***", "a", False),
        ("a***", "ab", True),
        ("a**", "a", True),
        ("*x", "x", True),
    ],
)
def test_doublestar_star_before_more_pattern_leaves_it_a_character(pattern, name, expected):
    """doublestar v1.3.4's matchComponent tries what follows a '*' only against a non-empty rest of the
    segment; once the segment is used up, only '', '*', '**' or a leading {..} that can be empty may
    remain (isZeroLengthPattern). So 'v*{,-slim}' needs '-slim' after 'v?', yet '*x' matches 'x'."""
    assert Glob(pattern, rule=None, key="k").match(name) is expected


@pytest.mark.parametrize(
    "pattern, name, expected",
    [
        ("{team/api,team/web}", "team/api", True),
        ("{team/api,team/web}", "team/web", True),
        ("{team/api,team/web}", "team/cli", False),
        ("{team/api,team/web}", "team", False),
        ("team/{api,web/*}", "team/web/v2", True),
        ("team/{api,web/*}", "team/web", False),
        ("{a/**,b}", "a/x/y", True),
        ("{a/**,b}", "b", True),
        ("{**/api,web}", "x/api", True),
        ("{**/api,web}", "api", False),
        ("{**/api,web}", "x/y/api", False),
        ("{a,a/b}", "a/b", True),
        ("{a,a/b}", "a", False),
    ],
)
def test_doublestar_alternatives_may_hold_slashes(pattern, name, expected):
    """doublestar v1.3.4 matches each alternative followed by the rest of the pattern, '/' and all. A
    '**' is a segment of its own only where a segment starts (after '/', or the pattern's start, which
    '{' is not). On a name's last segment an alternative that stops at '/' makes the result a pattern to
    go on with instead of a match, so '{a,a/b}' does not match 'a'."""
    assert Glob(pattern, rule=None, key="k").match(name) is expected


@pytest.mark.parametrize(
    "pattern, message", [("x*{a/b,c}", "'\\*' before '{...}'"), ("{a/*,b}*/c", "'\\*\\*' path segment")]
)
def test_doublestar_spellings_a_regex_cannot_follow_are_refused(pattern, message):
    """After a '*', doublestar keeps only the first split of the segment that matches, which decides the
    next segments when the alternatives after it hold '/'; and '*' + '*' across a brace is a '**'
    segment for one alternative only. Neither has a regular expression; both are refused by name."""
    with pytest.raises(PolicyError, match=message) as info:
        Glob(pattern, rule="r", key="repositories")
    assert (info.value.rule, info.value.key) == ("r", "repositories")


def test_harbor_ui_comma_list_of_repositories_with_slashes_selects_them():
    """The Harbor UI saves the repository list 'team/api,team/web' as '{team/api,team/web}'; Harbor
    matches it against names without the project prefix, and doublestar keeps '/' inside alternatives.
    latestPushedK 1 keeps the newest artifact of each selected repository; team/cli is not selected."""
    rule = harbor_rule(
        params={"latestPushedK": 1},
        scope_selectors={"repository": [harbor_selector("repoMatches", "{team/api,team/web}")]},
        tag_selectors=[harbor_selector("matches", "**", untagged=True)],
    )
    frame = manifests(
        [
            (f"proj/team/{repo}", tag, f"{repo}{tag}", days)
            for repo in ("api", "web", "cli")
            for tag, days in (("1", 10), ("2", 20))
        ]
    )
    result = Policy.from_harbor({"rules": [rule]}, project="proj").evaluate(frame, now=NOW)
    assert deleted(result) == {("proj/team/api", "2"), ("proj/team/web", "2")}
    native = Policy.from_dict({"rules": [{"name": "r", "repositories": "proj/{team/api,team/web}", "keep_last": 1}]})
    assert deleted(native.evaluate(frame, now=NOW)) == {("proj/team/api", "2"), ("proj/team/web", "2")}


def test_harbor_star_before_an_optional_suffix_retains_what_doublestar_matches():
    """'always' retains what 'v*{,-slim}' matches; doublestar v1.3.4 matches v1-slim but not v1 (the
    '*' leaves '{,-slim}' at least one character), so v1's artifact is deleted."""
    rule = harbor_rule(template="always", params={}, tag_selectors=[harbor_selector("matches", "v*{,-slim}")])
    frame = manifests([("proj/app", "v1", "d1", 5), ("proj/app", "v1-slim", "d2", 5)])
    result = Policy.from_harbor({"rules": [rule]}, project="proj").evaluate(frame, now=NOW)
    assert deleted(result) == {("proj/app", "v1")}


# --- bad policies ------------------------------------------------------------------------------


def native(**rule) -> dict:
    return {"rules": [{"name": "r1", **rule}]}


def ecr_rule(priority=1, **selection) -> dict:
    base = {"tagStatus": "tagged", "tagPrefixList": ["p"], "countType": "imageCountMoreThan", "countNumber": 1}
    return {"rulePriority": priority, "selection": {**base, **selection}, "action": {"type": "expire"}}


def harbor_rule(**fields) -> dict:
    return {
        "template": "latestPushedK",
        "params": {"latestPushedK": 3},
        "action": "retain",
        "tag_selectors": [harbor_selector("matches", "**")],
        **fields,
    }


ANY = {"tagStatus": "any", "tagPrefixList": ()}


@pytest.mark.parametrize(
    "build, data, rule, key, message",
    [
        # native
        (Policy.from_dict, native(keep_lst=3), "r1", "keep_lst", "unknown key \\(did you mean 'keep_last'\\?\\)"),
        (Policy.from_dict, native(tags="(unclosed"), "r1", "tags", "not a valid regular expression"),
        (Policy.from_dict, native(keep="[z-a]"), "r1", "keep", "not a valid regular expression"),
        (Policy.from_dict, native(repositories=["team/[a"]), "r1", "repositories", "bad glob 'team/\\[a'"),
        (Policy.from_dict, native(exclude_repositories="{a,b"), "r1", "exclude_repositories", "never closed by '}'"),
        (Policy.from_dict, native(keep_newer_than="3 fortnights"), "r1", "keep_newer_than", "invalid duration"),
        (Policy.from_dict, native(keep_newer_than="-3d"), "r1", "keep_newer_than", "must not be negative"),
        (Policy.from_dict, native(keep_last=-1), "r1", "keep_last", "must not be negative"),
        (Policy.from_dict, native(keep_last=2.5), "r1", "keep_last", "whole number"),
        (Policy.from_dict, native(order="date"), "r1", "order", "one of 'created', 'semver', 'name'"),
        (Policy.from_dict, {"rules": [{"keep_last": 1}]}, "#1", "name", "every rule needs a 'name'"),
        (Policy.from_dict, {"rules": [{"name": "a"}, {"name": "a"}]}, "a", "name", "unique"),
        (Policy.from_dict, {"rules": []}, None, "rules", "non-empty list"),
        (Policy.from_dict, {"rules": [ecr_rule()]}, "#1", "name", "looks like an ECR lifecycle rule"),
        (Policy.from_dict, {"rule": [{"name": "a"}]}, None, "rule", "did you mean 'rules'"),
        # GitLab
        (Policy.from_gitlab, {"keep_n": -5}, "gitlab", "keep_n", "must not be negative"),
        (Policy.from_gitlab, {"older_than": "fortnight"}, "gitlab", "older_than", "GitLab allows only '7d'"),
        (Policy.from_gitlab, {"keep_n": 2.5}, "gitlab", "keep_n", "whole number"),
        (Policy.from_gitlab, {"name_regex": "(x"}, "gitlab", "name_regex", "not a valid regular expression"),
        (Policy.from_gitlab, {"name_regex_delete": "x(?=y)"}, "gitlab", "name_regex_delete", "lookahead"),
        (Policy.from_gitlab, {"keep_latest": False}, "gitlab", "keep_latest", "unknown key"),
        # ECR
        (Policy.from_ecr, {"rules": [ecr_rule(1), ecr_rule(1)]}, "priority 1", "rulePriority", "unique priorities"),
        (
            Policy.from_ecr,
            {"rules": [ecr_rule(5, **ANY), ecr_rule(6)]},
            "priority 5",
            "selection.tagStatus",
            "must have the highest rulePriority",
        ),
        (
            Policy.from_ecr,
            {"rules": [ecr_rule(tagPrefixList=(), tagPatternList=["a*b*c*d*e*f"])]},
            "priority 1",
            "selection.tagPatternList",
            "5 wildcards; ECR allows at most 4",
        ),
        (
            Policy.from_ecr,
            {"rules": [ecr_rule(tagStatus="untagged", tagPrefixList=())]},
            "priority 1",
            "selection.tagStatus",
            "untagged images cannot be simulated",
        ),
        (
            Policy.from_ecr,
            {"rules": [ecr_rule(countType="sinceImagePulled", countUnit="days")]},
            "priority 1",
            "selection.countType",
            "needs pull time",
        ),
        (
            Policy.from_ecr,
            {"rules": [ecr_rule(countNumber=-2)]},
            "priority 1",
            "selection.countNumber",
            "must not be negative",
        ),
        (Policy.from_ecr, {"rules": [ecr_rule(countNumber=0)]}, "priority 1", "selection.countNumber", "at least 1"),
        (
            Policy.from_ecr,
            {"rules": [ecr_rule(countUnit="days")]},
            "priority 1",
            "selection.countUnit",
            "error with countType 'imageCountMoreThan'",
        ),
        (
            Policy.from_ecr,
            {"rules": [ecr_rule(countType="sinceImagePushed")]},
            "priority 1",
            "selection.countUnit",
            "needs countUnit 'days'",
        ),
        (
            Policy.from_ecr,
            {"rules": [ecr_rule(tagPatternList=["p*"])]},
            "priority 1",
            "selection.tagPrefixList",
            "not both",
        ),
        (
            Policy.from_ecr,
            {"rules": [{**ecr_rule(), "action": {"type": "transition", "targetStorageClass": "archive"}}]},
            "priority 1",
            "action.type",
            "cannot be simulated",
        ),
        (
            Policy.from_ecr,
            {"rules": [ecr_rule(tagPrefix=["x"])]},
            "priority 1",
            "selection.tagPrefix",
            "did you mean 'tagPrefixList'",
        ),
        # Harbor
        (
            Policy.from_harbor,
            {"rules": [harbor_rule(template="latestPulledN", params={"latestPulledN": 5})]},
            "rule 1",
            "template",
            "needs pull time",
        ),
        (
            Policy.from_harbor,
            {"rules": [harbor_rule(template="nDaysSinceLastPull")]},
            "rule 1",
            "template",
            "needs pull time",
        ),
        (
            Policy.from_harbor,
            {"rules": [harbor_rule(template="lastXDays")]},
            "rule 1",
            "template",
            "unsupported template 'lastXDays'",
        ),
        (
            Policy.from_harbor,
            {"rules": [harbor_rule(params={"latestPushedK": -1})]},
            "rule 1",
            "params.latestPushedK",
            "must not be negative",
        ),
        (
            Policy.from_harbor,
            {"rules": [harbor_rule(), harbor_rule(tag_selectors=[harbor_selector("matches", "[x")])]},
            "rule 2",
            "tag_selectors[0].pattern",
            "bad glob",
        ),
        (
            Policy.from_harbor,
            {"rules": [harbor_rule(tag_selectors=[])]},
            "rule 1",
            "tag_selectors",
            "skips a rule without tag selectors",
        ),
        (
            Policy.from_harbor,
            {
                "rules": [
                    harbor_rule(
                        scope_selectors={
                            "repository": [{"kind": "doublestar", "decoration": "repoContains", "pattern": "x"}]
                        }
                    )
                ]
            },
            "rule 1",
            "scope_selectors.repository[0].decoration",
            "one of 'repoMatches', 'repoExcludes'",
        ),
        (
            Policy.from_harbor,
            {"rules": [harbor_rule(tag_selectors=[{**harbor_selector("matches", "*"), "extras": "{untagged}"}])]},
            "rule 1",
            "tag_selectors[0].extras",
            "JSON-encoded",
        ),
        (
            Policy.from_harbor,
            {"rules": [harbor_rule(templates="always")]},
            "rule 1",
            "templates",
            "did you mean 'template'",
        ),
    ],
)
def test_bad_policy_names_the_rule_and_the_key(build, data, rule, key, message):
    with pytest.raises(PolicyError, match=message) as info:
        build(data)
    assert (info.value.rule, info.value.key) == (rule, key)
    assert isinstance(info.value, ValueError)


def test_load_detects_the_format_and_reports_file_problems(tmp_path):
    (tmp_path / "ecr.json").write_text(json.dumps(ECR_POLICY))
    assert Policy.load(tmp_path / "ecr.json").format == "ecr"
    (tmp_path / "harbor.json").write_text(json.dumps(HARBOR_DOC))
    assert Policy.load(tmp_path / "harbor.json").format == "harbor"
    (tmp_path / "gitlab.yaml").write_text("container_expiration_policy_attributes:\n  keep_n: 5\n")
    assert Policy.load(tmp_path / "gitlab.yaml").format == "gitlab"
    with pytest.raises(PolicyError, match="use format 'ecr'"):
        Policy.load(tmp_path / "ecr.json", format="native")
    (tmp_path / "bad.toml").write_text("[[rules]\nname = 1")
    with pytest.raises(PolicyError, match="not valid TOML"):
        Policy.load(tmp_path / "bad.toml")
    with pytest.raises(PolicyError, match="from its extension"):
        Policy.load(tmp_path / "policy.txt")
    with pytest.raises(PolicyError, match="cannot read policy file"):
        Policy.load(tmp_path / "missing.toml")
    with pytest.raises(PolicyError, match="unknown policy format 'aws'"):
        Policy.load(tmp_path / "ecr.json", format="aws")


def test_yaml_without_pyyaml_is_a_clear_error(tmp_path, monkeypatch):
    """PyYAML cannot be uninstalled for one test; a None entry in sys.modules makes its import fail the
    way a missing package does."""
    (tmp_path / "p.yaml").write_text("rules: []\n")
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(PolicyError, match="needs PyYAML"):
        Policy.load(tmp_path / "p.yaml")


def test_re2_translation_keeps_plain_patterns_unchanged():
    for pattern in (r"v\d+\.\d+", "[a-z0-9]{40}", ".*-main", "(?:a|b)+?", r"^x$", r"\.\-"):
        assert re2_to_python(pattern) == pattern


def test_a_frame_without_the_needed_columns_is_refused_naming_the_policy_call():
    frame = manifests([("a", "1", "sha256:" + "1" * 64, 10)]).drop(columns=["created"])
    with pytest.raises(ValueError, match=r"^Policy\.evaluate needs column\(s\) 'created'"):
        Policy.from_dict({"rules": [{"name": "r", "keep_newer_than": "30d"}]}).evaluate(frame, now=NOW)


def test_artifacts_group_tags_by_digest_newest_first_undated_last_ties_by_first_tag():
    frame = manifests(
        [
            ("a", "b-tag", "d1", 10),
            ("a", "a-tag", "d1", 10),
            ("a", "z", "d2", 10),
            ("a", "old", "d3", 50),
            ("a", "undated", "d4", None),
            ("b", "x", "d1", 1),
        ]
    )
    table = tag_table(frame, NOW)
    found = artifacts(table)
    names = table.rows.names()
    of = {(r, t): found.of_row[i] for i, (r, t) in enumerate(zip(*names))}
    assert len(found) == 5
    assert of[("a", "a-tag")] == of[("a", "b-tag")] != of[("b", "x")]
    places = found.newer_selected(np.ones(len(found), dtype=bool))
    assert [places[of[("a", t)]] for t in ("a-tag", "z", "old", "undated")] == [0, 1, 2, 3]
    assert places[of[("b", "x")]] == 0
    skip_z = np.ones(len(found), dtype=bool)
    skip_z[of[("a", "z")]] = False
    assert found.newer_selected(skip_z)[of[("a", "old")]] == 1
    hit = np.array([tag == "b-tag" for tag in names[1]])
    assert found.any_tag(hit)[of[("a", "a-tag")]] and not found.any_tag(hit)[of[("a", "z")]]


def test_gitlab_and_ecr_plans_say_what_those_products_do_with_accessory_tags():
    """GitLab and ECR see cosign's tags as ordinary tags (README: "differs"), so a plan of theirs counts the
    accessory tags in its scope that follow their image here, and says how GitLab can be made to keep
    them. An orphan is decided by the rules in both, so it is not counted; native and Harbor plans have no
    such note."""
    frame = with_orphans()
    signature = "sha256-" + "a" * 64 + ".sig"
    frame = pd.concat([frame, manifests([("team-b/web", signature, "s3", None)])], ignore_index=True)
    frame["subject"] = [None, GONE, None, GONE, "b1"]

    gitlab = Policy.from_gitlab({"keep_n": 1}).evaluate(frame, now=NOW)
    [note] = [n for n in gitlab.attrs["policy_notes"] if "accessory tag" in n]
    assert note.startswith("1 accessory tag(s)") and "name_regex_keep" in note
    assert decision(gitlab, "team-b/web", signature)[0] is False, "it follows its kept image here"

    scoped = Policy.from_gitlab({"keep_n": 1}, repositories="team-a/**").evaluate(frame, now=NOW)
    assert not [n for n in scoped.attrs["policy_notes"] if "accessory tag" in n], "outside its scope"

    rule = {
        "rulePriority": 1,
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 5},
        "action": {"type": "expire"},
    }
    ecr_plan = Policy.from_ecr({"rules": [rule]}).evaluate(frame, now=NOW)
    assert [n for n in ecr_plan.attrs["policy_notes"] if n.startswith("1 accessory tag(s)")]

    native = Policy.from_dict({"rules": [{"name": "all", "keep_last": 1}]}).evaluate(frame, now=NOW)
    assert not [n for n in native.attrs["policy_notes"] if "accessory tag" in n]
