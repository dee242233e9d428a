"""Harbor tag retention policies, evaluated the way Harbor's retention job does.

Per repository, an *artifact* is one digest with all its tags. Each enabled rule selects repositories
(every ``scope_selectors.repository`` selector in turn: ``repoMatches`` keeps the names its doublestar
pattern matches, ``repoExcludes`` the others) and artifacts (every tag selector in turn: ``matches``
keeps an artifact when any of its tags matches, ``excludes`` when any of its tags does not), then
retains some of them (``latestPushedK``: the K newest; ``nDaysSinceLastPush``: pushed within N days;
``always``: all). Rules are OR-combined: an artifact any rule retains keeps every tag; every other
artifact of a repository some rule selects is deleted with all its tags. Repositories no rule
selects are left alone.

Harbor orders by push time, which the registry API reveals only where tag lists carry upload times
(``pushed``); elsewhere the image's created date stands in, and every reason says which date decided.
Pull-time templates are refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..analysis._frames import each_name
from .checks import PolicyError, check_choice, check_count, check_keys, check_mapping, check_text
from .globs import Glob
from .outcome import Artifacts, TagTable, apply_verdicts, artifacts

MAX_RULES = 15
TEMPLATES = {"latestPushedK": (10, 32766), "nDaysSinceLastPush": (30, 20190904), "always": (None, None)}
PULL_TEMPLATES = ("latestPulledN", "nDaysSinceLastPull", "latestActiveK")
NOTES = (
    (
        "Harbor orders artifacts by push time, which the registry API reveals only on some registries (Google's "
        "tag lists, the pushed column); elsewhere the created date is used instead, and each reason says which."
    ),
    (
        "Untagged artifacts are invisible through the registry API: they take no latestPushedK slot here, so Harbor "
        "may delete more tagged artifacts than shown when a rule also selects untagged ones."
    ),
    "Tag immutability rules (a Harbor setting) are not visible through the registry API.",
)


@dataclass(frozen=True)
class Selector:
    decoration: str
    glob: Glob

    def words(self) -> str:
        verb = {"matches": "matching", "excludes": "excluding"}.get(self.decoration, self.decoration)
        return f"tags {verb} '{self.glob.pattern}'"


@dataclass(frozen=True)
class HarborRule:
    index: int
    template: str
    param: int | None
    repository_selectors: tuple[Selector, ...]
    tag_selectors: tuple[Selector, ...]

    @property
    def name(self) -> str:
        return f"rule {self.index + 1}"

    def in_scope(self, repository: str) -> bool:
        for selector in self.repository_selectors:
            if selector.glob.match(repository) != (selector.decoration == "repoMatches"):
                return False
        return True

    def words(self) -> str:
        what = {
            "latestPushedK": f"retain the {self.param} most recently pushed",
            "nDaysSinceLastPush": f"retain those pushed within {self.param} days",
            "always": "always retain",
        }[self.template]
        return f"{what} of the artifacts with {' and '.join(s.words() for s in self.tag_selectors)}"


def from_harbor(policy: Mapping[str, Any] | str) -> tuple[HarborRule, ...]:
    """The enabled rules of a Harbor retention policy (the JSON document the API and UI save, or its text)."""
    if isinstance(policy, (str, bytes)):
        try:
            policy = json.loads(policy)
        except ValueError as exc:
            raise PolicyError(f"the retention policy is not valid JSON: {exc}") from None
    data = check_mapping(policy, rule=None, key=None, what="a Harbor retention policy")
    check_keys(data, ("id", "algorithm", "rules", "trigger", "scope"), rule=None)
    check_choice(data.get("algorithm", "or"), ("or",), rule=None, key="algorithm")
    rules = data.get("rules")
    if not isinstance(rules, list) or not rules:
        raise PolicyError("must be a non-empty list of rules", key="rules")
    if len(rules) > MAX_RULES:
        raise PolicyError(f"Harbor allows at most {MAX_RULES} rules per policy, this one has {len(rules)}", key="rules")
    parsed = [_rule(item, position) for position, item in enumerate(rules)]
    enabled = tuple(rule for rule in parsed if rule is not None)
    if not enabled:
        raise PolicyError("every rule is disabled, so Harbor would do nothing", key="rules")
    return enabled


def _rule(item: object, position: int) -> HarborRule | None:
    name = f"rule {position + 1}"
    data = check_mapping(item, rule=name, key=None, what="a Harbor rule")
    check_keys(
        data,
        ("id", "priority", "disabled", "action", "template", "params", "tag_selectors", "scope_selectors"),
        rule=name,
    )
    disabled = data.get("disabled", False)
    if not isinstance(disabled, bool):
        raise PolicyError(f"must be true or false, got {disabled!r}", rule=name, key="disabled")
    check_choice(data.get("action", "retain"), ("retain",), rule=name, key="action")
    template = data.get("template")
    if template in PULL_TEMPLATES:
        raise PolicyError(
            f"template {template!r} needs pull time, which the registry API never reveals", rule=name, key="template"
        )
    if template not in TEMPLATES:
        raise PolicyError(
            f"unsupported template {template!r}; supported: {', '.join(TEMPLATES)}", rule=name, key="template"
        )
    params = check_mapping(data.get("params", {}), rule=name, key="params", what="params")
    default, maximum = TEMPLATES[template]
    check_keys(params, (template,) if default is not None else (), rule=name, prefix="params.")
    param = None
    if default is not None:
        param = check_count(params.get(template, default), rule=name, key=f"params.{template}", maximum=maximum)

    scope = check_mapping(data.get("scope_selectors", {}), rule=name, key="scope_selectors", what="scope_selectors")
    check_keys(scope, ("repository",), rule=name, prefix="scope_selectors.")
    repository_selectors = tuple(
        _selector(s, ("repoMatches", "repoExcludes"), rule=name, key=f"scope_selectors.repository[{i}]")
        for i, s in enumerate(_list(scope.get("repository", []), rule=name, key="scope_selectors.repository"))
    )
    raw_tags = _list(data.get("tag_selectors"), rule=name, key="tag_selectors")
    if not raw_tags:
        raise PolicyError(
            "Harbor skips a rule without tag selectors; add one, e.g. "
            '{"kind": "doublestar", "decoration": "matches", "pattern": "**"}',
            rule=name,
            key="tag_selectors",
        )
    tag_selectors = tuple(
        _selector(s, ("matches", "excludes"), rule=name, key=f"tag_selectors[{i}]") for i, s in enumerate(raw_tags)
    )
    if disabled:
        return None
    return HarborRule(position, template, param, repository_selectors, tag_selectors)


def _list(value: object, *, rule: str, key: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PolicyError(f"must be a list of selectors, got {value!r}", rule=rule, key=key)
    return value


def _selector(value: object, decorations: tuple[str, ...], *, rule: str, key: str) -> Selector:
    data = check_mapping(value, rule=rule, key=key, what="a selector")
    check_keys(data, ("kind", "decoration", "pattern", "extras"), rule=rule, prefix=key + ".")
    check_choice(data.get("kind", "doublestar"), ("doublestar",), rule=rule, key=f"{key}.kind")
    decoration = check_choice(data.get("decoration"), decorations, rule=rule, key=f"{key}.decoration")
    pattern = check_text(data.get("pattern", ""), rule=rule, key=f"{key}.pattern", allow_empty=True)
    extras = data.get("extras")
    if extras not in (None, ""):
        parsed = extras
        if isinstance(extras, str):
            try:
                parsed = json.loads(extras)
            except ValueError:
                raise PolicyError(
                    f"must be a JSON-encoded object such as '{{\"untagged\":false}}', got {extras!r}",
                    rule=rule,
                    key=f"{key}.extras",
                ) from None
        parsed = check_mapping(parsed, rule=rule, key=f"{key}.extras", what="extras")
        check_keys(parsed, ("untagged",), rule=rule, prefix=f"{key}.extras.")
        if not isinstance(parsed.get("untagged", False), bool):
            raise PolicyError("must be true or false", rule=rule, key=f"{key}.extras.untagged")
    glob = Glob(pattern, rule=rule, key=f"{key}.pattern", empty_matches_all=True)
    return Selector(decoration, glob)


_NO_RULE = "kept: no rule selects this repository"


def evaluate_harbor(
    rules: tuple[HarborRule, ...], table: TagTable, project: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(table)
    deleted = np.zeros(n, dtype=bool)
    rule_column = np.full(n, "", dtype=object)
    reason = np.full(n, _NO_RULE, dtype=object)
    outside, active = _scopes(rules, table, project)
    reason[outside[table.rows.repo]] = f"kept: outside project '{project}'"

    found = artifacts(table)
    status = _statuses(rules, table, found, active[:, found.repo])
    decided = (deleted, rule_column, reason)
    apply_verdicts(status, lambda code: _verdict(rules, code), found, status[found.of_row] != 0, decided)
    return decided


def scope_harbor(
    rules: tuple[HarborRule, ...], table: TagTable, project: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per tag: whether the policy governs it (a rule selects its repository, where Harbor deletes whatever
    no rule retains), the rules that select it, and the reason it is kept when none does."""
    outside, active = _scopes(rules, table, project)
    names = np.array(
        [", ".join(rule.name for rule, on in zip(rules, column, strict=True) if on) for column in active.T],
        dtype=object,
    )
    repo = table.rows.repo
    governed = np.asarray(active.any(axis=0))[repo]
    reason = np.where(governed, "", _NO_RULE).astype(object)
    reason[outside[repo]] = f"kept: outside project '{project}'"
    return governed, names[repo], reason


