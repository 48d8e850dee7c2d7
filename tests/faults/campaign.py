"""What each fault-campaign run tried and what it lost, kept for the report.

A campaign test calls `record()` once at its end, before its assertions, so a failing run
is reported too. Each record is printed in pytest's terminal summary
(tests/faults/conftest.py) and, when `$AGENT_PLATFORM_CAMPAIGN_DIR` is set, written there
as JSON: `make bench` runs the campaign with a directory of its own and tabulates the
records in benchmarks/RESULTS.md. Tests never write into the checkout's build/.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DIR_VARIABLE = "AGENT_PLATFORM_CAMPAIGN_DIR"


@dataclass(frozen=True)
class CampaignRecord:
    """`tried` and `lost` are counts; `lost` is all zeros when nothing was lost."""

    name: str
    tried: dict[str, int | float]
    lost: dict[str, int | float]
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def lost_anything(self) -> bool:
        return any(value for value in self.lost.values())

    def summary(self) -> str:
        def join(values: dict[str, Any]) -> str:
            return ", ".join(f"{key} {value}" for key, value in values.items()) or "-"

        lost = join(self.lost) if self.lost_anything else "nothing"
        return f"{self.name}: tried {join(self.tried)}; lost {lost} ({self.seconds:.1f} s)"


RECORDED: list[CampaignRecord] = []


def campaign_dir() -> Path | None:
    directory = os.environ.get(DIR_VARIABLE)
    return Path(directory) if directory else None


def record(
    name: str,
    *,
    tried: dict[str, int | float],
    lost: dict[str, int | float],
    figures: dict[str, Any] | None = None,
    seconds: float = 0.0,
) -> CampaignRecord:
    entry = CampaignRecord(name, tried, lost, figures or {}, seconds)
    RECORDED.append(entry)
    directory = campaign_dir()
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{name}.json").write_text(json.dumps(asdict(entry), indent=2, default=str))
    return entry


def load_records(directory: Path) -> list[CampaignRecord]:
    return [
        CampaignRecord(**json.loads(path.read_text())) for path in sorted(directory.glob("*.json"))
    ]
