"""The fault campaign's figures for RESULTS.md: runs the campaign tests (the same ones
`make test` runs) and tabulates what each tried and what it lost.

The tests write one record each (`tests/faults/campaign.py`) into a fresh directory;
pytest's own verdict is reported beside them, so a failing run cannot look clean.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CAMPAIGN_TESTS = ("tests/faults", "tests/app/test_app_schema.py")


def _counts(values: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in values.items()) or "-"


def _figures(values: dict[str, Any]) -> str:
    def show(value: Any) -> str:
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
        if isinstance(value, float):
            return f"{value:.3g}"
        return str(value)

    return "; ".join(f"{key}: {show(value)}" for key, value in values.items()) or "-"


def run(progress: Callable[[str], None]) -> str:
    with tempfile.TemporaryDirectory(prefix="agent-platform-campaign-") as directory:
        progress(f"campaign: pytest {' '.join(CAMPAIGN_TESTS)}")
        began = time.perf_counter()
        done = subprocess.run(  # noqa: S603 - this interpreter's pytest, fixed arguments
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CAMPAIGN_TESTS],
            cwd=REPO,
            env={**os.environ, "AGENT_PLATFORM_CAMPAIGN_DIR": directory},
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - began
        records = [json.loads(path.read_text()) for path in sorted(Path(directory).glob("*.json"))]
    verdict = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "no output"
    progress(f"campaign: {verdict} in {elapsed:.0f}s")
    lines = [
        "## Fault campaign",
        "",
        f"`{' '.join(CAMPAIGN_TESTS)}`, the campaign's tests as `make test` runs them "
        "(`tests/faults/`; the API fuzzing lives with the app's tests for their fixtures). "
        "Each run is bounded in time and count and records what it tried and what it "
        "lost; the expected loss is nothing. Counts are from one run.",
        "",
        f"pytest: **{verdict}** (exit {done.returncode}), {elapsed:.0f} s wall.",
        "",
        "| Campaign | Tried | Lost | Figures | Seconds |",
        "|---|---|---|---|---|",
    ]
    for record in records:
        lost = record["lost"]
        lost_text = _counts(lost) if any(lost.values()) else f"**nothing** ({_counts(lost)})"
        lines.append(
            f"| {record['name']} | {_counts(record['tried'])} | {lost_text} | "
            f"{_figures(record['figures'])} | {record['seconds']:.1f} |"
        )
    if done.returncode != 0:
        lines += ["", "```", *done.stdout.strip().splitlines()[-30:], "```"]
    return "\n".join(lines) + "\n"
