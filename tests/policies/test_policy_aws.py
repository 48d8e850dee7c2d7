from __future__ import annotations

from typing import Any

from policy_fixtures import DELETE, only, patched, resource

from costing.view import UNKNOWN, ResourceView
from policies.rule import NoConfig
from policies.rules.aws import (
    EksConfig,
    ElastiCacheConfig,
    check_eks,
    check_elasticache,
    check_secret_kms,
)

KEY = "arn:aws:kms:us-east-1:123456789012:key/sim"


def cluster(**overrides: Any) -> ResourceView:
    props: dict[str, Any] = {
        "name": "prod",
        "encryptionConfig": {"provider": {"keyArn": KEY}, "resources": ["secrets"]},
        "enabledClusterLogTypes": ["api", "audit", "authenticator"],
        "vpcConfig": {"endpointPrivateAccess": True, "endpointPublicAccess": False},
    }
    props.update(overrides)
    return resource("aws:eks/cluster:Cluster", "prod", props)


def redis(**overrides: Any) -> ResourceView:
    props: dict[str, Any] = {
        "nodeType": "cache.r7g.large",
        "numCacheClusters": 2,
        "atRestEncryptionEnabled": True,
        "transitEncryptionEnabled": True,
        "authToken": "simulated-redis-password",
        "automaticFailoverEnabled": True,
        "multiAzEnabled": True,
    }
    props.update(overrides)
    return resource("aws:elasticache/replicationGroup:ReplicationGroup", "redis", props)


PROD_EKS = EksConfig(require_private_endpoint=True)


def test_hardened_cluster_passes() -> None:
    assert check_eks(cluster(), PROD_EKS) == []


def test_unknown_key_arn_counts_as_a_key() -> None:
    view = cluster(encryptionConfig={"provider": {"keyArn": UNKNOWN}, "resources": ["secrets"]})
    assert check_eks(view, PROD_EKS) == []


def test_cluster_without_secrets_encryption() -> None:
    found = only(check_eks(patched(cluster(), "encryptionConfig", DELETE), PROD_EKS))
    assert found.resource == "Cluster 'prod'"
    assert found.message == (
        "Cluster 'prod': has no encryptionConfig for secrets; set encryptionConfig.resources: "
        "[secrets] and encryptionConfig.provider.keyArn to a KMS key."
    )


def test_cluster_missing_audit_logs() -> None:
    found = only(check_eks(cluster(enabledClusterLogTypes=["api"]), PROD_EKS))
    assert found.message == (
        "Cluster 'prod': enabledClusterLogTypes lacks ['audit', 'authenticator']; add them so "
        "control-plane actions are auditable."
    )


def test_public_endpoint_only_fails_where_private_is_required() -> None:
    view = cluster(vpcConfig={"endpointPrivateAccess": False, "endpointPublicAccess": True})
    assert check_eks(view, EksConfig()) == []
    found = only(check_eks(view, PROD_EKS))
    assert found.message == (
        "Cluster 'prod': vpcConfig.endpointPrivateAccess is False and "
        "vpcConfig.endpointPublicAccess is True; this stack requires a private endpoint: set "
        "endpointPrivateAccess: true and endpointPublicAccess: false."
    )


def test_unknown_log_types_are_undecided() -> None:
    [note] = check_eks(cluster(enabledClusterLogTypes=UNKNOWN), PROD_EKS)
    assert note.undetermined


def test_hardened_elasticache_passes() -> None:
    assert check_elasticache(redis(), ElastiCacheConfig(require_multi_az=True)) == []


def test_elasticache_without_transit_encryption() -> None:
    found = only(check_elasticache(redis(transitEncryptionEnabled=False), ElastiCacheConfig()))
    assert found.resource == "ReplicationGroup 'redis'"
    assert found.message == (
        "ReplicationGroup 'redis': transitEncryptionEnabled is not true; set "
        "transitEncryptionEnabled: true."
    )


def test_elasticache_without_auth_token() -> None:
    found = only(check_elasticache(patched(redis(), "authToken", DELETE), ElastiCacheConfig()))
    assert found.message == (
        "ReplicationGroup 'redis': has no authToken; set authToken from a secret (transit "
        "encryption needed)."
    )


def test_single_az_elasticache_fails_only_where_multi_az_is_required() -> None:
    view = redis(numCacheClusters=1, multiAzEnabled=False, automaticFailoverEnabled=False)
    assert check_elasticache(view, ElastiCacheConfig()) == []
    found = only(check_elasticache(view, ElastiCacheConfig(require_multi_az=True)))
    assert found.message == (
        "ReplicationGroup 'redis': is not Multi-AZ, which this stack requires; set "
        "multiAzEnabled: true, automaticFailoverEnabled: true, numCacheClusters: 2 or more."
    )


def test_secret_with_kms_key_passes_even_when_unknown() -> None:
    for key in (KEY, UNKNOWN):
        view = resource("aws:secretsmanager/secret:Secret", "app-keys", {"kmsKeyId": key})
        assert check_secret_kms(view, NoConfig()) == []


def test_secret_without_kms_key() -> None:
    view = resource("aws:secretsmanager/secret:Secret", "app-keys", {"name": "agents/app-keys"})
    found = only(check_secret_kms(view, NoConfig()))
    assert found.resource == "Secret 'app-keys'"
    assert found.message == (
        "Secret 'app-keys': has no kmsKeyId, so it uses the account's default "
        "aws/secretsmanager key; set kmsKeyId to a customer-managed KMS key."
    )
