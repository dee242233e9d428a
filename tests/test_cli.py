"""The ``regframe`` command against a seeded real registry."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

import regframe
from regframe import dashboard
from regframe.cli import main, parser
from regframe.processes import free_port
from regframe.testing import local_registry, make_fleet, seed
from regframe.testing.faultproxy import Action, FaultProxy, Rule
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


def test_audit_cut_short_by_its_budget_says_so_in_the_summary(url, fleet, tmp_path, capsys):
    """A CI log shows the text summary: a crawl stopped by ``--budget`` must say there that it is incomplete,
    why, and how much of what the tag lists named it read, as summary.json's ``complete: false`` does."""
    out = tmp_path / "report"
    assert main(["audit", url, "--out", str(out), "--no-progress", "--budget", "3"]) == 1
    text = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False
    read = len(pd.read_csv(out / "tags.csv"))
    assert read < fleet.tag_count
    assert f"INCOMPLETE CRAWL: {read:,} of {fleet.tag_count:,} listed tags read" in text
    assert "budget" in text.split("INCOMPLETE CRAWL:", 1)[1].split("\n\n", 1)[0]
    assert (out / "summary.txt").read_text().count("INCOMPLETE CRAWL") == 1
    reports = [text, (out / "summary.txt").read_text(), (out / "errors.csv").read_text()]
    reports.append((out / "report.md").read_text())
    for report in (" ".join(report.split()) for report in reports):
        assert (
            "manifest GETs of --budget 3); the frames hold what was read; crawl again with the same --cache later"
            in report
        )
        assert "cache=" not in report and "budget=" not in report


def test_tls_errors_give_the_commands_options_not_python_arguments(tls, tmp_path, capsys):
    """The library's TLS advice names ``ca_bundle=`` and ``verify=False``; the command line says
    ``--ca-bundle FILE`` and ``--insecure``, the options it has."""
    assert main(["tags", tls.url, "team/app"]) == 2
    err = capsys.readouterr().err
    assert "TLS certificate cannot be validated" in err
    assert "pass --ca-bundle FILE with the CA that signed it (--insecure turns checking off" in err
    assert "ca_bundle" not in err and "verify=" not in err
    missing = tmp_path / "missing.pem"
    assert main(["tags", tls.url, "team/app", "--ca-bundle", str(missing)]) == 2
    assert capsys.readouterr().err == f"regframe: error: --ca-bundle '{missing}' is not a file\n"


def test_insecure_is_one_warning_line_in_the_commands_terms(fleet, tmp_path):
    """``--insecure`` printed Python's warning format (file, line, source line) once per connection: a
    crawl's stderr filled with it. It is one ``regframe: warning:`` line naming the option, not verify=False."""
    with local_registry(tls=True) as reg:
        with regframe.connect(reg.url, ca_bundle=reg.ca_path) as client:
            seed(client, fleet)
        done = subprocess.run(
            [sys.executable, "-m", "regframe", "audit", reg.url, "--insecure", "--no-progress"]
            + ["--out", str(tmp_path / "out"), "--workers", "8"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"regframe: warning: TLS certificates are not checked (--insecure) for {reg.host} or the servers it sends "
        "regframe to: anyone on the network path can read and change the traffic"
    ]


class CtrlC(Action):
    """Ctrl-C in the middle of the crawl: the first manifest request sends this process SIGINT, as a
    terminal does; every one is answered a second late, after the crawl has stopped."""

    def __init__(self):
        self.sent = threading.Lock()

    def apply(self, ex) -> None:
        if self.sent.acquire(blocking=False):
            os.kill(os.getpid(), signal.SIGINT)
        if ex.wait(1.0):
            super().apply(ex)


def test_ctrl_c_during_the_audit_exits_130_and_stores_no_snapshot(url, fleet, tmp_path, capsys):
    """The README's exit status for Ctrl-C is 130. What was read is still written, marked incomplete, but
    it is no snapshot for the next audit to compare with and no gate decides on it."""
    out, kept = tmp_path / "report", tmp_path / "history"
    with FaultProxy(url) as proxy:
        proxy.add_rule(Rule(path=r"/manifests/", action=CtrlC()))
        argv = ["audit", proxy.url, "--out", str(out), "--history", str(kept), "--no-progress", "--fail-on", "tags>=0"]
        assert main(argv) == 130
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1] == "regframe: interrupted"
    assert "--fail-on" not in captured.err
    assert "INCOMPLETE CRAWL" in captured.out
    assert json.loads((out / "summary.json").read_text())["complete"] is False
    assert list(kept.iterdir()) == []


