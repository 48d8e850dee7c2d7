"""Metric-gated progressive delivery of the agent service, by Flagger.

Why Flagger (pinned chart, components/operators.py) rather than Argo Rollouts: Flagger
drives Gateway API `HTTPRoute` weights itself (`gatewayapi:v1`), where Argo Rollouts needs
its Gateway API plugin, a binary the controller downloads at start; and Flagger wraps the
ordinary Deployments, HPAs and KEDA ScaledObjects the stack already declares instead of
replacing them with its own workload kind.

The flow. A release is a change of `agent.version`/`agent.imageTag`: `pulumi up` updates
the `agent-api` and `agent-worker` Deployments, which Flagger treats as the canaries of
its `-primary` copies (the stable track). For the API, Flagger routes `stepWeight`
percent more of the Gateway's traffic to the canary each `interval`, up to `maxWeight`;
the workers (no traffic to route: they share the task stream) run beside the primary
for `workerIterations` intervals. Each interval runs the analysis below; after
`threshold` failed checks Flagger routes everything back to the primary and scales the
canary to zero (rollback); when every step passes it copies the canary's spec to the
primary (promotion).

The analysis compares the canary with the stable track through the per-track recording
rules (components/prometheus_rules.py): the error ratio, the p99 task duration and the
LLM cost per task. Which pods are which track is told by the label Flagger rewrites
(`WORKLOAD_LABEL`: `agent-api-primary` is stable, `agent-api` the canary), which
Prometheus turns into `release_track` at scrape time, since Flagger copies one pod
template to both.

By config: `progressiveDelivery.skipAnalysis: true` promotes the next release without
analysis (manual promotion); setting `agent.version`/`agent.imageTag` back rolls back
(Flagger restarts the analysis on the reverted spec; with `skipAnalysis` it is promoted
at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Self

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.apiextensions import CustomResource
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs
from pydantic import Field, model_validator

from components.kube import child_options, labels
from components.values import ArgsModel, InputStr, PositiveInt

FLAGGER_API = "flagger.app/v1beta1"
# Flagger's services are named after this; `agent-api` itself is the stack's own Service.
RELEASE_SERVICE_SUFFIX = "-release"

StepPercent = Annotated[int, Field(ge=1, le=100, strict=True)]
Interval = Annotated[str, Field(pattern=r"^[1-9]\d*[sm]$")]
Ratio = Annotated[float, Field(ge=0, le=1)]
IncreasePct = Annotated[float, Field(ge=0, le=1000)]

# The window the per-track recording rules rate over (components/prometheus_rules.py).
RULE_WINDOW = "5m"


class ProgressiveDeliveryConfig(ArgsModel):
    """The stack file's `progressiveDelivery` section."""

    enabled: bool = False
    interval: Interval = "1m"
    step_weight: StepPercent = 10
    max_weight: StepPercent = 50
    # Failed checks before Flagger rolls back.
    threshold: PositiveInt = 5
    # Analysis runs the workers' canary takes (they carry no traffic to step up).
    worker_iterations: PositiveInt = 10
    # The canary's error ratio may exceed the stable track's by this much (absolute).
    max_error_ratio_increase: Ratio = 0.01
    # The canary's p99 task duration and LLM cost per task, over the stable's, in percent.
    max_p99_increase_pct: IncreasePct = 25
    max_cost_per_task_increase_pct: IncreasePct = 15
    # Manual promotion: the next release goes to the primary without analysis.
    skip_analysis: bool = False

    @model_validator(mode="after")
    def _steps_reach_the_ceiling(self) -> Self:
        if self.step_weight > self.max_weight:
            raise ValueError(
                f"stepWeight ({self.step_weight}) is above maxWeight ({self.max_weight})"
            )
        return self


@dataclass(frozen=True)
class AnalysisCheck:
    """One metric of the analysis: a PromQL query of canary against stable, and the
    highest value that passes."""

    name: str
    query: str
    max: float

    @property
    def passing(self) -> str:
        """The check as PromQL: a sample when it passes, nothing when it fails or when
        either track has no data (Flagger counts a query without a result as a failure)."""
        return f"({self.query}) <= {self.max:g}"


def _track(record: str, track: str) -> str:
    return f'{record}{{release_track="{track}"}}'


def _relative(record: str) -> str:
    """canary / stable of a per-track record, as one scalar series."""
    return f"{_track(record, 'canary')} / on() {_track(record, 'stable')}"


ERROR_RATIO_RECORD = f"agent:task_error_ratio_by_release_track:rate{RULE_WINDOW}"
P99_RECORD = f"agent:task_duration_seconds:p99_by_release_track:rate{RULE_WINDOW}"
COST_PER_TASK_RECORD = f"agent:llm_cost_usd_per_task_by_release_track:rate{RULE_WINDOW}"


