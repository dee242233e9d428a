"""The ``regframe`` command against a seeded real registry."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import datetime, timezone

import pandas as pd
import pytest

import regframe
from regframe.cli import main
from regframe.testing import local_registry
from regframe.testing import make_fleet, seed
from regframe.units import format_bytes

NOW = datetime.now(timezone.utc)


@pytest.fixture(scope="module")
def fleet():
    return make_fleet(repositories=4, tags_per_repo=5, base_layers=2, multi_platform_ratio=0.2, seed=5, now=NOW,
                      layer_size_range=(300, 3000), base_layer_size_range=(4000, 9000))


@pytest.fixture(scope="module")
def url(fleet):
    with local_registry() as reg, regframe.connect(reg.url) as client:
        seed(client, fleet)
        yield reg.url


def test_audit_writes_report(url, fleet, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["audit", url, "--out", str(out), "--older-than", "365d", "--keep-last", "1"]) == 0
    files = {p.name for p in out.iterdir()}
    assert {"catalog.csv", "tags.csv", "manifests.csv", "layers.csv", "errors.csv", "storage_usage.csv",
            "shared_layers.csv", "stale_tags.csv", "cleanup_plan.csv", "summary.txt"} <= files
    distinct = {digest: size for rec in fleet.records() for digest, size in rec["layers"]}
    summary = (out / "summary.txt").read_text()
    assert format_bytes(sum(distinct.values())) in summary
    assert summary.strip() in capsys.readouterr().out
    usage = pd.read_csv(out / "storage_usage.csv")
    assert set(usage["repository"]) == set(fleet.repositories)
    tags = pd.read_csv(out / "tags.csv")
    assert len(tags) == fleet.tag_count
    stale = pd.read_csv(out / "stale_tags.csv")
    plan = pd.read_csv(out / "cleanup_plan.csv")
    assert len(plan) == int(stale["stale"].sum())


@pytest.mark.parametrize("argv, message", [
    (["--older-than", "ninety"], "ninety"),
    (["--keep", "(unclosed"], "(unclosed"),
    (["--user", "alice"], "--password-stdin"),
])
def test_audit_rejects_bad_rules_before_connecting(tmp_path, capsys, argv, message):
    # Port 9 has no registry: any request would fail with a different message.
    code = main(["audit", "http://127.0.0.1:9", "--out", str(tmp_path / "r"), *argv])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "no registry answers" not in err
    assert not (tmp_path / "r").exists()


def test_tags_manifest_digest_json(url, fleet, capsys):
    repo = fleet.repositories[0]
    tag, item = next(iter(fleet.tags[repo].items()))
    assert main(["tags", url, repo, "--json", "--hashes"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(listed["tags"]) == sorted(fleet.tags[repo])
    assert listed["hashes"][tag] == "sha256:" + hashlib.sha256(item.manifest_raw).hexdigest()
    assert main(["manifest", url, repo, tag, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["manifest"] == json.loads(item.manifest_raw)
    assert main(["digest", url, repo, tag]) == 0
    assert capsys.readouterr().out.strip() == item.digest


def test_password_read_from_stdin(tmp_path):
    with local_registry(auth="basic") as reg:
        done = subprocess.run([sys.executable, "-m", "regframe.cli", "tags", reg.url, "no/such", "--user", "alice",
                               "--password-stdin", "--json"], input=reg.users["alice"] + "\n",
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stderr  # authenticated fine; the repository does not exist
        assert json.loads(done.stdout) == {}
        wrong = subprocess.run([sys.executable, "-m", "regframe.cli", "tags", reg.url, "x/y", "--user", "alice",
                                "--password-stdin"], input="wrong\n", capture_output=True, text=True, timeout=60)
        assert wrong.returncode == 2
        assert "rejected" in wrong.stderr
        assert "wrong" not in wrong.stderr.replace("rejected", "")
