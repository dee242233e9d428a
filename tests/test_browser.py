"""The notebooks as people see them: headless Debian Chromium driven by Playwright.

One test runs the storage-audit notebook in JupyterLab and checks that its charts and widget render;
one opens the ``regframe dashboard`` page (Voilà), moves the age slider and checks that the stale
table and the reclaimable bytes follow; one checks what a visitor cannot do there (write outside the
dashboard's folder, hang its kernel with a pattern). Jupyter runs with its own HOME, config, data, runtime and
settings folders so nothing of the machine's setup (or a news pop-up) gets in the way. Screenshots
land in test-artifacts/browser/.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
import requests

import regframe
from regframe import dashboard
from regframe.testing import build_image, local_registry, make_fleet, push_image, seeded_registry
from regframe.testing import layer as synthetic_layer

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
expect = playwright_api.expect
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def fleet():
    return make_fleet(
        repositories=8,
        tags_per_repo=6,
        multi_platform_ratio=0.2,
        seed=31,
        age_range_days=(1, 900),
        layer_size_range=(300, 3000),
        base_layer_size_range=(4000, 9000),
    )


@pytest.fixture(scope="module")
def registry_url(fleet):
    with seeded_registry(fleet) as reg:
        yield reg.url


@pytest.fixture(scope="module")
def jupyter_env(tmp_path_factory):
    """Environment for Jupyter processes: fresh folders, JupyterLab's news and update checks off."""
    base = tmp_path_factory.mktemp("jupyter")
    names = {
        "HOME": "home",
        "JUPYTER_CONFIG_DIR": "config",
        "JUPYTER_RUNTIME_DIR": "runtime",
        "JUPYTER_DATA_DIR": "data",
        "JUPYTERLAB_SETTINGS_DIR": "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces",
        "IPYTHONDIR": "ipython",
        "TMPDIR": "tmp",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGFRAME_", "JUPYTER"))}
    for variable, folder in names.items():
        (base / folder).mkdir()
        env[variable] = str(base / folder)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env["MPLCONFIGDIR"] = matplotlib.get_cachedir()  # a fresh one costs a font-cache rebuild per kernel
    settings = base / "lab-settings"
    for plugin, values in {
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    }.items():
        target = settings / f"{plugin}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    return env


@pytest.fixture(scope="module")
def browser(jupyter_env):
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, env={**jupyter_env})
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 4200})
    yield context.new_page()
    context.close()


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- JupyterLab -------------------------------------------------------------------------------------------


def code_cells(path: Path) -> int:
    return sum(cell["cell_type"] == "code" for cell in json.loads(path.read_text())["cells"])


def start_lab(env: dict, root: Path, log: Path) -> tuple[subprocess.Popen, str, str]:
    token = secrets.token_hex(16)
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        "--port=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    info = Path(env["JUPYTER_RUNTIME_DIR"]) / f"jpserver-{process.pid}.json"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"JupyterLab exited early:\n{log.read_text()[-3000:]}")
        if info.is_file():
            try:
                base = f"http://127.0.0.1:{json.loads(info.read_text())['port']}"
                if requests.get(f"{base}/api/status", params={"token": token}, timeout=1).ok:
                    return process, base, token
            except (ValueError, KeyError, requests.RequestException):
                pass
        time.sleep(0.1)
    stop(process)
    raise AssertionError(f"JupyterLab did not start in 30 s:\n{log.read_text()[-3000:]}")


