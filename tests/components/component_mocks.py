"""One component at a time under Pulumi's mocks: what it registered, under which parent,
with which inputs, and what it passed to register_outputs.

`evaluate(program)` runs `program` through `pulumi.runtime.test`, so every registration
and Output it started has settled when the graph is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pulumi
import pulumi_kubernetes as k8s
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.rpc import deserialize_properties

from components.billing import Billable, ControlPlane
from costing.kinds import EKS_CLUSTER
from costing.model import estimate
from costing.pricing import price
from costing.view import ResourceView
from stacks.simulate import PlatformMocks

PROJECT = "agent-platform"
STACK = "unit"
T = TypeVar("T")


@dataclass(frozen=True)
class Registered:
    urn: str
    type: str
    name: str
    parent: str
    inputs: dict[str, Any]


@dataclass
class Graph:
    """Everything the program under test registered, in order."""

    resources: list[Registered] = field(default_factory=list)
    # What each component passed to register_outputs, by URN.
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]

    def named(self, type_: str, name: str) -> Registered:
        matches = [r for r in self.of_type(type_) if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} {type_} named {name!r}")
        return matches[0]

    def component(self, type_: str) -> Registered:
        (match,) = self.of_type(type_)
        return match

    def children(self, parent: Registered) -> list[Registered]:
        return [r for r in self.resources if r.parent == parent.urn]

    def kinds(self, parent: Registered) -> list[tuple[str, str]]:
        """(type, name) of each child, sorted."""
        return sorted((r.type, r.name) for r in self.children(parent))

    def outputs_of(self, component: Registered) -> dict[str, Any]:
        return self.outputs[component.urn]


class _Recorder(pulumi_mocks.MockMonitor):
    def __init__(self, graph: Graph) -> None:
        super().__init__(PlatformMocks(preview=False))
        self.graph = graph

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            self.graph.resources.append(
                Registered(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    inputs=deserialize_properties(request.object, keep_unknowns=True),
                )
            )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        self.graph.outputs[request.urn] = deserialize_properties(request.outputs)
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


def evaluate(program: Callable[[], T]) -> tuple[T, Graph]:
    """Run `program` as a Pulumi program under the mocks; return its result and graph."""
    graph = Graph()
    monitor = _Recorder(graph)
    pulumi.runtime.set_mocks(
        monitor.mocks, project=PROJECT, stack=STACK, preview=False, monitor=monitor
    )
    results: list[T] = []

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program_under_mocks() -> None:
        results.append(program())

    program_under_mocks()
    return results[0], graph


def provider(name: str = "k8s") -> k8s.Provider:
    """A Kubernetes provider for the component under test; call it inside `program`."""
    return k8s.Provider(name, render_yaml_to_directory="unused")


def priced_both_ways(bill: Sequence[Billable], graph: Graph) -> tuple[Any, Any]:
    """A component's declared bill priced (the program's cost output), and what it
    registered priced as the pack reads it (`costing.model`), each as the cost command's
    JSON. Both on a cloud cluster, where Kubernetes objects cost money too."""
    cloud = [] if any(isinstance(part, ControlPlane) for part in bill) else ["cloud"]
    declared = price([*bill, *(ControlPlane(name=name) for name in cloud)])
    registered = estimate(
        [
            *(ResourceView.of(r.type, r.name, r.urn, r.inputs) for r in graph.resources),
            *(ResourceView(EKS_CLUSTER, name) for name in cloud),
        ]
    )
    return declared.as_json(), registered.as_json()
