"""What a dashboard visitor or a hostile image can do to the widgets: no file outside the export folder, no
hung kernel on a pathological pattern, no crash on labels that are not strings. Images are pushed to a real
registry; nothing is mocked."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

import ipywidgets
import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

import regframe
from regframe.inventory import Inventory
from regframe.testing import build_image, build_index, layer, local_registry, push_image
from regframe.widgets import explore, stale_tags

NOW = datetime(2026, 6, 1, tzinfo=UTC)
OLD = NOW - timedelta(days=400)
EXPORT_NAME = re.compile(r"stale-tags-\d{8}-\d{6}(-\d+)?\.csv")
# A search backtracks through every way of splitting the run of a's into ones and twos (fib(40), times each
# start) before the "-" fails ``$``.
CATASTROPHIC = r"(a|aa)+$"
LONG_TAG = "a" * 60 + "-x"
HOSTILE_LABELS = {
    "meta": {"b": 2, "a": "<script>alert(1)</script>"},
    "list": [1, "two"],
    "count": 3,
    "flag": True,
    "nothing": None,
    "plain": "text",
}
TAGS = {"latest", "1.0", "2.0", LONG_TAG}


@pytest.fixture(scope="module")
def registry_url():
    with local_registry() as reg, regframe.connect(reg.url) as client:
        for number, tag in enumerate(sorted(TAGS)):
            push_image(client, "sec/app", tag, build_image([layer(f"app-{number}", 400)], created=OLD))
        push_image(client, "sec/labels", "1.0", build_image([layer("labels", 300)], created=OLD, labels=HOSTILE_LABELS))
        amd = build_image([layer("multi-amd", 300)], created=OLD, labels=HOSTILE_LABELS)
        arm = build_image(
            [layer("multi-arm", 300)], architecture="arm64", created=OLD, labels={"meta": {"other": ["x"]}}
        )
        push_image(client, "sec/labels", "multi", build_index([amd, arm]))
        yield reg.url


@pytest.fixture(scope="module")
def inv(registry_url):
    with regframe.connect(registry_url) as client:
        return client.inventory(progress=False)


def text_fields(widget: ipywidgets.Widget) -> list[ipywidgets.Widget]:
    """Every control in the widget tree that takes free text from a visitor."""
    found = [widget] if isinstance(widget, (ipywidgets.Text, ipywidgets.Textarea)) else []
    for child in getattr(widget, "children", ()):
        found += text_fields(child)
    return found


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file() or path.is_symlink()}


# -- the export ------------------------------------------------------------------------------------------


def test_no_field_takes_a_path(inv, tmp_path, monkeypatch):
    """The only free-text controls are the two patterns; no field names the export file."""
    monkeypatch.chdir(tmp_path)
    widget = stale_tags(inv, now=NOW)
    assert {id(field) for field in text_fields(widget)} == {id(widget.keep), id(widget.match)}


@pytest.mark.parametrize("typed", ["../../x.csv", "../escaped.csv", "ABSOLUTE_VICTIM", "~/x.csv"])
def test_typed_paths_never_become_files(inv, tmp_path, monkeypatch, typed):
    """Whatever a visitor types into any field, "Export CSV" writes one new file, in the export folder (the
    working directory by default), under the widget's name. ``ABSOLUTE_VICTIM`` stands for ``/etc/passwd``:
    an absolute path to an existing file outside the folder (one inside tmp_path, so a failing run damages
    nothing)."""
    export = tmp_path / "board" / "a" / "b"
    export.mkdir(parents=True)
    victim = tmp_path / "etc" / "passwd"
    victim.parent.mkdir()
    victim.write_text("root:x:0:0\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(export)
    value = str(victim) if typed == "ABSOLUTE_VICTIM" else typed
    widget = stale_tags(inv, now=NOW, older_than="90d")
    assert widget.plan is not None and len(widget.plan) > 0
    before = files_under(tmp_path)
    for field in text_fields(widget):
        field.value = value
    widget.export_button.click()

    assert victim.read_text() == "root:x:0:0\n"
    new = files_under(tmp_path) - before
    assert len(new) == 1, f"one export, not {sorted(map(str, new))}"
    [written] = new
    assert written.parent == export.resolve() and EXPORT_NAME.fullmatch(written.name)
    assert not written.is_symlink()
    assert str(written) in widget.message.value


def test_export_never_writes_through_a_planted_link(inv, tmp_path):
    """Links planted under every name the next two minutes could produce do not redirect the export."""
    export = tmp_path / "board"
    export.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    start = datetime.now()
    for second in range(120):
        stamp = (start + timedelta(seconds=second)).strftime("%Y%m%d-%H%M%S")
        (export / f"stale-tags-{stamp}.csv").symlink_to(victim)
    widget = stale_tags(inv, now=NOW, older_than="90d", export_dir=export)
    written = widget.export()
    assert written is not None and written.parent == export.resolve()
    assert EXPORT_NAME.fullmatch(written.name) and not written.is_symlink()
    assert victim.read_text() == "keep me\n"
    assert pd.read_csv(written)["tag"].astype(str).tolist() == widget.plan["tag"].astype(str).tolist()


def test_export_into_a_vanished_folder_says_why(inv, tmp_path):
    """The folder is fixed when the widget is made: if it goes away, the export fails in the widget and
    creates nothing, not even the folder again."""
    export = tmp_path / "board"
    export.mkdir()
    widget = stale_tags(inv, now=NOW, older_than="90d", export_dir=export)
    export.rmdir()
    assert widget.export() is None
    assert not export.exists() and list(tmp_path.iterdir()) == []
    assert "could not write a CSV file in" in widget.message.value


# -- patterns ----------------------------------------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import json, sys
    import matplotlib
    matplotlib.use("Agg")
    import regframe
    from regframe.widgets import stale_tags
    url, field, pattern, now = sys.argv[1:]
    with regframe.connect(url) as client:
        widget = stale_tags(client.inventory(progress=False), now=now, older_than="90d")
    getattr(widget, field).value = pattern
    seen = {"error": widget.error, "message": widget.message.value, "export": widget.export_button.disabled}
    getattr(widget, field).value = ""
    seen["recovered"] = widget.error is None and len(widget.plan) > 0
    print(json.dumps(seen))
""")


