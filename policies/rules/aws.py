"""AWS managed services: EKS, ElastiCache and Secrets Manager hardening."""

from __future__ import annotations

from typing import Any

from pydantic import StrictBool

from costing.kinds import EKS_CLUSTER, REPLICATION_GROUP
from costing.view import UNKNOWN, ResourceView, dig
from policies.rule import NoConfig, ResourceRule, Rule, RuleConfig
from policies.violation import Violation, undetermined, violation

EKS = "eks-cluster-hardening"
ELASTICACHE = "elasticache-hardening"
SECRETS_KMS = "secretsmanager-kms"

SECRETS_MANAGER = "aws:secretsmanager/secret:Secret"


class EksConfig(RuleConfig):
    required_log_types: tuple[str, ...] = ("api", "audit", "authenticator")
    require_private_endpoint: StrictBool = False


def _encrypts_secrets(encryption: Any) -> Any:
    # pulumi-aws renders encryptionConfig as one object; older schemas used a list.
    configs = encryption if isinstance(encryption, list) else [encryption]
    for config in configs:
        resources = dig(config, "resources")
        if resources is UNKNOWN:
            return UNKNOWN
        # A key ARN unknown at preview is still a key: the KMS key is created alongside.
        if (
            isinstance(resources, list)
            and "secrets" in resources
            and dig(config, "provider", "keyArn")
        ):
            return True
    return False


def check_eks(resource: ResourceView, cfg: EksConfig) -> list[Violation]:
    if resource.type != EKS_CLUSTER:
        return []
    found: list[Violation] = []
    encrypted = _encrypts_secrets(resource.get("encryptionConfig"))
    if encrypted is UNKNOWN:
        found.append(undetermined(EKS, resource, "encryptionConfig unknown at preview."))
    elif not encrypted:
        found.append(
            violation(
                EKS,
                resource,
                "has no encryptionConfig for secrets; set encryptionConfig.resources: "
                "[secrets] and encryptionConfig.provider.keyArn to a KMS key.",
            )
        )
    logs = resource.get("enabledClusterLogTypes")
    if logs is UNKNOWN:
        found.append(undetermined(EKS, resource, "enabledClusterLogTypes unknown at preview."))
    else:
        missing = [t for t in cfg.required_log_types if t not in (logs or [])]
        if missing:
            found.append(
                violation(
                    EKS,
                    resource,
                    f"enabledClusterLogTypes lacks {missing}; add them so control-plane "
                    "actions are auditable.",
                )
            )
    if cfg.require_private_endpoint:
        private = resource.get("vpcConfig", "endpointPrivateAccess")
        public = resource.get("vpcConfig", "endpointPublicAccess")
        # public access defaults to true in the EKS API.
        if private is not True or public is not False:
            found.append(
                violation(
                    EKS,
                    resource,
                    f"vpcConfig.endpointPrivateAccess is {private!r} and "
                    f"vpcConfig.endpointPublicAccess is {public!r}; this stack requires a "
                    "private endpoint: set endpointPrivateAccess: true and "
                    "endpointPublicAccess: false.",
                )
            )
    return found


class ElastiCacheConfig(RuleConfig):
    require_multi_az: StrictBool = False


def check_elasticache(resource: ResourceView, cfg: ElastiCacheConfig) -> list[Violation]:
    if resource.type != REPLICATION_GROUP:
        return []
    found: list[Violation] = []
    for field in ("atRestEncryptionEnabled", "transitEncryptionEnabled"):
        value = resource.get(field)
        if value is UNKNOWN:
            found.append(undetermined(ELASTICACHE, resource, f"{field} unknown at preview."))
        elif value is not True:
            found.append(
                violation(ELASTICACHE, resource, f"{field} is not true; set {field}: true.")
            )
    # A generated auth token is unknown at preview but present.
    if not resource.get("authToken"):
        found.append(
            violation(
                ELASTICACHE,
                resource,
                "has no authToken; set authToken from a secret (transit encryption needed).",
            )
        )
    if cfg.require_multi_az:
        clusters = resource.get("numCacheClusters")
        settings = {
            "multiAzEnabled": resource.get("multiAzEnabled"),
            "automaticFailoverEnabled": resource.get("automaticFailoverEnabled"),
        }
        bad = [f"{k}: true" for k, v in settings.items() if v is not True]
        if clusters is UNKNOWN or not isinstance(clusters, int | float) or clusters < 2:
            bad.append("numCacheClusters: 2 or more")
        if bad:
            found.append(
                violation(
                    ELASTICACHE,
                    resource,
                    f"is not Multi-AZ, which this stack requires; set {', '.join(bad)}.",
                )
            )
    return found


def check_secret_kms(resource: ResourceView, _cfg: NoConfig) -> list[Violation]:
    if resource.type != SECRETS_MANAGER:
        return []
    # An unknown key id is a key created in the same update: counts as set.
    if resource.get("kmsKeyId"):
        return []
    return [
        violation(
            SECRETS_KMS,
            resource,
            "has no kmsKeyId, so it uses the account's default aws/secretsmanager key; "
            "set kmsKeyId to a customer-managed KMS key.",
        )
    ]


RULES: list[Rule] = [
    ResourceRule(
        EKS,
        "EKS encrypts secrets with KMS, logs the control plane, and where required has a "
        "private endpoint only.",
        "mandatory",
        EksConfig,
        check_eks,
        "An unknown key ARN counts as set; unknown encryption or logs are skipped with an "
        "advisory note; unknown endpoint flags fail where a private endpoint is required.",
    ),
    ResourceRule(
        ELASTICACHE,
        "ElastiCache encrypts at rest and in transit, has an auth token, and where required "
        "is Multi-AZ.",
        "mandatory",
        ElastiCacheConfig,
        check_elasticache,
        "An unknown auth token counts as set; unknown encryption flags are skipped with an "
        "advisory note; unknown Multi-AZ settings fail where Multi-AZ is required.",
    ),
    ResourceRule(
        SECRETS_KMS,
        "Secrets Manager secrets are encrypted with a customer-managed KMS key.",
        "mandatory",
        NoConfig,
        check_secret_kms,
        "An unknown kmsKeyId (a key created in the same update) counts as set.",
    ),
]
