from __future__ import annotations

import json
from typing import Any

import pytest
from policy_fixtures import only, patched, resource

from costing.model import estimate
from costing.prices import load_prices
from costing.view import UNKNOWN, ResourceView
from policies.rules.budget import BudgetConfig, check_budget

NLB_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-type"


def node_group(
    name: str, instance_type: str, desired: Any, maximum: Any, capacity: str = "ON_DEMAND"
) -> ResourceView:
    return resource(
        "aws:eks/nodeGroup:NodeGroup",
        name,
        {
            "nodeGroupName": name,
            "instanceTypes": [instance_type],
            "capacityType": capacity,
            "scalingConfig": {"minSize": 0, "desiredSize": desired, "maxSize": maximum},
        },
    )


def stack() -> list[ResourceView]:
    return [
        resource("aws:eks/cluster:Cluster", "prod", {"name": "prod"}),
        node_group("system", "m6i.large", 3.0, 6.0),
        node_group("gpu", "g5.2xlarge", 2.0, 4.0),
        resource(
            "aws:elasticache/replicationGroup:ReplicationGroup",
            "redis",
            {"nodeType": "cache.r7g.large", "numCacheClusters": 2.0},
        ),
        resource("aws:ec2/natGateway:NatGateway", "nat-a", {"subnetId": UNKNOWN}),
        resource(
            "kubernetes:core/v1:PersistentVolumeClaim",
            "prometheus-data",
            {
                "metadata": {"name": "prometheus-data"},
                "spec": {"resources": {"requests": {"storage": "100Gi"}}},
            },
        ),
        resource(
            "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy",
            "agent-gateway-envoy-proxy",
            {
                "metadata": {"name": "agent-api", "namespace": "agents"},
                "spec": {
                    "provider": {
                        "type": "Kubernetes",
                        "kubernetes": {
                            "envoyService": {
                                "annotations": {
                                    "service.beta.kubernetes.io/aws-load-balancer-type": "nlb"
                                }
                            }
                        },
                    }
                },
            },
        ),
    ]


def test_every_cost_item_is_priced_from_the_table() -> None:
    cost = estimate(stack())
    lines = [item.line() for item in cost.items]
    assert lines == [
        "EKS control plane 'prod': 1 cluster x $73.00 = $73.00",
        "ElastiCache 'redis' (cache.r7g.large): 2 nodes x $159.87 = $319.74",
        "Load balancer 'agent-api' (network): 1 LB x $16.43 = $16.43",
        "NAT gateway 'nat-a': 1 gateway x $37.35 = $37.35",
        "Node group 'gpu' (g5.2xlarge, ON_DEMAND): 2 nodes x $884.76 = $1,769.52 "
        "(worst case 4 = $3,539.04)",
        "Node group 'system' (m6i.large, ON_DEMAND): 3 nodes x $70.08 = $210.24 "
        "(worst case 6 = $420.48)",
        "Volume 'prometheus-data' (100 GiB gp3): 1 volumes x $8.00 = $8.00",
    ]
    assert cost.expected_total == pytest.approx(2434.28, abs=0.01)
    assert cost.worst_total == pytest.approx(4414.04, abs=0.01)
    assert cost.problems == []


def test_spot_is_discounted() -> None:
    on_demand = estimate([node_group("gpu", "g5.xlarge", 1, 2)]).expected_total
    spot = estimate([node_group("gpu", "g5.xlarge", 1, 2, "SPOT")]).expected_total
    assert spot == pytest.approx(on_demand * (1 - load_prices().spot_discount), abs=0.01)


def test_kubernetes_objects_cost_nothing_without_a_cloud_cluster() -> None:
    cost = estimate([r for r in stack() if r.type.startswith("kubernetes:")])
    assert cost.items == []


def test_plain_tuples_from_the_program_are_accepted() -> None:
    cost = estimate([("aws:eks/cluster:Cluster", {"name": "dev"})])
    assert [i.resource for i in cost.items] == ["Cluster 'dev'"]
    assert cost.expected_total == pytest.approx(73.0)


def test_unknown_instance_type_is_a_violation_not_zero() -> None:
    found = check_budget([node_group("gpu", "g9.huge", 1, 1)], BudgetConfig())
    violation = only(found)
    assert violation.resource == "NodeGroup 'gpu'"
    assert violation.message == (
        "NodeGroup 'gpu': cannot be priced: instanceTypes has 'g9.huge', which the price table "
        "(us-east-1, read on 2024-06-01) does not list; add its hourly price to "
        "costing/data/aws-prices-us-east-1.json."
    )