@pytest.mark.parametrize("field", ["match", "keep"])
def test_catastrophic_pattern_gives_a_message_not_a_hung_kernel(registry_url, field):
    """A kernel stuck in a regular expression cannot be interrupted from its own thread, so the widget runs
    in a child process that is killed after a generous deadline."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, registry_url, field, CATASTROPHIC, NOW.isoformat()],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"setting {field}={CATASTROPHIC!r} did not return in 90 s: the kernel would hang")
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["error"], "the analysis's error is kept on the widget"
    assert "#b00020" in seen["message"], "shown as an error"
    assert escape(seen["error"]) in seen["message"]
    assert seen["export"], "nothing to export while the rules are broken"
    assert seen["recovered"], "clearing the field brings the plan back"


# -- labels in the explorer --------------------------------------------------------------------------------


def label_table(explorer) -> str:
    return explorer.details.children[2].value


def test_object_labels_render_as_escaped_json(inv):
    explorer = explore(inv)
    explorer.repositories.value = "sec/labels"
    explorer.tags.value = "1.0"
    labels = dict(zip(explorer.labels_frame["label"], explorer.labels_frame["value"], strict=True))
    assert labels == {
        "meta": '{"a":"<script>alert(1)</script>","b":2}',
        "list": '[1,"two"]',
        "count": "3",
        "flag": "true",
        "nothing": "null",
        "plain": "text",
    }
    html = label_table(explorer)
    assert "<script>" not in html
    assert "{&quot;a&quot;:&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;,&quot;b&quot;:2}" in html


def test_object_labels_differing_by_platform(inv):
    explorer = explore(inv)
    explorer.repositories.value = "sec/labels"
    explorer.tags.value = "multi"
    rows = set(explorer.labels_frame.itertuples(index=False, name=None))
    assert ("linux/arm64", "meta", '{"other":["x"]}') in rows
    assert ("linux/amd64", "list", '[1,"two"]') in rows
    assert len(rows) == len(HOSTILE_LABELS) + 1


def test_labels_that_are_not_an_object(inv, tmp_path):
    """An inventory saved, edited by hand and loaded back can hold any JSON in ``labels``."""
    inv.to_csv(tmp_path)
    manifests = pd.read_csv(tmp_path / "manifests.csv", dtype=str, keep_default_na=False)
    manifests.loc[manifests["repository"] == "sec/labels", "labels"] = '["not", {"an": "object"}]'
    manifests.to_csv(tmp_path / "manifests.csv", index=False)
    explorer = explore(Inventory.load(tmp_path))
    explorer.repositories.value = "sec/labels"
    explorer.tags.value = "1.0"
    assert explorer.labels_frame.to_dict("list") == {
        "label": ["(Labels is not an object)"],
        "value": ['["not",{"an":"object"}]'],
    }
    assert "(Labels is not an object)" in label_table(explorer)
