"""Audit reports (summary.json, report.md, report.html, charts) and ``--fail-on`` gates, against a seeded real
registry. Expected totals come from the fleet plan (``fleet.records()``), never from the code under test.

Two things a real registry cannot be made to do come from a fault-proxy rule: list tag names outside the
distribution grammar (markup, links, control characters), to check that registry text stays text in both reports.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import os
import re
import shutil
import socket
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from markdown_it import MarkdownIt

import regframe
from regframe.cli import main
from regframe.inventory import Inventory
from regframe.report import AuditData, GateError, build_summary, evaluate, parse_gate, render_markdown, undecided
from regframe.testing import build_image, local_registry, make_fleet, push_image, seeded_registry
from regframe.testing import layer as synthetic_layer
from regframe.testing.faultproxy import Action, FaultProxy, Rule
from regframe.units import format_bytes

NOW = datetime.now(UTC)
OLDER_THAN_DAYS = 365
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "report"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Reproducible builds write these; the crawl treats them as unknown dates, which are never stale.
EARLIEST_REAL_DATE = datetime(1990, 1, 1, tzinfo=UTC)
CHARTS = {"storage", "sharing", "stale_tags", "layer_sizes", "supply_chain"}


@pytest.fixture(scope="module")
def fleet():
    return make_fleet(
        repositories=7,
        tags_per_repo=6,
        base_layers=2,
        multi_platform_ratio=0.2,
        fake_created_ratio=0.1,
        seed=13,
        now=NOW,
        age_range_days=(1, 900),
        layer_size_range=(300, 3000),
        base_layer_size_range=(4000, 9000),
    )


@pytest.fixture(scope="module")
def registry_url(fleet):
    with seeded_registry(fleet) as reg:
        yield reg.url


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def audit_argv(url: str, out: Path, *extra: str) -> list[str]:
    return ["audit", url, "--out", str(out), "--older-than", f"{OLDER_THAN_DAYS}d", "--no-progress", *extra]


@pytest.fixture(scope="module")
def audited(registry_url, tmp_path_factory):
    """One plain audit: (out folder, exit status, stdout)."""
    out = tmp_path_factory.mktemp("audit") / "report"
    code, stdout, _ = run_cli(audit_argv(registry_url, out))
    return out, code, stdout


# -- what the fleet plan says the audit must find ----------------------------------------------------------


def expected(fleet) -> dict:
    """Totals from the plan: every blob an image references (config and layers) is stored once; a tag is stale
    when dated before the threshold, unless a tag on the same digest is kept."""
    records = fleet.records()
    threshold = datetime.now(UTC) - timedelta(days=OLDER_THAN_DAYS)
    created: dict[tuple[str, str], datetime | None] = {}
    digest_of: dict[tuple[str, str], str] = {}
    for rec in records:
        key = (rec["repository"], rec["tag"])
        when = rec["created"] if rec["created"] and rec["created"] >= EARLIEST_REAL_DATE else None
        created[key] = max(filter(None, [created.get(key), when]), default=None)
        digest_of[key] = rec["digest"]
    old = {key: when is not None and when < threshold for key, when in created.items()}
    siblings = defaultdict(list)
    for key, digest in digest_of.items():
        siblings[(key[0], digest)].append(key)
    stale = {key for key in old if all(old[other] for other in siblings[(key[0], digest_of[key])])}

    sizes, kept_blobs, stale_blobs = {}, set(), set()
    per_repo_blobs = defaultdict(set)
    for rec in records:
        key = (rec["repository"], rec["tag"])
        for digest, size in [(rec["config_digest"], rec["config_size"]), *rec["layers"]]:
            sizes[digest] = size
            per_repo_blobs[rec["repository"]].add(digest)
            (stale_blobs if key in stale else kept_blobs).add(digest)
    stale_per_repo = defaultdict(int)
    for repository, _ in stale:
        stale_per_repo[repository] += 1
    return {
        "repositories": len(fleet.repositories),
        "tags": fleet.tag_count,
        "images": len(records),
        "blobs": len(sizes),
        "stored_bytes": sum(sizes.values()),
        "logical_bytes": sum(rec["size"] for rec in records),
        "stale_tags": len(stale),
        "reclaimable_bytes": sum(sizes[d] for d in stale_blobs - kept_blobs),
        "errors": 0,
        "stored_per_repository": {r: sum(sizes[d] for d in ds) for r, ds in per_repo_blobs.items()},
        "stale_per_repository": dict(stale_per_repo),
    }


TOTAL_KEYS = ("repositories", "tags", "images", "blobs", "stored_bytes", "logical_bytes", "stale_tags")


def test_summary_json_totals_equal_the_fleet_plan(audited, fleet):
    out, code, _ = audited
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    plan = expected(fleet)
    assert plan["stale_tags"] > 0 and plan["reclaimable_bytes"] > 0, "the fleet must exercise the stale totals"
    for key in (*TOTAL_KEYS, "reclaimable_bytes", "errors"):
        assert summary[key] == plan[key], key
    assert summary["dedup_ratio"] == pytest.approx(plan["logical_bytes"] / plan["stored_bytes"], rel=1e-3)
    assert summary["registry"].startswith("http://127.0.0.1:")
    assert summary["complete"] is True
    assert not {"growth_percent", "growth_bytes"} & set(summary), "totals it cannot compute are left out, not zero"
    images = len({(rec["repository"], rec["digest"]) for rec in fleet.records()})
    assert (summary["signed_images"], summary["unsigned_images"], summary["orphaned_accessories"]) == (0, images, 0)
    assert summary["dangling_index_entries"] == summary["dangling_fallback_entries"] == 0
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"report.html", "report.md", "summary.json", "summary.txt"} <= written
    assert {f"charts/{name}.{kind}" for name in CHARTS for kind in ("png", "svg")} <= written
    assert not [name for name in written if name.endswith(".part")]


def test_charts_are_real_png_and_svg(audited):
    out, _, _ = audited
    for name in CHARTS:
        png = (out / "charts" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000, name
        svg = (out / "charts" / f"{name}.svg").read_text()
        assert "<svg" in svg and "<script" not in svg, name
        assert not re.findall(r'href="(?!#|data:)', svg), f"{name}: a link outside the file"
        assert "<text" not in svg, f"{name}: text is drawn as paths, so no font is needed and no text is markup"


# -- report.md ------------------------------------------------------------------------------------------------


def markdown_tables(text: str) -> list[dict]:
    """Every table of a Markdown document as markdown-it-py parses it: the heading above it, header and rows,
    each cell as the plain text it renders to."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    tables: list[dict] = []
    heading, table, row, part = "", None, None, ""
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            heading = tokens[i + 1].content
        elif token.type == "table_open":
            table = {"heading": heading, "header": [], "rows": []}
        elif token.type in ("thead_open", "tbody_open"):
            part = token.type
        elif token.type == "tr_open":
            row = []
        elif token.type == "inline" and row is not None:
            row.append("".join(child.content for child in token.children or []))
        elif token.type == "tr_close":
            if part == "thead_open":
                table["header"] = row
            else:
                table["rows"].append(row)
            row = None
        elif token.type == "table_close":
            tables.append(table)
    return tables