def test_jupyterlab_runs_the_storage_audit(jupyter_env, page, registry_url, tmp_path):
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(ROOT / "notebooks" / "02-storage-audit.ipynb", root)
    env = {**jupyter_env, "REGFRAME_URL": registry_url, "REGFRAME_OUT": str(tmp_path / "report")}
    process, base, token = start_lab(env, root, tmp_path / "lab.log")
    try:
        page.goto(f"{base}/lab/tree/02-storage-audit.ipynb?token={token}")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]"
            ".some(e => e.textContent.trim().endsWith('| Idle'))",
            timeout=30_000,
        )
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt")
        page.wait_for_function(
            "() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];"
            " return p.length > 0 && p.every(e => /\\[\\d+\\]/.test(e.textContent)); }",
            timeout=60_000,
        )
        screenshot(page, "jupyterlab-storage-audit.png")

        assert prompts.count() == code_cells(root / "02-storage-audit.ipynb")
        assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
        charts = page.locator(".jp-OutputArea-output[data-mime-type='image/png'] img")
        assert charts.count() == 2, "plot.storage and plot.sharing_heatmap"
        assert all(width > 300 for width in charts.evaluate_all("imgs => imgs.map(i => i.naturalWidth)"))

        board = page.locator(".regframe-storage")
        board.wait_for(state="visible")
        widget_images = board.locator(".widget-image")
        assert widget_images.count() == 3, "storage, sharing heatmap and supply-chain charts"
        assert all(width > 300 for width in widget_images.evaluate_all("imgs => imgs.map(i => i.naturalWidth)"))
        assert "8 rows" in board.locator(".regframe-storage-table").inner_text()
        outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
        assert not any("StorageDashboard(children" in text for text in outputs), "widget manager missing"
        board.screenshot(path=str(ARTIFACTS / "jupyterlab-storage-widget.png"))
        assert (tmp_path / "report" / "storage.csv").is_file()
    finally:
        stop(process)


# -- the Voilà dashboard ----------------------------------------------------------------------------------


def expected_at(records, days: int, keep: str, now: pd.Timestamp) -> tuple[int, int]:
    """Stale tag count and reclaimable bytes under age + keep rules (kept digests protect their siblings)."""
    digest, created = {}, defaultdict(list)
    for r in records:
        key = (r["repository"], r["tag"])
        digest[key] = r["digest"]
        if r["created"] is not None and r["created"].year >= 1990:
            created[key].append(pd.Timestamp(r["created"]))
    kept = {
        (k[0], digest[k])
        for k in digest
        if re.search(keep, k[1]) or not created[k] or now - max(created[k]) <= pd.Timedelta(days=days)
    }
    stale = {k for k in digest if (k[0], digest[k]) not in kept}
    users, sizes = defaultdict(set), {}
    for r in records:
        for layer, size in [(r["config_digest"], r["config_size"]), *r["layers"]]:
            users[layer].add((r["repository"], r["tag"]))
            sizes[layer] = size
    return len(stale), sum(sizes[d] for d, who in users.items() if who <= stale)


def test_dashboard_page_follows_the_age_slider(jupyter_env, page, registry_url, fleet, tmp_path, monkeypatch):
    for name, value in jupyter_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    with dashboard.start(registry_url, log_path=tmp_path / "voila.log") as board:
        assert board.url.startswith(f"http://127.0.0.1:{board.port}/?token=")
        page.goto(board.url)
        table = page.locator(".regframe-stale-table")
        table.locator("table").wait_for(timeout=30_000)
        now = pd.Timestamp.now(tz="UTC")
        summary, reclaimable = page.locator(".regframe-stale-summary"), page.locator(".regframe-reclaimable")
        count, freed = expected_at(fleet.records(), 90, r"^latest$", now)
        assert count > 0 and freed > 0
        assert f"{count} of {fleet.tag_count} tags stale (older than 90 days)" in summary.inner_text()
        assert f"({freed:,} bytes; Space returns only after garbage collection" in reclaimable.inner_text()
        assert f"{count} rows" in table.inner_text()
        assert page.locator(".regframe-storage .widget-image").count() == 3
        screenshot(page, "dashboard-before.png")

        handle = page.locator(".regframe-older-than .noUi-handle")
        handle.focus()
        page.keyboard.press("End")
        page.wait_for_function(
            "() => !document.querySelector('.regframe-stale-summary').textContent.includes('older than 90 days')",
            timeout=10_000,
        )
        slider_max = int(page.locator(".regframe-older-than .widget-readout").inner_text())
        oldest = max(
            (now - pd.Timestamp(r["created"])).days
            for r in fleet.records()
            if r["created"] is not None and r["created"].year >= 1990
        )
        assert oldest <= slider_max <= oldest + 1, "the slider ends at the oldest image's age"
        expect(summary).to_contain_text(f"0 of {fleet.tag_count} tags stale (older than {slider_max} days)")
        expect(reclaimable).to_contain_text("(0 bytes;")
        expect(table).to_contain_text("0 rows")
        screenshot(page, "dashboard-after.png")
    assert board.process.returncode is not None


