"""The digest cache against a real registry (Debian docker-registry 2.8): a cache that cannot be written, a
manifest that misstates its config's size, damaged entries, and a cache of another regframe version.

Expected values come from the images the tests pushed, never from the code under test.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import warnings

import pandas as pd
import pytest

import regframe
from regframe.cli import main
from regframe.inventory.cache import SCHEMA_VERSION, CacheWarning, DigestCache, entry_problem
from regframe.testing import build_image, layer, local_registry, push_image
from regframe.testing.faultproxy import FaultProxy
from regframe.testing.images import DEFAULT_CREATED

APP = "cache/app"
IMAGE = build_image([layer("cache-app", 400)], labels={"team": "cache"})


@pytest.fixture(scope="module")
def registry():
    with local_registry() as reg, regframe.connect(reg.url, docker_config=False) as client:
        push_image(client, APP, "1.0", IMAGE)
        yield reg


@pytest.fixture
def reg(registry):
    with regframe.connect(registry.url, docker_config=False) as client:
        yield client


def database(folder) -> str:
    return os.path.join(folder, "digests.sqlite")


def entries(folder) -> dict[str, str]:
    with sqlite3.connect(database(folder)) as db:
        return dict(db.execute("SELECT digest, body FROM entries"))


def set_entry(folder, digest: str, body: str) -> None:
    db = sqlite3.connect(database(folder))
    db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?)", (digest, body))
    db.commit()
    db.close()


def file_hash(folder) -> str:
    with open(database(folder), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def frames_equal(one, other) -> None:
    for name in ("catalog", "tags", "manifests", "layers", "referrers", "errors"):
        pd.testing.assert_frame_equal(getattr(one, name), getattr(other, name))


def row(inv, repository: str, tag: str) -> dict:
    frame = inv.manifests
    found = frame[(frame["repository"] == repository) & (frame["tag"] == tag)]
    assert len(found) == 1
    return found.iloc[0].to_dict()


# -- a cache that cannot be written ------------------------------------------------------------------


def test_a_cache_that_cannot_be_written_is_a_warning_and_the_crawl_is_kept(reg, registry, tmp_path):
    """Another process holds the cache's write lock past SQLite's 5 s timeout (a backup, another audit
    saving): the crawl's frames are returned whole with a warning naming the cache and the reason, and the
    next crawl, once the lock is gone, saves what it read."""
    cache = tmp_path / "cache"
    reg.inventory([APP], cache=cache, progress=False)
    push_image(reg, "cache/locked", "1.0", build_image([layer("cache-locked", 300)]))
    names = [APP, "cache/locked"]
    holder = sqlite3.connect(database(cache), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.warns(CacheWarning) as caught:
            inv = reg.inventory(names, cache=cache, progress=False)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(caught) == 1
    message = str(caught[0].message)
    assert database(cache) in message and "database is locked" in message and "could not be written" in message
    frames_equal(inv, reg.inventory(names, progress=False))
    assert inv.complete and inv.errors.empty
    reg.inventory(names, cache=cache, progress=False)
    warm = reg.inventory(names, cache=cache, progress=False)
    assert warm.stats["requests"] == {"tags": 2, "manifest_head": 2}, "what the locked crawl read was saved later"


def test_the_audit_with_a_cache_it_cannot_write_writes_its_report_and_warns_on_stderr(registry, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out"
    DigestCache(cache)
    holder = sqlite3.connect(database(cache), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "regframe", "audit", registry.url, "--out", str(out), "--cache", str(cache)]
            + ["--no-progress"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert done.returncode == 0, done.stderr
    assert (out / "report.html").is_file() and (out / "tags.csv").is_file()
    assert done.stderr.startswith("regframe: warning: cache ")
    assert database(cache) in done.stderr and "database is locked" in done.stderr
    assert "Traceback" not in done.stderr


# -- a config size a manifest misstates ----------------------------------------------------------------


def test_a_misstated_config_size_is_a_verdict_on_that_manifest_only(reg, tmp_path):
    """A manifest may misstate its config's size (distribution 2.8 stores it as given). The verdict drawn
    from a declared size (over the 16 MiB limit: no platform, no download; under the real size: a failed
    read) is that manifest's alone: the image whose descriptor is right keeps its platform, date and labels
    in the same crawl and in warm crawls, and the cache holds only what the blob showed."""
    good = build_image([layer("cache-poison", 300)], labels={"team": "good"})
    push_image(reg, "poison/good", "1.0", good)
    push_image(reg, "poison/lying", "seed", good)
    for tag, size in (("big", 17_000_000), ("small", 10)):
        lying = json.loads(good.manifest_raw)
        lying["config"]["size"] = size
        reg.put_manifest("poison/lying", tag, json.dumps(lying).encode(), good.media_type)
    reg.rmtag("poison/lying", "seed")
    expected = {"platform": "linux/amd64", "created": pd.Timestamp(DEFAULT_CREATED), "labels": {"team": "good"}}

    alone = reg.inventory(["poison/lying"], progress=False, workers=1)
    assert row(alone, "poison/lying", "big")["platform"] == "unknown/unknown"
    assert alone.errors[["repository", "tag", "stage"]].astype(str).values.tolist() == [
        ["poison/lying", "small", "config"]
    ]

    cache = tmp_path / "cache"
    for workers in (1, 8):  # the liars first (name order), then every order
        both = reg.inventory(
            ["poison/lying", "poison/good"], cache=tmp_path / f"c{workers}", progress=False, workers=workers
        )
        found = row(both, "poison/good", "1.0")
        assert {key: found[key] for key in expected} == expected
        assert both.errors[["repository", "tag", "stage"]].astype(str).values.tolist() == [
            ["poison/lying", "small", "config"]
        ]
    both = reg.inventory(["poison/lying", "poison/good"], cache=cache, progress=False, workers=1)
    config = json.loads(entries(cache)[good.config.digest])
    assert config["os"] == "linux" and "unreadable" not in config
    assert not any("declares" in body for body in entries(cache).values())

    reg.rmtag("poison/lying", "big")
    reg.rmtag("poison/lying", "small")
    warm = reg.inventory(["poison/good"], cache=cache, progress=False)
    cold = reg.inventory(["poison/good"], progress=False)
    frames_equal(warm, cold)
    assert {key: row(warm, "poison/good", "1.0")[key] for key in expected} == expected
    assert "blob" not in warm.stats["requests"]


def test_a_declared_size_verdict_an_older_regframe_cached_is_dropped(reg, tmp_path):
    """Caches written before this fix hold the declared-size verdict under the config's digest: it is not
    content, so it is read again, quietly (it is no damage to warn about)."""
    cache = tmp_path / "cache"
    reg.inventory([APP], cache=cache, progress=False)
    verdict = {"os": None, "architecture": None, "variant": None, "created": None, "labels": {}}
    verdict["unreadable"] = "declares 17000000 bytes, over the 16777216-byte limit"
    set_entry(cache, IMAGE.config.digest, json.dumps(verdict))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        warm = reg.inventory([APP], cache=cache, progress=False)
    assert row(warm, APP, "1.0")["platform"] == "linux/amd64"
    assert warm.stats["requests"]["blob"] == 1
    assert json.loads(entries(cache)[IMAGE.config.digest])["os"] == "linux"


# -- damaged entries -----------------------------------------------------------------------------------

MANIFEST_SUMMARY = {
    "media_type": IMAGE.media_type,
    "size": 1,
    "config": None,
    "layers": [],
    "children": [],
    "skeleton": {},
}
DAMAGE = {
    # entry of the image's manifest
    "manifest-not-json": ("manifest", "{oops"),
    "manifest-empty-object": ("manifest", "{}"),
    "manifest-list": ("manifest", "[1, 2]"),
    "manifest-null": ("manifest", "null"),
    "manifest-number": ("manifest", "42"),
    "manifest-children-null": ("manifest", json.dumps({**MANIFEST_SUMMARY, "children": None})),
    "manifest-layer-size-text": ("manifest", json.dumps({**MANIFEST_SUMMARY, "layers": [["sha256:a", "9", None]]})),
    "manifest-no-skeleton": ("manifest", json.dumps({k: v for k, v in MANIFEST_SUMMARY.items() if k != "skeleton"})),
    "manifest-failed-null": ("manifest", '{"failed": null}'),
    # entry of its config
    "config-not-json": ("config", "\x00\x01"),
    "config-no-labels": ("config", '{"os": "linux", "architecture": "amd64", "variant": null}'),
    "config-os-number": ("config", '{"os": 5, "architecture": "amd64", "variant": null, "labels": {}}'),
    "config-labels-list": ("config", '{"os": null, "architecture": null, "variant": null, "labels": []}'),
}


@pytest.mark.parametrize("target, body", DAMAGE.values(), ids=DAMAGE)
def test_a_damaged_entry_is_a_miss_with_one_warning_naming_the_file(reg, tmp_path, target, body):
    """An entry that is not JSON, or not of the shape a crawl writes (a hand edit, a disk error, another
    program), is read again from the registry and rewritten; one warning names the file and says to delete
    it if this keeps happening. The crawl's frames are those of a cold crawl."""
    cache = tmp_path / "cache"
    cold = reg.inventory([APP], cache=cache, progress=False)
    digest = IMAGE.digest if target == "manifest" else IMAGE.config.digest
    original = entries(cache)[digest]
    set_entry(cache, digest, body)
    with pytest.warns(CacheWarning) as caught:
        warm = reg.inventory([APP], cache=cache, progress=False)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert database(cache) in message and "1 entry could not be read" in message and "delete" in message
    frames_equal(warm, cold)
    assert warm.stats["requests"][{"manifest": "manifest", "config": "blob"}[target]] == 1
    assert json.loads(entries(cache)[digest]) == json.loads(original), "the entry is rewritten"
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        assert len(DigestCache(cache)) == len(entries(cache))