def test_report_md_tables_have_the_right_columns_and_totals(audited, fleet):
    out, _, _ = audited
    text = (out / "report.md").read_text()
    plan = expected(fleet)
    tables = markdown_tables(text)
    by_heading = {table["heading"]: table for table in tables}

    totals = by_heading["Totals"]
    assert totals["header"] == ["Total", "Value", "Key"]
    shown = {row[2]: row[1] for row in totals["rows"]}
    for key in ("repositories", "tags", "images", "blobs", "stale_tags", "errors"):
        assert shown[key] == f"{plan[key]:,}", key
    for key in ("stored_bytes", "logical_bytes", "reclaimable_bytes"):
        assert shown[key] == format_bytes(plan[key]), key

    storage = by_heading["Storage"]
    assert storage["header"] == ["Repository", "Exclusive", "Shared", "Stored", "Tags", "Images"]
    assert len(storage["rows"]) == min(10, plan["repositories"])
    for row in storage["rows"]:
        assert row[3] == format_bytes(plan["stored_per_repository"][row[0]]), row[0]
        assert int(row[4]) == len(fleet.tags[row[0]])

    stale = by_heading["Stale tags"]
    assert stale["header"] == ["Repository", "Stale tags", "Reclaimable"]
    assert {row[0]: int(row[1]) for row in stale["rows"]} == plan["stale_per_repository"]

    cleanup = by_heading["Cleanup plan (oldest first)"]
    assert cleanup["header"] == ["Repository", "Tag", "Digest", "Created", "Age (days)", "Reason"]
    assert len(cleanup["rows"]) == min(20, plan["stale_tags"])
    assert "every item was read" in text
    assert "![" not in text and "<img" not in text, "no images in a CI job summary"
    assert len(text.encode()) < 64 * 1024


