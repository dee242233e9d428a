"""AWS ECR lifecycle policies, evaluated the way ECR documents it.

Per repository, an *image* is one digest with all its tags. Every rule selects images (``tagStatus``
``tagged`` with ``tagPatternList`` or ``tagPrefixList``: every entry must match one of the image's
tags; ``any``: every image) and marks some of them (``imageCountMoreThan``: all but the N newest
of its selection, counting images other rules also select; ``sinceImagePushed``: older than N days).
An image belongs to the lowest-``rulePriority`` rule that selects it and is expired only if that rule
marks it; expiring an image removes all its tags.

ECR orders by push time, which the registry API reveals only where tag lists carry upload times
(``pushed``); elsewhere the image's created date stands in, and every reason says which date decided.
Untagged images are not listed by the registry API, so ``untagged`` rules,
pull-time rules and archive rules are refused rather than guessed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..analysis._frames import each_name
from .checks import PolicyError, check_choice, check_count, check_keys, check_mapping, check_text, text_list
from .globs import Glob
from .outcome import Artifacts, TagTable, apply_verdicts, artifacts

MAX_RULES = 50
MAX_WILDCARDS = 4
NOTES = (
    (
        "ECR orders images by push time, which the registry API reveals only on some registries (Google's "
        "tag lists, the pushed column); elsewhere the created date is used instead, and each reason says which."
    ),
    (
        "Untagged images are invisible through the registry API: a tagStatus 'any' rule counts only tagged "
        "images, so ECR may expire more tagged images than shown when untagged ones exist."
    ),
    (
        "ECR will not expire an image a manifest list references until the list is gone; here only tags are "
        "removed, so such an image stays while its index is kept."
    ),
)


def accessory_note(count: int) -> str:
    """What ECR would do with the ``count`` accessory tags in the policy's scope that follow their image here."""
    return (
        f"{count:,} accessory tag(s) (cosign's sha256-<hex>.sig/.att/.sbom, referrers fallback tags) follow "
        "their image here; ECR's rules treat them as ordinary images (only OCI referrers with a subject follow "
        "their image there), so a rule whose selection they match counts and expires them apart from their image."
    )


_SELECTION_KEYS = (
    "tagStatus",
    "tagPatternList",
    "tagPrefixList",
    "storageClass",
    "countType",
    "countUnit",
    "countNumber",
)


@dataclass(frozen=True)
class EcrRule:
    priority: int
    description: str
    status: str
    prefixes: tuple[str, ...]
    patterns: tuple[str, ...]
    count_type: str
    count: int

    @property
    def name(self) -> str:
        return f"priority {self.priority}"

    def selection_words(self) -> str:
        if self.status == "any":
            return "images"
        if self.prefixes:
            return f"images matching tagPrefixList {list(self.prefixes)}"
        return f"images matching tagPatternList {list(self.patterns)}"

    def label(self) -> str:
        return f"rule '{self.name}'" + (f" ({self.description})" if self.description else "")


