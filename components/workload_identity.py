"""IAM roles for Kubernetes ServiceAccounts (IRSA): a role only the named account in the
named namespace can assume, through the cluster's OIDC provider."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from components.kube import child_options
from components.values import ArgsModel, InputStr


class WorkloadIdentityArgs(ArgsModel):
    namespace: str
    service_account: str
    oidc_provider_arn: InputStr
    oidc_issuer: InputStr
    # An IAM policy document (JSON) granting what the workload may do; None for none yet.
    policy: InputStr | None = None


class WorkloadIdentity(pulumi.ComponentResource):
    role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: WorkloadIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:identity:WorkloadIdentity", name, None, opts)
        subject = f"system:serviceaccount:{args.namespace}:{args.service_account}"
        trust = pulumi.Output.all(args.oidc_provider_arn, args.oidc_issuer).apply(
            lambda v: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Federated": v[0]},
                            "Action": "sts:AssumeRoleWithWebIdentity",
                            "Condition": {
                                "StringEquals": {
                                    f"{v[1].removeprefix('https://')}:sub": subject,
                                    f"{v[1].removeprefix('https://')}:aud": "sts.amazonaws.com",
                                }
                            },
                        }
                    ],
                }
            )
        )
        child = child_options(self, opts)
        role = aws.iam.Role(f"{name}-role", assume_role_policy=trust, opts=child)
        if args.policy is not None:
            aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=args.policy, opts=child)
        self.role_arn = role.arn
        self.register_outputs({"roleArn": self.role_arn})
