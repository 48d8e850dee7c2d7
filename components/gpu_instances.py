"""The NVIDIA GPU instance types the platform knows how to schedule on.

Config validation rejects any other type, so a typo in a stack file fails before
anything is created, and the policy pack can count GPUs per pool.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

# The extended resource the NVIDIA device plugin advertises.
GPU = "nvidia.com/gpu"


@dataclass(frozen=True)
class GpuInstanceType:
    name: str
    gpus: int
    gpu_model: str
    gpu_memory_gib: int
    # What the node offers besides its GPUs: the simulated nodes of the local control
    # plane get the same capacity as the EKS node would.
    vcpus: int
    memory_gib: int


_CATALOGUE = (
    GpuInstanceType("g4dn.xlarge", 1, "T4", 16, 4, 16),
    GpuInstanceType("g4dn.2xlarge", 1, "T4", 16, 8, 32),
    GpuInstanceType("g4dn.12xlarge", 4, "T4", 64, 48, 192),
    GpuInstanceType("g5.xlarge", 1, "A10G", 24, 4, 16),
    GpuInstanceType("g5.2xlarge", 1, "A10G", 24, 8, 32),
    GpuInstanceType("g5.4xlarge", 1, "A10G", 24, 16, 64),
    GpuInstanceType("g5.12xlarge", 4, "A10G", 96, 48, 192),
    GpuInstanceType("g5.48xlarge", 8, "A10G", 192, 192, 768),
    GpuInstanceType("g6.xlarge", 1, "L4", 24, 4, 16),
    GpuInstanceType("g6.2xlarge", 1, "L4", 24, 8, 32),
    GpuInstanceType("g6.12xlarge", 4, "L4", 96, 48, 192),
    GpuInstanceType("g6e.xlarge", 1, "L40S", 48, 4, 32),
    GpuInstanceType("p4d.24xlarge", 8, "A100", 320, 96, 1152),
    GpuInstanceType("p5.48xlarge", 8, "H100", 640, 192, 2048),
)

GPU_INSTANCE_TYPES: dict[str, GpuInstanceType] = {t.name: t for t in _CATALOGUE}


def family(instance_type: str) -> str:
    """`g5.2xlarge` -> `g5`: the value of Karpenter's instance-family label."""
    return instance_type.split(".", 1)[0]


def _capacity(shape: GpuInstanceType, resource: str) -> float:
    if resource == GPU:
        return shape.gpus
    if resource == "cpu":
        return shape.vcpus
    if resource == "memory":
        return shape.memory_gib * 2**30
    return 0


def nodes_at_limits(instance_type: str, limits: Iterable[tuple[str, float]]) -> int | None:
    """How many nodes of `instance_type` the limits admit; None when no limit bounds them
    (a NodePool without a limit on any resource its nodes carry grows without end)."""
    shape = GPU_INSTANCE_TYPES[instance_type]
    counts = [
        math.floor(limit / capacity)
        for resource, limit in limits
        if (capacity := _capacity(shape, resource)) > 0
    ]
    return min(counts) if counts else None


def nodes_for_gpus(instance_type: str, gpus: float) -> int:
    return math.ceil(gpus / GPU_INSTANCE_TYPES[instance_type].gpus)
