"""Worker nodes: IMDSv2 only, with a hop limit that keeps pods away from the instance
metadata service (and the node role's credentials), and encrypted volumes."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from costing.kinds import NODE_GROUP
from costing.view import UNKNOWN, ResourceView, dig
from policies.rule import PositiveCount, ResourceRule, Rule, RuleConfig
from policies.violation import Violation, undetermined, violation

NODES = "node-group-hardening"

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
# Karpenter's node class: its defaults are IMDSv2 with hop limit 1 and encrypted
# volumes, so only a value set otherwise is a violation.
EC2_NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"


class NodeConfig(RuleConfig):
    # 1: a pod's packets to IMDS take a second hop and are dropped.
    max_hop_limit: Annotated[PositiveCount, Field(le=64)] = 1


def _encrypted(flag: Any) -> Any:
    # The launch template schema carries booleans as strings ("true").
    if flag is UNKNOWN:
        return UNKNOWN
    return flag is True or flag == "true"


def _metadata(
    resource: ResourceView, options: Any, cfg: NodeConfig, *, defaults_safe: bool, path: str
) -> list[Violation]:
    found: list[Violation] = []
    tokens, hops = dig(options, "httpTokens"), dig(options, "httpPutResponseHopLimit")
    if tokens is UNKNOWN or hops is UNKNOWN:
        return [undetermined(NODES, resource, f"{path} unknown at preview.")]
    if tokens != "required" and not (tokens is None and defaults_safe):
        found.append(
            violation(
                NODES,
                resource,
                f"{path}.httpTokens is {tokens!r}; set httpTokens: required (IMDSv2 only), "
                "so a forged request cannot read the node role's credentials.",
            )
        )
    if (hops is None and not defaults_safe) or (
        isinstance(hops, int | float) and hops > cfg.max_hop_limit
    ):
        shown = "unset" if hops is None else f"{hops:g}"
        found.append(
            violation(
                NODES,
                resource,
                f"{path}.httpPutResponseHopLimit is {shown}; set it to "
                f"{cfg.max_hop_limit} (max_hop_limit) so pods cannot reach IMDS.",
            )
        )
    return found


def _volumes(
    resource: ResourceView, mappings: Any, *, defaults_safe: bool, path: str
) -> list[Violation]:
    if mappings is UNKNOWN:
        return [undetermined(NODES, resource, f"{path} unknown at preview.")]
    if not mappings:
        if defaults_safe:
            return []
        return [
            violation(
                NODES,
                resource,
                f"has no {path}, so the root volume's encryption is left to the account's "
                "default; map the root device with ebs.encrypted: true.",
            )
        ]
    found: list[Violation] = []
    for index, mapping in enumerate(mappings):
        ebs = dig(mapping, "ebs")
        if ebs is None:
            continue
        flag = _encrypted(dig(ebs, "encrypted"))
        if flag is UNKNOWN:
            found.append(undetermined(NODES, resource, f"{path}[{index}].ebs unknown."))
        # A mapping written down without the flag takes the account's default, in a
        # Karpenter node class too.
        elif not flag:
            found.append(
                violation(
                    NODES,
                    resource,
                    f"{path}[{index}] ({dig(mapping, 'deviceName')}) is not encrypted; set "
                    "ebs.encrypted: true.",
                )
            )
    return found


def check_nodes(resource: ResourceView, cfg: NodeConfig) -> list[Violation]:
    if resource.type == NODE_GROUP:
        template = resource.get("launchTemplate")
        # A template id unknown at preview is a template created in the same update.
        if template is UNKNOWN or dig(template, "id") or dig(template, "name"):
            return []
        return [
            violation(
                NODES,
                resource,
                "has no launchTemplate, so its nodes take EKS's defaults (IMDSv1 allowed, "
                "hop limit 2: pods can read the node role's credentials); start it from a "
                "launch template that requires IMDSv2 and encrypts the root volume.",
            )
        ]
    if resource.type == LAUNCH_TEMPLATE:
        return [
            *_metadata(
                resource,
                resource.get("metadataOptions"),
                cfg,
                defaults_safe=False,
                path="metadataOptions",
            ),
            *_volumes(
                resource,
                resource.get("blockDeviceMappings"),
                defaults_safe=False,
                path="blockDeviceMappings",
            ),
        ]
    if resource.type == EC2_NODE_CLASS:
        return [
            *_metadata(
                resource,
                resource.get("spec", "metadataOptions"),
                cfg,
                defaults_safe=True,
                path="spec.metadataOptions",
            ),
            *_volumes(
                resource,
                resource.get("spec", "blockDeviceMappings"),
                defaults_safe=True,
                path="spec.blockDeviceMappings",
            ),
        ]
    return []


RULES: list[Rule] = [
    ResourceRule(
        NODES,
        "EKS node groups start from a launch template; launch templates (and Karpenter "
        "EC2NodeClasses) require IMDSv2 with a hop limit of at most max_hop_limit and "
        "encrypt their volumes.",
        "mandatory",
        NodeConfig,
        check_nodes,
        "An unknown launch template id counts as set; unknown metadata options or volume "
        "mappings are skipped with an advisory note.",
    ),
]
