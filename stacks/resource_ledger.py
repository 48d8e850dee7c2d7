"""Every custom resource the program declares, in the wire form the engine receives.

The stack output "estimated monthly cost" prices these with the cost model (`costing`)
that the budget policy and `python -m policies.cost` use too, so the three agree by
construction. A stack transformation sees each resource as it is constructed, under the
engine and under mocks alike; serialising its inputs the way the SDK does gives the
camelCase properties the policies read.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pulumi
from pulumi import _types
from pulumi.runtime import rpc

WireResource = tuple[str, dict[str, Any]]


def _input_type_of(resource: pulumi.Resource) -> type | None:
    """The generated Args class whose metadata maps Python names to wire names."""
    module = sys.modules.get(type(resource).__module__)
    for suffix in ("Args", "InitArgs"):
        candidate = getattr(module, f"{type(resource).__name__}{suffix}", None)
        if isinstance(candidate, type) and _types.is_input_type(candidate):
            return candidate
    return None


class ResourceLedger:
    def __init__(self) -> None:
        self._entries: list[tuple[str, pulumi.Inputs, pulumi.Resource]] = []

    def install(self) -> None:
        pulumi.runtime.register_stack_transformation(self._record)

    def _record(self, args: pulumi.ResourceTransformationArgs) -> None:
        if isinstance(args.resource, pulumi.CustomResource) and not args.type_.startswith(
            "pulumi:providers:"
        ):
            self._entries.append((args.type_, args.props, args.resource))

    def wire_resources(self) -> pulumi.Output[list[WireResource]]:
        entries = list(self._entries)

        async def serialise() -> list[WireResource]:
            wire: list[WireResource] = []
            for type_, props, resource in entries:
                typ = _input_type_of(resource)
                struct = await rpc.serialize_properties(
                    props, {}, resource, None if typ else resource.translate_input_property, typ
                )
                # Secret values only ever feed prices here, never an output.
                wire_props, _ = rpc.deserialize_properties_unwrap_secrets(struct)
                wire.append((type_, wire_props))
            return wire

        wire = asyncio.ensure_future(serialise())

        async def known() -> bool:
            return not any(rpc.contains_unknowns(props) for _, props in await wire)

        # Built directly rather than with Output.from_input, which would lift every dict
        # and list of every resource into an Output of its own before the cost could be
        # computed: at the very end of a run, after the last resource, a tenth of a second
        # the engine waited for. The result is the same: unknown while any input is (at
        # preview), never secret, depending on no resource.
        return pulumi.Output(set(), wire, asyncio.ensure_future(known()))
