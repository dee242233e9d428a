"""Adaptive concurrency against a fixed pool of 16 and python-dxf, from loopback to a 100 ms link.

1. Loopback (no proxy): regframe with adaptive concurrency (the default, up to 64 in flight), regframe
   with ``workers=16`` (the former fixed pool), ``wrk`` replaying the cold crawl's requests (the
   registry's ceiling), and the same requests from 16 bare Python threads on raw sockets (what a threaded
   Python client reaches before doing any of a crawl's work), on ``--repositories`` x ``--tags``.
2. Through ``FaultProxy(latency=...)`` in its own process at 0, 20 and 100 ms per request, on the smaller
   ``--proxy-repositories`` x ``--proxy-tags`` fleet: regframe adaptive, regframe ``workers=16``, and
   python-dxf as its README shows it (sequential, a new connection per request). python-dxf reads a
   subset of whole repositories (``--dxf-tags`` at 20 and 100 ms, every tag at 0 ms) and its time is
   extrapolated linearly to every tag, as the skopeo figures of ``inventory.py`` are.
3. Quota units (manifest GETs, what Docker Hub counts) of a cold crawl without a budget, a cold crawl
   with one (tags resolved by HEAD first) and a warm crawl, on the loopback fleet.

Every crawl is cold (no cache) on a fresh connection made before the clock starts. Rounds are
interleaved; figures are medians over ``--repeat`` rounds and ratios are medians of per-round ratios
of seconds (wrk: of requests per second). Results go to stdout and to a section of RESULTS.md.

    python benchmarks/adaptive.py [--repositories 20] [--tags 40] [--proxy-repositories 10] [--proxy-tags 20]
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from _common import (
    Sample,
    Series,
    Target,
    load_average,
    markdown_table,
    measure,
    proxy_process,
    seeded_registry,
    series_table,
    targets_table,
    write_section,
)
from inventory import (
    SMALL_LAYERS,
    _describe,
    bare_replay,
    dxf_crawl,
    machine,
    per_round,
    record_requests,
    run_rounds,
    scratch,
    skopeo_subset,
    wrk_replay,
)

import regframe
from regframe.testing import Fleet, make_fleet

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "adaptive"
LATENCIES = (0.0, 0.02, 0.1)
FIXED = 16


def crawl(url: str, fleet: Fleet, workers: int | None, server_pid: int | None, limits: list) -> Sample:
    """One cold ``inventory()`` (frames included) on a fresh connection; checks it read the whole fleet."""
    stats: dict = {}
    with regframe.connect(url, docker_config=False) as registry:

        def run() -> int:
            inv = registry.inventory(workers=workers, progress=False)
            if len(inv.errors) or len(inv.tags) != fleet.tag_count:
                raise RuntimeError(f"crawl found {len(inv.tags)} of {fleet.tag_count} tags, errors: {inv.errors}")
            stats.update(inv.stats)
            return inv.stats["total_requests"]

        sample = measure(run, server_pid=server_pid)
    limits.append(stats["concurrency"])
    return replace(sample, inner_seconds=stats["seconds"])


def dxf_subset(host: str, fleet: Fleet, repositories: list[str]) -> int:
    """python-dxf on whole repositories only (it is slow through a slow link), the README way."""
    return dxf_crawl(host, fleet, repositories)


def limits_note(name: str, limits: list[dict]) -> str:
    finals = sorted(limit["final"] for limit in limits)
    peaks = sorted(limit["peak"] for limit in limits)
    return f"{name}: in-flight limit at the end {finals}, highest {peaks}"


def run_loopback(args: argparse.Namespace) -> tuple[str, list[Target], Fleet, str]:
    fleet = make_fleet(repositories=args.repositories, tags_per_repo=args.tags, **SMALL_LAYERS)
    adaptive = Series("regframe, adaptive (default, up to 64)")
    fixed = Series(f"regframe, workers={FIXED}")
    wrk = Series(f"wrk replaying the cold crawl's requests ({FIXED} connections)")
    bare = Series(f"bare Python: {FIXED} threads, raw sockets, answers read by length only (a floor, not a client)")
    limits: list[dict] = []
    with seeded_registry(fleet) as registry, scratch() as work:
        url, pid = registry.url, registry.pid
        replay = record_requests(url)
        runners: dict[Series, Callable[[], Sample]] = {
            adaptive: lambda: crawl(url, fleet, None, pid, limits),
            fixed: lambda: crawl(url, fleet, FIXED, pid, []),
            wrk: lambda: wrk_replay(url, replay, work, args.wrk_seconds, pid),
            bare: lambda: bare_replay(url, replay, pid),
        }
        run_rounds("loopback", runners, args.repeat)
        quota = quota_units(url, fleet)
    targets = [
        Target(
            "regframe adaptive req/s / wrk req/s (registry ceiling), loopback",
            ">=",
            0.9,
            per_round(adaptive, wrk, rate=True),
        ),
        Target(f"workers={FIXED} time / adaptive time, loopback (no loss)", ">=", 1.0, per_round(fixed, adaptive)),
    ]
    text = (
        f"Loopback: {_describe(fleet)}.\n\n"
        + series_table([adaptive, fixed, wrk, bare])
        + f"\n\n{limits_note('adaptive', limits)}. The bare Python replay reached "
        + f"{per_round(bare, wrk, rate=True):.2f}x of wrk's requests per second, regframe "
        + f"{per_round(adaptive, wrk, rate=True):.2f}x."
    )
    return text, targets, fleet, quota


def quota_units(url: str, fleet: Fleet) -> str:
    """Manifest GETs (Docker Hub's quota units) of a cold crawl without a budget, with one, and warm."""
    with (
        tempfile.TemporaryDirectory(prefix="regframe-bench-") as cache,
        regframe.connect(url, docker_config=False) as registry,
    ):
        plain = registry.inventory(progress=False)
        budgeted = registry.inventory(progress=False, budget=10**9, cache=cache)
        warm = registry.inventory(progress=False, budget=10**9, cache=cache)
    rows = [
        ["cold, no budget (GET by tag)", plain.stats["quota"]["manifest_gets"], plain.stats["total_requests"]],
        [
            "cold, with a budget (HEAD by tag, GET per new digest)",
            budgeted.stats["quota"]["manifest_gets"],
            budgeted.stats["total_requests"],
        ],
        ["warm cache, with a budget", warm.stats["quota"]["manifest_gets"], warm.stats["total_requests"]],
    ]
    return (
        f"Quota units (manifest GETs, what Docker Hub counts) on the loopback fleet ({fleet.tag_count:,} tags, "
        f"{len(fleet.manifests):,} distinct manifests):\n\n"
        + markdown_table(["crawl", "quota units", "requests"], [[a, f"{b:,}", f"{c:,}"] for a, b, c in rows])
    )


def one_latency(url: str, fleet: Fleet, latency: float, subset: list[str], repeat: int) -> tuple[list, str, float]:
    """The three clients through the proxy at one latency: a summary row, a section, python-dxf's ratio."""
    ms = f"{latency * 1000:.0f} ms"
    subset_tags = sum(len(fleet.tags[r]) for r in subset)
    adaptive = Series("regframe, adaptive (default, up to 64)")
    fixed = Series(f"regframe, workers={FIXED}")
    whole = latency == 0
    chosen = fleet.repositories if whole else subset
    dxf_ = Series(
        "python-dxf, sequential, README style",
        scale=1.0 if whole else fleet.tag_count / subset_tags,
        note="" if whole else f"timed on {subset_tags:,} tags, extrapolated linearly to {fleet.tag_count:,}",
    )
    limits: list[dict] = []
    with proxy_process(url, latency) as proxy:
        run_rounds(
            f"{ms} proxy",
            {
                adaptive: lambda: crawl(proxy.url, fleet, None, proxy.pid, limits),
                fixed: lambda: crawl(proxy.url, fleet, FIXED, proxy.pid, []),
                dxf_: lambda: measure(lambda: dxf_subset(proxy.host, fleet, chosen), server_pid=proxy.pid),
            },
            repeat,
        )
    versus_dxf, versus_fixed = per_round(dxf_, adaptive), per_round(fixed, adaptive)
    row = [
        ms,
        f"{adaptive.seconds:.2f}",
        f"{fixed.seconds:.2f}",
        f"{dxf_.seconds:.1f}",
        f"{versus_fixed:.2f}x",
        f"{versus_dxf:.1f}x",
    ]
    section = (
        f"#### +{ms} per request\n\n"
        + series_table([adaptive, fixed, dxf_], server="proxy")
        + f"\n\n{limits_note('adaptive', limits)}."
    )
    return row, section, versus_dxf


def run_proxied(args: argparse.Namespace) -> tuple[str, list[Target]]:
    fleet = make_fleet(repositories=args.proxy_repositories, tags_per_repo=args.proxy_tags, **SMALL_LAYERS)
    subset = skopeo_subset(fleet, args.dxf_tags)
    sections, targets, summary = [], [], []
    with seeded_registry(fleet) as registry:
        for latency in LATENCIES:
            row, section, versus_dxf = one_latency(registry.url, fleet, latency, subset, args.repeat)
            summary.append(row)
            sections.append(section)
            if latency == 0.1:
                targets.append(Target("python-dxf time / adaptive time, 100 ms proxy", ">=", 20, versus_dxf))
    header = [
        "latency per request",
        "adaptive s",
        f"workers={FIXED} s",
        "python-dxf s",
        f"workers={FIXED} / adaptive",
        "python-dxf / adaptive",
    ]
    text = (
        f"Through `FaultProxy(latency=...)` in its own process (its CPU is the last column): {_describe(fleet)}."
        "\n\n" + markdown_table(header, summary) + "\n\n" + "\n\n".join(sections)
    )
    return text, targets


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repositories", type=int, default=20)
    parser.add_argument("--tags", type=int, default=40, help="tags per repository, aliases included")
    parser.add_argument("--proxy-repositories", type=int, default=10)
    parser.add_argument("--proxy-tags", type=int, default=20)
    parser.add_argument("--dxf-tags", type=int, default=40, help="python-dxf's subset through the 20 and 100 ms proxy")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--wrk-seconds", type=int, default=5)
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    for tool in ("wrk", "skopeo"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (make system-deps)")

    load_before = load_average()
    loopback, targets, _, quota = run_loopback(args)
    proxied, proxy_targets = run_proxied(args)
    load = f"1-minute load average {load_before:.1f} at the start, {load_average():.1f} at the end"
    command = shlex.join(["python", "benchmarks/adaptive.py", *(sys.argv[1:] if argv is None else argv)])
    body = (
        f"## Adaptive concurrency\n\n`{command}`\n\n{machine()}; {load}. Median of {args.repeat} interleaved "
        "rounds; every crawl cold, on a fresh connection; `seconds` is the whole `inventory()` call. Ratios "
        "are medians of per-round ratios of seconds (against wrk: of requests per second); python-dxf's "
        "seconds through the 20 and 100 ms proxy are extrapolated linearly from a subset of whole "
        f"repositories.\n\n{loopback}\n\n{quota}\n\n### Through a slower link\n\n{proxied}\n\n"
        "### Targets\n\n" + targets_table(targets + proxy_targets)
    )
    print(body)
    if not args.no_write:
        write_section(args.results, SECTION, body)
        print(f"\nwritten to {args.results}", file=sys.stderr)


if __name__ == "__main__":
    main()
