"""The task queue's Redis: a StatefulSet in the cluster, or ElastiCache on AWS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Self

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.apps.v1 import (
    StatefulSet,
    StatefulSetPersistentVolumeClaimRetentionPolicyArgs,
    StatefulSetSpecArgs,
)
from pulumi_kubernetes.core.v1 import (
    ConfigMap,
    ConfigMapVolumeSourceArgs,
    ContainerArgs,
    ContainerPortArgs,
    EmptyDirVolumeSourceArgs,
    EnvVarArgs,
    EnvVarSourceArgs,
    ExecActionArgs,
    KeyToPathArgs,
    PersistentVolumeClaimArgs,
    PersistentVolumeClaimSpecArgs,
    PodSpecArgs,
    PodTemplateSpecArgs,
    ProbeArgs,
    Secret,
    SecretKeySelectorArgs,
    SecretVolumeSourceArgs,
    Service,
    ServicePortArgs,
    ServiceSpecArgs,
    TCPSocketActionArgs,
    VolumeArgs,
    VolumeMountArgs,
    VolumeResourceRequirementsArgs,
)
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import NetworkPolicy
from pulumi_kubernetes.policy.v1 import PodDisruptionBudget, PodDisruptionBudgetSpecArgs
from pydantic import Field, model_validator

from components.billing import Billable, CacheNodes, Volume
from components.kube import (
    agent_clients_only,
    child_options,
    labels,
    match_labels,
    restricted_container_security,
    restricted_pod_security,
    secret,
    selector,
)
from components.values import (
    ArgsModel,
    ImageReference,
    InputStr,
    PositiveInt,
    Resources,
    SecretKeyRef,
    VolumeClaim,
)

REDIS_PORT = 6379
REDIS_APP = "redis"
REDIS_UID = 999
# One server: the queue is not replicated in the cluster (see the PDB below).
REDIS_REPLICAS = 1

_REDIS_CONF = """\
# Written by agent-platform. The task stream must survive a restart: append-only file,
# fsync once a second.
bind 0.0.0.0
port 6379
protected-mode yes
dir /data
appendonly yes
appendfsync everysec
maxmemory-policy noeviction
include /etc/redis/auth/auth.conf
"""


class RedisConfig(ArgsModel):
    """Which Redis, and its size: the stack file's `redis` section."""

    mode: Literal["in-cluster", "elasticache"]
    # In-cluster.
    image: ImageReference = "redis:7.4.1-alpine3.20"
    storage_gi: PositiveInt = 8
    resources: Resources = Resources(
        cpu_request="100m", cpu_limit="500m", memory_request="256Mi", memory_limit="512Mi"
    )
    # ElastiCache.
    node_type: str = "cache.t4g.medium"
    num_cache_clusters: PositiveInt = 2


class RedisArgs(ArgsModel):
    config: RedisConfig
    password: pulumi.Output[str]
    # The Secret key the clients read the password from (the server's own copy, for
    # requirepass, is kept apart in redis-auth).
    client_password_secret: SecretKeyRef
    namespace: InputStr = "agents"
    provider: k8s.Provider | None = None
    secrets_provider: k8s.Provider | None = None
    # ElastiCache only.
    subnet_ids: Sequence[InputStr] = ()
    vpc_id: InputStr | None = None
    node_security_group_id: InputStr | None = None
    multi_az: bool = False
    # ElastiCache only: the stack's KMS key, which the data at rest is encrypted with.
    kms_key_arn: InputStr | None = None
    # In-cluster only: delete the data claim with the StatefulSet (a target whose volumes
    # are simulated, so that a destroy leaves nothing). Elsewhere the claim outlives it,
    # as Kubernetes does by default: a replaced StatefulSet finds its data again.
    delete_claim_with_statefulset: bool = False
    # In-cluster only: namespaces whose pods also reach Redis besides the agent's own
    # (KEDA's operator, whose redis-streams scaler reads the task stream).
    client_namespaces: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _what_the_mode_needs(self) -> Self:
        if self.config.mode == "in-cluster" and (
            self.provider is None or self.secrets_provider is None
        ):
            raise ValueError("in-cluster Redis needs the Kubernetes providers")
        if self.config.mode == "elasticache":
            if (
                not self.subnet_ids
                or self.vpc_id is None
                or self.node_security_group_id is None
                or self.kms_key_arn is None
            ):
                raise ValueError(
                    "ElastiCache needs subnet_ids, vpc_id, node_security_group_id and kms_key_arn"
                )
            if self.multi_az and self.config.num_cache_clusters < 2:
                raise ValueError("Multi-AZ ElastiCache needs num_cache_clusters >= 2")
        return self


