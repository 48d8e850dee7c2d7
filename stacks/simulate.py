"""Evaluate a stack's program in-process under Pulumi's mocks, with no engine or cloud.

The unit tests, the policy harness (`make policy`) and the cost command
(`python -m policies.cost`) all need the resource graph a stack would register;
this is the one place that produces it. It reads the real `Pulumi.<stack>.yaml`.
Values the stack file keeps encrypted, or leaves for the operator to set with
`pulumi config set --secret`, are replaced by placeholder secrets: the graph does not
depend on secret values, only on their being secret.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from stacks.config import NAMESPACE, SECRET_KEYS, ConfigError, StackConfig, load_stack_config
from stacks.gc_tuning import program_gc

PROJECT = "agent-platform"
REPO_ROOT = Path(__file__).resolve().parent.parent

_PLACEHOLDER_SECRETS = {
    f"{NAMESPACE}:redisPassword": "simulated-redis-password",
    f"{NAMESPACE}:appApiKeys": json.dumps({"simulated-tenant": "simulated-api-key"}),
    f"{NAMESPACE}:modelApiKey": "simulated-model-api-key",
}


# Pulumi's wire form of a secret: {SECRET_SIG: <its value>, "value": ...}.
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105 - a marker, not a secret
# Registered resources that are not Kubernetes API objects: Helm releases (the operators'
# charts) and the provider itself.
_NOT_API_OBJECTS = ("kubernetes:helm.sh/", "pulumi:providers:")


def as_sent(value: Any) -> Any:
    """A wire-form value as a provider would send it: the mocks hand numbers over as floats
    (protobuf's only number) and secrets wrapped in Pulumi's secret envelope."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return as_sent(value["value"])
        return {k: as_sent(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_sent(v) for v in value]
    return value


@dataclass(frozen=True)
class SimulatedResource:
    urn: str
    type: str
    name: str
    inputs: dict[str, Any]
    parent_urn: str | None
    custom: bool
    # What the mocks answered for a custom resource: its physical id and its state (the
    # inputs plus what the cloud would compute, stacks.simulate._computed_outputs).
    id: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    # Input property -> the URNs of the resources its value came from.
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Simulation:
    stack: str
    config: StackConfig
    resources: list[SimulatedResource]
    outputs: dict[str, Any] = field(default_factory=dict)
    # What each component passed to register_outputs, by URN.
    component_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[SimulatedResource]:
        return [r for r in self.resources if r.type == type_]

    def named(self, type_: str, name: str) -> SimulatedResource:
        matches = [r for r in self.of_type(type_) if r.name == name]
        if len(matches) != 1:
            known = sorted(r.name for r in self.of_type(type_))
            raise KeyError(f"{len(matches)} {type_} named {name!r}; have {known}")
        return matches[0]

    def by_urn(self, urn: str) -> SimulatedResource:
        for resource in self.resources:
            if resource.urn == urn:
                return resource
        raise KeyError(urn)

    def kubernetes_objects(self) -> list[dict[str, Any]]:
        """Every Kubernetes API object the program declares, as the provider would send
        it (Helm releases are left out: they are not API objects)."""
        return [
            as_sent(r.inputs)
            for r in self.resources
            if r.custom
            and r.type.startswith("kubernetes:")
            and not r.type.startswith(_NOT_API_OBJECTS)
        ]


def _computed_outputs(type_: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """What the cloud would compute for a resource, enough for the program to go on."""
    region = "us-east-1"
    if type_ == "aws:eks/cluster:Cluster":
        return {
            "name": inputs.get("name", name),
            "endpoint": f"https://{name}.gr7.{region}.eks.amazonaws.com",
            "certificateAuthority": {"data": "c2ltdWxhdGVkLWNh"},
            "identities": [
                {"oidcs": [{"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/SIM"}]}
            ],
            "vpcConfig": {**inputs.get("vpcConfig", {}), "clusterSecurityGroupId": "sg-cluster"},
            "arn": f"arn:aws:eks:{region}:123456789012:cluster/{name}",
        }
    if type_ == "aws:ec2/launchTemplate:LaunchTemplate":
        return {
            "latestVersion": 1,
            "name": f"{inputs.get('namePrefix', '')}{name}-sim",
            "arn": f"arn:aws:ec2:{region}:123456789012:launch-template/lt-{name}",
        }
    if type_ == "aws:kms/key:Key":
        return {"arn": f"arn:aws:kms:{region}:123456789012:key/{name}", "keyId": name}
    if type_ == "aws:elasticache/replicationGroup:ReplicationGroup":
        return {"primaryEndpointAddress": f"{name}.cache.amazonaws.com", "port": 6379}
    if type_ == "aws:ecr/repository:Repository":
        return {
            "repositoryUrl": f"123456789012.dkr.ecr.{region}.amazonaws.com/{inputs.get('name', name)}"
        }
    if type_ == "docker:index/image:Image":
        return {"repoDigest": f"{inputs.get('imageName', name)}@sha256:{'0' * 64}"}
    if type_.startswith("aws:"):
        # A resource named by prefix gets its name from AWS, like the name's suffix here.
        named = {} if "name" in inputs else {"name": f"{inputs.get('namePrefix', '')}{name}-sim"}
        return {"arn": f"arn:aws:sim:{region}:123456789012:{name}", **named}
    return {}


# EC2 ids have a shape that the objects naming them are checked against (Karpenter's
# EC2NodeClass takes `subnet-[0-9a-z]+`): the mocks give ids of that shape.
_EC2_ID_PREFIXES = {
    "aws:ec2/subnet:Subnet": "subnet-",
    "aws:ec2/securityGroup:SecurityGroup": "sg-",
}


def _physical_id(type_: str, name: str) -> str:
    prefix = _EC2_ID_PREFIXES.get(type_)
    if prefix is None:
        return f"{name}-id"
    return prefix + hashlib.sha256(name.encode()).hexdigest()[:17]


class PlatformMocks(pulumi.runtime.Mocks):
    def __init__(self, preview: bool) -> None:
        self.preview = preview

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[Any, Any]]:
        # In a preview the cloud has computed nothing yet: leaving the computed outputs
        # out makes the runtime treat them as unknown, as the engine would.
        state = dict(args.inputs)
        if not self.preview:
            state.update(_computed_outputs(args.typ, args.name, args.inputs))
        return _physical_id(args.typ, args.name), state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[Any]]:
        return _INVOKE_RESULTS.get(args.token, {}), []


_INVOKE_RESULTS: dict[str, dict[str, Any]] = {
    "aws:ecr/getAuthorizationToken:getAuthorizationToken": {
        "userName": "AWS",
        "password": "simulated-ecr-token",
        "proxyEndpoint": "",
    },
    "aws:index/getAvailabilityZones:getAvailabilityZones": {
        "names": [f"us-east-1{zone}" for zone in "abcdef"],
        "zoneIds": [f"use1-az{i}" for i in range(1, 7)],
        "id": "us-east-1",
    },
    "aws:index/getCallerIdentity:getCallerIdentity": {
        "accountId": "123456789012",
        "arn": "arn:aws:sts::123456789012:assumed-role/agent-platform-deploy/ci",
    },
    "aws:index/getPartition:getPartition": {
        "partition": "aws",
        "dnsSuffix": "amazonaws.com",
        "id": "aws",
    },
    # The deploying principal: a role assumed by CI, as a real deploy runs.
    "aws:iam/getSessionContext:getSessionContext": {
        "arn": "arn:aws:sts::123456789012:assumed-role/agent-platform-deploy/ci",
        "issuerArn": "arn:aws:iam::123456789012:role/agent-platform-deploy",
        "issuerId": "AROASIMULATED",
        "issuerName": "agent-platform-deploy",
        "sessionName": "ci",
        "id": "arn:aws:sts::123456789012:assumed-role/agent-platform-deploy/ci",
    },
}


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """Keeps each registration's parent and custom flag, which MockMonitor drops."""

    def __init__(self, mocks: pulumi.runtime.Mocks, stack: str) -> None:
        super().__init__(mocks)
        self.stack = stack
        self.registrations: list[SimulatedResource] = []
        self.component_outputs: dict[str, dict[str, Any]] = {}

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        # The base class reads the stack name from a context variable that the
        # monitor's worker threads do not see; the URNs should name the real stack.
        parent_type = parent.split("::")[2] if parent else ""
        # As in the engine, the root stack is not part of its children's type chain.
        if parent_type and parent_type != "pulumi:pulumi:Stack":
            type_ = f"{parent_type}${type_}"
        return f"urn:pulumi:{self.stack}::{PROJECT}::{type_}::{name}"

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                SimulatedResource(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    # The monitor runs on executor threads that do not see the
                    # runtime's dry-run setting; only a preview sends unknowns anyway.
                    inputs=pulumi.runtime.rpc.deserialize_properties(
                        request.object, keep_unknowns=True
                    ),
                    parent_urn=request.parent or None,
                    custom=bool(request.custom),
                    id=response.id,
                    outputs=pulumi.runtime.rpc.deserialize_properties(
                        response.object, keep_unknowns=True
                    ),
                    property_dependencies={
                        key: list(deps.urns) for key, deps in request.propertyDependencies.items()
                    },
                )
            )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        self.component_outputs[request.urn] = pulumi.runtime.rpc.deserialize_properties(
            request.outputs, keep_unknowns=True
        )
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