# -- --format -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("output_format", ["text", "markdown", "json"])
def test_format_chooses_what_goes_to_standard_output(registry_url, tmp_path, output_format):
    out = tmp_path / "report"
    code, stdout, _ = run_cli(audit_argv(registry_url, out, "--format", output_format))
    assert code == 0
    if output_format == "json":
        assert json.loads(stdout) == json.loads((out / "summary.json").read_text())
    elif output_format == "markdown":
        assert stdout.strip() == (out / "report.md").read_text().strip()
    else:
        assert stdout.strip() == (out / "summary.txt").read_text().strip()
        assert f"Open {out.resolve() / 'report.html'}" in stdout


# -- --fail-on -----------------------------------------------------------------------------------------------------


def operator_cases(plan: dict) -> list[tuple[str, bool]]:
    """Every operator on both sides of the real value, and every unit, for sizes, counts and a ratio."""
    s, n = plan["stored_bytes"], plan["stale_tags"]
    exact = Decimal(s)
    cases = [
        (f"stored>{s - 1}", True),
        (f"stored>{s}", False),
        (f"stored>={s}", True),
        (f"stored>={s + 1}", False),
        (f"stored<{s + 1}", True),
        (f"stored<{s}", False),
        (f"stored<={s}", True),
        (f"stored<={s - 1}", False),
        (f"stored=={s}", True),
        (f"stored=={s + 1}", False),
        (f"stored!={s + 1}", True),
        (f"stored!={s}", False),
        (f"stored_bytes == {s}B", True),
        (f"stored=={exact / 1000:f}kB", True),
        (f"stored=={exact / 1000:f}KB", True),
        (f"stored=={exact / 1000**2:f}MB", True),
        (f"stored=={exact / 1000**3:f}GB", True),
        (f"stored=={exact / 1000**4:f}TB", True),
        (f"stored=={exact / 1024:f}KiB", True),
        (f"stored=={exact / 1024**2:f}MiB", True),
        (f"stored=={exact / 1024**3:f}GiB", True),
        (f"stored=={exact / 1024**4:f}TiB", True),
        (f"stored>{exact / 1000 - 1:f}kB", True),
        (f"stored>{exact / 1024 + 1:f}KiB", False),
        ("stored>2TB", False),
        ("stored<2TB", True),
        ("reclaimable>5GB", False),
        ("reclaimable<=5GiB", True),
        (f"reclaimable=={plan['reclaimable_bytes']}", True),
        (f"stale>{n - 1}", True),
        (f"stale>{n}", False),
        (f"stale_tags>={n}", True),
        (f"stale<{n}", False),
        (f"tags=={plan['tags']}", True),
        (f"tags!={plan['tags']}", False),
        ("errors>0", False),
        ("errors==0", True),
        ("dedup>=1", True),
        ("dedup_ratio<1x", False),
    ]
    return cases


def test_each_operator_and_unit_against_the_audit(audited, fleet):
    out, _, _ = audited
    summary = json.loads((out / "summary.json").read_text())
    cases = operator_cases(expected(fleet))
    results = evaluate([parse_gate(expression) for expression, _ in cases], summary)
    assert [(r.gate.expression, r.holds) for r in results] == [(e.strip(), holds) for e, holds in cases]
    assert undecided(results) is None


