"""Every Kubernetes object the dev and prod programs declare, admitted by a real API server
with the operators' real CRDs (KEDA, External Secrets, Karpenter, Gateway API; scripts/local-cluster
installs them from the projects' own modules).

The programs run under Pulumi's mocks, which stand in for AWS only (stacks/simulate.py:
ARNs, endpoints, generated names); each Kubernetes object is then sent exactly as the
program declared it, with a server-side dry run: schema validation, defaulting and
admission, Pod Security included, and nothing stored. The namespaces themselves are
created, so that the namespaced objects are judged under their namespace's Pod Security
level. Helm releases (the operators' charts) are the one kind left out: they are not API
objects.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from deployed import REPO

from stacks.simulate import Simulation

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

SCRIPT = REPO / "scripts" / "local-cluster"


class Cluster:
    def __init__(self, state: Path) -> None:
        self.state = state

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *args],
            env={**os.environ, "AGENT_PLATFORM_STATE": str(self.state)},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def dry_run(self, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        """Server-side apply of one object with a server dry run: judged, not stored."""
        return self.run(
            "kubectl",
            "apply",
            "--server-side",
            "--dry-run=server",
            "-f",
            "-",
            stdin=json.dumps(obj),
        )


@pytest.fixture(scope="module")
def cluster(cluster_built: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = Cluster(tmp_path_factory.mktemp("manifests-cluster"))
    result = started.run("up")
    assert result.returncode == 0, result.stderr
    yield started
    started.run("delete")


def chart_namespaces(simulation: Simulation) -> list[dict[str, Any]]:
    """The namespaces the operators' Helm releases create, where the program puts
    objects of its own (network policies for the operators, for example)."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": r.inputs["namespace"]}}
        for r in simulation.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs.get("createNamespace")
    ]


# prod releasing by hand instead of through Flagger: a 10% canary in its own HTTPRoute.
MANUAL_CANARY = {
    "agent-platform:progressiveDelivery": {"enabled": False},
    "agent-platform:canary": {"version": "1.5.0", "imageTag": "1.5.0", "weight": 10},
}


@pytest.mark.parametrize("stack", ["dev", "prod", "prod-manual-canary"])
def test_every_object_of_the_stack_is_admitted_by_the_api_server(
    stack: str, cluster: Cluster, simulated: Callable[[str, bool], Simulation]
) -> None:
    if stack == "prod-manual-canary":
        from stacks.simulate import simulate

        simulation = simulate("prod", overrides=MANUAL_CANARY)
    else:
        simulation = simulated(stack, False)
    objects = simulation.kubernetes_objects()
    kinds = {o["kind"] for o in objects}
    # The kinds that only the real CRDs can judge are among them.
    assert {"ScaledObject", "TriggerAuthentication", "NodePool", "EC2NodeClass"} <= kinds
    if stack.startswith("prod"):
        assert {"ExternalSecret", "SecretStore"} <= kinds
        assert {"GatewayClass", "EnvoyProxy", "Gateway"} <= kinds
        # The Gateway's certificate and the stack CA's issuers, judged by cert-manager's CRDs.
        assert {"Certificate", "Issuer"} <= kinds
        assert "Ingress" not in kinds
    if stack == "prod":
        # Flagger's release objects; it writes the HTTPRoute itself.
        assert {"Canary", "MetricTemplate"} <= kinds
        assert "HTTPRoute" not in kinds
    if stack == "prod-manual-canary":
        assert "HTTPRoute" in kinds
        assert "Canary" not in kinds
    namespaces = [o for o in objects if o["kind"] == "Namespace"] + chart_namespaces(simulation)
    others = [o for o in objects if o["kind"] != "Namespace"]
    assert namespaces
    assert others

    created = cluster.run(
        "kubectl",
        "apply",
        "--server-side",
        "--field-manager=admission-test",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": namespaces}),
    )
    assert created.returncode == 0, created.stderr
    admitted = cluster.run(
        "kubectl",
        "apply",
        "--server-side",
        "--dry-run=server",
        "--field-manager=admission-test",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": others}),
    )
    assert admitted.returncode == 0, admitted.stderr
    # Every object answered, and none with a warning (a Pod Security level it would
    # violate, a deprecated field or API).
    assert admitted.stdout.count("(server dry run)") == len(others), admitted.stdout
    assert "Warning" not in admitted.stderr, admitted.stderr


def test_the_api_server_refuses_what_the_crd_schema_forbids(cluster: Cluster) -> None:
    """The check above could not fail if the CRDs accepted anything: a ScaledObject
    with a misspelt field and one without its required target are both refused."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "schema-check"}}
    assert cluster.run("kubectl", "apply", "-f", "-", stdin=json.dumps(namespace)).returncode == 0
    scaled = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "bad", "namespace": "schema-check"},
        "spec": {"scaleTargetRef": {"name": "x"}, "minReplicaCont": 1, "triggers": []},
    }
    result = cluster.dry_run(scaled)
    assert result.returncode != 0
    assert "minReplicaCont" in result.stderr
    scaled["spec"] = {"minReplicaCount": 1, "triggers": []}
    result = cluster.dry_run(scaled)
    assert result.returncode != 0
    assert "scaleTargetRef" in result.stderr
    # Flagger's: a Canary without the Service its traffic goes through.
    canary = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "bad", "namespace": "schema-check"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
            "analysis": {"interval": "1m", "threshold": 5},
        },
    }
    result = cluster.dry_run(canary)
    assert result.returncode != 0
    assert "spec.service" in result.stderr


def test_the_node_pool_crd_is_karpenters_aws_set(cluster: Cluster) -> None:
    """The NodePool schema is the one the Karpenter chart installs on EKS (the core one
    plus the AWS label rules): a misspelt AWS label key, which the core schema alone
    would take, is refused, and a NodePool without its node class reference too."""
    requirement = {"key": "karpenter.k8s.aws/instance-famly", "operator": "In", "values": ["g5"]}
    pool: dict[str, Any] = {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": "schema-check"},
        "spec": {
            "template": {
                "spec": {
                    "nodeClassRef": {
                        "group": "karpenter.k8s.aws",
                        "kind": "EC2NodeClass",
                        "name": "gpu",
                    },
                    "requirements": [requirement],
                }
            }
        },
    }

    result = cluster.dry_run(pool)
    assert result.returncode != 0
    assert 'label domain "karpenter.k8s.aws" is restricted' in result.stderr, result.stderr
    requirement["key"] = "karpenter.k8s.aws/instance-family"
    assert cluster.dry_run(pool).returncode == 0
    del pool["spec"]["template"]["spec"]["nodeClassRef"]
    result = cluster.dry_run(pool)
    assert result.returncode != 0
    assert "nodeClassRef" in result.stderr
