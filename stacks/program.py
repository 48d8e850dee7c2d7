"""How each environment is put together from the components.

`local` renders manifests (or targets a kubeconfig context) with no cloud account; `dev`
and `prod` build the AWS network and EKS cluster first. Everything after the cluster is
the same program, steered by the typed stack config.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_kubernetes as k8s

from components.agent_service import (
    API_NAME,
    METRICS_PORT,
    QUEUE_METRICS_SERVICE,
    SERVICE_ACCOUNT,
    WORKER_NAME,
    WORKER_PORT,
)
from components.app_image import AppImage, AppImageArgs
from components.autoscaling import KedaRedisAuth, KedaRedisAuthArgs, QueueTrigger, ReplicaBounds
from components.billing import Billable
from components.canary import CanaryRelease, CanaryReleaseArgs, GatewayRoute, TrackRelease
from components.certificates import CERT_MANAGER_ACCOUNT, CERT_MANAGER_NAMESPACE, route53_policy
from components.dashboards import DashboardsConfig
from components.egress import (
    PRIVATE_RANGES,
    Addresses,
    Destination,
    Internet,
    Pods,
    WorkloadEgress,
    WorkloadEgressArgs,
)
from components.gateway import AgentGateway, AgentGatewayArgs
from components.gpu_node_pool import DCGM_PORT
from components.grafana_dashboards import GrafanaDashboards, GrafanaDashboardsArgs
from components.llm_service import LLM_NAME, LLM_PORT, LlmService, LlmServiceArgs
from components.local_cluster import LocalCluster, LocalClusterArgs
from components.local_storage import LocalStorage, LocalStorageArgs
from components.monitoring import Monitoring, MonitoringArgs, in_cluster_url
from components.namespace import PlatformNamespace, PlatformNamespaceArgs
from components.operators import FLAGGER_NAMESPACE, ClusterOperators, ClusterOperatorsArgs
from components.prometheus_rules import QUEUE_JOB, AlertThresholds
from components.redis import REDIS_PORT, Redis, RedisArgs
from components.secrets import (
    API_KEYS_KEY,
    LLM_API_KEY_KEY,
    REDIS_PASSWORD_KEY,
    PlatformSecrets,
    PlatformSecretsArgs,
)
from components.values import SecretKeyRef
from costing.pricing import price
from stacks.config import ConfigError, Environment, StackConfig, from_pulumi
from stacks.outputs import StackExports

if TYPE_CHECKING:
    # The AWS-only components are imported where dev and prod use them: the local stack
    # then never imports the AWS SDK, whose import every `pulumi preview` would pay.
    from components.eks_cluster import EksCluster
    from components.gpu_node_pool import EksNodeGroup, KarpenterNodes, SimulatedNodeGroup
    from components.network import Network

TASK_STREAM = "agent:tasks"
CONSUMER_GROUP = "agent-workers"
GPU_SYSTEM_NAMESPACE = "gpu-system"
# Where KEDA's operator runs (components/operators.py installs it there).
KEDA_NAMESPACE = "keda"


@dataclass(frozen=True)
class _Target:
    """Where the Kubernetes objects go, and what the AWS parts (if any) expose."""

    provider: k8s.Provider
    secrets_provider: k8s.Provider
    cluster_name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    cluster: EksCluster | None = None
    network: Network | None = None
    # The stack's KMS key (AWS only): log groups and ElastiCache encrypt with it.
    key_arn: pulumi.Output[str] | None = None


def hashed_api_keys(tenant_keys: dict[str, str]) -> str:
    """The app verifies API keys against their SHA-256, so the raw keys never reach a pod."""
    return json.dumps(
        {
            tenant: hashlib.sha256(key.encode()).hexdigest()
            for tenant, key in sorted(tenant_keys.items())
        }
    )


def _target(config: StackConfig) -> _Target:
    if not config.on_aws:
        # The stack file's `local` section is the component's Args.
        cluster = LocalCluster("local", config.local or LocalClusterArgs())
        return _Target(
            cluster.provider, cluster.secrets_provider, cluster.cluster_name, cluster.kubeconfig
        )

    from components.eks_cluster import EksCluster, EksClusterArgs
    from components.network import Network, NetworkArgs
    from components.stack_key import StackKey, StackKeyArgs

    assert config.cluster is not None  # StackConfig requires it on AWS
    spec = config.cluster
    name = f"agents-{config.environment}"
    key = StackKey(
        name,
        StackKeyArgs(
            region=spec.region,
            description=f"{name}: CloudWatch log groups and ElastiCache at rest",
        ),
    )
    network = Network(
        name,
        NetworkArgs(
            cluster_name=name,
            cidr=spec.vpc_cidr,
            availability_zones=spec.availability_zones,
            nat_gateway_per_az=config.environment is Environment.PROD,
            logs_key_arn=key.key_arn,
            log_retention_days=spec.log_retention_days,
        ),
    )
    eks = EksCluster(
        name,
        EksClusterArgs(
            region=spec.region,
            kubernetes_version=spec.kubernetes_version,
            private_subnet_ids=network.private_subnet_ids,
            public_subnet_ids=network.public_subnet_ids,
            private_endpoint=spec.private_endpoint,
            system_instance_type=spec.system_pool.instance_type,
            system_scaling=spec.system_pool.scaling,
            public_access_cidrs=[str(c) for c in spec.public_access_cidrs],
            logs_key_arn=key.key_arn,
            log_retention_days=spec.log_retention_days,
            admin_principal_arns=spec.admin_principal_arns,
        ),
    )
    return _Target(
        eks.provider, eks.provider, eks.cluster_name, eks.kubeconfig, eks, network, key.key_arn
    )


def _cost_output(bill: list[Billable]) -> dict[str, Any]:
    """The price of what the components declare they are billed by: the figure the
    policy pack reads from their resources' properties (a test holds the two equal),
    known from the config alone, so a preview shows it too."""
    cost = price(bill)
    return {
        "expectedUsd": cost.expected_total,
        "worstCaseUsd": cost.worst_total,
        "priceTable": f"{cost.source}, {cost.region}, read on {cost.read_on}",
        "unpriced": [f"{p.resource}: {p.message}" for p in cost.problems],
    }


def _monitoring_and_llm(
    config: StackConfig,
    provider: k8s.Provider,
    app_image: str,
    llm_key: SecretKeyRef,
    opts: pulumi.ResourceOptions,
) -> tuple[Monitoring, LlmService]:
    """Prometheus, and the LLM it watches (and, when vLLM autoscales, steers)."""
    ns = config.namespace
    scaled_llm = config.llm.autoscaling is not None
    monitoring = Monitoring(
        "monitoring",
        MonitoringArgs(
            config=config.monitoring,
            namespace=ns,
            thresholds=AlertThresholds(
                monthly_budget_usd=config.budget.monthly_usd,
                llm_max_replicas=config.llm.max_replicas if config.llm.mode == "vllm" else None,
            ),
            provider=provider,
            gpu_namespace=GPU_SYSTEM_NAMESPACE if config.gpu_pools else None,
            # KEDA's operator reads vLLM's metrics from Prometheus; Flagger runs the
            # release analysis's queries.
            query_client_namespaces=[
                *([KEDA_NAMESPACE] if scaled_llm else []),
                *([FLAGGER_NAMESPACE] if config.progressive_delivery.enabled else []),
            ],
            queue_metrics_target=f"{QUEUE_METRICS_SERVICE}.{ns}.svc.cluster.local:{METRICS_PORT}",
        ),
        opts=opts,
    )
    llm = LlmService(
        "llm",
        LlmServiceArgs(
            config=config.llm,
            namespace=ns,
            provider=provider,
            app_image=app_image,
            prometheus_url=monitoring.prometheus_url if scaled_llm else None,
            api_key=llm_key if config.llm.mode == "vllm" else None,
            # The backlog of tasks no worker has taken, exported once (by the API).
            queued_tasks_query=f'sum(agent_queue_depth{{job="{QUEUE_JOB}"}})'
            if scaled_llm
            else None,
        ),
        opts=opts,
    )
    return monitoring, llm


def _egress(config: StackConfig, provider: k8s.Provider, opts: pulumi.ResourceOptions) -> None:
    """Where each workload may connect; the namespace denies the rest (and DNS is open)."""
    redis: Destination = (
        Pods(app="redis", ports=[REDIS_PORT])
        if config.redis.mode == "in-cluster"
        else Addresses(
            cidrs=[str(config.cluster.vpc_cidr)] if config.cluster else [], ports=[REDIS_PORT]
        )
    )
    llm = config.llm
    model: Destination = (
        Internet(ports=[_port(llm.base_url)])
        if llm.mode == "external" and llm.base_url
        else Pods(app=LLM_NAME, ports=[LLM_PORT])
    )
    fetch: list[Destination] = (
        [Internet(ports=config.agent.fetch_ports())] if config.agent.fetch_allowlist else []
    )
    # Prometheus discovers pods through the API server: in the VPC on EKS, on a private
    # address in any other cluster.
    api_server = Addresses(
        cidrs=[str(config.cluster.vpc_cidr)] if config.cluster else list(PRIVATE_RANGES),
        ports=[443, 6443],
    )
    scraped: list[Destination] = [
        Pods(app=API_NAME, ports=[METRICS_PORT]),
        Pods(app=WORKER_NAME, ports=[WORKER_PORT]),
        *([Pods(app=LLM_NAME, ports=[LLM_PORT])] if llm.mode == "vllm" else []),
        *(
            Pods(
                app=f"dcgm-exporter-{pool.name}", namespace=GPU_SYSTEM_NAMESPACE, ports=[DCGM_PORT]
            )
            for pool in config.gpu_pools
        ),
    ]
    needs: dict[str, list[Destination]] = {
        API_NAME: [redis],
        WORKER_NAME: [redis, model, *fetch],
        "prometheus": [api_server, *scraped],
    }
    if llm.mode == "vllm":
        # The init container fetches the weights from the model hub.
        needs[LLM_NAME] = [Internet(ports=[443])]
    for app, destinations in needs.items():
        WorkloadEgress(
            app,
            WorkloadEgressArgs(
                namespace=config.namespace, app=app, to=destinations, provider=provider
            ),
            opts=opts,
        )


def _port(url: str) -> int:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


# --- Karpenter GPU pools (issue 16 points 4 and 5) -------------------------------------
def _gpu_nodes(
    config: StackConfig, target: _Target, local: LocalClusterArgs
) -> EksNodeGroup | KarpenterNodes | SimulatedNodeGroup:
    """Where the GPU pools' nodes come from: Karpenter or managed node groups on EKS,
    simulated nodes on the local control plane."""
    from components.gpu_node_pool import EksNodeGroup, SimulatedNodeGroup

    if target.cluster is None or target.network is None:
        # StackConfig allows local GPU pools only on the simulated control plane.
        assert local.nodes is not None
        return SimulatedNodeGroup(zones=local.nodes.zone_names)
    if config.karpenter.enabled:
        return _karpenter_nodes(config, target)
    return EksNodeGroup(
        cluster_name=target.cluster.cluster_name,
        node_role_arn=target.cluster.node_role_arn,
        subnet_ids=target.network.private_subnet_ids,
    )


def _karpenter_nodes(config: StackConfig, target: _Target) -> KarpenterNodes:
    """The Karpenter controller, and where its GPU pools' nodes go."""
    from components.gpu_node_pool import KarpenterNodes
    from components.karpenter import Karpenter, KarpenterArgs

    assert target.cluster is not None
    assert target.network is not None
    karpenter = Karpenter(
        "karpenter",
        KarpenterArgs(
            config=config.karpenter,
            cluster_name=target.cluster.cluster_name,
            oidc_provider_arn=target.cluster.oidc_provider_arn,
            oidc_issuer=target.cluster.oidc_issuer,
            node_role_arn=target.cluster.node_role_arn,
            provider=target.provider,
        ),
    )
    return KarpenterNodes(
        cluster_name=target.cluster.cluster_name,
        node_role_name=target.cluster.node_role_name,
        subnet_ids=target.network.private_subnet_ids,
        security_group_ids=[target.cluster.node_security_group_id],
        ami_alias=config.karpenter.ami_alias,
        consolidate_after=config.karpenter.consolidate_after,
        release=karpenter.release,
    )