def test_ctrl_c_during_the_cleanup_crawl_exits_130_and_plans_nothing(url, tmp_path, capsys):
    """A plan made from part of the registry is not shown, written or applied."""
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rules]]\nname = "all"\nkeep_newer_than = "1d"\n')
    out = tmp_path / "cleanup"
    with FaultProxy(url) as proxy:
        proxy.add_rule(Rule(path=r"/manifests/", action=CtrlC()))
        argv = ["cleanup", proxy.url, "--policy", str(policy), "--out", str(out), "--apply", "--yes"]
        assert main(argv) == 130
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("regframe: interrupted")
    assert list(out.iterdir()) == []


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


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: state, ppid, pgrp, session, ... ([] when gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _processes_where(field: int, value: int) -> list[int]:
    return [
        int(stat.parent.name)
        for stat in Path("/proc").glob("[0-9]*/stat")
        if (fields := _stat_fields(int(stat.parent.name))) and fields[field] == str(value)
    ]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds processes through /proc")
def test_dashboard_stopped_while_starting_leaves_no_voila_and_no_log(tmp_path):
    """SIGTERM while Voilà is still starting used to leave it running in its own session (parent 1, the
    password in its environment) and its log in TMPDIR: the handler now covers startup too."""
    import time

    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(temp),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    }
    voila = None
    with local_registry() as reg:
        cli = subprocess.Popen(
            [sys.executable, "-m", "regframe.cli", "dashboard", reg.url],
            cwd=tmp_path,
            env=env,
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while voila is None and cli.poll() is None and time.monotonic() < deadline:
                for pid in _processes_where(1, cli.pid):
                    try:
                        if b"voila" in Path(f"/proc/{pid}/cmdline").read_bytes():
                            voila = pid
                    except OSError:
                        pass
                time.sleep(0.005)
            assert voila is not None, "Voilà never started"
            cli.send_signal(signal.SIGTERM)
            out, err = cli.communicate(timeout=60)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
            for pid in _processes_where(3, voila) if voila else []:
                os.kill(pid, signal.SIGKILL)  # only what this test's dashboard left behind
    assert "regframe dashboard: http" not in out, "the signal came before Voilà served"
    assert cli.returncode == 0, err
    assert _processes_where(3, voila) == [], "no process of Voilà's session (it or a kernel) is left"
    assert list(temp.glob("regframe-dashboard-*")) == []


def _no_dashboard_served(monkeypatch):
    monkeypatch.setattr(dashboard, "serve", lambda *args, **options: pytest.fail("the dashboard was served"))


def test_dashboard_refuses_a_port_in_use_before_connecting_or_starting(capsys, monkeypatch):
    """A second dashboard on a busy port used to print its address, then fail seconds later; meanwhile a
    browser would have sent its token to the other server."""
    _no_dashboard_served(monkeypatch)
    monkeypatch.setattr(subprocess, "Popen", lambda *args, **kwargs: pytest.fail("Voilà was started"))
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["dashboard", "http://127.0.0.1:9", "--port", str(port)]) == 2
        assert f"regframe: error: port {port} is in use" in capsys.readouterr().err
        with pytest.raises(ValueError, match=f"port {port} is in use"):
            dashboard.start("http://127.0.0.1:9", port=port)
        busy.setblocking(False)
        with pytest.raises(BlockingIOError):
            busy.accept()  # nothing connected to the other server


@pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="tells whose socket it is through /proc")
def test_dashboard_waits_for_its_own_child_not_another_server(tmp_path, monkeypatch):
    """A server of another process on the port (taken after it was found free) is not Voilà being ready:
    the wait goes on until Voilà listens, and ends with Voilà's log when it exits instead."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        monkeypatch.setattr(dashboard, "free_port", lambda host: port)
        failing = "import sys, time; time.sleep(1); print('The port is already in use'); sys.exit(1)"
        monkeypatch.setattr(dashboard, "child_command", lambda chosen: [sys.executable, "-c", failing])
        with pytest.raises(RuntimeError, match="exited with status 1") as raised:
            dashboard.start("http://127.0.0.1:9", timeout=30)
        assert "The port is already in use" in str(raised.value)
        busy.setblocking(False)
        with pytest.raises(BlockingIOError):
            busy.accept()  # the token's address was never even tried on the other server
    assert list(tmp_path.glob("regframe-dashboard-*")) == []

    serving = "import socket, sys, time; s = socket.create_server(('127.0.0.1', int(sys.argv[1]))); time.sleep(60)"
    monkeypatch.setattr(dashboard, "child_command", lambda chosen: [sys.executable, "-c", serving, str(chosen)])
    monkeypatch.setattr(dashboard, "free_port", free_port)
    with dashboard.start("http://127.0.0.1:9", timeout=30) as started:
        assert started.running()
    assert not started.running()


def test_dashboard_refuses_a_registry_it_cannot_use_before_starting(capsys, monkeypatch):
    """A wrong password or no registry at all used to start the dashboard anyway, whose page showed only
    "There was an error when executing cell [1]"; now it is refused as by ``regframe audit``."""
    _no_dashboard_served(monkeypatch)
    wrong = "wrong-" + "p" * 20
    with local_registry(auth="basic") as reg:
        user, _ = reg.credentials("alice")
        monkeypatch.setattr(sys, "stdin", io.StringIO(wrong + "\n"))
        assert main(["dashboard", reg.url, "--user", user, "--password-stdin"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("regframe: error:") and "rejected" in err
    assert wrong not in err
    assert main(["dashboard", f"http://127.0.0.1:{free_port()}"]) == 2
    assert "no registry answers there" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--port", "70000"], "port must be between 1 and 65535 (or 0 for a free one), not 70000"),
        (["--port", "-1"], "port must be between 1 and 65535 (or 0 for a free one), not -1"),
        (["--ca-bundle", "/nonexistent.pem"], "--ca-bundle '/nonexistent.pem' is not a file"),
    ],
)
def test_dashboard_bad_input_is_exit_status_2_as_for_audit(capsys, monkeypatch, tmp_path, option, message):
    _no_dashboard_served(monkeypatch)
    assert main(["dashboard", "http://127.0.0.1:9", *option]) == 2
    assert f"regframe: error: {message}" in capsys.readouterr().err
    if option[0] == "--ca-bundle":
        assert main(["audit", "http://127.0.0.1:9", "--out", str(tmp_path / "out"), *option]) == 2
