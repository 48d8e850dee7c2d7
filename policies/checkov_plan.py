"""A stack's AWS resources as the JSON of a Terraform plan, for `checkov --framework
terraform_plan` (policies/checkov_scan.py).

The Pulumi AWS provider is a bridged Terraform provider: each resource type is one of
Terraform's (`aws:ec2/vpc:Vpc` is `aws_vpc`) and its properties are Terraform's
attributes in camelCase, so the conversion is mechanical:

- the type through `TERRAFORM_TYPES` (an unmapped AWS type is an error naming it, so a new
  resource is never silently left out of the scan);
- each property name camelCase -> snake_case, except the few the bridge renamed beyond
  casing (`RENAMED`: a Terraform list block `route` is Pulumi's plural `routes`);
- a nested object (Pulumi flattens a block of at most one item) -> a list of one object,
  as Terraform writes every block; maps (`tags`, `labels`) keep their keys as written;
- numbers the mocks hand over as floats -> integers where whole; secret values -> a
  placeholder (their presence is what a check reads, never their content).

The plan is the one a first `terraform apply` would show: every value the cloud computes
(an id, an ARN, a generated name) is unknown until then. A property whose whole value is
another resource's computed output (that resource being one Pulumi recorded the property
as depending on) is therefore left out of `planned_values` and written as a reference in
`configuration` (`aws_vpc.agents-prod-vpc.id`), which is how checkov
connects resources for its graph checks (a VPC and its flow log, a security group and what
uses it). A computed value inside a longer string (an ARN in a policy document) is kept
as the mocks resolved it, so that the policy's content stays checkable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from stacks.simulate import SECRET_SIG, SimulatedResource

# Pulumi type token -> Terraform resource type, for every AWS type the stacks declare.
TERRAFORM_TYPES: dict[str, str] = {
    "aws:cloudwatch/logGroup:LogGroup": "aws_cloudwatch_log_group",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "aws_default_security_group",
    "aws:ec2/eip:Eip": "aws_eip",
    "aws:ec2/flowLog:FlowLog": "aws_flow_log",
    "aws:ec2/internetGateway:InternetGateway": "aws_internet_gateway",
    "aws:ec2/launchTemplate:LaunchTemplate": "aws_launch_template",
    "aws:ec2/natGateway:NatGateway": "aws_nat_gateway",
    "aws:ec2/routeTable:RouteTable": "aws_route_table",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "aws_route_table_association",
    "aws:ec2/securityGroup:SecurityGroup": "aws_security_group",
    "aws:ec2/subnet:Subnet": "aws_subnet",
    "aws:ec2/vpc:Vpc": "aws_vpc",
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": "aws_ecr_lifecycle_policy",
    "aws:ecr/repository:Repository": "aws_ecr_repository",
    "aws:eks/accessEntry:AccessEntry": "aws_eks_access_entry",
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation": "aws_eks_access_policy_association",
    "aws:eks/addon:Addon": "aws_eks_addon",
    "aws:eks/cluster:Cluster": "aws_eks_cluster",
    "aws:eks/nodeGroup:NodeGroup": "aws_eks_node_group",
    "aws:elasticache/replicationGroup:ReplicationGroup": "aws_elasticache_replication_group",
    "aws:elasticache/subnetGroup:SubnetGroup": "aws_elasticache_subnet_group",
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": "aws_iam_openid_connect_provider",
    "aws:iam/role:Role": "aws_iam_role",
    "aws:iam/rolePolicy:RolePolicy": "aws_iam_role_policy",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": "aws_iam_role_policy_attachment",
    "aws:kms/alias:Alias": "aws_kms_alias",
    "aws:kms/key:Key": "aws_kms_key",
    "aws:secretsmanager/secret:Secret": "aws_secretsmanager_secret",
    "aws:secretsmanager/secretVersion:SecretVersion": "aws_secretsmanager_secret_version",
}

# Properties the bridge named other than by casing: the plural Pulumi gives a Terraform
# list block or attribute with a singular name (the provider's docs list both names).
RENAMED: dict[str, dict[str, str]] = {
    "aws_route_table": {"routes": "route"},
    "aws_ecr_repository": {"encryptionConfigurations": "encryption_configuration"},
    "aws_eks_node_group": {"taints": "taint"},
    "aws_elasticache_replication_group": {
        "logDeliveryConfigurations": "log_delivery_configuration"
    },
    "aws_iam_openid_connect_provider": {"clientIdLists": "client_id_list"},
    "aws_iam_role": {"inlinePolicies": "inline_policy"},
    "aws_secretsmanager_secret": {"replicas": "replica"},
}

# Map-typed properties: their keys are data (tag names, node labels), not attribute names.
MAP_PROPERTIES = frozenset({"tags", "tagsAll", "labels"})

SECRET_PLACEHOLDER = "(secret)"  # noqa: S105 - stands in for one


class PlanConversionError(ValueError):
    pass


def snake_case(name: str) -> str:
    """`enableDnsHostnames` -> `enable_dns_hostnames`, `kmsKeyId` -> `kms_key_id`."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def resource_name(name: str) -> str:
    """A Pulumi name as a Terraform resource name (letters, digits, `_` and `-`, not
    starting with a digit)."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    return cleaned if re.match(r"[A-Za-z_]", cleaned) else f"_{cleaned}"


@dataclass(frozen=True)
class Reference:
    """A value the cloud computes: `address.attribute` of the resource computing it."""

    address: str
    attribute: str

    def references(self) -> list[str]:
        # Terraform lists the attribute reference, then the resource's own.
        return [f"{self.address}.{self.attribute}", self.address]


def _flatten(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(Terraform attribute path, leaf) of every leaf of a wire-form value."""
    if isinstance(value, Mapping) and SECRET_SIG not in value:
        for key, item in value.items():
            yield from _flatten(item, f"{path}.{snake_case(key)}" if path else snake_case(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{path}[{index}]")
    else:
        yield path, value


def _as_block_path(path: str) -> str:
    """`vpc_config.cluster_security_group_id` -> `vpc_config[0].cluster_security_group_id`:
    in Terraform a nested object is a block, a list of one."""
    return re.sub(r"([a-z0-9_])\.", r"\1[0].", path)


def computed_values(resource: SimulatedResource) -> dict[str, Reference]:
    """Each string the cloud computes for an AWS resource (its id, and every output that
    is not one of its inputs) -> the reference naming it."""
    address = f"{TERRAFORM_TYPES[resource.type]}.{resource_name(resource.name)}"
    inputs = dict(_flatten(resource.inputs, ""))
    candidates = [("id", resource.id)]
    candidates += [
        (_as_block_path(path), value)
        for path, value in _flatten(resource.outputs, "")
        if path not in inputs
    ]
    found: dict[str, Reference] = {}
    for attribute, value in candidates:
        if isinstance(value, str) and value:
            found.setdefault(value, Reference(address, attribute))
    return found


def _references_of(
    resource: SimulatedResource, computed: Mapping[str, Mapping[str, Reference]]
) -> dict[str, dict[str, Reference]]:
    """Input property -> the computed values it may hold: those of the resources Pulumi
    says the property's value came from (its property dependencies), so that a value two
    resources happen to share (the mocks' ids follow the names) is never mistaken."""
    found: dict[str, dict[str, Reference]] = {}
    for key, urns in resource.property_dependencies.items():
        values: dict[str, Reference] = {}
        for urn in urns:
            values.update(computed.get(urn, {}))
        if values:
            found[key] = values
    return found


_UNSET = object()


class _Converter:
    def __init__(
        self, terraform_type: str, references: Mapping[str, Mapping[str, Reference]]
    ) -> None:
        self.renamed = RENAMED.get(terraform_type, {})
        self.references = references
        # The computed values of the top-level property being converted.
        self.computed: Mapping[str, Reference] = {}

    def attribute(self, key: str, top_level: bool) -> str:
        if top_level and key in self.renamed:
            return self.renamed[key]
        return snake_case(key)

    def block(
        self, value: Mapping[str, Any], top_level: bool
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(planned values, configuration expressions) of one object."""
        values: dict[str, Any] = {}
        expressions: dict[str, Any] = {}
        for key, item in value.items():
            name = self.attribute(key, top_level)
            if top_level:
                self.computed = self.references.get(key, {})
            if key in MAP_PROPERTIES and isinstance(item, Mapping):
                values[name] = {k: self.scalar(v) for k, v in item.items()}
                continue
            planned, expression = self.value(item)
            if planned is not _UNSET:
                values[name] = planned
            if expression:
                expressions[name] = expression
        return values, expressions

    def value(self, item: Any) -> tuple[Any, Any]:
        """(planned value or _UNSET when unknown before apply, its expression or None)."""
        if isinstance(item, Mapping) and SECRET_SIG not in item:
            values, expressions = self.block(item, top_level=False)
            return [values], [expressions] if expressions else None
        if isinstance(item, list):
            return self.sequence(item)
        if isinstance(item, str) and item in self.computed:
            return _UNSET, {"references": self.computed[item].references()}
        return self.scalar(item), None

    def sequence(self, items: list[Any]) -> tuple[Any, Any]:
        if items and all(isinstance(i, Mapping) and SECRET_SIG not in i for i in items):
            pairs = [self.block(i, top_level=False) for i in items]
            expressions = [e for _, e in pairs]
            return [v for v, _ in pairs], expressions if any(expressions) else None
        references = [self.computed[i] for i in items if isinstance(i, str) and i in self.computed]
        if not references:
            return [self.scalar(i) for i in items], None
        expression = {"references": [r for ref in references for r in ref.references()]}
        if len(references) == len(items):
            return _UNSET, expression
        # Known elements stay; the unknown ones are null, as in a Terraform plan.
        planned = [
            None if isinstance(i, str) and i in self.computed else self.scalar(i) for i in items
        ]
        return planned, expression

    @staticmethod
    def scalar(item: Any) -> Any:
        if isinstance(item, Mapping) and SECRET_SIG in item:
            return SECRET_PLACEHOLDER
        if isinstance(item, float) and item.is_integer():
            return int(item)
        return item


def plan(resources: Iterable[SimulatedResource]) -> dict[str, Any]:
    """The Terraform plan JSON (`planned_values` and `configuration`) of the AWS resources
    among these; other providers' resources are not Terraform's and are left out."""
    aws = [r for r in resources if r.custom and r.type.startswith("aws:")]
    unmapped = sorted({r.type for r in aws if r.type not in TERRAFORM_TYPES})
    if unmapped:
        raise PlanConversionError(
            "no Terraform type for " + ", ".join(unmapped) + ": add it to TERRAFORM_TYPES"
        )
    computed = {r.urn: computed_values(r) for r in aws}
    planned: list[dict[str, Any]] = []
    configured: list[dict[str, Any]] = []
    addresses: dict[str, str] = {}
    for resource in aws:
        terraform_type = TERRAFORM_TYPES[resource.type]
        name = resource_name(resource.name)
        address = f"{terraform_type}.{name}"
        if address in addresses:
            raise PlanConversionError(
                f"{resource.urn} and {addresses[address]} both become {address}"
            )
        addresses[address] = resource.urn
        converter = _Converter(terraform_type, _references_of(resource, computed))
        values, expressions = converter.block(resource.inputs, top_level=True)
        common = {"address": address, "mode": "managed", "type": terraform_type, "name": name}
        planned.append({**common, "values": values})
        configured.append({**common, "expressions": expressions})
    return {
        "format_version": "1.2",
        # checkov takes a JSON file for a plan by this key; no Terraform ever ran.
        "terraform_version": "0.0.0",
        "planned_values": {"root_module": {"resources": planned}},
        "configuration": {"root_module": {"resources": configured}},
    }
