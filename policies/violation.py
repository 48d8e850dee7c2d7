"""What a rule returns: a violation, or a note that it could not decide."""

from __future__ import annotations

from dataclasses import dataclass

from costing.view import ResourceView


@dataclass(frozen=True)
class Violation:
    """One problem, on one resource, with a message naming the field and the fix.

    `undetermined` marks a check that was skipped because a value is unknown at
    preview and the rule does not fail on unknowns: the engine reports those as
    advisory "can't run policy during preview" notes, and so does the harness.
    """

    rule: str
    resource: str
    urn: str
    message: str
    undetermined: bool = False

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}"


def violation(rule: str, resource: ResourceView, message: str) -> Violation:
    return Violation(rule, resource.label, resource.urn, f"{resource.label}: {message}")


def undetermined(rule: str, resource: ResourceView, message: str) -> Violation:
    return Violation(rule, resource.label, resource.urn, f"{resource.label}: {message}", True)
