"""Network: a VPC over the zones asked for, public and private subnets, NAT."""

from __future__ import annotations

import ipaddress

import pytest
from component_mocks import evaluate, priced_both_ways

from components.network import Network, NetworkArgs

NETWORK = "agent-platform:network:Network"


@pytest.mark.parametrize(("per_az", "nat_gateways"), [(True, 3), (False, 1)])
def test_subnets_in_each_zone_and_nat_per_zone_or_one(per_az: bool, nat_gateways: int) -> None:
    args = NetworkArgs(
        cluster_name="agents-prod",
        cidr=ipaddress.IPv4Network("10.40.0.0/16"),
        availability_zones=3,
        nat_gateway_per_az=per_az,
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
        )
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/24 is too small: use a /20 or larger"):
        NetworkArgs(
            cluster_name="c",
            cidr=ipaddress.IPv4Network("10.0.0.0/24"),
            availability_zones=2,
            nat_gateway_per_az=False,
        )


@pytest.mark.parametrize(("per_az", "nat_gateways"), [(True, 3), (False, 1)])
def test_the_bill_is_one_nat_gateway_per_zone_or_one(per_az: bool, nat_gateways: int) -> None:
    args = NetworkArgs(
        cluster_name="agents-prod",
        cidr=ipaddress.IPv4Network("10.40.0.0/16"),
        availability_zones=3,
        nat_gateway_per_az=per_az,
    )
    network, graph = evaluate(lambda: Network("agents-prod", args))
    declared, registered = priced_both_ways(network.bill, graph)
    assert declared == registered
    nat = [i["item"] for i in declared["items"] if i["item"].startswith("NAT gateway")]
    assert nat == [f"NAT gateway 'agents-prod-nat-{zone}'" for zone in "abc"[:nat_gateways]]