def test_unknown_scaling_cannot_be_priced() -> None:
    found = only(check_budget([node_group("gpu", "g5.xlarge", UNKNOWN, 2)], BudgetConfig()))
    assert found.message == (
        "NodeGroup 'gpu': cannot be priced: scalingConfig.desiredSize/maxSize unknown; set them "
        "from config."
    )


def test_within_budget_passes() -> None:
    assert check_budget(stack(), BudgetConfig(monthly_budget_usd=5000)) == []


def test_worst_case_over_budget_fails_with_the_breakdown() -> None:
    found = only(check_budget(stack(), BudgetConfig(monthly_budget_usd=3000)))
    assert found.resource == "stack"
    first, *breakdown = found.message.split("\n")
    assert first == (
        "stack: estimated cost (expected $2,434.28/month, worst case $4,414.04/month) exceeds "
        "monthly_budget_usd $3,000.00; shrink node pools (desiredSize/maxSize) or instance "
        "types, or raise monthly_budget_usd in the stack's policy config."
    )
    assert breakdown[0] == "Cost breakdown (prices read on 2024-06-01):"
    assert breakdown[1:] == [f"  - {item.line()}" for item in estimate(stack()).items]


def test_growth_over_baseline_fails() -> None:
    cfg = BudgetConfig(monthly_budget_usd=10000, baseline_usd=2000, max_increase_pct=10)
    found = only(check_budget(stack(), cfg))
    assert found.message.startswith(
        "stack: estimated cost (expected $2,434.28/month, worst case $4,414.04/month) is 22% "
        "over baseline_usd $2,000.00, above max_increase_pct 10%;"
    )
    assert "Node group 'gpu' (g5.2xlarge, ON_DEMAND)" in found.message
    relaxed = BudgetConfig(monthly_budget_usd=10000, baseline_usd=2000, max_increase_pct=25)
    assert check_budget(stack(), relaxed) == []


def test_table_and_json() -> None:
    cost = estimate(stack())
    table = cost.table().splitlines()
    assert table[0].split() == ["Item", "Quantity", "Unit", "price", "Monthly", "Worst", "case"]
    [total] = [line.split() for line in table if line.startswith("TOTAL")]
    assert total == ["TOTAL", "$2,434.28", "$4,414.04"]
    assert "Prices: AWS public on-demand price list" in cost.table()
    data = json.loads(json.dumps(cost.as_json()))
    assert data["expected_monthly_usd"] == pytest.approx(2434.28, abs=0.01)
    assert data["read_on"] == "2024-06-01"
    assert data["items"][0]["item"] == "EKS control plane 'prod'"


def test_price_table_states_its_provenance() -> None:
    prices = load_prices()
    assert prices.region == "us-east-1"
    assert prices.source.startswith("AWS public on-demand price list")
    assert prices.hours_per_month == 730
    assert prices.eks_control_plane_hourly == pytest.approx(0.10)


def karpenter_pool(
    limits: Any, capacity: str = "on-demand", families: Any = ("g5",)
) -> ResourceView:
    return resource(
        "kubernetes:karpenter.sh/v1:NodePool",
        "gpu-inference",
        {
            "metadata": {"name": "gpu-inference"},
            "spec": {
                "template": {
                    "spec": {
                        "requirements": [
                            {
                                "key": "karpenter.k8s.aws/instance-family",
                                "operator": "In",
                                "values": list(families),
                            },
                            {
                                "key": "node.kubernetes.io/instance-type",
                                "operator": "In",
                                "values": ["g5.xlarge", "g5.2xlarge"],
                            },
                            {
                                "key": "karpenter.sh/capacity-type",
                                "operator": "In",
                                "values": [capacity],
                            },
                        ]
                    }
                },
                "limits": limits,
            },
        },
    )


