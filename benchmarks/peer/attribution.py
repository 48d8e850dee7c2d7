"""Which library and which app module hold a process's CPU: py-spy (from the project's
lock) samples the process during a load window; idle samples (threads waiting, the event
loop polling) are dropped, the rest counted by the library of the innermost frame and by
the innermost agent_app module on the stack."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

PY_SPY = Path(sys.executable).with_name("py-spy")
# Innermost frames that are waiting, not working.
IDLE_FILES = ("threading.py", "runners.py", "concurrent/futures/thread.py", "selectors.py")
_FRAME_FILE = re.compile(r"\(([^()]*?)(?::\d+)?\)$")


def owner(path: str) -> str:
    """The library a source file belongs to: the site-packages distribution directory,
    agent_app/<module>, or stdlib/<module>."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if "agent_app/" in path:
        return "agent_app/" + path.rsplit("agent_app/", 1)[1]
    match = re.search(r"/python3\.\d+/(.+)$", path)
    return f"stdlib/{match.group(1)}" if match else path


@dataclass(frozen=True)
class Shares:
    busy_samples: int
    by_library: list[tuple[str, float]]  # fraction of busy samples, largest first
    by_app_module: list[tuple[str, float]]


def shares(collapsed: str, top: int = 6) -> Shares:
    """From py-spy's raw (collapsed-stack) output: 'frame;frame;... count' lines."""
    library: Counter[str] = Counter()
    module: Counter[str] = Counter()
    busy = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not count.isdigit():
            continue
        files = [m.group(1) for m in map(_FRAME_FILE.search, stack.split(";")) if m]
        if not files or files[-1].endswith(IDLE_FILES):
            continue
        busy += int(count)
        library[owner(files[-1])] += int(count)
        app = [owner(f) for f in files if "agent_app/" in f]
        module[app[-1] if app else "(outside agent_app)"] += int(count)

    def fractions(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, n / busy) for name, n in counter.most_common(top)]

    return Shares(busy, fractions(library), fractions(module))


def record(pid: int, seconds: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling `pid` for `seconds` into `output`; wait on the returned process."""
    argv = [str(PY_SPY), "record", "--format", "raw", "--rate", "200", "--nonblocking"]
    argv += ["--duration", str(seconds), "--output", str(output), "--pid", str(pid)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
