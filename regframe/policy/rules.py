"""The native policy model: rules that govern tags and retain some of them, and its evaluation.

A rule *governs* a tag when the repository is in ``repositories`` and not in
``exclude_repositories`` (doublestar globs) and the tag matches ``tags`` and not ``exclude_tags``
(regular expressions, ``re.search``). It *retains* a governed tag when any retain clause holds:
``keep`` matches, the tag is among the ``keep_last`` newest governed tags of its repository in
``order``, or it is not older than ``keep_newer_than``. A tag is deleted when at least one rule
governs it and none of those retains it; a tag no rule governs is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..analysis._frames import each_name
from ..analysis.duration import format_duration
from .checks import (
    PolicyError,
    check_choice,
    check_count,
    check_duration,
    check_keys,
    check_mapping,
    check_text,
    text_list,
)
from .globs import Glob
from .outcome import TagTable
from .semver import semver_key
from .tag_patterns import TagPattern

ORDERS = ("created", "semver", "name")
RULE_KEYS = (
    "name",
    "description",
    "repositories",
    "exclude_repositories",
    "tags",
    "exclude_tags",
    "keep",
    "keep_last",
    "order",
    "keep_newer_than",
)
_ORDER_WORDS = {"created": "by created date", "semver": "by semver", "name": "by name (highest first)"}
_NOT_SEMVER = "not semver: ranked after every semver tag, by created date"


@dataclass(frozen=True)
class Clause:
    """A tag pattern and the words a reason uses when it decides."""

    pattern: TagPattern
    words: str


@dataclass(frozen=True)
class Rule:
    """One native rule; build it with :meth:`from_dict` so every value is checked."""

    name: str
    repositories: tuple[Glob, ...]
    exclude_repositories: tuple[Glob, ...] = ()
    tags: Clause | None = None
    exclude_tags: tuple[Clause, ...] = ()
    keep: TagPattern | None = None
    keep_last: int | None = None
    order: str = "created"
    keep_newer_than: pd.Timedelta | None = None
    description: str = ""
    # GitLab counts a tag without a date as created now (newest) for keep_n; native rules never count it.
    undated_newest: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], position: int = 0) -> Rule:
        """A rule from a table of a policy file; ``position`` (0-based) names a rule that has no name."""
        label = f"#{position + 1}"
        data = check_mapping(data, rule=label, key=None, what="a rule")
        name = data.get("name")
        if name is None:
            raise PolicyError(
                "every rule needs a 'name' (used in reasons and the rule column)" + _format_hint(data),
                rule=label,
                key="name",
            )
        name = check_text(name, rule=label, key="name")
        check_keys(data, RULE_KEYS, rule=name, hint=_format_hint(data))
        repositories = tuple(
            Glob(g, rule=name, key="repositories")
            for g in text_list(data.get("repositories", "**"), rule=name, key="repositories")
        )
        exclude_repositories = tuple(
            Glob(g, rule=name, key="exclude_repositories")
            for g in text_list(data.get("exclude_repositories", ()), rule=name, key="exclude_repositories")
        )
        tags = data.get("tags")
        exclude = data.get("exclude_tags")
        keep = data.get("keep")
        keep_last = data.get("keep_last")
        newer = data.get("keep_newer_than")
        return cls(
            name=name,
            repositories=repositories,
            exclude_repositories=exclude_repositories,
            tags=None
            if tags is None
            else Clause(TagPattern(tags, rule=name, key="tags"), f"does not match tags '{tags}'"),
            exclude_tags=()
            if exclude is None
            else (Clause(TagPattern(exclude, rule=name, key="exclude_tags"), f"matches exclude_tags '{exclude}'"),),
            keep=None if keep is None else TagPattern(keep, rule=name, key="keep"),
            keep_last=None if keep_last is None else check_count(keep_last, rule=name, key="keep_last"),
            order=check_choice(data.get("order", "created"), ORDERS, rule=name, key="order"),
            keep_newer_than=None if newer is None else check_duration(newer, rule=name, key="keep_newer_than"),
            description=check_text(data.get("description", ""), rule=name, key="description", allow_empty=True),
        )


def _format_hint(data: Mapping[str, Any]) -> str:
    if "rulePriority" in data or "selection" in data:
        return " (this looks like an ECR lifecycle rule: use format 'ecr')"
    if "template" in data or "tag_selectors" in data:
        return " (this looks like a Harbor retention rule: use format 'harbor')"
    return ""


def _govern(rules: tuple[Rule, ...], table: TagTable) -> tuple[np.ndarray, np.ndarray]:
    """Which tags each rule governs (one row per rule), and why each tag no rule governs is kept."""
    n = len(table)
    governed_by = np.zeros((len(rules), n), dtype=bool)
    outside = np.full(n, "kept: no rule covers this repository", dtype=object)
    outside_set = np.zeros(n, dtype=bool)
    for index, rule in enumerate(rules):
        in_repo = _repository_mask(rule, table)
        matches = _search(rule.tags.pattern, table) if rule.tags else np.ones(n, dtype=bool)
        governed = in_repo & matches
        excluded_words = np.full(n, "", dtype=object)
        for clause in rule.exclude_tags:
            hit = governed & _search(clause.pattern, table)
            excluded_words[hit & (excluded_words == "")] = clause.words
            governed &= ~hit
        not_governed_here = in_repo & ~governed & ~outside_set
        if rule.tags:
            outside[not_governed_here & ~matches] = f"kept: not governed by rule '{rule.name}': {rule.tags.words}"
        explained = not_governed_here & matches
        outside[explained] = [
            f"kept: not governed by rule '{rule.name}': {words}" for words in excluded_words[explained]
        ]
        outside_set |= in_repo
        governed_by[index] = governed
    return governed_by, outside


def rule_scope(rules: tuple[Rule, ...], table: TagTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per tag: whether any rule governs it, the governing rules, and the reason it is kept when none does.
    Accessory tags get only this: their retain clauses never apply, their subject decides them."""
    governed_by, outside = _govern(rules, table)
    governed = np.asarray(governed_by.any(axis=0))
    names = np.array(
        [", ".join(rules[k].name for k in np.flatnonzero(governed_by[:, i])) for i in range(len(table))], dtype=object
    )
    return governed, names, np.where(governed, "", outside).astype(object)


