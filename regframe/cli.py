"""The ``regframe`` command: an audit report for registry owners, and the client calls as JSON."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from .client import errors as E
from .client.atomic_files import write_atomically

SUMMARY_TOP = 10
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and newline, DEL, C1
_CONTROLS_AND_LINES = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: object, *, one_line: bool = False) -> str:
    """``text`` with control characters shown as ``\\x1b`` escapes: what a registry sends (tags, names,
    error messages) must not drive the terminal (OSC 52 clipboard writes, screen clears, titles).
    ``one_line`` escapes tabs and newlines too, for a field printed within a line."""
    pattern = _CONTROLS_AND_LINES if one_line else _CONTROLS
    return pattern.sub(lambda found: f"\\x{ord(found.group()):02x}", str(text))


def _write_csv(path: Path, frame) -> None:
    """A report CSV for spreadsheets, written without following a link planted at ``path``."""
    from .inventory.inventory import neutralize_formulas

    write_atomically(path, [neutralize_formulas(frame).to_csv(index=False).encode()])


def _connection_options(args) -> dict:
    """``regframe.connect``'s options from the shared connection arguments; the password from standard input."""
    password = None
    if getattr(args, "password_stdin", False):
        if not args.user:
            raise ValueError("--password-stdin needs --user")
        password = sys.stdin.readline().rstrip("\r\n")
    elif args.user:
        raise ValueError("--user needs --password-stdin (passwords are never taken on the command line)")
    options = {"user": args.user, "password": password}
    if getattr(args, "ca_bundle", None):
        options["ca_bundle"] = args.ca_bundle
    if getattr(args, "insecure", False):
        options["verify"] = False
    if getattr(args, "insecure_auth", False):
        options["allow_insecure_auth"] = True
    return {k: v for k, v in options.items() if v is not None}


def _connect(args):
    from .registry import connect

    return connect(args.url, **_connection_options(args))


def _check_rules(args) -> None:
    """Bad rules are reported before anything touches the network."""
    from .analysis import parse_duration

    parse_duration(args.older_than)
    for name in ("keep", "match"):
        pattern = getattr(args, name)
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"--{name} {pattern!r} is not a valid regular expression: {exc}") from None
    if args.keep_last is not None and args.keep_last < 0:
        raise ValueError("--keep-last must be 0 or more")


def audit(args) -> int:
    from .analysis import cleanup_plan, reclaimable_bytes, shared_layers, stale_tags, storage_usage
    from .cleanup_command import load_policy

    policy = load_policy(args)
    _check_rules(args)
    out = Path(args.out)
    with _connect(args) as reg:
        inv = reg.inventory(
            workers=args.workers, cache=args.cache, progress=not args.no_progress and sys.stderr.isatty()
        )
    usage = storage_usage(inv.layers)
    shared = shared_layers(inv.layers)
    stale = (
        policy.evaluate(inv.manifests)
        if policy
        else stale_tags(
            inv.manifests, older_than=args.older_than, keep_last=args.keep_last, keep=args.keep, match=args.match
        )
    )
    reclaim = reclaimable_bytes(stale, inv.layers)
    inv.to_csv(out, spreadsheet_safe=True)
    _write_csv(out / "storage_usage.csv", usage)
    shared_out = shared.copy()
    shared_out["repository_list"] = shared_out["repository_list"].map(lambda names: " ".join(names))
    _write_csv(out / "shared_layers.csv", shared_out)
    stale_out = stale.copy()
    stale_out["age_days"] = stale_out["age"].dt.total_seconds() / 86400
    _write_csv(out / "stale_tags.csv", stale_out.drop(columns=["age"]))
    _write_csv(out / "cleanup_plan.csv", cleanup_plan(stale).drop(columns=["age"], errors="ignore"))
    text = printable(summary_text(inv, usage, stale, reclaim, args))
    write_atomically(out / "summary.txt", [text.encode()])
    print(text)
    return 0 if inv.errors.empty else 1


def cleanup(args) -> int:
    from .cleanup_command import run

    return run(args)


