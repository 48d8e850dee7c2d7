"""Builders for compliant Kubernetes and AWS resources in wire form, and for variations.

Each rule test starts from a resource that passes every rule and breaks one field,
so a test fails if the rule stops looking at that field.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from costing.view import ResourceView
from policies.violation import Violation
from policies.workloads import POD_SPEC_PATHS

DELETE: Final = object()


def container(name: str = "api", image: str = "agent-platform/agent-app:1.4.0") -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "64Mi"},
            "limits": {"cpu": "1", "memory": "512Mi", "ephemeral-storage": "1Gi"},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "livenessProbe": {"httpGet": {"path": "/livez", "port": 8080}},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}},
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            # Secrets are files in a Secret volume (secrets-as-files), named here.
            {"name": "REDIS_PASSWORD_FILE", "value": "/etc/agent/secrets/redis-password"},
        ],
    }


def pod_spec(*containers: dict[str, Any]) -> dict[str, Any]:
    return {
        "containers": list(containers) or [container()],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
    }


def workload(
    resource_type: str = "kubernetes:apps/v1:Deployment",
    name: str = "agent-api",
    namespace: str = "agents",
    spec: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
) -> ResourceView:
    """A pod-bearing resource of any kind, with the pod spec where that kind keeps it."""
    path = POD_SPEC_PATHS[resource_type]
    labels = labels or {"app.kubernetes.io/name": name}
    inner: dict[str, Any] = spec or pod_spec()
    # Build from the pod spec outwards: each level's parent gets it under its key.
    for depth in range(len(path) - 1, 0, -1):
        key = path[depth]
        node: dict[str, Any] = {key: inner}
        if key == "spec" and path[depth - 1] == "template":
            node["metadata"] = {"labels": labels}
        inner = node
    props: dict[str, Any] = {"metadata": {"name": name, "namespace": namespace}, "spec": inner}
    if resource_type == "kubernetes:core/v1:Pod":
        props["metadata"]["labels"] = labels
    return ResourceView(
        resource_type, name, f"urn:pulumi:test::agent-platform::{resource_type}::{name}", props
    )


def resource(resource_type: str, name: str, props: dict[str, Any]) -> ResourceView:
    return ResourceView(
        resource_type, name, f"urn:pulumi:test::agent-platform::{resource_type}::{name}", props
    )


def patched(view: ResourceView, path: str, value: Any) -> ResourceView:
    """A copy of `view` with the dotted `path` (ints index lists) set, or removed by DELETE."""
    props = copy.deepcopy(view.props)
    keys: list[str | int] = [int(k) if k.isdigit() else k for k in path.split(".")]
    node: Any = props
    for key in keys[:-1]:
        node = node[key] if isinstance(key, int) else node.setdefault(key, {})
    last = keys[-1]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return ResourceView(view.type, view.name, view.urn, props)


def only(found: list[Violation]) -> Violation:
    """The single real violation (undetermined notes excluded)."""
    real = [v for v in found if not v.undetermined]
    assert len(real) == 1, [str(v) for v in found]
    return real[0]


def real(found: list[Violation]) -> list[Violation]:
    return [v for v in found if not v.undetermined]
