"""``regframe cleanup``: a policy's plan per repository, as text and CSV, applied only after confirmation.

Exit status: 0 when done (a dry run, or every planned tag removed or skipped because it moved), 1 on a
failure (registry errors while applying, items the crawl could not read, an incomplete crawl with
``--apply``, no confirmation, a file that cannot be written), 2 on a bad policy or option, which is reported
before the registry is contacted, and on a registry that cannot be used (no answer, credentials rejected,
catalog refused: nothing was changed, as for every other command), 130 when Ctrl-C stops the crawl (no plan
is made from what it read).
"""

from __future__ import annotations

import sys

from .cli_shared import (
    chosen_repositories,
    connect_from,
    connection_options,
    error_text,
    field,
    output_folder,
    partial_scope_note,
    printable,
    stale_csvs,
    stopped_by_user,
    write_csv,
)
from .client import errors as E
from .processes import Terminated, raising_on_sigterm


def load_policy(args):
    """The policy named by ``--policy`` (None without it), checked in full before any request."""
    from .policy import Policy

    path = getattr(args, "policy", None)
    if path is None:
        if getattr(args, "project", None) is not None:
            raise ValueError("--project names a Harbor policy's project; it needs --policy")
        return None
    for option in ("older_than", "keep_last", "keep", "match"):
        if getattr(args, option, None) is not None:
            raise ValueError(f"--policy replaces --{option.replace('_', '-')}; give one or the other")
    policy = Policy.load(path, format=getattr(args, "format", None), project=getattr(args, "project", None))
    if policy.format == "harbor" and getattr(args, "project", None) is None:
        raise ValueError(
            "a Harbor retention policy covers one project: give --project NAME (it applies to the repositories "
            "under NAME/, whose selectors see their names without that prefix, as in Harbor)"
        )
    return policy


# Read errors a plan lists before saying how many more there are.
ERRORS_SHOWN = 20


def run(args) -> int:
    policy = load_policy(args)
    repositories = chosen_repositories(args)
    options = connection_options(args)
    out = output_folder(args.out) if args.out else None
    unusable = True  # until the crawl is done: a registry error then means nothing was changed (exit 2)
    try:
        with connect_from(args, options) as reg:
            inv = reg.inventory(repositories, progress=sys.stderr.isatty(), referrers=not args.no_referrers)
            unusable = False
            if stopped_by_user(inv):
                # A plan made from part of the registry is neither shown, written for a script, nor applied.
                print("regframe: interrupted; nothing planned, nothing deleted", file=sys.stderr)
                return 130
            result = policy.evaluate(inv.manifests, tags=inv.tags, errors=inv.errors)
            print(printable(plan_text(reg.url, policy, inv, result)))
            if out is not None:
                stale_csvs(out, result)
            planned = int(result["stale"].sum())
            if not args.apply:
                print(
                    f"Dry run: nothing deleted. Add --apply to delete these {planned:,} tags."
                    if planned
                    else "Dry run: nothing to delete."
                )
                return 0 if inv.errors.empty else 1
            if not inv.errors.empty or not inv.complete:
                print(
                    f"regframe: error: the crawl could not read {len(inv.errors)} item(s) (see errors above); "
                    "refusing to apply a plan made from partial data",
                    file=sys.stderr,
                )
                return 1
            if not planned:
                print("Nothing to delete.")
                return 0
            if not args.yes and not _confirmed(planned, result, reg.url):
                return 1
            try:
                # A tag is pointed at a placeholder and the placeholder deleted: SIGTERM between the two
                # must unwind through the removal's rollback, as Ctrl-C does, not end the process there.
                with raising_on_sigterm(lambda signum: Terminated(128 + signum)):
                    applied = reg.apply_cleanup(
                        result, dry_run=False, delete_manifests=bool(getattr(args, "delete_manifests", False))
                    )
            except (KeyboardInterrupt, Terminated):
                print(
                    "regframe: stopped during the cleanup: tags removed before stay removed, and the tag being "
                    "removed was put back on its image; run the cleanup again to finish",
                    file=sys.stderr,
                )
                raise
    except E.RegistryError as exc:
        print(f"regframe: error: {error_text(exc)}", file=sys.stderr)
        return 2 if unusable else 1
    print(printable(result_text(applied)))
    if out is not None:
        write_csv(out / "cleanup_result.csv", applied)
    return 1 if (applied["status"] == "error").any() else 0