def analysis_checks(config: ProgressiveDeliveryConfig) -> list[AnalysisCheck]:
    return [
        AnalysisCheck(
            "error-ratio",
            f"{_track(ERROR_RATIO_RECORD, 'canary')} - on() {_track(ERROR_RATIO_RECORD, 'stable')}",
            config.max_error_ratio_increase,
        ),
        AnalysisCheck("p99-latency", _relative(P99_RECORD), 1 + config.max_p99_increase_pct / 100),
        AnalysisCheck(
            "llm-cost-per-task",
            _relative(COST_PER_TASK_RECORD),
            1 + config.max_cost_per_task_increase_pct / 100,
        ),
    ]


def _template_name(check: AnalysisCheck) -> str:
    return f"agent-{check.name}"


class Autoscaler(ArgsModel):
    api_version: str
    kind: str
    name: InputStr


class ReleaseTarget(ArgsModel):
    """A Deployment Flagger releases, the autoscaler that sizes it, and the port its
    Services forward (to the pods' `http` port)."""

    deployment: InputStr
    autoscaler: Autoscaler
    port: PositiveInt


class ProgressiveReleaseArgs(ArgsModel):
    namespace: str
    provider: k8s.Provider
    config: ProgressiveDeliveryConfig
    prometheus_url: InputStr
    api: ReleaseTarget
    worker: ReleaseTarget
    # The Gateway whose HTTPRoute Flagger writes, and the host it matches.
    gateway_name: str
    host: str


class ProgressiveRelease(pulumi.ComponentResource):
    """The analysis (one Flagger MetricTemplate per check) and a Flagger Canary for the
    API (traffic stepped through the Gateway) and for the workers (run beside the
    primary, no traffic to shift)."""

    checks: list[AnalysisCheck]

    def __init__(
        self, name: str, args: ProgressiveReleaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:release:ProgressiveRelease", name, None, opts)
        k8s_opts = child_options(self, opts, provider=args.provider)
        cfg = args.config
        self.checks = analysis_checks(cfg)
        for check in self.checks:
            CustomResource(
                f"{name}-{check.name}",
                api_version=FLAGGER_API,
                kind="MetricTemplate",
                metadata=ObjectMetaArgs(
                    name=_template_name(check),
                    namespace=args.namespace,
                    labels=labels("agent", "release-analysis"),
                ),
                spec={
                    "provider": {"type": "prometheus", "address": args.prometheus_url},
                    "query": check.query,
                },
                opts=k8s_opts,
            )
        metrics = [
            {
                "name": check.name,
                "templateRef": {"name": _template_name(check), "namespace": args.namespace},
                "thresholdRange": {"max": check.max},
                "interval": RULE_WINDOW,
            }
            for check in self.checks
        ]
        analysis = {"interval": cfg.interval, "threshold": cfg.threshold, "metrics": metrics}
        self._canary(
            f"{name}-api",
            args,
            args.api,
            provider="gatewayapi:v1",
            service_extra={
                "hosts": [args.host],
                "gatewayRefs": [{"name": args.gateway_name, "namespace": args.namespace}],
            },
            analysis={**analysis, "stepWeight": cfg.step_weight, "maxWeight": cfg.max_weight},
            opts=k8s_opts,
        )
        self._canary(
            f"{name}-worker",
            args,
            args.worker,
            provider="kubernetes",
            service_extra={},
            analysis={**analysis, "iterations": cfg.worker_iterations},
            opts=k8s_opts,
        )
        self.register_outputs({"checks": [c.name for c in self.checks]})

    @staticmethod
    def _canary(
        resource_name: str,
        args: ProgressiveReleaseArgs,
        target: ReleaseTarget,
        provider: str,
        service_extra: dict[str, object],
        analysis: dict[str, object],
        opts: pulumi.ResourceOptions,
    ) -> None:
        CustomResource(
            resource_name,
            api_version=FLAGGER_API,
            kind="Canary",
            metadata=ObjectMetaArgs(
                name=target.deployment,
                namespace=args.namespace,
                labels=labels("agent", "release"),
            ),
            spec={
                "provider": provider,
                "targetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": target.deployment,
                },
                "autoscalerRef": target.autoscaler.model_dump(by_alias=True),
                "progressDeadlineSeconds": 600,
                "skipAnalysis": args.config.skip_analysis,
                "service": {
                    "name": pulumi.Output.concat(target.deployment, RELEASE_SERVICE_SUFFIX),
                    "port": target.port,
                    "targetPort": "http",
                    **service_extra,
                },
                "analysis": analysis,
            },
            opts=opts,
        )
