"""The one view of a resource every rule and the cost model read, whatever produced it.

The engine hands the pack `pulumi_policy` proxies with sentinel strings for values
unknown at preview; the mock harness hands it `pulumi.output.Unknown` instances and
wire-form secrets. Both are normalised here, once, so rules see plain dicts and lists,
secrets unwrapped, and the single `UNKNOWN` marker wherever a value cannot be known.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pulumi.output
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret
from pulumi_policy.proxy import (
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
    _DictProxy,
    _ListProxy,
)

_ENGINE_UNKNOWNS: Final = frozenset(
    {
        UNKNOWN_ARCHIVE_VALUE,
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_ASSET_VALUE,
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_OBJECT_VALUE,
        UNKNOWN_STRING_VALUE,
    }
)


class Unknown:
    """A value that is not known yet (preview); compare with `is UNKNOWN`."""

    _instance: Unknown | None = None

    def __new__(cls) -> Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN: Final = Unknown()


def normalise(value: Any) -> Any:
    """Plain dicts and lists, secrets unwrapped, every kind of unknown as `UNKNOWN`."""
    # Exact built-in types first, with the result the general checks below give them:
    # they are nearly every node, and the ABC checks were a third of the pack's time per
    # resource, which the engine waits for before it moves on to the next resource.
    kind = type(value)
    if kind is str:
        return UNKNOWN if value in _ENGINE_UNKNOWNS else value
    if kind is dict and not is_rpc_secret(value):
        return {str(k): normalise(v) for k, v in value.items()}
    if kind is list:
        return [normalise(v) for v in value]
    if kind is int or kind is float or kind is bool or value is None:
        return value
    # The engine's proxies raise on unknown access; read their targets instead.
    if isinstance(value, _DictProxy | _ListProxy):
        return normalise(value["__target"])
    if isinstance(value, pulumi.output.Unknown):
        return UNKNOWN
    if isinstance(value, str):
        return UNKNOWN if value in _ENGINE_UNKNOWNS else value
    if isinstance(value, Mapping):
        if is_rpc_secret(value):
            return normalise(unwrap_rpc_secret(value))
        return {str(k): normalise(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [normalise(v) for v in value]
    return value


def dig(value: Any, *keys: str | int) -> Any:
    """Follow keys and indexes; None where a step is absent, UNKNOWN where one is unknown."""
    for key in keys:
        if value is UNKNOWN:
            return UNKNOWN
        if isinstance(key, int):
            if not isinstance(value, list) or not -len(value) <= key < len(value):
                return None
            value = value[key]
        else:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
    return value


def number(value: Any) -> Any:
    """Wire-form numbers arrive as floats (4.0); show whole ones as written (4)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def short_type(resource_type: str) -> str:
    """`kubernetes:apps/v1:Deployment` -> `Deployment`."""
    return resource_type.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class ResourceView:
    """A resource's type, names and normalised wire-form (camelCase) inputs."""

    type: str
    name: str
    urn: str = ""
    props: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, resource_type: str, name: str, urn: str, props: Any) -> ResourceView:
        normalised = normalise(props)
        return cls(resource_type, name, urn, normalised if isinstance(normalised, dict) else {})

    def get(self, *keys: str | int) -> Any:
        return dig(self.props, *keys)

    @property
    def kind(self) -> str:
        return short_type(self.type)

    @property
    def display_name(self) -> str:
        """`metadata.name` for Kubernetes objects (what kubectl shows), else the Pulumi name."""
        name = self.get("metadata", "name")
        return name if isinstance(name, str) else self.name

    @property
    def label(self) -> str:
        return f"{self.kind} '{self.display_name}'"

    @property
    def namespace(self) -> Any:
        """The Kubernetes namespace: `default` when unset, UNKNOWN when not known yet."""
        namespace = self.get("metadata", "namespace")
        return "default" if namespace is None else namespace


def name_matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether a workload name matches any allowlist entry (shell-style: `dcgm-exporter-*`).

    Allowlists are patterns because components name per-pool copies of one workload
    (`nvidia-device-plugin-<pool>`)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def entries_for(name: str, table: Mapping[str, Iterable[str]]) -> set[str]:
    """The union of a per-workload table's values whose pattern matches `name`."""
    return {
        item
        for pattern, items in table.items()
        if fnmatch.fnmatchcase(name, pattern)
        for item in items
    }
