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

from pydantic import ValidationError

from policies.rule import Enforcement, Rule, RuleConfig

CONFIG_DIR = Path(__file__).parent / "config"
_LEVELS = get_args(Enforcement)


class PackConfigError(ValueError):
    """Every problem with a policy config, each under its policy (and setting) name."""

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        where = f" {source}" if source else ""
        super().__init__(
            f"invalid policy config{where} ({len(self.problems)} problem(s)):\n{lines}"
        )


@dataclass(frozen=True)
class ConfiguredRule:
    rule: Rule
    enforcement: Enforcement
    config: RuleConfig


def config_path(stack: str) -> Path:
    return CONFIG_DIR / f"{stack}.json"


def _json_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _no_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity; the engine's JSON reader does not.
    raise ValueError(f"{name} is not a JSON number")


def parse(text: str, source: str) -> dict[str, Any]:
    """A policy config's text, read as the engine reads it: strict JSON, one object."""
    try:
        raw = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        problem = f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        raise PackConfigError([problem], source) from None
    except ValueError as error:
        raise PackConfigError([f"not valid JSON: {error}"], source) from None
    if not isinstance(raw, dict):
        problem = f"expected a JSON object of policy names, got {_json_name(raw)}"
        raise PackConfigError([problem], source)
    return raw


def load_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode()
    except OSError as error:
        raise PackConfigError([f"cannot read it: {error.strerror}"], str(path)) from None
    except UnicodeDecodeError as error:
        raise PackConfigError([f"not UTF-8 text: {error.reason}"], str(path)) from None
    return parse(text, str(path))


def load_raw(stack: str) -> dict[str, Any]:
    """The stack's config file, or {} (every rule at its defaults) if it has none."""
    path = config_path(stack)
    return load_file(path) if path.exists() else {}


def _level(value: Any, where: str, problems: list[str]) -> Enforcement | None:
    if value not in _LEVELS:
        problems.append(f"{where}: enforcement level {value!r} is not one of {_LEVELS}")
        return None
    level: Enforcement = value
    return level


def _setting_problem(rule: Rule, error: Any) -> str:
    key = ".".join(str(part) for part in (rule.name, *error["loc"]))
    if error["type"] == "extra_forbidden":
        known = ", ".join(["enforcementLevel", *rule.config.model_fields]) or "none"
        return f"{key}: unknown setting (check its spelling; settings: {known})"
    message = str(error["msg"]).removeprefix("Value error, ")
    shown = error.get("input")
    if isinstance(shown, dict | list):
        return f"{key}: {message}"
    return f"{key}: {message} (got {json.dumps(shown, default=str)})"


def rule_config(rule: Rule, properties: Mapping[str, Any]) -> RuleConfig:
    """The rule's settings; a PackConfigError names each bad one as <policy>.<setting>."""
    try:
        config: RuleConfig = rule.config.model_validate(dict(properties))
    except ValidationError as error:
        raise PackConfigError([_setting_problem(rule, e) for e in error.errors()]) from None
    return config


def configure(rules: Sequence[Rule], raw: Mapping[str, Any]) -> list[ConfiguredRule]:
    """Each rule at its level and thresholds; one PackConfigError lists every problem."""
    problems: list[str] = []
    names = {rule.name for rule in rules}
    unknown = sorted(set(raw) - names - {"all"})
    if unknown:
        problems.append(f"config names no such policy: {unknown}")
    default = _level(raw["all"], "all", problems) if "all" in raw else None
    configured = []
    for rule in rules:
        entry = raw.get(rule.name)
        level: Enforcement | None = default or rule.enforcement
        properties: dict[str, Any] = {}
        if isinstance(entry, str):
            level = _level(entry, rule.name, problems)
        elif isinstance(entry, dict):
            properties = {k: v for k, v in entry.items() if k != "enforcementLevel"}
            if "enforcementLevel" in entry:
                level = _level(entry["enforcementLevel"], f"{rule.name}.enforcementLevel", problems)
        elif rule.name in raw:
            problems.append(
                f"{rule.name}: expected an enforcement level or an object, got {_json_name(entry)}"
            )
        try:
            config = rule_config(rule, properties)
        except PackConfigError as error:
            problems += error.problems
            continue
        if level is not None:
            configured.append(ConfiguredRule(rule, level, config))
    if problems:
        raise PackConfigError(problems)
    return configured
