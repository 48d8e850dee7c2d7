"""WorkloadIdentity: an IAM role only one ServiceAccount can assume, through IRSA."""

from __future__ import annotations

import json

import pytest
from component_mocks import evaluate

from components.workload_identity import WorkloadIdentity, WorkloadIdentityArgs

IDENTITY = "agent-platform:identity:WorkloadIdentity"
ISSUER = "https://oidc.eks.us-east-1.amazonaws.com/id/SIM"


@pytest.mark.parametrize("policy", [None, '{"Version": "2012-10-17", "Statement": []}'])
def test_the_role_trusts_one_service_account_of_one_namespace(policy: str | None) -> None:
    args = WorkloadIdentityArgs(
        namespace="agents",
        service_account="agent",
        oidc_provider_arn="arn:aws:iam::123456789012:oidc-provider/sim",
        oidc_issuer=ISSUER,
        policy=policy,
    )
    _, graph = evaluate(lambda: WorkloadIdentity("agent-identity", args))
    component = graph.component(IDENTITY)
    expected = [("aws:iam/role:Role", "agent-identity-role")]
    if policy is not None:
        expected.append(("aws:iam/rolePolicy:RolePolicy", "agent-identity-policy"))
    assert graph.kinds(component) == expected
    role = graph.named("aws:iam/role:Role", "agent-identity-role")
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Federated": "arn:aws:iam::123456789012:oidc-provider/sim"}
    assert statement["Condition"]["StringEquals"] == {
        "oidc.eks.us-east-1.amazonaws.com/id/SIM:sub": "system:serviceaccount:agents:agent",
        "oidc.eks.us-east-1.amazonaws.com/id/SIM:aud": "sts.amazonaws.com",
    }
    assert graph.outputs_of(component)["roleArn"].endswith(":agent-identity-role")


def test_the_args_need_the_oidc_provider() -> None:
    with pytest.raises(ValueError, match=r"oidcIssuer\n  Field required"):
        WorkloadIdentityArgs(namespace="agents", service_account="agent", oidc_provider_arn="arn")
