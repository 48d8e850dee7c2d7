"""The pack's entry point for the engine: assembles the PolicyPack and serves it.

`pulumi preview --policy-pack policies --policy-pack-config policies/config/<stack>.json`
applies a stack's thresholds and levels. Without the flag, the stack named by
PULUMI_STACK (when the engine sets it) supplies them as the pack's initial config.
"""

from __future__ import annotations

import os

from pulumi_policy import EnforcementLevel, PolicyPack

from policies.adapter import initial_config, to_policy
from policies.catalog import RULES
from policies.pack_config import load_raw

_stack = os.environ.get("PULUMI_STACK")

PolicyPack(
    name="agent-platform",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[to_policy(rule) for rule in RULES],
    initial_config=initial_config(RULES, load_raw(_stack)) if _stack else None,
)
