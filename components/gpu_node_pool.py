"""A pool of NVIDIA GPU nodes, tainted so that only pods that ask for a GPU land on it,
with the device plugin and the DCGM exporter.

On EKS the nodes are either a Karpenter NodePool and EC2NodeClass (`KarpenterNodes`,
when the stack runs Karpenter: nodes follow the pods) or a managed node group
(`EksNodeGroup`: a fixed size between the pool's bounds, as nothing else scales it).
Never both for one pool; components/karpenter.py says why. On the project's local
control plane they are simulated nodes (KWOK) with the same labels, taint and capacity,
derived from the same pool config, so the real scheduler places GPU pods as it would on
EKS.

A Karpenter pool's `limits` come from the pool's `scaling.maxSize`: `maxSize` nodes of
its largest type, in GPUs and in vCPUs, so the GPU cap the policy pack checks holds
whichever admitted type Karpenter picks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.apps.v1 import DaemonSet, DaemonSetSpecArgs, DaemonSetUpdateStrategyArgs
from pulumi_kubernetes.core.v1 import (
    CapabilitiesArgs,
    ContainerArgs,
    ContainerPortArgs,
    EnvVarArgs,
    HostPathVolumeSourceArgs,
    HTTPGetActionArgs,
    PodSecurityContextArgs,
    PodSpecArgs,
    PodTemplateSpecArgs,
    ProbeArgs,
    ResourceRequirementsArgs,
    SeccompProfileArgs,
    SecurityContextArgs,
    VolumeArgs,
    VolumeMountArgs,
)
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import NetworkPolicy, NetworkPolicySpecArgs
from pydantic import Field, field_validator

from components.billing import Billable, NodePool, ProvisionedNodes
from components.gpu_instances import GPU, GPU_INSTANCE_TYPES, family
from components.kube import (
    GPU_POOL_LABEL,
    GPU_POOL_NAME_LABEL,
    GPU_POOL_VALUE,
    GPU_TAINT_KEY,
    child_options,
    gpu_tolerations,
    labels,
    match_labels,
    prometheus_scrapes,
    selector,
)
from components.node_template import hardened_launch_template
from components.simulated_nodes import SimulatedNodes, SimulatedNodesArgs, SimulatedPool, Taint
from components.values import ArgsModel, ImageReference, InputStr, NonNegativeInt, Scaling

DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.17.0"
DCGM_EXPORTER_IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:3.3.9-3.6.1-ubuntu22.04"
DCGM_PORT = 9400


class GpuPoolConfig(ArgsModel):
    """One GPU pool: an entry of the stack file's `gpuPools`."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")]
    instance_types: Annotated[list[str], Field(min_length=1)]
    capacity_type: Literal["SPOT", "ON_DEMAND"]
    scaling: Scaling
    # The pool's NVIDIA DaemonSets; pin them by digest with `<image>:<tag>@sha256:<digest>`.
    device_plugin_image: ImageReference = DEVICE_PLUGIN_IMAGE
    dcgm_exporter_image: ImageReference = DCGM_EXPORTER_IMAGE

    @field_validator("instance_types")
    @classmethod
    def _known_gpu_types(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in GPU_INSTANCE_TYPES]
        if unknown:
            known = ", ".join(sorted(GPU_INSTANCE_TYPES))
            raise ValueError(f"unknown GPU instance type(s) {unknown}; known: {known}")
        return value

    @property
    def max_gpus(self) -> int:
        return self.scaling.max_size * max(GPU_INSTANCE_TYPES[t].gpus for t in self.instance_types)

    @property
    def max_vcpus(self) -> int:
        return self.scaling.max_size * max(GPU_INSTANCE_TYPES[t].vcpus for t in self.instance_types)

    @property
    def instance_families(self) -> list[str]:
        return sorted({family(t) for t in self.instance_types})

    def limits(self) -> dict[str, str]:
        """A Karpenter NodePool's limits: the GPUs and vCPUs of `maxSize` nodes of the
        pool's largest type."""
        return {GPU: str(self.max_gpus), "cpu": str(self.max_vcpus)}

    def node_labels(self) -> dict[str, str]:
        return {
            GPU_POOL_LABEL: GPU_POOL_VALUE,
            GPU_POOL_NAME_LABEL: self.name,
            "nvidia.com/gpu.present": "true",
        }


class EksNodeGroup(ArgsModel):
    """An EKS managed node group for the pool, scaled between the pool's bounds."""

    cluster_name: InputStr
    node_role_arn: InputStr
    subnet_ids: Annotated[Sequence[InputStr], Field(min_length=1)]


