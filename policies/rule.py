"""A rule: a pure check plus the metadata the engine and the README need."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from components.quantity import parse_quantity
from costing.view import ResourceView
from policies.violation import Violation

Enforcement = Literal["advisory", "mandatory", "disabled"]


class RuleConfig(BaseModel):
    """Base of every rule's thresholds; unknown keys are typos, so they are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _whole_number(value: Any) -> Any:
    # The engine hands config over as protobuf Struct numbers, which are all floats.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _quantity(value: str) -> str:
    parse_quantity(value)
    return value


# Strict, as the engine's JSON schema check is: "10" or true is not a number there either.
Count = Annotated[int, Field(ge=0, strict=True), BeforeValidator(_whole_number)]
PositiveCount = Annotated[int, Field(ge=1, strict=True), BeforeValidator(_whole_number)]
# A cent, not 0: JSON schema draft 4, which the engine may use, has no exclusiveMinimum.
Usd = Annotated[float, Field(ge=0.01, strict=True)]
Percent = Annotated[float, Field(ge=0, strict=True)]
Quantity = Annotated[str, AfterValidator(_quantity)]


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(f"not a regular expression: {error}") from None
    return value


Pattern = Annotated[str, AfterValidator(_regex)]


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