def test_fail_on_that_holds_writes_the_report_and_exits_3(registry_url, fleet, tmp_path):
    plan = expected(fleet)
    out = tmp_path / "report"
    gates = ["stale>0", "errors>0", f"stored>={plan['stored_bytes']}", "reclaimable>5GB"]
    argv = audit_argv(registry_url, out, *[arg for gate in gates for arg in ("--fail-on", gate)])
    code, stdout, stderr = run_cli(argv)
    assert code == 3
    failing = [line for line in stderr.splitlines() if line.endswith(": holds")]
    assert [line.split(" ", 2)[2].split(":")[0] for line in failing] == ["stale>0", f"stored>={plan['stored_bytes']}"]
    assert f"stale_tags is {plan['stale_tags']:,}" in stderr
    assert "2 of 4 --fail-on gate(s) hold" in stderr
    assert "regframe audit of" in stdout, "the text summary still goes to standard output"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stale_tags"] == plan["stale_tags"]
    gates_table = {t["heading"]: t for t in markdown_tables((out / "report.md").read_text())}["CI gates"]
    assert gates_table["header"] == ["Gate", "Value", "Result"]
    assert [(row[0], row[2]) for row in gates_table["rows"]] == [
        ("stale>0", "holds: fails"),
        ("errors>0", "passes"),
        (f"stored>={plan['stored_bytes']}", "holds: fails"),
        ("reclaimable>5GB", "passes"),
    ]
    assert (out / "report.html").is_file() and (out / "charts" / "storage.svg").is_file()


def test_fail_on_that_does_not_hold_exits_0(registry_url, tmp_path):
    code, _, stderr = run_cli(
        audit_argv(
            registry_url,
            tmp_path / "r",
            "--fail-on",
            "errors>0",
            "--fail-on",
            "stored>2TB",
            "--fail-on",
            "stale>100000",
        )
    )
    assert code == 0, stderr
    assert "holds" not in stderr


