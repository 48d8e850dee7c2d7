"""The launch template every managed node group starts its nodes from: IMDSv2 only, with
a hop limit of 1 so that pods (one hop further) cannot reach the instance metadata
service and the node role's credentials, and an encrypted root volume.

The template names no AMI: EKS fills in the node group's `amiType` and its bootstrap."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi

if TYPE_CHECKING:
    import pulumi_aws as aws

# The root volume managed node groups get without a template: the same size, now
# encrypted. Node root volumes are not in the cost model (it says so).
ROOT_VOLUME_GIB = 20
# The AL2023 AMIs' root device.
ROOT_DEVICE = "/dev/xvda"


def hardened_launch_template(
    name: str, opts: pulumi.ResourceOptions
) -> aws.eks.NodeGroupLaunchTemplateArgs:
    """Create the template; returns the node group's `launch_template` reference."""
    # Imported here: the local stack never imports the AWS SDK.
    import pulumi_aws as aws

    template = aws.ec2.LaunchTemplate(
        name,
        name_prefix=f"{name}-",
        description="EKS nodes: IMDSv2 only, hop limit 1, encrypted root volume",
        metadata_options={
            "http_endpoint": "enabled",
            "http_tokens": "required",
            "http_put_response_hop_limit": 1,
        },
        block_device_mappings=[
            {
                "device_name": ROOT_DEVICE,
                "ebs": {
                    "volume_size": ROOT_VOLUME_GIB,
                    "volume_type": "gp3",
                    # The account's aws/ebs key: a customer-managed one would need a key
                    # policy for the Auto Scaling service-linked role.
                    "encrypted": "true",
                    "delete_on_termination": "true",
                },
            }
        ],
        # A new version for each change; the node group rolls its nodes onto it.
        update_default_version=True,
        opts=opts,
    )
    return aws.eks.NodeGroupLaunchTemplateArgs(
        id=template.id, version=template.latest_version.apply(str)
    )
