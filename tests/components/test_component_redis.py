"""Redis: a StatefulSet in the cluster, or ElastiCache."""

from __future__ import annotations

import pulumi
import pytest
from component_mocks import evaluate, priced_both_ways, provider
from pulumi.runtime.rpc import is_rpc_secret

from components.redis import Redis, RedisArgs, RedisConfig
from components.values import SecretKeyRef

REDIS = "agent-platform:redis:Redis"
CLIENT_SECRET = SecretKeyRef(name="agent-secrets", key="redis-password")
KEY = "arn:aws:kms:us-east-1:123456789012:key/stack"


def _password() -> pulumi.Output[str]:
    return pulumi.Output.secret("a-long-enough-redis-password")


def test_in_cluster_redis_is_a_statefulset_behind_a_service_for_agents_only() -> None:
    def program() -> Redis:
        return Redis(
            "queue",
            RedisArgs(
                config=RedisConfig(mode="in-cluster", storage_gi=4),
                password=_password(),
                client_password_secret=CLIENT_SECRET,
                namespace="agents",
                provider=provider(),
                secrets_provider=provider("secrets"),
            ),
        )

    _, graph = evaluate(program)
    component = graph.component(REDIS)
    assert graph.kinds(component) == [
        ("kubernetes:apps/v1:StatefulSet", "queue-statefulset"),
        ("kubernetes:core/v1:ConfigMap", "queue-config"),
        ("kubernetes:core/v1:Secret", "queue-auth"),
        ("kubernetes:core/v1:Service", "queue-service"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "queue-netpol"),
        ("kubernetes:policy/v1:PodDisruptionBudget", "queue-pdb"),
    ]
    auth = graph.named("kubernetes:core/v1:Secret", "queue-auth")
    assert is_rpc_secret(auth.inputs["stringData"])
    spec = graph.named("kubernetes:apps/v1:StatefulSet", "queue-statefulset").inputs["spec"]
    claim = spec["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"] == {"storage": "4Gi"}
    (container,) = spec["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["memory"] == "512Mi"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    policy = graph.named("kubernetes:networking.k8s.io/v1:NetworkPolicy", "queue-netpol")
    (rule,) = policy.inputs["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    assert graph.outputs_of(component) == {
        "endpoint": "redis.agents.svc.cluster.local",
        "port": 6379,
        "passwordSecret": {"name": "agent-secrets", "key": "redis-password"},
    }


def test_elasticache_is_multi_az_encrypted_and_reachable_from_the_nodes_only() -> None:
    def program() -> Redis:
        return Redis(
            "queue",
            RedisArgs(
                config=RedisConfig(mode="elasticache", num_cache_clusters=2),
                password=_password(),
                client_password_secret=CLIENT_SECRET,
                subnet_ids=["subnet-a", "subnet-b"],
                vpc_id="vpc-1",
                node_security_group_id="sg-nodes",
                multi_az=True,
                kms_key_arn=KEY,
            ),
        )

    _, graph = evaluate(program)
    component = graph.component(REDIS)
    assert graph.kinds(component) == [
        ("aws:ec2/securityGroup:SecurityGroup", "queue-sg"),
        ("aws:elasticache/replicationGroup:ReplicationGroup", "queue-rg"),
        ("aws:elasticache/subnetGroup:SubnetGroup", "queue-subnets"),
    ]
    group = graph.named("aws:elasticache/replicationGroup:ReplicationGroup", "queue-rg").inputs
    assert group["multiAzEnabled"] is True
    assert group["automaticFailoverEnabled"] is True
    assert group["transitEncryptionEnabled"] is True
    # At rest with the stack's key, not the AWS-managed default.
    assert group["atRestEncryptionEnabled"] is True
    assert group["kmsKeyId"] == KEY
    assert is_rpc_secret(group["authToken"])
    (ingress,) = graph.named("aws:ec2/securityGroup:SecurityGroup", "queue-sg").inputs["ingress"]
    assert ingress["securityGroups"] == ["sg-nodes"]
    assert graph.outputs_of(component)["endpoint"] == "queue-rg.cache.amazonaws.com"


def test_each_mode_gets_what_it_needs() -> None:
    with pytest.raises(ValueError, match="in-cluster Redis needs the Kubernetes providers"):
        RedisArgs(
            config=RedisConfig(mode="in-cluster"),
            password=_password(),
            client_password_secret=CLIENT_SECRET,
        )
    with pytest.raises(ValueError, match="ElastiCache needs subnet_ids, vpc_id"):
        RedisArgs(
            config=RedisConfig(mode="elasticache"),
            password=_password(),
            client_password_secret=CLIENT_SECRET,
        )
    with pytest.raises(ValueError, match="Multi-AZ ElastiCache needs num_cache_clusters >= 2"):
        RedisArgs(
            config=RedisConfig(mode="elasticache", num_cache_clusters=1),
            password=_password(),
            client_password_secret=CLIENT_SECRET,
            subnet_ids=["subnet-a"],
            vpc_id="vpc-1",
            node_security_group_id="sg-nodes",
            multi_az=True,
            kms_key_arn=KEY,
        )
    with pytest.raises(ValueError, match=r"ElastiCache needs .* and kms_key_arn"):
        RedisArgs(
            config=RedisConfig(mode="elasticache"),
            password=_password(),
            client_password_secret=CLIENT_SECRET,
            subnet_ids=["subnet-a"],
            vpc_id="vpc-1",
            node_security_group_id="sg-nodes",
        )
    with pytest.raises(ValueError, match=r"storage_gi\n  Input should be greater than 0"):
        RedisConfig(mode="in-cluster", storage_gi=0)


@pytest.mark.parametrize(
    ("mode", "item"),
    [
        ("in-cluster", "Volume 'redis/data' (4 GiB gp3)"),
        ("elasticache", "ElastiCache 'queue-rg' (cache.t4g.medium)"),
    ],
)
def test_the_bill_is_the_data_volume_or_the_cache_nodes(mode: str, item: str) -> None:
    def program() -> Redis:
        in_cluster = mode == "in-cluster"
        return Redis(
            "queue",
            RedisArgs(
                config=RedisConfig.model_validate(
                    {"mode": mode, "storageGi": 4, "numCacheClusters": 3}
                ),
                password=_password(),
                client_password_secret=CLIENT_SECRET,
                provider=provider() if in_cluster else None,
                secrets_provider=provider("secrets") if in_cluster else None,
                subnet_ids=[] if in_cluster else ["subnet-a"],
                vpc_id=None if in_cluster else "vpc-1",
                node_security_group_id=None if in_cluster else "sg-nodes",
                kms_key_arn=None if in_cluster else KEY,
            ),
        )

    redis, graph = evaluate(program)
    declared, registered = priced_both_ways(redis.bill, graph)
    assert declared == registered
    [line] = [i for i in declared["items"] if i["item"] == item]
    assert line["quantity"] == (1 if mode == "in-cluster" else 3)
