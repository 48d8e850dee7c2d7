"""checkov over the dev and prod stacks as their programs declare them, under mocks.

    python -m policies.checkov_scan [--stack dev --stack prod] [--keep DIR]   (`make checkov`)

Each stack's program runs under Pulumi's mocks (stacks/simulate.py); its Kubernetes
objects are written as YAML (`checkov --framework kubernetes`) and its AWS resources as a
Terraform plan (policies/checkov_plan.py, `--framework terraform_plan`). checkov runs once
over both stacks, from its own virtualenv (scripts/checkov, the version
tools/checkov/requirements.lock pins).

Every failing check must be listed, per stack, in the "Accepted checkov findings" table of
policies/README.md with why it is accepted; the scan fails (exit 1) on a failure the table
does not list, and on an entry of the table that no longer fails, so that the table stays
exactly what checkov finds.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from policies.checkov_plan import plan
from stacks.simulate import REPO_ROOT, simulate

CHECKOV = REPO_ROOT / "scripts" / "checkov"
README = REPO_ROOT / "policies" / "README.md"
TABLE_HEADING = "## Accepted checkov findings"
STACKS = ("dev", "prod")
KUBERNETES_FILE = "kubernetes.yaml"
PLAN_FILE = "plan.json"


class ScanError(RuntimeError):
    pass


@dataclass(frozen=True, order=True)
class Finding:
    """One failed check on one resource of one stack."""

    stack: str
    check: str
    resource: str

    def __str__(self) -> str:
        return f"{self.stack}: {self.check} {self.resource}"


@dataclass(frozen=True)
class Accepted:
    check: str
    resource: str
    stacks: tuple[str, ...]
    why: str

    def findings(self) -> list[Finding]:
        return [Finding(stack, self.check, self.resource) for stack in self.stacks]


def write_inputs(stack: str, directory: Path) -> None:
    """The stack's Kubernetes objects and AWS plan, in `directory/<stack>/`."""
    simulation = simulate(stack)
    target = directory / stack
    target.mkdir(parents=True, exist_ok=True)
    with (target / KUBERNETES_FILE).open("w") as handle:
        yaml.safe_dump_all(simulation.kubernetes_objects(), handle, sort_keys=False)
    (target / PLAN_FILE).write_text(json.dumps(plan(simulation.resources), indent=1))


def parse_report(report: Any, stacks: Iterable[str]) -> list[Finding]:
    """The failed checks of checkov's JSON report (one object per framework, or a list of
    them), each with the stack whose directory held the file."""
    known = set(stacks)
    findings: list[Finding] = []
    for framework in report if isinstance(report, list) else [report]:
        summary = framework.get("summary", {})
        if summary.get("parsing_errors"):
            errors = framework.get("results", {}).get("parsing_errors", [])
            raise ScanError(f"checkov could not parse {errors or 'an input'}")
        for failed in framework.get("results", {}).get("failed_checks", []):
            stack = Path(failed["file_path"]).parts[1] if failed["file_path"] else ""
            if stack not in known:
                raise ScanError(f"a failed check in {failed['file_path']}, of no stack")
            findings.append(Finding(stack, failed["check_id"], failed["resource"]))
    return sorted(set(findings))


