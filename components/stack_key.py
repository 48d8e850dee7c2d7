"""The stack's customer-managed KMS key: what CloudWatch log groups (VPC flow logs,
EKS control-plane logs) and ElastiCache encrypt at rest with, under an explicit key
policy and yearly rotation.

`key_policy` is also the policy of every other key the stack makes (the EKS secrets key,
the Secrets Manager key), so no key falls back to the implicit default policy."""

from __future__ import annotations

import json
from typing import Any

import pulumi

from components.kube import child_options
from components.values import ArgsModel

# Days a deleted key waits before it is gone: the longest AWS allows, so a key deleted
# by mistake can be restored while the data it encrypted is still readable.
DELETION_WINDOW_DAYS = 30


class StackKeyArgs(ArgsModel):
    region: str
    description: str


def key_policy(account_id: str, partition: str, region: str, *, cloudwatch_logs: bool) -> str:
    """An explicit key policy: the account administers and uses the key through IAM (as
    the default policy does, but written down and reviewable), and, where asked, the
    region's CloudWatch Logs may use it for this account's log groups only."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "AccountAdministersThroughIam",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    ]
    if cloudwatch_logs:
        statements.append(
            {
                "Sid": "CloudWatchLogsEncryptsThisAccountsLogGroups",
                "Effect": "Allow",
                "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                "Action": [
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                "Resource": "*",
                "Condition": {
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{partition}:logs:{region}:{account_id}:log-group:*"
                        )
                    }
                },
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def account_key_policy(region: str, *, cloudwatch_logs: bool) -> str:
    """`key_policy` for the account and partition the stack deploys to."""
    import pulumi_aws as aws

    account = aws.get_caller_identity().account_id
    partition = aws.get_partition().partition
    return key_policy(account, partition, region, cloudwatch_logs=cloudwatch_logs)


class StackKey(pulumi.ComponentResource):
    key_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: StackKeyArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:kms:StackKey", name, None, opts)
        # Imported here: the local stack never imports the AWS SDK.
        import pulumi_aws as aws

        child = child_options(self, opts)
        key = aws.kms.Key(
            name,
            description=args.description,
            enable_key_rotation=True,
            deletion_window_in_days=DELETION_WINDOW_DAYS,
            policy=account_key_policy(args.region, cloudwatch_logs=True),
            opts=child,
        )
        aws.kms.Alias(name, name=f"alias/{name}", target_key_id=key.key_id, opts=child)
        self.key_arn = key.arn
        self.register_outputs({"keyArn": self.key_arn})
