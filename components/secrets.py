"""The app's secrets as one Kubernetes Secret, fed either directly from Pulumi config
secrets or, in prod, from AWS Secrets Manager through an External Secrets
`ExternalSecret`, so that no secret value appears in any manifest."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Literal, Self

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.core.v1 import Secret, ServiceAccount
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs
from pydantic import Field, model_validator

from components.kube import child_options, labels, secret
from components.values import ArgsModel, InputStr

SECRET_NAME = "agent-secrets"  # noqa: S105 - a name, not a value
REDIS_PASSWORD_KEY = "redis-password"  # noqa: S105 - a key name
LLM_API_KEY_KEY = "llm-api-key"
API_KEYS_KEY = "api-keys-sha256"


class PlatformSecretsArgs(ArgsModel):
    namespace: str
    # Secret key in the Kubernetes Secret -> its value, which must be a Pulumi secret.
    values: Annotated[Mapping[str, pulumi.Output[str]], Field(min_length=1)]
    provider: k8s.Provider
    source: Literal["pulumi", "aws-secrets-manager"]
    # Only for aws-secrets-manager: IRSA lets the store's ServiceAccount read the secrets.
    oidc_provider_arn: InputStr | None = None
    oidc_issuer: InputStr | None = None
    region: str | None = None

    @model_validator(mode="after")
    def _what_the_source_needs(self) -> Self:
        if self.source == "aws-secrets-manager" and not (
            self.oidc_provider_arn and self.oidc_issuer and self.region
        ):
            raise ValueError("aws-secrets-manager needs oidc_provider_arn, oidc_issuer and region")
        return self


class PlatformSecrets(pulumi.ComponentResource):
    secret_name: pulumi.Output[str]
    secret_arns: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: PlatformSecretsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:secrets:PlatformSecrets", name, None, opts)
        self.secret_arns = {}
        if args.source == "pulumi":
            app_secret = Secret(
                f"{name}-app",
                metadata=ObjectMetaArgs(
                    name=SECRET_NAME,
                    namespace=args.namespace,
                    labels=labels(SECRET_NAME, "secrets"),
                ),
                type="Opaque",
                string_data={key: secret(v) for key, v in args.values.items()},
                opts=child_options(self, opts, provider=args.provider),
            )
            self.secret_name = app_secret.metadata.apply(lambda m: m.name or SECRET_NAME)
        else:
            self.secret_name = self._synced_from_secrets_manager(name, args, opts)
        self.register_outputs({"secretName": self.secret_name})

    def _synced_from_secrets_manager(
        self, name: str, args: PlatformSecretsArgs, opts: pulumi.ResourceOptions | None
    ) -> pulumi.Output[str]:
        # Imported here: only prod reads Secrets Manager, and the local stack never
        # imports the AWS SDK (its import is a tenth of a second per run).
        import pulumi_aws as aws

        from components.stack_key import account_key_policy
        from components.workload_identity import WorkloadIdentity, WorkloadIdentityArgs

        assert args.region is not None  # checked by PlatformSecretsArgs
        child = child_options(self, opts)
        key = aws.kms.Key(
            f"{name}-secrets-manager",
            description="Encrypts the agent platform's Secrets Manager secrets",
            enable_key_rotation=True,
            policy=account_key_policy(args.region, cloudwatch_logs=False),
            opts=child,
        )
        remote_names: dict[str, pulumi.Output[str]] = {}
        for secret_key, value in args.values.items():
            remote = aws.secretsmanager.Secret(
                f"{name}-{secret_key}",
                name_prefix=f"agent-platform/{secret_key}-",
                kms_key_id=key.arn,
                recovery_window_in_days=7,
                opts=child,
            )
            aws.secretsmanager.SecretVersion(
                f"{name}-{secret_key}",
                secret_id=remote.id,
                secret_string=secret(value),
                opts=child,
            )
            remote_names[secret_key] = remote.name
            self.secret_arns[secret_key] = remote.arn

        store_account = "external-secrets-reader"
        read_policy = pulumi.Output.all(key.arn, *self.secret_arns.values()).apply(
            lambda arns: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": [
                                "secretsmanager:GetSecretValue",
                                "secretsmanager:DescribeSecret",
                            ],
                            "Resource": list(arns[1:]),
                        },
                        {"Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [arns[0]]},
                    ],
                }
            )
        )
        assert args.oidc_provider_arn is not None
        assert args.oidc_issuer is not None
        reader = WorkloadIdentity(
            f"{name}-reader",
            WorkloadIdentityArgs(
                namespace=args.namespace,
                service_account=store_account,
                oidc_provider_arn=args.oidc_provider_arn,
                oidc_issuer=args.oidc_issuer,
                policy=read_policy,
            ),
            opts=child,
        )

        k8s_opts = child_options(self, opts, provider=args.provider)
        ServiceAccount(
            f"{name}-reader",
            metadata=ObjectMetaArgs(
                name=store_account,
                namespace=args.namespace,
                labels=labels(store_account, "secrets"),
                annotations={"eks.amazonaws.com/role-arn": reader.role_arn},
            ),
            automount_service_account_token=False,
            opts=k8s_opts,
        )
        store = k8s.apiextensions.CustomResource(
            f"{name}-store",
            api_version="external-secrets.io/v1beta1",
            kind="SecretStore",
            metadata={"name": "aws-secrets-manager", "namespace": args.namespace},
            spec={
                "provider": {
                    "aws": {
                        "service": "SecretsManager",
                        "region": args.region,
                        "auth": {"jwt": {"serviceAccountRef": {"name": store_account}}},
                    }
                }
            },
            opts=k8s_opts,
        )
        k8s.apiextensions.CustomResource(
            f"{name}-app",
            api_version="external-secrets.io/v1beta1",
            kind="ExternalSecret",
            metadata={
                "name": SECRET_NAME,
                "namespace": args.namespace,
                "labels": labels(SECRET_NAME, "secrets"),
            },
            spec={
                "refreshInterval": "1h",
                "secretStoreRef": {"name": "aws-secrets-manager", "kind": "SecretStore"},
                "target": {"name": SECRET_NAME, "creationPolicy": "Owner"},
                "data": [
                    {"secretKey": secret_key, "remoteRef": {"key": remote}}
                    for secret_key, remote in remote_names.items()
                ],
            },
            opts=child_options(self, opts, provider=args.provider, depends_on=[store]),
        )
        return pulumi.Output.from_input(SECRET_NAME)