class KarpenterNodes(ArgsModel):
    """A Karpenter NodePool and its EC2NodeClass: nodes launched in the private subnets,
    under the cluster's security group, as the nodes' role. `release` is the Karpenter
    chart, which installs the CRDs these objects need."""

    cluster_name: InputStr
    node_role_name: InputStr
    subnet_ids: Annotated[Sequence[InputStr], Field(min_length=1)]
    security_group_ids: Annotated[Sequence[InputStr], Field(min_length=1)]
    ami_alias: str
    consolidate_after: str
    release: pulumi.Resource


class SimulatedNodeGroup(ArgsModel):
    """The local control plane's stand-in: the pool's `desiredSize` nodes of its first
    instance type, spread round-robin over `zones`."""

    zones: Annotated[list[str], Field(min_length=1)]

    def pool(self, pool: GpuPoolConfig) -> SimulatedPool:
        shape = GPU_INSTANCE_TYPES[pool.instance_types[0]]
        return SimulatedPool(
            name=f"gpu-{pool.name}",
            count=max(pool.scaling.desired_size, 1),
            zones=self.zones,
            capacity={
                "cpu": str(shape.vcpus),
                "memory": f"{shape.memory_gib}Gi",
                "ephemeral-storage": "100Gi",
                GPU_TAINT_KEY: str(shape.gpus),
            },
            labels=pool.node_labels(),
            taints=[Taint(key=GPU_TAINT_KEY, value="true", effect="NoSchedule")],
        )


class GpuNodePoolArgs(ArgsModel):
    pool: GpuPoolConfig
    nodes: EksNodeGroup | KarpenterNodes | SimulatedNodeGroup
    system_namespace: InputStr
    provider: k8s.Provider
    # Where the Prometheus that scrapes the DCGM exporter runs; the pool's namespace
    # denies ingress by default.
    prometheus_namespace: str | None = None
    # GPUs the stack's workloads hold at rest on this pool: a Karpenter pool's expected
    # size in the cost estimate (a managed group's is its desiredSize).
    expected_gpus: NonNegativeInt = 0
    # Karpenter tries NodePools of higher weight first (1..100); None for no preference.
    weight: Annotated[int, Field(ge=1, le=100, strict=True)] | None = None


