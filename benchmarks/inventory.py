"""Crawl a seeded registry with regframe and with what users would otherwise reach for.

One registry (default 50 repositories x 40 tags = 2,000 tags, 3 shared base layers, 10%
multi-platform tags, alias tags sharing digests) is crawled by:

1. regframe as it runs by default (adaptive concurrency), cold (empty digest cache) and warm (same cache
   again: catalog, tag lists, one HEAD per tag);
2. python-dxf as its README shows it: one ``DXF`` per repository, sequential, a manifest and a
   config blob per tag (children too), no dedup;
3. ``skopeo list-tags`` per repository and ``skopeo inspect`` per tag, one process per call, on a
   subset of whole repositories (``--skopeo-tags``) and extrapolated linearly to every tag;
4. ``wrk`` replaying exactly the requests of regframe's cold crawl (same Accept headers), 16
   connections, 2 threads: the registry's own ceiling.

Then regframe and python-dxf again on a smaller fleet through a ``FaultProxy`` adding 20 ms per
request (a remote registry). Rounds are interleaved and every figure is the median of
``--repeat`` rounds; ratios are medians of per-round ratios. Results go to stdout and to a section
of ``benchmarks/RESULTS.md``.

    python benchmarks/inventory.py [--repositories 50] [--tags 40] [--skopeo-tags 400] [--repeat 3]
    python benchmarks/inventory.py --profile    # where the client spends its CPU in a cold crawl
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import re
import resource
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit

import dxf
from _common import (
    Sample,
    Series,
    Target,
    cpu_seconds,
    load_average,
    measure,
    process_cpu_seconds,
    proxy_process,
    seeded_registry,
    series_table,
    targets_table,
    write_section,
)

import regframe
from regframe.testing import Fleet, make_fleet
from regframe.testing.faultproxy import FaultProxy, RecordingServer

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "inventory"
LATENCY = 0.02
WRK_CONNECTIONS = 16
WRK_THREADS = 2
# regframe as it runs by default: adaptive concurrency (32 in flight on loopback, more through a slow link).
WORKERS: int | None = None
SMALL_LAYERS = {"layer_size_range": (200, 1_000), "base_layer_size_range": (1_000, 4_000)}
# The full crawl runs on a realistic mix: half the versions signed, SBOMs and buildx attestations on some.
ACCESSORIES = {"signed_ratio": 0.5, "sbom_ratio": 0.3, "attestation_ratio": 0.1}
# skopeo refuses to inspect a referrers list (an index of artifacts); a user reads it with --raw.
FALLBACK_TAG = re.compile(r"sha256-[0-9a-f]{64}")

WRK_SCRIPT = """\
-- Replays a request list ("METHOD PATH [ACCEPT]" per line); threads take alternate lines.
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
end

