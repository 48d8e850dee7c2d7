"""Karpenter: nodes launched for pending pods, on EKS (dev and prod).

The controller is the pinned Helm chart behind the stack file's `karpenter.enabled`, with
an IAM role for its ServiceAccount (IRSA) that may create and terminate only instances
tagged for this cluster, and pass only the nodes' role. It runs on the managed system
node group (never on a node it manages), so the system pool stays a managed node group.

With Karpenter on, each GPU pool is a Karpenter NodePool and EC2NodeClass
(components/gpu_node_pool.py, `KarpenterNodes`) instead of a managed node group: the
GPU pods' demand decides the nodes, and the pool's `scaling.maxSize` becomes the
NodePool's `limits`. One provisioner per pool, never both: a managed group beside a
NodePool of the same labels and taint would keep its `minSize` nodes running whether or
not a pod needs them, and the cost model and the GPU cap would count each GPU twice.
"""

from __future__ import annotations

import json
from typing import Annotated

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import (
    NetworkPolicy,
    NetworkPolicyIngressRuleArgs,
    NetworkPolicySpecArgs,
)
from pydantic import Field

from components.kube import child_options, tcp_ports
from components.values import ArgsModel, InputStr

NAMESPACE = "karpenter"
SERVICE_ACCOUNT = "karpenter"
# The chart is published as an OCI artifact, not in a classic chart repository.
CHART = "oci://public.ecr.aws/karpenter/karpenter"
METRICS_PORT = 8080
SYSTEM_POOL_LABELS = {"agent-platform.io/node-pool": "system"}


class KarpenterConfig(ArgsModel):
    """The stack file's `karpenter` section.

    `chartVersion` is the chart (and controller) release; the CRDs the local control
    plane validates against come from the same release (tools/cluster/crds/go.mod).
    `amiAlias` pins the EKS-optimised AL2023 AMI release; Karpenter picks its NVIDIA
    variant for GPU instance types. `consolidateAfter` is how long a GPU node may stay
    empty or underused before Karpenter removes or replaces it: long enough that a
    replica scaled away and back does not reload its weights on a new node.
    """

    enabled: bool = False
    chart_version: str = "1.13.1"
    ami_alias: Annotated[str, Field(pattern=r"^al2023@(latest|v\d{8})$")] = "al2023@v20250915"
    consolidate_after: Annotated[str, Field(pattern=r"^\d+[smh]$")] = "10m"


class KarpenterArgs(ArgsModel):
    config: KarpenterConfig
    cluster_name: InputStr
    oidc_provider_arn: InputStr
    oidc_issuer: InputStr
    # The role the nodes run as (the managed node groups' too, so its EKS access entry
    # already lets them join).
    node_role_arn: InputStr
    provider: k8s.Provider


