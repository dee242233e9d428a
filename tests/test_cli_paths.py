"""The command line's paths, exit statuses and wording: output folders checked before any request, "not found"
told apart from bad input, ``--policy`` refusing the stale-tag options, ``regframe cleanup`` without a
catalog, its CSV files meaning what the audit's mean, and its result counting what its plan counted."""

from __future__ import annotations

import argparse
import io
import json
import re
import resource
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

import regframe
from regframe.cli import main, parser
from regframe.client import mediatypes as MT
from regframe.processes import free_port
from regframe.testing import build_image, build_index, layer, local_registry, push_image
from regframe.testing.faultproxy import FaultProxy, Rule, Status
from regframe.testing.layers import Blob
from regframe.testing.oci_artifacts import (
    PREDICATE_SIGN,
    artifact,
    cosign_signature,
    push_artifact,
    referrers_index,
    sigstore_bundle,
)

OLD = datetime(2020, 3, 4, tzinfo=UTC)
RECENT = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)
POLICY = '[[rules]]\nname = "month"\nkeep_newer_than = "30d"\n'


def write_policy(folder: Path) -> Path:
    path = folder / "policy.toml"
    path.write_text(POLICY)
    return path


@pytest.fixture(scope="module")
def url():
    """team/app: an old and a recent single-platform image and a two-platform index; team/web: an old image;
    team/empty: its only tag deleted, so the repository exists with no tags."""
    with local_registry() as reg, regframe.connect(reg.url) as client:
        old = build_image([layer("paths-old", 400)], created=OLD)
        recent = build_image([layer("paths-new", 500)], created=RECENT)
        arm = build_image([layer("paths-arm", 450)], created=RECENT, architecture="arm64")
        push_image(client, "team/app", "v1", old)
        push_image(client, "team/app", "v2", recent)
        push_image(client, "team/app", "multi", build_index([recent, arm]))
        push_image(client, "team/web", "v1", build_image([layer("paths-web", 300)], created=OLD))
        push_image(client, "team/empty", "gone", old)
        client.rmtag("team/empty", "gone")
        yield reg.url


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- output paths ---------------------------------------------------------------------------------------


def test_output_paths_that_cannot_be_written_stop_every_command_before_any_request(tmp_path, capsys):
    """A file where the output folder should be, or a folder that cannot be created, used to raise
    FileExistsError or FileNotFoundError as a traceback, for the audit only after the whole crawl. The proxy
    has no upstream: a request would reach it and be counted."""
    taken = tmp_path / "somefile"
    taken.write_text("not a folder")
    policy = str(write_policy(tmp_path))
    uncreatable = "/proc/regframe-no-such-place/out"
    with FaultProxy(None) as proxy:
        cases = [
            (["audit", proxy.url, "--out", str(taken)], f"--out {taken}: it exists and is not a folder"),
            (["audit", proxy.url, "--out", uncreatable], f"--out {uncreatable}: cannot write files there"),
            (
                ["audit", proxy.url, "--out", str(tmp_path / "r"), "--history", str(taken)],
                f"--history {taken} is not a folder",
            ),
            (["cleanup", proxy.url, "--policy", policy, "--out", str(taken)], f"--out {taken}: it exists"),
            (["cleanup", proxy.url, "--policy", policy, "--out", uncreatable], f"--out {uncreatable}: cannot"),
            (
                ["audit", proxy.url, "--out", str(tmp_path / "r"), "--cache", str(tmp_path / "none" / "cache.db")],
                "cannot be opened as a SQLite digest cache",
            ),
        ]
        for argv, message in cases:
            code, _, err = run(capsys, *argv)
            assert (code, err.startswith("regframe: error: ")) == (2, True), (argv, err)
            assert message in err, (argv, err)
            assert "Traceback" not in err
        assert proxy.stats.requests == 0
    assert taken.read_text() == "not a folder"


