"""Turns the pack's pure rules into `pulumi_policy` policies for the engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

from costing.view import ResourceView
from policies.pack_config import configure, rule_config
from policies.rule import ResourceRule, Rule, StackRule, config_schema
from policies.violation import Violation


def report(found: Sequence[Violation], report_violation: ReportViolation) -> None:
    """Report violations at the policy's level; undecided checks as the engine's
    advisory "can't run policy during preview" note, which UnknownValueError raises."""
    for item in found:
        if not item.undetermined:
            report_violation(item.message, item.urn or None)
    skipped = [item.message for item in found if item.undetermined]
    if skipped:
        error = UnknownValueError(UNKNOWN_STRING_VALUE, [])
        # The engine prints `message` after "can't run policy ... during preview: ".
        error.message = "; ".join(skipped)
        raise error


def _resource_validation(rule: ResourceRule[Any]) -> Any:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        view = ResourceView.of(args.resource_type, args.name, args.urn, args.props)
        # The engine checks types and bounds against the config schema, not unknown
        # settings or values only the rule can judge (quantities, patterns).
        config = rule_config(rule, args.get_config())
        report(rule.check(view, config), report_violation)

    return validate


def _stack_validation(rule: StackRule[Any]) -> Any:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        views = [ResourceView.of(r.resource_type, r.name, r.urn, r.props) for r in args.resources]
        config = rule_config(rule, args.get_config())
        report(rule.check(views, config), report_violation)

    return validate


def to_policy(rule: Rule) -> Policy:
    schema = config_schema(rule.config)
    common: dict[str, Any] = {
        "name": rule.name,
        "description": rule.description,
        "enforcement_level": EnforcementLevel(rule.enforcement),
        "config_schema": PolicyConfigSchema(schema) if schema else None,
    }
    if isinstance(rule, ResourceRule):
        return ResourceValidationPolicy(validate=_resource_validation(rule), **common)
    return StackValidationPolicy(validate=_stack_validation(rule), **common)


def initial_config(rules: Sequence[Rule], raw: Mapping[str, Any]) -> dict[str, Any]:
    """A stack's config file as `PolicyPack(initial_config=...)` wants it."""
    return {
        item.rule.name: {
            "enforcementLevel": EnforcementLevel(item.enforcement),
            **item.config.model_dump(mode="json", exclude_defaults=True),
        }
        for item in configure(rules, raw)
    }
