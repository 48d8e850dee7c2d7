"""The cost diff of a PR: two stack configs priced and compared line by line, the lines
over the budget's max_increase_pct flagged, and `--diff REF` pricing the base ref with its
own program, config and price table."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from costing.diff import COMMENT_MARKER, Cost, DiffLine, diff, markdown
from costing.model import estimate
from costing.prices import load_prices
from policies.cost import main as cost_main
from policies.harness import simulated_views

ROOT = Path(__file__).resolve().parents[2]
GPU_POOL = {
    "name": "gpu",
    "instanceTypes": ["g5.xlarge"],
    "capacityType": "SPOT",
    "scaling": {"minSize": 0, "desiredSize": 1, "maxSize": 2},
}


def _priced(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    # dev with managed GPU node groups (Karpenter off): one priced line per pool.
    managed = {"agent-platform:karpenter": {"enabled": False}, **(overrides or {})}
    return estimate(simulated_views("dev", overrides=managed)).as_json()


def _row(text: str, item: str) -> list[str]:
    (line,) = [row for row in text.splitlines() if row.startswith(f"| {item}")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_two_stack_configs_diff_line_by_line_with_totals() -> None:
    before = _priced({"agent-platform:gpuPools": [GPU_POOL]})
    # The PR: the GPU pool on L4s, on demand, one more node; a second pool added.
    after = _priced(
        {
            "agent-platform:gpuPools": [
                {
                    **GPU_POOL,
                    "instanceTypes": ["g6.xlarge"],
                    "capacityType": "ON_DEMAND",
                    "scaling": {"minSize": 0, "desiredSize": 2, "maxSize": 3},
                },
                {**GPU_POOL, "name": "batch"},
            ]
        }
    )
    result = diff("dev", before, after, max_increase_pct=50)

    g5 = 1.006 * 730 * (1 - 0.6)  # SPOT at the table's 60% off
    l4 = 0.8048 * 730
    by_item = {line.item.split(" (")[0]: line for line in result.lines}
    assert set(by_item) == {"Node group 'gpu-gpu-nodes'", "Node group 'gpu-batch-nodes'"}
    changed = by_item["Node group 'gpu-gpu-nodes'"]
    assert changed.was == "Node group 'gpu-gpu-nodes' (g5.xlarge, SPOT)"
    assert changed.before == Cost(round(g5, 2), round(2 * g5, 2))
    assert changed.after == Cost(round(2 * l4, 2), round(3 * l4, 2))
    assert changed.expected_change == round(round(2 * l4, 2) - round(g5, 2), 2)
    added = by_item["Node group 'gpu-batch-nodes'"]
    assert added.before is None
    assert added.after == Cost(round(g5, 2), round(2 * g5, 2))
    # Everything else (control plane, NAT gateways, volumes...) is the same.
    assert result.unchanged == len(before["items"]) - 1
    assert result.before_total == Cost(
        before["expected_monthly_usd"], before["worst_case_monthly_usd"]
    )
    assert result.after_total == Cost(
        after["expected_monthly_usd"], after["worst_case_monthly_usd"]
    )
    change = sum(line.expected_change for line in result.lines)
    assert result.total.expected_change == pytest.approx(change, abs=0.011)

    text = markdown([result], "origin/main")
    assert text.startswith(COMMENT_MARKER + "\n")
    gpu_row = _row(text, "Node group 'gpu-gpu-nodes' (g6.xlarge, ON_DEMAND)")
    assert gpu_row[1:4] == [
        f"${g5:,.2f}",
        f"${round(2 * l4, 2):,.2f}",
        f"+${changed.expected_change:,.2f} ({changed.expected_change / round(g5, 2):+.0%})",
    ]
    assert gpu_row[7] == "⚠️ over"
    assert _row(text, "Node group 'gpu-batch-nodes'")[1:4] == [
        "-",
        f"${g5:,.2f}",
        f"+${g5:,.2f} (new)",
    ]
    total = _row(text, "**Total**")
    assert total[1:3] == [
        f"${before['expected_monthly_usd']:,.2f}",
        f"${after['expected_monthly_usd']:,.2f}",
    ]
    assert "Over budget growth" in text


def test_only_growth_over_max_increase_pct_is_flagged() -> None:
    line = DiffLine("x", Cost(100.0, 200.0), Cost(120.0, 200.0))
    assert not line.over(20)  # exactly the limit
    assert line.over(19.9)
    assert DiffLine("x", Cost(100.0, 100.0), Cost(100.0, 150.0)).over(20)  # worst case grew
    assert not DiffLine("x", Cost(100.0, 100.0), Cost(10.0, 10.0)).over(0)  # cheaper
    assert not DiffLine("x", Cost(100.0, 100.0), None).over(0)  # removed
    assert DiffLine("x", None, Cost(1.0, 1.0)).over(1000)  # new: grows from $0
    assert not DiffLine("x", None, Cost(1.0, 1.0)).over(None)  # no limit configured


def test_an_unchanged_stack_shows_no_lines_and_nothing_flagged() -> None:
    priced = _priced()
    result = diff("dev", priced, priced, max_increase_pct=0)
    assert result.lines == []
    assert result.unchanged == len(priced["items"])
    assert not result.over_budget
    assert "No line's cost changed." in markdown([result], "main")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, timeout=60)


def _project_copy(tmp_path: Path) -> Path:
    """This checkout's files (tracked and untracked, not ignored) in a new git repo."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    repo = tmp_path / "repo"
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "base")
    return repo


