"""The AWS network an EKS cluster lives in: a VPC over several AZs with public and
private subnets, and NAT for the private ones."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Annotated

import pulumi
from pydantic import AfterValidator, Field

from components.billing import Billable, NatGateway
from components.kube import child_options
from components.values import ArgsModel

if TYPE_CHECKING:
    import pulumi_aws as aws


def _room_for_subnets(value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    if value.prefixlen > 20:
        raise ValueError(f"{value} is too small: use a /20 or larger for per-AZ subnets")
    return value


VpcCidr = Annotated[ipaddress.IPv4Network, AfterValidator(_room_for_subnets)]
# EKS needs subnets in two zones at least.
ZoneCount = Annotated[int, Field(ge=2, le=6, strict=True)]


class NetworkArgs(ArgsModel):
    cluster_name: str
    cidr: VpcCidr
    availability_zones: ZoneCount
    # One NAT gateway per AZ keeps an AZ outage from cutting the others off; a single
    # one is cheaper and enough outside prod.
    nat_gateway_per_az: bool


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    availability_zones: list[str]
    # What the NAT gateways are billed by.
    bill: list[Billable]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:network:Network", name, None, opts)
        # Imported here: the stack config reads this module's models in every stack,
        # and the local stack never imports the AWS SDK (a tenth of a second per run).
        import pulumi_aws as aws

        child = child_options(self, opts)
        zones = aws.get_availability_zones(
            state="available", opts=pulumi.InvokeOptions(parent=self)
        )
        if len(zones.names) < args.availability_zones:
            raise ValueError(
                f"the region has {len(zones.names)} available zones; "
                f"{args.availability_zones} were asked for"
            )
        self.availability_zones = list(zones.names[: args.availability_zones])
        shared_tag = {f"kubernetes.io/cluster/{args.cluster_name}": "shared"}

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=str(args.cidr),
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{name}-vpc", **shared_tag},
            opts=child,
        )
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags={"Name": f"{name}-igw"}, opts=child
        )
        public_routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
            tags={"Name": f"{name}-public"},
            opts=child,
        )

        # /20s: the first block of AZs is public, the second private, leaving room to grow.
        blocks = list(args.cidr.subnets(new_prefix=args.cidr.prefixlen + 4))
        public: list[aws.ec2.Subnet] = []
        private: list[aws.ec2.Subnet] = []
        nat_gateways: list[aws.ec2.NatGateway] = []
        self.bill = []
        for index, zone in enumerate(self.availability_zones):
            suffix = zone[-1]
            subnet = self._subnet(
                f"{name}-public-{suffix}",
                vpc.id,
                zone,
                blocks[index],
                {"kubernetes.io/role/elb": "1", **shared_tag},
                public_routes.id,
                child,
                map_public_ip_on_launch=False,
            )
            public.append(subnet)
            if args.nat_gateway_per_az or index == 0:
                eip = aws.ec2.Eip(
                    f"{name}-nat-{suffix}",
                    domain="vpc",
                    tags={"Name": f"{name}-nat-{suffix}"},
                    opts=child,
                )
                nat_gateways.append(
                    aws.ec2.NatGateway(
                        f"{name}-nat-{suffix}",
                        allocation_id=eip.id,
                        subnet_id=subnet.id,
                        tags={"Name": f"{name}-nat-{suffix}"},
                        opts=child_options(self, opts, depends_on=[igw]),
                    )
                )
                self.bill.append(NatGateway(name=f"{name}-nat-{suffix}"))

        for index, zone in enumerate(self.availability_zones):
            suffix = zone[-1]
            nat = nat_gateways[index if args.nat_gateway_per_az else 0]
            routes = aws.ec2.RouteTable(
                f"{name}-private-{suffix}",
                vpc_id=vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
                tags={"Name": f"{name}-private-{suffix}"},
                opts=child,
            )
            subnet = self._subnet(
                f"{name}-private-{suffix}",
                vpc.id,
                zone,
                blocks[len(self.availability_zones) + index],
                {"kubernetes.io/role/internal-elb": "1", **shared_tag},
                routes.id,
                child,
            )
            private.append(subnet)

        self.vpc_id = vpc.id
        self.public_subnet_ids = [s.id for s in public]
        self.private_subnet_ids = [s.id for s in private]
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
            }
        )

    @staticmethod
    def _subnet(
        name: str,
        vpc_id: pulumi.Input[str],
        zone: str,
        cidr: ipaddress.IPv4Network,
        tags: dict[str, str],
        route_table_id: pulumi.Input[str],
        opts: pulumi.ResourceOptions,
        map_public_ip_on_launch: bool | None = None,
    ) -> aws.ec2.Subnet:
        """A subnet in one zone and its route table association."""
        import pulumi_aws as aws

        subnet = aws.ec2.Subnet(
            name,
            vpc_id=vpc_id,
            availability_zone=zone,
            cidr_block=str(cidr),
            tags={"Name": name, **tags},
            map_public_ip_on_launch=map_public_ip_on_launch,
            opts=opts,
        )
        aws.ec2.RouteTableAssociation(
            name, subnet_id=subnet.id, route_table_id=route_table_id, opts=opts
        )
        return subnet
