"""The ``regframe`` command: an audit report for registry owners, and the client calls as JSON."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .cli_shared import (
    OutputError,
    chosen_repositories,
    command_terms,
    connect_from,
    connection_options,
    error_text,
    field,
    output_folder,
    partial_scope_note,
    printable,
    referrers_option,
    repository_options,
    stale_csvs,
    stopped_by_user,
    write_csv,
    writing,
)
from .client import errors as E
from .client.atomic_files import write_atomically

if TYPE_CHECKING:
    from .history import Diff
    from .inventory import Inventory
    from .report import AuditData, Section

SUMMARY_TOP = 10
OLDER_THAN = "90d"
# Files an audit writes only sometimes: one this run does not write is removed from --out, so a reused
# folder never shows an earlier run's diff or chart as this audit's.
DIFF_OUTPUTS = tuple(f"diff_{name}.csv" for name in ("repositories", "tags", "storage", "stale", "totals"))
CHART_OUTPUTS = tuple(
    f"charts/{name}.{suffix}"
    for name in ("storage", "sharing", "stale_tags", "layer_sizes", "supply_chain", "growth")
    for suffix in ("png", "svg")
)


def _check_rules(args) -> None:
    """Bad rules are reported before anything touches the network."""
    from .analysis import parse_duration

    parse_duration(_older_than(args))
    for name in ("keep", "match"):
        pattern = getattr(args, name)
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"--{name} {pattern!r} is not a valid regular expression: {exc}") from None
    if args.keep_last is not None and args.keep_last < 0:
        raise ValueError("--keep-last must be 0 or more")


def _older_than(args) -> str:
    """``--older-than``, or its default when neither it nor ``--policy`` is given; it has no default of its
    own so that ``load_policy`` can refuse one given with ``--policy``."""
    return OLDER_THAN if args.older_than is None else args.older_than


def _budget(value: str) -> int | str:
    """``--budget``: a positive number of manifest GETs, or ``auto``."""
    if value == "auto":
        return value
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise argparse.ArgumentTypeError(f"expected a positive number of manifest GETs or 'auto', not {value!r}")


def audit(args) -> int:
    from .analysis import (
        dangling_entries,
        reclaimable_bytes,
        shared_layers,
        stale_tags,
        storage_usage,
        supply_chain,
    )
    from .cleanup_command import load_policy
    from .inventory.cache import DigestCache
    from .inventory.concurrency import check_workers
    from .report import AuditData

    gates = _parse_gates(args)
    policy = load_policy(args)
    _check_rules(args)
    repositories = chosen_repositories(args)
    check_workers(args.workers, args.max_workers)
    previous = _previous_snapshot(args)
    _check_gates_available(gates, args, previous)
    cache = DigestCache(args.cache) if args.cache else None
    options = connection_options(args)
    out = output_folder(args.out)
    if getattr(args, "history", None):
        output_folder(args.history, "--history")
    with connect_from(args, options) as reg:
        inv = reg.inventory(
            repositories,
            workers=args.workers,
            max_workers=args.max_workers,
            budget=args.budget,
            cache=cache,
            progress=not args.no_progress and sys.stderr.isatty(),
            referrers=not args.no_referrers,
        )
    inv.errors["error"] = inv.errors["error"].map(command_terms, na_action="ignore")
    interrupted = stopped_by_user(inv)
    usage = storage_usage(inv.layers)
    shared = shared_layers(inv.layers)
    seen = {"tags": inv.tags, "errors": inv.errors}
    stale = (
        policy.evaluate(inv.manifests, **seen)
        if policy
        else stale_tags(
            inv.manifests,
            older_than=_older_than(args),
            keep_last=args.keep_last,
            keep=args.keep,
            match=args.match,
            **seen,
        )
    )
    reclaim = reclaimable_bytes(stale, inv.layers, inv.referrers)
    coverage = supply_chain(inv.manifests, inv.referrers, **seen) if "kind" in inv.manifests.columns else None
    dangling = dangling_entries(inv.tags, inv.errors)
    with writing(out):
        inv.to_csv(out, spreadsheet_safe=True)
    write_csv(out / "storage_usage.csv", usage)
    shared_out = shared.copy()
    shared_out["repository_list"] = shared_out["repository_list"].map(lambda names: " ".join(names))
    write_csv(out / "shared_layers.csv", shared_out)
    stale_csvs(out, stale)
    _write_supply_chain(out, coverage, dangling)
    # A crawl stopped by Ctrl-C is reported as read, but is no snapshot to compare later audits with.
    since = None if interrupted else _record_history(args, inv, previous, policy)
    text = printable(summary_text(inv, usage, stale, reclaim, args, coverage, dangling) + _since_text(since, out))
    with writing(out / "summary.txt"):
        write_atomically(out / "summary.txt", [text.encode()])
    data = AuditData.from_inventory(
        inv,
        stale,
        rules=_stale_rules(args, stale),
        usage=usage,
        shared=shared,
        reclaimable_bytes=reclaim,
        supply_chain=coverage,
        dangling=dangling,
    )
    status = _write_report(args, out, text, data, [] if interrupted else gates, since)
    if interrupted:
        print("regframe: interrupted", file=sys.stderr)
        return 130
    return status


def _parse_gates(args) -> list:
    """``--fail-on`` expressions, each checked (name, operator, unit) before anything else happens."""
    from .report import parse_gates

    return parse_gates(getattr(args, "fail_on", None))


def _check_gates_available(gates: list, args, previous) -> None:
    """A gate on a total this audit cannot compute is refused before connecting: supply-chain totals need
    a crawl that classifies artifacts, growth needs ``--history`` (the first audit there has no growth;
    it runs and its undecided gate exits 2 after the report is written)."""
    from .report import check_available

    check_available(gates, artifacts=True, history=bool(getattr(args, "history", None)))


def _write_report(args, out: Path, text: str, data: AuditData, gates: list, since: Diff | None) -> int:
    """Write report.html, report.md, summary.json and charts/; print the chosen format; decide the exit status:
    2 when a gate could not be decided, 3 when one holds, 1 when items could not be read, else 0."""
    from .report import build_summary, evaluate, summary_json, undecided, write_report
    from .report.files import remove_outputs

    # Growth over what both audits covered, as the diff compares them (scopes and unread repositories).
    previous_stored = None if since is None else int(since.attrs["stored_bytes_before"])
    compared = None if since is None else int(since.attrs["stored_bytes_after"])
    unknown = None
    if since is not None and since.attrs.get("storage_compared", 1) == 0:
        left_out = since.attrs.get("storage_unknown") or since.attrs.get("repositories_out_of_scope")
        unknown = since.attrs.get("growth_undefined") if left_out else None
    summary = build_summary(
        data, previous_stored_bytes=previous_stored, compared_stored_bytes=compared, growth_unknown=unknown
    )
    results = evaluate(gates, summary)
    with writing(out):
        report = write_report(out, data, summary=summary, gates=results, since_last=_since_section(since, args))
        written = {path.relative_to(out).as_posix() for path in report.charts}
        unwritten = {name for name in CHART_OUTPUTS if name not in written}
        unwritten |= set(DIFF_OUTPUTS) if since is None else set()
        unwritten |= {"supply_chain.csv"} if data.supply_chain is None else set()
        remove_outputs(out, unwritten)
    output_format = getattr(args, "output_format", "text")
    if output_format == "json":
        print(summary_json(summary), end="")
    elif output_format == "markdown":
        print(printable(report.markdown))
    else:
        print(text)
    for result in results:
        if result.holds:
            print(f"regframe: --fail-on {field(result.describe())}: holds", file=sys.stderr)
    problem = undecided(results)
    if problem is not None:
        print(f"regframe: error: {field(problem)}", file=sys.stderr)
        return 2
    holding = sum(result.holds for result in results)
    if holding:
        print(f"regframe: {holding} of {len(results)} --fail-on gate(s) hold: exit status 3", file=sys.stderr)
        return 3
    return 0 if data.inventory.errors.empty else 1


def _stale_rules(args, stale) -> str:
    """How the stale tags were chosen, in words."""
    if getattr(args, "policy", None):
        return f"policy {args.policy} ({stale.attrs.get('policy_format')})"
    rules = f"older than {_older_than(args)}"
    if args.keep_last is not None:
        rules += f", keeping the newest {args.keep_last} per repository"
    if args.keep:
        rules += f", keeping tags matching {args.keep!r}"
    if getattr(args, "match", None):
        rules += f", only tags matching {args.match!r}"
    return rules


def cleanup(args) -> int:
    from .cleanup_command import run

    return run(args)


def _stale_options(args, policy) -> dict:
    """How ``history.diff`` decides stale tags: the policy, or the stale-tag options."""
    if policy is not None:
        return {"stale": policy.evaluate}
    return {"older_than": _older_than(args), "keep_last": args.keep_last, "keep": args.keep, "match": args.match}


def _previous_snapshot(args) -> Inventory | None:
    """With ``--history``: the newest snapshot there of the same registry URL, read before connecting, so a
    folder that is not one or a snapshot from a newer regframe stops the audit before any request (a damaged
    one is skipped with a warning). None for the first audit of this registry there."""
    from . import history

    if not getattr(args, "history", None):
        return None
    folder = Path(args.history)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--history {folder} is not a folder")
    return history.load_latest(folder, url=args.url)


def _record_history(args, inv: Inventory, previous: Inventory | None, policy) -> Diff | None:
    """Store this audit as a new snapshot under ``--history``; the diff from the previous one, if any."""
    from . import history

    if not getattr(args, "history", None):
        return None
    with writing(args.history):
        history.save(inv, args.history)
    return None if previous is None else history.diff(previous, inv, **_stale_options(args, policy))


def _since_text(since: Diff | None, out: Path) -> str:
    """The "since the last audit" part of the summary; its frames go to ``diff_*.csv`` beside the report."""
    if since is None:
        return ""
    with writing(out):
        since.to_csv(out, spreadsheet_safe=True)
    return (
        "Since the last audit:\n"
        + "\n".join(f"  {line}" if line else "" for line in since.summary().splitlines())
        + "\n  (diff_repositories.csv diff_tags.csv diff_storage.csv diff_stale.csv diff_totals.csv)\n"
    )


def _since_section(since: Diff | None, args) -> Section | None:
    """The report's "Since the last audit" section: totals, what changed, and stored bytes over every
    snapshot of ``--history``. None without a previous snapshot."""
    from . import history, plot
    from .report import Section, Table
    from .report.charts import render
    from .units import format_bytes

    if since is None:
        return None
    a = since.attrs

    def change(what: str) -> str:
        moved = f", {a['tags_moved']:,} moved" if what == "tags" else ""
        return (
            f"{a[f'{what}_before']:,} → {a[f'{what}_after']:,} "
            f"({a[f'{what}_added']:,} added, {a[f'{what}_removed']:,} removed{moved})"
        )

    growth = "" if a["growth_ratio"] is None else f", {a['growth_ratio']:+.1%}"
    sign = "+" if a["stored_bytes_delta"] > 0 else ""
    totals = [
        ("previous audit", _stamp(a["older_crawled_at"])),
        ("repositories with tags", change("repositories")),
        ("tags", change("tags")),
        (
            "stored",
            f"{format_bytes(a['stored_bytes_before'])} → {format_bytes(a['stored_bytes_after'])} "
            f"({sign}{format_bytes(a['stored_bytes_delta'])}{growth})",
        ),
        ("stale tags", f"{a['stale_before']:,} → {a['stale_after']:,} ({a['stale_new']:,} became stale)"),
    ]
    storage = since.storage[since.storage["stored_bytes_delta"] != 0]
    storage = storage.reindex(storage["stored_bytes_delta"].abs().sort_values(ascending=False, kind="stable").index)
    tags = since.tags.assign(
        old_digest=since.tags["old_digest"].map(_short_digest), new_digest=since.tags["new_digest"].map(_short_digest)
    )
    tables = [
        Table.from_frame(
            storage,
            {
                "repository": "repository",
                "stored_bytes_before": "stored before",
                "stored_bytes_after": "stored now",
                "stored_bytes_delta": "change",
                "exclusive_bytes_delta": "exclusive change",
            },
            bytes_columns=("stored_bytes_before", "stored_bytes_after", "stored_bytes_delta", "exclusive_bytes_delta"),
            change_columns=("stored_bytes_delta", "exclusive_bytes_delta"),
            limit=SUMMARY_TOP,
            caption="Repositories whose stored bytes changed, largest change first",
            noun="repositories",
        ),
        Table.from_frame(
            since.repositories,
            {"repository": "repository", "change": "change", "tags_before": "tags before", "tags_after": "tags now"},
            caption="Repositories added and removed (a repository with no tags counts as absent)",
            noun="repositories",
        ),
        Table.from_frame(
            tags,
            {"repository": "repository", "tag": "tag", "change": "change", "old_digest": "was", "new_digest": "now"},
            limit=50,
            caption="Tags added, removed and moved",
            noun="tags",
        ),
        Table.from_frame(
            since.stale,
            {"repository": "repository", "tag": "tag", "created": "created", "before": "before"},
            limit=50,
            caption="Tags that became stale",
            noun="tags",
        ),
    ]
    snapshots = history.load(args.history, url=args.url)
    chart = render("growth", "Stored bytes over time", lambda: plot.growth(snapshots, top=SUMMARY_TOP))
    notes = [line.strip().removeprefix("Note: ") for line in since.summary().splitlines() if "Note:" in line]
    return Section(
        title="Since the last audit",
        anchor="since-last",
        totals=totals,
        tables=[table for table in tables if table.rows],
        charts=[chart],
        note=" ".join(notes),
    )


def _stamp(iso: str | None) -> str:
    import pandas as pd

    return "undated" if iso is None else pd.Timestamp(iso).strftime("%Y-%m-%d %H:%M UTC")


def _short_digest(digest: object) -> str:
    return "" if not isinstance(digest, str) else digest[: len("sha256:") + 12]


def diff(args) -> int:
    """``regframe diff OLD NEW``: what changed between two saved audits, printed and with ``--out`` as CSV."""
    from . import history
    from .cleanup_command import load_policy

    policy = load_policy(args)
    _check_rules(args)
    out = output_folder(args.out) if args.out else None
    loaded = [_saved_audit(folder) for folder in (args.old, args.new)]
    result = history.diff(*loaded, **_stale_options(args, policy))
    print(printable(result.summary()))
    if out is not None:
        with writing(out):
            result.to_csv(out, spreadsheet_safe=True)
        print(
            printable(
                f"\nCSV files in {out.resolve()}: diff_repositories.csv diff_tags.csv diff_storage.csv "
                "diff_stale.csv diff_totals.csv"
            )
        )
    return 0


def _saved_audit(folder: str) -> Inventory:
    """The audit saved in ``folder`` (an ``--out`` folder or a snapshot); a ValueError naming the folder, and
    the file where the loader says, when it is not one or is damaged (a file cut short, a foreign one)."""
    from . import history
    from .history.snapshots import UNREADABLE
    from .inventory.inventory import InventoryFormatError

    if not Path(folder).is_dir():
        raise ValueError(f"{folder} is not a folder (give an audit's --out folder or a snapshot)")
    try:
        return history.load_snapshot(folder)
    except FileNotFoundError as exc:
        raise ValueError(f"{folder} is not a saved audit: {exc}") from None
    except InventoryFormatError:
        raise
    except UNREADABLE as exc:
        raise ValueError(f"{folder} cannot be read as a saved audit ({type(exc).__name__}: {exc})") from None


def _write_supply_chain(out: Path, coverage, dangling) -> None:
    """``supply_chain.csv`` (coverage per repository, when the crawl classified artifacts) and ``dangling.csv``
    (index entries whose manifest is gone) beside the frames; ``referrers.csv`` is one of the frames."""
    if coverage is not None:
        write_csv(out / "supply_chain.csv", coverage)
    write_csv(out / "dangling.csv", dangling)


def supply_chain_lines(coverage, dangling) -> list[str]:
    """The summary's supply-chain lines: signature, SBOM and attestation coverage (``coverage``, None when
    the crawl did not classify artifacts), orphaned accessories, and dangling index entries (told apart
    from orphans: the index is there, what it lists is gone)."""
    from .units import format_bytes

    lines = [""]
    if coverage is not None:
        totals = coverage.attrs
        images, signed = totals["images"], totals["signed"]
        share = f" ({signed / images:.0%})" if images else ""
        lines.append(
            f"Supply chain: signed: {signed:,} of {images:,} images{share}; SBOM: {totals['with_sbom']:,}; "
            f"attestation: {totals['with_attestation']:,}; orphaned accessories: {totals['orphaned']:,} "
            f"({format_bytes(totals['orphaned_bytes'])})"
        )
    if len(dangling):
        lines += _wrapped(
            f"Dangling index entries: {dangling.attrs['image']:,} in image indexes, {dangling.attrs['fallback']:,} "
            "in referrers fallback indexes list a manifest that is gone (what garbage-collect --delete-untagged "
            "leaves on distribution 2.x); see dangling.csv",
            "",
        )
    return lines if len(lines) > 1 else []


def _wrapped(text: str, indent: str) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=100, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False)


def summary_text(inv, usage, stale, reclaim: int, args, coverage, dangling) -> str:
    from .analysis import GARBAGE_COLLECTION_ADVICE
    from .units import format_bytes

    attrs = usage.attrs
    lines = [
        f"regframe audit of {field(inv.url)}",
        "",
        f"  repositories        {inv.repository_count():>12,}",
        f"  tags                {len(inv.tags):>12,}",
        f"  images (platforms)  {inv.image_count():>12,}",
        f"  stored (distinct)   {format_bytes(attrs.get('total_bytes', 0)):>12}   blobs counted once",
        f"  logical (naive sum) {format_bytes(attrs.get('logical_bytes', 0)):>12}   what per-tag sums report",
        f"  dedup ratio         {attrs.get('dedup_ratio', 1.0):>11.2f}x",
        "",
        f"Top {SUMMARY_TOP} repositories by exclusive bytes (what deleting the repository would free):",
    ]
    top = usage.sort_values("exclusive_bytes", ascending=False).head(SUMMARY_TOP)
    width = max([len(field(r)) for r in top["repository"]] + [10])
    lines.append(f"  {'repository':<{width}}  {'exclusive':>10}  {'shared':>10}  {'tags':>5}")
    for row in top.itertuples(index=False):
        lines.append(
            f"  {field(row.repository):<{width}}  {format_bytes(row.exclusive_bytes):>10}  "
            f"{format_bytes(row.shared_bytes):>10}  {row.tags:>5}"
        )
    n_stale = int(stale["stale"].sum())
    rules = _stale_rules(args, stale)
    lines += [
        "",
        f"Stale tags ({rules}): {n_stale:,} of {len(stale):,}",
        f"Reclaimable after deleting them and running garbage collection: {format_bytes(reclaim)}",
        "  (blobs still used by a kept tag are not counted)",
        *_wrapped(partial_scope_note(inv) or "", "  "),
        *_wrapped(GARBAGE_COLLECTION_ADVICE, "  "),
        *supply_chain_lines(coverage, dangling),
    ]
    if not inv.complete:
        lines += ["", *_wrapped(_stopped_early(inv), "")]
    if not inv.errors.empty:
        lines += ["", f"{len(inv.errors)} item(s) could not be read; see errors.csv. Numbers count only what was read."]
    out = Path(args.out).resolve()
    lines += [
        "",
        f"Report files in {out}:",
        "  report.html report.md summary.json summary.txt charts/*.png charts/*.svg",
        "  catalog.csv tags.csv manifests.csv layers.csv errors.csv",
        "  storage_usage.csv shared_layers.csv stale_tags.csv cleanup_plan.csv",
        "  referrers.csv supply_chain.csv dangling.csv",
        f"Open {out / 'report.html'} in a browser.",
        "",
    ]
    return "\n".join(lines)


def _stopped_early(inv) -> str:
    """Why an incomplete crawl stopped and how much of what the tag lists named it read, so a CI log says
    what summary.json's ``complete: false`` says."""
    rows = inv.errors[inv.errors["stage"].astype(object).isin(["budget", "rate-limited", "interrupted"])]
    why = field(rows["error"].iloc[0]) if len(rows) else "it stopped before reading everything"
    listed = int(inv.catalog["tag_count"].fillna(0).sum()) if "tag_count" in inv.catalog else 0
    read = len(inv.tags)
    counted = f"{read:,} of {listed:,} listed tags read" if listed >= read else f"{read:,} tags read"
    return f"INCOMPLETE CRAWL: {counted}; {why}"


