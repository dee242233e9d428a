"""GitLab container registry cleanup policies (``container_expiration_policy`` attributes) as one native rule.

GitLab's documented order, per repository: leave out ``latest``; keep only tags matching
``name_regex`` (``name_regex_delete``); leave out tags matching ``name_regex_keep``; order the rest by
created date (a tag without one counts as created now); keep the ``keep_n`` newest; keep those not
older than ``older_than``; delete the rest. That is exactly a native rule whose ``tags`` is the
delete regex, whose ``exclude_tags`` are ``latest`` and the keep regex (so they take no keep_n slot),
with ``keep_last = keep_n`` and ``keep_newer_than = older_than``.

Both regexes are RE2, anchored as GitLab anchors them (``\\A`` + regex + ``\\z``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .checks import PolicyError, check_count, check_duration, check_keys, check_mapping, text_list
from .globs import Glob
from .rules import Clause, Rule
from .tag_patterns import TagPattern, re2_pattern

RULE_NAME = "gitlab"
ATTRIBUTES = (
    "enabled",
    "cadence",
    "keep_n",
    "older_than",
    "name_regex",
    "name_regex_delete",
    "name_regex_keep",
    "next_run_at",
)
# Database defaults of a new policy row, used for attributes the input leaves out.
DEFAULTS = {"keep_n": 10, "older_than": "90d", "name_regex": ".*"}
# The only values GitLab saves (its model validates them; null is allowed for keep_n and older_than).
KEEP_N = (1, 5, 10, 25, 50, 100)
OLDER_THAN = ("7d", "14d", "30d", "60d", "90d")
CADENCE = ("1d", "7d", "14d", "1month", "3month")
NOTES = (
    (
        "GitLab deletes tags one by one and would delete a tag whose digest a kept tag shares; regframe keeps it "
        "(its image stays either way, so no space is lost by keeping it)."
    ),
    "Tags with equal created dates are ordered by name; GitLab's order among them is arbitrary.",
    "Protected and immutable tags (GitLab settings) are not visible through the registry API.",
)


def accessory_note(count: int) -> str:
    """What GitLab would do with the ``count`` accessory tags in the policy's scope that follow their image
    here (cosign's ``sha256-<hex>.sig``/``.att``/``.sbom``, referrers fallback tags, tagged signatures)."""
    return (
        f"{count:,} accessory tag(s) (cosign's sha256-<hex>.sig/.att/.sbom, referrers fallback tags) follow "
        "their image here; GitLab treats them as ordinary tags: counted for keep_n, aged by their own date, "
        "kept only by name_regex_keep, so it may delete a signature while keeping its image. A name_regex_keep "
        r"such as '^sha256-[0-9a-f]{64}(\.(sig|att|sbom))?$' makes GitLab keep them."
    )


def from_gitlab(attributes: Mapping[str, Any], repositories: str | list[str] = "**") -> tuple[Rule, ...]:
    """The rule for a GitLab policy: the attributes themselves, or wrapped as the API shows them
    (``container_expiration_policy`` in responses, ``container_expiration_policy_attributes`` in requests).

    An attribute left out takes GitLab's default for a new policy (``keep_n`` 10, ``older_than`` 90d,
    ``name_regex`` ``.*``); one given as null disables its step, as in GitLab. ``enabled`` and
    ``cadence`` do not change which tags go, so a disabled policy can be tried before it is switched on.
    ``keep_n``, ``older_than`` and ``cadence`` must be values GitLab saves (``keep_n`` 3 or ``older_than``
    2d are not), since GitLab never runs a policy with any other.
    ``repositories`` (doublestar globs) limits the rule to a project's repositories.
    """
    data = check_mapping(attributes, rule=RULE_NAME, key=None, what="GitLab policy attributes")
    for wrapper in ("container_expiration_policy_attributes", "container_expiration_policy"):
        if wrapper in data:
            check_keys(data, (wrapper,), rule=RULE_NAME)
            data = check_mapping(data[wrapper], rule=RULE_NAME, key=wrapper, what="GitLab policy attributes")
            break
    check_keys(data, ATTRIBUTES, rule=RULE_NAME)
    values = {**DEFAULTS, **data}

    delete_key = "name_regex_delete" if values.get("name_regex_delete") is not None else "name_regex"
    delete_text = values.get(delete_key)
    if delete_text is None:
        delete = Clause(
            TagPattern(r"\A\Z", rule=RULE_NAME, key=delete_key, shown=""),
            "does not match name_regex (null: matches no tag)",
        )
    else:
        delete = Clause(
            re2_pattern(delete_text, rule=RULE_NAME, key=delete_key), f"does not match {delete_key} '{delete_text}'"
        )
    exclude = [Clause(TagPattern(r"\Alatest\Z", rule=RULE_NAME, key="latest"), "'latest' is always kept")]
    keep_text = values.get("name_regex_keep")
    if keep_text is not None:
        exclude.append(
            Clause(
                re2_pattern(keep_text, rule=RULE_NAME, key="name_regex_keep"), f"matches name_regex_keep '{keep_text}'"
            )
        )

    keep_n = values.get("keep_n")
    older_than = values.get("older_than")
    if isinstance(keep_n, str) and keep_n.strip().isdigit():
        keep_n = int(keep_n)
    if keep_n is not None:
        check_count(keep_n, rule=RULE_NAME, key="keep_n")
        _check_allowed(keep_n, KEEP_N, "keep_n", "or null")
    if older_than is not None:
        _check_allowed(older_than, OLDER_THAN, "older_than", "or null")
    if "cadence" in values:
        _check_allowed(values["cadence"], CADENCE, "cadence")
    return (
        Rule(
            name=RULE_NAME,
            repositories=tuple(
                Glob(g, rule=RULE_NAME, key="repositories")
                for g in text_list(repositories, rule=RULE_NAME, key="repositories")
            ),
            tags=delete,
            exclude_tags=tuple(exclude),
            keep_last=None if keep_n is None else check_count(keep_n, rule=RULE_NAME, key="keep_n"),
            keep_newer_than=None
            if older_than is None
            else check_duration(older_than, rule=RULE_NAME, key="older_than"),
            undated_newest=True,
            description="GitLab container registry cleanup policy",
        ),
    )


def _check_allowed(value: object, allowed: tuple[object, ...], key: str, null: str = "") -> None:
    """GitLab refuses to save any other value, so there is no GitLab behaviour to preview for it."""
    if value not in allowed:
        listed = ", ".join(map(repr, allowed)) + (f" {null}" if null else "")
        raise PolicyError(f"GitLab allows only {listed}; got {value!r}", rule=RULE_NAME, key=key)