def gpu_deployment(replicas: Any, gpus: int = 1, name: str = "llm") -> ResourceView:
    spec: dict[str, Any] = {
        "template": {
            "spec": {
                "containers": [{"name": "vllm", "resources": {"limits": {"nvidia.com/gpu": gpus}}}]
            }
        }
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return resource(
        "kubernetes:apps/v1:Deployment",
        name,
        {"metadata": {"name": name, "namespace": "agents"}, "spec": spec},
    )


def scaled_object(target: str, minimum: Any) -> ResourceView:
    spec: dict[str, Any] = {"scaleTargetRef": {"name": target}, "maxReplicaCount": 4}
    if minimum is not None:
        spec["minReplicaCount"] = minimum
    return resource(
        "kubernetes:keda.sh/v1alpha1:ScaledObject",
        f"{target}-scaler",
        {"metadata": {"name": target, "namespace": "agents"}, "spec": spec},
    )


CLUSTER = resource("aws:eks/cluster:Cluster", "prod", {"name": "prod"})


def test_a_karpenter_pool_is_priced_at_its_limits_and_at_rest_at_the_gpu_demand() -> None:
    pool = karpenter_pool({"nvidia.com/gpu": "3", "cpu": "24"})
    cost = estimate([CLUSTER, pool, gpu_deployment(replicas=2)])
    [line] = [i for i in cost.items if i.item.startswith("Karpenter")]
    # At the limits: 3 GPUs and 24 vCPUs admit 3 of either type; the g5.2xlarge costs more.
    assert line.line() == (
        "Karpenter NodePool 'gpu-inference' (g5.2xlarge at limits cpu=24, nvidia.com/gpu=3, "
        "ON_DEMAND): 2 nodes x $884.76 = $1,769.52 (worst case 3 = $2,654.28)"
    )
    assert cost.problems == []


@pytest.mark.parametrize(
    ("workloads", "at_rest"),
    [
        ([], 0),
        ([gpu_deployment(replicas=None)], 1),
        ([gpu_deployment(replicas=5)], 3),
        ([gpu_deployment(replicas=2), scaled_object("llm", 0)], 0),
        ([gpu_deployment(replicas=2), scaled_object("llm", None)], 0),
        ([gpu_deployment(replicas=1), scaled_object("llm", 2)], 2),
        ([gpu_deployment(replicas=1, gpus=2)], 2),
    ],
)
def test_the_pools_size_at_rest_follows_the_gpu_workloads(
    workloads: list[ResourceView], at_rest: int
) -> None:
    pool = karpenter_pool({"nvidia.com/gpu": "3"})
    [line] = [
        i for i in estimate([CLUSTER, pool, *workloads]).items if i.item.startswith("Karpenter")
    ]
    # Never more than the limits admit.
    assert (line.quantity, line.worst_quantity) == (at_rest, 3)


def test_a_spot_only_pool_is_discounted() -> None:
    limits = {"nvidia.com/gpu": "2"}
    on_demand = estimate([CLUSTER, karpenter_pool(limits)]).worst_total
    spot = estimate([CLUSTER, karpenter_pool(limits, capacity="spot")]).worst_total
    discount = 1 - load_prices().spot_discount
    assert spot - 73 == pytest.approx((on_demand - 73) * discount, abs=0.01)


def test_an_unknown_instance_family_cannot_be_priced() -> None:
    pool = karpenter_pool({"nvidia.com/gpu": "2"}, families=["g9"])
    violation = only(check_budget([CLUSTER, pool], BudgetConfig()))
    assert violation.resource == "NodePool 'gpu-inference'"
    assert "instance family(ies) ['g9']" in violation.message
    assert violation.message.startswith("NodePool 'gpu-inference': cannot be priced:")


def test_a_pool_without_limits_cannot_be_priced() -> None:
    violation = only(check_budget([CLUSTER, karpenter_pool({})], BudgetConfig()))
    assert "spec.limits is missing" in violation.message


def test_the_gpus_at_rest_sit_on_the_pool_karpenter_tries_first() -> None:
    first = patched(karpenter_pool({"nvidia.com/gpu": "2"}), "spec.weight", 100)
    second = patched(karpenter_pool({"nvidia.com/gpu": "2"}), "spec.weight", 99)
    second = patched(second, "metadata.name", "gpu-spare")
    # Whatever order the resources come in.
    for pools in ([first, second], [second, first]):
        items = estimate([CLUSTER, *pools, gpu_deployment(replicas=1)]).items
        at_rest = {i.resource: i.quantity for i in items if i.item.startswith("Karpenter")}
        assert at_rest == {"NodePool 'gpu-inference'": 1, "NodePool 'gpu-spare'": 0}
