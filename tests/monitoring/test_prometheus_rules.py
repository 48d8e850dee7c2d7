"""The generated Prometheus config and alert rules, checked and unit-tested by promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.prometheus_rules import AlertThresholds, alert_rules, scrape_config, to_yaml

# $730 a month is $1 an hour, which makes the budget-burn series easy to reason about.
# vLLM's ceiling is 2 replicas: its queue alert needs both up.
THRESHOLDS = AlertThresholds(monthly_budget_usd=730, llm_max_replicas=2)
REL = 'release_version="1.4.0"'
# The backlog as the agent-queue job scrapes it: one target, no release labels.
QUEUE = 'job="agent-queue",instance="agent-metrics.agents.svc.cluster.local:9464"'
TASKS = 'stream="agent:tasks",group="agent-workers"'


PROMTOOL = Path(__file__).resolve().parents[2] / "scripts" / "promtool"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    # scripts/promtool builds the deployed version on first use; `make test` warms it first.
    return subprocess.run(
        [str(PROMTOOL), *args], capture_output=True, text=True, timeout=1200, check=False
    )


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "agent-platform.yml"
    path.write_text(to_yaml(alert_rules(THRESHOLDS)))
    return path


def test_rules_pass_promtool_check(rules_file: Path) -> None:
    result = _run("check", "rules", str(rules_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 15 rules found" in result.stdout


def test_config_passes_promtool_check(tmp_path: Path, rules_file: Path) -> None:
    config = scrape_config(
        "agents", "30s", "gpu-system", "agent-metrics.agents.svc.cluster.local:9464"
    )
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    # The backlog's own job: one static target, the Service, at the backlog's path.
    queue = next(job for job in config["scrape_configs"] if job["job_name"] == "agent-queue")
    assert queue["metrics_path"] == "/metrics/queue"
    assert queue["static_configs"] == [
        {
            "targets": ["agent-metrics.agents.svc.cluster.local:9464"],
            "labels": {"namespace": "agents"},
        }
    ]
    # Where the Deployment mounts the rules ConfigMap; here, beside the config.
    config["rule_files"] = [str(rules_file)]
    path = tmp_path / "prometheus.yml"
    path.write_text(to_yaml(config))
    result = _run("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    broken = alert_rules(THRESHOLDS)
    broken["groups"][1]["rules"][0]["expr"] = "sum(rate(agent_tasks_total[5m]) >"
    path = tmp_path / "broken.yml"
    path.write_text(to_yaml(broken))
    result = _run("check", "rules", str(path))
    assert result.returncode != 0
    assert (
        "AgentTaskErrorRatioHigh" in result.stdout + result.stderr or "parse error" in result.stderr
    )


def _series(name: str, labels: str, values: str) -> dict[str, str]:
    return {"series": f"{name}{{{labels}}}", "values": values}


def _outcomes(
    track: str, completed: int, failed: int, version: str = "1.4.0"
) -> list[dict[str, str]]:
    """Task counters of one release track, rising by `completed` and `failed` a minute."""
    labels = f'release_track="{track}",release_version="{version}"'
    return [
        _series("agent_tasks_total", f'status="completed",{labels}', f"0+{completed}x30"),
        _series("agent_tasks_total", f'status="failed",{labels}', f"0+{failed}x30"),
    ]


def _alert(
    name: str, at: str, *, firing: bool, labels: dict[str, str] | None = None, **annotations: str
) -> dict[str, Any]:
    expected = [{"exp_labels": labels or {}, "exp_annotations": annotations}] if firing else []
    return {"eval_time": at, "alertname": name, "exp_alerts": expected}


def _unit_tests() -> list[dict[str, Any]]:
    page, ticket = {"severity": "page"}, {"severity": "ticket"}
    return [
        {
            "name": "error ratio above 5% pages after 10 minutes; 1% does not",
            "interval": "1m",
            "input_series": _outcomes("stable", completed=90, failed=10),
            "alert_rule_test": [
                _alert("AgentTaskErrorRatioHigh", "8m", firing=False),
                _alert(
                    "AgentTaskErrorRatioHigh",
                    "20m",
                    firing=True,
                    labels=page,
                    summary="More than 10% of agent tasks fail",
                    runbook="Check the LLM breaker state and the dead-letter stream.",
                ),
            ],
        },
        {
            "name": "a healthy error ratio stays quiet",
            "interval": "1m",
            "input_series": _outcomes("stable", completed=99, failed=1),
            "alert_rule_test": [_alert("AgentTaskErrorRatioHigh", "25m", firing=False)],
        },
        {
            "name": "p99 latency above 30s",
            "interval": "1m",
            "input_series": [
                _series(
                    "agent_task_duration_seconds_bucket",
                    f'le="10",status="completed",{REL}',
                    "0+50x30",
                ),
                _series(
                    "agent_task_duration_seconds_bucket",
                    f'le="60",status="completed",{REL}',
                    "0+100x30",
                ),
                _series(
                    "agent_task_duration_seconds_bucket",
                    f'le="+Inf",status="completed",{REL}',
                    "0+100x30",
                ),
            ],
            "alert_rule_test": [
                _alert(
                    "AgentTaskLatencyP99High",
                    "20m",
                    firing=True,
                    labels=ticket,
                    summary="Agent task p99 latency is 59.00000000000001s",
                )
            ],
        },
        {
            # One series per stream (the agent-queue job scrapes it once, through a
            # Service); tasks running on workers are pending, not waiting, and page no one.
            "name": "an undelivered backlog over 100 pages after 15 minutes, per stream",
            "interval": "1m",
            "input_series": [
                _series("agent_queue_depth", f"{QUEUE},{TASKS}", "150x30"),
                _series("agent_queue_pending", f"{QUEUE},{TASKS}", "500x30"),
            ],
            "alert_rule_test": [
                _alert("AgentQueueBacklog", "10m", firing=False),
                _alert(
                    "AgentQueueBacklog",
                    "20m",
                    firing=True,
                    labels={**page, "stream": "agent:tasks", "group": "agent-workers"},
                    summary="150 tasks wait undelivered in agent:tasks",
                    runbook="Autoscaling is at its maximum or workers are failing.",
                ),
                _alert("AgentQueueBacklogUnknown", "20m", firing=False),
            ],
        },
        {
            "name": "tasks in flight are no backlog",
            "interval": "1m",
            "input_series": [
                _series("agent_queue_depth", f"{QUEUE},{TASKS}", "0x30"),
                _series("agent_queue_pending", f"{QUEUE},{TASKS}", "500x30"),
            ],
            "alert_rule_test": [_alert("AgentQueueBacklog", "25m", firing=False)],
        },
        {
            "name": "a backlog nobody scrapes raises a ticket instead of staying quiet",
            "interval": "1m",
            "input_series": _outcomes("stable", completed=10, failed=0),
            "alert_rule_test": [
                _alert("AgentQueueBacklogUnknown", "5m", firing=False),
                _alert(
                    "AgentQueueBacklogUnknown",
                    "15m",
                    firing=True,
                    labels=ticket,
                    summary="The task stream's backlog is not scraped",
                    runbook=(
                        "Check the agent-queue scrape job, the agent-metrics Service and the "
                        "API pods' metrics port."
                    ),
                ),
            ],
        },
        {
            "name": "LLM spend of $3/h burns a $730/month budget",
            "interval": "1m",
            "input_series": [
                _series("agent_llm_cost_usd_total", f'model="small",{REL}', "0+0.05x150"),
            ],
            "alert_rule_test": [
                _alert(
                    "LlmBudgetBurnHigh",
                    "2h",
                    firing=True,
                    labels=ticket,
                    summary="LLM spend of $3.00/h would exceed the monthly budget of $730",
                )
            ],
        },
        {
            "name": "LLM spend of $0.60/h stays within budget",
            "interval": "1m",
            "input_series": [
                _series("agent_llm_cost_usd_total", f'model="small",{REL}', "0+0.01x150"),
            ],
            "alert_rule_test": [_alert("LlmBudgetBurnHigh", "2h", firing=False)],
        },
        {
            "name": "canary failing 10% against stable 1% pages",
            "interval": "1m",
            "input_series": [
                *_outcomes("stable", completed=99, failed=1),
                *_outcomes("canary", completed=9, failed=1, version="1.5.0"),
            ],
            "alert_rule_test": [
                _alert(
                    "CanaryErrorRatioAboveStable",
                    "20m",
                    firing=True,
                    labels=page,
                    summary="The canary fails more than the stable release: roll it back",
                    runbook="pulumi config set --path canary.weight 0, then pulumi up (see README).",
                )
            ],
        },
        {
            "name": "a canary as good as stable stays quiet",
            "interval": "1m",
            "input_series": [
                *_outcomes("stable", completed=99, failed=1),
                *_outcomes("canary", completed=99, failed=1, version="1.5.0"),
            ],
            "alert_rule_test": [_alert("CanaryErrorRatioAboveStable", "20m", firing=False)],
        },
        {
            "name": "idle and saturated GPUs",
            "interval": "1m",
            "input_series": [
                _series("DCGM_FI_DEV_GPU_UTIL", 'gpu="0",Hostname="idle-node"', "3x90"),
            ],
            "alert_rule_test": [
                _alert(
                    "GpuIdle",
                    "80m",
                    firing=True,
                    labels=ticket,
                    summary="GPUs average 3% utilisation: scale the pool down",
                ),
                _alert("GpuSaturated", "80m", firing=False),
            ],
        },
        {
            "name": "saturated GPUs",
            "interval": "1m",
            "input_series": [
                _series("DCGM_FI_DEV_GPU_UTIL", 'gpu="0",Hostname="busy-node"', "99x30"),
            ],
            "alert_rule_test": [
                _alert(
                    "GpuSaturated",
                    "20m",
                    firing=True,
                    labels=ticket,
                    summary="GPUs average 99% utilisation: add capacity",
                )
            ],
        },
    ]


def _vllm(replicas_up: int, waiting: str) -> list[dict[str, str]]:
    """vLLM replicas scraped up, each with `waiting` queued requests."""
    series = []
    for pod in ("vllm-a", "vllm-b")[:replicas_up]:
        labels = f'app="llm",pod="{pod}"'
        series += [
            _series("up", labels, "1x40"),
            _series("vllm:num_requests_waiting", labels, waiting),
        ]
    return series


QUEUE_SUMMARY = (
    "vLLM's queue grows at its ceiling of 2 replicas ({value} waiting): raise "
    "llm.autoscaling.maxReplicas and the GPU pool, or shed load"
)


def _llm_unit_tests() -> list[dict[str, Any]]:
    page, ticket = {"severity": "page"}, {"severity": "ticket"}
    kv = "vllm:kv_cache_usage_perc"
    return [
        {
            "name": "vLLM's queue growing at its replica ceiling pages",
            "interval": "1m",
            "input_series": _vllm(2, "5+1x40"),
            "alert_rule_test": [
                _alert("LlmQueueGrowingAtMaxReplicas", "5m", firing=False),
                _alert(
                    "LlmQueueGrowingAtMaxReplicas",
                    "25m",
                    firing=True,
                    labels=page,
                    summary=QUEUE_SUMMARY.format(value=60),
                ),
            ],
        },
        {
            "name": "a growing queue below the ceiling is the autoscaler's, not a page",
            "interval": "1m",
            "input_series": _vllm(1, "10+2x40"),
            "alert_rule_test": [_alert("LlmQueueGrowingAtMaxReplicas", "25m", firing=False)],
        },
        {
            "name": "a long but steady queue at the ceiling stays quiet",
            "interval": "1m",
            "input_series": _vllm(2, "20x40"),
            "alert_rule_test": [_alert("LlmQueueGrowingAtMaxReplicas", "25m", firing=False)],
        },
        {
            "name": "a saturated KV cache opens a ticket for its pod; a busy one does not",
            "interval": "1m",
            "input_series": [
                _series(kv, 'app="llm",pod="vllm-a"', "0.97x40"),
                _series(kv, 'app="llm",pod="vllm-b"', "0.80x40"),
            ],
            "alert_rule_test": [
                _alert(
                    "LlmKvCacheSaturated",
                    "20m",
                    firing=True,
                    labels={**ticket, "pod": "vllm-a"},
                    summary=(
                        "vLLM's KV cache on vllm-a is 97% full: requests are preempted; add "
                        "replicas or lower llm.maxModelLen"
                    ),
                )
            ],
        },
    ]


def test_llm_serving_alerts_only_where_vllm_serves() -> None:
    groups = {g["name"] for g in alert_rules(AlertThresholds(monthly_budget_usd=730))["groups"]}
    assert "agent-platform.llm-serving" not in groups
    assert "agent-platform.llm-serving" in {g["name"] for g in alert_rules(THRESHOLDS)["groups"]}


def test_alert_rules_behave_under_promtool_unit_tests(tmp_path: Path, rules_file: Path) -> None:
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(
        yaml.safe_dump(
            {
                "rule_files": [rules_file.name],
                "evaluation_interval": "1m",
                "tests": _unit_tests() + _llm_unit_tests(),
            },
            sort_keys=False,
        )
    )
    result = _run("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_unit_tests_can_fail(tmp_path: Path, rules_file: Path) -> None:
    # The healthy case claims a page: promtool must say the alert did not fire.
    wrong = _unit_tests()[1]
    wrong["alert_rule_test"] = [
        _alert("AgentTaskErrorRatioHigh", "25m", firing=True, labels={"severity": "page"})
    ]
    tests = tmp_path / "wrong_test.yml"
    tests.write_text(
        yaml.safe_dump({"rule_files": [rules_file.name], "tests": [wrong]}, sort_keys=False)
    )
    result = _run("test", "rules", str(tests))
    assert result.returncode != 0
    assert "AgentTaskErrorRatioHigh" in result.stdout + result.stderr


@pytest.mark.parametrize("gpu_namespace", [None, "gpu-system"])
def test_yaml_is_what_the_pure_python_dumper_writes(gpu_namespace: str | None) -> None:
    for document in (alert_rules(THRESHOLDS), scrape_config("agents", "15s", gpu_namespace)):
        assert to_yaml(document) == yaml.safe_dump(document, sort_keys=False, width=120)