def _gpus_at_rest(config: StackConfig) -> int:
    """GPUs the LLM server holds when idle: what the cost model reads from its
    Deployment (replicas, or its ScaledObject's minimum) times GPUs per replica."""
    if config.llm.mode != "vllm":
        return 0
    llm = config.llm
    at_rest = llm.autoscaling.min_replicas if llm.autoscaling else llm.replicas
    return at_rest * llm.gpus_per_replica


# --- end Karpenter ----------------------------------------------------------------------


def _gpu_pools(config: StackConfig, target: _Target, local: LocalClusterArgs) -> list[Billable]:
    """The GPU pools, each with its node agents in gpu-system; returns what they bill."""
    bill: list[Billable] = []
    if not config.gpu_pools:
        return bill
    from components.gpu_node_pool import GpuNodePool, GpuNodePoolArgs

    nodes = _gpu_nodes(config, target, local)
    gpu_namespace = PlatformNamespace(
        GPU_SYSTEM_NAMESPACE,
        # The device plugin needs a hostPath and DCGM needs SYS_ADMIN.
        PlatformNamespaceArgs(
            name=GPU_SYSTEM_NAMESPACE, provider=target.provider, pod_security="privileged"
        ),
    )
    for index, pool in enumerate(config.gpu_pools):
        gpu_pool = GpuNodePool(
            f"gpu-{pool.name}",
            GpuNodePoolArgs(
                pool=pool,
                nodes=nodes,
                system_namespace=GPU_SYSTEM_NAMESPACE,
                provider=target.provider,
                prometheus_namespace=config.namespace,
                # GPU pods select any GPU pool: Karpenter tries the pools in the
                # stack file's order, so the first holds the GPUs in use at rest.
                expected_gpus=_gpus_at_rest(config) if index == 0 else 0,
                weight=100 - index,
            ),
            opts=pulumi.ResourceOptions(depends_on=[gpu_namespace]),
        )
        bill += gpu_pool.bill
    return bill


