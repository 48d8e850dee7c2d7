"""The value types the components' Args share, and the model they are all built on.

Every Args model validates when it is constructed, before any resource exists, and the
stack config (stacks/config.py) composes the same models for `Pulumi.<stack>.yaml`, so
each check is written once and a bad stack file is reported under its config key.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Self

import pulumi
from pulumi_kubernetes.core.v1 import ResourceRequirementsArgs
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from components.quantity import parse_quantity


class ArgsModel(BaseModel):
    """Frozen, strict about unknown fields, and spelled in camelCase in a stack file."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        # An infinite budget or size is never meant; JSON and YAML both can spell one.
        allow_inf_nan=False,
        # Providers, resources and Outputs are checked by their class.
        arbitrary_types_allowed=True,
    )


# A string known now, or one Pulumi resolves later (a resource's name, an ARN).
InputStr = str | pulumi.Output[str]


def _quantity(value: str) -> str:
    parse_quantity(value)
    return value


Quantity = Annotated[str, AfterValidator(_quantity)]

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def _image_reference(value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError("an image reference has no spaces: `repository:tag[@sha256:<digest>]`")
    _, at, digest = value.partition("@")
    if at and not _DIGEST.match(digest):
        raise ValueError(
            f"the digest '{digest}' is not `sha256:` and 64 lower-case hex digits "
            "(`docker buildx imagetools inspect <image>` prints it)"
        )
    return value


# A container image: `repository:tag`, or pinned to its content as
# `repository:tag@sha256:<digest>` (the tag then only documents the version).
ImageReference = Annotated[str, AfterValidator(_image_reference)]
# Strict: lax ints would read `true` as 1 and "2" as 2, hiding a wrong type in the file.
PositiveInt = Annotated[int, Field(gt=0, strict=True)]
NonNegativeInt = Annotated[int, Field(ge=0, strict=True)]
Percent = Annotated[int, Field(ge=1, le=100, strict=True)]


class Resources(ArgsModel):
    """Container requests and limits, in Kubernetes quantities."""

    cpu_request: Quantity
    cpu_limit: Quantity
    memory_request: Quantity
    memory_limit: Quantity
    ephemeral_storage_limit: Quantity = "1Gi"

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Self:
        if parse_quantity(self.cpu_request) > parse_quantity(self.cpu_limit):
            raise ValueError(f"cpuRequest {self.cpu_request} exceeds cpuLimit {self.cpu_limit}")
        if parse_quantity(self.memory_request) > parse_quantity(self.memory_limit):
            raise ValueError(
                f"memoryRequest {self.memory_request} exceeds memoryLimit {self.memory_limit}"
            )
        return self

    def as_kubernetes(self, extended: dict[str, str] | None = None) -> ResourceRequirementsArgs:
        """The container's requirements; `extended` resources (GPUs) cannot be
        overcommitted, so each is both requested and limited."""
        return ResourceRequirementsArgs(
            requests={
                "cpu": self.cpu_request,
                "memory": self.memory_request,
                "ephemeral-storage": "64Mi",
                **(extended or {}),
            },
            limits={
                "cpu": self.cpu_limit,
                "memory": self.memory_limit,
                "ephemeral-storage": self.ephemeral_storage_limit,
                **(extended or {}),
            },
        )


class Scaling(ArgsModel):
    """min <= desired <= max, as for an EKS managed node group."""

    min_size: NonNegativeInt
    desired_size: NonNegativeInt
    max_size: PositiveInt

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_size > self.max_size:
            raise ValueError(f"minSize {self.min_size} is greater than maxSize {self.max_size}")
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(
                f"desiredSize {self.desired_size} is outside "
                f"minSize..maxSize ({self.min_size}..{self.max_size})"
            )
        return self


class VolumeClaim(ArgsModel):
    """A PersistentVolumeClaim a component makes (itself, or through a StatefulSet's
    template), for a target that must provide its volume (components/local_storage.py)."""

    namespace: str
    name: str
    size_gi: PositiveInt
    access_modes: tuple[str, ...] = ("ReadWriteOnce",)


class SecretKeyRef(ArgsModel):
    """Where a pod reads a value: a key of a Kubernetes Secret in its namespace."""

    name: InputStr
    key: str


def _cidr_text(value: object) -> object:
    # ipaddress reads an int as an address (5 -> 0.0.0.5/32): a CIDR must be written out.
    if isinstance(value, ipaddress.IPv4Network | str):
        return value
    raise ValueError("must be a CIDR written as text, such as 203.0.113.0/24")


# An IPv4 CIDR from config text: never a number read as an address.
Cidr = Annotated[ipaddress.IPv4Network, BeforeValidator(_cidr_text)]
