"""Release identity (version and track) and A/B variant assignment."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from agent_app.settings import Settings


@dataclass(frozen=True)
class Release:
    version: str
    track: str
    environment: str = "dev"

    @classmethod
    def from_settings(cls, settings: Settings) -> Release:
        return cls(settings.release_version, settings.release_track, settings.environment)

    def headers(self) -> dict[str, str]:
        return {"X-Release-Version": self.version, "X-Release-Track": self.track}


def assign_variant(experiment: str, tenant: str, variants: dict[str, float]) -> str:
    """Weighted rendezvous hashing: a tenant keeps its variant while variants are added
    or removed elsewhere, and only tenants of a removed variant move."""
    best_name = ""
    best_score = -math.inf
    for name in sorted(variants):
        digest = hashlib.sha256(f"{experiment}\x00{tenant}\x00{name}".encode()).digest()
        # Map the hash to (0, 1) and weight it as in the classic weighted HRW scheme.
        unit = (int.from_bytes(digest[:8], "big") + 1) / (2**64 + 2)
        score = -variants[name] / math.log(unit)
        if score > best_score:
            best_name, best_score = name, score
    return best_name