def _in_project(repository: str, project: str | None) -> str | None:
    """The name Harbor matches repository selectors against: without the project prefix."""
    if project is None:
        return repository
    prefix = project.rstrip("/") + "/"
    return repository[len(prefix) :] if repository.startswith(prefix) else None


def _scopes(rules: tuple[HarborRule, ...], table: TagTable, project: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Per repository code: whether it lies outside the project, and which rules select it. Repositories
    are visited in name order, so a glob that times out names the same repository for any row order."""
    rows = table.rows
    outside = np.zeros(len(rows.repo_values), dtype=bool)
    active = np.zeros((len(rules), len(rows.repo_values)), dtype=bool)
    used = np.unique(rows.repo)
    used = used[np.argsort(rows.repo_rank[used])]
    for code, repository in zip(used, rows.repo_values.take(used).astype(str)):
        name = _in_project(repository, project)
        if name is None:
            outside[code] = True
        else:
            active[:, code] = [rule.in_scope(name) for rule in rules]
    return outside, active


# What each rule did to an artifact, one base-4 digit per rule in policy order.
_OUT_OF_SCOPE, _RETAINED, _NOT_RETAINED, _NOT_SELECTED = range(4)


def _statuses(rules: tuple[HarborRule, ...], table: TagTable, found: Artifacts, active: np.ndarray) -> np.ndarray:
    """Per artifact, every rule's outcome packed into one number (0 where no rule selects the
    repository), so the artifacts that share a verdict and reason are decided together."""
    status = np.zeros(len(found), dtype=np.int64)
    for index, rule in enumerate(rules):
        selected = _selected(rule, table, found, active[index])
        if rule.template == "latestPushedK":
            assert rule.param is not None, "_rule gives every template that has a parameter its value"
            retained = selected & (found.newer_selected(selected) < rule.param)
        elif rule.template == "nDaysSinceLastPush":
            assert rule.param is not None, "_rule gives every template that has a parameter its value"
            fresh = np.asarray(found.created >= table.now - pd.Timedelta(days=rule.param))
            retained = selected & found.known & fresh
        else:
            retained = selected
        outcome = np.select(
            [~active[index], retained, selected], [_OUT_OF_SCOPE, _RETAINED, _NOT_RETAINED], _NOT_SELECTED
        )
        status += outcome.astype(np.int64) * 4**index
    return status


def _selected(rule: HarborRule, table: TagTable, found: Artifacts, active: np.ndarray) -> np.ndarray:
    """The artifacts of the rule's repositories that every tag selector keeps: ``matches`` when any tag
    matches, ``excludes`` when any tag does not. Each glob runs once per distinct tag name."""
    rows = table.rows
    scoped = active[found.of_row]
    selected = active.copy()
    for selector in rule.tag_selectors:
        hit = np.zeros(len(rows), dtype=bool)
        hit[scoped] = each_name(selector.glob.match, rows.tag[scoped], rows.tag_values, rows.tag_rank)
        if selector.decoration != "matches":
            hit = ~hit & scoped
        selected &= found.any_tag(hit)
    return selected


def _verdict(rules: tuple[HarborRule, ...], status: int) -> tuple[bool, str, str]:
    """Deleted, rule and reason for an artifact whose rules' outcomes :func:`_statuses` packed."""
    outcomes = [(rule, status // 4**index % 4) for index, rule in enumerate(rules)]
    active = [(rule, outcome) for rule, outcome in outcomes if outcome != _OUT_OF_SCOPE]
    for rule, outcome in active:
        if outcome == _RETAINED:
            return False, rule.name, f"kept by {rule.name}: {rule.words()}"
    why_not = [
        f"{rule.name}: {_miss(rule) if outcome == _NOT_RETAINED else 'tags not selected'}" for rule, outcome in active
    ]
    names = ", ".join(rule.name for rule, _ in active)
    return True, names, "deleted: no rule retains it (" + "; ".join(why_not) + ")"


def _miss(rule: HarborRule) -> str:
    if rule.template == "latestPushedK":
        return f"not among the {rule.param} most recently pushed"
    if rule.template == "nDaysSinceLastPush":
        return f"not pushed within {rule.param} days"
    return ""
