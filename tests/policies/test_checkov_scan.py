"""checkov over dev and prod (policies/checkov_scan.py): every failure is accepted in
policies/README.md, and every accepted entry still fails."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from policies.checkov_scan import (
    README,
    Accepted,
    Finding,
    ScanError,
    accepted_findings,
    compare,
    parse_report,
    render,
    run_checkov,
    scan,
)

TABLE = """
## Accepted checkov findings

Text before the table.

| Check | Resource | Stacks | Why |
| --- | --- | --- | --- |
| CKV_K8S_43 | `Deployment.agents.llm` | dev, prod | Pinned by tag until the digest is set. |
| CKV_AWS_39 | `aws_eks_cluster.agents-dev` | dev | A public endpoint, CIDR-restricted. |

## Next section

| Check | Resource | Stacks | Why |
"""


def test_the_accepted_table_is_read_row_by_row() -> None:
    assert accepted_findings(TABLE) == [
        Accepted(
            "CKV_K8S_43",
            "Deployment.agents.llm",
            ("dev", "prod"),
            "Pinned by tag until the digest is set.",
        ),
        Accepted(
            "CKV_AWS_39",
            "aws_eks_cluster.agents-dev",
            ("dev",),
            "A public endpoint, CIDR-restricted.",
        ),
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("# nothing", "has no '## Accepted checkov findings' section"),
        (
            TABLE.replace("| Check | Resource | Stacks | Why |", "| Check | Resource | Why |", 1),
            "columns must be Check | Resource | Stacks | Why",
        ),
        (TABLE.replace("| dev | A public", "| staging | A public"), r"unknown stack \['staging'\]"),
        (TABLE.replace("| A public endpoint, CIDR-restricted. |", "|  |"), "says not why"),
    ],
)
def test_a_malformed_table_is_an_error_naming_the_row(text: str, error: str) -> None:
    with pytest.raises(ScanError, match=error):
        accepted_findings(text)


def test_failures_outside_the_table_and_entries_that_pass_now_both_fail_the_scan() -> None:
    accepted = accepted_findings(TABLE)
    findings = [
        Finding("dev", "CKV_K8S_43", "Deployment.agents.llm"),
        Finding("prod", "CKV_K8S_43", "Deployment.agents.llm"),
        Finding("prod", "CKV_K8S_20", "Deployment.agents.agent-api"),
    ]
    result = compare(findings, accepted, ("dev", "prod"))
    assert result.unaccepted == [Finding("prod", "CKV_K8S_20", "Deployment.agents.agent-api")]
    assert result.stale == [Finding("dev", "CKV_AWS_39", "aws_eks_cluster.agents-dev")]
    assert not result.passed
    # Only the stacks scanned are held to the table.
    only_prod = compare(findings[1:2], accepted, ("prod",))
    assert only_prod.passed
    assert only_prod.unaccepted == only_prod.stale == []


def test_checkovs_report_is_read_per_stack() -> None:
    report = [
        {
            "check_type": "kubernetes",
            "summary": {"parsing_errors": 0},
            "results": {
                "failed_checks": [
                    {
                        "check_id": "CKV_K8S_43",
                        "resource": "Deployment.agents.llm",
                        "file_path": "/prod/kubernetes.yaml",
                    }
                ]
            },
        },
        {
            "check_type": "terraform_plan",
            "summary": {"parsing_errors": 0},
            "results": {
                "failed_checks": [
                    {
                        "check_id": "CKV_AWS_39",
                        "resource": "aws_eks_cluster.agents-dev",
                        "file_path": "/dev/plan.json",
                    }
                ]
            },
        },
    ]
    assert parse_report(report, ("dev", "prod")) == [
        Finding("dev", "CKV_AWS_39", "aws_eks_cluster.agents-dev"),
        Finding("prod", "CKV_K8S_43", "Deployment.agents.llm"),
    ]
    # One framework alone is reported as an object, not a list.
    assert parse_report(report[0], ("prod",)) == [
        Finding("prod", "CKV_K8S_43", "Deployment.agents.llm")
    ]


def test_an_input_checkov_cannot_parse_fails_the_scan() -> None:
    report = {
        "summary": {"parsing_errors": 1},
        "results": {"failed_checks": [], "parsing_errors": ["/dev/plan.json"]},
    }
    with pytest.raises(ScanError, match="could not parse"):
        parse_report(report, ("dev",))


@pytest.mark.checkov
@pytest.mark.timeout(300)
def test_checkov_finds_a_privileged_container(checkov_installed: None, tmp_path: Path) -> None:
    """The scan could not fail if checkov found nothing in what it is given."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad", "namespace": "agents"},
        "spec": {
            "containers": [
                {"name": "c", "image": "busybox:1.36", "securityContext": {"privileged": True}}
            ]
        },
    }
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "kubernetes.yaml").write_text(yaml.safe_dump(pod))
    found = run_checkov(tmp_path, ("dev",))
    assert Finding("dev", "CKV_K8S_16", "Pod.agents.bad") in found  # privileged


@pytest.mark.checkov
@pytest.mark.timeout(600)
def test_every_checkov_failure_on_dev_and_prod_is_accepted_and_still_fails(
    checkov_installed: None,
) -> None:
    result = scan(("dev", "prod"))
    report = render(result, ("dev", "prod"), 0)
    assert result.unaccepted == [], report
    assert result.stale == [], report
    # Both stacks were scanned, both frameworks read: the table lists findings of each.
    stacks = {f.stack for f in result.findings}
    checks = {f.check.split("_")[1] for f in result.findings}
    assert stacks == {"dev", "prod"}
    assert {"K8S", "AWS"} <= checks
    assert len(accepted_findings(README.read_text())) > 0
