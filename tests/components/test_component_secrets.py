"""PlatformSecrets: one Kubernetes Secret from Pulumi secrets, or synced from Secrets
Manager by External Secrets so that no value is in any manifest."""

from __future__ import annotations

import json

import pulumi
import pytest
from component_mocks import evaluate, provider
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

from components.secrets import SECRET_NAME, PlatformSecrets, PlatformSecretsArgs

SECRETS = "agent-platform:secrets:PlatformSecrets"


def _values() -> dict[str, pulumi.Output[str]]:
    return {
        "redis-password": pulumi.Output.secret("a-long-enough-redis-password"),
        "llm-api-key": pulumi.Output.secret("in-cluster"),
    }


def test_from_pulumi_one_opaque_secret_whose_values_stay_secret() -> None:
    def program() -> PlatformSecrets:
        return PlatformSecrets(
            "app-secrets",
            PlatformSecretsArgs(
                namespace="agents", values=_values(), provider=provider(), source="pulumi"
            ),
        )

    _, graph = evaluate(program)
    component = graph.component(SECRETS)
    assert graph.kinds(component) == [("kubernetes:core/v1:Secret", "app-secrets-app")]
    secret = graph.named("kubernetes:core/v1:Secret", "app-secrets-app").inputs
    assert secret["type"] == "Opaque"
    assert is_rpc_secret(secret["stringData"])
    assert unwrap_rpc_secret(secret["stringData"]) == {
        "redis-password": "a-long-enough-redis-password",
        "llm-api-key": "in-cluster",
    }
    assert graph.outputs_of(component) == {"secretName": SECRET_NAME}


def test_from_secrets_manager_the_manifests_name_the_remote_secrets_only() -> None:
    def program() -> PlatformSecrets:
        return PlatformSecrets(
            "app-secrets",
            PlatformSecretsArgs(
                namespace="agents",
                values=_values(),
                provider=provider(),
                source="aws-secrets-manager",
                oidc_provider_arn="arn:aws:iam::123456789012:oidc-provider/sim",
                oidc_issuer="https://oidc.eks.us-east-1.amazonaws.com/id/SIM",
                region="us-east-1",
            ),
        )

    _, graph = evaluate(program)
    component = graph.component(SECRETS)
    kinds = [t for t, _ in graph.kinds(component)]
    assert kinds.count("aws:secretsmanager/secret:Secret") == 2
    assert "kubernetes:core/v1:Secret" not in kinds
    external = graph.named(
        "kubernetes:external-secrets.io/v1beta1:ExternalSecret", "app-secrets-app"
    )
    assert external.inputs["spec"]["target"] == {"name": SECRET_NAME, "creationPolicy": "Owner"}
    assert [d["secretKey"] for d in external.inputs["spec"]["data"]] == [
        "redis-password",
        "llm-api-key",
    ]
    account = graph.named("kubernetes:core/v1:ServiceAccount", "app-secrets-reader").inputs
    assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]
    reader = graph.named("aws:iam/rolePolicy:RolePolicy", "app-secrets-reader-policy").inputs
    statements = json.loads(reader["policy"])["Statement"]
    assert statements[0]["Action"] == [
        "secretsmanager:GetSecretValue",
        "secretsmanager:DescribeSecret",
    ]
    assert graph.outputs_of(component) == {"secretName": SECRET_NAME}


def test_the_args_refuse_no_secrets_and_an_incomplete_secrets_manager_source() -> None:
    k8s_provider, _ = evaluate(provider)
    with pytest.raises(ValueError, match=r"values\n  Dictionary should have at least 1 item"):
        PlatformSecretsArgs(namespace="agents", values={}, provider=k8s_provider, source="pulumi")
    with pytest.raises(ValueError, match="aws-secrets-manager needs oidc_provider_arn"):
        PlatformSecretsArgs(
            namespace="agents",
            values=_values(),
            provider=k8s_provider,
            source="aws-secrets-manager",
            region="us-east-1",
        )
