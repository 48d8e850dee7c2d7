"""The outputs every stack exports: the contract other teams read through
`StackReference`. Defined once, here; the program exports exactly these keys and the
tests hold every stack to them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pydantic import BaseModel, ConfigDict, Field


class CanaryOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(description="The canary's version, or null when no canary runs.")
    weight: int = Field(
        ge=0, le=100, description="Percent of traffic the canary takes (0 when none)."
    )


class CostOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expectedUsd: float = Field(ge=0, description="Monthly USD at desired sizes.")  # noqa: N815
    worstCaseUsd: float = Field(ge=0, description="Monthly USD with every pool at max size.")  # noqa: N815
    priceTable: str = Field(description="Source, region and date of the prices.")  # noqa: N815
    unpriced: list[str] = Field(
        description="Resources the model could not price (never silently $0)."
    )


class StackOutputs(BaseModel):
    """The shape of `pulumi stack output --json` (secrets shown as "[secret]")."""

    model_config = ConfigDict(extra="forbid")

    clusterName: str = Field(description="EKS cluster name, or the local target's name.")  # noqa: N815
    kubeconfig: str = Field(
        description="Kubeconfig for the cluster (a secret; empty when rendering)."
    )
    namespace: str = Field(description="Namespace of the agent system.")
    agentApiEndpoint: str = Field(description="Base URL of the agent API.")  # noqa: N815
    redisEndpoint: str = Field(description="host:port of the task queue's Redis.")  # noqa: N815
    prometheusUrl: str = Field(description="In-cluster URL of Prometheus.")  # noqa: N815
    llmBaseUrl: str = Field(  # noqa: N815
        description="OpenAI-compatible base URL of the model the agents call (ends in /v1)."
    )
    llmModel: str = Field(description="The model name to send in requests to llmBaseUrl.")  # noqa: N815
    imageRef: str = Field(description="The agent image, by digest where it was built.")  # noqa: N815
    canary: CanaryOutput = Field(description="The canary release and its traffic weight.")
    estimatedMonthlyCost: CostOutput = Field(  # noqa: N815
        description="The price of what the components are billed by, as the policy pack reads it."
    )


OUTPUT_KEYS = tuple(StackOutputs.model_fields)
SECRET_OUTPUT_KEYS = ("kubeconfig",)


@dataclass(frozen=True)
class StackExports:
    """The program's values for the contract, still as Outputs."""

    cluster_name: pulumi.Input[str]
    kubeconfig: pulumi.Output[str]
    namespace: pulumi.Input[str]
    agent_api_endpoint: pulumi.Input[str]
    redis_endpoint: pulumi.Input[str]
    prometheus_url: pulumi.Input[str]
    llm_base_url: pulumi.Input[str]
    llm_model: pulumi.Input[str]
    image_ref: pulumi.Input[str]
    canary: pulumi.Input[dict[str, Any]]
    estimated_monthly_cost: pulumi.Input[dict[str, Any]]

    def as_exports(self) -> dict[str, pulumi.Input[Any]]:
        exports: dict[str, pulumi.Input[Any]] = {
            "clusterName": self.cluster_name,
            "kubeconfig": pulumi.Output.secret(self.kubeconfig),
            "namespace": self.namespace,
            "agentApiEndpoint": self.agent_api_endpoint,
            "redisEndpoint": self.redis_endpoint,
            "prometheusUrl": self.prometheus_url,
            "llmBaseUrl": self.llm_base_url,
            "llmModel": self.llm_model,
            "imageRef": self.image_ref,
            "canary": self.canary,
            "estimatedMonthlyCost": self.estimated_monthly_cost,
        }
        assert tuple(exports) == OUTPUT_KEYS, "StackExports drifted from StackOutputs"
        return exports
