"""A rule: a pure check plus the metadata the engine and the README need."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from policies.view import ResourceView
from policies.violation import Violation

Enforcement = Literal["advisory", "mandatory", "disabled"]


class RuleConfig(BaseModel):
    """Base of every rule's thresholds; unknown keys are typos, so they are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoConfig(RuleConfig):
    pass


C = TypeVar("C", bound=RuleConfig)


@dataclass(frozen=True)
class ResourceRule(Generic[C]):
    """Checks one resource at a time."""

    name: str
    description: str
    enforcement: Enforcement
    config: type[C]
    check: Callable[[ResourceView, C], list[Violation]]
    on_unknown: str


@dataclass(frozen=True)
class StackRule(Generic[C]):
    """Checks the whole stack: rules that relate resources to each other."""

    name: str
    description: str
    enforcement: Enforcement
    config: type[C]
    check: Callable[[Sequence[ResourceView], C], list[Violation]]
    on_unknown: str


Rule = ResourceRule[Any] | StackRule[Any]


def config_schema(config: type[RuleConfig]) -> dict[str, dict[str, Any]]:
    """The JSON schema properties the engine validates a policy's config against."""
    properties: dict[str, dict[str, Any]] = config.model_json_schema().get("properties", {})
    return {
        name: {k: v for k, v in prop.items() if k != "title"} for name, prop in properties.items()
    }
