"""The peer benchmark's arithmetic: /proc parsing, CPU per call, pair ratios, capacity."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.peer.attribution import shares
from benchmarks.peer.compare import (
    Step,
    capacity,
    pair_ratios,
    parse_stat_cpu_s,
    per_call_ms,
    spread,
    tree_cpu_s,
)
from benchmarks.peer.venv import venv_dir


def test_stat_fields_are_counted_after_a_command_name_with_spaces_and_parentheses() -> None:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    line = "42 (a (weird) name) S 1 42 42 0 -1 4194560 10 0 0 0 250 150 0 0 20 0 1"
    assert parse_stat_cpu_s(line, 100) == pytest.approx(4.0)


def test_tree_cpu_counts_a_busy_child() -> None:
    # The child burns 0.3 s of CPU, then stays alive (idle) to be read; polled, not timed,
    # so a busy machine only makes it slower.
    burn = "import time\nend=time.process_time()+0.3\nwhile time.process_time()<end: pass\ntime.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", burn])
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        deadline = time.monotonic() + 20
        children = 0.0
        while time.monotonic() < deadline and children < 0.25:
            own = parse_stat_cpu_s(Path(f"/proc/{os.getpid()}/stat").read_text(), ticks)
            children = tree_cpu_s(os.getpid()) - own
            time.sleep(0.05)
        assert children >= 0.25
    finally:
        child.kill()
        child.wait()


def test_cpu_per_call_sums_every_role() -> None:
    before = {"api": 1.0, "worker": 2.0, "redis": 0.5}
    after = {"api": 1.2, "worker": 2.5, "redis": 0.6}
    assert per_call_ms(before, after, 100) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="calls"):
        per_call_ms(before, after, 0)


def test_ratios_are_per_pair_not_of_medians() -> None:
    ratios = pair_ratios([4.0, 8.0, 5.0], [10.0, 10.0, 20.0])
    assert ratios == pytest.approx([0.4, 0.8, 0.25])
    found = spread(ratios)
    assert (found.min, found.median, found.max) == pytest.approx((0.25, 0.4, 0.8))
    with pytest.raises(ValueError, match="pair"):
        pair_ratios([1.0], [])


def test_capacity_is_the_last_rate_before_the_first_failure() -> None:
    steps = [
        Step(100, 600, 0, 0.150),
        Step(200, 1200, 0, 0.190),
        Step(300, 1800, 0, 0.250),  # 150 ms over the fixed 100 ms: fails
        Step(400, 2400, 0, 0.120),  # passing again after a failure does not count
    ]
    assert capacity(steps, 0.100, 0.100) == 200
    assert capacity([Step(50, 300, 1, 0.110)], 0.100, 0.100) == 0.0


def test_venv_is_keyed_by_the_lock_content(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("a==1\n")
    first = venv_dir(lock, tmp_path)
    lock.write_text("a==2\n")
    assert venv_dir(lock, tmp_path) != first
    assert venv_dir(lock, tmp_path).parent == tmp_path


def test_profile_shares_drop_idle_frames_and_name_the_library() -> None:
    site = "/v/lib/python3.11/site-packages"
    collapsed = "\n".join(
        [
            "run (/usr/lib/python3.11/asyncio/runners.py:118) 50",  # idle loop: dropped
            f"handle (/r/agent_app/tasks.py:10);send ({site}/redis/asyncio/connection.py:5) 30",
            "handle (/r/agent_app/tasks.py:10);scrub (/r/agent_app/redaction.py:7) 10",
            "write (/usr/lib/python3.11/asyncio/streams.py:3) 10",
        ]
    )
    found = shares(collapsed)
    assert found.busy_samples == 50
    assert found.by_library[0] == ("redis", 0.6)
    assert dict(found.by_library)["stdlib/asyncio/streams.py"] == 0.2
    assert dict(found.by_app_module) == {
        "agent_app/tasks.py": 0.6,
        "agent_app/redaction.py": 0.2,
        "(outside agent_app)": 0.2,
    }