def _dns01_role(config: StackConfig, target: _Target) -> pulumi.Output[str] | None:
    """The role cert-manager's controller assumes (IRSA) to answer an ACME issuer's DNS-01
    challenges: the host's challenge record in the configured hosted zone, nothing else."""
    tls = config.gateway.tls
    acme = tls.issuer.acme if config.gateway.enabled and tls and tls.issuer else None
    if acme is None or target.cluster is None:
        return None
    from components.workload_identity import WorkloadIdentity, WorkloadIdentityArgs

    identity = WorkloadIdentity(
        "cert-manager-dns01",
        WorkloadIdentityArgs(
            namespace=CERT_MANAGER_NAMESPACE,
            service_account=CERT_MANAGER_ACCOUNT,
            oidc_provider_arn=target.cluster.oidc_provider_arn,
            oidc_issuer=target.cluster.oidc_issuer,
            policy=route53_policy(acme.hosted_zone_id, config.gateway.host),
        ),
    )
    return identity.role_arn


def build(config: StackConfig) -> StackExports:
    target = _target(config)
    bill: list[Billable] = []
    if target.network is not None and target.cluster is not None:
        bill += [*target.network.bill, *target.cluster.bill]
    ns = config.namespace
    namespace = PlatformNamespace(ns, PlatformNamespaceArgs(name=ns, provider=target.provider))
    in_namespace = pulumi.ResourceOptions(depends_on=[namespace])

    local = config.local or LocalClusterArgs()
    bill += _gpu_pools(config, target, local)

    operators = None
    if config.on_aws:
        operators = ClusterOperators(
            "operators",
            ClusterOperatorsArgs(
                config=config.operators,
                provider=target.provider,
                prometheus_url=in_cluster_url(config.namespace),
                cert_manager_role_arn=_dns01_role(config, target),
            ),
        )
    after_operators = pulumi.ResourceOptions(
        depends_on=[namespace, *([operators] if operators else [])]
    )

    image = AppImage(
        "agent-app",
        AppImageArgs(
            repository=config.agent.image_repository,
            # With a canary, the working tree is the canary; stable was pushed before.
            tag=config.canary.image_tag if config.canary else config.agent.image_tag,
            build=config.on_aws,
            region=config.cluster.region if config.cluster else None,
        ),
    )
    stable_image = image.reference(config.agent.image_tag)
    canary_image = image.reference(config.canary.image_tag) if config.canary else None

    secret_values = {
        REDIS_PASSWORD_KEY: pulumi.Output.secret(config.secrets.redis_password.get_secret_value()),
        # vLLM and external models take the stack's key; the dev server none (the SDK
        # still wants a non-empty one).
        LLM_API_KEY_KEY: pulumi.Output.secret(
            config.secrets.model_api_key.get_secret_value()
            if config.secrets.model_api_key
            else "in-cluster"
        ),
        API_KEYS_KEY: pulumi.Output.secret(hashed_api_keys(config.secrets.tenant_api_keys())),
    }
    from_secrets_manager = config.environment is Environment.PROD
    secrets = PlatformSecrets(
        "app-secrets",
        PlatformSecretsArgs(
            namespace=ns,
            values=secret_values,
            provider=target.secrets_provider,
            source="aws-secrets-manager" if from_secrets_manager else "pulumi",
            oidc_provider_arn=target.cluster.oidc_provider_arn if target.cluster else None,
            oidc_issuer=target.cluster.oidc_issuer if target.cluster else None,
            region=config.cluster.region if config.cluster else None,
        ),
        opts=after_operators,
    )

    redis = Redis(
        "queue",
        RedisArgs(
            config=config.redis,
            password=secret_values[REDIS_PASSWORD_KEY],
            client_password_secret=SecretKeyRef(name=secrets.secret_name, key=REDIS_PASSWORD_KEY),
            namespace=ns,
            provider=target.provider,
            secrets_provider=target.secrets_provider,
            subnet_ids=target.network.private_subnet_ids if target.network else (),
            vpc_id=target.network.vpc_id if target.network else None,
            node_security_group_id=target.cluster.node_security_group_id
            if target.cluster
            else None,
            multi_az=config.environment is Environment.PROD,
            kms_key_arn=target.key_arn,
            delete_claim_with_statefulset=local.simulated,
            # KEDA's redis-streams scaler reads the task stream.
            client_namespaces=[KEDA_NAMESPACE] if config.autoscaling.keda else [],
        ),
        opts=in_namespace,
    )
    monitoring, llm = _monitoring_and_llm(
        config,
        target.provider,
        stable_image,
        SecretKeyRef(name=secrets.secret_name, key=LLM_API_KEY_KEY),
        opts=in_namespace,
    )

    gateway = None
    if config.gateway.enabled:
        gateway = AgentGateway(
            "agent-gateway",
            AgentGatewayArgs(
                namespace=ns,
                provider=target.provider,
                config=config.gateway,
                region=config.cluster.region if config.cluster else None,
            ),
            # Envoy Gateway's chart brings the EnvoyProxy and Gateway API CRDs.
            opts=after_operators,
        )
        if config.on_aws:
            bill += gateway.bill
    bill += [*redis.bill, *llm.bill, *monitoring.bill]
    # Priced once every billed component exists: the output and the dashboards' line agree.
    estimated_cost = _cost_output(bill)
    if config.monitoring.dashboards:
        GrafanaDashboards(
            "dashboards",
            GrafanaDashboardsArgs(
                dashboards=DashboardsConfig(
                    expected_monthly_usd=estimated_cost["expectedUsd"],
                    monthly_budget_usd=config.budget.monthly_usd,
                ),
                namespace=config.namespace,
                provider=target.provider,
            ),
            opts=in_namespace,
        )

    if local.simulated:
        # The local control plane has no volume provisioner: one volume per claim.
        LocalStorage(
            "local-storage",
            LocalStorageArgs(
                claims=[*redis.volume_claims, *monitoring.volume_claims, *llm.volume_claims],
                provider=target.provider,
            ),
        )

    scheme = "rediss" if redis.tls else "redis"
    redis_address = pulumi.Output.concat(redis.endpoint, ":", redis.port.apply(str))
    queue = None
    if config.autoscaling.keda:
        auth = KedaRedisAuth(
            "queue-auth",
            KedaRedisAuthArgs(
                namespace=ns,
                provider=target.provider,
                secret_name=secrets.secret_name,
                password_key=REDIS_PASSWORD_KEY,
            ),
            opts=after_operators,
        )
        queue = QueueTrigger(
            redis_address=redis_address,
            stream=TASK_STREAM,
            consumer_group=CONSUMER_GROUP,
            lag_per_replica=config.autoscaling.queue_depth_per_replica,
            trigger_authentication=auth.name,
            tls=redis.tls,
        )

    service_account_annotations: dict[str, pulumi.Input[str]] = {}
    if target.cluster is not None:
        from components.workload_identity import WorkloadIdentity, WorkloadIdentityArgs

        identity = WorkloadIdentity(
            "agent-identity",
            WorkloadIdentityArgs(
                namespace=ns,
                service_account=SERVICE_ACCOUNT,
                oidc_provider_arn=target.cluster.oidc_provider_arn,
                oidc_issuer=target.cluster.oidc_issuer,
            ),
        )
        service_account_annotations["eks.amazonaws.com/role-arn"] = identity.role_arn

    settings: dict[str, pulumi.Input[str]] = {
        "AGENT_REDIS_URL": pulumi.Output.concat(scheme, "://", redis_address, "/0"),
        "AGENT_LLM_BASE_URL": llm.base_url,
        "AGENT_LLM_MODEL": llm.model,
        "AGENT_TASK_STREAM": TASK_STREAM,
        "AGENT_CONSUMER_GROUP": CONSUMER_GROUP,
        "AGENT_TENANT_MONTHLY_BUDGET_USD": f"{config.budget.per_tenant_monthly_usd:g}",
        "AGENT_LOG_LEVEL": config.agent.log_level,
        "AGENT_FETCH_ALLOWLIST": ",".join(str(url) for url in config.agent.fetch_allowlist),
        "AGENT_ENVIRONMENT": str(config.environment),
    }
    canary = config.canary
    release = CanaryRelease(
        "agent",
        CanaryReleaseArgs(
            namespace=ns,
            provider=target.provider,
            stable=TrackRelease(version=config.agent.version, image=stable_image),
            canary=TrackRelease(version=canary.version, image=canary_image)
            if canary and canary_image
            else None,
            canary_weight=canary.weight if canary else 0,
            replicas=ReplicaBounds(
                min_replicas=config.autoscaling.min_replicas,
                max_replicas=config.autoscaling.max_replicas,
            ),
            worker_replicas=config.autoscaling.workers,
            api_resources=config.agent.api,
            worker_resources=config.agent.worker,
            secret_name=secrets.secret_name,
            settings=settings,
            target_cpu_utilization=config.autoscaling.target_cpu_utilization,
            target_memory_utilization=config.autoscaling.target_memory_utilization,
            route=GatewayRoute(host=config.gateway.host, tls=config.gateway.tls is not None)
            if gateway is not None
            else None,
            queue=queue,
            service_account_annotations=service_account_annotations,
            api_client_namespaces=[operators.gateway_namespace]
            if operators and operators.gateway_namespace
            else [],
            progressive=config.progressive_delivery
            if config.progressive_delivery.enabled
            else None,
            prometheus_url=monitoring.prometheus_url,
        ),
        # Pods name the image by tag: wait until it is pushed.
        opts=pulumi.ResourceOptions.merge(
            after_operators, pulumi.ResourceOptions(depends_on=[image])
        ),
    )

    _egress(config, target.provider, opts=pulumi.ResourceOptions(depends_on=[namespace]))

    return StackExports(
        cluster_name=target.cluster_name,
        kubeconfig=target.kubeconfig,
        namespace=namespace.name,
        agent_api_endpoint=release.endpoint,
        redis_endpoint=redis_address,
        prometheus_url=monitoring.prometheus_url,
        llm_base_url=llm.base_url,
        llm_model=llm.model,
        image_ref=image.image_ref,
        canary=release.canary,
        estimated_monthly_cost=estimated_cost,
    )


def main() -> None:
    try:
        config = from_pulumi()
    except ConfigError as error:
        # RunError prints the message alone: the problems, not a traceback.
        raise pulumi.RunError(str(error)) from None
    exports = build(config)
    for key, value in exports.as_exports().items():
        pulumi.export(key, value)