def stack_file_config(stack: str) -> tuple[dict[str, Any], set[str]]:
    """The stack file's config as Pulumi would pass it: JSON text for structured values."""
    path = REPO_ROOT / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(path.read_text()) or {}
    config = document.get("config") if isinstance(document, dict) else document
    if not isinstance(config or {}, dict):
        raise ConfigError([f"{path.name}: `config` must map each key to its value"])
    raw: dict[str, Any] = {}
    secret_keys: set[str] = set()
    for key, value in (config or {}).items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            if key not in _PLACEHOLDER_SECRETS:
                raise KeyError(f"{path.name}: no placeholder for the secret {key}")
            raw[key] = _PLACEHOLDER_SECRETS[key]
            secret_keys.add(key)
        elif isinstance(value, dict | list):
            raw[key] = json.dumps(value)
        else:
            raw[key] = value if isinstance(value, str) else json.dumps(value)
    for name in SECRET_KEYS:
        key = f"{NAMESPACE}:{name}"
        if key not in raw:
            raw[key] = _PLACEHOLDER_SECRETS[key]
            secret_keys.add(key)
    _place_kubeconfig(raw)
    return raw, secret_keys


def _place_kubeconfig(raw: dict[str, Any]) -> None:
    """A local stack that deploys to a cluster names the kubeconfig only on the machine
    (scripts/pulumi-local adds the local control plane's); a placeholder stands in."""
    key = f"{NAMESPACE}:local"
    local = json.loads(raw[key]) if key in raw else None
    named = isinstance(local, dict) and (
        local.get("kubeconfig") is not None or local.get("kubeconfigContext") is not None
    )
    if isinstance(local, dict) and local.get("target") == "cluster" and not named:
        raw[key] = json.dumps({**local, "kubeconfig": "simulated-kubeconfig"})


