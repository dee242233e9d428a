"""Crawl a 20,000-tag registry and report memory, descriptors, seconds and requests.

The fleet is ``--repositories`` x ``--tags`` (default 100 x 200). Pushing 20,000 distinct images
costs about seven requests each (blob HEAD, upload POST and PUT for the config and the image's own
layer, plus the manifest) and takes minutes, so each repository has ``--distinct`` (default 40)
distinct version tags and CI-style alias tags (``build-00042``) fill it up to ``--tags``, each
pointing at one of that repository's versions. A crawl still GETs one manifest per tag (it
cannot know a tag is an alias before asking), and the frames still hold one row per tag; only the
config blobs are fewer, since the crawler fetches each digest once.

Every crawl runs in a fresh child process, nothing else in it: the full fleet, then
``--small-repositories`` of its repositories (the same shape, a tenth of the tags), to show memory
per tag stays flat. In each child: crawl 1 (timed; peak RSS as the kernel's high-water mark,
descriptors), crawl 2 on the same connection (no descriptor or RSS growth), crawl 3 under
tracemalloc (Python heap peak; pyarrow buffers are counted from pyarrow's own pool).

    python benchmarks/scale.py [--repositories 100] [--tags 200] [--distinct 40] [--small-repositories 10]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    load_average,
    markdown_table,
    open_descriptors,
    seeded_registry,
    write_section,
)

from regframe.testing import Fleet, make_fleet

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "scale"
WORKERS = 16
SMALL_LAYERS = {"layer_size_range": (200, 1_000), "base_layer_size_range": (1_000, 4_000)}
MB = 1024 * 1024


def alias_fleet(repositories: int, tags: int, distinct: int, seed: int = 0) -> Fleet:
    """``distinct`` version tags per repository (plus ``latest``/``stable``), then aliases up to ``tags``."""
    base = make_fleet(repositories=repositories, tags_per_repo=min(tags, distinct + 2), seed=seed, **SMALL_LAYERS)
    rng = random.Random(f"scale/{seed}")
    plan = {}
    for repository, repo_tags in base.tags.items():
        versions = [item for tag, item in repo_tags.items() if tag not in ("latest", "stable")]
        extended = dict(repo_tags)
        for n in range(tags - len(repo_tags)):
            extended[f"build-{n:05d}"] = rng.choice(versions)
        plan[repository] = extended
    return Fleet(plan, now=base.now)


# -- the crawling child -------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _arrow_bytes() -> int:
    import pyarrow

    return pyarrow.total_allocated_bytes()


def _release_free_memory() -> None:
    """Hand freed memory back to the kernel, so what RSS still keeps is live (or fragmented) memory.

    Two allocators keep what was freed: glibc's malloc and pyarrow's pool (mimalloc or jemalloc),
    which building frames with pyarrow-backed strings goes through.
    """
    import pyarrow

    ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    pyarrow.default_memory_pool().release_unused()


def _reset_peak() -> None:
    """Make the kernel's RSS high-water mark (VmHWM) start again from the current RSS.

    ``ru_maxrss`` cannot be reset this way: every thread that exits (a crawl's workers do) folds
    the process's high-water mark into it, so it would report an earlier peak.
    """
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def _peak_growth_mb(rss0_kb: int) -> float:
    return (_status_kb("VmHWM") - rss0_kb) / 1024


def crawl_child(
    url: str, repositories: list[str] | None, expected_tags: int, warmup: str, tracemalloc_run: bool
) -> dict:
    """Three crawls in this fresh process; memory is relative to just before crawl 1.

    A crawl of one repository on another connection goes first, so the lazy imports and thread
    stacks every crawl needs once are in the baseline rather than billed to the tags.
    """
    import tracemalloc

    import regframe

    with regframe.connect(url) as warm:
        warm.inventory([warmup], workers=WORKERS, progress=False)
    registry = regframe.connect(url)
    gc.collect()
    _reset_peak()
    rss0, fds0 = _status_kb("VmRSS"), open_descriptors()

    started = time.perf_counter()
    inv = registry.inventory(repositories, workers=WORKERS, progress=False)
    seconds = time.perf_counter() - started
    if len(inv.errors) or len(inv.tags) != expected_tags:
        raise RuntimeError(f"crawl found {len(inv.tags)} of {expected_tags} tags; errors: {inv.errors}")
    peak = _peak_growth_mb(rss0)
    frames = {name: int(frame.memory_usage(deep=True).sum()) for name, frame in inv.frames().items()}
    gc.collect()
    result = {
        "tags": len(inv.tags),
        "manifest_rows": len(inv.manifests),
        "layer_rows": len(inv.layers),
        "seconds": seconds,
        "requests": inv.stats["requests"],
        "total_requests": inv.stats["total_requests"],
        "rss_before_mb": rss0 / 1024,
        "peak_growth_mb": peak,
        "retained_rss_mb": (_status_kb("VmRSS") - rss0) / 1024,
        "frames": frames,
        "fds": [fds0, open_descriptors()],
    }
    _release_free_memory()
    result["trimmed_rss_mb"] = (_status_kb("VmRSS") - rss0) / 1024
    del inv
    gc.collect()

    _reset_peak()
    inv = registry.inventory(repositories, workers=WORKERS, progress=False)
    gc.collect()
    result["fds"].append(open_descriptors())
    result["rss_after_second_mb"] = (_status_kb("VmRSS") - rss0) / 1024
    del inv
    gc.collect()

    if tracemalloc_run:
        arrow0 = _arrow_bytes()
        tracemalloc.start()
        heap0 = tracemalloc.get_traced_memory()[0]
        inv = registry.inventory(repositories, workers=WORKERS, progress=False)
        gc.collect()
        heap, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        result["heap_peak_mb"] = (peak - heap0) / MB
        result["retained_heap_mb"] = (heap - heap0) / MB
        result["retained_arrow_mb"] = (_arrow_bytes() - arrow0) / MB
        del inv
    registry.close()
    return result


def run_child(url: str, repositories: list[str] | None, expected_tags: int, warmup: str, tracemalloc_run: bool) -> dict:
    request = json.dumps(
        {
            "url": url,
            "repositories": repositories,
            "expected_tags": expected_tags,
            "warmup": warmup,
            "tracemalloc_run": tracemalloc_run,
        }
    )
    done = subprocess.run(
        [sys.executable, __file__, "--child"], check=False, input=request, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"crawl process failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


# -- report -------------------------------------------------------------------------------------

_MEMORY = (
    ("peak_growth_mb", "peak RSS growth"),
    ("heap_peak_mb", "tracemalloc peak"),
    ("retained_rss_mb", "RSS kept after crawl 1"),
    ("rss_after_second_mb", "after crawl 2"),
    ("trimmed_rss_mb", "after crawl 1 + allocators' release"),
)


def _mib_per_tag(mib: float, tags: int) -> str:
    return f"{mib:.1f} ({mib * 1024 / tags:.1f})"


def report(fleet: Fleet, runs: list[tuple[str, dict]], command: str, seed_seconds: float, load: str) -> str:
    crawls = markdown_table(
        ["crawl", "tags", "manifest rows", "layer rows", "seconds", "requests", "requests/s"],
        [
            [
                label,
                f"{r['tags']:,}",
                f"{r['manifest_rows']:,}",
                f"{r['layer_rows']:,}",
                f"{r['seconds']:.1f}",
                f"{r['total_requests']:,}",
                f"{r['total_requests'] / r['seconds']:,.0f}",
            ]
            for label, r in runs
        ],
    )
    memory_rows = []
    for label, r in runs:
        frames_mib = sum(r["frames"].values()) / MB
        live = (
            _mib_per_tag(r["retained_heap_mb"] + r["retained_arrow_mb"], r["tags"]) if "retained_heap_mb" in r else "-"
        )
        memory_rows.append(
            [
                label,
                _mib_per_tag(frames_mib, r["tags"]),
                live,
                *(_mib_per_tag(r[key], r["tags"]) if key in r else "-" for key, _ in _MEMORY),
            ]
        )
    memory = markdown_table(
        ["crawl", "frames, deep", "live after crawl (heap + arrow)", *(name for _, name in _MEMORY)], memory_rows
    )
    frame_rows = [
        [label, *(f"{r['frames'][name] / MB:.2f}" for name in ("catalog", "tags", "manifests", "layers"))]
        for label, r in runs
    ]
    frames = markdown_table(["crawl", "catalog MiB", "tags MiB", "manifests MiB", "layers MiB"], frame_rows)
    fd_rows = [[label, *(f"{total} ({sockets})" for total, sockets in r["fds"])] for label, r in runs]
    descriptors = markdown_table(["crawl", "before", "after crawl 1", "after crawl 2 (same connection)"], fd_rows)

    full = runs[0][1]
    kinds = ", ".join(f"{n:,} {k}" for k, n in sorted(full["requests"].items()))
    marginal = ""
    if len(runs) > 1 and runs[1][1]["tags"] < full["tags"]:
        small = runs[1][1]
        extra = full["tags"] - small["tags"]
        parts = [f"frames {(sum(full['frames'].values()) - sum(small['frames'].values())) / extra:.0f} B"]
        parts += [f"{name} {(full[key] - small[key]) * 1024 / extra:.1f} KiB" for key, name in _MEMORY if key in full]
        marginal = "Marginal cost of one more tag (difference between the two crawls): " + ", ".join(parts) + ".\n\n"
    return (
        f"## Scale\n\n`{command}`\n\n"
        f"{fleet.tag_count:,} tags in {len(fleet.tags)} repositories: {len(fleet.manifests):,} distinct "
        f"manifests and {len(fleet.blobs):,} distinct blobs (tiny layers), seeded in {seed_seconds:.0f} s. "
        "Most tags are CI-style aliases of the repository's versions (see the script's docstring): "
        f"every tag still costs one manifest GET and one frame row. Full crawl requests: {kinds}.\n\n"
        f"Each crawl runs in a fresh process with `workers={WORKERS}`, after a one-repository warm-up "
        f"crawl on another connection; {load}.\n\n"
        f"{crawls}\n\nMemory in MiB (KiB per tag), relative to just before crawl 1. Peak RSS is "
        "VmHWM, reset through `/proc/self/clear_refs` before the crawl (`ru_maxrss` cannot be reset: "
        "exiting threads fold the process's earlier peak into it); live memory is tracemalloc's "
        "current plus pyarrow's allocated bytes; the allocators' release is glibc's `malloc_trim(0)` "
        "and pyarrow's `default_memory_pool().release_unused()`:\n\n"
        f"{memory}\n\n{marginal}Frames, `memory_usage(deep=True)`:\n\n{frames}\n\n"
        f"Open file descriptors (of which sockets):\n\n{descriptors}\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repositories", type=int, default=100)
    parser.add_argument("--tags", type=int, default=200, help="tags per repository")
    parser.add_argument("--distinct", type=int, default=40, help="distinct version tags per repository")
    parser.add_argument(
        "--small-repositories", type=int, default=10, help="repositories of the smaller crawl (0: skip it)"
    )
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the (slower) tracemalloc crawl")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        job = json.loads(sys.stdin.read())
        print(json.dumps(crawl_child(**job)))
        return

    fleet = alias_fleet(args.repositories, args.tags, args.distinct)
    tracemalloc_run = not args.no_tracemalloc
    load_before = load_average()
    started = time.perf_counter()
    with seeded_registry(fleet) as registry:
        seed_seconds = time.perf_counter() - started
        print(f"crawling {fleet.tag_count:,} tags", file=sys.stderr)
        warmup = fleet.repositories[-1]
        runs = [("full", run_child(registry.url, None, fleet.tag_count, warmup, tracemalloc_run))]
        if args.small_repositories:
            subset = fleet.repositories[: args.small_repositories]
            tags = sum(len(fleet.tags[r]) for r in subset)
            print(f"crawling {tags:,} tags", file=sys.stderr)
            runs.append((f"{len(subset)} repositories", run_child(registry.url, subset, tags, warmup, tracemalloc_run)))

    command = shlex.join(["python", "benchmarks/scale.py", *(sys.argv[1:] if argv is None else argv)])
    load = f"1-minute load average {load_before:.1f} at the start, {load_average():.1f} at the end"
    body = report(fleet, runs, command, seed_seconds, load)
    print(body)
    if not args.no_write:
        write_section(args.results, SECTION, body)
        print(f"written to {args.results}", file=sys.stderr)


if __name__ == "__main__":
    main()
