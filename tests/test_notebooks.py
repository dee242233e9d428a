"""Every notebook runs top to bottom in a real kernel, and is stored without outputs.

01 runs against a registry this module seeds (``REGFRAME_URL``), 02 and 03 start and seed their
own, as they do for a reader without a registry; the packaged dashboard notebook runs with the
environment ``regframe dashboard`` gives it, and once served by Voilà, with the password and the
page token kept off every command line.
"""

from __future__ import annotations

import ast
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import matplotlib
import nbformat
import pytest
import requests
from nbclient import NotebookClient

import regframe
from regframe import dashboard
from regframe.demo import NOTEBOOK_FLEET, SUPPLY_CHAIN_FLEET
from regframe.testing import build_image, layer, local_registry, make_fleet, push_image, seed, seeded_registry
from regframe.testing.oci_artifacts import helm_chart, push_artifact

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "notebooks").glob("*.ipynb"))
ALL_NOTEBOOKS = [*EXAMPLES, dashboard.notebook_path()]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def fleet():
    return make_fleet(
        repositories=5,
        tags_per_repo=5,
        multi_platform_ratio=0.2,
        seed=21,
        layer_size_range=(300, 3000),
        base_layer_size_range=(4000, 9000),
    )


@pytest.fixture(scope="module")
def registry_url(fleet):
    with seeded_registry(fleet) as reg:
        yield reg.url


@pytest.fixture(scope="module")
def ipython_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ipython")


