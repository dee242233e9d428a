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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .checks import PolicyError, check_choice, check_count, check_keys, check_mapping, check_text, text_list
from .globs import Glob
from .outcome import TagTable, newest_first

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

    def selects(self, tags: list[str]) -> bool:
        if self.status == "any":
            return True
        if self.prefixes:
            return all(any(tag.startswith(prefix) for tag in tags) for prefix in self.prefixes)
        return all(any(wildcard_match(pattern, tag) for tag in tags) for pattern in self.patterns)

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


def evaluate_ecr(
    rules: tuple[EcrRule, ...], table: TagTable, repositories: tuple[Glob, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(table)
    deleted = np.zeros(n, dtype=bool)
    rule_column = np.full(n, "", dtype=object)
    reason = np.full(n, "kept: the policy does not cover this repository", dtype=object)
    images = _images(table)
    for repository, group in images.groupby("repository", sort=False):
        if not any(g.match(str(repository)) for g in repositories):
            continue
        verdicts = _repository_verdicts(rules, group, table.now)
        for rows, (expired, name, text) in zip(group["rows"], verdicts):
            deleted[rows] = expired
            rule_column[rows] = name
            for row in rows:
                reason[row] = text
    return deleted, rule_column, reason


def _images(table: TagTable) -> pd.DataFrame:
    """One row per (repository, digest): its tags (sorted), created date and table rows."""
    frame = pd.DataFrame(
        {
            "repository": table.repository.astype(str),
            "digest": table.digest.astype(str),
            "tag": table.tag.astype(str),
            "created": table.created,
            "row": np.arange(len(table)),
        }
    )
    grouped = frame.sort_values("tag").groupby(["repository", "digest"], sort=False)
    images = grouped.agg(tags=("tag", list), created=("created", "max"), rows=("row", list)).reset_index()
    return images


def _repository_verdicts(
    rules: tuple[EcrRule, ...], images: pd.DataFrame, now: pd.Timestamp
) -> list[tuple[bool, str, str]]:
    tags = list(images["tags"])
    created, known, order = newest_first(images)
    owner = np.full(len(images), -1)
    marked = np.zeros((len(rules), len(images)), dtype=bool)
    for index, rule in enumerate(rules):
        selected = np.array([rule.selects(t) for t in tags], dtype=bool)
        if rule.count_type == "imageCountMoreThan":
            in_order = order[selected[order]]
            marked[index, in_order[rule.count :]] = True
        else:
            marked[index] = selected & known & np.asarray((now - created) > pd.Timedelta(days=rule.count))
        owner[(owner < 0) & selected] = index

    verdicts = []
    for image in range(len(images)):
        if owner[image] < 0:
            verdicts.append((False, "", "kept: no rule selects this image"))
            continue
        rule = rules[owner[image]]
        expired = bool(marked[owner[image], image])
        if rule.count_type == "imageCountMoreThan":
            words = f"{'not ' if expired else ''}among the {rule.count} newest {rule.selection_words()}"
        else:
            words = f"{'older' if expired else 'not older'} than {rule.count} days, of the {rule.selection_words()}"
        verb = "deleted by" if expired else "kept by"
        verdicts.append((expired, rule.name, f"{verb} {rule.label()}: {words}"))
    return verdicts