def evaluate_rules(rules: tuple[Rule, ...], table: TagTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per tag: deleted, the deciding rule(s) and the reason, before the safety rules."""
    n = len(table)
    governed_by, outside = _govern(rules, table)
    retained_by = np.zeros((len(rules), n), dtype=bool)
    retain_text = np.full(n, "", dtype=object)
    retain_rule = np.full(n, "", dtype=object)
    why_not: list[np.ndarray] = []

    for index, rule in enumerate(rules):
        governed = governed_by[index]
        kept_by_pattern = governed & _search(rule.keep, table) if rule.keep else np.zeros(n, dtype=bool)
        rank, semver = _rank(rule, table, governed)
        newest = governed & (rank < (rule.keep_last if rule.keep_last is not None else 0))
        fresh = np.zeros(n, dtype=bool)
        if rule.keep_newer_than is not None:
            fresh = governed & table.known & np.asarray(table.age <= rule.keep_newer_than)
        retained = kept_by_pattern | newest | fresh

        order_words = _ORDER_WORDS[rule.order]
        semver_note = np.where(semver | (rule.order != "semver"), "", f" ({_NOT_SEMVER})")
        first = retained & (retain_rule == "")
        words = np.select(
            [kept_by_pattern, newest, fresh],
            [
                f"matches keep '{rule.keep.shown}'" if rule.keep else "",
                np.char.add(f"among newest {rule.keep_last} {order_words}", semver_note.astype(str)),
                f"newer than {format_duration(rule.keep_newer_than)}" if rule.keep_newer_than is not None else "",
            ],
            default="",
        )
        retain_text[first] = [f"kept by rule '{rule.name}': {w}" for w in words[first]]
        retain_rule[first] = rule.name

        why = []
        if rule.keep is not None:
            why.append(np.full(n, f"does not match keep '{rule.keep.shown}'", dtype=object))
        if rule.keep_last is not None:
            why.append(
                np.char.add(f"not among newest {rule.keep_last} {order_words}", semver_note.astype(str)).astype(object)
            )
        if rule.keep_newer_than is not None:
            why.append(np.full(n, f"older than {format_duration(rule.keep_newer_than)}", dtype=object))
        if not why:
            why.append(np.full(n, "no retain clause", dtype=object))
        joined = why[0]
        for part in why[1:]:
            joined = joined + ", " + part
        why_not.append(joined)
        retained_by[index] = retained

    # One row per rule, so these are arrays over the tags (numpy's stubs allow a scalar for 1-D input).
    governed_any = np.asarray(governed_by.any(axis=0))
    retained_any = np.asarray(retained_by.any(axis=0))
    deleted = governed_any & ~retained_any
    rule_column = retain_rule.copy()
    reason = np.where(retained_any, retain_text, outside).astype(object)
    for i in np.flatnonzero(deleted):
        names = [index for index in range(len(rules)) if governed_by[index, i]]
        rule_column[i] = ", ".join(rules[k].name for k in names)
        if len(names) == 1:
            reason[i] = f"deleted by rule '{rules[names[0]].name}': {why_not[names[0]][i]}"
        else:
            reason[i] = "deleted by rules " + "; ".join(f"'{rules[k].name}': {why_not[k][i]}" for k in names)
    return deleted, rule_column, reason


def _repository_mask(rule: Rule, table: TagTable) -> np.ndarray:
    def inside(name: str) -> bool:
        return any(g.match(name) for g in rule.repositories) and not any(
            g.match(name) for g in rule.exclude_repositories
        )

    return each_name(inside, table.rows.repo, table.rows.repo_values, table.rows.repo_rank)


def _search(pattern: TagPattern, table: TagTable) -> np.ndarray:
    return each_name(pattern.search, table.rows.tag, table.rows.tag_values, table.rows.tag_rank)


def _rank(rule: Rule, table: TagTable, governed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each governed tag's 0-based position within its repository in the rule's order (a large
    number for tags that never count, and for all when the rule has no ``keep_last``), and whether
    each tag is semver."""
    n = len(table)
    rank = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    used, which = np.unique(table.rows.tag, return_inverse=True)
    keys = [semver_key(name) for name in table.rows.tag_values.take(used).astype(str)]
    semver = np.array([key is not None for key in keys], dtype=bool)[which]
    rows = np.flatnonzero(governed)
    if not len(rows) or rule.keep_last is None:
        return rank, semver
    undated = np.iinfo(np.int64).min if rule.undated_newest else np.iinfo(np.int64).max
    newest_first = np.where(table.known, -table.created.asi8, undated)
    frame = pd.DataFrame(
        {
            "repository": table.rows.repo_rank[table.rows.repo[rows]],
            "tag": table.rows.tag_rank[table.rows.tag[rows]],
            "newest_first": newest_first[rows],
            "row": rows,
        }
    )
    if rule.order == "semver":
        distinct = sorted({key for key in keys if key is not None})
        position = {key: i for i, key in enumerate(distinct)}
        frame["group"] = np.where(semver[rows], 0, 1)
        frame["version"] = [-position[key] if (key := keys[which[i]]) is not None else 0 for i in rows]
        by = ["repository", "group", "version", "newest_first", "tag"]
        ascending = [True] * 5
    elif rule.order == "name":
        by, ascending = ["repository", "tag"], [True, False]
    else:
        by, ascending = ["repository", "newest_first", "tag"], [True, True, True]
    frame = frame.sort_values(by, ascending=ascending, kind="stable")
    position_in_repo = frame.groupby("repository", sort=False).cumcount().to_numpy()
    counts = np.ones(len(frame), dtype=bool)
    if rule.order == "created" and not rule.undated_newest:
        counts = table.known[frame["row"].to_numpy()]
    rank[frame["row"].to_numpy()[counts]] = position_in_repo[counts]
    return rank, semver