def summary_text(inv, usage, stale, reclaim: int, args) -> str:
    from .units import format_bytes

    attrs = usage.attrs
    lines = [
        f"regframe audit of {inv.url}",
        "",
        f"  repositories        {len(inv.catalog):>12,}",
        f"  tags                {len(inv.tags):>12,}",
        f"  images (platforms)  {len(inv.manifests):>12,}",
        f"  stored (distinct)   {format_bytes(attrs.get('total_bytes', 0)):>12}   layers counted once",
        f"  logical (naive sum) {format_bytes(attrs.get('logical_bytes', 0)):>12}   what per-tag sums report",
        f"  dedup ratio         {attrs.get('dedup_ratio', 1.0):>11.2f}x",
        "",
        f"Top {SUMMARY_TOP} repositories by exclusive bytes (what deleting the repository would free):",
    ]
    top = usage.sort_values("exclusive_bytes", ascending=False).head(SUMMARY_TOP)
    width = max([len(str(r)) for r in top["repository"]] + [10])
    lines.append(f"  {'repository':<{width}}  {'exclusive':>10}  {'shared':>10}  {'tags':>5}")
    for row in top.itertuples(index=False):
        lines.append(
            f"  {row.repository!s:<{width}}  {format_bytes(row.exclusive_bytes):>10}  "
            f"{format_bytes(row.shared_bytes):>10}  {row.tags:>5}"
        )
    n_stale = int(stale["stale"].sum())
    rules = f"older than {args.older_than}"
    if args.keep_last is not None:
        rules += f", keeping the newest {args.keep_last} per repository"
    if args.keep:
        rules += f", keeping tags matching {args.keep!r}"
    if getattr(args, "policy", None):
        rules = f"policy {args.policy} ({stale.attrs.get('policy_format')})"
    lines += [
        "",
        f"Stale tags ({rules}): {n_stale:,} of {len(stale):,}",
        f"Reclaimable after deleting them and running garbage collection: {format_bytes(reclaim)}",
        "  (blobs still used by a kept tag are not counted; the registry frees space only when its",
        "   garbage collector runs)",
    ]
    if not inv.errors.empty:
        lines += ["", f"{len(inv.errors)} item(s) could not be read; see errors.csv. Numbers count only what was read."]
    lines += [
        "",
        f"Report files in {Path(args.out).resolve()}:",
        "  catalog.csv tags.csv manifests.csv layers.csv errors.csv",
        "  storage_usage.csv shared_layers.csv stale_tags.csv cleanup_plan.csv summary.txt",
        "",
    ]
    return "\n".join(lines)


def _print_json(value) -> None:
    print(printable(json.dumps(value, indent=2, default=str)))


def tags(args) -> int:
    with _connect(args) as reg:
        result = reg.tags(args.repository, with_hashes=args.hashes, auto_paginate=True)
    if args.json:
        _print_json(result)
    else:
        for tag in result.get("tags", []):
            line = printable(tag, one_line=True)
            print(f"{line}\t{printable(result['hashes'][tag], one_line=True)}" if args.hashes else line)
    return 0 if result else 1


def manifest(args) -> int:
    with _connect(args) as reg:
        found = reg.manifest(args.repository, args.reference)
    if not found:
        print(printable(f"{args.repository}:{args.reference} not found"), file=sys.stderr)
        return 1
    if args.json:
        _print_json({"digest": found.digest, "media_type": found.media_type, "manifest": dict(found)})
    else:
        print(printable(found.raw.decode("utf-8", "replace")))
    return 0


def digest(args) -> int:
    with _connect(args) as reg:
        value = reg.digest(args.repository, args.tag, platform=args.platform)
    _print_json({"digest": value}) if args.json else print(printable(value, one_line=True))
    return 0


def dashboard(args) -> int:
    from .dashboard import serve

    return serve(args.url, port=args.port, allow_delete=args.allow_delete, **_connection_options(args))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="regframe", description="Container registry audits as DataFrames.")
    sub = top.add_subparsers(dest="command", required=True)

    def connection(p):
        p.add_argument("url", help="registry URL, e.g. https://registry.example.com")
        p.add_argument("--user", help="user name; the password is read from standard input")
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
    a.add_argument("--older-than", default="90d", help="stale threshold, e.g. 90d, 6w, 1y (default 90d)")
    a.add_argument("--keep-last", type=int, help="always keep the newest N tags of each repository")
    a.add_argument("--keep", help="always keep tags matching this regular expression")
    a.add_argument("--match", help="only tags matching this regular expression may be stale")
    a.add_argument(
        "--policy",
        help="cleanup policy file (TOML, YAML or JSON; native, GitLab, ECR or Harbor) "
        "deciding the stale tags instead of --older-than/--keep-last/--keep/--match",
    )
    a.add_argument("--workers", type=int, default=16, help="concurrent requests (default 16)")
    a.add_argument("--cache", help="digest cache file or directory, reused across audits")
    a.add_argument("--no-progress", action="store_true", help="no progress bar")
    a.set_defaults(run=audit)

    c = sub.add_parser("cleanup", help="show (and with --apply, carry out) what a cleanup policy deletes")
    connection(c)
    c.add_argument("--policy", required=True, help="policy file: TOML, YAML or JSON")
    c.add_argument(
        "--format",
        choices=["gitlab", "ecr", "harbor", "native"],
        help="the policy's format (default: detected from its keys)",
    )
    c.add_argument("--out", help="directory for cleanup_plan.csv (and cleanup_result.csv after --apply)")
    c.add_argument("--apply", action="store_true", help="delete the planned tags, after confirmation")
    c.add_argument("--yes", action="store_true", help="with --apply, do not ask for confirmation")
    c.set_defaults(run=cleanup)

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


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (E.RegistryError, ValueError) as exc:
        print(f"regframe: error: {printable(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("regframe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