class GpuNodePool(pulumi.ComponentResource):
    node_group_name: pulumi.Output[str]
    max_gpus: int
    # What the node group is billed by.
    bill: list[Billable]

    def __init__(
        self, name: str, args: GpuNodePoolArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:gpu:GpuNodePool", name, None, opts)
        pool = args.pool
        # What the node group is billed by; simulated nodes cost nothing.
        self.bill = []
        if isinstance(args.nodes, EksNodeGroup):
            self.node_group_name = self._node_group(name, pool, args.nodes, opts)
            self.bill = [
                NodePool(
                    name=f"{name}-nodes",
                    instance_types=tuple(pool.instance_types),
                    spot=pool.capacity_type == "SPOT",
                    desired=float(pool.scaling.desired_size),
                    maximum=float(pool.scaling.max_size),
                )
            ]
        elif isinstance(args.nodes, KarpenterNodes):
            self.node_group_name = self._karpenter(name, pool, args, opts)
            self.bill = [
                ProvisionedNodes(
                    name=f"gpu-{pool.name}",
                    instance_types=tuple(sorted(pool.instance_types)),
                    spot=pool.capacity_type == "SPOT",
                    limits=tuple(sorted((r, float(v)) for r, v in pool.limits().items())),
                    expected_gpus=float(args.expected_gpus),
                )
            ]
        else:
            simulated = args.nodes.pool(pool)
            SimulatedNodes(
                f"{name}-nodes",
                SimulatedNodesArgs(pools=[simulated], provider=args.provider),
                opts=child_options(self, opts),
            )
            self.node_group_name = pulumi.Output.from_input(simulated.name)
        k8s_opts = child_options(self, opts, provider=args.provider)
        on_this_pool = {GPU_POOL_NAME_LABEL: pool.name}

        plugin_name = f"nvidia-device-plugin-{pool.name}"
        plugin = ContainerArgs(
            name="device-plugin",
            image=pool.device_plugin_image,
            env=[EnvVarArgs(name="FAIL_ON_INIT_ERROR", value="false")],
            security_context=_security_context(),
            resources=ResourceRequirementsArgs(
                requests={"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "16Mi"},
                limits={"cpu": "200m", "memory": "128Mi", "ephemeral-storage": "64Mi"},
            ),
            volume_mounts=[
                VolumeMountArgs(name="device-plugins", mount_path="/var/lib/kubelet/device-plugins")
            ],
        )
        DaemonSet(
            f"{name}-device-plugin",
            metadata=ObjectMetaArgs(
                name=plugin_name,
                namespace=args.system_namespace,
                labels=labels(plugin_name, "gpu-device-plugin"),
            ),
            spec=DaemonSetSpecArgs(
                selector=match_labels(selector(plugin_name)),
                update_strategy=DaemonSetUpdateStrategyArgs(type="RollingUpdate"),
                template=PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(labels=labels(plugin_name, "gpu-device-plugin")),
                    spec=PodSpecArgs(
                        priority_class_name="system-node-critical",
                        node_selector=on_this_pool,
                        tolerations=gpu_tolerations(),
                        automount_service_account_token=False,
                        security_context=_pod_security_context(),
                        containers=[plugin],
                        # The kubelet's device-plugin socket directory is the plugin's
                        # whole interface; it cannot work without this hostPath.
                        volumes=[
                            VolumeArgs(
                                name="device-plugins",
                                host_path=HostPathVolumeSourceArgs(
                                    path="/var/lib/kubelet/device-plugins", type="Directory"
                                ),
                            )
                        ],
                    ),
                ),
            ),
            opts=k8s_opts,
        )

        exporter_name = f"dcgm-exporter-{pool.name}"
        exporter_labels = labels(exporter_name, "gpu-metrics")
        exporter = ContainerArgs(
            name="dcgm-exporter",
            image=pool.dcgm_exporter_image,
            ports=[ContainerPortArgs(name="metrics", container_port=DCGM_PORT)],
            # DCGM reads GPU counters through the driver, which needs SYS_ADMIN; nothing
            # else is added.
            security_context=_security_context(add=["SYS_ADMIN"]),
            resources=ResourceRequirementsArgs(
                requests={"cpu": "100m", "memory": "256Mi", "ephemeral-storage": "16Mi"},
                limits={"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "64Mi"},
            ),
            liveness_probe=ProbeArgs(
                http_get=HTTPGetActionArgs(path="/health", port=DCGM_PORT),
                initial_delay_seconds=30,
                period_seconds=30,
            ),
            readiness_probe=ProbeArgs(
                http_get=HTTPGetActionArgs(path="/health", port=DCGM_PORT),
                initial_delay_seconds=10,
                period_seconds=10,
                failure_threshold=3,
            ),
        )
        DaemonSet(
            f"{name}-dcgm-exporter",
            metadata=ObjectMetaArgs(
                name=exporter_name, namespace=args.system_namespace, labels=exporter_labels
            ),
            spec=DaemonSetSpecArgs(
                selector=match_labels(selector(exporter_name)),
                template=PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(
                        labels=exporter_labels,
                        annotations={
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(DCGM_PORT),
                        },
                    ),
                    spec=PodSpecArgs(
                        node_selector=on_this_pool,
                        tolerations=gpu_tolerations(),
                        automount_service_account_token=False,
                        security_context=_pod_security_context(),
                        containers=[exporter],
                    ),
                ),
            ),
            opts=k8s_opts,
        )

        if args.prometheus_namespace is not None:
            NetworkPolicy(
                f"{name}-dcgm-scrape",
                metadata=ObjectMetaArgs(
                    name=f"{exporter_name}-scrape",
                    namespace=args.system_namespace,
                    labels=exporter_labels,
                ),
                spec=NetworkPolicySpecArgs(
                    pod_selector=match_labels(selector(exporter_name)),
                    policy_types=["Ingress"],
                    ingress=[prometheus_scrapes(DCGM_PORT, args.prometheus_namespace)],
                ),
                opts=k8s_opts,
            )
        self.max_gpus = pool.max_gpus
        self.register_outputs({"nodeGroupName": self.node_group_name, "maxGpus": self.max_gpus})

    def _karpenter(
        self,
        name: str,
        pool: GpuPoolConfig,
        args: GpuNodePoolArgs,
        opts: pulumi.ResourceOptions | None,
    ) -> pulumi.Output[str]:
        nodes = args.nodes
        assert isinstance(nodes, KarpenterNodes)
        pool_name = f"gpu-{pool.name}"
        # The chart installs the CRDs: these objects wait for it.
        crd_opts = child_options(self, opts, provider=args.provider, depends_on=[nodes.release])
        node_class = k8s.apiextensions.CustomResource(
            f"{name}-node-class",
            api_version="karpenter.k8s.aws/v1",
            kind="EC2NodeClass",
            metadata={"name": pool_name, "labels": labels(pool_name, "gpu-nodes")},
            spec={
                "role": nodes.node_role_name,
                "amiSelectorTerms": [{"alias": nodes.ami_alias}],
                "subnetSelectorTerms": [{"id": subnet} for subnet in nodes.subnet_ids],
                "securityGroupSelectorTerms": [{"id": group} for group in nodes.security_group_ids],
                # Room for the CUDA images and the runtime's layers; the weights live
                # on the model-cache volume.
                "blockDeviceMappings": [
                    {
                        "deviceName": "/dev/xvda",
                        "ebs": {
                            "volumeSize": "100Gi",
                            "volumeType": "gp3",
                            "encrypted": True,
                            "deleteOnTermination": True,
                        },
                    }
                ],
                # IMDSv2 only, and not reachable from pods (one hop).
                "metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1},
            },
            opts=crd_opts,
        )
        capacity = "spot" if pool.capacity_type == "SPOT" else "on-demand"
        k8s.apiextensions.CustomResource(
            f"{name}-node-pool",
            api_version="karpenter.sh/v1",
            kind="NodePool",
            metadata={"name": pool_name, "labels": labels(pool_name, "gpu-nodes")},
            spec={
                "template": {
                    "metadata": {"labels": pool.node_labels()},
                    "spec": {
                        "nodeClassRef": {
                            "group": "karpenter.k8s.aws",
                            "kind": "EC2NodeClass",
                            "name": pool_name,
                        },
                        "taints": [{"key": GPU_TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
                        "requirements": [
                            {
                                "key": "karpenter.k8s.aws/instance-family",
                                "operator": "In",
                                "values": pool.instance_families,
                            },
                            {
                                "key": "node.kubernetes.io/instance-type",
                                "operator": "In",
                                "values": sorted(pool.instance_types),
                            },
                            {
                                "key": "karpenter.sh/capacity-type",
                                "operator": "In",
                                "values": [capacity],
                            },
                        ],
                        # Nodes are replaced monthly, so they pick up the pinned AMI.
                        "expireAfter": "720h",
                    },
                },
                "disruption": {
                    "consolidationPolicy": "WhenEmptyOrUnderutilized",
                    "consolidateAfter": nodes.consolidate_after,
                    # One GPU node at a time: a replica reloads its weights elsewhere.
                    "budgets": [{"nodes": "1"}],
                },
                "limits": pool.limits(),
                **({"weight": args.weight} if args.weight is not None else {}),
            },
            opts=pulumi.ResourceOptions.merge(
                crd_opts, pulumi.ResourceOptions(depends_on=[node_class])
            ),
        )
        return pulumi.Output.from_input(pool_name)

    def _node_group(
        self,
        name: str,
        pool: GpuPoolConfig,
        group: EksNodeGroup,
        opts: pulumi.ResourceOptions | None,
    ) -> pulumi.Output[str]:
        # Imported here: the stack config reads this module's models in every stack,
        # and the local stack never imports the AWS SDK (a tenth of a second per run).
        import pulumi_aws as aws

        child = child_options(self, opts)
        node_group = aws.eks.NodeGroup(
            f"{name}-nodes",
            cluster_name=group.cluster_name,
            node_group_name_prefix=f"gpu-{pool.name}-",
            node_role_arn=group.node_role_arn,
            subnet_ids=list(group.subnet_ids),
            ami_type="AL2023_x86_64_NVIDIA",
            # IMDSv2 only, hop limit 1, encrypted root volume.
            launch_template=hardened_launch_template(f"{name}-nodes", child),
            instance_types=list(pool.instance_types),
            capacity_type=pool.capacity_type,
            scaling_config={
                "min_size": pool.scaling.min_size,
                "desired_size": pool.scaling.desired_size,
                "max_size": pool.scaling.max_size,
            },
            update_config={"max_unavailable": 1},
            labels=pool.node_labels(),
            taints=[{"key": GPU_TAINT_KEY, "value": "true", "effect": "NO_SCHEDULE"}],
            # The cluster autoscaler moves desiredSize; config only sets its bounds.
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(ignore_changes=["scalingConfig.desiredSize"])
            ),
        )
        return node_group.node_group_name


def _pod_security_context() -> PodSecurityContextArgs:
    """The pod's default for what its containers do not set: the runtime's seccomp
    profile (the containers set it too)."""
    return PodSecurityContextArgs(seccomp_profile=SeccompProfileArgs(type="RuntimeDefault"))


def _security_context(add: list[str] | None = None) -> SecurityContextArgs:
    """The node agents' containers: root (they talk to the kubelet and the driver), but
    no escalation, a read-only root and only the capabilities named."""
    return SecurityContextArgs(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        capabilities=CapabilitiesArgs(drop=["ALL"], add=add),
        seccomp_profile=SeccompProfileArgs(type="RuntimeDefault"),
    )
