"""Time the analysis layer on a synthetic registry the size of a large real one.

Builds a layers frame of ``--rows`` rows (default 1,000,000: 5,000 repositories,
about 100,000 distinct layer digests, categorical string columns, as the crawler
makes them) and the matching manifests frame, then prints memory per row and the
seconds each analysis takes. Targets: <= 100 bytes per row, <= 1 s in total. Then the seconds a
cleanup policy of each format takes to evaluate on those manifests (no target: what a user waits for
before a policy's dry run shows).

    python benchmarks/analysis.py [--rows N] [--repeat K]
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from regframe.analysis import shared_layers, sharing_matrix, stale_tags, storage_usage
from regframe.policy import Policy

LAYERS_PER_IMAGE = 8
IMAGES_PER_REPO = 25
BASE_IMAGES = 50
OWN_LAYERS_PER_REPO = 20
TEAM_LAYERS = 2_000
MULTI_PLATFORM_EVERY = 10


def _digests(prefix: str, count: int) -> pd.Index:
    return pd.Index([f"sha256:{hashlib.sha256(f'{prefix}{i}'.encode()).hexdigest()}" for i in range(count)], dtype=str)


def _categorical(codes: np.ndarray, categories: pd.Index) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=categories)


def synthetic_frames(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A layers frame of about ``rows`` rows and its manifests frame.

    Every repository's images sit on one of a few shared base images (2 layers),
    draw their other layers from the repository's own pool (so its tags share
    layers) and now and then from a pool shared by teams; one tag in ten is a
    two-platform index (its second platform an extra image on the same tag).
    """
    rng = np.random.default_rng(seed)
    n_repo = max(1, rows // (IMAGES_PER_REPO * LAYERS_PER_IMAGE))
    n_image = n_repo * IMAGES_PER_REPO
    image_repo = np.repeat(np.arange(n_repo), IMAGES_PER_REPO)
    slot = np.tile(np.arange(IMAGES_PER_REPO), n_repo)
    second_platform = slot % MULTI_PLATFORM_EVERY == MULTI_PLATFORM_EVERY - 1
    tag_slot = np.where(second_platform, slot - 1, slot)

    n_base = BASE_IMAGES * 2
    n_own = n_repo * OWN_LAYERS_PER_REPO
    base = (image_repo % BASE_IMAGES) * 2
    own = (
        n_base
        + image_repo[:, None] * OWN_LAYERS_PER_REPO
        + rng.integers(0, OWN_LAYERS_PER_REPO, (n_image, LAYERS_PER_IMAGE - 2))
    )
    team = n_base + n_own + rng.integers(0, TEAM_LAYERS, own.shape)
    upper = np.where(rng.random(own.shape) < 0.1, team, own)
    layer_code = np.concatenate([base[:, None], base[:, None] + 1, upper], axis=1).ravel()
    n_digest = n_base + n_own + TEAM_LAYERS
    digest_size = np.where(np.arange(n_digest) < n_base, 30_000_000, rng.lognormal(14, 2, n_digest).astype(np.int64))

    repositories = pd.Index([f"team-{r % 97}/service-{r}" for r in range(n_repo)], dtype=str)
    tags = pd.Index([f"v1.{i}" for i in range(IMAGES_PER_REPO)], dtype=str)
    layer_digests = _digests("layer", n_digest)
    manifest_digests = _digests("manifest", n_image)
    platforms = pd.Index(["linux/amd64", "linux/arm64/v8"], dtype=str)
    platform = second_platform.astype(np.int8)
    row_image = np.repeat(np.arange(n_image), LAYERS_PER_IMAGE)

    layers = pd.DataFrame(
        {
            "repository": _categorical(image_repo[row_image], repositories),
            "tag": _categorical(tag_slot[row_image], tags),
            "manifest_digest": _categorical(row_image, manifest_digests),
            "platform": _categorical(platform[row_image], platforms),
            "position": np.tile(np.arange(LAYERS_PER_IMAGE, dtype=np.int16), n_image),
            "layer_digest": _categorical(layer_code, layer_digests),
            "size": pd.array(digest_size[layer_code], dtype="Int64"),
            "media_type": _categorical(
                np.zeros(len(row_image), dtype=np.int8),
                pd.Index(["application/vnd.oci.image.layer.v1.tar+gzip"], dtype=str),
            ),
        }
    )

    created = pd.Timestamp("2026-01-01", tz="UTC") - pd.to_timedelta(rng.integers(0, 730 * 86400, n_image), unit="s")
    created = created.where(rng.random(n_image) > 0.02)
    tag_digest = np.where(second_platform, np.arange(n_image) - 1, np.arange(n_image))
    image_size = pd.Series(digest_size[layer_code]).groupby(row_image).sum().to_numpy()
    manifests = pd.DataFrame(
        {
            "repository": _categorical(image_repo, repositories),
            "tag": _categorical(tag_slot, tags),
            "digest": _categorical(tag_digest, manifest_digests),
            "manifest_digest": _categorical(np.arange(n_image), manifest_digests),
            "platform": _categorical(platform, platforms),
            "created": created,
            "layer_count": np.full(n_image, LAYERS_PER_IMAGE, dtype=np.int16),
            "size": pd.array(image_size, dtype="Int64"),
        }
    )
    return layers, manifests


def policies() -> dict[str, Policy]:
    """One policy per format, each with a count rule and an age rule over the synthetic ``v1.N`` tags."""
    selector = {"kind": "doublestar", "decoration": "matches", "pattern": "v1.*", "extras": '{"untagged":false}'}
    every_repository = {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}
    return {
        "native": Policy.from_dict(
            {
                "rules": [
                    {"name": "releases", "repositories": "team-1*/**", "keep_last": 3, "order": "semver"},
                    {"name": "rest", "repositories": "**", "keep_newer_than": "180d", "keep": r"^v1\.0$"},
                ]
            }
        ),
        "gitlab": Policy.from_gitlab(
            {"enabled": True, "keep_n": 5, "older_than": "90d", "name_regex": ".*", "name_regex_keep": r"v1\.0"}
        ),
        "ecr": Policy.from_ecr(
            {
                "rules": [
                    {
                        "rulePriority": 1,
                        "selection": {
                            "tagStatus": "tagged",
                            "tagPatternList": ["v1.1*"],
                            "countType": "imageCountMoreThan",
                            "countNumber": 3,
                        },
                        "action": {"type": "expire"},
                    },
                    {
                        "rulePriority": 2,
                        "selection": {
                            "tagStatus": "any",
                            "countType": "sinceImagePushed",
                            "countUnit": "days",
                            "countNumber": 180,
                        },
                        "action": {"type": "expire"},
                    },
                ]
            }
        ),
        "harbor": Policy.from_harbor(
            {
                "algorithm": "or",
                "rules": [
                    {
                        "action": "retain",
                        "template": "latestPushedK",
                        "params": {"latestPushedK": 5},
                        "scope_selectors": every_repository,
                        "tag_selectors": [selector],
                    },
                    {
                        "action": "retain",
                        "template": "nDaysSinceLastPush",
                        "params": {"nDaysSinceLastPush": 90},
                        "scope_selectors": every_repository,
                        "tag_selectors": [selector],
                    },
                ],
            }
        ),
    }


def _best_of(repeat: int, func: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="layers rows (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per function; the best counts")
    args = parser.parse_args(argv)

    layers, manifests = synthetic_frames(args.rows)
    now = pd.Timestamp("2026-01-01", tz="UTC")
    timings = {
        "storage_usage": _best_of(args.repeat, lambda: storage_usage(layers)),
        "shared_layers": _best_of(args.repeat, lambda: shared_layers(layers)),
        "sharing_matrix(top=30)": _best_of(args.repeat, lambda: sharing_matrix(layers, top=30)),
        "stale_tags": _best_of(
            args.repeat, lambda: stale_tags(manifests, older_than="180d", keep_last=3, keep=r"^v1\.0$", now=now)
        ),
    }
    bytes_per_row = layers.memory_usage(deep=True).sum() / len(layers)

    print(
        f"{len(layers):,} layer rows, {layers['repository'].nunique():,} repositories, "
        f"{layers['layer_digest'].nunique():,} distinct layer digests, "
        f"{len(manifests):,} manifests\n"
    )
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| layers memory | {bytes_per_row:.1f} bytes/row | <= 100 |")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds:.3f} s | |")
    print(f"| total | {sum(timings.values()):.3f} s | <= 1 s |")

    tags = manifests[["repository", "tag"]].drop_duplicates()
    print(f"\n| policy.evaluate, {len(tags):,} tags | seconds |")
    print("|---|---|")
    for name, policy in policies().items():
        seconds = _best_of(args.repeat, lambda policy=policy: policy.evaluate(manifests, now=now))
        print(f"| {name} | {seconds:.3f} s |")


if __name__ == "__main__":
    main()