def test_damaged_entries_are_counted_in_one_warning_and_the_audit_goes_on(reg, registry, tmp_path):
    cache = tmp_path / "cache"
    reg.inventory([APP], cache=cache, progress=False)
    set_entry(cache, IMAGE.digest, "{}")
    set_entry(cache, IMAGE.config.digest, "not json")
    with pytest.warns(CacheWarning, match="2 entries could not be read and are ignored") as caught:
        code = main(["audit", registry.url, "--out", str(tmp_path / "out"), "--cache", str(cache), "--no-progress"])
    assert len(caught) == 1 and code == 0
    assert (tmp_path / "out" / "report.html").is_file()
    assert all(entry_problem(json.loads(body)) is None for body in entries(cache).values())


def test_an_entry_of_the_other_kind_is_a_miss(reg, tmp_path):
    """A config's summary under a manifest's digest (and the other way round) is well formed but not what
    the crawl asks for there: read again, never used as the wrong thing."""
    cache = tmp_path / "cache"
    cold = reg.inventory([APP], cache=cache, progress=False)
    saved = entries(cache)
    set_entry(cache, IMAGE.digest, saved[IMAGE.config.digest])
    set_entry(cache, IMAGE.config.digest, saved[IMAGE.digest])
    warm = reg.inventory([APP], cache=cache, progress=False)
    frames_equal(warm, cold)
    assert warm.stats["requests"]["manifest"] == 1 and warm.stats["requests"]["blob"] == 1