@pytest.fixture
def kernel_env(monkeypatch, ipython_dir):
    """The venv's python first on PATH (the kernelspec says ``python``); no registry settings inherited.

    Matplotlib keeps its usual folder: a fresh one costs every kernel a font-cache rebuild."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("MPLCONFIGDIR", matplotlib.get_cachedir())
    monkeypatch.setenv("IPYTHONDIR", str(ipython_dir))
    for name in (
        "REGFRAME_URL",
        "REGFRAME_USER",
        "REGFRAME_PASSWORD",
        "REGFRAME_OUT",
        "REGFRAME_HISTORY",
        dashboard.ENV_URL,
        dashboard.ENV_USER,
        dashboard.ENV_PASSWORD,
        dashboard.ENV_CA_BUNDLE,
        dashboard.ENV_INSECURE,
        dashboard.ENV_INSECURE_AUTH,
        dashboard.ENV_ALLOW_DELETE,
        dashboard.ENV_DIR,
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def run(path: Path, cwd: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, kernel_name="python3", timeout=60, allow_errors=False, resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def mimes(notebook: nbformat.NotebookNode) -> set[str]:
    return {mime for output in outputs(notebook) for mime in output.get("data", {})}


def text(notebook: nbformat.NotebookNode) -> str:
    parts = []
    for output in outputs(notebook):
        parts.append(output.get("text", ""))
        parts.append(str(output.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def test_the_examples_are_there():
    assert [p.name for p in EXAMPLES] == [
        "01-quickstart.ipynb",
        "02-storage-audit.ipynb",
        "03-stale-tags.ipynb",
        "04-supply-chain.ipynb",
        "05-growth.ipynb",
    ]
    assert dashboard.notebook_path().is_file()


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert any(cell.cell_type == "markdown" for cell in notebook.cells)
    assert notebook.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_orphans_are_judged_with_what_the_crawl_saw(path):
    """Every analysis of an inventory's manifests that judges orphans gets ``tags=inv.tags,
    errors=inv.errors``: without them, after a partial crawl, a kept image's SBOM would be planned for
    deletion as an orphan. The crawls these notebooks make in tests are whole, so this reads the calls."""
    notebook = nbformat.read(path, as_version=4)
    calls = [
        node
        for cell in notebook.cells
        if cell.cell_type == "code"
        for node in ast.walk(ast.parse(cell.source))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", None)) in ("stale_tags", "supply_chain")
        and node.args
        and ast.unparse(node.args[0]) == "inv.manifests"
    ]
    assert calls or path.name not in ("03-stale-tags.ipynb", "04-supply-chain.ipynb")
    for call in calls:
        given = {keyword.arg: ast.unparse(keyword.value) for keyword in call.keywords}
        assert (given.get("tags"), given.get("errors")) == ("inv.tags", "inv.errors"), ast.unparse(call)


def test_notebook_registry_starts_once_per_kernel_and_stops_with_it(kernel_env):
    """The notebooks' setup call without ``REGFRAME_URL``: one seeded local registry per process."""
    script = (
        "import json\n"
        "from regframe.demo import notebook_registry\n"
        "first, again = notebook_registry(), notebook_registry()\n"
        "print(json.dumps([first.url, again.url, {r: first.tags(r)['tags'] for r in first.search()}]))\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    first, again, tags = json.loads(completed.stdout)
    assert first == again and first.startswith("http://127.0.0.1:")
    assert len(tags) == 8 and all(len(names) == 6 for names in tags.values())
    with socket.socket() as sock:
        sock.settimeout(5)
        assert sock.connect_ex(("127.0.0.1", int(first.rsplit(":", 1)[1]))) != 0, "stopped at exit"


def test_quickstart_against_regframe_url(kernel_env, registry_url, fleet, tmp_path):
    kernel_env.setenv("REGFRAME_URL", registry_url)
    notebook = run(ROOT / "notebooks" / "01-quickstart.ipynb", tmp_path)
    shown = text(notebook)
    first = min(fleet.repositories)
    assert f"Registry(url='{registry_url}'" in shown
    assert repr(first) in shown
    assert all(repr(tag) in shown for tag in fleet.tags[first])
    tag = "latest" if "latest" in fleet.tags[first] else next(iter(fleet.tags[first]))
    assert fleet.tags[first][tag].digest in shown
    assert WIDGET_MIME in mimes(notebook), "explore() rendered as a widget"


def test_quickstart_looks_at_the_first_repository_holding_an_image(kernel_env, tmp_path):
    """A real registry's first repositories may hold no image: one emptied of its tags stays in the catalog,
    and a Helm chart has no image config. The quickstart passes over them to the first tagged image."""
    image = build_image([layer("quickstart", 700)])
    chart_tag, chart = helm_chart("web", "1.0.0")
    with local_registry() as reg:
        with regframe.connect(reg.url, docker_config=False) as client:
            push_image(client, "aaa/emptied", "gone", image)
            client.delete_manifest("aaa/emptied", image.digest)
            push_artifact(client, "bbb/charts", chart_tag, chart)
            push_image(client, "ccc/app", "v1", image)
        kernel_env.setenv("REGFRAME_URL", reg.url)
        shown = text(run(ROOT / "notebooks" / "01-quickstart.ipynb", tmp_path))
    assert "['aaa/emptied', 'bbb/charts', 'ccc/app']" in shown
    assert "('ccc/app', ['v1'])" in shown
    assert image.digest in shown and "'linux/amd64'" in shown


def test_storage_audit_starts_its_own_registry(kernel_env, tmp_path):
    notebook = run(ROOT / "notebooks" / "02-storage-audit.ipynb", tmp_path)
    assert "image/png" in mimes(notebook) and WIDGET_MIME in mimes(notebook)
    report = tmp_path / "audit-report"
    storage = (report / "storage.csv").read_text().splitlines()
    assert storage[0].startswith("repository,images,tags,logical_bytes,stored_bytes")
    assert len(storage) == 1 + 8, "one row per repository of the notebook's fleet"
    assert (report / "shared-layers.csv").is_file()
    assert regframe.Inventory.load(report / "inventory").tags.shape[0] == 8 * 6


def test_stale_tags_dry_run_changes_nothing(kernel_env, tmp_path):
    notebook = run(ROOT / "notebooks" / "03-stale-tags.ipynb", tmp_path)
    shown = text(notebook)
    assert "would delete" in shown and "reclaimable" in shown
    assert "deleted" not in shown.replace("would delete", "")
    assert "image/png" in mimes(notebook) and WIDGET_MIME in mimes(notebook)


def test_supply_chain_notebook_shows_the_coverage_of_its_fleet(kernel_env, tmp_path):
    """04 starts its own registry with the supply-chain fleet; the coverage it prints is that fleet's plan."""
    fleet = make_fleet(**SUPPLY_CHAIN_FLEET)
    coverage = fleet.coverage().values()
    images, signed = sum(c["images"] for c in coverage), sum(c["signed"] for c in coverage)
    sbom, orphaned = sum(c["with_sbom"] for c in coverage), sum(c["orphaned"] for c in coverage)
    assert signed and sbom and orphaned and signed < images, "the fleet must exercise every count"
    notebook = run(ROOT / "notebooks" / "04-supply-chain.ipynb", tmp_path)
    shown = text(notebook)
    assert f"signed: {signed} of {images} images; SBOM: {sbom}; orphaned accessories: {orphaned}" in shown
    # Each orphan of the spec is one accessory tag (a cosign tag or a fallback tag), and orphans are always stale.
    orphan_tags = SUPPLY_CHAIN_FLEET["orphans"]
    assert re.search(rf"orphaned: subject\s+{orphan_tags}\b", shown), "every orphaned accessory tag is stale"
    assert "would delete" in shown
    assert "image/png" in mimes(notebook)


def test_growth_notebook_audits_twice_and_shows_what_changed(kernel_env, tmp_path):
    """The notebook changes its own registry between two audits; the changes expected here follow from
    the notebooks' fleet and what the notebook does to it."""
    kernel_env.setenv("TMPDIR", str(tmp_path))
    fleet = make_fleet(**NOTEBOOK_FLEET)
    notebook = run(ROOT / "notebooks" / "05-growth.ipynb", tmp_path)
    shown = text(notebook)
    repositories = sorted(fleet.repositories)
    promoted, retired = repositories[1], repositories[-1]
    added = 2 + 2  # two tags in the largest repository, two in the new one
    removed = 1 + len(fleet.tags[retired])
    moved = int(fleet.tags[promoted]["stable"].digest != fleet.tags[promoted]["latest"].digest)
    assert f"{added} added, {removed} removed, {moved} moved" in shown
    assert "1 added, 1 removed" in shown and "1 became stale" in shown
    assert f"repositories removed: {retired}" in shown and "repositories added: team-new/service" in shown
    assert "image/png" in mimes(notebook)
    snapshots = [p for p in tmp_path.glob("regframe-history-*/*") if not p.name.startswith(".")]
    assert len(snapshots) == 2


def test_dashboard_notebook_with_the_dashboard_environment(kernel_env, registry_url, fleet, tmp_path):
    kernel_env.setenv(dashboard.ENV_URL, registry_url)
    notebook = run(dashboard.notebook_path(), tmp_path)
    assert f"{len(fleet.repositories)} repositories, {fleet.tag_count} tags" in text(notebook)
    widgets = [o for o in outputs(notebook) if WIDGET_MIME in o.get("data", {})]
    assert [w["data"]["text/plain"].split("(")[0] for w in widgets] == ["StorageDashboard", "StaleTagsWidget"]


def test_dashboard_notebook_names_the_missing_setting(kernel_env, tmp_path):
    from nbclient.exceptions import CellExecutionError

    with pytest.raises(CellExecutionError, match="REGFRAME_DASHBOARD_URL is not set"):
        run(dashboard.notebook_path(), tmp_path)


def voila_outputs(html: str) -> list[dict]:
    """The cell outputs Voilà embeds in its page as JSON script elements."""
    found = re.findall(r'<script type="application/vnd.voila.cell-output\+json">(.*?)</script>', html, re.DOTALL)
    return [json.loads(text) for text in found]


def test_served_dashboard_keeps_secrets_off_command_lines(kernel_env, tmp_path, monkeypatch, process_command_lines):
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("HOME", str(tmp_path))
    small = make_fleet(
        repositories=3, tags_per_repo=3, seed=22, layer_size_range=(300, 3000), base_layer_size_range=(4000, 9000)
    )
    with local_registry(auth="basic") as reg:
        user, password = reg.credentials("alice")
        with regframe.connect(reg.url, user=user, password=password) as client:
            seed(client, small)
        with pytest.raises(ValueError, match="both user and password"):
            dashboard.start(reg.url, user=user)
        with dashboard.start(reg.url, user=user, password=password, log_path=tmp_path / "voila.log") as board:
            token = board.url.split("token=", 1)[1]
            refused = requests.get(f"http://127.0.0.1:{board.port}/", timeout=10, allow_redirects=False)
            assert refused.status_code == 403 or "login" in refused.headers.get("Location", "")
            page = requests.get(board.url, timeout=60)
            lines = process_command_lines(board.process.pid)
            assert any("ipykernel" in line for line in lines), "the page started a kernel"
            assert not [line for line in lines if password in line or token in line]
        assert page.ok
        shown = voila_outputs(page.text)
        html = [o["data"]["text/html"] for o in shown if "text/html" in o.get("data", {})]
        card = next(text for text in html if "regframe Inventory" in text)
        assert f"<td>{reg.url}</td>" in card
        assert f"<th style='text-align:left'>tags</th><td>{small.tag_count}</td>" in card
        widgets = [o["data"]["text/plain"].split("(")[0] for o in shown if WIDGET_MIME in o.get("data", {})]
        assert widgets == ["StorageDashboard", "StaleTagsWidget"]
        assert password not in dashboard.notebook_path().read_text()
    assert board.process.returncode is not None
