"""An EKS cluster: KMS-encrypted secrets, control-plane logging to a KMS-encrypted log
group, access entries for its administrators, the `vpc-cni` add-on enforcing
NetworkPolicies, an OIDC provider for IRSA, a system node group on a hardened launch
template, and a Kubernetes provider built from its kubeconfig."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Self

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, model_validator

from components.billing import Billable, ControlPlane, NodePool
from components.kube import child_options
from components.node_template import hardened_launch_template
from components.stack_key import DELETION_WINDOW_DAYS, account_key_policy
from components.values import ArgsModel, InputStr, PositiveInt, Scaling

CONTROL_PLANE_LOGS = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)
# The EKS-managed vpc-cni add-on, pinned (a version built for Kubernetes 1.29-1.32):
# EKS's own CNI, already on every node, whose node agent enforces NetworkPolicies with
# eBPF once enableNetworkPolicy is set. Without it every NetworkPolicy is a no-op.
VPC_CNI_VERSION = "v1.19.2-eksbuild.1"
VPC_CNI_CONFIGURATION = {"enableNetworkPolicy": "true"}
CLUSTER_ADMIN_POLICY = "cluster-access-policy/AmazonEKSClusterAdminPolicy"


Region = Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")]
KubernetesVersion = Annotated[str, Field(pattern=r"^1\.\d{2}$")]


class EksClusterArgs(ArgsModel):
    region: Region
    kubernetes_version: KubernetesVersion
    # The nodes' subnets.
    private_subnet_ids: Annotated[Sequence[InputStr], Field(min_length=1)]
    public_subnet_ids: Sequence[InputStr]
    private_endpoint: bool
    system_instance_type: str
    system_scaling: Scaling
    # Who may reach a public endpoint; no default, so nothing is open to the world
    # unless a stack says so.
    public_access_cidrs: Sequence[str] = ()
    # The stack's KMS key: the control-plane log group is encrypted with it.
    logs_key_arn: InputStr
    log_retention_days: PositiveInt
    # IAM principals given cluster admin through access entries, besides the principal
    # that deploys (which needs it to manage the cluster's Kubernetes objects).
    admin_principal_arns: Sequence[str] = ()

    @model_validator(mode="after")
    def _a_reachable_endpoint(self) -> Self:
        if not self.private_endpoint and not self.public_access_cidrs:
            raise ValueError("a public endpoint needs at least one public_access_cidrs entry")
        return self


def _assume_role_policy(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
    )


class EksCluster(pulumi.ComponentResource):
    cluster_name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]
    node_role_name: pulumi.Output[str]
    node_security_group_id: pulumi.Output[str]
    # What the control plane and the system pool are billed by.
    bill: list[Billable]

    def __init__(
        self, name: str, args: EksClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:cluster:EksCluster", name, None, opts)
        # Imported here: the stack config reads this module's models in every stack,
        # and the local stack never imports the AWS SDK (a tenth of a second per run).
        import pulumi_aws as aws

        child = child_options(self, opts)

        secrets_key = aws.kms.Key(
            f"{name}-secrets",
            description=f"Envelope encryption of Kubernetes Secrets in {name}",
            enable_key_rotation=True,
            deletion_window_in_days=DELETION_WINDOW_DAYS,
            policy=account_key_policy(args.region, cloudwatch_logs=False),
            opts=child,
        )
        # EKS writes control-plane logs to this group; creating it ourselves sets its
        # retention and its key.
        aws.cloudwatch.LogGroup(
            f"{name}-control-plane",
            name=f"/aws/eks/{name}/cluster",
            kms_key_id=args.logs_key_arn,
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        cluster_role = aws.iam.Role(
            f"{name}-cluster",
            assume_role_policy=_assume_role_policy("eks.amazonaws.com"),
            opts=child,
        )
        cluster_policy = aws.iam.RolePolicyAttachment(
            f"{name}-cluster",
            role=cluster_role.name,
            policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
            opts=child,
        )
        cluster = aws.eks.Cluster(
            name,
            name=name,
            role_arn=cluster_role.arn,
            version=args.kubernetes_version,
            vpc_config={
                "subnet_ids": [*args.private_subnet_ids, *args.public_subnet_ids],
                "endpoint_private_access": True,
                "endpoint_public_access": not args.private_endpoint,
                "public_access_cidrs": None
                if args.private_endpoint
                else list(args.public_access_cidrs),
            },
            encryption_config={"provider": {"key_arn": secrets_key.arn}, "resources": ["secrets"]},
            enabled_cluster_log_types=CONTROL_PLANE_LOGS,
            # Access entries only: who administers the cluster is declared below, and
            # the principal that created it keeps no hidden, permanent admin.
            access_config={
                "authentication_mode": "API",
                "bootstrap_cluster_creator_admin_permissions": False,
            },
            # The flag acts at creation only and the provider replaces the cluster when it
            # changes: a cluster created with it keeps its place (its bootstrap entry is
            # removed by hand, see the README) instead of being rebuilt.
            opts=pulumi.ResourceOptions.merge(
                child_options(self, opts, depends_on=[cluster_policy]),
                pulumi.ResourceOptions(
                    ignore_changes=["accessConfig.bootstrapClusterCreatorAdminPermissions"]
                ),
            ),
        )
        admin_access = self._admins(name, cluster.name, args, child)
        aws.eks.Addon(
            f"{name}-vpc-cni",
            cluster_name=cluster.name,
            addon_name="vpc-cni",
            addon_version=VPC_CNI_VERSION,
            configuration_values=json.dumps(VPC_CNI_CONFIGURATION),
            # EKS installs vpc-cni unmanaged with every cluster; the add-on takes it over.
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=child,
        )

        issuer = cluster.identities.apply(
            lambda ids: (ids[0].oidcs[0].issuer or "") if ids and ids[0].oidcs else ""
        )
        oidc = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc", url=issuer, client_id_lists=["sts.amazonaws.com"], opts=child
        )

        node_role = aws.iam.Role(
            f"{name}-nodes", assume_role_policy=_assume_role_policy("ec2.amazonaws.com"), opts=child
        )
        node_policies = [
            aws.iam.RolePolicyAttachment(
                f"{name}-nodes-{arn.rsplit('/', 1)[-1]}",
                role=node_role.name,
                policy_arn=arn,
                opts=child,
            )
            for arn in NODE_POLICIES
        ]
        scaling = args.system_scaling
        aws.eks.NodeGroup(
            f"{name}-system",
            cluster_name=cluster.name,
            node_role_arn=node_role.arn,
            ami_type="AL2023_x86_64_STANDARD",
            launch_template=hardened_launch_template(f"{name}-system", child),
            subnet_ids=list(args.private_subnet_ids),
            instance_types=[args.system_instance_type],
            capacity_type="ON_DEMAND",
            scaling_config={
                "min_size": scaling.min_size,
                "desired_size": scaling.desired_size,
                "max_size": scaling.max_size,
            },
            update_config={"max_unavailable": 1},
            labels={"agent-platform.io/node-pool": "system"},
            opts=child_options(self, opts, depends_on=node_policies),
        )
        self.bill = [
            ControlPlane(name=name),
            NodePool(
                name=f"{name}-system",
                instance_types=(args.system_instance_type,),
                spot=False,
                desired=float(scaling.desired_size),
                maximum=float(scaling.max_size),
            ),
        ]

        self.cluster_name = cluster.name
        # Output.all hands back plain dicts, so the typed field is read before joining.
        ca_data = cluster.certificate_authority.apply(lambda ca: ca.data or "")
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(cluster.name, cluster.endpoint, ca_data).apply(
                lambda values: _kubeconfig(values[0], values[1], values[2], args.region)
            )
        )
        # Kubernetes objects wait for the deployer's access entry to be associated.
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            opts=child_options(self, opts, depends_on=admin_access),
        )
        self.oidc_provider_arn = oidc.arn
        self.oidc_issuer = issuer
        self.node_role_arn = node_role.arn
        self.node_role_name = node_role.name
        self.node_security_group_id = cluster.vpc_config.apply(
            lambda vpc: vpc.cluster_security_group_id or ""
        )
        self.register_outputs(
            {
                "clusterName": self.cluster_name,
                "kubeconfig": self.kubeconfig,
                "oidcProviderArn": self.oidc_provider_arn,
                "nodeRoleArn": self.node_role_arn,
            }
        )

    def _admins(
        self,
        name: str,
        cluster_name: pulumi.Output[str],
        args: EksClusterArgs,
        child: pulumi.ResourceOptions,
    ) -> list[pulumi.Resource]:
        """Cluster admin through access entries, for the deploying principal and the
        configured ones: removing a principal from config takes its access away."""
        import pulumi_aws as aws

        caller = aws.get_caller_identity()
        partition = aws.get_partition().partition
        # An assumed role's session ARN names the session; the entry names the role.
        deployer = aws.iam.get_session_context(arn=caller.arn).issuer_arn
        principals = [deployer, *(a for a in args.admin_principal_arns if a != deployer)]
        associations: list[pulumi.Resource] = []
        for principal in principals:
            # Named by the principal, so that listing another one replaces nothing.
            short = principal.rsplit("/", 1)[-1]
            entry = aws.eks.AccessEntry(
                f"{name}-admin-{short}",
                cluster_name=cluster_name,
                principal_arn=principal,
                type="STANDARD",
                opts=child,
            )
            associations.append(
                aws.eks.AccessPolicyAssociation(
                    f"{name}-admin-{short}",
                    cluster_name=cluster_name,
                    principal_arn=entry.principal_arn,
                    policy_arn=f"arn:{partition}:eks::aws:{CLUSTER_ADMIN_POLICY}",
                    access_scope={"type": "cluster"},
                    opts=child,
                )
            )
        return associations


def _kubeconfig(cluster_name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig that authenticates with the caller's AWS credentials, holding no token."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": cluster_name,
                    "cluster": {"server": endpoint, "certificate-authority-data": ca_data},
                }
            ],
            "contexts": [
                {"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}
            ],
            "current-context": cluster_name,
            "users": [
                {
                    "name": cluster_name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": [
                                "eks",
                                "get-token",
                                "--cluster-name",
                                cluster_name,
                                "--region",
                                region,
                            ],
                        }
                    },
                }
            ],
        }
    )