def _print_json(value) -> None:
    print(printable(json.dumps(value, indent=2, default=str)))


def tags(args) -> int:
    """A repository that does not exist is an error (``NotFoundError``, exit 1); one whose tags were all
    deleted exists, so it lists nothing and exits 0, with a note that it is empty rather than missing."""
    with connect_from(args) as reg:
        try:
            result = reg.tags(args.repository, with_hashes=args.hashes, auto_paginate=True, missing_ok=False)
        except E.NotFoundError as exc:
            raise E.NotFoundError(f"repository {args.repository} not found ({exc})", status=exc.status) from None
    if not result:
        print(f"regframe: {field(args.repository)}: no tags", file=sys.stderr)
        result = {"name": args.repository, "tags": [], **({"hashes": {}} if args.hashes else {})}
    if args.json:
        _print_json(result)
    else:
        for tag in result["tags"]:
            line = field(tag)
            print(f"{line}\t{field(result['hashes'][tag])}" if args.hashes else line)
    return 0


def manifest(args) -> int:
    with connect_from(args) as reg:
        found = reg.manifest(args.repository, args.reference)
    if not found:
        raise E.NotFoundError(f"{args.repository}:{args.reference} not found", status=404)
    if args.json:
        _print_json({"digest": found.digest, "media_type": found.media_type, "manifest": dict(found)})
    else:
        print(printable(found.raw.decode("utf-8", "replace")))
    return 0


