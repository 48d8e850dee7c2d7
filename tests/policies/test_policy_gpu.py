from __future__ import annotations

from typing import Any

import pytest
from policy_fixtures import container, only, pod_spec, real, resource, workload

from costing.view import UNKNOWN, ResourceView
from policies.rules.gpu import (
    GpuPlacementConfig,
    GpuPoolCapConfig,
    GpuResourceConfig,
    GpuTaintReservedConfig,
    check_gpu_limits_only,
    check_gpu_placement,
    check_gpu_pool_capacity,
    check_gpu_taint_reserved,
)

GPU_TOLERATION = {
    "key": "nvidia.com/gpu",
    "operator": "Equal",
    "value": "true",
    "effect": "NoSchedule",
}
GPU_SELECTOR = {"agent-platform.io/node-pool": "gpu"}


def gpu_workload(
    requests: Any = None,
    limits: Any = 1,
    tolerations: Any = (GPU_TOLERATION,),
    node_selector: Any = GPU_SELECTOR,
    affinity: Any = None,
    name: str = "vllm",
) -> ResourceView:
    main = container("vllm", "vllm/vllm-openai:v0.6.4")
    if limits is not None:
        main["resources"]["limits"]["nvidia.com/gpu"] = limits
    if requests is not None:
        main["resources"]["requests"]["nvidia.com/gpu"] = requests
    spec = pod_spec(main)
    if tolerations is not None:
        spec["tolerations"] = tolerations if tolerations is UNKNOWN else list(tolerations)
    if node_selector is not None:
        spec["nodeSelector"] = node_selector
    if affinity is not None:
        spec["affinity"] = affinity
    return workload(name=name, spec=spec)


def test_gpu_in_limits_only_passes() -> None:
    assert check_gpu_limits_only(gpu_workload(), GpuResourceConfig()) == []
    assert check_gpu_limits_only(gpu_workload(requests=1), GpuResourceConfig()) == []


def test_gpu_requested_without_limit() -> None:
    found = only(check_gpu_limits_only(gpu_workload(requests=1, limits=None), GpuResourceConfig()))
    assert found.resource == "Deployment 'vllm'"
    assert found.message == (
        "Deployment 'vllm': container 'vllm' sets spec.template.spec.containers[0].resources"
        ".requests.nvidia.com/gpu without limits.nvidia.com/gpu; GPUs are not overcommitted: "
        "set resources.limits.nvidia.com/gpu (requests may then be dropped)."
    )


def test_gpu_request_differs_from_limit() -> None:
    found = only(check_gpu_limits_only(gpu_workload(requests=1, limits=2), GpuResourceConfig()))
    assert found.message == (
        "Deployment 'vllm': container 'vllm': spec.template.spec.containers[0].resources"
        ".requests.nvidia.com/gpu 1 differs from limits.nvidia.com/gpu 2; set only "
        "resources.limits.nvidia.com/gpu, or make them equal."
    )


def test_gpu_pod_with_toleration_and_selector_passes() -> None:
    assert check_gpu_placement(gpu_workload(), GpuPlacementConfig()) == []


def test_gpu_pod_may_select_gpu_nodes_by_affinity() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "agent-platform.io/node-pool",
                                "operator": "In",
                                "values": ["gpu"],
                            }
                        ]
                    }
                ]
            }
        }
    }
    view = gpu_workload(node_selector=None, affinity=affinity)
    assert check_gpu_placement(view, GpuPlacementConfig()) == []


def test_gpu_pod_without_toleration() -> None:
    found = only(check_gpu_placement(gpu_workload(tolerations=()), GpuPlacementConfig()))
    assert found.resource == "Deployment 'vllm'"
    assert found.message == (
        "Deployment 'vllm': requests 1 GPU(s) but spec.template.spec.tolerations does not "
        "tolerate the GPU taint; add {key: nvidia.com/gpu, operator: Equal, value: 'true', "
        "effect: NoSchedule}."
    )


def test_gpu_pod_without_node_selection() -> None:
    found = only(check_gpu_placement(gpu_workload(node_selector={}), GpuPlacementConfig()))
    assert found.message == (
        "Deployment 'vllm': requests 1 GPU(s) but does not select GPU nodes; set a "
        "spec.template.spec.nodeSelector (or a required nodeAffinity term) on one of the GPU "
        "node labels: agent-platform.io/node-pool=gpu, nvidia.com/gpu.present=true, "
        "karpenter.k8s.aws/instance-gpu-count=[1-9][0-9]*."
    )


