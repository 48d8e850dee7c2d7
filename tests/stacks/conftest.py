"""Simulations of each stack, evaluated once per test session."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stacks.simulate import Simulation, simulate

STACKS = ("local", "dev", "prod")


@pytest.fixture(scope="session")
def simulated() -> Callable[[str, bool], Simulation]:
    cache: dict[tuple[str, bool], Simulation] = {}

    def get(stack: str, preview: bool = False) -> Simulation:
        if (stack, preview) not in cache:
            cache[(stack, preview)] = simulate(stack, preview=preview)
        return cache[(stack, preview)]

    return get