def run_checkov(directory: Path, stacks: Iterable[str]) -> list[Finding]:
    result = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [
            str(CHECKOV),
            "--directory",
            str(directory),
            "--framework",
            "kubernetes",
            "terraform_plan",
            "--output",
            "json",
            "--compact",
            "--quiet",
            # The checks the package ships, nothing fetched from a platform.
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    # checkov exits 1 when a check fails; anything else, or no JSON, is its own failure.
    if result.returncode not in (0, 1):
        raise ScanError(f"checkov exited {result.returncode}: {result.stderr[-2000:]}")
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise ScanError(f"checkov printed no JSON report: {result.stdout[-2000:]}") from None
    return parse_report(report, stacks)


_ROW = re.compile(r"^\|(.+)\|\s*$")


def _cells(line: str) -> list[str]:
    match = _ROW.match(line.strip())
    return [cell.strip() for cell in match.group(1).split("|")] if match else []


def _code(cell: str) -> str:
    return cell.strip().strip("`")


def accepted_findings(readme: str) -> list[Accepted]:
    """The rows of the README's accepted-findings table: check, resource, stacks, why."""
    if TABLE_HEADING not in readme:
        raise ScanError(f"policies/README.md has no '{TABLE_HEADING}' section")
    section = readme.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    rows = [_cells(line) for line in section.splitlines() if line.strip().startswith("|")]
    if len(rows) < 2 or [c.lower() for c in rows[0]] != ["check", "resource", "stacks", "why"]:
        raise ScanError(
            "the accepted-findings table's columns must be Check | Resource | Stacks | Why"
        )
    accepted: list[Accepted] = []
    for number, cells in enumerate(rows[2:], start=1):
        if len(cells) != 4:
            raise ScanError(f"accepted-findings row {number} has {len(cells)} cells, not 4")
        check, resource, stacks, why = cells
        names = tuple(_code(s) for s in stacks.split(","))
        unknown = [s for s in names if s not in STACKS]
        if unknown or not why:
            raise ScanError(
                f"accepted-findings row {number} ({check}): "
                + (f"unknown stack {unknown}" if unknown else "says not why")
            )
        accepted.append(Accepted(_code(check), _code(resource), names, why))
    return accepted


@dataclass(frozen=True)
class Comparison:
    findings: list[Finding]
    # Failures the table does not list, and listed entries that no longer fail.
    unaccepted: list[Finding]
    stale: list[Finding]

    @property
    def passed(self) -> bool:
        return not self.unaccepted and not self.stale


def compare(
    findings: Sequence[Finding], accepted: Iterable[Accepted], stacks: Iterable[str]
) -> Comparison:
    scanned = set(stacks)
    listed = {f for entry in accepted for f in entry.findings() if f.stack in scanned}
    found = set(findings)
    return Comparison(sorted(found), sorted(found - listed), sorted(listed - found))


def scan(stacks: Sequence[str], keep: Path | None = None) -> Comparison:
    accepted = accepted_findings(README.read_text())
    with tempfile.TemporaryDirectory(prefix="checkov-") as scratch:
        directory = keep or Path(scratch)
        for stack in stacks:
            write_inputs(stack, directory)
        findings = run_checkov(directory, stacks)
    return compare(findings, accepted, stacks)


def render(comparison: Comparison, stacks: Sequence[str], seconds: float) -> str:
    lines: list[str] = []
    for stack in stacks:
        mine = [f for f in comparison.findings if f.stack == stack]
        lines.append(f"{stack}: {len(mine)} failed check(s)")
        lines += [
            f"  {'NOT ACCEPTED' if f in comparison.unaccepted else 'accepted    '} "
            f"{f.check} {f.resource}"
            for f in mine
        ]
    lines += [f"STALE {f} is listed as accepted but passes now" for f in comparison.stale]
    verdict = "passed" if comparison.passed else "FAILED"
    lines.append(
        f"checkov scan {verdict} in {seconds:.1f}s: {len(comparison.unaccepted)} not accepted, "
        f"{len(comparison.stale)} stale (the table is '{TABLE_HEADING[3:]}' in policies/README.md)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policies.checkov_scan", description=__doc__)
    parser.add_argument("--stack", action="append", choices=STACKS, help="default: dev and prod")
    parser.add_argument("--keep", type=Path, help="write checkov's inputs here and keep them")
    args = parser.parse_args(argv)
    stacks = tuple(args.stack or STACKS)
    started = time.monotonic()
    try:
        comparison = scan(stacks, args.keep)
    except ScanError as error:
        parser.exit(2, f"checkov scan: {error}\n")
    print(render(comparison, stacks, time.monotonic() - started))
    return 0 if comparison.passed else 1


if __name__ == "__main__":
    sys.exit(main())