@pytest.mark.parametrize(
    ("node_selector", "affinity"),
    [
        # NVIDIA GPU feature discovery's label: the false positive the pack used to raise.
        ({"nvidia.com/gpu.present": "true"}, None),
        ({"karpenter.k8s.aws/instance-gpu-count": "1"}, None),
        (
            None,
            {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "karpenter.k8s.aws/instance-gpu-count",
                                        "operator": "Gt",
                                        "values": ["0"],
                                    }
                                ]
                            }
                        ]
                    }
                }
            },
        ),
    ],
    ids=["gpu-feature-discovery", "karpenter-count", "karpenter-gt-0"],
)
def test_standard_gpu_node_labels_select_gpu_nodes(node_selector: Any, affinity: Any) -> None:
    view = gpu_workload(node_selector=node_selector or {}, affinity=affinity)
    assert real(check_gpu_placement(view, GpuPlacementConfig())) == []


@pytest.mark.parametrize(
    "node_selector",
    [{"nvidia.com/gpu.present": "false"}, {"karpenter.k8s.aws/instance-gpu-count": "0"}],
)
def test_a_label_that_says_no_gpu_does_not_count(node_selector: dict[str, str]) -> None:
    view = gpu_workload(node_selector=node_selector)
    assert (
        "does not select GPU nodes" in only(check_gpu_placement(view, GpuPlacementConfig())).message
    )


def test_the_gpu_node_labels_are_configurable() -> None:
    cfg = GpuPlacementConfig(gpu_node_labels={"example.com/accelerator": "a10g|l4"})
    assert (
        real(
            check_gpu_placement(gpu_workload(node_selector={"example.com/accelerator": "l4"}), cfg)
        )
        == []
    )
    with pytest.raises(ValueError, match="invalid pattern"):
        GpuPlacementConfig(gpu_node_labels={"k": "("})


def test_unknown_tolerations_are_undecided() -> None:
    found = check_gpu_placement(gpu_workload(tolerations=UNKNOWN), GpuPlacementConfig())
    assert [(v.undetermined, v.resource) for v in found] == [(True, "Deployment 'vllm'")]


def test_cpu_pod_tolerating_gpu_taint() -> None:
    view = gpu_workload(limits=None, name="agent-api")
    found = only(check_gpu_taint_reserved(view, GpuTaintReservedConfig()))
    assert found.resource == "Deployment 'agent-api'"
    assert found.message == (
        "Deployment 'agent-api': requests no GPU but spec.template.spec.tolerations[0] "
        "tolerates the GPU taint nvidia.com/gpu=true:NoSchedule; remove the toleration, or add "
        "the workload to gpu_infrastructure if it is GPU node infrastructure."
    )


def test_tolerate_everything_counts_as_tolerating_the_gpu_taint() -> None:
    view = gpu_workload(limits=None, tolerations=({"operator": "Exists"},), name="agent-api")
    assert real(check_gpu_taint_reserved(view, GpuTaintReservedConfig()))


def test_gpu_infrastructure_may_tolerate_without_gpu() -> None:
    plugin = gpu_workload(limits=None, name="nvidia-device-plugin")
    assert check_gpu_taint_reserved(plugin, GpuTaintReservedConfig()) == []


def test_cpu_pod_without_gpu_toleration_passes() -> None:
    assert check_gpu_taint_reserved(workload(), GpuTaintReservedConfig()) == []


def node_group(name: str, instance_type: str, max_size: Any) -> ResourceView:
    return resource(
        "aws:eks/nodeGroup:NodeGroup",
        name,
        {
            "nodeGroupName": name,
            "instanceTypes": [instance_type],
            "capacityType": "ON_DEMAND",
            "scalingConfig": {"minSize": 0, "desiredSize": 1, "maxSize": max_size},
        },
    )


def test_gpu_pools_within_cap() -> None:
    pools = [node_group("system", "m6i.large", 6), node_group("gpu", "g5.12xlarge", 2)]
    assert check_gpu_pool_capacity(pools, GpuPoolCapConfig(max_total_gpus=8)) == []


