"""The ``regframe`` command against a seeded real registry."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

import regframe
from regframe import dashboard
from regframe.cli import main, parser
from regframe.testing import local_registry, make_fleet, seed
from regframe.units import format_bytes

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def fleet():
    return make_fleet(
        repositories=4,
        tags_per_repo=5,
        base_layers=2,
        multi_platform_ratio=0.2,
        seed=5,
        now=NOW,
        layer_size_range=(300, 3000),
        base_layer_size_range=(4000, 9000),
    )


@pytest.fixture(scope="module")
def url(fleet):
    with local_registry() as reg, regframe.connect(reg.url) as client:
        seed(client, fleet)
        yield reg.url


def test_audit_writes_report(url, fleet, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["audit", url, "--out", str(out), "--older-than", "365d", "--keep-last", "1"]) == 0
    files = {p.name for p in out.iterdir()}
    assert {
        "catalog.csv",
        "tags.csv",
        "manifests.csv",
        "layers.csv",
        "errors.csv",
        "storage_usage.csv",
        "shared_layers.csv",
        "stale_tags.csv",
        "cleanup_plan.csv",
        "summary.txt",
    } <= files
    distinct = {
        digest: size
        for rec in fleet.records()
        for digest, size in [(rec["config_digest"], rec["config_size"]), *rec["layers"]]
    }
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


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--older-than", "ninety"], "ninety"),
        (["--keep", "(unclosed"], "(unclosed"),
        (["--user", "alice"], "--password-stdin"),
    ],
)
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
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "regframe.cli",
                "tags",
                reg.url,
                "no/such",
                "--user",
                "alice",
                "--password-stdin",
                "--json",
            ],
            input=reg.users["alice"] + "\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done.stderr  # authenticated fine; the repository does not exist
        assert done.stdout == "" and "regframe: error: repository no/such not found" in done.stderr
        wrong = subprocess.run(
            [sys.executable, "-m", "regframe.cli", "tags", reg.url, "x/y", "--user", "alice", "--password-stdin"],
            input="wrong\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert wrong.returncode == 2
        assert "rejected" in wrong.stderr
        assert "wrong" not in wrong.stderr.replace("rejected", "")


CONNECTION = ["--ca-bundle", "ca.pem", "--insecure", "--user", "alice", "--password-stdin", "--insecure-auth"]


@pytest.mark.parametrize("command", [["audit", "--out", "report"], ["dashboard", "--port", "8123"]])
def test_audit_and_dashboard_take_the_same_connection_options(command):
    args = parser().parse_args([command[0], "https://registry.example", *command[1:], *CONNECTION])
    assert (args.url, args.ca_bundle, args.insecure, args.user, args.password_stdin, args.insecure_auth) == (
        "https://registry.example",
        "ca.pem",
        True,
        "alice",
        True,
        True,
    )


def test_dashboard_refuses_user_without_password_stdin_before_starting(capsys):
    assert main(["dashboard", "http://127.0.0.1:9", "--user", "alice"]) == 2
    assert "--user needs --password-stdin" in capsys.readouterr().err


def test_dashboard_child_gets_the_connection_in_its_environment_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ca.pem").write_text("not read here")
    secret = "s3cret-" + "x" * 20
    inherited = {"PATH": "/usr/bin", dashboard.ENV_PASSWORD: "inherited", dashboard.ENV_INSECURE: "1"}
    env = dashboard.child_environment(
        "https://registry.example",
        token="t0ken",
        user="alice",
        password=secret,
        ca_bundle="ca.pem",
        verify=False,
        allow_insecure_auth=True,
        base=inherited,
    )
    command = dashboard.child_command(8123)
    assert not [arg for arg in command if secret in arg or "t0ken" in arg or "alice" in arg]
    assert env[dashboard.ENV_USER] == "alice" and env[dashboard.ENV_PASSWORD] == secret
    assert env[dashboard.ENV_CA_BUNDLE] == str(tmp_path / "ca.pem"), "absolute: the kernel runs elsewhere"
    assert env[dashboard.ENV_INSECURE] == env[dashboard.ENV_INSECURE_AUTH] == "1"
    assert env["PATH"] == "/usr/bin" and env["JUPYTER_TOKEN"] == "t0ken"
    plain = dashboard.child_environment("https://registry.example", token="t", base=inherited)
    assert not {
        dashboard.ENV_USER,
        dashboard.ENV_PASSWORD,
        dashboard.ENV_CA_BUNDLE,
        dashboard.ENV_INSECURE,
        dashboard.ENV_INSECURE_AUTH,
    } & set(plain), "nothing inherited from the parent's settings"
    with pytest.raises(ValueError, match=r"'missing\.pem' is not a file"):
        dashboard.child_environment("https://registry.example", token="t", ca_bundle="missing.pem")
    with pytest.raises(ValueError, match="both user and password"):
        dashboard.child_environment("https://registry.example", token="t", user="alice")


def test_dashboard_command_connects_with_a_ca_bundle_and_a_password_from_stdin(tmp_path, process_command_lines):
    """``regframe dashboard`` end to end: a TLS registry with basic auth, its CA given by a relative path and
    the password on standard input; the served page shows the crawl, and no command line shows the password."""
    requests = pytest.importorskip("requests")
    small = make_fleet(
        repositories=2, tags_per_repo=2, seed=31, layer_size_range=(300, 900), base_layer_size_range=(1000, 2000)
    )
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    }
    with local_registry(auth="basic", tls=True) as reg:
        user, password = reg.credentials("alice")
        with regframe.connect(reg.url, user=user, password=password, ca_bundle=reg.ca_path) as client:
            seed(client, small)
        shutil.copy(reg.ca_path, tmp_path / "ca.pem")
        cli = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "regframe.cli",
                "dashboard",
                reg.url,
                "--ca-bundle",
                "ca.pem",
                "--user",
                user,
                "--password-stdin",
            ],
            cwd=tmp_path,
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            cli.stdin.write(password + "\n")
            cli.stdin.close()
            first = cli.stdout.readline()
            assert first.startswith("regframe dashboard: http://127.0.0.1:"), first + cli.stdout.read()
            page = requests.get(first.split(": ", 1)[1].strip(), timeout=120)
            lines = process_command_lines(cli.pid)
            assert any("voila" in line for line in lines)
            assert not [line for line in lines if password in line]
        finally:
            # SIGTERM stops it as Ctrl-C does, and also when this run is a background job (SIGINT ignored).
            cli.send_signal(signal.SIGTERM)
            try:
                cli.wait(30)
            except subprocess.TimeoutExpired:
                cli.kill()
                cli.wait()
    assert page.ok
    found = re.findall(r'<script type="application/vnd.voila.cell-output\+json">(.*?)</script>', page.text, re.DOTALL)
    html = [o["data"]["text/html"] for o in map(json.loads, found) if "text/html" in o.get("data", {})]
    card = next((text for text in html if "regframe Inventory" in text), None)
    assert card is not None, page.text[-3000:]
    assert f"<th style='text-align:left'>tags</th><td>{small.tag_count}</td>" in card
    assert password not in page.text
    assert cli.returncode == 0
