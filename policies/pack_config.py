"""Per-stack policy config: which rules enforce how, with which thresholds.

The files in `policies/config/<stack>.json` use the engine's own format (the one
`pulumi preview --policy-pack-config` reads), so the harness and the engine read the
same file the same way: a rule's entry is an enforcement level, or an object with
`enforcementLevel` and the rule's config properties; `all` sets every rule's level;
anything unset falls back to the rule's default.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from policies.rule import Enforcement, Rule, RuleConfig

CONFIG_DIR = Path(__file__).parent / "config"
_LEVELS = get_args(Enforcement)


class PackConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ConfiguredRule:
    rule: Rule
    enforcement: Enforcement
    config: RuleConfig


def config_path(stack: str) -> Path:
    return CONFIG_DIR / f"{stack}.json"


def load_raw(stack: str) -> dict[str, Any]:
    """The stack's config file, or {} (every rule at its defaults) if it has none."""
    path = config_path(stack)
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    if not isinstance(raw, dict):
        raise PackConfigError(f"{path}: expected a JSON object of policy names")
    return raw


def _level(value: Any, where: str) -> Enforcement:
    if value not in _LEVELS:
        raise PackConfigError(f"{where}: enforcement level {value!r} is not one of {_LEVELS}")
    level: Enforcement = value
    return level


def configure(rules: Sequence[Rule], raw: Mapping[str, Any]) -> list[ConfiguredRule]:
    names = {rule.name for rule in rules}
    unknown = sorted(set(raw) - names - {"all"})
    if unknown:
        raise PackConfigError(f"config names no such policy: {unknown}")
    default = _level(raw["all"], "all") if "all" in raw else None
    configured = []
    for rule in rules:
        entry = raw.get(rule.name)
        level: Enforcement = default or rule.enforcement
        properties: dict[str, Any] = {}
        if isinstance(entry, str):
            level = _level(entry, rule.name)
        elif isinstance(entry, dict):
            properties = {k: v for k, v in entry.items() if k != "enforcementLevel"}
            if "enforcementLevel" in entry:
                level = _level(entry["enforcementLevel"], rule.name)
        elif entry is not None:
            raise PackConfigError(f"{rule.name}: expected a level or an object, got {entry!r}")
        configured.append(ConfiguredRule(rule, level, rule.config.model_validate(properties)))
    return configured
