"""Keys and what they protect: KMS key policy and rotation, CloudWatch log groups
encrypted and kept for a set time, ElastiCache on a customer-managed key."""

from __future__ import annotations

import json
from typing import Any

from costing.kinds import REPLICATION_GROUP
from costing.view import UNKNOWN, ResourceView, dig
from policies.rule import NoConfig, PositiveCount, ResourceRule, Rule, RuleConfig
from policies.violation import Violation, undetermined, violation

KMS_KEY = "kms-key-hardening"
LOG_GROUP = "log-group-hardening"
ELASTICACHE_CMK = "elasticache-cmk"

KEY = "aws:kms/key:Key"
LOG_GROUP_TYPE = "aws:cloudwatch/logGroup:LogGroup"


def _open_to_anyone(policy: Any) -> bool:
    """Whether a statement allows `*` as principal with no condition to narrow it."""
    statements = dig(policy, "Statement")
    for statement in statements if isinstance(statements, list) else [statements]:
        if dig(statement, "Effect") != "Allow" or dig(statement, "Condition"):
            continue
        principal = dig(statement, "Principal")
        aws = dig(principal, "AWS") if isinstance(principal, dict) else principal
        if aws == "*" or (isinstance(aws, list) and "*" in aws):
            return True
    return False


def check_kms_key(resource: ResourceView, _cfg: NoConfig) -> list[Violation]:
    if resource.type != KEY:
        return []
    found: list[Violation] = []
    spec = resource.get("customerMasterKeySpec") or resource.get("keySpec")
    # AWS rotates symmetric keys only.
    if spec in (None, "SYMMETRIC_DEFAULT"):
        rotation = resource.get("enableKeyRotation")
        if rotation is UNKNOWN:
            found.append(undetermined(KMS_KEY, resource, "enableKeyRotation unknown."))
        elif rotation is not True:
            found.append(
                violation(
                    KMS_KEY,
                    resource,
                    "enableKeyRotation is not true; set it, so a leaked key version stops "
                    "encrypting new data within a year.",
                )
            )
    policy = resource.get("policy")
    # A policy computed in the same update is unknown at preview but present.
    if policy is UNKNOWN:
        return found
    if not policy:
        found.append(
            violation(
                KMS_KEY,
                resource,
                "has no policy, so it gets AWS's implicit default; write the key policy "
                "down (policy) so that who may use and administer the key is reviewable.",
            )
        )
        return found
    try:
        parsed = json.loads(policy) if isinstance(policy, str) else policy
    except json.JSONDecodeError:
        found.append(violation(KMS_KEY, resource, "policy is not valid JSON."))
        return found
    if _open_to_anyone(parsed):
        found.append(
            violation(
                KMS_KEY,
                resource,
                'policy allows Principal "*" without a Condition; name the account or '
                "the service that uses the key.",
            )
        )
    return found


class LogGroupConfig(RuleConfig):
    # Days a log group must keep its logs at least; "never expire" (0) is not a choice
    # a stack made.
    min_retention_days: PositiveCount = 7


def check_log_group(resource: ResourceView, cfg: LogGroupConfig) -> list[Violation]:
    if resource.type != LOG_GROUP_TYPE:
        return []
    found: list[Violation] = []
    # An unknown key ARN is a key created in the same update: counts as set.
    if not resource.get("kmsKeyId"):
        found.append(
            violation(
                LOG_GROUP,
                resource,
                "has no kmsKeyId, so CloudWatch encrypts it with a key nobody controls; set "
                "kmsKeyId to the stack's KMS key (its policy must let logs.<region> use it).",
            )
        )
    retention = resource.get("retentionInDays")
    if retention is UNKNOWN:
        found.append(undetermined(LOG_GROUP, resource, "retentionInDays unknown at preview."))
    elif not isinstance(retention, int | float) or retention < cfg.min_retention_days:
        shown = "unset (logs never expire)" if not retention else f"{retention:g} days"
        found.append(
            violation(
                LOG_GROUP,
                resource,
                f"retentionInDays is {shown}; set it per stack, at least "
                f"{cfg.min_retention_days} (min_retention_days).",
            )
        )
    return found


def check_elasticache_cmk(resource: ResourceView, _cfg: NoConfig) -> list[Violation]:
    if resource.type != REPLICATION_GROUP:
        return []
    # An unknown key ARN is a key created in the same update: counts as set.
    if resource.get("kmsKeyId"):
        return []
    return [
        violation(
            ELASTICACHE_CMK,
            resource,
            "has no kmsKeyId, so its data at rest uses the AWS-managed key; set kmsKeyId "
            "to the stack's customer-managed KMS key.",
        )
    ]


RULES: list[Rule] = [
    ResourceRule(
        KMS_KEY,
        "KMS keys rotate (symmetric keys) and have an explicit key policy that opens them to "
        "no unconditioned `*` principal.",
        "mandatory",
        NoConfig,
        check_kms_key,
        "A policy unknown at preview counts as set; an unknown rotation flag is skipped "
        "with an advisory note.",
    ),
    ResourceRule(
        LOG_GROUP,
        "CloudWatch log groups are encrypted with a KMS key and keep logs for at least "
        "min_retention_days.",
        "mandatory",
        LogGroupConfig,
        check_log_group,
        "An unknown kmsKeyId counts as set; an unknown retention is skipped with an advisory note.",
    ),
    ResourceRule(
        ELASTICACHE_CMK,
        "ElastiCache replication groups encrypt at rest with a customer-managed KMS key.",
        "mandatory",
        NoConfig,
        check_elasticache_cmk,
        "An unknown kmsKeyId (a key created in the same update) counts as set.",
    ),
]