function init(args)
   requests = {}
   for line in io.lines(args[1]) do
      local method, path, accept = line:match("^(%S+) (%S+) ?(.*)$")
      local headers = {}
      if accept ~= "" then headers["Accept"] = accept end
      requests[#requests + 1] = wrk.format(method, path, headers)
   end
   step = tonumber(args[2])
   position = id % #requests + 1
end

function request()
   local r = requests[position]
   position = position + step
   if position > #requests then position = position - #requests end
   return r
end
"""


# -- regframe -----------------------------------------------------------------------------------


def regframe_crawl(
    registry: regframe.Registry, cache: Path, fleet: Fleet, *, warm: bool, stats: dict | None = None
) -> int:
    """One ``inventory()`` call (frames included); checks it found the fleet and, warm, only did HEADs.

    ``stats`` receives the crawl's own ``inv.stats``.
    """
    inv = registry.inventory(workers=WORKERS, cache=cache, progress=False)
    if stats is not None:
        stats.update(inv.stats)
    if len(inv.errors) or len(inv.tags) != fleet.tag_count:
        raise RuntimeError(f"crawl found {len(inv.tags)} of {fleet.tag_count} tags, errors: {inv.errors}")
    kinds = set(inv.stats["requests"])
    if warm and kinds != {"catalog", "tags", "manifest_head"}:
        raise RuntimeError(f"warm crawl made {inv.stats['requests']}, not only catalog, tags and HEADs")
    return inv.stats["total_requests"]


def record_requests(url: str) -> list[tuple[str, str, str]]:
    """(method, target, Accept) of every request a cold crawl makes, recorded by a pass-through
    server in front of the registry (a crawl that is not timed)."""
    with RecordingServer(url) as recorder, regframe.connect(recorder.url) as registry:
        inv = registry.inventory(workers=WORKERS, progress=False)
        recorded = [r for r in recorder.requests if r.path != "/v2/"]
    if len(recorded) != inv.stats["total_requests"]:
        raise RuntimeError(f"recorded {len(recorded)} requests, the crawl counted {inv.stats['total_requests']}")
    return [(r.method, r.path, r.headers.get("accept", "") if "/manifests/" in r.path else "") for r in recorded]


# -- python-dxf ---------------------------------------------------------------------------------

_dxf_requests = Counter()


class _CountedBase(dxf.DXFBase):
    def _base_request(self, method, path, **kwargs):
        _dxf_requests["total"] += 1
        return super()._base_request(method, path, **kwargs)


class _CountedDXF(_CountedBase, dxf.DXF):
    pass


def dxf_crawl(host: str, fleet: Fleet, repositories: list[str] | None = None) -> int:
    """Catalog, tags, each tag's manifest, index children and config blobs, the README way; only
    ``repositories`` (each must be listed) when given."""
    _dxf_requests.clear()
    listed = _CountedBase(host, insecure=True).list_repos()
    wanted = listed if repositories is None else repositories
    missing = set(wanted) - set(listed)
    if missing:
        raise RuntimeError(f"python-dxf did not list {sorted(missing)}")
    tags = 0
    for repository in wanted:
        client = _CountedDXF(host, repository, insecure=True)
        for tag in client.list_aliases():
            manifest = json.loads(client.get_manifest_and_response(tag)[0])
            images = [
                json.loads(client.get_manifest_and_response(child["digest"])[0])
                for child in manifest.get("manifests", [])
            ] or [manifest]
            for image in images:
                json.loads(b"".join(client.pull_blob(image["config"]["digest"])))
            tags += 1
    expected = fleet.tag_count if repositories is None else sum(len(fleet.tags[r]) for r in repositories)
    if tags != expected:
        raise RuntimeError(f"python-dxf read {tags} of {expected} tags")
    return _dxf_requests["total"]


# -- skopeo -------------------------------------------------------------------------------------


def _run(args: list[str]) -> str:
    done = subprocess.run(args, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def skopeo_loop(host: str, repositories: list[str], requests: int = 0) -> int:
    """What a shell loop does; skopeo has no catalog command, so curl reads it.

    Returns ``requests`` (the pass's request count, known from :func:`skopeo_requests`).
    """
    _run(["curl", "-sf", f"http://{host}/v2/_catalog"])
    inspected = 0
    for repository in repositories:
        listed = json.loads(_run(["skopeo", "list-tags", "--tls-verify=false", f"docker://{host}/{repository}"]))
        for tag in listed["Tags"]:
            raw = ["--raw"] if FALLBACK_TAG.fullmatch(tag) else []
            json.loads(_run(["skopeo", "inspect", *raw, "--tls-verify=false", f"docker://{host}/{repository}:{tag}"]))
            inspected += 1
    if not inspected:
        raise RuntimeError(f"skopeo found no tags in {repositories}")
    return requests


def skopeo_subset(fleet: Fleet, wanted: int) -> list[str]:
    """Whole repositories, in plan order, until at least ``wanted`` tags (0: all of them)."""
    chosen, tags = [], 0
    for repository, repo_tags in fleet.tags.items():
        if wanted and tags >= wanted:
            break
        chosen.append(repository)
        tags += len(repo_tags)
    return chosen


def skopeo_requests(url: str, repositories: list[str]) -> int:
    """Requests one skopeo pass makes, counted once by a pass-through proxy (not timed)."""
    with FaultProxy(url) as proxy:
        skopeo_loop(proxy.host, repositories)
        return proxy.stats.requests


# -- wrk ----------------------------------------------------------------------------------------


def wrk_replay(url: str, requests: list[tuple[str, str, str]], workdir: Path, seconds: int, server_pid: int) -> Sample:
    """Replay ``requests`` for ``seconds``, as the time wrk's rate needs for ``len(requests)``.

    Client CPU is wrk's own (RUSAGE_CHILDREN); both CPU figures are scaled the same way.
    """
    listing = workdir / "requests.txt"
    listing.write_text("".join(f"{m} {p} {a}".rstrip() + "\n" for m, p, a in requests))
    script = workdir / "replay.lua"
    script.write_text(WRK_SCRIPT)
    args = [
        "wrk",
        f"-t{WRK_THREADS}",
        f"-c{WRK_CONNECTIONS}",
        f"-d{seconds}s",
        "-s",
        str(script),
        url,
        "--",
        str(listing),
        str(WRK_THREADS),
    ]
    cpu_before, server_before = cpu_seconds(resource.RUSAGE_CHILDREN), process_cpu_seconds(server_pid)
    output = _run(args)
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before
    server = process_cpu_seconds(server_pid) - server_before
    made, wall = _parse_wrk(output)
    share = len(requests) / made
    return Sample(wall * share, len(requests), cpu * share, server * share)


def bare_replay(
    url: str, requests: list[tuple[str, str, str]], server_pid: int, threads: int = WRK_CONNECTIONS
) -> Sample:
    """The same requests from ``threads`` Python threads over raw keep-alive sockets, reading each answer
    by its Content-Length and nothing more: what a threaded Python client costs before it does any of a
    crawl's work (no header parsing, no digests, no JSON, no frames). A floor for comparison, not a client."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    taken = iter(range(len(requests)))
    lock = threading.Lock()

    def work() -> None:
        with socket.create_connection((host, port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                with lock:
                    index = next(taken, None)
                if index is None:
                    return
                method, path, accept = requests[index]
                fields = f"Host: {host}:{port}\r\n" + (f"Accept: {accept}\r\n" if accept else "")
                sock.sendall(f"{method} {path} HTTP/1.1\r\n{fields}\r\n".encode())
                data = b""
                while b"\r\n\r\n" not in data:
                    data += sock.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                found = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                length = int(found.group(1)) if found else 0
                while len(body) < length:
                    body += sock.recv(65536)

    def run() -> int:
        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return len(requests)

    return measure(run, server_pid=server_pid)


def _parse_wrk(text: str) -> tuple[int, float]:
    if "Non-2xx" in text or "Socket errors" in text:
        raise RuntimeError(f"wrk saw failed requests:\n{text}")
    found = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)\b", text)
    if not found:
        raise RuntimeError(f"cannot read wrk's output:\n{text}")
    unit = {"ms": 0.001, "s": 1.0, "m": 60.0}[found.group(3)]
    return int(found.group(1)), float(found.group(2)) * unit


# -- rounds -------------------------------------------------------------------------------------


@contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="regframe-bench-") as path:
        yield Path(path)


Runner = Callable[[], Sample]


def run_rounds(label: str, runners: dict[Series, Runner], repeat: int) -> None:
    """Run every runner once per round, so slow phases of the machine hit all of them. Each round starts
    with the next runner: whoever goes first meets a server fresh from start-up or from the previous
    round's last client (python-dxf leaves hundreds of closed connections), and that must not always be
    the same one."""
    items = list(runners.items())
    for round_ in range(repeat):
        print(f"{label}: round {round_ + 1}/{repeat}", file=sys.stderr)
        start = round_ % len(items)
        for series, runner in items[start:] + items[:start]:
            series.add(runner())


def regframe_pair(url: str, fleet: Fleet, cold: Series, warm: Series, server_pid: int | None) -> Runner:
    """A runner doing a cold crawl into a fresh cache, then the warm one (recorded into ``warm``).

    Each crawl gets a new connection, made before the clock starts.
    """

    def crawl(cache: Path, *, is_warm: bool) -> Sample:
        stats: dict = {}
        with regframe.connect(url) as registry:
            sample = measure(
                lambda: regframe_crawl(registry, cache, fleet, warm=is_warm, stats=stats), server_pid=server_pid
            )
        return replace(sample, inner_seconds=stats["seconds"])

    def run() -> Sample:
        with scratch() as cache:
            sample = crawl(cache, is_warm=False)
            warm.add(crawl(cache, is_warm=True))
        return sample

    return run


def per_round(numerator: Series, denominator: Series, *, rate: bool = False) -> float:
    """Median over rounds of numerator/denominator seconds (or requests/s), pairs from the same round."""

    def value(series: Series, sample: Sample) -> float:
        return sample.requests / sample.seconds if rate else series.scale * sample.seconds

    return statistics.median(
        value(numerator, a) / value(denominator, b) for a, b in zip(numerator.samples, denominator.samples, strict=True)
    )


def run_loopback(args: argparse.Namespace) -> tuple[str, list[Target]]:
    fleet = make_fleet(repositories=args.repositories, tags_per_repo=args.tags, **SMALL_LAYERS, **ACCESSORIES)
    cold, warm = Series("regframe, cold cache"), Series("regframe, warm cache")
    dxf_ = Series("python-dxf, sequential, README style")
    wrk = Series(f"wrk replaying the cold crawl's requests ({WRK_CONNECTIONS} connections)")
    subset = skopeo_subset(fleet, args.skopeo_tags)
    subset_tags = sum(len(fleet.tags[r]) for r in subset)
    skopeo = Series("skopeo list-tags + inspect per tag, shell loop", scale=fleet.tag_count / subset_tags)
    if subset_tags < fleet.tag_count:
        skopeo.note = f"timed on {subset_tags:,} tags, extrapolated linearly to {fleet.tag_count:,}"

    with seeded_registry(fleet) as registry, scratch() as work:
        url, host, pid = registry.url, registry.host, registry.pid
        replay = record_requests(url)
        runners: dict[Series, Runner] = {
            cold: regframe_pair(url, fleet, cold, warm, pid),
            dxf_: lambda: measure(lambda: dxf_crawl(host, fleet), server_pid=pid),
        }
        if not args.no_skopeo:
            skopeo_pass = skopeo_requests(url, subset)
            runners[skopeo] = lambda: measure(
                lambda: skopeo_loop(host, subset, skopeo_pass), server_pid=pid, who=resource.RUSAGE_CHILDREN
            )
        runners[wrk] = lambda: wrk_replay(url, replay, work, args.wrk_seconds, pid)
        run_rounds("loopback", runners, args.repeat)

    shown = [cold, warm, dxf_] + ([] if args.no_skopeo else [skopeo]) + [wrk]
    targets = [
        Target("regframe req/s / wrk req/s (registry ceiling)", ">=", 0.7, per_round(cold, wrk, rate=True)),
        Target("python-dxf time / regframe time, loopback", ">=", 3, per_round(dxf_, cold)),
    ]
    if not args.no_skopeo:
        targets.append(Target("skopeo time / regframe time, loopback", ">=", 10, per_round(skopeo, cold)))
    targets += [
        Target("regframe client CPU per request, cold crawl", "<=", 0.35, cold.cpu_ms_per_request, " ms"),
        Target("warm crawl time / cold crawl time, loopback", "<=", 0.4, per_round(warm, cold)),
    ]
    kinds = Counter(f"{method} {_kind(path)}" for method, path, _ in replay)
    text = (
        f"Loopback: {_describe(fleet)}. The cold crawl's requests: "
        + ", ".join(f"{n:,} {k}" for k, n in sorted(kinds.items()))
        + ".\n\n"
        + series_table(shown)
        + "\n\n"
        + _inner_note(cold, warm)
    )
    return text, targets


def run_proxied(args: argparse.Namespace) -> tuple[str, list[Target]]:
    fleet = make_fleet(repositories=args.proxy_repositories, tags_per_repo=args.proxy_tags, **SMALL_LAYERS)
    cold, warm = Series("regframe, cold cache"), Series("regframe, warm cache")
    dxf_ = Series("python-dxf, sequential, README style")
    with seeded_registry(fleet) as registry, proxy_process(registry.url, LATENCY) as proxy:
        run_rounds(
            "20 ms proxy",
            {
                cold: regframe_pair(proxy.url, fleet, cold, warm, proxy.pid),
                dxf_: lambda: measure(lambda: dxf_crawl(proxy.host, fleet), server_pid=proxy.pid),
            },
            args.repeat,
        )
    targets = [
        Target("python-dxf time / regframe time, 20 ms proxy", ">=", 15, per_round(dxf_, cold)),
        Target("warm crawl time / cold crawl time, 20 ms proxy", "<=", 0.4, per_round(warm, cold)),
    ]
    text = (
        f"Through `FaultProxy(latency={LATENCY})` (+{LATENCY * 1000:.0f} ms per request; the proxy runs "
        f"in its own process; its CPU is in the last column): {_describe(fleet)}.\n\n"
        + series_table([cold, warm, dxf_], server="proxy")
        + "\n\n"
        + _inner_note(cold, warm)
    )
    return text, targets


def _inner_note(cold: Series, warm: Series) -> str:
    return (
        f"regframe's own `inv.stats['seconds']` (the crawl, without building frames): cold "
        f"{cold.inner_seconds:.2f} s, warm {warm.inner_seconds:.2f} s."
    )


def _describe(fleet: Fleet) -> str:
    return (
        f"{fleet.tag_count:,} tags in {len(fleet.tags)} repositories, {len(fleet.manifests):,} distinct "
        f"manifests, {len(fleet.blobs):,} distinct blobs"
    )


def _kind(path: str) -> str:
    if "/manifests/" in path:
        return "manifest"
    if "/blobs/" in path:
        return "blob"
    return "tag list" if path.endswith("/tags/list") else "catalog"


# -- profile ------------------------------------------------------------------------------------


def profile_cold_crawl(args: argparse.Namespace) -> tuple[pstats.Stats, int]:
    """cProfile of one cold crawl, every thread, timed in per-thread CPU time; also the request count.

    cProfile alone sees only the calling thread, and its default wall-clock timer would bill the
    16 workers' waits on the registry as time spent in ``recv_into``.
    """
    fleet = make_fleet(repositories=args.repositories, tags_per_repo=args.tags, **SMALL_LAYERS)
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_in_thread(*_):
        profile = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(profile)
        profile.enable()

    with seeded_registry(fleet) as registry, regframe.connect(registry.url) as client:
        main = cProfile.Profile(time.thread_time)
        profiles.append(main)
        threading.setprofile(start_in_thread)
        main.enable()
        try:
            inv = client.inventory(workers=WORKERS, progress=False)
        finally:
            main.disable()
            threading.setprofile(None)
    stats = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        stats.add(profile)
    return stats, inv.stats["total_requests"]


def format_profile(stats: pstats.Stats, requests: int, top: int = 15) -> str:
    out = io.StringIO()
    stats.stream = out
    out.write(f"cold crawl of {requests:,} requests, all threads, CPU seconds (profiler overhead included)\n")
    for key in ("tottime", "cumulative"):
        out.write(f"\n-- top {top} by {key} --\n")
        stats.sort_stats(key).print_stats(top)
    return out.getvalue()


# -- output -------------------------------------------------------------------------------------


def machine() -> str:
    registry = _run(["dpkg-query", "-W", "-f=${Version}", "docker-registry"]).strip()
    wrk = _run(["dpkg-query", "-W", "-f=${Version}", "wrk"]).strip()
    return (
        f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, {datetime.now(UTC):%Y-%m-%d}; "
        f"Python {platform.python_version()}, regframe {regframe.__version__}, docker-registry {registry}, "
        f"python-dxf {version('python-dxf')}, {_run(['skopeo', '--version']).strip()}, wrk {wrk}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repositories", type=int, default=50)
    parser.add_argument("--tags", type=int, default=40, help="tags per repository, aliases included")
    parser.add_argument(
        "--skopeo-tags",
        type=int,
        default=400,
        help="time skopeo on whole repositories totalling this many tags and extrapolate (0: every tag)",
    )
    parser.add_argument("--no-skopeo", action="store_true")
    parser.add_argument("--proxy-repositories", type=int, default=10)
    parser.add_argument("--proxy-tags", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--wrk-seconds", type=int, default=5)
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--profile", action="store_true", help="print a cProfile of one cold crawl (all threads) and exit"
    )
    args = parser.parse_args(argv)
    for tool in ("skopeo", "wrk", "curl"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (make system-deps)")
    if args.profile:
        print(format_profile(*profile_cold_crawl(args)))
        return

    load_before = load_average()
    loopback, targets = run_loopback(args)
    proxied, proxy_targets = run_proxied(args)
    load = f"1-minute load average {load_before:.1f} at the start, {load_average():.1f} at the end"
    command = shlex.join(["python", "benchmarks/inventory.py", *(sys.argv[1:] if argv is None else argv)])
    body = (
        f"## Full crawl\n\n`{command}`\n\n{machine()}; {load}. Median of {args.repeat} interleaved rounds; "
        "registry storage on tmpfs, log level error, access log off; regframe as it runs by default "
        "(adaptive concurrency). `seconds` is the whole `inventory()` call, frames included; wrk's "
        "seconds and CPU are what its rate needs for the cold crawl's requests.\n\n"
        f"{loopback}\n\n{proxied}\n\n### Targets\n\nRatios are medians of per-round ratios.\n\n"
        + targets_table(targets + proxy_targets)
    )
    print(body)
    if not args.no_write:
        write_section(args.results, SECTION, body)
        print(f"\nwritten to {args.results}", file=sys.stderr)


if __name__ == "__main__":
    main()