def wildcard_match(pattern: str, tag: str) -> bool:
    """ECR's ``*`` wildcard over the whole tag, without backtracking."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return tag == pattern
    first, *middle, last = parts
    if len(tag) < len(first) + len(last) or not tag.startswith(first) or not tag.endswith(last):
        return False
    position, end = len(first), len(tag) - len(last)
    for part in middle:
        found = tag.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return True


def from_ecr(policy: Mapping[str, Any] | str) -> tuple[EcrRule, ...]:
    """The rules of an ECR lifecycle policy (the JSON document, or its text), checked against ECR's own
    constraints, in priority order."""
    if isinstance(policy, (str, bytes)):
        try:
            policy = json.loads(policy)
        except ValueError as exc:
            raise PolicyError(f"the lifecycle policy is not valid JSON: {exc}") from None
    data = check_mapping(policy, rule=None, key=None, what="an ECR lifecycle policy")
    check_keys(data, ("rules",), rule=None)
    rules = data.get("rules")
    if not isinstance(rules, list) or not rules:
        raise PolicyError("must be a non-empty list of rules", key="rules")
    if len(rules) > MAX_RULES:
        raise PolicyError(f"ECR allows at most {MAX_RULES} rules per policy, this one has {len(rules)}", key="rules")
    parsed = [_rule(item, position) for position, item in enumerate(rules)]

    seen: dict[int, int] = {}
    for position, rule in enumerate(parsed):
        if rule.priority in seen:
            raise PolicyError(
                f"rulePriority {rule.priority} is used by rules[{seen[rule.priority]}] and "
                f"rules[{position}]; ECR needs unique priorities",
                rule=rule.name,
                key="rulePriority",
            )
        seen[rule.priority] = position
    ordered = tuple(sorted(parsed, key=lambda r: r.priority))
    for rule in ordered:
        if rule.status == "any" and rule is not ordered[-1]:
            raise PolicyError(
                f"a tagStatus 'any' rule must have the highest rulePriority (be evaluated last); "
                f"{ordered[-1].name} comes after it",
                rule=rule.name,
                key="selection.tagStatus",
            )
    return ordered


def _rule(item: object, position: int) -> EcrRule:
    label = f"rules[{position}]"
    data = check_mapping(item, rule=label, key=None, what="an ECR rule")
    check_keys(data, ("rulePriority", "description", "selection", "action"), rule=label)
    if "rulePriority" not in data:
        raise PolicyError("missing (every ECR rule needs a unique integer priority)", rule=label, key="rulePriority")
    priority = check_count(data["rulePriority"], rule=label, key="rulePriority", minimum=1)
    name = f"priority {priority}"
    description = check_text(data.get("description", ""), rule=name, key="description", allow_empty=True)

    action = check_mapping(data.get("action"), rule=name, key="action", what="action")
    check_keys(action, ("type", "targetStorageClass"), rule=name, prefix="action.")
    kind = action.get("type")
    if kind == "transition":
        raise PolicyError(
            "'transition' (archiving) cannot be simulated: storage classes are not visible through the registry API",
            rule=name,
            key="action.type",
        )
    check_choice(kind, ("expire",), rule=name, key="action.type")
    if "targetStorageClass" in action:
        raise PolicyError("only allowed with action type 'transition'", rule=name, key="action.targetStorageClass")

    selection = check_mapping(data.get("selection"), rule=name, key="selection", what="selection")
    check_keys(selection, _SELECTION_KEYS, rule=name, prefix="selection.")
    status = selection.get("tagStatus")
    if status == "untagged":
        raise PolicyError(
            "rules on untagged images cannot be simulated: the registry API lists only tagged images",
            rule=name,
            key="selection.tagStatus",
        )
    status = check_choice(status, ("tagged", "any"), rule=name, key="selection.tagStatus")
    prefixes = text_list(selection.get("tagPrefixList", ()), rule=name, key="selection.tagPrefixList")
    patterns = text_list(selection.get("tagPatternList", ()), rule=name, key="selection.tagPatternList")
    if status == "tagged":
        if prefixes and patterns:
            raise PolicyError(
                "a rule may use tagPatternList or tagPrefixList, not both", rule=name, key="selection.tagPrefixList"
            )
        if not prefixes and not patterns:
            raise PolicyError(
                "tagStatus 'tagged' needs a non-empty tagPatternList or tagPrefixList",
                rule=name,
                key="selection.tagStatus",
            )
    elif prefixes or patterns:
        raise PolicyError(
            f"tagStatus {status!r} must omit tagPatternList and tagPrefixList",
            rule=name,
            key="selection.tagPatternList" if patterns else "selection.tagPrefixList",
        )
    for pattern in patterns:
        if pattern.count("*") > MAX_WILDCARDS:
            raise PolicyError(
                f"{pattern!r} has {pattern.count('*')} wildcards; ECR allows at most {MAX_WILDCARDS}",
                rule=name,
                key="selection.tagPatternList",
            )
        if not pattern:
            raise PolicyError("empty pattern", rule=name, key="selection.tagPatternList")

    storage = selection.get("storageClass", "standard")
    if storage == "archive":
        raise PolicyError(
            "archive storage cannot be simulated: storage classes are not visible through the registry API",
            rule=name,
            key="selection.storageClass",
        )
    check_choice(storage, ("standard",), rule=name, key="selection.storageClass")
    count_type = selection.get("countType")
    if count_type == "sinceImagePulled":
        raise PolicyError("needs pull time, which the registry API never reveals", rule=name, key="selection.countType")
    if count_type == "sinceImageTransitioned":
        raise PolicyError(
            "needs archive times, which the registry API never reveals", rule=name, key="selection.countType"
        )
    count_type = check_choice(
        count_type, ("imageCountMoreThan", "sinceImagePushed"), rule=name, key="selection.countType"
    )
    if count_type == "imageCountMoreThan" and "countUnit" in selection:
        raise PolicyError(
            "countUnit is an error with countType 'imageCountMoreThan'", rule=name, key="selection.countUnit"
        )
    if count_type == "sinceImagePushed":
        if "countUnit" not in selection:
            raise PolicyError(
                "countType 'sinceImagePushed' needs countUnit 'days'", rule=name, key="selection.countUnit"
            )
        check_choice(selection["countUnit"], ("days",), rule=name, key="selection.countUnit")
    if "countNumber" not in selection:
        raise PolicyError("missing", rule=name, key="selection.countNumber")
    count = check_count(selection["countNumber"], rule=name, key="selection.countNumber", minimum=1)
    return EcrRule(priority, description, status, prefixes, patterns, count_type, count)


_NOT_COVERED = "kept: the policy does not cover this repository"
_NOT_SELECTED = "kept: no rule selects this image"


def evaluate_ecr(
    rules: tuple[EcrRule, ...], table: TagTable, repositories: tuple[Glob, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(table)
    deleted = np.zeros(n, dtype=bool)
    rule_column = np.full(n, "", dtype=object)
    reason = np.full(n, _NOT_COVERED, dtype=object)
    covered = _covered(table, repositories)
    found = artifacts(table)
    owner, expired = _owners(rules, table, found)
    decided = (deleted, rule_column, reason)
    apply_verdicts(
        owner * 2 + expired, lambda code: _verdict(rules, code // 2, bool(code % 2)), found, covered, decided
    )
    return decided


def scope_ecr(
    rules: tuple[EcrRule, ...], table: TagTable, repositories: tuple[Glob, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per tag: whether the policy governs it (its repository is covered and a rule selects its image), the
    owning rule, and the reason it is kept when not governed. Counts and ages are left out: accessory tags,
    which this is asked about, follow their subject."""
    covered = _covered(table, repositories)
    found = artifacts(table)
    owner = np.full(len(found), -1, dtype=np.int64)
    for index, rule in enumerate(rules):
        owner[(owner < 0) & _selected(rule, table, found)] = index
    owned = owner[found.of_row]
    governed = covered & (owned >= 0)
    names = np.array([rules[k].name if k >= 0 else "" for k in owned], dtype=object)
    names[~governed] = ""
    reason = np.where(covered, np.where(governed, "", _NOT_SELECTED), _NOT_COVERED).astype(object)
    return governed, names, reason