@pytest.fixture
def listener():
    """A listening socket standing in for a registry: any request would arrive here."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    yield sock
    sock.close()


@pytest.mark.parametrize(
    "expression, message",
    [
        ("stale=>100", "unknown operator '=>'"),
        ("stale=100", "unknown operator '='"),
        ("stale>>1", "unknown operator '>>'"),
        ("stale~1", "unknown operator '~'"),
        ("bogus>1", "unknown total 'bogus'"),
        ("reclaimable>5XB", "not a byte size: '5XB'"),
        ("reclaimable>-5GB", "a size has no sign"),
        ("stale>5GB", "'5GB' is not a number; stale_tags is in a count"),
        ("reclaimable>10%", "'%' is only for percent totals"),
        ("stale>1.5", "not a whole number"),
        ("stale 100", "expected NAME OP VALUE"),
        ("stale>", "no value after '>'"),
        ("growth>10%", "growth_percent needs a previous audit"),
    ],
)
def test_malformed_fail_on_exits_2_before_any_request(listener, tmp_path, expression, message):
    port = listener.getsockname()[1]
    out = tmp_path / "report"
    code, stdout, stderr = run_cli(
        audit_argv(f"http://127.0.0.1:{port}", out, "--fail-on", "errors>0", "--fail-on", expression)
    )
    assert code == 2
    assert message in stderr and repr(expression) in stderr
    assert stdout == ""
    with pytest.raises(BlockingIOError):
        listener.accept()
    assert not out.exists()


def test_a_gate_on_a_total_the_audit_did_not_compute_is_an_error(audited):
    """Supply-chain totals exist only when the crawl classified artifacts; without them a gate cannot be
    decided, which is an error (exit 2), never a silent pass."""
    out, _, _ = audited
    inv = Inventory.load(out)
    stale = regframe.analysis.stale_tags(inv.manifests, older_than=f"{OLDER_THAN_DAYS}d")
    data = AuditData.from_inventory(inv, stale, rules="test")
    data = AuditData(**{**data.__dict__, "supply_chain": None})
    summary = build_summary(data)
    results = evaluate([parse_gate("unsigned>0"), parse_gate("stale>0")], summary)
    assert [r.decided for r in results] == [False, True]
    problem = undecided(results)
    assert isinstance(problem, GateError)
    assert "unsigned_images was not computed" in str(problem) and "artifact classification" in str(problem)


def test_supply_chain_totals_come_from_the_coverage_frame(audited):
    """With coverage per repository (``analysis.supply_chain`` output), the summary sums its columns."""
    out, _, _ = audited
    inv = Inventory.load(out)
    stale = regframe.analysis.stale_tags(inv.manifests, older_than=f"{OLDER_THAN_DAYS}d")
    data = AuditData.from_inventory(inv, stale, rules="test")
    coverage = pd.DataFrame(
        {
            "repository": ["a/x", "b/y"],
            "images": [5, 3],
            "signed": [4, 1],
            "with_sbom": [2, 0],
            "with_attestation": [1, 1],
            "unsigned": [1, 2],
            "orphaned": [0, 3],
            "accessory_bytes": [1500, 2500],
        }
    )
    with_coverage = AuditData(**{**data.__dict__, "supply_chain": coverage})
    summary = build_summary(with_coverage)
    assert (summary["signed_images"], summary["unsigned_images"], summary["sbom_images"]) == (5, 3, 2)
    assert (summary["attested_images"], summary["orphaned_accessories"], summary["accessory_bytes"]) == (2, 3, 4000)
    results = evaluate([parse_gate("unsigned>0"), parse_gate("signed<5"), parse_gate("accessory>=4kB")], summary)
    assert [r.holds for r in results] == [True, False, True]
    section = {t["heading"]: t for t in markdown_tables(render_markdown(with_coverage, summary))}["Supply chain"]
    assert section["header"] == [
        "Repository",
        "Images",
        "Signed",
        "Unsigned",
        "With SBOM",
        "With attestation",
        "Orphaned accessories",
        "Accessory bytes",
    ]
    assert section["rows"] == [
        ["a/x", "5", "4", "1", "2", "1", "0", "1.5 KB"],
        ["b/y", "3", "1", "2", "0", "1", "3", "2.5 KB"],
    ]


def test_an_empty_registry_gets_a_whole_report(tmp_path):
    with local_registry() as reg:
        code, _, _ = run_cli(audit_argv(reg.url, tmp_path / "r", "--fail-on", "stored>0"))
    assert code == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert [summary[key] for key in (*TOTAL_KEYS, "reclaimable_bytes", "errors")] == [0] * (len(TOTAL_KEYS) + 2)
    assert {p.name for p in (tmp_path / "r" / "charts").iterdir()} == {
        f"{name}.{kind}" for name in CHARTS for kind in ("png", "svg")
    }
    storage = {t["heading"]: t for t in markdown_tables((tmp_path / "r" / "report.md").read_text())}["Storage"]
    assert storage["rows"] == [["(none)", "", "", "", "", ""]]


def test_a_repository_whose_tags_were_all_deleted_is_not_counted(tmp_path):
    """Distribution keeps such a repository in its catalog with no tags; the audit counts it removed, as
    its diff does, so ``repositories`` and a gate on it agree with the tags."""
    with local_registry() as reg:
        with regframe.connect(reg.url, docker_config=False) as client:
            push_image(client, "team/kept", "1.0", build_image([synthetic_layer("kept", 300)]))
            push_image(client, "team/emptied", "1.0", build_image([synthetic_layer("emptied", 300)]))
            client.rmtag("team/emptied", "1.0")
            assert "team/emptied" in client.catalog()
        code, _, stderr = run_cli(audit_argv(reg.url, tmp_path / "r", "--fail-on", "repositories>1"))
    assert code == 0, stderr
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["repositories"] == 1
    assert "repositories                   1" in (tmp_path / "r" / "summary.txt").read_text()


def test_growth_gate_compares_with_the_previous_audit(tmp_path):
    """``growth`` needs ``--history``: the first audit there cannot decide it (exit 2, report written); after
    an image is pushed, the second audit's growth is the pushed bytes over the first audit's stored bytes."""
    small = make_fleet(
        repositories=2,
        tags_per_repo=2,
        base_layers=1,
        seed=4,
        now=NOW,
        layer_size_range=(300, 900),
        base_layer_size_range=(2000, 3000),
    )
    before = sum(
        {
            d: s for rec in small.records() for d, s in [(rec["config_digest"], rec["config_size"]), *rec["layers"]]
        }.values()
    )
    history = tmp_path / "history"
    with seeded_registry(small) as reg:
        first = tmp_path / "first"
        code, _, stderr = run_cli(audit_argv(reg.url, first, "--history", str(history), "--fail-on", "growth>10%"))
        assert code == 2
        assert "growth_percent was not computed" in stderr
        assert (first / "report.html").is_file() and "growth_percent" not in json.loads(
            (first / "summary.json").read_text()
        )

        image = build_image([synthetic_layer("report-growth", 4321)])
        with regframe.connect(reg.url, docker_config=False) as client:
            push_image(client, "grown/app", "1.0", image)
        added = 4321 + image.config.size
        growth = 100 * added / before
        second = tmp_path / "second"
        gates = [
            f"growth>{growth - 0.01:.4f}%",
            f"growth<{growth - 0.01:.4f}",
            f"growth_bytes=={added}",
            "growth>=1000%",
            "growth_bytes>-1kB",
            f"growth_bytes<-{added}",
        ]
        code, _, stderr = run_cli(
            audit_argv(reg.url, second, "--history", str(history), *[a for g in gates for a in ("--fail-on", g)])
        )
        summary = json.loads((second / "summary.json").read_text())
        assert summary["growth_bytes"] == added
        assert summary["growth_percent"] == pytest.approx(growth, abs=1e-3)
        assert code == 3
        assert [line.split(" ", 2)[2].split(":")[0] for line in stderr.splitlines() if line.endswith(": holds")] == [
            gates[0],
            gates[2],
            gates[4],
        ]


def test_growth_bytes_takes_a_negative_threshold():
    """``growth_bytes`` is negative when the registry shrank, so a gate on a shrink needs a negative size;
    a size no total can go below stays refused with a sign."""
    shrink = parse_gate("growth_bytes<-1GB")
    assert shrink.threshold == -1_000_000_000
    assert [r.holds for r in evaluate([shrink], {"growth_bytes": -2_000_000_000})] == [True]
    assert [r.holds for r in evaluate([shrink], {"growth_bytes": -999_999_999})] == [False]
    assert parse_gate("growth_bytes>=+1KiB").threshold == 1024
    assert parse_gate("growth_bytes>-1000000000").threshold == -1_000_000_000
    with pytest.raises(GateError, match="a size has no sign"):
        parse_gate("stored>-1GB")


# -- hostile registry text ------------------------------------------------------------------------------------

HOSTILE_TAGS = [
    "![img](http://evil.example/md.png)",
    "[link](http://evil.example/)",
    '<img src="http://evil.example/html.png">',
    "<script>alert(1)</script>",
    "a|b`c`*d*_e_$x$",
    "esc\x1b[2Jhere",
]


class AddTags(Action):
    """Forward a tag list with hostile names added (a real registry lists only grammar-valid tags)."""

    def apply(self, ex) -> None:
        response = ex.forward()
        body = json.loads(response.read())
        body["tags"] = list(body.get("tags") or []) + HOSTILE_TAGS
        data = json.dumps(body).encode()
        response.body = (data,)
        response.set("Content-Length", str(len(data)))
        ex.respond(response)


@pytest.fixture(scope="module")
def hostile_report(registry_url, fleet, tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile") / "report"
    repository = fleet.repositories[0]
    with FaultProxy(registry_url) as proxy:
        proxy.add_rule(Rule(path=f"^/v2/{repository}/tags/list", action=AddTags()))
        code, _, _ = run_cli(audit_argv(proxy.url, out))
    assert code == 1, "the hostile tags are crawl errors"
    return out


def test_registry_text_stays_text_in_report_md(hostile_report):
    text = (hostile_report / "report.md").read_text()
    assert "\x1b" not in text
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    kinds = {child.type for token in tokens for child in (token.children or [])}
    assert not kinds & {"image", "link_open", "html_inline"}
    assert not {token.type for token in tokens} & {"html_block"}
    # GitHub and GitLab also make links of bare URLs ("gfm-like" adds that autolinking).
    linked = MarkdownIt("gfm-like").parse(text)
    assert "http://evil.example" in text.replace("\\", "")
    assert not {child.type for token in linked for child in (token.children or [])} & {"image", "link_open"}
    errors = {t["heading"]: t for t in markdown_tables(text)}[f"Crawl errors ({len(HOSTILE_TAGS)})"]
    assert errors["header"] == ["Repository", "Tag", "Stage", "Error"]
    shown = [row[1] for row in errors["rows"]]
    assert sorted(shown) == sorted(visible_tag(tag) for tag in HOSTILE_TAGS)


def visible_tag(tag: str) -> str:
    return tag.replace("\x1b", "\\x1b")


def test_registry_text_stays_text_in_report_html(hostile_report):
    page = (hostile_report / "report.html").read_text()
    assert "\x1b" not in page
    for tag in HOSTILE_TAGS:
        assert html.escape(visible_tag(tag), quote=True) in page, tag
    assert "<script" not in page.lower()
    assert page.count("<img ") == len(CHARTS)


# -- planted links ------------------------------------------------------------------------------------------------


DIFF_FILES = ["diff_repositories.csv", "diff_tags.csv", "diff_storage.csv", "diff_stale.csv", "diff_totals.csv"]


def test_a_reused_out_folder_keeps_no_output_of_an_earlier_audit(registry_url, tmp_path):
    """An audit without ``--history`` into the folder of one with it: the earlier diff CSVs and growth chart
    would present changes this report does not show. Those names go; anything else there stays, a folder
    at one of them too, and a link at one is removed without touching what it points to."""
    out, kept = tmp_path / "report", tmp_path / "history"
    for _ in range(2):
        assert run_cli(audit_argv(registry_url, out, "--history", str(kept)))[0] == 0
    earlier = [*DIFF_FILES, "charts/growth.png", "charts/growth.svg"]
    assert all((out / name).is_file() for name in earlier)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (out / "diff_stale.csv").unlink()
    os.symlink(victim, out / "diff_stale.csv")
    (out / "diff_tags.csv").unlink()
    (out / "diff_tags.csv").mkdir()
    mine = ["notes.txt", "diff_notes.csv", "charts/growth.jpg"]
    for name in mine:
        (out / name).write_text("mine\n")

    code, stdout, _ = run_cli(audit_argv(registry_url, out))
    assert code == 0 and "Since the last audit" not in stdout
    assert "Since the last audit" not in (out / "report.md").read_text()
    gone = [name for name in earlier if name != "diff_tags.csv"]
    assert [name for name in gone if os.path.lexists(out / name)] == []
    assert (out / "diff_tags.csv").is_dir()
    assert victim.read_text() == "precious\n"
    assert [(out / name).read_text() for name in mine] == ["mine\n"] * 3
    assert (out / "charts" / "storage.png").is_file() and (out / "tags.csv").is_file()


def test_report_files_replace_planted_links(registry_url, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious\n")
    out = tmp_path / "report"
    out.mkdir()
    for name in ("report.html", "report.md", "summary.json"):
        os.symlink(victim / "keep.txt", out / name)
    os.symlink(victim, out / "charts")
    code, _, _ = run_cli(audit_argv(registry_url, out))
    assert code == 0
    assert (victim / "keep.txt").read_text() == "precious\n"
    assert sorted(p.name for p in victim.iterdir()) == ["keep.txt"]
    for name in ("report.html", "report.md", "summary.json", "charts"):
        assert not (out / name).is_symlink(), name
    assert (out / "charts" / "storage.png").is_file()


# -- the HTML report in a browser -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("chromium-tmp")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, env={**os.environ, "TMPDIR": str(tmp)}
        )
        yield launched
        launched.close()


def open_report(browser, path: Path, viewport: dict):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    requests, problems = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return context, page, requests, problems


def test_html_report_in_a_browser(browser, audited, fleet, tmp_path):
    out, _, _ = audited
    summary = json.loads((out / "summary.json").read_text())
    context, page, requests, problems = open_report(browser, out / "report.html", {"width": 1280, "height": 900})
    try:
        assert problems == []
        url = (out / "report.html").resolve().as_uri()
        assert [r for r in requests if r != url and not r.startswith("data:")] == []

        images = page.eval_on_selector_all(
            "img", "els => els.map(e => ({src: e.src.slice(0, 26), ok: e.complete, w: e.naturalWidth}))"
        )
        assert len(images) == len(CHARTS)
        assert all(i["ok"] and i["w"] > 0 and i["src"] == "data:image/svg+xml;base64," for i in images), images

        shown = page.eval_on_selector_all(
            ".total[data-key]",
            "els => els.map(e => [e.dataset.key, e.dataset.value, e.querySelector('dd.value').textContent])",
        )
        plan = expected(fleet)
        on_page = {key: (value, text) for key, value, text in shown}
        for key in (*TOTAL_KEYS, "reclaimable_bytes", "errors"):
            assert on_page[key][0] == str(summary[key]) == str(plan[key]), key
        for key in ("stored_bytes", "logical_bytes", "reclaimable_bytes"):
            assert on_page[key][1] == format_bytes(plan[key]), key
        assert on_page["stale_tags"][1] == f"{plan['stale_tags']:,}"
        assert page.locator("h1").text_content().startswith("regframe audit of http://127.0.0.1:")

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        shutil.copy(tmp_path / "report.png", ARTIFACTS / "report.png")
        assert (tmp_path / "report.png").stat().st_size > 10_000
    finally:
        context.close()


@pytest.fixture(scope="module")
def long_plan_report(registry_url, tmp_path_factory):
    """An audit whose cleanup plan is long enough to be collapsed."""
    out = tmp_path_factory.mktemp("long-plan") / "report"
    code, _, _ = run_cli(["audit", registry_url, "--out", str(out), "--older-than", "1d", "--no-progress"])
    assert code == 0
    return out


def test_html_report_fits_a_phone_and_prints(browser, long_plan_report):
    out = long_plan_report
    context, page, _, problems = open_report(browser, out / "report.html", {"width": 390, "height": 844})
    try:
        assert problems == []
        assert page.locator("#stale details").get_attribute("open") is None, "a long plan starts collapsed"
        assert page.locator("#stale details tbody tr").first.is_hidden()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, "no sideways scrolling of the page on a phone (wide tables scroll in their box)"
        widest = page.eval_on_selector_all("img", "els => Math.max(...els.map(e => e.getBoundingClientRect().right))")
        assert widest <= 390
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report-phone.png"), full_page=True)

        page.emulate_media(media="print")
        assert page.locator("nav").is_hidden()
        plan_rows = page.locator("#stale details tbody tr")
        assert plan_rows.count() > 0
        assert plan_rows.first.bounding_box()["height"] > 0, "a collapsed cleanup plan still prints"
        pdf = page.pdf(format="A4")
        assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") >= 2
    finally:
        context.close()


def test_hostile_report_in_a_browser(browser, hostile_report):
    path = hostile_report / "report.html"
    context, page, requests, problems = open_report(browser, path, {"width": 1280, "height": 900})
    try:
        assert problems == []
        assert [r for r in requests if r != path.resolve().as_uri() and not r.startswith("data:")] == []
        assert page.locator("img").count() == len(CHARTS)
        assert page.locator("script").count() == 0
        tags = page.locator("#errors tbody td:nth-child(2)").all_text_contents()
        assert sorted(tags) == sorted(visible_tag(tag) for tag in HOSTILE_TAGS)
    finally:
        context.close()
