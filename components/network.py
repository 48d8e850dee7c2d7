"""The AWS network an EKS cluster lives in: a VPC over several AZs with public and
private subnets, NAT for the private ones, flow logs to a KMS-encrypted CloudWatch log
group, and the VPC's default security group stripped of every rule."""

from __future__ import annotations

import ipaddress
import json
from typing import TYPE_CHECKING, Annotated

import pulumi
from pydantic import AfterValidator, Field

from components.billing import Billable, NatGateway
from components.kube import child_options
from components.values import ArgsModel, Cidr, InputStr, PositiveInt

if TYPE_CHECKING:
    import pulumi_aws as aws


def _room_for_subnets(value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    if value.prefixlen > 20:
        raise ValueError(f"{value} is too small: use a /20 or larger for per-AZ subnets")
    return value


VpcCidr = Annotated[Cidr, AfterValidator(_room_for_subnets)]
# EKS needs subnets in two zones at least.
ZoneCount = Annotated[int, Field(ge=2, le=6, strict=True)]


class NetworkArgs(ArgsModel):
    cluster_name: str
    cidr: VpcCidr
    availability_zones: ZoneCount
    # One NAT gateway per AZ keeps an AZ outage from cutting the others off; a single
    # one is cheaper and enough outside prod.
    nat_gateway_per_az: bool
    # The stack's KMS key, which the flow log group is encrypted with, and how long
    # the group keeps flow records.
    logs_key_arn: InputStr
    log_retention_days: PositiveInt


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    availability_zones: list[str]
    # What the NAT gateways are billed by. The flow logs' CloudWatch ingestion is
    # billed too; the cost model lists CloudWatch logs as not priced.
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

        self._flow_logs(name, vpc.id, args, child)
        # Nothing uses the VPC's default security group (EKS, ElastiCache and the load
        # balancers get their own); with no rules, anything put in it by mistake is cut
        # off instead of talking to everything else in it.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default",
            vpc_id=vpc.id,
            ingress=[],
            egress=[],
            tags={"Name": f"{name}-default (no rules)"},
            opts=child,
        )

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

    def _flow_logs(
        self,
        name: str,
        vpc_id: pulumi.Output[str],
        args: NetworkArgs,
        child: pulumi.ResourceOptions,
    ) -> None:
        """Every accepted and rejected flow of the VPC, to a log group of its own."""
        import pulumi_aws as aws

        group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=f"/agent-platform/{name}/vpc-flow-logs",
            kms_key_id=args.logs_key_arn,
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        account = aws.get_caller_identity(opts=pulumi.InvokeOptions(parent=self)).account_id
        role = aws.iam.Role(
            f"{name}-flow-logs",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                            # Only for this account's flow logs (no confused deputy).
                            "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                        }
                    ],
                }
            ),
            opts=child,
        )
        # Writes to this group's streams only.
        aws.iam.RolePolicy(
            f"{name}-flow-logs",
            role=role.id,
            policy=group.arn.apply(
                lambda arn: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": [
                                    "logs:CreateLogStream",
                                    "logs:PutLogEvents",
                                    "logs:DescribeLogGroups",
                                    "logs:DescribeLogStreams",
                                ],
                                "Resource": [arn, f"{arn}:*"],
                            }
                        ],
                    }
                )
            ),
            opts=child,
        )
        aws.ec2.FlowLog(
            f"{name}-flow-logs",
            vpc_id=vpc_id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            # Ten minutes, the default: a tenth of the records of one-minute windows.
            max_aggregation_interval=600,
            tags={"Name": f"{name}-flow-logs"},
            opts=child,
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
