"""Cleanup policies as data: written once (native TOML/YAML/JSON, or the GitLab, ECR and Harbor policies
owners already have), checked before any request, evaluated on a crawl's frames tag by tag.

``Policy.evaluate(manifests)`` returns a ``stale_tags``-shaped frame plus a ``rule`` column, which
``reclaimable_bytes``, ``cleanup_plan`` and ``apply_cleanup`` accept as it is. Pure pandas, no network.
"""

from .checks import PolicyError
from .definition import FORMATS, Policy, detect_format
from .rules import Rule
from .semver import is_semver, semver_key

__all__ = ["FORMATS", "Policy", "PolicyError", "Rule", "detect_format", "is_semver", "semver_key"]
