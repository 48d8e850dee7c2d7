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


def ingress_nginx_service(release: ResourceView) -> tuple[Any, Any] | None:
    """(type, annotations) of the controller Service an ingress-nginx Release creates."""
    chart = release.get("chart")
    if not isinstance(chart, str) or not chart.endswith("ingress-nginx"):
        return None
    service = release.get("values", "controller", "service")
    if service is UNKNOWN:
        return UNKNOWN, UNKNOWN
    if dig(service, "enabled") is False:
        return None
    # The chart's default controller Service is a LoadBalancer.
    return dig(service, "type") or "LoadBalancer", dig(service, "annotations")
