"""A stack deployed by the real engine into its own local control plane (scripts/pulumi-local
and scripts/local-cluster with a temporary state directory: its own ports, certificates
and etcd), read back through the API."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "agents"


@dataclass
class DeployedStack:
    state: Path
    # The policy pack's config, when not policies/config/local.json.
    policy_config: Path | None = None

    @property
    def stack_file(self) -> Path:
        return self.state / "Pulumi.local.yaml"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "AGENT_PLATFORM_STATE": str(self.state),
            "AGENT_PLATFORM_STACK_FILE": str(self.stack_file),
            **(
                {"AGENT_PLATFORM_POLICY_CONFIG": str(self.policy_config)}
                if self.policy_config
                else {}
            ),
        }

    def script(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(REPO / "scripts" / name), *args],
            cwd=REPO,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=800,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"{name} {' '.join(args)}:\n{result.stdout}\n{result.stderr}")
        return result

    def pulumi(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.script("pulumi-local", *args, check=check)

    def kubectl(self, *args: str) -> str:
        return self.script("local-cluster", "kubectl", *args).stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def items(self, kind: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get(kind, "-n", NAMESPACE)["items"]
        return items


def available(obj: dict[str, Any]) -> bool:
    wanted = obj["spec"].get("replicas", 1)
    status = obj.get("status", {})
    ready = status.get("availableReplicas", status.get("readyReplicas", 0))
    return bool(
        ready == wanted and status.get("observedGeneration") == obj["metadata"]["generation"]
    )
