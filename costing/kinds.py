"""The resource types the cost model prices, which the pack's rules recognise too.

One definition each, so that a rule and the model never disagree about which resource
is a load balancer or a volume.
"""

from __future__ import annotations

from typing import Any, Final

from costing.view import UNKNOWN, ResourceView, dig

EKS_CLUSTER: Final = "aws:eks/cluster:Cluster"
NODE_GROUP: Final = "aws:eks/nodeGroup:NodeGroup"
NAT_GATEWAY: Final = "aws:ec2/natGateway:NatGateway"
REPLICATION_GROUP: Final = "aws:elasticache/replicationGroup:ReplicationGroup"
AWS_LB: Final = "aws:lb/loadBalancer:LoadBalancer"
SERVICE: Final = "kubernetes:core/v1:Service"
PVC: Final = "kubernetes:core/v1:PersistentVolumeClaim"
STATEFULSET: Final = "kubernetes:apps/v1:StatefulSet"
HELM_RELEASE: Final = "kubernetes:helm.sh/v3:Release"


ENVOY_PROXY: Final = "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy"


def envoy_proxy_service(proxy: ResourceView) -> tuple[Any, Any]:
    """(type, annotations) of the Service Envoy Gateway creates for a Gateway whose class
    names this EnvoyProxy (one Gateway per EnvoyProxy in this project)."""
    provider = proxy.get("spec", "provider")
    if provider is UNKNOWN:
        return UNKNOWN, UNKNOWN
    service = dig(provider, "kubernetes", "envoyService")
    if service is UNKNOWN:
        return UNKNOWN, UNKNOWN
    # Envoy Gateway's default Service for a Gateway is a LoadBalancer.
    return dig(service, "type") or "LoadBalancer", dig(service, "annotations")
