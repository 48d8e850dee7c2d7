"""Every rule of the pack, in the order the engine and the README list them."""

from __future__ import annotations

from policies.rule import Rule
from policies.rules import (
    aws,
    aws_encryption,
    aws_network,
    aws_nodes,
    budget,
    egress,
    env_secrets,
    gateway,
    gpu,
    images,
    limits,
    network,
    pod_security,
    probes,
    release,
    scaling,
)

RULES: list[Rule] = [
    *limits.RULES,
    *gpu.RULES,
    *scaling.RULES,
    *images.RULES,
    *pod_security.RULES,
    *env_secrets.RULES,
    *probes.RULES,
    *network.RULES,
    *gateway.RULES,
    *release.RULES,
    *egress.RULES,
    *aws.RULES,
    *aws_network.RULES,
    *aws_nodes.RULES,
    *aws_encryption.RULES,
    *budget.RULES,
]

BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}
