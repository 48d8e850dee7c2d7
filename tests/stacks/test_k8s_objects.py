"""components.k8s_objects registers exactly what pulumi_kubernetes's generated classes
register, and the local stack imports neither those classes nor the AWS SDK."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from typing import Any

import pulumi
import pytest
from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components import k8s_objects
from stacks.simulate import REPO_ROOT

KINDS = sorted(k8s_objects.K8sObject.__subclasses__(), key=lambda cls: cls.__name__)

# A value for every input property any kind has, so that each one's translation is seen.
VALUES: dict[str, Any] = {
    "metadata": {"name": "obj", "namespace": "ns", "labels": {"app.kubernetes.io/name": "x"}},
    "automountServiceAccountToken": False,
    "imagePullSecrets": [{"name": "registry"}],
    "secrets": [{"name": "token"}],
    "binaryData": {"blob": "AAEC"},
    "data": {"key": "dmFsdWU="},
    "stringData": {"password": "hunter2hunter2"},
    "immutable": True,
    "type": "Opaque",
    "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "true"}}]},
    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "r"},
    "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}],
}

# A spec each kind's generated output types accept (the mocks echo inputs as outputs).
_LABEL_SELECTED = {"selector": {"matchLabels": {"app": "x"}}}
SPECS: dict[str, dict[str, Any]] = {
    "Deployment": {"replicas": 2, **_LABEL_SELECTED},
    "StatefulSet": {"serviceName": "x", **_LABEL_SELECTED},
    "DaemonSet": _LABEL_SELECTED,
    "PodDisruptionBudget": {"minAvailable": 1, **_LABEL_SELECTED},
    "Service": {"selector": {"app": "x"}, "ports": [{"port": 80, "targetPort": 8080}]},
    "NetworkPolicy": {"podSelector": {"matchLabels": {"app": "x"}}, "policyTypes": ["Ingress"]},
    "HorizontalPodAutoscaler": {"minReplicas": 1, "maxReplicas": 3},
    "PersistentVolumeClaim": {"accessModes": ["ReadWriteOnce"]},
    "Ingress": {"ingressClassName": "nginx"},
    "Namespace": {"finalizers": ["kubernetes"]},
}


class _Echo(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        return {}, []


class _Capturing(pulumi_mocks.MockMonitor):
    def __init__(self) -> None:
        super().__init__(_Echo())
        self.requests: dict[str, dict[str, Any]] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        self.requests[request.name] = MessageToDict(request)
        return super().RegisterResource(request)  # type: ignore[no-untyped-call]


def _generated(kind: k8s_objects.Kind) -> type[pulumi.CustomResource]:
    group, _, version = kind.api_version.rpartition("/")
    package = group.split(".")[0] or "core"
    module = importlib.import_module(f"pulumi_kubernetes.{package}.{version}")
    cls: type[pulumi.CustomResource] = getattr(module, kind.kind)
    return cls


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _construct(cls: type[pulumi.CustomResource], name: str, props: dict[str, Any]) -> Any:
    # One call site for both classes: the SDK records it as the source position.
    return cls(name, opts=pulumi.ResourceOptions(ignore_changes=["metadata"]), **props)


def _register(lean: type[k8s_objects.K8sObject], props: dict[str, Any]) -> dict[str, Any]:
    monitor = _Capturing()
    pulumi.runtime.set_mocks(monitor.mocks, project="p", stack="s", monitor=monitor)
    names: dict[str, Any] = {}

    async def program() -> None:
        # Built on one line, so that the two stack traces the SDK records are the same.
        snake = {_snake(key): value for key, value in props.items()}
        generated, ours = (
            _construct(cls, name, args)
            for cls, name, args in (
                (_generated(lean.KIND), "generated", snake),
                (lean, "lean", props),
            )
        )
        names["generated"] = await generated.metadata.name.future()
        names["lean"] = await ours.metadata["name"].future()

    pulumi.runtime.settings.SETTINGS.rpc_manager.clear()
    _sync_await(run_pulumi_func(program))
    assert names["generated"] == names["lean"] == "obj"
    return monitor.requests


@pytest.mark.parametrize("lean", KINDS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("every_property", [True, False], ids=["every-property", "metadata-only"])
def test_registers_what_the_generated_class_registers(
    lean: type[k8s_objects.K8sObject], every_property: bool
) -> None:
    properties = lean.KIND.properties if every_property else ("metadata", *lean.KIND.required)
    values = {**VALUES, "spec": SPECS.get(lean.KIND.kind, {})}
    requests = _register(lean, {name: values[name] for name in properties})
    generated, ours = requests.pop("generated"), requests.pop("lean")
    assert ours.pop("name") == "lean"
    assert generated.pop("name") == "generated"
    assert ours == generated
    assert ours["type"] == lean.KIND.token


def test_unknown_and_missing_required_properties_are_refused_as_by_the_generated_class() -> None:
    with pytest.raises(TypeError, match=r"Service has no properties \['sepc'\]"):
        k8s_objects.Service("typo", sepc={})
    with pytest.raises(TypeError, match=r"Missing required property 'roleRef'"):
        k8s_objects.ClusterRoleBinding("unbound", metadata={"name": "b"}, subjects=[])


def test_the_local_stack_imports_no_aws_sdk_nor_generated_kubernetes_kinds() -> None:
    # A fresh interpreter, as the engine's language host is: the test session has them all.
    script = (
        "import sys\n"
        "from stacks.simulate import simulate\n"
        "simulate('local')\n"
        "print(sorted(m for m in sys.modules if m.startswith(("
        "'pulumi_aws', 'pulumi_docker', 'pulumi_kubernetes.core.v1', "
        "'pulumi_kubernetes.apps.v1', 'pulumi_kubernetes.networking.v1'))))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
