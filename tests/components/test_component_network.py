"""Network: a VPC over the zones asked for, public and private subnets, NAT, flow logs
to an encrypted log group and a default security group with no rules."""

from __future__ import annotations

import ipaddress
import json

import pytest
from component_mocks import evaluate, priced_both_ways

from components.network import Network, NetworkArgs

NETWORK = "agent-platform:network:Network"
KEY = "arn:aws:kms:us-east-1:123456789012:key/stack"


@pytest.mark.parametrize(("per_az", "nat_gateways"), [(True, 3), (False, 1)])
def test_subnets_in_each_zone_and_nat_per_zone_or_one(per_az: bool, nat_gateways: int) -> None:
    args = NetworkArgs(
        cluster_name="agents-prod",
        cidr=ipaddress.IPv4Network("10.40.0.0/16"),
        availability_zones=3,
        nat_gateway_per_az=per_az,
        logs_key_arn=KEY,
        log_retention_days=30,
    )
    network, graph = evaluate(lambda: Network("agents-prod", args))
    component = graph.component(NETWORK)
    children = graph.children(component)
    types = [r.type for r in children]
    assert types.count("aws:ec2/subnet:Subnet") == 6
    assert types.count("aws:ec2/natGateway:NatGateway") == nat_gateways
    assert network.availability_zones == ["us-east-1a", "us-east-1b", "us-east-1c"]
    subnets = {r.name: r.inputs for r in children if r.type == "aws:ec2/subnet:Subnet"}
    # The first block of zones is public, the next private: /20s of the /16.
    assert subnets["agents-prod-public-a"]["cidrBlock"] == "10.40.0.0/20"
    assert subnets["agents-prod-private-a"]["cidrBlock"] == "10.40.48.0/20"
    assert subnets["agents-prod-private-c"]["tags"]["kubernetes.io/role/internal-elb"] == "1"
    assert subnets["agents-prod-public-b"]["mapPublicIpOnLaunch"] is False
    outputs = graph.outputs_of(component)
    assert len(outputs["privateSubnetIds"]) == len(outputs["publicSubnetIds"]) == 3


def test_the_network_refuses_too_few_zones_or_too_small_a_cidr() -> None:
    with pytest.raises(ValueError, match=r"availability_zones\n  Input should be greater"):
        NetworkArgs(
            cluster_name="c",
            cidr=ipaddress.IPv4Network("10.0.0.0/16"),
            availability_zones=1,
            nat_gateway_per_az=False,
            logs_key_arn=KEY,
            log_retention_days=30,
        )
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/24 is too small: use a /20 or larger"):
        NetworkArgs(
            cluster_name="c",
            cidr=ipaddress.IPv4Network("10.0.0.0/24"),
            availability_zones=2,
            nat_gateway_per_az=False,
            logs_key_arn=KEY,
            log_retention_days=30,
        )


@pytest.mark.parametrize(("per_az", "nat_gateways"), [(True, 3), (False, 1)])
def test_the_bill_is_one_nat_gateway_per_zone_or_one(per_az: bool, nat_gateways: int) -> None:
    args = NetworkArgs(
        cluster_name="agents-prod",
        cidr=ipaddress.IPv4Network("10.40.0.0/16"),
        availability_zones=3,
        nat_gateway_per_az=per_az,
        logs_key_arn=KEY,
        log_retention_days=30,
    )
    network, graph = evaluate(lambda: Network("agents-prod", args))
    declared, registered = priced_both_ways(network.bill, graph)
    assert declared == registered
    nat = [i["item"] for i in declared["items"] if i["item"].startswith("NAT gateway")]
    assert nat == [f"NAT gateway 'agents-prod-nat-{zone}'" for zone in "abc"[:nat_gateways]]


def test_flow_logs_go_to_an_encrypted_log_group_that_only_their_role_writes() -> None:
    args = NetworkArgs(
        cluster_name="agents-dev",
        cidr=ipaddress.IPv4Network("10.40.0.0/16"),
        availability_zones=2,
        nat_gateway_per_az=False,
        logs_key_arn=KEY,
        log_retention_days=14,
    )
    _, graph = evaluate(lambda: Network("agents-dev", args))
    (flow,) = graph.of_type("aws:ec2/flowLog:FlowLog")
    assert flow.inputs["vpcId"] == "agents-dev-vpc-id"
    assert flow.inputs["trafficType"] == "ALL"
    assert flow.inputs["logDestinationType"] == "cloud-watch-logs"
    group = graph.named("aws:cloudwatch/logGroup:LogGroup", "agents-dev-flow-logs").inputs
    assert (
        flow.inputs["logDestination"] == "arn:aws:sim:us-east-1:123456789012:agents-dev-flow-logs"
    )
    assert group["kmsKeyId"] == KEY
    assert group["retentionInDays"] == 14
    role = graph.named("aws:iam/role:Role", "agents-dev-flow-logs").inputs
    trust = json.loads(role["assumeRolePolicy"])["Statement"]
    assert trust == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}},
        }
    ]
    policy = graph.named("aws:iam/rolePolicy:RolePolicy", "agents-dev-flow-logs").inputs
    [statement] = json.loads(policy["policy"])["Statement"]
    assert statement["Resource"] == [
        "arn:aws:sim:us-east-1:123456789012:agents-dev-flow-logs",
        "arn:aws:sim:us-east-1:123456789012:agents-dev-flow-logs:*",
    ]


def test_the_default_security_group_is_stripped_of_every_rule() -> None:
    args = NetworkArgs(
        cluster_name="agents-dev",
        cidr=ipaddress.IPv4Network("10.40.0.0/16"),
        availability_zones=2,
        nat_gateway_per_az=False,
        logs_key_arn=KEY,
        log_retention_days=14,
    )
    _, graph = evaluate(lambda: Network("agents-dev", args))
    (default,) = graph.of_type("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert default.inputs["vpcId"] == "agents-dev-vpc-id"
    assert default.inputs["ingress"] == []
    assert default.inputs["egress"] == []


def test_the_network_needs_a_key_and_a_retention_for_its_flow_logs() -> None:
    with pytest.raises(ValueError, match=r"logsKeyArn\n  Field required") as caught:
        NetworkArgs.model_validate(
            {
                "cluster_name": "c",
                "cidr": ipaddress.IPv4Network("10.0.0.0/16"),
                "availability_zones": 2,
                "nat_gateway_per_az": False,
            }
        )
    assert "logRetentionDays\n  Field required" in str(caught.value)
