"""The release analysis Flagger runs (components/progressive_delivery.py), evaluated by
promtool over the per-track recording rules: a canary that costs 30% more per task, is
slower or fails more fails its check; one within the thresholds passes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.progressive_delivery import (
    AnalysisCheck,
    ProgressiveDeliveryConfig,
    analysis_checks,
)
from components.prometheus_rules import (
    RELEASE_TRACK_BY_WORKLOAD,
    WORKLOAD_META_LABEL,
    AlertThresholds,
    alert_rules,
    scrape_config,
    to_yaml,
)

PROMTOOL = Path(__file__).resolve().parents[2] / "scripts" / "promtool"
CHECKS = {check.name: check for check in analysis_checks(ProgressiveDeliveryConfig())}
# Evaluated once the 5m rates have a full window behind them.
AT = "15m"


def _counter(name: str, labels: str, per_minute: float) -> dict[str, str]:
    return {"series": f"{name}{{{labels}}}", "values": f"0+{per_minute:g}x20"}


def _track(
    track: str,
    *,
    tasks: int,
    failed: int = 0,
    cost_per_task: float,
    buckets: dict[str, int],
) -> list[dict[str, str]]:
    """One track's series as the app exports them, rising by the given amounts a minute:
    `buckets` is the cumulative task-duration histogram of a minute's tasks."""
    rel = f'release_track="{track}",release_version="{track}-version"'
    return [
        _counter("agent_tasks_total", f'status="completed",{rel}', tasks - failed),
        _counter("agent_tasks_total", f'status="failed",{rel}', failed),
        _counter("agent_llm_cost_usd_total", f'model="m",{rel}', tasks * cost_per_task),
        *(
            _counter(
                "agent_task_duration_seconds_bucket", f'le="{le}",status="completed",{rel}', count
            )
            for le, count in buckets.items()
        ),
    ]


# 100 tasks a minute, half under 2 s and all under 4 s: p99 3.96 s.
FAST = {"1": 0, "2": 50, "4": 100, "8": 100, "+Inf": 100}
SLOW = {"1": 0, "2": 0, "4": 50, "8": 100, "+Inf": 100}
STABLE = _track("stable", tasks=100, failed=1, cost_per_task=0.002, buckets=FAST)


def _canary(**changes: Any) -> list[dict[str, str]]:
    spec: dict[str, Any] = {"tasks": 100, "failed": 1, "cost_per_task": 0.002, "buckets": FAST}
    return _track("canary", **{**spec, **changes})


def _expect(check: AnalysisCheck, passes: bool, value: float | None = None) -> dict[str, Any]:
    samples = [{"labels": "{}", "value": value}] if passes else []
    return {"expr": check.passing, "eval_time": AT, "exp_samples": samples}


CASES: list[tuple[str, list[dict[str, str]], list[dict[str, Any]]]] = [
    (
        "a canary like the stable track passes every check",
        _canary(),
        [
            _expect(CHECKS["error-ratio"], True, 0),
            _expect(CHECKS["p99-latency"], True, 1),
            _expect(CHECKS["llm-cost-per-task"], True, 1),
        ],
    ),
    (
        "a canary costing 30% more per task fails the cost check, and only that one",
        _canary(cost_per_task=0.0026),
        [
            _expect(CHECKS["llm-cost-per-task"], False),
            _expect(CHECKS["error-ratio"], True, 0),
            _expect(CHECKS["p99-latency"], True, 1),
        ],
    ),
    (
        "a canary costing 10% more per task is within the 15% threshold",
        _canary(cost_per_task=0.0022),
        [_expect(CHECKS["llm-cost-per-task"], True, 1.1)],
    ),
    (
        "a canary failing 5% of tasks against 1% fails the error-ratio check",
        _canary(failed=5),
        [_expect(CHECKS["error-ratio"], False), _expect(CHECKS["llm-cost-per-task"], True, 1)],
    ),
    (
        "a canary twice as slow at p99 fails the latency check",
        _canary(buckets=SLOW),
        [_expect(CHECKS["p99-latency"], False), _expect(CHECKS["error-ratio"], True, 0)],
    ),
]


def _promtool_test(
    tmp_path: Path, cases: list[tuple[str, Any, Any]]
) -> subprocess.CompletedProcess[str]:
    rules = tmp_path / "rules.yml"
    rules.write_text(to_yaml(alert_rules(AlertThresholds(monthly_budget_usd=730))))
    tests = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": name,
                "interval": "1m",
                "input_series": STABLE + canary,
                "promql_expr_test": expectations,
            }
            for name, canary, expectations in cases
        ],
    }
    path = tmp_path / "tests.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    return subprocess.run(
        [str(PROMTOOL), "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


def test_the_analysis_queries_gate_on_cost_errors_and_latency(tmp_path: Path) -> None:
    result = _promtool_test(tmp_path, CASES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_cost_case_can_fail(tmp_path: Path) -> None:
    """The 30%-dearer canary, expected to pass: promtool must disagree."""
    wrong = [
        ("wrong", _canary(cost_per_task=0.0026), [_expect(CHECKS["llm-cost-per-task"], True, 1.3)])
    ]
    result = _promtool_test(tmp_path, wrong)
    assert result.returncode != 0
    assert "llm_cost_usd_per_task" in result.stdout + result.stderr


def test_a_track_without_data_fails_the_check(tmp_path: Path) -> None:
    """No canary series at all (it never took traffic): no sample, which Flagger counts
    as a failed check rather than a pass."""
    cases: list[tuple[str, Any, Any]] = [
        ("no canary", [], [_expect(check, False) for check in CHECKS.values()])
    ]
    result = _promtool_test(tmp_path, cases)
    assert result.returncode == 0, result.stdout + result.stderr


def test_thresholds_follow_the_config() -> None:
    config = ProgressiveDeliveryConfig(
        max_cost_per_task_increase_pct=30, max_p99_increase_pct=50, max_error_ratio_increase=0.02
    )
    checks = {c.name: c.max for c in analysis_checks(config)}
    assert checks == {"error-ratio": 0.02, "p99-latency": 1.5, "llm-cost-per-task": 1.3}


def _relabel(pod_labels: dict[str, str], scraped_track: str) -> str:
    """The track a scraped series ends up with: the kubernetes-pods job's relabel rules
    for release_track, applied as Prometheus does (anchored RE2, in order), over the
    app's own label, which a target label overrides."""
    job = scrape_config("agents", "30s", None)["scrape_configs"][0]
    target: dict[str, str] = {}
    meta = {WORKLOAD_META_LABEL: pod_labels.get("agent-platform.io/workload", "")}
    for rule in job["relabel_configs"]:
        if rule.get("target_label") != "release_track":
            continue
        value = ";".join(meta.get(label, "") for label in rule["source_labels"])
        if re.fullmatch(rule["regex"], value):
            target["release_track"] = rule["replacement"]
    return target.get("release_track", scraped_track)


@pytest.mark.parametrize(
    ("workload", "track"),
    [
        ("agent-api-primary", "stable"),
        ("agent-worker-primary", "stable"),
        ("agent-api", "canary"),
        ("agent-worker", "canary"),
        (None, "the app's own"),
    ],
)
def test_flaggers_label_names_the_track(workload: str | None, track: str) -> None:
    pod = {"agent-platform.io/workload": workload} if workload else {}
    assert _relabel(pod, "the app's own") == track
    assert len(RELEASE_TRACK_BY_WORKLOAD) == 2
