"""The AWS resources as a Terraform plan for checkov (policies/checkov_plan.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policies.checkov_plan import (
    SECRET_PLACEHOLDER,
    PlanConversionError,
    plan,
    resource_name,
    snake_case,
)
from stacks.simulate import SECRET_SIG, SimulatedResource, Simulation, simulate

EIP = "aws:ec2/eip:Eip"
NAT = "aws:ec2/natGateway:NatGateway"


def _resource(
    type_: str,
    name: str,
    inputs: dict[str, Any],
    *,
    computed: dict[str, Any] | None = None,
    depends: dict[str, list[str]] | None = None,
) -> SimulatedResource:
    """A resource as the mocks record it: id `<name>-id`, state = inputs + computed."""
    return SimulatedResource(
        urn=f"urn:pulumi:test::agent-platform::{type_}::{name}",
        type=type_,
        name=name,
        inputs=inputs,
        parent_urn=None,
        custom=True,
        id=f"{name}-id",
        outputs={**inputs, **(computed or {})},
        property_dependencies=depends or {},
    )


def _urn(type_: str, name: str) -> str:
    return f"urn:pulumi:test::agent-platform::{type_}::{name}"


def _planned(document: dict[str, Any], address: str) -> dict[str, Any]:
    for resource in document["planned_values"]["root_module"]["resources"]:
        if resource["address"] == address:
            values: dict[str, Any] = resource["values"]
            return values
    raise KeyError(address)


def _expressions(document: dict[str, Any], address: str) -> dict[str, Any]:
    for resource in document["configuration"]["root_module"]["resources"]:
        if resource["address"] == address:
            expressions: dict[str, Any] = resource["expressions"]
            return expressions
    raise KeyError(address)


@pytest.mark.parametrize(
    ("pulumi", "terraform"),
    [
        ("enableDnsHostnames", "enable_dns_hostnames"),
        ("kmsKeyId", "kms_key_id"),
        ("httpPutResponseHopLimit", "http_put_response_hop_limit"),
        ("cidrBlock", "cidr_block"),
        ("ipv6CidrBlock", "ipv6_cidr_block"),
        ("name", "name"),
    ],
)
def test_property_names_are_terraforms_in_snake_case(pulumi: str, terraform: str) -> None:
    assert snake_case(pulumi) == terraform


def test_resource_names_are_valid_terraform_names() -> None:
    assert resource_name("agents-prod-vpc") == "agents-prod-vpc"
    assert resource_name("gpu/pool.a") == "gpu_pool_a"
    assert resource_name("1st") == "_1st"


def test_values_take_terraforms_shapes() -> None:
    template = _resource(
        "aws:ec2/launchTemplate:LaunchTemplate",
        "nodes",
        {
            "metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1.0},
            "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true"}}],
            "tagSpecifications": [{"resourceType": "instance", "tags": {"Name": "x"}}],
            "tags": {"kubernetes.io/cluster/agents-dev": "owned", "teamName": "ml"},
        },
    )
    values = _planned(plan([template]), "aws_launch_template.nodes")
    # A nested object is a block: a list of one; whole numbers are integers.
    assert values["metadata_options"] == [
        {"http_tokens": "required", "http_put_response_hop_limit": 1}
    ]
    assert type(values["metadata_options"][0]["http_put_response_hop_limit"]) is int
    assert values["block_device_mappings"] == [
        {"device_name": "/dev/xvda", "ebs": [{"encrypted": "true"}]}
    ]
    # Maps keep their keys as written, at any depth.
    assert values["tags"] == {"kubernetes.io/cluster/agents-dev": "owned", "teamName": "ml"}
    assert values["tag_specifications"][0]["tags"] == {"Name": "x"}


def test_properties_the_bridge_pluralised_get_terraforms_names() -> None:
    table = _resource(
        "aws:ec2/routeTable:RouteTable", "public", {"routes": [{"cidrBlock": "0.0.0.0/0"}]}
    )
    provider = _resource(
        "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
        "oidc",
        {"clientIdLists": ["sts.amazonaws.com"], "url": "https://oidc"},
    )
    document = plan([table, provider])
    assert _planned(document, "aws_route_table.public")["route"] == [{"cidr_block": "0.0.0.0/0"}]
    assert _planned(document, "aws_iam_openid_connect_provider.oidc")["client_id_list"] == [
        "sts.amazonaws.com"
    ]


def test_a_secret_is_present_but_never_written() -> None:
    group = _resource(
        "aws:elasticache/replicationGroup:ReplicationGroup",
        "queue",
        {"authToken": {SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270", "value": "hunter2-hunter2"}},
    )
    document = plan([group])
    assert _planned(document, "aws_elasticache_replication_group.queue")["auth_token"] == (
        SECRET_PLACEHOLDER
    )
    assert "hunter2" not in json.dumps(document)


def test_a_value_another_resource_computes_is_a_reference_not_a_value() -> None:
    # The EIP and the NAT gateway share a name, so the mocks give them the same id: only
    # the property's dependency says which one the allocation id came from.
    eip = _resource(EIP, "nat-a", {"domain": "vpc"})
    nat = _resource(
        NAT,
        "nat-a",
        {"allocationId": "nat-a-id", "subnetId": "subnet-1", "tags": {"Name": "nat-a"}},
        depends={"allocationId": [_urn(EIP, "nat-a")], "tags": []},
    )
    document = plan([eip, nat])
    values = _planned(document, "aws_nat_gateway.nat-a")
    # Unknown until the EIP exists, as in a first `terraform plan`.
    assert "allocation_id" not in values
    assert values["subnet_id"] == "subnet-1"  # no dependency: a known value
    assert _expressions(document, "aws_nat_gateway.nat-a") == {
        "allocation_id": {"references": ["aws_eip.nat-a.id", "aws_eip.nat-a"]}
    }


def test_references_inside_blocks_and_lists() -> None:
    cluster = _resource(
        "aws:eks/cluster:Cluster",
        "agents-dev",
        {"name": "agents-dev", "vpcConfig": {"subnetIds": ["subnet-1"]}},
        computed={"vpcConfig": {"subnetIds": ["subnet-1"], "clusterSecurityGroupId": "sg-c"}},
    )
    subnet = _resource("aws:ec2/subnet:Subnet", "a", {"cidrBlock": "10.0.0.0/20"})
    group = _resource(
        "aws:ec2/securityGroup:SecurityGroup",
        "queue",
        {"ingress": [{"fromPort": 6379.0, "securityGroups": ["sg-c", "sg-known"]}]},
        depends={"ingress": [_urn("aws:eks/cluster:Cluster", "agents-dev")]},
    )
    groups = _resource(
        "aws:elasticache/subnetGroup:SubnetGroup",
        "queue",
        {"subnetIds": ["a-id"]},
        depends={"subnetIds": [_urn("aws:ec2/subnet:Subnet", "a")]},
    )
    document = plan([cluster, subnet, group, groups])
    # A computed output nested in a block is referenced by its block path.
    assert _planned(document, "aws_security_group.queue")["ingress"] == [
        {"from_port": 6379, "security_groups": [None, "sg-known"]}
    ]
    assert _expressions(document, "aws_security_group.queue") == {
        "ingress": [
            {
                "security_groups": {
                    "references": [
                        "aws_eks_cluster.agents-dev.vpc_config[0].cluster_security_group_id",
                        "aws_eks_cluster.agents-dev",
                    ]
                }
            }
        ]
    }
    # A list wholly of references is unknown as a whole.
    assert "subnet_ids" not in _planned(document, "aws_elasticache_subnet_group.queue")
    assert _expressions(document, "aws_elasticache_subnet_group.queue")["subnet_ids"] == {
        "references": ["aws_subnet.a.id", "aws_subnet.a"]
    }


def test_an_unmapped_aws_type_is_an_error_naming_it() -> None:
    queue = _resource("aws:sqs/queue:Queue", "tasks", {})
    with pytest.raises(PlanConversionError, match=r"no Terraform type for aws:sqs/queue:Queue"):
        plan([queue])


def test_only_aws_resources_are_terraforms() -> None:
    deployment = _resource("kubernetes:apps/v1:Deployment", "api", {"kind": "Deployment"})
    image = _resource("docker:index/image:Image", "app", {})
    assert plan([deployment, image])["planned_values"]["root_module"]["resources"] == []


@pytest.fixture(scope="module")
def prod() -> Simulation:
    return simulate("prod")


def test_prod_plan_has_what_checkovs_aws_checks_read(prod: Simulation) -> None:
    document = plan(prod.resources)
    aws = [r for r in prod.resources if r.custom and r.type.startswith("aws:")]
    assert len(document["planned_values"]["root_module"]["resources"]) == len(aws)
    cluster = _planned(document, "aws_eks_cluster.agents-prod")
    # CKV_AWS_58 (secrets encryption), CKV_AWS_37 (logging), CKV_AWS_39 (private endpoint).
    assert cluster["encryption_config"][0]["resources"] == ["secrets"]
    assert {"api", "audit", "authenticator"} <= set(cluster["enabled_cluster_log_types"])
    assert cluster["vpc_config"][0]["endpoint_public_access"] is False
    # CKV_AWS_79 (IMDSv2) on the launch template the node groups start from.
    template = _planned(document, "aws_launch_template.agents-prod-system")
    assert template["metadata_options"][0]["http_tokens"] == "required"
    # CKV_AWS_29/30/31 (ElastiCache at rest, in transit, auth token).
    queue = _planned(document, "aws_elasticache_replication_group.queue-rg")
    assert queue["at_rest_encryption_enabled"] is True
    assert queue["transit_encryption_enabled"] is True
    assert queue["auth_token"] == SECRET_PLACEHOLDER
    # CKV_AWS_7 (KMS rotation) and CKV_AWS_158 (log groups under KMS).
    assert _planned(document, "aws_kms_key.agents-prod")["enable_key_rotation"] is True
    # (The key is created with the group: its ARN is a reference, which checkov reads as set.)
    flow_logs = _expressions(document, "aws_cloudwatch_log_group.agents-prod-flow-logs")
    assert flow_logs["kms_key_id"] == {
        "references": ["aws_kms_key.agents-prod.arn", "aws_kms_key.agents-prod"]
    }


def test_prod_plan_connects_what_checkovs_graph_checks_connect(prod: Simulation) -> None:
    document = plan(prod.resources)
    # CKV2_AWS_11 (a VPC has flow logs), CKV2_AWS_12 (its default security group),
    # CKV2_AWS_19 (EIPs are NAT gateways').
    vpc = ["aws_vpc.agents-prod-vpc.id", "aws_vpc.agents-prod-vpc"]
    flow_log = _expressions(document, "aws_flow_log.agents-prod-flow-logs")
    assert flow_log["vpc_id"] == {"references": vpc}
    default_group = _expressions(document, "aws_default_security_group.agents-prod-default")
    assert default_group["vpc_id"] == {"references": vpc}
    nat = _expressions(document, "aws_nat_gateway.agents-prod-nat-a")
    assert nat["allocation_id"]["references"][1] == "aws_eip.agents-prod-nat-a"