def digest(args) -> int:
    with connect_from(args) as reg:
        value = reg.digest(args.repository, args.tag, platform=args.platform)
    _print_json({"digest": value}) if args.json else print(field(value))
    return 0


def dashboard(args) -> int:
    """Bad options and a ``--port`` in use are refused first, then the registry is connected to once, as
    ``audit`` does: a registry that cannot be used (no answer, credentials rejected, a bad CA bundle) is an
    error here (exit 2), not a page whose only cell fails. Only then does Voilà start."""
    from .dashboard import check_port, serve

    options = connection_options(args)
    check_port(args.port)
    with connect_from(args, options):
        pass
    return serve(args.url, port=args.port, allow_delete=args.allow_delete, **options)


def _project_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--project",
        metavar="NAME",
        help="the project a Harbor --policy covers (required for one): its repositories are NAME/...",
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="regframe", description="Container registry audits as DataFrames.")
    sub = top.add_subparsers(dest="command", required=True)

    def connection(p):
        p.add_argument("url", help="registry URL, e.g. https://registry.example.com")
        p.add_argument("--user", help="user name; give the password on standard input with --password-stdin")
        p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        p.add_argument("--ca-bundle", help="PEM file of the CA that signed the registry's certificate")
        p.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
        p.add_argument(
            "--insecure-auth",
            action="store_true",
            help="allow sending the password over plain http to a host other than this machine",
        )

    a = sub.add_parser("audit", help="crawl a registry and write an audit report (CSV + summary)")
    connection(a)
    a.add_argument("--out", required=True, help="directory for the report")
    a.add_argument("--older-than", help="stale threshold, e.g. 90d, 6w, 1y (default 90d; not with --policy)")
    a.add_argument("--keep-last", type=int, help="always keep the newest N tags of each repository")
    a.add_argument("--keep", help="always keep tags matching this regular expression")
    a.add_argument("--match", help="only tags matching this regular expression may be stale")
    a.add_argument(
        "--policy",
        help="cleanup policy file (TOML, YAML or JSON; native, GitLab, ECR or Harbor) "
        "deciding the stale tags instead of --older-than/--keep-last/--keep/--match",
    )
    _project_option(a)
    repository_options(a, "crawl")
    referrers_option(a)
    a.add_argument(
        "--workers", type=int, help="a fixed number of requests in flight (default: adaptive, up to --max-workers)"
    )
    a.add_argument(
        "--max-workers",
        type=int,
        help="most requests in flight as concurrency adapts (default 64; at most 1024, as --workers)",
    )
    a.add_argument(
        "--budget",
        type=_budget,
        help="most manifest GETs to spend (pull quota units), or 'auto' to follow the registry's "
        "RateLimit-Remaining header and keep 10%% of its limit; the audit stops early, keeping what it read",
    )
    a.add_argument("--cache", help="digest cache file or directory, reused across audits")
    a.add_argument("--no-progress", action="store_true", help="no progress bar")
    a.add_argument(
        "--format",
        dest="output_format",
        choices=["text", "markdown", "json"],
        default="text",
        help="what goes to standard output: the text summary (default), report.md or summary.json",
    )
    a.add_argument(
        "--fail-on",
        action="append",
        metavar="EXPR",
        help="exit with status 3 when EXPR holds, e.g. 'reclaimable>5GB', 'stale>100', 'errors>0', 'growth>10%%'; "
        "names are summary.json keys or their short forms (repeatable; checked before connecting)",
    )
    a.add_argument(
        "--history",
        help="folder of dated snapshots: store this audit there and report what changed since the last one",
    )
    a.set_defaults(run=audit)

    c = sub.add_parser("cleanup", help="show (and with --apply, carry out) what a cleanup policy deletes")
    connection(c)
    c.add_argument("--policy", required=True, help="policy file: TOML, YAML or JSON")
    c.add_argument(
        "--format",
        choices=["gitlab", "ecr", "harbor", "native"],
        help="the policy's format (default: detected from its keys)",
    )
    _project_option(c)
    repository_options(c, "clean up")
    referrers_option(c)
    c.add_argument(
        "--out",
        help="directory for cleanup_plan.csv (the tags to delete), stale_tags.csv (every tag, kept or deleted, "
        "and why) and, after --apply, cleanup_result.csv",
    )
    c.add_argument("--apply", action="store_true", help="delete the planned tags, after confirmation")
    c.add_argument("--yes", action="store_true", help="with --apply, do not ask for confirmation")
    c.add_argument(
        "--delete-manifests",
        action="store_true",
        help="with --apply, also delete the images left unreferenced, so plain garbage-collect frees their space",
    )
    c.set_defaults(run=cleanup)

    f = sub.add_parser("diff", help="what changed between two saved audits (audit --out folders or snapshots)")
    f.add_argument("old", help="the older audit: an audit's --out folder or a --history snapshot")
    f.add_argument("new", help="the newer audit")
    f.add_argument("--out", help="directory for diff_*.csv")
    f.add_argument("--older-than", help="stale threshold, e.g. 90d, 6w, 1y (default 90d; not with --policy)")
    f.add_argument("--keep-last", type=int, help="always keep the newest N tags of each repository")
    f.add_argument("--keep", help="always keep tags matching this regular expression")
    f.add_argument("--match", help="only tags matching this regular expression may be stale")
    f.add_argument("--policy", help="cleanup policy file deciding the stale tags instead of the options above")
    _project_option(f)
    f.set_defaults(run=diff)

    t = sub.add_parser("tags", help="list a repository's tags")
    connection(t)
    t.add_argument("repository")
    t.add_argument("--hashes", action="store_true", help="with each tag's manifest digest")
    t.add_argument("--json", action="store_true")
    t.set_defaults(run=tags)

    m = sub.add_parser("manifest", help="print a manifest")
    connection(m)
    m.add_argument("repository")
    m.add_argument("reference", nargs="?", default="latest")
    m.add_argument("--json", action="store_true")
    m.set_defaults(run=manifest)

    d = sub.add_parser("digest", help="print a tag's manifest digest")
    connection(d)
    d.add_argument("repository")
    d.add_argument("tag")
    d.add_argument("--platform", help="os/arch[/variant] of a multi-platform image")
    d.add_argument("--json", action="store_true")
    d.set_defaults(run=digest)

    b = sub.add_parser("dashboard", help="serve the storage and stale-tag dashboard as a web page")
    connection(b)
    b.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    b.add_argument(
        "--allow-delete", action="store_true", help="enable the stale-tag widget's Delete button (off by default)"
    )
    b.set_defaults(run=dashboard)
    return top


