"""``Policy``: a cleanup policy read once (native, GitLab, ECR or Harbor), checked in full, evaluated on frames."""

from __future__ import annotations

import datetime as dt
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.accessories import check_crawl_frames
from ..analysis.stale import BY_CREATED_DATE, BY_PUSH_TIME
from . import ecr, gitlab, harbor
from .checks import PolicyError, check_keys, check_mapping, text_list
from .globs import Glob
from .outcome import finish, tag_table
from .rules import Rule, evaluate_rules, rule_scope

# Products whose rules see accessory tags as ordinary tags, where regframe makes them follow their image:
# a plan of theirs then says what they would do differently, with how many tags.
_ACCESSORY_NOTES = {"gitlab": gitlab.accessory_note, "ecr": ecr.accessory_note}

FORMATS = ("native", "gitlab", "ecr", "harbor")
_READERS = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}
_GITLAB_KEYS = {
    "container_expiration_policy_attributes",
    "container_expiration_policy",
    "keep_n",
    "older_than",
    "name_regex",
    "name_regex_delete",
    "name_regex_keep",
    "cadence",
}


class Policy:
    """A list of rules and the product whose evaluation order they follow.

    Build one with :meth:`load`, :meth:`from_dict` (native), :meth:`from_gitlab`, :meth:`from_ecr` or
    :meth:`from_harbor`; each checks everything and raises :class:`PolicyError` naming the rule and key.
    :meth:`evaluate` is pure pandas: no registry is contacted.
    """

    def __init__(
        self,
        rules: tuple,
        format: str = "native",
        *,
        notes: tuple[str, ...] = (),
        repositories: tuple[Glob, ...] = (),
        project: str | None = None,
        source: str | None = None,
    ):
        if format not in FORMATS:
            raise PolicyError(f"unknown policy format {format!r}; one of {', '.join(FORMATS)}")
        self.rules = tuple(rules)
        self.format = format
        self.notes = tuple(notes)
        self.source = source
        self._repositories = repositories or (Glob("**", rule=None, key="repositories"),)
        self._project = project

    # --- building -------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        """A native policy: ``{"rules": [{"name": ..., ...}, ...]}`` (see ``regframe.policy.rules``)."""
        data = check_mapping(data, rule=None, key=None, what="a policy")
        check_keys(data, ("rules",), rule=None, hint=_top_hint(data))
        rules = data.get("rules")
        if not isinstance(rules, (list, tuple)) or not rules:
            raise PolicyError("a policy needs a non-empty list of rules (in TOML, [[rules]] tables)", key="rules")
        parsed = tuple(Rule.from_dict(item, position) for position, item in enumerate(rules))
        seen: set[str] = set()
        for rule in parsed:
            if rule.name in seen:
                raise PolicyError("two rules have this name; names must be unique", rule=rule.name, key="name")
            seen.add(rule.name)
        return cls(parsed, "native")

    @classmethod
    def from_gitlab(cls, attributes: Mapping[str, Any], repositories: str | list[str] = "**") -> Policy:
        """A GitLab cleanup policy (``container_expiration_policy`` attributes); see ``regframe.policy.gitlab``."""
        return cls(gitlab.from_gitlab(attributes, repositories), "gitlab", notes=gitlab.NOTES)

    @classmethod
    def from_ecr(cls, policy_json: Mapping[str, Any] | str, repositories: str | list[str] = "**") -> Policy:
        """An ECR lifecycle policy (JSON document or text), applied to each repository matching
        ``repositories``; see ``regframe.policy.ecr``."""
        globs = tuple(
            Glob(g, rule=None, key="repositories") for g in text_list(repositories, rule=None, key="repositories")
        )
        return cls(ecr.from_ecr(policy_json), "ecr", notes=ecr.NOTES, repositories=globs)

    @classmethod
    def from_harbor(cls, retention_json: Mapping[str, Any] | str, project: str | None = None) -> Policy:
        """A Harbor retention policy (JSON document or text). With ``project``, only repositories under
        ``project/`` are in scope and selectors see their names without that prefix, as in Harbor;
        without it, selectors see full repository names."""
        if project is not None and (not isinstance(project, str) or not project.strip("/")):
            raise PolicyError(f"project must be a project name, got {project!r}", key="project")
        return cls(harbor.from_harbor(retention_json), "harbor", notes=harbor.NOTES, project=project)

    @classmethod
    def from_data(cls, data: Any, format: str | None = None, *, project: str | None = None) -> Policy:
        """A policy from parsed file content; ``format`` None detects it from the keys. ``project`` is a Harbor
        policy's project (see ``from_harbor``); other formats have none."""
        chosen = format or detect_format(data)
        if project is not None and chosen != "harbor":
            raise PolicyError(f"project= is for Harbor policies, and this one is {chosen}", key="project")
        if chosen == "native":
            return cls.from_dict(data)
        if chosen == "gitlab":
            return cls.from_gitlab(data)
        if chosen == "ecr":
            return cls.from_ecr(data)
        if chosen == "harbor":
            return cls.from_harbor(data, project=project)
        raise PolicyError(f"unknown policy format {format!r}; one of {', '.join(FORMATS)}", key="format")

    @classmethod
    def load(cls, path: str | os.PathLike, format: str | None = None, *, project: str | None = None) -> Policy:
        """Read a policy file: TOML, YAML or JSON by its extension; ``format`` (native, gitlab, ecr,
        harbor) is detected from the content when not given; ``project`` as for ``from_data``."""
        if format is not None and format not in FORMATS:
            raise PolicyError(f"unknown policy format {format!r}; one of {', '.join(FORMATS)}", key="format")
        path = Path(path)
        reader = _READERS.get(path.suffix.lower())
        if reader is None:
            raise PolicyError(
                f"cannot tell the syntax of {str(path)!r} from its extension; use .toml, .yaml, .yml or .json"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"cannot read policy file {str(path)!r}: {exc}") from None
        data = _parse(text, reader, path)
        policy = cls.from_data(data, format, project=project)
        policy.source = str(path)
        return policy

    # --- using ----------------------------------------------------------------------------------

    def evaluate(
        self,
        manifests: pd.DataFrame,
        now: str | dt.datetime | pd.Timestamp | None = None,
        *,
        age_from: str | None = None,
        tags: pd.DataFrame | None = None,
        errors: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """One row per (repository, tag), as ``stale_tags`` returns it (``stale`` True for a tag the policy
        deletes) plus ``rule``: the rule that retained a kept tag (empty when no rule governs it) or the
        rule(s) that deleted it. ``reclaimable_bytes``, ``cleanup_plan`` and ``apply_cleanup`` take it as is.

        After the policy, the safety rules hold: a tag without a creation date is kept, and so is a tag
        on the same digest as a kept tag. Accessory tags (signatures, SBOMs, attestations, referrers
        fallback tags) are not decided by the rules: they follow their subject, as in ``stale_tags``. An
        orphan (its subject not found) has no subject to follow, so it goes only when the policy governs it
        (its ``rule`` names the governing rules); outside the policy's scope it is kept like any tag there.
        ``tags`` and ``errors`` (``inv.tags``, ``inv.errors``) keep a partial crawl from making orphans of
        healthy accessories, as in ``stale_tags``.

        ``age_from``: which date rules age and order tags by, "created" or "pushed" (the ``pushed`` column,
        where the registry reveals upload times; a tag without one falls back to created, and its reason
        says so). By default ECR and Harbor policies use push time, as those products do, and native and
        GitLab policies the created date.
        """
        chosen = age_from if age_from is not None else ("pushed" if self.format in ("ecr", "harbor") else "created")
        check_crawl_frames(tags, errors, "Policy.evaluate")
        table = tag_table(manifests, now, age_from=chosen)
        governed, accessories = table.governed(), table.accessories()
        if self.format in ("native", "gitlab"):
            decided = evaluate_rules(self.rules, governed)
            scope = rule_scope(self.rules, accessories)
        elif self.format == "ecr":
            decided = ecr.evaluate_ecr(self.rules, governed, self._repositories)
            scope = ecr.scope_ecr(self.rules, accessories, self._repositories)
        else:
            decided = harbor.evaluate_harbor(self.rules, governed, self._project)
            scope = harbor.scope_harbor(self.rules, accessories, self._project)
        attrs = {
            "policy_format": self.format,
            "policy_source": self.source,
            "policy_rules": [rule.name for rule in self.rules],
            "policy_notes": list(self.notes),
        }
        result = finish(table, manifests, *table.spread(decided, scope), attrs=attrs, tags=tags, errors=errors)
        followed = result.attrs["followed_accessories"]
        if followed and self.format in _ACCESSORY_NOTES:
            result.attrs["policy_notes"].append(_ACCESSORY_NOTES[self.format](followed))
        if chosen == "pushed":
            reason = result["reason"].to_numpy(dtype=object, copy=True)
            words = np.where(table.rows.by_push, f" ({BY_PUSH_TIME})", f" ({BY_CREATED_DATE})").astype(object)
            ruled = ~table.apart
            reason[ruled] += words[ruled]
            result["reason"] = reason
        result.attrs["age_from"] = chosen
        return result

    @property
    def rule_names(self) -> list[str]:
        return [rule.name for rule in self.rules]

    def __repr__(self) -> str:
        where = f" from {self.source!r}" if self.source else ""
        return f"<Policy {self.format}{where}: {len(self.rules)} rule(s) {', '.join(map(repr, self.rule_names))}>"


def detect_format(data: Any) -> str:
    """native, gitlab, ecr or harbor, from the keys a document uses."""
    if not isinstance(data, Mapping):
        return "native"
    if _GITLAB_KEYS & set(data):
        return "gitlab"
    if "algorithm" in data or "trigger" in data:
        return "harbor"
    rules = data.get("rules")
    if isinstance(rules, list) and rules and isinstance(rules[0], Mapping):
        if "rulePriority" in rules[0] or "selection" in rules[0]:
            return "ecr"
        if "template" in rules[0] or "tag_selectors" in rules[0]:
            return "harbor"
    return "native"


def _top_hint(data: Mapping[str, Any]) -> str:
    found = detect_format(data)
    return f" (this looks like a {found} policy: use format {found!r})" if found != "native" else ""


def _parse(text: str, reader: str, path: Path) -> Any:
    where = str(path)
    if reader == "json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise PolicyError(f"{where!r} is not valid JSON: {exc}") from None
    if reader == "toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{where!r} is not valid TOML: {exc}") from None
    try:
        import yaml
    except ImportError:
        raise PolicyError(
            f"reading {where!r} needs PyYAML (pip install pyyaml), or write the policy as TOML or JSON"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{where!r} is not valid YAML: {exc}") from None
