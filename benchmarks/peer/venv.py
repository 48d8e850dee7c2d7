"""LiteLLM's proxy in a virtualenv of its own, installed from benchmarks/peer/requirements.lock
(every distribution's sha256) under ~/.cache/agent-platform, keyed by the lock's hash: a
changed lock gets a fresh environment, an unchanged one is reused."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

LOCK = Path(__file__).resolve().with_name("requirements.lock")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "agent-platform"


def venv_dir(lock: Path = LOCK, cache: Path = CACHE) -> Path:
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    return cache / f"litellm-peer-{digest}"


def ensure(progress: Callable[[str], None]) -> Path:
    """The environment's python, installing it first when missing."""
    target = venv_dir()
    python = target / "bin" / "python"
    if python.exists():
        return python
    uv = Path(sys.executable).with_name("uv")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    progress(f"installing LiteLLM's proxy from {LOCK.name} into {target} (a minute or two)")
    subprocess.run(  # noqa: S603 - uv from this venv, fixed arguments
        [str(uv), "venv", "--quiet", "--python", sys.executable, str(partial)], check=True
    )
    subprocess.run(  # noqa: S603
        [str(uv), "pip", "install", "--require-hashes", "-r", str(LOCK)],
        check=True,
        env={**os.environ, "VIRTUAL_ENV": str(partial)},
    )
    # The proxy is started as `python -m`, so no script's shebang names the partial path.
    partial.rename(target)
    progress("LiteLLM's proxy installed")
    return python