class Redis(pulumi.ComponentResource):
    endpoint: pulumi.Output[str]
    port: pulumi.Output[int]
    tls: bool
    password_secret: pulumi.Output[dict[str, str]]
    # The claim the StatefulSet's template makes (none for ElastiCache).
    volume_claims: list[VolumeClaim]
    # What the data volume or the ElastiCache nodes are billed by.
    bill: list[Billable]

    def __init__(
        self, name: str, args: RedisArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:redis:Redis", name, None, opts)
        self.volume_claims = []
        if args.config.mode == "in-cluster":
            self.endpoint = self._in_cluster(name, args, opts)
            self.port = pulumi.Output.from_input(REDIS_PORT)
            self.tls = False
            # The StatefulSet's claim template: one volume a replica.
            self.bill = [
                Volume(
                    kind="StatefulSet",
                    name=f"{REDIS_APP}/data",
                    size_gib=float(args.config.storage_gi),
                    count=float(REDIS_REPLICAS),
                )
            ]
            # <template>-<StatefulSet>-<ordinal>, as the StatefulSet controller names it.
            self.volume_claims = [
                VolumeClaim(
                    namespace=args.namespace,
                    name=f"data-{REDIS_APP}-0",
                    size_gi=args.config.storage_gi,
                )
            ]
        else:
            self.endpoint, self.port = self._elasticache(name, args, opts)
            self.tls = True
            self.bill = [
                CacheNodes(
                    name=f"{name}-rg",
                    node_type=args.config.node_type,
                    nodes=float(args.config.num_cache_clusters),
                )
            ]
        ref = args.client_password_secret
        self.password_secret = pulumi.Output.all(ref.name, ref.key).apply(
            lambda v: {"name": v[0], "key": v[1]}
        )
        self.register_outputs(
            {"endpoint": self.endpoint, "port": self.port, "passwordSecret": self.password_secret}
        )

    def _in_cluster(
        self, name: str, args: RedisArgs, component_opts: pulumi.ResourceOptions | None
    ) -> pulumi.Output[str]:
        opts = child_options(self, component_opts, provider=args.provider)
        app = REDIS_APP
        pod_labels = labels(app, "queue")
        auth = Secret(
            f"{name}-auth",
            metadata=ObjectMetaArgs(name="redis-auth", namespace=args.namespace, labels=pod_labels),
            string_data={
                "auth.conf": secret(args.password.apply(lambda p: f"requirepass {p}\n")),
                # redis-cli reads REDISCLI_AUTH, so the probes authenticate without argv.
                "password": secret(args.password),
            },
            opts=child_options(self, component_opts, provider=args.secrets_provider),
        )
        conf = ConfigMap(
            f"{name}-config",
            metadata=ObjectMetaArgs(
                name="redis-config", namespace=args.namespace, labels=pod_labels
            ),
            data={"redis.conf": _REDIS_CONF},
            opts=opts,
        )
        service = Service(
            f"{name}-service",
            metadata=ObjectMetaArgs(name=app, namespace=args.namespace, labels=pod_labels),
            spec=ServiceSpecArgs(
                selector=selector(app),
                ports=[ServicePortArgs(name="redis", port=REDIS_PORT, target_port="redis")],
            ),
            opts=opts,
        )
        probe_command = ["sh", "-c", "redis-cli -h 127.0.0.1 ping | grep -q PONG"]
        container = ContainerArgs(
            name="redis",
            image=args.config.image,
            args=["/etc/redis/redis.conf"],
            ports=[ContainerPortArgs(name="redis", container_port=REDIS_PORT)],
            env=[
                # Env on purpose (third-party image): redis-cli in the probe takes its
                # password only from REDISCLI_AUTH or `-a` (argv, visible in `ps`).
                EnvVarArgs(
                    name="REDISCLI_AUTH",
                    value_from=EnvVarSourceArgs(
                        secret_key_ref=SecretKeySelectorArgs(name="redis-auth", key="password")
                    ),
                )
            ],
            resources=args.config.resources.as_kubernetes(),
            security_context=restricted_container_security(),
            # Alive while it accepts connections; ready once it answers.
            liveness_probe=ProbeArgs(
                tcp_socket=TCPSocketActionArgs(port="redis"),
                initial_delay_seconds=15,
                period_seconds=20,
                failure_threshold=5,
            ),
            readiness_probe=ProbeArgs(
                exec_=ExecActionArgs(command=probe_command),
                initial_delay_seconds=5,
                period_seconds=5,
                failure_threshold=2,
            ),
            volume_mounts=[
                VolumeMountArgs(name="data", mount_path="/data"),
                VolumeMountArgs(
                    name="config", mount_path="/etc/redis/redis.conf", sub_path="redis.conf"
                ),
                VolumeMountArgs(name="auth", mount_path="/etc/redis/auth", read_only=True),
                VolumeMountArgs(name="tmp", mount_path="/tmp"),
            ],
        )
        StatefulSet(
            f"{name}-statefulset",
            metadata=ObjectMetaArgs(name=app, namespace=args.namespace, labels=pod_labels),
            spec=StatefulSetSpecArgs(
                service_name=app,
                replicas=REDIS_REPLICAS,
                selector=match_labels(selector(app)),
                template=PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(
                        labels=pod_labels,
                        # Roll the pod when the config changes.
                        annotations={"agent-platform.io/config-version": "1"},
                    ),
                    spec=PodSpecArgs(
                        security_context=restricted_pod_security(REDIS_UID),
                        automount_service_account_token=False,
                        termination_grace_period_seconds=30,
                        containers=[container],
                        volumes=[
                            VolumeArgs(
                                name="config",
                                config_map=ConfigMapVolumeSourceArgs(name=conf.metadata.name),
                            ),
                            VolumeArgs(
                                name="auth",
                                secret=SecretVolumeSourceArgs(
                                    secret_name=auth.metadata.name,
                                    items=[KeyToPathArgs(key="auth.conf", path="auth.conf")],
                                ),
                            ),
                            VolumeArgs(
                                name="tmp", empty_dir=EmptyDirVolumeSourceArgs(size_limit="64Mi")
                            ),
                        ],
                    ),
                ),
                persistent_volume_claim_retention_policy=(
                    StatefulSetPersistentVolumeClaimRetentionPolicyArgs(
                        when_deleted="Delete", when_scaled="Retain"
                    )
                    if args.delete_claim_with_statefulset
                    else None
                ),
                volume_claim_templates=[
                    PersistentVolumeClaimArgs(
                        metadata=ObjectMetaArgs(name="data", labels=pod_labels),
                        spec=PersistentVolumeClaimSpecArgs(
                            access_modes=["ReadWriteOnce"],
                            resources=VolumeResourceRequirementsArgs(
                                requests={"storage": f"{args.config.storage_gi}Gi"}
                            ),
                        ),
                    )
                ],
            ),
            opts=opts,
        )
        # A single Redis is not replicated: the PDB makes a node drain wait for an
        # operator instead of silently taking the queue away.
        PodDisruptionBudget(
            f"{name}-pdb",
            metadata=ObjectMetaArgs(name=app, namespace=args.namespace, labels=pod_labels),
            spec=PodDisruptionBudgetSpecArgs(min_available=1, selector=match_labels(selector(app))),
            opts=opts,
        )
        NetworkPolicy(
            f"{name}-netpol",
            metadata=ObjectMetaArgs(
                name="redis-clients-only", namespace=args.namespace, labels=pod_labels
            ),
            spec=agent_clients_only(app, REDIS_PORT, client_namespaces=args.client_namespaces),
            opts=opts,
        )
        return pulumi.Output.concat(
            service.metadata.name, ".", args.namespace, ".svc.cluster.local"
        )

    def _elasticache(
        self, name: str, args: RedisArgs, component_opts: pulumi.ResourceOptions | None
    ) -> tuple[pulumi.Output[str], pulumi.Output[int]]:
        # Imported here, as in every component with an in-cluster variant: the local
        # stack never imports the AWS SDK (its import is a tenth of a second per run).
        import pulumi_aws as aws

        assert args.node_security_group_id is not None  # checked by RedisArgs
        child = child_options(self, component_opts)
        subnets = aws.elasticache.SubnetGroup(
            f"{name}-subnets",
            subnet_ids=list(args.subnet_ids),
            description="agent-platform Redis",
            opts=child,
        )
        security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description="Redis: only the EKS nodes may connect",
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    protocol="tcp",
                    from_port=REDIS_PORT,
                    to_port=REDIS_PORT,
                    security_groups=[args.node_security_group_id],
                    description="EKS nodes",
                )
            ],
            egress=[],
            opts=child,
        )
        group = aws.elasticache.ReplicationGroup(
            f"{name}-rg",
            description="agent-platform task queue",
            engine="redis",
            engine_version="7.1",
            node_type=args.config.node_type,
            num_cache_clusters=args.config.num_cache_clusters,
            automatic_failover_enabled=args.config.num_cache_clusters > 1,
            multi_az_enabled=args.multi_az,
            at_rest_encryption_enabled=True,
            # The stack's key, not the AWS-managed default: its policy and use are ours.
            kms_key_id=args.kms_key_arn,
            transit_encryption_enabled=True,
            auth_token=secret(args.password),
            subnet_group_name=subnets.name,
            security_group_ids=[security_group.id],
            port=REDIS_PORT,
            snapshot_retention_limit=7,
            apply_immediately=False,
            opts=child,
        )
        port = group.port.apply(lambda p: p or REDIS_PORT)
        return group.primary_endpoint_address, port