def test_gpu_pools_over_cap() -> None:
    pools = [node_group("gpu", "g5.12xlarge", 2), node_group("big", "p4d.24xlarge", 1)]
    found = only(check_gpu_pool_capacity(pools, GpuPoolCapConfig(max_total_gpus=8)))
    assert found.resource == "NodeGroup 'big'"
    assert found.message == (
        "NodeGroup 'big': GPU node pools at scalingConfig.maxSize (managed node groups) and "
        "spec.limits (Karpenter NodePools) total 16 GPUs, above the cap 8 (max_total_gpus): "
        "NodeGroup 'gpu' 2 x 4 = 8; NodeGroup 'big' 1 x 8 = 8. Lower scalingConfig.maxSize or "
        "the NodePool's spec.limits, or raise max_total_gpus in the stack's policy config."
    )


def node_pool(
    name: str = "gpu-inference",
    limits: Any = None,
    families: Any = ("g5",),
    types: Any = None,
) -> ResourceView:
    """A Karpenter NodePool as components/gpu_node_pool.py declares one."""
    requirements: list[dict[str, Any]] = []
    if families is not None:
        requirements.append(
            {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": list(families)}
        )
    if types is not None:
        requirements.append(
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": list(types)}
        )
    requirements.append({"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]})
    spec: dict[str, Any] = {
        "template": {"spec": {"requirements": requirements}},
        "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized"},
    }
    if limits is not None:
        spec["limits"] = limits
    return resource(
        "kubernetes:karpenter.sh/v1:NodePool", name, {"metadata": {"name": name}, "spec": spec}
    )


def test_a_node_pool_within_the_cap_passes() -> None:
    pool = node_pool(limits={"nvidia.com/gpu": "4", "cpu": "64"}, types=["g5.xlarge", "g5.2xlarge"])
    assert check_gpu_pool_capacity([pool], GpuPoolCapConfig(max_total_gpus=4)) == []


def test_a_node_pool_whose_limit_exceeds_the_gpu_cap_fails() -> None:
    pool = node_pool(limits={"nvidia.com/gpu": "12", "cpu": "1000"}, types=["g5.12xlarge"])
    found = only(check_gpu_pool_capacity([pool], GpuPoolCapConfig(max_total_gpus=8)))
    assert found.resource == "NodePool 'gpu-inference'"
    assert found.message == (
        "NodePool 'gpu-inference': GPU node pools at scalingConfig.maxSize (managed node "
        "groups) and spec.limits (Karpenter NodePools) total 12 GPUs, above the cap 8 "
        "(max_total_gpus): NodePool 'gpu-inference' at spec.limits 3 x g5.12xlarge = 12. Lower "
        "scalingConfig.maxSize or the NodePool's spec.limits, or raise max_total_gpus in the "
        "stack's policy config."
    )


def test_node_pools_and_node_groups_count_together() -> None:
    pools = [
        node_group("gpu", "g5.xlarge", 3),
        node_pool(limits={"nvidia.com/gpu": 2.0}, families=["g6"], types=["g6.xlarge"]),
    ]
    assert check_gpu_pool_capacity(pools, GpuPoolCapConfig(max_total_gpus=5)) == []
    assert only(check_gpu_pool_capacity(pools, GpuPoolCapConfig(max_total_gpus=4))).message.count(
        "total 5 GPUs"
    )


def test_the_cpu_limit_bounds_the_gpus_too() -> None:
    # g5.2xlarge has 8 vCPUs: 16 cores admit 2 nodes, so 2 GPUs, whatever the GPU limit.
    pool = node_pool(limits={"nvidia.com/gpu": "8", "cpu": "16"}, types=["g5.2xlarge"])
    assert check_gpu_pool_capacity([pool], GpuPoolCapConfig(max_total_gpus=2)) == []
    assert real(check_gpu_pool_capacity([pool], GpuPoolCapConfig(max_total_gpus=1)))


def test_a_node_pool_of_an_unknown_instance_family_is_a_violation() -> None:
    pool = node_pool(limits={"nvidia.com/gpu": "1"}, families=["g9"])
    found = only(check_gpu_pool_capacity([pool], GpuPoolCapConfig()))
    assert found.message == (
        "NodePool 'gpu-inference': its GPUs cannot be counted: spec.template.spec.requirements "
        "admits instance family(ies) ['g9'] that the platform's GPU catalogue "
        "(components/gpu_instances.py) does not list, so their GPUs and price cannot be counted."
    )


@pytest.mark.parametrize(
    ("limits", "families", "message"),
    [
        (None, ("g5",), "spec.limits is missing: the NodePool may grow without end"),
        ({"pods": "100"}, ("g5",), "spec.limits bounds no resource its nodes carry"),
        ({"nvidia.com/gpu": UNKNOWN}, ("g5",), "spec.limits.nvidia.com/gpu is unknown"),
        ({"nvidia.com/gpu": "2"}, None, "names no karpenter.k8s.aws/instance-family"),
    ],
)
def test_a_node_pool_that_cannot_be_bounded_is_a_violation(
    limits: Any, families: Any, message: str | None
) -> None:
    found = only(
        check_gpu_pool_capacity([node_pool(limits=limits, families=families)], GpuPoolCapConfig())
    )
    assert found.resource == "NodePool 'gpu-inference'"
    if message is not None:
        assert message in found.message


def test_unknown_instance_type_cannot_be_counted() -> None:
    found = only(check_gpu_pool_capacity([node_group("gpu", "g9.huge", 1)], GpuPoolCapConfig()))
    assert found.message == (
        "NodeGroup 'gpu': instanceTypes has 'g9.huge', which the price table does not know, "
        "so its GPUs cannot be counted; add it to costing/data/aws-prices-us-east-1.json."
    )


def test_unknown_max_size_fails_rather_than_passing() -> None:
    found = only(
        check_gpu_pool_capacity([node_group("gpu", "g5.xlarge", UNKNOWN)], GpuPoolCapConfig())
    )
    assert found.resource == "NodeGroup 'gpu'"
    assert "scalingConfig.maxSize is unknown at preview" in found.message


def test_wire_form_float_counts_compare_as_numbers() -> None:
    view = gpu_workload(requests="1", limits=1.0)
    assert check_gpu_limits_only(view, GpuResourceConfig()) == []
    assert check_gpu_placement(gpu_workload(limits=2.0, tolerations=()), GpuPlacementConfig())[
        0
    ].message.startswith("Deployment 'vllm': requests 2 GPU(s)")


def test_per_pool_gpu_infrastructure_matches_by_pattern() -> None:
    plugin = gpu_workload(limits=None, name="nvidia-device-plugin-gpu")
    assert check_gpu_taint_reserved(plugin, GpuTaintReservedConfig()) == []
    impostor = gpu_workload(limits=None, name="nvidia-device-plugin2")
    assert only(check_gpu_taint_reserved(impostor, GpuTaintReservedConfig())).resource == (
        "Deployment 'nvidia-device-plugin2'"
    )


def scaled_object(target: str, maximum: Any) -> ResourceView:
    return resource(
        "kubernetes:keda.sh/v1alpha1:ScaledObject",
        target,
        {
            "metadata": {"name": target, "namespace": "agents"},
            "spec": {
                "scaleTargetRef": {"name": target},
                "minReplicaCount": 1,
                "maxReplicaCount": maximum,
            },
        },
    )


@pytest.mark.parametrize(("maximum", "fits"), [(4, True), (5, False)])
def test_the_gpu_workloads_at_their_maximum_fit_in_the_pools(maximum: int, fits: bool) -> None:
    pools = [node_pool(limits={"nvidia.com/gpu": "4"}, types=["g5.xlarge"])]
    stack = [*pools, gpu_workload(), scaled_object("vllm", maximum)]
    found = real(check_gpu_pool_capacity(stack, GpuPoolCapConfig(max_total_gpus=8)))
    if fits:
        assert found == []
    else:
        assert [v.message for v in found] == [
            "Deployment 'vllm': GPU workloads at their autoscalers' maxima hold 5 GPUs "
            "(Deployment 'vllm' at max 5 replicas x 1 = 5), more than the GPU node pools admit "
            "(4); the replicas beyond stay Pending. Lower the autoscaler's maximum, or raise the "
            "pools' maxSize (a NodePool's spec.limits) within max_total_gpus."
        ]
