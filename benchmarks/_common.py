"""Shared pieces of the crawl benchmarks: seeded registries, CPU accounting, Markdown tables.

The machine these run on is small and shared, so every number is a median of repeats and every
comparison is a ratio measured in the same run against the same registry.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from regframe import testing
from regframe.testing import Fleet, LocalRegistry

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Seeding writes tens of thousands of small files; on tmpfs that is I/O the registry does not wait for.
_FAST_TMP = Path("/dev/shm")


def fast_tmp() -> str | None:
    """A tmpfs directory for registry storage when there is one, else the default temp dir."""
    return str(_FAST_TMP) if _FAST_TMP.is_dir() and os.access(_FAST_TMP, os.W_OK) else None


@contextmanager
def seeded_registry(fleet: Fleet, *, workers: int = 8) -> Iterator[LocalRegistry]:
    """A local registry (error-level log, no access log, storage on tmpfs) holding ``fleet``."""
    with tempfile.TemporaryDirectory(prefix="regframe-bench-", dir=fast_tmp()) as storage:
        started = time.perf_counter()
        with testing.seeded_registry(
            fleet,
            workers=workers,
            read_timeout=30,
            log_level="error",
            log__accesslog__disabled=True,
            storage__filesystem__rootdirectory=storage,
        ) as registry:
            print(f"started a registry and seeded {fleet} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            yield registry


@dataclass(frozen=True)
class ProxyProcess:
    url: str
    pid: int

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]


@contextmanager
def proxy_process(upstream_url: str, latency: float) -> Iterator[ProxyProcess]:
    """A ``FaultProxy`` adding ``latency`` per request, in its own process.

    In the benchmark's own process the proxy's threads would compete for the GIL with the client
    under test and be billed to its CPU time; apart, its CPU can be measured like the registry's.
    """
    code = (
        "import sys\n"
        "from regframe.testing.faultproxy import FaultProxy\n"
        "with FaultProxy(sys.argv[1], latency=float(sys.argv[2])) as proxy:\n"
        "    print(proxy.url, flush=True)\n"
        "    sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, upstream_url, str(latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the fault proxy did not start (exit status {proc.poll()})")
        yield ProxyProcess(url, proc.pid)
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load_average() -> float:
    """The 1-minute load average: on a 2-core machine anything above ~2 means others are running too."""
    return os.getloadavg()[0]


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of another running process (the registry), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def open_descriptors() -> tuple[int, int]:
    """(open file descriptors, of which sockets) of this process."""
    fds = os.listdir("/proc/self/fd")
    sockets = 0
    for fd in fds:
        with suppress(OSError):
            sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return len(fds), sockets


@dataclass(frozen=True)
class Sample:
    """One timed run: ``client_cpu`` and ``server_cpu`` in seconds; ``requests`` as the client made them.

    ``inner_seconds`` is the part of ``seconds`` the client itself reports for its core work
    (regframe: the crawl, without building frames), where it reports one.
    """

    seconds: float
    requests: int
    client_cpu: float
    server_cpu: float | None = None
    inner_seconds: float | None = None


def measure(run: Callable[[], int], *, server_pid: int | None = None, who: int = resource.RUSAGE_SELF) -> Sample:
    """Time ``run`` (which returns its request count) with the CPU of ``who`` and of the server process."""
    server_before = process_cpu_seconds(server_pid) if server_pid else None
    cpu_before = cpu_seconds(who)
    started = time.perf_counter()
    requests = run()
    seconds = time.perf_counter() - started
    client_cpu = cpu_seconds(who) - cpu_before
    server_cpu = process_cpu_seconds(server_pid) - server_before if server_pid else None
    return Sample(seconds, requests, client_cpu, server_cpu)


@dataclass(eq=False)
class Series:
    """Repeated samples of one client; every figure is the median over the repeats."""

    name: str
    samples: list[Sample] = field(default_factory=list)
    note: str = ""
    scale: float = 1.0

    def add(self, sample: Sample) -> Sample:
        self.samples.append(sample)
        return sample

    @property
    def seconds(self) -> float:
        return self.scale * statistics.median(s.seconds for s in self.samples)

    @property
    def requests(self) -> int:
        return round(self.scale * statistics.median(s.requests for s in self.samples))

    @property
    def per_second(self) -> float:
        return statistics.median(s.requests / s.seconds for s in self.samples)

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * statistics.median(s.client_cpu / s.requests for s in self.samples)

    @property
    def server_ms_per_request(self) -> float | None:
        if any(s.server_cpu is None for s in self.samples):
            return None
        return 1000 * statistics.median(s.server_cpu / s.requests for s in self.samples)

    @property
    def inner_seconds(self) -> float | None:
        if any(s.inner_seconds is None for s in self.samples):
            return None
        return self.scale * statistics.median(s.inner_seconds for s in self.samples)

    @property
    def spread(self) -> str:
        """Fastest and slowest run, so the noise is visible next to the median."""
        times = [self.scale * s.seconds for s in self.samples]
        return f"{min(times):.2f}-{max(times):.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table: first column left-aligned, numbers right-aligned."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def series_table(series: Sequence[Series], server: str = "registry") -> str:
    header = [
        "client",
        "seconds (median)",
        "min-max",
        "requests",
        "requests/s",
        "client CPU ms/request",
        f"{server} CPU ms/request",
    ]
    rows = []
    for s in series:
        server = s.server_ms_per_request
        rows.append(
            [
                s.name + (f" ({s.note})" if s.note else ""),
                f"{s.seconds:.2f}",
                s.spread,
                f"{s.requests:,}",
                f"{s.per_second:,.0f}",
                f"{s.cpu_ms_per_request:.3f}",
                "-" if server is None else f"{server:.2f}",
            ]
        )
    return markdown_table(header, rows)


@dataclass(frozen=True)
class Target:
    """A goal such as ``>= 3`` (times faster) and what was measured against it."""

    name: str
    op: str
    bound: float
    value: float
    unit: str = "x"

    @property
    def met(self) -> bool:
        return self.value >= self.bound if self.op == ">=" else self.value <= self.bound

    def row(self) -> list[str]:
        return [
            self.name,
            f"{self.op} {self.bound:g}{self.unit}",
            f"{self.value:.2f}{self.unit}",
            "met" if self.met else "**missed**",
        ]


def targets_table(targets: Sequence[Target]) -> str:
    return markdown_table(["target", "goal", "measured", ""], [t.row() for t in targets])


def write_section(path: Path, name: str, body: str) -> None:
    """Replace this script's section of RESULTS.md, keeping the other scripts' sections."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n\n{end}\n"
    text = path.read_text() if path.exists() else "# Crawl benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)
