"""``make demo``: a local registry seeded with a realistic fleet, audited with ``regframe audit``.

Run as ``python -m regframe.demo --out audit-report``; ``--keep-running`` leaves the registry up
so the report can be explored further (notebooks: ``REGFRAME_URL=<url>``).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone

from . import cli, connect
from .testing import local_registry
from .testing.images import make_fleet, seed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m regframe.demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="audit-report")
    p.add_argument("--repositories", type=int, default=32)
    p.add_argument("--tags", type=int, default=14, help="tags per repository")
    p.add_argument("--keep-running", action="store_true")
    args = p.parse_args(argv)

    now = datetime.now(timezone.utc)
    fleet = make_fleet(repositories=args.repositories, tags_per_repo=args.tags, base_layers=3,
                       multi_platform_ratio=0.15, oci_ratio=0.5, fake_created_ratio=0.03, seed=2026, now=now,
                       age_range_days=(2, 1800), layer_size_range=(5_000, 400_000),
                       base_layer_size_range=(300_000, 1_500_000))
    print(f"Starting a local registry and seeding {fleet} ...", flush=True)
    with local_registry() as reg:
        started = time.perf_counter()
        with connect(reg.url) as client:
            seed(client, fleet)
        print(f"Seeded in {time.perf_counter() - started:.1f} s: {reg.url}\n", flush=True)
        code = cli.main(["audit", reg.url, "--out", args.out, "--older-than", "180d", "--keep-last", "3",
                         "--keep", r"^(latest|stable)$"])
        if args.keep_running:
            print(f"Registry still running at {reg.url}; Ctrl-C to stop.", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return code


if __name__ == "__main__":
    sys.exit(main())
