"""The builders really produce compliant resources: every rule passes on them."""

from __future__ import annotations

import pytest
from policy_fixtures import workload

from policies.catalog import RULES
from policies.rule import ResourceRule
from policies.workloads import POD_SPEC_PATHS


@pytest.mark.parametrize("kind", sorted(POD_SPEC_PATHS))
def test_compliant_workload_passes_every_resource_rule(kind: str) -> None:
    view = workload(kind)
    for rule in RULES:
        if isinstance(rule, ResourceRule):
            assert rule.check(view, rule.config()) == [], rule.name