def test_diff_prices_the_base_with_its_own_program_config_and_prices(tmp_path: Path) -> None:
    repo = _project_copy(tmp_path)
    # The PR: dev's system pool grows (config) and t3.large got dearer (price table).
    # Only the base's own files give the "before" column the old figures for both.
    stack_file = repo / "Pulumi.dev.yaml"
    stack_file.write_text(
        stack_file.read_text().replace(
            "scaling: {minSize: 2, desiredSize: 2, maxSize: 3}",
            "scaling: {minSize: 2, desiredSize: 3, maxSize: 4}",
        )
    )
    table_file = repo / "costing" / "data" / "aws-prices-us-east-1.json"
    table = json.loads(table_file.read_text())
    old_price = table["ec2_hourly"]["t3.large"]
    table["ec2_hourly"]["t3.large"] = 0.1
    table_file.write_text(json.dumps(table, indent=2) + "\n")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qam", "pr")
    worktrees_before = (repo / ".git" / "worktrees").exists()

    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.run(
        [sys.executable, "-m", "policies.cost", "--diff", "HEAD~1", "--stack", "dev"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    row = _row(text, "Node group 'agents-dev-system' (t3.large, ON_DEMAND)")
    assert row[1:3] == [f"${2 * old_price * 730:,.2f}", f"${3 * 0.1 * 730:,.2f}"]
    assert row[4:6] == [f"${3 * old_price * 730:,.2f}", f"${4 * 0.1 * 730:,.2f}"]
    assert row[7] == "⚠️ over"  # +80%, over dev's 50%
    assert "HEAD~1 (" in text
    # Only the system pool changed; nothing of the checkout was left behind.
    assert text.count("| Node group") == 1
    assert (repo / ".git" / "worktrees").exists() == worktrees_before
    assert (
        subprocess.run(
            ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout
        == ""
    )


def test_a_stack_new_in_the_pr_is_all_added_and_a_bad_ref_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _project_copy(tmp_path)
    shutil.copy(repo / "Pulumi.dev.yaml", repo / "Pulumi.dev2.yaml")
    shutil.copy(repo / "policies" / "config" / "dev.json", repo / "policies/config/dev2.json")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "pr")
    env = {**os.environ, "PYTHONPATH": str(repo)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "policies.cost", *args],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    added = run("--diff", "HEAD~1", "--stack", "dev2")
    assert added.returncode == 0, added.stderr
    assert "| Node group 'agents-dev-system' (t3.large, ON_DEMAND) (added) | - |" in added.stdout

    bad = run("--diff", "no-such-ref", "--stack", "dev")
    assert bad.returncode == 2
    assert "--diff no-such-ref: git cannot read that ref" in bad.stderr

    # A "ref" that git would read as an option is refused, never passed on.
    option = run("--diff=--output=x", "--stack", "dev")
    assert option.returncode == 2
    assert "not a git ref" in option.stderr
    assert not (repo / "x^{tree}").exists()


def test_cost_report_prints_the_price_tables_age(capsys: pytest.CaptureFixture[str]) -> None:
    read_on = load_prices().read_on
    age = (datetime.now(UTC).date() - date.fromisoformat(read_on)).days
    assert cost_main(["--stack", "dev"]) == 0
    out = capsys.readouterr().out
    assert f"Age: price table read on {read_on}, {age} days ago" in out
    assert cost_main(["--stack", "dev", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["read_on"] == read_on
    assert report["prices_age_days"] == age


def test_price_age_is_days_since_read_on_and_stale_after_a_year() -> None:
    table = load_prices().model_copy(update={"read_on": "2025-01-01"})
    assert table.age_days(date(2025, 3, 1)) == 59
    assert table.age(date(2025, 12, 31)) == "price table read on 2025-01-01, 364 days ago"
    assert "over a year: refresh it" in table.age(date(2026, 1, 2))