def _confirmed(planned: int, result, url: str) -> bool:
    repositories = result.loc[result["stale"], "repository"].nunique()
    print(f"Type 'yes' to delete {planned:,} tags in {repositories:,} repositories of {url}: ", end="", flush=True)
    answer = sys.stdin.readline() if sys.stdin is not None else ""
    if not answer:
        print(
            "\nregframe: error: no answer on standard input; nothing deleted (--yes applies without asking)",
            file=sys.stderr,
        )
        return False
    if answer.strip().lower() not in ("yes", "y"):
        print("regframe: not confirmed; nothing deleted", file=sys.stderr)
        return False
    return True


def plan_text(url: str, policy, inv, result) -> str:
    """The plan per repository; every name, tag, reason and error in it on its own line."""
    from .analysis import GARBAGE_COLLECTION_ADVICE, reclaimable_by_repository, reclaimable_bytes
    from .units import format_bytes

    per_repository = reclaimable_by_repository(result, inv.layers, inv.referrers)
    freed = dict(zip(per_repository["repository"], per_repository["reclaimable_bytes"]))
    names = ", ".join(f"'{field(name)}'" for name in policy.rule_names)
    lines = [
        f"regframe cleanup of {field(url)}",
        f"policy {field(policy.source or '')} ({policy.format}): {len(policy.rules)} rule(s) {names}",
        "",
    ]
    width = max([len(field(tag)) for tag in result["tag"]] + [8])
    for repository, rows in result.groupby("repository", sort=True, observed=True):
        doomed = rows[rows["stale"]]
        lines.append(
            f"{field(repository)}: delete {len(doomed):,} of {len(rows):,} tags, "
            f"{format_bytes(int(freed.get(str(repository), 0)))} reclaimable after garbage collection"
        )
        for row in doomed.itertuples(index=False):
            lines.append(f"  delete  {field(row.tag):<{width}}  {field(row.reason)}")
        for row in rows[~rows["stale"]].itertuples(index=False):
            lines.append(f"  keep    {field(row.tag):<{width}}  {field(row.reason)}")
        lines.append("")
    total = int(result["stale"].sum())
    lines.append(
        f"Total: delete {total:,} of {len(result):,} tags in "
        f"{result.loc[result['stale'], 'repository'].nunique():,} repositories; "
        f"{format_bytes(reclaimable_bytes(result, inv.layers, inv.referrers))} reclaimable after garbage collection"
    )
    scope = partial_scope_note(inv)
    if scope:
        lines.append(scope + ".")
    lines.append(GARBAGE_COLLECTION_ADVICE)
    if not inv.errors.empty:
        lines.append(f"{len(inv.errors)} item(s) could not be read; the plan covers only what was read:")
        for row in inv.errors.head(ERRORS_SHOWN).itertuples(index=False):
            where = f"{row.repository}:{row.tag}" if isinstance(row.tag, str) else str(row.repository or "registry")
            lines.append(f"  {field(where)} ({field(row.stage)}): {field(row.error)}")
        if len(inv.errors) > ERRORS_SHOWN:
            lines.append(f"  and {len(inv.errors) - ERRORS_SHOWN:,} more")
    for note in result.attrs.get("policy_notes", policy.notes):
        lines.append(f"Note: {field(note)}")
    return "\n".join(lines)


def result_text(applied) -> str:
    """The outcome in the plan's terms (``outcome_count``), then every row not deleted and why, each on its
    own line."""
    from .actions.cleanup import outcome_count

    counts = applied["status"].value_counts()
    lines = [
        (
            f"Deleted {outcome_count(applied, 'deleted')}; skipped {int(counts.get('skipped', 0)):,}; "
            f"errors {int(counts.get('error', 0)):,}."
        )
    ]
    for row in applied[applied["status"] != "deleted"].itertuples(index=False):
        where = f"{row.repository}:{row.tag}" if isinstance(row.tag, str) else f"{row.repository}@{row.digest}"
        lines.append(f"  {row.status}  {field(where)}  {field(row.reason)}")
    return "\n".join(lines)