# -- a cache of another regframe version -----------------------------------------------------------------


def test_a_cache_of_a_newer_regframe_is_refused_and_left_as_it_is(reg, tmp_path, capsys):
    """Two regframe versions sharing a CI cache: the older one refuses the newer one's cache, before any
    request, naming the file and both schema versions, and changes nothing in it."""
    cache = tmp_path / "cache"
    reg.inventory([APP], cache=cache, progress=False)
    newer = SCHEMA_VERSION + 1
    db = sqlite3.connect(database(cache))
    db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(newer),))
    db.commit()
    db.close()
    before = file_hash(cache)
    message = rf"{database(cache)}.*newer regframe.*schema {newer}.*schema {SCHEMA_VERSION}"
    with pytest.raises(ValueError, match=message):
        DigestCache(cache)
    requests = reg.stats["total_requests"]
    with pytest.raises(ValueError, match=message):
        reg.inventory([APP], cache=cache, progress=False)
    assert reg.stats["total_requests"] == requests
    with FaultProxy(None) as proxy:
        assert main(["audit", proxy.url, "--out", str(tmp_path / "out"), "--cache", str(cache)]) == 2
        assert proxy.stats.requests == 0
    assert "newer regframe" in capsys.readouterr().err
    assert file_hash(cache) == before
    assert len(entries(cache)) == 2


def test_a_cache_of_an_older_schema_is_emptied_and_relabelled(reg, tmp_path):
    cache = tmp_path / "cache"
    reg.inventory([APP], cache=cache, progress=False)
    db = sqlite3.connect(database(cache))
    db.execute("UPDATE meta SET value='1' WHERE key='schema'")
    db.commit()
    db.close()
    assert len(DigestCache(cache)) == 0
    with sqlite3.connect(database(cache)) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == str(SCHEMA_VERSION)
    assert entries(cache) == {}
