"""The NVIDIA GPU instance types the platform knows how to schedule on.

Config validation rejects any other type, so a typo in a stack file fails before
anything is created, and the policy pack can count GPUs per pool.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInstanceType:
    name: str
    gpus: int
    gpu_model: str
    gpu_memory_gib: int


_CATALOGUE = (
    GpuInstanceType("g4dn.xlarge", 1, "T4", 16),
    GpuInstanceType("g4dn.2xlarge", 1, "T4", 16),
    GpuInstanceType("g4dn.12xlarge", 4, "T4", 64),
    GpuInstanceType("g5.xlarge", 1, "A10G", 24),
    GpuInstanceType("g5.2xlarge", 1, "A10G", 24),
    GpuInstanceType("g5.4xlarge", 1, "A10G", 24),
    GpuInstanceType("g5.12xlarge", 4, "A10G", 96),
    GpuInstanceType("g5.48xlarge", 8, "A10G", 192),
    GpuInstanceType("g6.xlarge", 1, "L4", 24),
    GpuInstanceType("g6.2xlarge", 1, "L4", 24),
    GpuInstanceType("g6.12xlarge", 4, "L4", 96),
    GpuInstanceType("g6e.xlarge", 1, "L40S", 48),
    GpuInstanceType("p4d.24xlarge", 8, "A100", 320),
    GpuInstanceType("p5.48xlarge", 8, "H100", 640),
)

GPU_INSTANCE_TYPES: dict[str, GpuInstanceType] = {t.name: t for t in _CATALOGUE}