def process_tree(pid: int) -> list[tuple[int, str]]:
    """``pid``'s descendants (Voilà's kernels) as (pid, start time), read from /proc."""
    parents: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(fields[1])].append((int(stat.parent.name), fields[19]))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += [child for child, _ in children]
    return found


def kill_if_same(pid: int, started: str) -> None:
    """SIGKILL ``pid`` only if it is still the process seen earlier (same start time), never a reused pid."""
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19] == started:
            os.kill(pid, signal.SIGKILL)
    except (OSError, IndexError):
        pass


def test_dashboard_visitor_cannot_write_outside_or_hang_the_kernel(jupyter_env, page, tmp_path, monkeypatch):
    """Typing a path into the page's text fields and pressing "Export CSV" writes one regframe-named file
    into the folder the dashboard was started in; a catastrophic pattern ends in a message and the page
    still answers. Kernels left behind by a hang are killed by pid after the server stops."""
    for name, value in jupyter_env.items():
        monkeypatch.setenv(name, value)
    folder = tmp_path / "board" / "started-here"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    old = datetime.now(UTC) - timedelta(days=400)
    tags = ["latest", "1.0", "2.0", "a" * 60 + "-x"]
    with local_registry() as reg:
        with regframe.connect(reg.url) as client:
            for number, tag in enumerate(tags):
                image = build_image([synthetic_layer(f"visitor-{number}", 500)], created=old)
                push_image(client, "visitor/app", tag, image)
        board = dashboard.start(reg.url, log_path=tmp_path / "voila.log")
        kernels: list[tuple[int, str]] = []
        try:
            page.goto(board.url)
            stale = page.locator(".regframe-stale-tags")
            stale.locator(".regframe-stale-table table").wait_for(timeout=30_000)
            kernels = process_tree(board.process.pid)
            summary, message = page.locator(".regframe-stale-summary"), page.locator(".regframe-stale-message")
            expect(summary).to_contain_text("3 of 4 tags stale")
            fields = stale.locator("input[type='text']")
            assert fields.count() == 2, "the two pattern fields, no file field"
            assert stale.get_by_text("CSV file").count() == 0

            before = {p for p in tmp_path.rglob("*") if p.name != "voila.log"}
            keep = fields.nth(0)
            keep.fill("../../x.csv")
            keep.press("Enter")
            expect(summary).to_contain_text("4 of 4 tags stale", timeout=10_000)
            stale.locator(".regframe-export").click()
            expect(message).to_contain_text("wrote 4 rows to", timeout=10_000)
            new = {p for p in tmp_path.rglob("*") if p.name != "voila.log"} - before
            assert len(new) == 1, sorted(map(str, new))
            [written] = new
            assert written.parent == folder and re.fullmatch(r"stale-tags-\d{8}-\d{6}(-\d+)?\.csv", written.name)
            assert str(written) in message.inner_text()
            assert len(pd.read_csv(written)) == 4
            screenshot(page, "dashboard-export.png")

            match = fields.nth(1)
            match.fill("(a|aa)+$")
            match.press("Enter")
            expect(message).to_contain_text("match pattern '(a|aa)+$'", timeout=60_000)
            screenshot(page, "dashboard-catastrophic-pattern.png")
            match.fill("")
            match.press("Enter")
            expect(message).to_have_text("", timeout=10_000)
            keep.fill("^latest$")
            keep.press("Enter")
            expect(summary).to_contain_text("3 of 4 tags stale", timeout=10_000)
        finally:
            board.stop()
            for pid, started in kernels:
                kill_if_same(pid, started)