def limit_file_size() -> None:
    """In the child: a write beyond 2,000 bytes fails with EFBIG, as one on a full disk fails with ENOSPC."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))


def test_a_write_that_fails_after_the_crawl_is_an_error_not_a_traceback(url, tmp_path):
    """A full disk cannot be foreseen before connecting: the file (or folder) that could not be written and
    why, exit status 1."""
    out = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, "-m", "regframe", "audit", url, "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_file_size,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert re.fullmatch(rf"regframe: error: cannot write {re.escape(str(out))}(/[\w.]+)?: File too large", line), line


def test_diff_refuses_an_out_that_is_a_file_before_printing_anything(url, tmp_path, capsys):
    for name in ("h1", "h2"):
        assert main(["audit", url, "--out", str(tmp_path / name), "--no-progress"]) == 0
    capsys.readouterr()
    taken = tmp_path / "somefile"
    taken.write_text("")
    code, out, err = run(capsys, "diff", str(tmp_path / "h1"), str(tmp_path / "h2"), "--out", str(taken))
    assert (code, out) == (2, "")
    assert f"regframe: error: --out {taken}: it exists and is not a folder" in err
    code, out, err = run(capsys, "diff", str(tmp_path / "h1"), str(tmp_path / "h2"), "--out", str(tmp_path / "d"))
    assert code == 0, err
    assert (tmp_path / "d" / "diff_tags.csv").is_file()


# -- not found ------------------------------------------------------------------------------------------


def test_not_found_exits_1_with_a_message_and_bad_input_exits_2(url, capsys):
    code, out, err = run(capsys, "tags", url, "nope/missing")
    assert (code, out) == (1, "")
    assert err.startswith("regframe: error: repository nope/missing not found")
    code, out, err = run(capsys, "manifest", url, "nope/missing")
    assert (code, out, err) == (1, "", "regframe: error: nope/missing:latest not found\n")
    code, out, err = run(capsys, "digest", url, "nope/missing", "latest")
    assert (code, out, err) == (1, "", "regframe: error: nope/missing:latest not found\n")
    code, out, err = run(capsys, "digest", url, "team/app", "multi", "--platform", "linux/s390x")
    assert (code, out) == (1, "")
    assert err.startswith("regframe: error: team/app:multi has no linux/s390x image")
    code, _, err = run(capsys, "digest", url, "team/app", "multi", "--platform", "linux/arm64")
    assert code == 0
    code, out, err = run(capsys, "digest", url, "team/app", "multi", "--platform", "not a platform")
    assert (code, out) == (2, "") and err.startswith("regframe: error: ")


def test_tags_of_a_repository_with_no_tags_prints_nothing_and_exits_0(url, capsys):
    """The registry still knows team/empty (its tag list answers 200 with no tags); before, it exited 1 with
    no output exactly like a repository that does not exist."""
    assert run(capsys, "tags", url, "team/empty") == (0, "", "regframe: team/empty: no tags\n")
    code, out, err = run(capsys, "tags", url, "team/empty", "--json")
    assert (code, json.loads(out), err) == (0, {"name": "team/empty", "tags": []}, "regframe: team/empty: no tags\n")
    code, out, err = run(capsys, "tags", url, "team/app")
    assert (code, sorted(out.split()), err) == (0, ["multi", "v1", "v2"], "")


# -- --policy and --older-than ----------------------------------------------------------------------------


def test_policy_refuses_an_explicit_older_than_in_audit_and_diff(tmp_path, capsys):
    policy = str(write_policy(tmp_path))
    for argv in (
        ["audit", "http://127.0.0.1:9", "--out", str(tmp_path / "r")],
        ["diff", str(tmp_path / "a"), str(tmp_path / "b")],
    ):
        code, _, err = run(capsys, *argv, "--policy", policy, "--older-than", "90d")
        assert code == 2
        assert "regframe: error: --policy replaces --older-than; give one or the other" in err
    assert not (tmp_path / "r").exists()


def test_older_than_still_defaults_to_90_days_without_a_policy(url, tmp_path, capsys):
    assert main(["audit", url, "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    assert "Stale tags (older than 90d)" in (tmp_path / "r" / "summary.txt").read_text()
    stale = pd.read_csv(tmp_path / "r" / "stale_tags.csv")
    assert set(stale.loc[stale["stale"], "tag"]) == {"v1"}


# -- cleanup: repositories, files, counts ---------------------------------------------------------------


def test_cleanup_names_its_repositories_where_the_catalog_is_refused(url, tmp_path, capsys):
    """Docker Hub and GHCR refuse the catalog (here: 401 from the proxy): ``regframe cleanup`` takes
    --repositories and --repositories-from as ``regframe audit`` does, and without them says so in its own
    options, not the audit's or the Python API's."""
    policy = str(write_policy(tmp_path))
    listing = tmp_path / "repos.txt"
    listing.write_text("# to clean\nteam/web\n")
    with FaultProxy(url) as proxy:
        proxy.add_rule(Rule(path=r"^/v2/_catalog", action=Status(401)))
        code, out, err = run(capsys, "cleanup", proxy.url, "--policy", policy, "--repositories", "team/app")
        assert code == 0, err
        assert "team/app: delete 1 of 3 tags" in out and "team/web" not in out
        code, out, err = run(capsys, "cleanup", proxy.url, "--policy", policy, "--repositories-from", str(listing))
        assert code == 0, err
        assert "team/web: delete 1 of 1 tags" in out and "team/app" not in out
        code, out, err = run(capsys, "cleanup", proxy.url, "--policy", policy)
        assert code == 2
        assert "--repositories NAME... or --repositories-from FILE" in err
        assert "regframe audit" not in err and "inventory(" not in err
        code, _, err = run(capsys, "cleanup", proxy.url, "--policy", policy, "--repositories", "Bad//Name")
        assert code == 2 and "Bad//Name" in err


def test_cleanup_exits_2_like_every_command_when_the_registry_cannot_be_used(tmp_path, capsys, monkeypatch):
    """No answer or a rejected password is exit 2 for every command (README's table), so a CI job tells broken
    credentials from a cleanup that failed half-way (1); cleanup said 1 for both."""
    policy = str(write_policy(tmp_path))
    code, _, err = run(capsys, "cleanup", f"http://127.0.0.1:{free_port()}", "--policy", policy)
    assert code == 2 and "no registry answers there" in err
    with local_registry(auth="basic") as reg:
        monkeypatch.setattr(sys, "stdin", io.StringIO("not-alices-password\n"))
        code, _, err = run(capsys, "cleanup", reg.url, "--policy", policy, "--user", "alice", "--password-stdin")
    assert code == 2 and "rejected the username/password" in err


def test_repositories_not_in_the_catalog_are_named_in_command_line_terms(url, tmp_path, capsys):
    """A named repository no catalog lists is crawled all the same (catalogs filtered by permissions leave
    out readable ones); its 404 is a read error (exit 1) saying names are exact. On the command line --match
    chooses the tags that may be stale, so the advice to select repositories with match= is wrong there."""
    listing = tmp_path / "repos.txt"
    listing.write_text("team/app\nnope/missing\n")
    for command in (
        ["audit", url, "--out", str(tmp_path / "r")],
        ["cleanup", url, "--policy", str(write_policy(tmp_path))],
    ):
        code, out, err = run(capsys, *command, "--repositories-from", str(listing))
        assert code == 1
        said = out + err
        if command[0] == "audit":
            errors = pd.read_csv(tmp_path / "r" / "errors.csv")
            assert list(errors["repository"]) == ["nope/missing"]
            said += " ".join(errors["error"])
        assert "repository nope/missing not found" in said and "the registry's catalog does not list it" in said
        assert "exact repository names" in said and "match=" not in said and "repositories=" not in said


def test_user_help_names_password_stdin():
    commands = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, command in commands.items():
        if name != "diff":
            user = next(a for a in command._actions if a.dest == "user")
            assert "--password-stdin" in user.help, name


def test_cleanup_writes_the_audits_plan_and_every_tag_apart(url, tmp_path, capsys):
    """cleanup_plan.csv used to hold every tag, kept ones too, when the audit's holds only the tags to delete:
    a script deleting each row of it would have deleted kept tags. Both commands now write the same two files."""
    policy = str(write_policy(tmp_path))
    assert main(["cleanup", url, "--policy", policy, "--out", str(tmp_path / "c")]) == 0
    assert main(["audit", url, "--policy", policy, "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    read = {
        (folder, name): pd.read_csv(tmp_path / folder / name, dtype=str, keep_default_na=False)
        for folder in ("a", "c")
        for name in ("cleanup_plan.csv", "stale_tags.csv")
    }
    plan = read["c", "cleanup_plan.csv"]
    pd.testing.assert_frame_equal(plan, read["a", "cleanup_plan.csv"])
    assert sorted(zip(plan["repository"], plan["tag"])) == [("team/app", "v1"), ("team/web", "v1")]
    every = read["c", "stale_tags.csv"]
    assert list(every.columns) == list(read["a", "stale_tags.csv"].columns)
    assert {"stale", "reason", "rule", "age_days"} <= set(every.columns)
    assert len(every) == 4 and set(every.loc[every["stale"] == "False", "tag"]) == {"v2", "multi"}


def test_apply_counts_tags_and_untagged_referrers_apart(tmp_path, capsys):
    """A signed image whose Sigstore bundle and SBOM are untagged referrers (listed in its fallback tag): the
    plan and the confirmation count tags, so the result does too, with the referrers deleted by digest
    (--delete-manifests) counted on their own."""
    image = build_image([layer("count-app", 700)], created=OLD)
    sig_tag, sig = cosign_signature(image)
    bundle = sigstore_bundle(image, PREDICATE_SIGN, created=OLD.strftime("%Y-%m-%dT%H:%M:%SZ"))
    document = json.dumps({"spdxVersion": "SPDX-2.3", "name": image.digest}).encode()
    sbom = artifact(kind="sbom", artifact_type=MT.SPDX_JSON, layers=[Blob.of(document, MT.SPDX_JSON)], subject=image)
    with local_registry() as reg, regframe.connect(reg.url) as client:
        push_image(client, "team/signed", "v1", image)
        push_image(client, "team/signed", "v2", build_image([layer("count-new", 600)], created=RECENT))
        push_artifact(client, "team/signed", sig_tag, sig)
        push_artifact(client, "team/signed", image.digest.replace(":", "-", 1), referrers_index([bundle, sbom]))
        out = tmp_path / "out"
        argv = ["cleanup", reg.url, "--policy", str(write_policy(tmp_path)), "--out", str(out), "--apply", "--yes"]
        code, printed, err = run(capsys, *argv, "--delete-manifests")
    assert code == 0, err
    planned = pd.read_csv(out / "cleanup_plan.csv")
    result = pd.read_csv(out / "cleanup_result.csv", dtype=str, keep_default_na=False)
    untagged = result[result["tag"] == ""]
    assert len(planned) == 3 and len(untagged) == 2 and set(untagged["method"]) == {"manifest"}
    assert "Total: delete 3 of 4 tags" in printed
    assert "Deleted 3 tags and 2 untagged referrers; skipped 0; errors 0." in printed
