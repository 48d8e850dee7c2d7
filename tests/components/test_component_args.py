"""The Args models validate before any resource exists, each check written once: a bad
value is refused with the field it came in."""

from __future__ import annotations

import ipaddress

import pytest
from component_mocks import evaluate, provider

from components.autoscaling import AutoscalingArgs, ReplicaBounds
from components.canary import CanaryReleaseArgs, TrackRelease
from components.local_cluster import LocalClusterArgs
from components.network import NetworkArgs
from components.values import Resources


def _resources() -> Resources:
    return Resources(cpu_request="100m", cpu_limit="1", memory_request="64Mi", memory_limit="128Mi")


def test_args_models_reject_inconsistent_input() -> None:
    k8s_provider, _ = evaluate(provider)
    with pytest.raises(ValueError, match="minReplicas 5 is greater than maxReplicas 2"):
        ReplicaBounds(min_replicas=5, max_replicas=2)
    with pytest.raises(
        ValueError, match=r"target_cpu_utilization\n  Input should be greater than or equal to 1"
    ):
        AutoscalingArgs(
            namespace="a",
            provider=k8s_provider,
            deployment_name="d",
            replicas=ReplicaBounds(min_replicas=1, max_replicas=2),
            target_cpu_utilization=0,
        )
    with pytest.raises(
        ValueError, match=r"canary_weight\n  Input should be less than or equal to 100"
    ):
        CanaryReleaseArgs(
            namespace="a",
            provider=k8s_provider,
            stable=TrackRelease(version="1", image="img:1"),
            canary=TrackRelease(version="2", image="img:2"),
            canary_weight=120,
            replicas=ReplicaBounds(min_replicas=1, max_replicas=2),
            api_resources=_resources(),
            worker_resources=_resources(),
            secret_name="s",
            settings={},
            target_cpu_utilization=70,
            target_memory_utilization=80,
        )
    with pytest.raises(ValueError, match="secrets_directory must differ"):
        LocalClusterArgs(render_directory="out", secrets_directory="out")
    with pytest.raises(
        ValueError, match=r"availability_zones\n  Input should be greater than or equal to 2"
    ):
        NetworkArgs(
            cluster_name="c",
            cidr=ipaddress.IPv4Network("10.0.0.0/16"),
            availability_zones=1,
            nat_gateway_per_az=False,
        )


def test_resources_reject_requests_above_limits() -> None:
    with pytest.raises(ValueError, match="cpuRequest 2 exceeds cpuLimit 500m"):
        Resources(cpu_request="2", cpu_limit="500m", memory_request="1Mi", memory_limit="1Mi")
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        Resources(cpu_request="lots", cpu_limit="1", memory_request="1Mi", memory_limit="1Mi")
