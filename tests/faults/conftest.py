"""Fixtures of the fault campaign, and its summary at the end of the pytest run."""

from __future__ import annotations

import pytest

from faults.campaign import RECORDED


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if not RECORDED:
        return
    terminalreporter.section("fault campaign: what was tried and what was lost")
    for entry in RECORDED:
        terminalreporter.write_line(entry.summary())