def simulate(
    stack: str,
    *,
    overrides: Mapping[str, Any] | None = None,
    secret_overrides: Mapping[str, str] | None = None,
    preview: bool = False,
) -> Simulation:
    """Run the stack's program under mocks and return what it registered and exported.

    `overrides` replaces config keys (full keys, e.g. `agent-platform:canary`) with plain
    values; `secret_overrides` replaces them with values set as secrets.
    """
    from stacks.program import build

    raw, secret_keys = stack_file_config(stack)
    for key, value in (overrides or {}).items():
        if value is None:
            raw.pop(key, None)
            secret_keys.discard(key)
        else:
            raw[key] = value if isinstance(value, str) else json.dumps(value)
            secret_keys.discard(key)
    for key, secret in (secret_overrides or {}).items():
        raw[key] = secret
        secret_keys.add(key)

    config = load_stack_config(raw, secret_keys)
    monitor = _RecordingMonitor(PlatformMocks(preview), stack)
    pulumi.runtime.set_mocks(
        monitor.mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor
    )
    set_all_config({k: str(v) for k, v in raw.items()}, sorted(secret_keys))

    resolved: dict[str, Any] = {}

    async def _resolve_outputs() -> None:
        exports = build(config).as_exports()
        for key, value in exports.items():
            output = pulumi.Output.from_input(value)
            resolved[key] = await output.future(with_unknowns=True)

    pulumi.runtime.settings.SETTINGS.rpc_manager.clear()
    pulumi.runtime.settings.SETTINGS.outputs.clear()
    with program_gc():
        _sync_await(run_pulumi_func(_resolve_outputs))
    return Simulation(
        stack=stack,
        config=config,
        resources=monitor.registrations,
        outputs=resolved,
        component_outputs=monitor.component_outputs,
    )
