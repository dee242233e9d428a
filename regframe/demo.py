"""Demo registries: ``make demo`` and the registry the example notebooks work on.

``python -m regframe.demo --out audit-report`` starts a local registry, seeds a realistic fleet (images,
signatures, SBOMs, attestations, Helm charts, artifacts and a few orphans) and audits it with
``regframe audit``; ``--keep-running`` leaves the registry up so the report can be explored further
(notebooks: ``REGFRAME_URL=<url>``). :func:`notebook_registry` is the one setup call of every notebook.
Both use the test harness (``regframe.testing``) and Debian's ``docker-registry``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

from . import Registry, connect
from .processes import Terminated, raising_on_sigterm

# What `make demo` audits: enough repositories and history for every table of the report to say something.
DEMO_FLEET: dict[str, Any] = {
    "base_layers": 3,
    "multi_platform_ratio": 0.15,
    "oci_ratio": 0.5,
    "fake_created_ratio": 0.03,
    "seed": 2026,
    "age_range_days": (2, 1800),
    "layer_size_range": (5_000, 400_000),
    "base_layer_size_range": (300_000, 1_500_000),
    # What registries hold beside images: signatures, SBOMs, buildx attestations, Helm charts, artifacts, orphans.
    "signed_ratio": 0.6,
    "sbom_ratio": 0.4,
    "attestation_ratio": 0.25,
    "helm_charts": 4,
    "artifacts": 2,
    "orphans": 3,
}
# What the notebooks explore: small enough to seed in a second, varied enough for every chart.
NOTEBOOK_FLEET: dict[str, Any] = {
    "repositories": 8,
    "tags_per_repo": 6,
    "multi_platform_ratio": 0.2,
    "seed": 7,
    "age_range_days": (5, 700),
    "layer_size_range": (2_000, 60_000),
    "base_layer_size_range": (50_000, 200_000),
}
# The supply-chain notebook's fleet: the same images, signed, with SBOMs, attestations and a few orphans.
SUPPLY_CHAIN_FLEET: dict[str, Any] = {
    **NOTEBOOK_FLEET,
    "signed_ratio": 0.6,
    "sbom_ratio": 0.4,
    "attestation_ratio": 0.25,
    "helm_charts": 2,
    "artifacts": 1,
    "orphans": 2,
}

_notebook_lock = threading.Lock()
_notebook_urls: dict[bool, str] = {}


def notebook_registry(*, supply_chain: bool = False) -> Registry:
    """The registry a notebook works on, connected.

    ``REGFRAME_URL`` (with ``REGFRAME_USER`` and ``REGFRAME_PASSWORD`` when it needs a login) when it
    is set; otherwise a throw-away local registry seeded with a small synthetic fleet, started on the
    first call, shared by later calls in the same process (re-running a cell starts nothing new) and
    stopped when the process (the notebook's kernel) exits. ``supply_chain``: the local fleet also
    carries signatures, SBOMs, attestations, Helm charts and orphans (``SUPPLY_CHAIN_FLEET``).
    """
    url = os.environ.get("REGFRAME_URL") or _local_notebook_registry(supply_chain)
    return connect(url, user=os.environ.get("REGFRAME_USER"), password=os.environ.get("REGFRAME_PASSWORD"))


def _local_notebook_registry(supply_chain: bool = False) -> str:
    from .testing import make_fleet, seeded_registry

    with _notebook_lock:
        if supply_chain not in _notebook_urls:
            harness = contextlib.ExitStack()
            atexit.register(harness.close)
            fleet = make_fleet(**(SUPPLY_CHAIN_FLEET if supply_chain else NOTEBOOK_FLEET))
            _notebook_urls[supply_chain] = harness.enter_context(seeded_registry(fleet)).url
        return _notebook_urls[supply_chain]


def main(argv: list[str] | None = None) -> int:
    from . import cli
    from .testing import local_registry, make_fleet, seed

    p = argparse.ArgumentParser(
        prog="python -m regframe.demo", description="Seed a local registry with a realistic fleet and audit it."
    )
    p.add_argument("--out", default="audit-report")
    p.add_argument("--repositories", type=int, default=32)
    p.add_argument("--tags", type=int, default=14, help="tags per repository")
    p.add_argument("--keep-running", action="store_true")
    args = p.parse_args(argv)

    fleet = make_fleet(repositories=args.repositories, tags_per_repo=args.tags, now=datetime.now(UTC), **DEMO_FLEET)
    print(f"Starting a local registry and seeding {fleet} ...", flush=True)
    with raising_on_sigterm(lambda signum: Terminated(128 + signum)), local_registry() as reg:
        started = time.perf_counter()
        with connect(reg.url, docker_config=False) as client:
            seed(client, fleet)
        print(f"Seeded in {time.perf_counter() - started:.1f} s: {reg.url}\n", flush=True)
        code = cli.main(
            [
                "audit",
                reg.url,
                "--out",
                args.out,
                "--older-than",
                "180d",
                "--keep-last",
                "3",
                "--keep",
                r"^(latest|stable)$",
            ]
        )
        if args.keep_running:
            print(f"Registry still running at {reg.url} (pid {reg.pid}); Ctrl-C or SIGTERM to stop.", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except (KeyboardInterrupt, Terminated):
                pass
    return code


if __name__ == "__main__":
    sys.exit(main())
