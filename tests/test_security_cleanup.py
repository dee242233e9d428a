"""Cleanup never loses a tag outside its plan: kept multi-platform images, racing writers, frames read
back from CSV, and user patterns that would backtrack for ever.

Races run against a real registry: a second client moves or adds tags at an exact moment of the
cleanup (right after its tag listing, or right after the HEAD check of one tag), chosen through a
subclass of the cleanup's client; nothing is mocked.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

import regframe
from regframe.analysis import cleanup_plan, reclaimable_bytes, stale_tags
from regframe.testing import build_image, build_index, layer, local_registry, push_image

AMD = build_image([layer("sc-base", 3000), layer("sc-amd", 1500)], oci=True)
ARM = build_image([layer("sc-base-arm", 3100), layer("sc-arm", 1600)], architecture="arm64", variant="v8", oci=True)
INDEX = build_index([AMD, ARM], oci=True)
KEEP = build_image([layer("sc-keep", 1200)])
OLD2 = build_image([layer("sc-old2", 1300)])
OLD3 = build_image([layer("sc-old3", 1400)])


def racing(url: str, action, *, after_listing: int = 0, after_head: tuple[str, int] | None = None):
    """A client whose ``action`` runs once: after its ``after_listing``-th tag listing, or after the
    ``n``-th HEAD of tag ``t`` for ``after_head=(t, n)`` (a listing HEADs every tag once)."""

    class Racing(regframe.Registry):
        listings = 0
        heads: ClassVar[dict[str, int]] = {}
        fired = False

        def _fire(self):
            if not self.fired:
                self.fired = True
                action()

        def tags(self, *args, **kwargs):
            result = super().tags(*args, **kwargs)
            self.listings += 1
            if self.listings == after_listing:
                self._fire()
            return result

        def digest(self, repo, tag, platform=None):
            result = super().digest(repo, tag, platform)
            self.heads[tag] = self.heads.get(tag, 0) + 1
            if after_head == (tag, self.heads[tag]):
                self._fire()
            return result

    return Racing(url, docker_config=False)


@pytest.fixture
def other(registry_url):
    """The racing writer: a second, independent client."""
    with regframe.connect(registry_url, docker_config=False) as client:
        yield client


def plan(repository: str, rows: dict[str, tuple[str, bool]]) -> pd.DataFrame:
    """A stale frame by hand: {tag: (digest, stale)}."""
    return pd.DataFrame(
        {
            "repository": repository,
            "tag": list(rows),
            "digest": [d for d, _ in rows.values()],
            "stale": [s for _, s in rows.values()],
        }
    )


def hashes(client, repository: str) -> dict[str, str]:
    return client.tags(repository, with_hashes=True).get("hashes", {})


def outcome(result: pd.DataFrame) -> dict[str, tuple[str, str]]:
    return {t: (s, why) for t, s, why in zip(result["tag"], result["status"], result["reason"], strict=True)}


# --- 2: the platforms of a kept multi-platform image ----------------------------------------------------


def push_multi_platform(client, repository: str) -> None:
    push_image(client, repository, "1.0-amd64", AMD)
    push_image(client, repository, "1.0-arm64", ARM)
    push_image(client, repository, "1.0", INDEX)


def test_stale_tags_says_a_platform_of_a_kept_index_keeps_its_manifest():
    frame = pd.DataFrame(
        {
            "repository": "r",
            "tag": ["1.0", "1.0", "1.0-amd64", "1.0-arm64", "old"],
            "digest": ["idx", "idx", "amd", "arm", "lone"],
            "manifest_digest": ["amd", "arm", "amd", "arm", "lone"],
            "created": pd.Timestamp("2020-01-01", tz="UTC"),
            "size": pd.array([1, 2, 1, 2, 3], dtype="Int64"),
        }
    )
    stale = stale_tags(frame, older_than="30d", match=r"-(amd64|arm64)$|^old$", now="2026-01-01")
    got = {t: (s, why) for t, s, why in zip(stale["tag"], stale["stale"], stale["reason"], strict=True)}
    assert got["1.0"] == (False, "kept: does not match pattern")
    assert got["1.0-amd64"] == (True, "older than 30 days; manifest kept as a child of kept index '1.0'")
    assert got["1.0-arm64"] == (True, "older than 30 days; manifest kept as a child of kept index '1.0'")
    assert got["old"] == (True, "older than 30 days")


@pytest.mark.parametrize("delete_manifests", [False, True])
def test_cleanup_keeps_the_platforms_of_a_kept_index(anon, repo_name, tmp_path, delete_manifests):
    push_multi_platform(anon, repo_name)
    inv = anon.inventory([repo_name], progress=False)
    stale = stale_tags(inv.manifests, older_than="30d", match=r"-(amd64|arm64)$")
    assert set(stale.loc[stale["stale"], "tag"]) == {"1.0-amd64", "1.0-arm64"}
    assert reclaimable_bytes(stale, inv.layers) == 0, "every layer is still used by the kept index"

    result = anon.apply_cleanup(stale, dry_run=False, delete_manifests=delete_manifests)
    assert set(result["status"]) == {"deleted"}
    assert hashes(anon, repo_name) == {"1.0": INDEX.digest}
    for child in (AMD, ARM):
        assert anon.manifest(repo_name, child.digest).raw == child.manifest_raw
    anon.pull(repo_name, "1.0", tmp_path)
    if delete_manifests:
        assert set(result["reason"]) == {"manifest kept, a platform of index tagged '1.0'"}


def push_nested_index(client, repository: str) -> None:
    """``outer``, an index whose one entry is ``INDEX`` (itself an index of AMD and ARM): the image spec lets an
    index list indexes, and distribution 2.8 takes it. ``INDEX`` and ``AMD`` carry tags of their own."""
    push_image(client, repository, "inner-old", INDEX)
    push_image(client, repository, "amd-old", AMD)
    outer = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": INDEX.digest,
                "size": len(INDEX.manifest_raw),
            }
        ],
    }
    client.put_manifest(repository, "outer", json.dumps(outer).encode(), "application/vnd.oci.image.index.v1+json")


def test_delete_manifests_keeps_what_a_kept_index_reaches_through_a_nested_index(anon, repo_name, tmp_path):
    """Only ``outer`` stays; the inner index and its amd64 platform lose their tags but not their manifests,
    which ``outer`` reaches through its nested index."""
    push_nested_index(anon, repo_name)
    stale = plan(repo_name, {"inner-old": (INDEX.digest, True), "amd-old": (AMD.digest, True)})
    result = anon.apply_cleanup(stale, dry_run=False, delete_manifests=True)
    assert outcome(result) == {
        "amd-old": ("deleted", "manifest kept, a platform of index tagged 'outer'"),
        "inner-old": ("deleted", "manifest kept, a platform of index tagged 'outer'"),
    }
    assert set(hashes(anon, repo_name)) == {"outer"}
    for kept in (INDEX, AMD, ARM):
        assert anon.manifest(repo_name, kept.digest).raw == kept.manifest_raw


def test_the_crawl_reads_a_nested_index_under_the_tag_of_the_outer_one(anon, repo_name):
    """``outer`` lists only another index: its rows are that index's platforms, so the tag is seen, its
    layers are counted, and a plan deleting the inner tags frees nothing ``outer`` still uses."""
    push_nested_index(anon, repo_name)
    inv = anon.inventory([repo_name], progress=False)
    outer = inv.manifests[inv.manifests["tag"] == "outer"]
    assert sorted(outer["manifest_digest"].astype(str)) == sorted([AMD.digest, ARM.digest])
    assert set(outer["platform"].astype(str)) == {"linux/amd64", "linux/arm64/v8"}
    assert inv.errors.empty
    layers = set(inv.layers.loc[inv.layers["tag"] == "outer", "layer_digest"].astype(str))
    assert layers == {blob.digest for image in (AMD, ARM) for blob in (image.config, *image.layers)}
    stale = stale_tags(inv.manifests, older_than="0d", match=r"-old$", tags=inv.tags, errors=inv.errors)
    assert set(stale.loc[stale["stale"], "tag"]) == {"inner-old", "amd-old"}
    assert reclaimable_bytes(stale, inv.layers) == 0, "outer still uses every layer"


def test_rmtag_auto_untags_an_image_a_nested_index_of_another_tag_reaches(anon, repo_name):
    """``rmtag`` by default deletes the manifest when no other tag needs it; ``outer`` needs ``AMD`` through
    its nested index, so only the tag goes."""
    push_nested_index(anon, repo_name)
    anon.rmtag(repo_name, "inner-old")
    removed = anon.rmtag(repo_name, "amd-old")
    assert removed["kept"] == ["outer"]
    assert set(hashes(anon, repo_name)) == {"outer"}
    assert anon.manifest(repo_name, AMD.digest).raw == AMD.manifest_raw


def test_index_tagged_while_cleaning_keeps_its_platforms(anon, other, registry_url, repo_name, tmp_path):
    """Every tag is stale; right after the listing another client tags the index ``stable``. The
    manifests are judged on a fresh listing, so neither the index nor its platforms are deleted."""
    push_multi_platform(anon, repo_name)
    stale = plan(
        repo_name, {"1.0": (INDEX.digest, True), "1.0-amd64": (AMD.digest, True), "1.0-arm64": (ARM.digest, True)}
    )
    with racing(registry_url, lambda: other.tag(repo_name, "1.0", repo_name, "stable"), after_listing=1) as client:
        result = client.apply_cleanup(stale, dry_run=False, delete_manifests=True)
    assert hashes(anon, repo_name) == {"stable": INDEX.digest}
    got = outcome(result)
    assert got["1.0"] == ("deleted", "manifest kept, tagged 'stable'")
    assert got["1.0-amd64"] == ("deleted", "manifest kept, a platform of index tagged 'stable'")
    anon.pull(repo_name, "stable", tmp_path)


# --- 3: racing writers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("delete_manifests", [False, True])
def test_tag_moved_onto_a_kept_image_after_the_listing_is_skipped(
    anon, other, registry_url, repo_name, delete_manifests
):
    push_image(anon, repo_name, "keepme", KEEP)
    push_image(anon, repo_name, "old2", OLD2)
    stale = plan(repo_name, {"keepme": (KEEP.digest, False), "old2": (OLD2.digest, True)})
    with racing(registry_url, lambda: other.tag(repo_name, "keepme", repo_name, "old2"), after_listing=1) as client:
        result = client.apply_cleanup(stale, dry_run=False, delete_manifests=delete_manifests)
    assert hashes(anon, repo_name) == {"keepme": KEEP.digest, "old2": KEEP.digest}
    assert outcome(result) == {"old2": ("skipped", f"tag moved to {KEEP.digest} just before deletion")}
    assert result["action"].tolist() == ["skip"]


@pytest.mark.parametrize("delete_manifests", [False, True])
def test_image_tagged_release_after_the_listing_stays(anon, other, registry_url, repo_name, delete_manifests):
    push_image(anon, repo_name, "old3", OLD3)
    stale = plan(repo_name, {"old3": (OLD3.digest, True)})
    with racing(registry_url, lambda: other.tag(repo_name, "old3", repo_name, "release"), after_listing=1) as client:
        result = client.apply_cleanup(stale, dry_run=False, delete_manifests=delete_manifests)
    assert hashes(anon, repo_name) == {"release": OLD3.digest}
    assert anon.manifest(repo_name, "release").raw == OLD3.manifest_raw
    assert result["method"].tolist() == ["placeholder"]
    if delete_manifests:
        assert outcome(result) == {"old3": ("deleted", "manifest kept, tagged 'release'")}


def test_move_between_the_check_and_the_write_loses_only_the_planned_tag(anon, other, registry_url, repo_name):
    """The one window left: another client moves ``old2`` onto ``keepme``'s image right after the HEAD
    that checked it. ``old2`` (in the plan) goes; ``keepme`` and its image stay."""
    push_image(anon, repo_name, "keepme", KEEP)
    push_image(anon, repo_name, "old2", OLD2)
    stale = plan(repo_name, {"keepme": (KEEP.digest, False), "old2": (OLD2.digest, True)})
    with racing(
        registry_url, lambda: other.tag(repo_name, "keepme", repo_name, "old2"), after_head=("old2", 2)
    ) as client:
        result = client.apply_cleanup(stale, dry_run=False)
    assert outcome(result)["old2"][0] == "deleted"
    assert hashes(anon, repo_name) == {"keepme": KEEP.digest}
    assert anon.manifest(repo_name, KEEP.digest).raw == KEEP.manifest_raw
    assert anon.manifest(repo_name, OLD2.digest).raw == OLD2.manifest_raw, "no image is deleted"


def test_rmtag_refuses_when_the_tag_moved(anon, repo_name):
    push_image(anon, repo_name, "a", OLD2)
    push_image(anon, repo_name, "b", OLD3)
    for method in ("auto", "placeholder"):
        puts = anon.stats["requests"].get("manifest_put", 0)
        with pytest.raises(regframe.TagMovedError, match=f"{repo_name}:a now points at {OLD2.digest}") as info:
            anon.rmtag(repo_name, "a", expected_digest=OLD3.digest, method=method)
        assert (info.value.expected, info.value.actual) == (OLD3.digest, OLD2.digest)
        assert anon.stats["requests"].get("manifest_put", 0) == puts, "no placeholder was written"
        with pytest.raises(regframe.TagMovedError, match="no longer exists"):
            anon.rmtag(repo_name, "gone", expected_digest=OLD3.digest, method=method)
    assert hashes(anon, repo_name) == {"a": OLD2.digest, "b": OLD3.digest}
    assert anon.rmtag(repo_name, "b", expected_digest=OLD3.digest, method="placeholder")["method"] == "placeholder"
    assert hashes(anon, repo_name) == {"a": OLD2.digest}
    assert anon.manifest(repo_name, OLD3.digest).raw == OLD3.manifest_raw, "the image stays, untagged"
    with pytest.raises(ValueError, match="method"):
        anon.rmtag(repo_name, "a", method="digest")


@pytest.mark.parametrize("delete_manifests", [False, True])
def test_dry_run_lists_the_same_rows_as_the_real_run(anon, repo_name, delete_manifests):
    push_multi_platform(anon, repo_name)
    for tag, image in (("keepme", KEEP), ("alias", KEEP), ("old2", OLD2), ("old3", OLD3), ("old3b", OLD3)):
        push_image(anon, repo_name, tag, image)
    stale = plan(
        repo_name,
        {
            "1.0": (INDEX.digest, False),
            "1.0-amd64": (AMD.digest, True),
            "1.0-arm64": (ARM.digest, False),
            "keepme": (KEEP.digest, False),
            "alias": (KEEP.digest, True),
            "old2": (OLD2.digest, True),
            "old3": (OLD3.digest, True),
            "old3b": (OLD3.digest, True),
            "vanished": (OLD2.digest, True),
            "moved": (OLD3.digest, True),
        },
    )
    push_image(anon, repo_name, "moved", KEEP)
    dry = anon.apply_cleanup(stale, dry_run=True, delete_manifests=delete_manifests)
    real = anon.apply_cleanup(stale, dry_run=False, delete_manifests=delete_manifests)
    columns = ["repository", "tag", "digest", "action", "method"]
    pd.testing.assert_frame_equal(dry[columns], real[columns])
    assert dry["status"].tolist() == [s.replace("deleted", "would delete") for s in real["status"]]
    assert dry["reason"].tolist() == [r.replace(" deleted", " would be deleted") for r in real["reason"]]
    got = outcome(real)
    assert got["vanished"] == ("skipped", "tag no longer exists")
    assert got["moved"] == ("skipped", f"tag moved to {KEEP.digest} since the analysis")
    assert hashes(anon, repo_name) == {
        "1.0": INDEX.digest,
        "1.0-arm64": ARM.digest,
        "keepme": KEEP.digest,
        "moved": KEEP.digest,
    }
    if delete_manifests:
        assert got["alias"] == ("deleted", "manifest kept, tagged 'keepme', 'moved'")
        assert got["1.0-amd64"] == ("deleted", "manifest kept, a platform of index tagged '1.0'")
        assert got["old2"] == got["old3"] == got["old3b"] == ("deleted", "manifest deleted")
        assert anon.manifest(repo_name, OLD3.digest) == {}
    else:
        assert got["alias"] == ("deleted", "manifest kept, also tagged 'keepme', 'moved'")
        assert got["old3"] == ("deleted", "manifest kept; no other tag pointed at it when listed")
        assert anon.manifest(repo_name, OLD3.digest).raw == OLD3.manifest_raw


def test_delete_manifests_lets_plain_garbage_collection_free_what_reclaimable_bytes_counts(tmp_path):
    """After a cleanup with ``delete_manifests``, distribution 2.8's plain ``garbage-collect`` removes
    exactly the blobs (configs and layers) only stale images used, and the kept index and its platforms still pull."""
    old_amd = build_image([layer("sc-gc-base", 2000), layer("sc-gc-amd", 900)], oci=True)
    old_arm = build_image([layer("sc-gc-base", 2000), layer("sc-gc-arm", 950)], architecture="arm64", oci=True)
    old_index = build_index([old_amd, old_arm], oci=True)
    with local_registry() as reg, regframe.connect(reg.url, docker_config=False) as client:
        push_multi_platform(client, "app/web")
        push_image(client, "app/web", "old3", OLD3)
        push_image(client, "app/web", "old-multi", old_index)
        push_image(client, "app/web", "keepme", KEEP)
        inv = client.inventory(progress=False)
        stale = stale_tags(inv.manifests, older_than="30d", match=r"^old|-(amd64|arm64)$")
        assert set(stale.loc[stale["stale"], "tag"]) == {"old3", "old-multi", "1.0-amd64", "1.0-arm64"}
        freed = {b.digest: b.size for image in (OLD3, old_amd, old_arm) for b in (image.config, *image.layers)}
        assert reclaimable_bytes(stale, inv.layers) == sum(freed.values())

        client.apply_cleanup(stale, dry_run=False, delete_manifests=True)
        reg.garbage_collect()
        blobs = reg.storage / "docker" / "registry" / "v2" / "blobs" / "sha256"
        stored = {f"sha256:{p.parent.name}" for p in blobs.glob("*/*/data")}
        assert not set(freed) & stored
        kept = {b.digest for image in (AMD, ARM, KEEP) for b in (image.config, *image.layers)}
        assert kept <= stored
        for tag in ("1.0", "keepme"):
            client.pull("app/web", tag, tmp_path / tag)


# --- 4: the stale column, strictly ------------------------------------------------------------------------


def test_stale_strings_read_back_from_csv_are_parsed_strictly(anon, repo_name):
    push_image(anon, repo_name, "latest", KEEP)
    push_image(anon, repo_name, "old", OLD2)
    stale = plan(repo_name, {"latest": (KEEP.digest, False), "old": (OLD2.digest, True)})
    read_back = pd.read_csv(io.StringIO(stale.to_csv(index=False)), dtype=str)
    assert read_back["stale"].tolist() == ["False", "True"]
    assert cleanup_plan(read_back.assign(created=pd.NaT, age=pd.NaT, reason="r"))["tag"].tolist() == ["old"]
    result = anon.apply_cleanup(read_back, dry_run=False)
    assert result["tag"].tolist() == ["old"]
    assert hashes(anon, repo_name) == {"latest": KEEP.digest}


@pytest.mark.parametrize("bad", [np.nan, None, "yes", "true", "FALSE", "", 1.5, 1, 0])
def test_unclear_stale_values_are_refused_before_any_request(anon, repo_name, bad):
    push_image(anon, repo_name, "latest", KEEP)
    stale = pd.DataFrame(
        {
            "repository": [repo_name, repo_name],
            "tag": ["latest", "other"],
            "digest": [KEEP.digest, OLD2.digest],
            "stale": pd.Series([bad, "False"], dtype=object),
        }
    )
    before = anon.stats["total_requests"]
    for dry_run in (True, False):
        with pytest.raises(ValueError, match="column 'stale'"):
            anon.apply_cleanup(stale, dry_run=dry_run)
    assert anon.stats["total_requests"] == before
    with pytest.raises(ValueError, match="column 'stale'"):
        cleanup_plan(stale.assign(created=pd.NaT, age=pd.NaT, reason="r"))
    with pytest.raises(ValueError, match="column 'stale'"):
        reclaimable_bytes(stale, pd.DataFrame({"repository": [], "tag": [], "layer_digest": [], "size": []}))
    assert hashes(anon, repo_name) == {"latest": KEEP.digest}


def test_malformed_rows_and_flags_are_refused_before_any_request(anon):
    good = plan("t/x", {"old": (OLD2.digest, True)})
    before = anon.stats["total_requests"]
    cases = [
        (good.assign(digest="not-a-digest"), "column 'digest'"),
        (good.assign(tag="bad tag"), "column 'tag'"),
        (good.assign(repository="Bad//Name"), "column 'repository'"),
        (pd.concat([good, good.assign(digest=OLD3.digest)]), "two digests"),
        (good.drop(columns=["digest"]), "digest"),
    ]
    for frame, message in cases:
        with pytest.raises(ValueError, match=message):
            anon.apply_cleanup(frame, dry_run=False)
    with pytest.raises(ValueError, match="dry_run"):
        anon.apply_cleanup(good, dry_run="no")
    assert anon.stats["total_requests"] == before


# --- 11: user patterns run with a time bound --------------------------------------------------------------

TAGS = pd.DataFrame(
    {
        "repository": "r",
        "tag": ["a" * 60 + "!", "latest"],
        "digest": ["d1", "d2"],
        "created": pd.Timestamp("2020-01-01", tz="UTC"),
        "size": pd.array([1, 1], dtype="Int64"),
    }
)

_STALE_IN_A_PROCESS = """
import json, sys
import pandas as pd
from regframe.analysis import stale_tags
tags = pd.DataFrame({"repository": "r", "tag": ["a" * 60 + "!", "latest"], "digest": ["d1", "d2"],
                     "created": pd.Timestamp("2020-01-01", tz="UTC"), "size": pd.array([1, 1], dtype="Int64")})