@contextlib.contextmanager
def _command_line_warnings() -> Iterator[None]:
    """regframe's warnings as ``regframe: warning: MESSAGE``, like its other messages (Python's format shows
    regframe's source file and line), in the command's options, a skipped snapshot once however many readers
    skip it and unchecked TLS certificates once however many clients the command makes; others' warnings
    keep their own format. The previous format is back afterwards."""
    from .client.transport import InsecureTLSWarning
    from .history import SnapshotWarning

    previous = warnings.formatwarning
    skipped: set[Path] = set()
    insecure_told = False

    def regframe_format(message, category, filename, lineno, line=None) -> str:
        nonlocal insecure_told
        if not category.__module__.startswith("regframe."):
            return previous(message, category, filename, lineno, line)
        text = command_terms(str(message))
        if isinstance(message, SnapshotWarning) and message.path is not None:
            if message.path in skipped:
                return ""
            skipped.add(message.path)
        if isinstance(message, InsecureTLSWarning):
            if insecure_told:
                return ""
            insecure_told = True
        return f"regframe: warning: {field(text)}\n"

    warnings.formatwarning = regframe_format
    try:
        yield
    finally:
        warnings.formatwarning = previous


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with _command_line_warnings():
            return args.run(args)
    except E.NotFoundError as exc:
        print(f"regframe: error: {error_text(exc)}", file=sys.stderr)
        return 1
    except (E.RegistryError, ValueError) as exc:
        print(f"regframe: error: {error_text(exc)}", file=sys.stderr)
        return 2
    except (OutputError, OSError) as exc:
        print(f"regframe: error: {error_text(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("regframe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