class Karpenter(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: KarpenterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:cluster:Karpenter", name, None, opts)
        # Imported here: the stack config reads this module's models in every stack.
        from components.workload_identity import WorkloadIdentity, WorkloadIdentityArgs

        policy = pulumi.Output.all(args.cluster_name, args.node_role_arn).apply(
            lambda v: controller_policy(v[0], v[1])
        )
        identity = WorkloadIdentity(
            f"{name}-identity",
            WorkloadIdentityArgs(
                namespace=NAMESPACE,
                service_account=SERVICE_ACCOUNT,
                oidc_provider_arn=args.oidc_provider_arn,
                oidc_issuer=args.oidc_issuer,
                policy=policy,
            ),
            opts=child_options(self, opts),
        )
        k8s_opts = child_options(self, opts, provider=args.provider)
        self.release = k8s.helm.v3.Release(
            name,
            name="karpenter",
            chart=CHART,
            version=args.config.chart_version,
            namespace=NAMESPACE,
            create_namespace=True,
            atomic=True,
            timeout=600,
            values={
                "settings": {"clusterName": args.cluster_name},
                "serviceAccount": {
                    "name": SERVICE_ACCOUNT,
                    "annotations": {"eks.amazonaws.com/role-arn": identity.role_arn},
                },
                # On the managed system pool only: never on a node it may remove.
                "nodeSelector": SYSTEM_POOL_LABELS,
                "controller": {
                    "resources": {
                        "requests": {"cpu": "250m", "memory": "512Mi"},
                        "limits": {"cpu": "1", "memory": "1Gi"},
                    },
                    "metrics": {"port": METRICS_PORT},
                },
            },
            opts=k8s_opts,
        )
        NetworkPolicy(
            f"{name}-ingress",
            metadata=ObjectMetaArgs(name="operator-ingress", namespace=NAMESPACE),
            spec=NetworkPolicySpecArgs(
                pod_selector=LabelSelectorArgs(),
                policy_types=["Ingress"],
                # Prometheus scrapes the metrics; the chart runs no webhook.
                ingress=[NetworkPolicyIngressRuleArgs(ports=tcp_ports(METRICS_PORT))],
            ),
            # Helm creates the namespace.
            opts=child_options(self, opts, provider=args.provider, depends_on=[self.release]),
        )
        self.role_arn = identity.role_arn
        self.register_outputs({"roleArn": self.role_arn, "chartVersion": args.config.chart_version})


def controller_policy(cluster_name: str, node_role_arn: str) -> str:
    """What the controller may do in AWS: create instances (and their volumes, network
    interfaces, launch templates) only tagged for this cluster, from any image, subnet and
    security group; terminate only instances so tagged; read the EC2 catalogue and
    prices; pass only the nodes' role; manage the instance profiles it makes for it.
    Karpenter tags what it creates with `kubernetes.io/cluster/<cluster>: owned`."""
    owned = f"aws:RequestTag/kubernetes.io/cluster/{cluster_name}"
    tagged = f"aws:ResourceTag/kubernetes.io/cluster/{cluster_name}"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "LaunchOnlyTaggedForThisCluster",
                    "Effect": "Allow",
                    "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
                    "Resource": [
                        "arn:aws:ec2:*:*:fleet/*",
                        "arn:aws:ec2:*:*:instance/*",
                        "arn:aws:ec2:*:*:volume/*",
                        "arn:aws:ec2:*:*:network-interface/*",
                        "arn:aws:ec2:*:*:launch-template/*",
                        "arn:aws:ec2:*:*:spot-instances-request/*",
                    ],
                    "Condition": {"StringEquals": {owned: "owned"}},
                },
                {
                    "Sid": "LaunchFromExistingImagesAndSubnets",
                    "Effect": "Allow",
                    "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
                    "Resource": [
                        "arn:aws:ec2:*::image/*",
                        "arn:aws:ec2:*::snapshot/*",
                        "arn:aws:ec2:*:*:security-group/*",
                        "arn:aws:ec2:*:*:subnet/*",
                        "arn:aws:ec2:*:*:launch-template/*",
                        "arn:aws:ec2:*:*:capacity-reservation/*",
                    ],
                },
                {
                    "Sid": "TagOnlyWhatItLaunches",
                    "Effect": "Allow",
                    "Action": "ec2:CreateTags",
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": {
                            owned: "owned",
                            "ec2:CreateAction": [
                                "RunInstances",
                                "CreateFleet",
                                "CreateLaunchTemplate",
                            ],
                        }
                    },
                },
                {
                    "Sid": "TerminateOnlyThisClustersNodes",
                    "Effect": "Allow",
                    "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {tagged: "owned"}},
                },
                {
                    "Sid": "ReadTheCatalogue",
                    "Effect": "Allow",
                    "Action": [
                        "ec2:DescribeAvailabilityZones",
                        "ec2:DescribeCapacityReservations",
                        "ec2:DescribeImages",
                        "ec2:DescribeInstances",
                        "ec2:DescribeInstanceTypeOfferings",
                        "ec2:DescribeInstanceTypes",
                        "ec2:DescribeLaunchTemplates",
                        "ec2:DescribeSecurityGroups",
                        "ec2:DescribeSpotPriceHistory",
                        "ec2:DescribeSubnets",
                        "pricing:GetProducts",
                    ],
                    "Resource": "*",
                },
                {
                    "Sid": "ReadAmiParameters",
                    "Effect": "Allow",
                    "Action": "ssm:GetParameter",
                    "Resource": "arn:aws:ssm:*::parameter/aws/service/*",
                },
                {
                    "Sid": "PassOnlyTheNodeRole",
                    "Effect": "Allow",
                    "Action": "iam:PassRole",
                    "Resource": node_role_arn,
                    "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
                },
                {
                    "Sid": "CreateInstanceProfilesForThisCluster",
                    "Effect": "Allow",
                    "Action": ["iam:CreateInstanceProfile", "iam:TagInstanceProfile"],
                    "Resource": "arn:aws:iam::*:instance-profile/*",
                    "Condition": {"StringEquals": {owned: "owned"}},
                },
                {
                    "Sid": "ManageThisClustersInstanceProfiles",
                    "Effect": "Allow",
                    "Action": [
                        "iam:AddRoleToInstanceProfile",
                        "iam:RemoveRoleFromInstanceProfile",
                        "iam:DeleteInstanceProfile",
                    ],
                    "Resource": "arn:aws:iam::*:instance-profile/*",
                    "Condition": {"StringEquals": {tagged: "owned"}},
                },
                # Reading one profile takes a profile ARN; listing them takes none.
                {
                    "Sid": "ReadInstanceProfiles",
                    "Effect": "Allow",
                    "Action": "iam:GetInstanceProfile",
                    "Resource": "arn:aws:iam::*:instance-profile/*",
                },
                {
                    "Sid": "ListInstanceProfiles",
                    "Effect": "Allow",
                    "Action": "iam:ListInstanceProfiles",
                    "Resource": "*",
                },
                {
                    "Sid": "DescribeThisCluster",
                    "Effect": "Allow",
                    "Action": "eks:DescribeCluster",
                    "Resource": f"arn:aws:eks:*:*:cluster/{cluster_name}",
                },
            ],
        }
    )