try:
    stale = stale_tags(tags, now="2026-01-01", **json.loads(sys.argv[1]))
    print(json.dumps({"stale": [bool(x) for x in stale["stale"]]}))
except ValueError as exc:
    print(json.dumps({"error": str(exc)}))
"""


def stale_tags_within(seconds: float, **kwargs) -> dict:
    """``stale_tags`` on a 61-character tag in a child process, killed (and the test failed) after
    ``seconds``: a search stuck in ``re`` holds the GIL, so a thread could not be given up on."""
    done = subprocess.run(
        [sys.executable, "-c", _STALE_IN_A_PROCESS, json.dumps(kwargs)], capture_output=True, text=True, timeout=seconds
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_catastrophic_patterns_end_quickly_or_with_a_clear_error():
    assert stale_tags_within(60, match="(a+)+$") == {"stale": [False, False]}
    error = stale_tags_within(60, keep="(a|aa)+$")["error"]
    assert "keep pattern '(a|aa)+$' took longer than 1 s on tag" in error
    assert repr("a" * 60 + "!") in error and "simplify it" in error


def test_patterns_keep_python_re_syntax_and_flags():
    kept = stale_tags(TAGS, keep=re.compile("^LATEST$", re.IGNORECASE), now="2026-01-01")
    assert dict(zip(kept["tag"], kept["stale"], strict=True)) == {"latest": False, "a" * 60 + "!": True}
    with pytest.raises(ValueError, match=r"match pattern '\\\\p\{L\}' is not a valid regular expression"):
        stale_tags(TAGS, match=r"\p{L}")
    with pytest.raises(ValueError, match="must be text"):
        stale_tags(TAGS, match=re.compile(b"x"))