def _covered(table: TagTable, repositories: tuple[Glob, ...]) -> np.ndarray:
    rows = table.rows
    return each_name(lambda name: any(g.match(name) for g in repositories), rows.repo, rows.repo_values, rows.repo_rank)


def _owners(rules: tuple[EcrRule, ...], table: TagTable, found: Artifacts) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the index of the first rule that selects it (-1 for none) and whether that rule marks it."""
    owner = np.full(len(found), -1, dtype=np.int64)
    expired = np.zeros(len(found), dtype=np.int64)
    for index, rule in enumerate(rules):
        selected = _selected(rule, table, found)
        if rule.count_type == "imageCountMoreThan":
            marked = selected & (found.newer_selected(selected) >= rule.count)
        else:
            old = np.asarray((table.now - found.created) > pd.Timedelta(days=rule.count))
            marked = selected & found.known & old
        first = (owner < 0) & selected
        owner[first] = index
        expired[first] = marked[first]
    return owner, expired


def _selected(rule: EcrRule, table: TagTable, found: Artifacts) -> np.ndarray:
    """The images the rule selects: with ``tagged``, every list entry matches one of the image's tags.
    Each entry is tried once per distinct tag name."""
    selected = np.ones(len(found), dtype=bool)
    if rule.status == "any":
        return selected
    rows = table.rows
    tests = [_prefix(prefix) for prefix in rule.prefixes] or [_pattern(pattern) for pattern in rule.patterns]
    for test in tests:
        selected &= found.any_tag(each_name(test, rows.tag, rows.tag_values, rows.tag_rank))
    return selected


def _prefix(prefix: str) -> Callable[[str], bool]:
    return lambda tag: tag.startswith(prefix)


def _pattern(pattern: str) -> Callable[[str], bool]:
    return lambda tag: wildcard_match(pattern, tag)


def _verdict(rules: tuple[EcrRule, ...], owner: int, expired: bool) -> tuple[bool, str, str]:
    if owner < 0:
        return False, "", _NOT_SELECTED
    rule = rules[owner]
    if rule.count_type == "imageCountMoreThan":
        words = f"{'not ' if expired else ''}among the {rule.count} newest {rule.selection_words()}"
    else:
        words = f"{'older' if expired else 'not older'} than {rule.count} days, of the {rule.selection_words()}"
    verb = "deleted by" if expired else "kept by"
    return expired, rule.name, f"{verb} {rule.label()}: {words}"
